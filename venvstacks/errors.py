"""The exceptions the tool raises; the command line turns them into exit status 1."""

from __future__ import annotations


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
    """A layer archive could not be written (a full disk, an unreadable file)."""


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
