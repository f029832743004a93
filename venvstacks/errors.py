"""The exceptions the tool raises; the command line turns them into exit status 1."""

from __future__ import annotations

from collections.abc import Sequence


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


class UnsafeArchiveError(VenvStacksError):
    """An archive holds an entry that would land outside its destination."""


class ArchiveError(VenvStacksError):
    """A layer archive could not be written: a bad tree or override, a full disk, an unreadable file."""


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


class CommandError(VenvStacksError):
    """An external command (uv, a layer's Python) failed."""


class UvError(CommandError):
    """uv could not be found, or a uv command failed."""


class LockError(VenvStacksError):
    """A layer could not be locked."""


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
