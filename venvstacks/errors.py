"""The exceptions the tool raises; the command line turns them into exit status 1."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


class VenvStacksError(Exception):
    """Base class of every error the command line reports without a traceback."""


class RequirementError(ValueError, VenvStacksError):
    """A requirement, marker, version or specifier string is not valid."""


class InvalidVersion(RequirementError):
    """A version string does not follow PEP 440."""


class InvalidSpecifier(RequirementError):
    """A version specifier does not follow PEP 440."""


class InvalidMarker(RequirementError):
    """An environment marker does not follow PEP 508."""


class InvalidRequirement(RequirementError):
    """A requirement string does not follow PEP 508."""


class UndefinedEnvironmentName(InvalidMarker):
    """A marker names a variable the evaluation environment does not define."""


class InvalidWheelFilename(RequirementError):
    """A wheel file name does not follow the binary distribution format."""


class RuntimeSourceError(VenvStacksError):
    """No usable runtime archive was found, or one failed verification."""


class ArchiveError(VenvStacksError):
    """An archive could not be written (a bad tree or override, an unreadable file) or read (missing, damaged)."""


class UnsafeArchiveError(ArchiveError):
    """An archive holds an entry that would land outside its destination."""


class PublishError(VenvStacksError):
    """Layers could not be published or exported: not built, or compiling or relinking them failed."""


class DeployError(VenvStacksError):
    """Layers could not be deployed: bad metadata, archives, target or post-install step."""


class BundleError(VenvStacksError):
    """A bundle could not be fetched or used: a download, a digest or the bundle's manifest is wrong."""


class MultipleErrors(VenvStacksError):
    """Several steps run side by side failed (layers built, archived or relinked at once); `errors` holds each."""

    def __init__(self, errors: Sequence[VenvStacksError]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(map(str, self.errors)))


def raise_failures(failures: Sequence[BaseException]) -> None:
    """Raise what went wrong in steps run side by side, if anything did.

    Anything but a VenvStacksError (a bug, an interruption) is raised as it
    is; a single failure too; several become one MultipleErrors.
    """
    for error in failures:
        if not isinstance(error, VenvStacksError):
            raise error
    if len(failures) == 1:
        raise failures[0]
    if failures:
        raise MultipleErrors([error for error in failures if isinstance(error, VenvStacksError)])


@dataclass(frozen=True)
class CommandResult:
    """What a finished command did (for a failed one, the last part of its output)."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class CommandError(VenvStacksError):
    """An external command (uv, a layer's Python) failed, or could not be started.

    `description` says what the command was for; `result` is what it did (its
    exit status and the last part of its output; None if it never ran);
    `reason` why it could not start; `log` the file holding all its output.
    """

    TAIL_LINES = 20
    """How many of a failed command's last output lines its message shows."""
    LINE_LIMIT = 400
    """Longer output lines are cut to this many characters in the message."""

    def __init__(
        self, description: str, result: CommandResult | None = None, *, reason: str | None = None, log: Path | None = None
    ) -> None:
        self.description = description
        self.result = result
        self.reason = reason
        self.log = log
        super().__init__(self._message())

    def _message(self) -> str:
        if self.reason is not None:
            return f"{self.description}: {self.reason}"
        if self.result is None:
            return self.description
        result = self.result
        lines = [f"{self.description} failed (exit status {result.returncode})", f"command: {shlex.join(result.argv)}"]
        # stderr last, so that the error itself is among the lines shown
        output = (result.stdout.strip() + "\n" + result.stderr.strip()).strip().splitlines()[-self.TAIL_LINES :]
        lines.extend("  " + (line if len(line) <= self.LINE_LIMIT else line[: self.LINE_LIMIT] + " [...]") for line in output)
        if self.log is not None:
            lines.append(f"full output: {self.log}")
        return "\n".join(lines)


class UvError(CommandError):
    """uv could not be found, or a uv command failed."""

    @classmethod
    def from_command(cls, error: CommandError) -> UvError:
        """The same failure, of a uv command."""
        return cls(error.description, error.result, reason=error.reason, log=error.log)


class SelectionError(VenvStacksError):
    """Layer patterns (`--include`, `--reset-lock`) matched no layer."""

    def __init__(self, option: str, patterns: Sequence[str]) -> None:
        self.option = option
        self.patterns = tuple(patterns)
        unmatched = ", ".join(repr(p) for p in self.patterns)
        super().__init__(f"no layers match {option} {unmatched} (pass --allow-missing to continue without them)")


class LockError(VenvStacksError):
    """A layer could not be locked."""


class StaleLockError(LockError):
    """Layers have no valid lock (or would need relocking) where the command needs one.

    `stale` maps each such layer's build name to the reasons; `lead` says
    what the command needed and what to do.
    """

    def __init__(self, lead: str, stale: Mapping[str, Sequence[str]]) -> None:
        self.lead = lead
        self.stale = {name: tuple(reasons) for name, reasons in stale.items()}
        lines = [f"{name} ({'; '.join(reasons)})" if reasons else name for name, reasons in self.stale.items()]
        super().__init__(f"{lead}:\n  " + "\n  ".join(lines))


class BuildError(VenvStacksError):
    """A layer could not be built."""


class SpecIssue:
    """One problem found in a stack specification, located as precisely as possible."""

    __slots__ = ("path", "layer", "field", "message")

    def __init__(self, path: str, layer: str | None, field: str | None, message: str) -> None:
        self.path = path
        """The file the problem is in, as the user named it."""
        self.layer = layer
        """The layer (`framework 'web'`, or `frameworks[2]` if it has no name)."""
        self.field = field
        """The field (`runtime`, `requirements[1]`, `tool.uv.index[0].name`...)."""
        self.message = message

    def __str__(self) -> str:
        parts = [self.path]
        if self.layer:
            parts.append(self.layer)
        if self.field:
            parts.append(f"field {self.field!r}")
        parts.append(self.message)
        return ": ".join(parts)

    def __repr__(self) -> str:
        return f"SpecIssue({str(self)!r})"


class SpecError(ValueError, VenvStacksError):
    """A stack specification is not valid; carries every problem found in it."""

    def __init__(self, issues: list[SpecIssue]) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))
