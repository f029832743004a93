"""PEP 508 requirements and PEP 503 project names (standard library only).

``Requirement.parse`` accepts and rejects the same strings as packaging 26.3's
``packaging.requirements.Requirement``, and ``str()`` gives the same text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import InvalidRequirement
from ..standards.markers import Marker, _canonicalize_name, _ParseError, _Scanner, _parse_expression
from ..standards.versions import _SPECIFIER_TOKEN_RE, SpecifierSet, _parse_specifier, _specifier_problem

__all__ = ["Requirement", "canonicalize_name", "is_valid_project_name"]

_PROJECT_NAME = re.compile(r"[a-z0-9]|[a-z0-9][a-z0-9._-]*[a-z0-9]", re.IGNORECASE | re.ASCII)
# PEP 508 identifiers as packaging tokenises them (note the Unicode word boundaries).
_IDENTIFIER = re.compile(r"\b[a-zA-Z0-9][a-zA-Z0-9._-]*\b")
_URL = re.compile(r"[^ \t]+")
_WS = re.compile(r"[ \t]+")
_WILDCARD_TAIL = re.compile(r"\.\*")
_LOCAL_TAIL = re.compile(r"\+[a-z0-9]+(?:[-_.][a-z0-9]+)*")
_SPECIFIER_LIKE = re.compile(r"[<>=!~]+[ \t]*[^ \t,;)]*")


def canonicalize_name(name: str) -> str:
    """PEP 503 normalised name: lower case, runs of '-', '_' and '.' become '-'."""
    return _canonicalize_name(name)


def is_valid_project_name(name: str) -> bool:
    """Whether ``name`` is a valid PEP 508 / core metadata project name."""
    return _PROJECT_NAME.fullmatch(name) is not None


@dataclass(frozen=True, eq=False)
class Requirement:
    """A parsed PEP 508 requirement; equality ignores name and extra spelling."""

    name: str
    extras: frozenset[str] = frozenset()
    specifier: SpecifierSet = field(default_factory=SpecifierSet)
    url: str | None = None
    marker: Marker | None = None

    @classmethod
    def parse(cls, text: str) -> Requirement:
        """Parse a requirement string, raising InvalidRequirement on bad syntax."""
        if not isinstance(text, str):
            raise InvalidRequirement(f"invalid requirement {text!r}: not a string")
        try:
            return _parse(_Scanner(text))
        except _ParseError as exc:
            raise InvalidRequirement(
                f"invalid requirement {text!r}: {exc.message} at column {exc.position + 1}"
            ) from exc

    @property
    def canonical_name(self) -> str:
        """The PEP 503 normalised project name."""
        return canonicalize_name(self.name)

    def __str__(self) -> str:
        text = self.name
        if self.extras:
            text += f"[{','.join(sorted(self.extras))}]"
        text += str(self.specifier)
        if self.url:
            text += f" @ {self.url}" + (" " if self.marker else "")
        if self.marker:
            text += f"; {self.marker}"
        return text

    def __repr__(self) -> str:
        return f"Requirement.parse({str(self)!r})"

    def _identity(self) -> tuple[object, ...]:
        """What equality compares: names normalised, specifiers and markers canonical."""
        extras = frozenset(canonicalize_name(extra) for extra in self.extras)
        return (self.canonical_name, extras, self.specifier, self.url, self.marker)

    def __hash__(self) -> int:
        return hash(self._identity())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Requirement):
            return NotImplemented
        return self._identity() == other._identity()


def _parse(scanner: _Scanner) -> Requirement:
    """name [extras] (@ url | specifiers) [; marker], as packaging tokenises it."""
    scanner.skip_ws()
    name = scanner.take(_IDENTIFIER)
    if name is None:
        scanner.fail("a project name at the start of the requirement")
    scanner.skip_ws()
    extras = _parse_extras(scanner) if scanner.text.startswith("[", scanner.pos) else []
    scanner.skip_ws()
    url: str | None = None
    specifier = SpecifierSet()
    marker: Marker | None = None
    if scanner.take_char("@"):
        scanner.skip_ws()
        url = scanner.take(_URL)
        if url is None:
            scanner.fail("a URL after '@'")
        # The URL runs to the next space or tab, so a ';' needs a space before it.
        if not scanner.at_end():
            scanner.skip_ws()
            if not scanner.at_end():
                marker = _parse_marker(scanner, "';' and a marker after the URL and a space")
    else:
        specifier = _parse_specifier_set(scanner)
        scanner.skip_ws()
        if not scanner.at_end():
            if specifier:
                expected = "',' and another specifier, ';' and a marker"
            else:
                _reject_bad_specifier(scanner)
                expected = "'[extras]', a version specifier, '@ URL', ';' and a marker"
            marker = _parse_marker(scanner, expected)
    if not scanner.at_end():
        scanner.fail("the end of the requirement")
    return Requirement(name, frozenset(extras), specifier, url, marker)


def _parse_extras(scanner: _Scanner) -> list[str]:
    """'[' name (',' name)* ']' with optional spaces; '[]' is allowed."""
    opened = scanner.pos
    scanner.pos += 1
    scanner.skip_ws()
    extras: list[str] = []
    first = scanner.take(_IDENTIFIER)
    if first is not None:
        extras.append(first)
        while True:
            scanner.skip_ws()
            if _IDENTIFIER.match(scanner.text, scanner.pos):
                scanner.fail("',' between extra names")
            if not scanner.take_char(","):
                break
            scanner.skip_ws()
            extra = scanner.take(_IDENTIFIER)
            if extra is None:
                scanner.fail("an extra name after ','")
            extras.append(extra)
    scanner.skip_ws()
    if not scanner.take_char("]"):
        scanner.fail(f"']' to close the '[' at column {opened + 1}")
    return extras


def _parse_specifier_set(scanner: _Scanner) -> SpecifierSet:
    """Specifiers, optionally in parentheses; a trailing ',' is tolerated."""
    list_start = scanner.pos
    opened = list_start if scanner.take_char("(") else None
    scanner.skip_ws()
    pieces: list[str] = []
    while (match := _SPECIFIER_TOKEN_RE.match(scanner.text, scanner.pos)) is not None:
        start, scanner.pos = scanner.pos, match.end()
        token = match.group()
        pieces.append(token)
        tail = _WILDCARD_TAIL.match(scanner.text, scanner.pos)
        if tail is not None or (tail := _LOCAL_TAIL.match(scanner.text, scanner.pos)) is not None:
            raise _bad_specifier(token + tail.group(), start)
        scanner.skip_ws()
        if not scanner.take_char(","):
            break
        pieces.append(",")
        scanner.skip_ws()
    scanner.skip_ws()
    if opened is not None and not scanner.take_char(")"):
        if not pieces:
            _reject_bad_specifier(scanner)
        elif _SPECIFIER_LIKE.match(scanner.text, scanner.pos):
            scanner.fail("',' between version specifiers")
        scanner.fail(f"')' to close the '(' at column {opened + 1}")
    for piece in "".join(pieces).split(","):
        # A '===' token runs to the next space, so it may swallow commas.
        if piece.strip() and isinstance(problem := _parse_specifier(piece), str):
            raise _ParseError(f"invalid specifier {piece.strip()!r}: {problem}", list_start)
    return SpecifierSet.parse("".join(pieces))


def _reject_bad_specifier(scanner: _Scanner) -> None:
    """Explain an operator-like text where a specifier was expected, if there is one."""
    match = _SPECIFIER_LIKE.match(scanner.text, scanner.pos)
    if match is not None:
        raise _bad_specifier(match.group(), scanner.pos)


def _bad_specifier(text: str, position: int) -> _ParseError:
    """The error for an invalid specifier ``text`` found at ``position``."""
    return _ParseError(f"invalid specifier {text!r}: {_specifier_problem(text)}", position)


def _parse_marker(scanner: _Scanner, expected: str) -> Marker:
    """'; marker' at the end of a requirement."""
    if not scanner.take_char(";"):
        scanner.fail(expected + " or the end")
    tree = _parse_expression(scanner)
    scanner.skip_ws()
    return Marker(tree)
