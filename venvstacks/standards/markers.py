"""PEP 508 environment markers: parsing, normalised text and evaluation.

Accepted syntax, ``str()`` and ``evaluate()`` follow packaging 26.3's
``packaging.markers.Marker``.  The parser (a cursor over PEP 508 tokens) is
shared with venvstacks.reqs, which parses markers inside requirements.
"""

from __future__ import annotations

import ast
import os
import platform
import re
import sys
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from functools import cached_property
from typing import NoReturn

from ..errors import InvalidMarker, UndefinedEnvironmentName
from ..standards.versions import Specifier, _parse_specifier

__all__ = ["Comparison", "Environment", "Group", "Marker", "Value", "Variable", "default_environment"]

# Variables whose comparisons use PEP 440 version semantics where possible.
_VERSION_VARIABLES = frozenset(
    {"implementation_version", "platform_release", "python_full_version", "python_version"}
)
# Variables that may hold a set of names (PEP 685 extras, PEP 735 groups).
_SET_VARIABLES = frozenset({"extras", "dependency_groups"})


def _canonicalize_name(name: str) -> str:
    """PEP 503 normalisation: lower case, runs of '-', '_' and '.' become '-'."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Variable:
    """An environment variable such as ``python_version`` (legacy names normalised)."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Value:
    """A quoted literal, holding its decoded text."""

    value: str

    def __str__(self) -> str:
        quote = "'" if '"' in self.value else '"'
        return f"{quote}{self.value}{quote}"


@dataclass(frozen=True)
class Comparison:
    """``lhs op rhs``, where op is a PEP 440 operator, ``in`` or ``not in``."""

    lhs: Variable | Value
    op: str
    rhs: Variable | Value

    def __str__(self) -> str:
        return f"{self.lhs} {self.op} {self.rhs}"


@dataclass(frozen=True)
class Group:
    """A marker expression or parenthesised sub-expression.

    ``items`` alternates operands (Comparison or Group) with ``"and"``/``"or"``.
    """

    items: tuple[Comparison | Group | str, ...]


class _ParseError(Exception):
    """A syntax error at a position; callers turn it into their own error type."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


_WS = re.compile(r"[ \t]+")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_OPERATOR = re.compile(r"===|==|~=|!=|<=|>=|<|>")
_OPERATOR_RUN = re.compile(r"[<>=!~]+")
_BOOLEAN = re.compile(r"\b(?:or|and)\b")
_IN = re.compile(r"\bin\b")
_NOT = re.compile(r"\bnot\b")
_VARIABLE = re.compile(
    r"""\b(?:
        python_version | python_full_version | os[._]name | sys[._]platform
      | platform_(?:release|system) | platform[._](?:version|machine|python_implementation)
      | python_implementation | implementation_(?:name|version) | extras? | dependency_groups
    )\b""",
    re.VERBOSE,
)
# Backslash escapes that the Python compiler would warn about; rewritten so
# that ast.literal_eval gives its lenient result without emitting a warning.
_ESCAPE = re.compile(r"\\([0-7]{1,3}|.)", re.DOTALL)
_KNOWN_ESCAPES = frozenset("\\'\"abfnrtvxNuU\n\r")


class _Scanner:
    """A cursor over PEP 508 text; ``[ \\t]`` is the only whitespace between tokens."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def take(self, pattern: re.Pattern[str]) -> str | None:
        """Consume and return the token matching ``pattern`` here, if any."""
        match = pattern.match(self.text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        return match.group()

    def take_char(self, char: str) -> bool:
        """Consume ``char`` if it comes next."""
        if self.text.startswith(char, self.pos):
            self.pos += len(char)
            return True
        return False

    def skip_ws(self) -> None:
        """Skip spaces and tabs."""
        self.take(_WS)

    def at_end(self) -> bool:
        """Whether all text has been consumed."""
        return self.pos == len(self.text)

    def fail(self, expected: str, position: int | None = None) -> NoReturn:
        """Raise a _ParseError saying what was expected and what was found."""
        pos = self.pos if position is None else position
        found = self.text[pos : pos + 12]
        found_text = f"found {found!r}" if found else "found the end"
        raise _ParseError(f"expected {expected}, {found_text}", pos)


def _decode_string(token: str) -> str | None:
    """The value of a quoted token as Python would read it, or None if invalid."""

    def fix(match: re.Match[str]) -> str:
        escaped = match.group(1)
        if escaped[0] in "01234567":  # octal escapes above 0o377 also warn
            code = int(escaped, 8)
            return match.group() if code <= 0o377 else f"\\U{code:08x}"
        if escaped in _KNOWN_ESCAPES:
            return match.group()
        return "\\\\" + escaped  # an unknown escape keeps its backslash

    try:
        value = ast.literal_eval(token[0] + _ESCAPE.sub(fix, token[1:-1]) + token[-1])
    except (SyntaxError, ValueError):
        return None
    return value if isinstance(value, str) else None


def _parse_operand(scanner: _Scanner) -> Variable | Value:
    """marker_var: a variable name or a quoted string."""
    name = scanner.take(_VARIABLE)
    if name is not None:
        name = name.replace(".", "_")
        if name == "python_implementation":
            name = "platform_python_implementation"
        return Variable(name)
    start = scanner.pos
    token = scanner.take(_QUOTED)
    if token is None:
        scanner.fail("a marker variable (such as python_version) or a quoted string")
    value = _decode_string(token)
    if value is None:
        raise _ParseError(f"invalid quoted string {token!r}", start)
    if '"' in value and "'" in value:
        # packaging accepts this but then cannot turn the marker into text.
        raise _ParseError(f"quoted string {token!r} holds both kinds of quote", start)
    return Value(value)


def _parse_operator(scanner: _Scanner) -> str:
    """marker_op: a version operator, ``in`` or ``not in``."""
    if scanner.take(_IN):
        return "in"
    if scanner.take(_NOT):
        if not scanner.take(_WS):
            scanner.fail("whitespace after 'not'")
        if not scanner.take(_IN):
            scanner.fail("'in' after 'not'")
        return "not in"
    start = scanner.pos
    op = scanner.take(_OPERATOR)
    run = _OPERATOR_RUN.match(scanner.text, start)
    if op is None or (run is not None and run.group() != op):
        scanner.fail("a marker operator (<, <=, !=, ==, >=, >, ~=, ===, in, not in)", start)
    return op


def _normalise_names(
    lhs: Variable | Value, rhs: Variable | Value
) -> tuple[Variable | Value, Variable | Value]:
    """PEP 685: literals compared with ``extra`` (or found ``in extras``) are normalised."""
    if isinstance(lhs, Variable) and lhs.name == "extra" and isinstance(rhs, Value):
        return lhs, Value(_canonicalize_name(rhs.value))
    if isinstance(rhs, Variable) and isinstance(lhs, Value):
        if rhs.name == "extra" or rhs.name in _SET_VARIABLES:
            return Value(_canonicalize_name(lhs.value)), rhs
    return lhs, rhs


def _parse_atom(scanner: _Scanner) -> Comparison | Group:
    """A comparison, or a parenthesised expression; surrounding whitespace is skipped."""
    scanner.skip_ws()
    if scanner.text.startswith("(", scanner.pos):
        opened = scanner.pos
        scanner.pos += 1
        scanner.skip_ws()
        node: Comparison | Group = _parse_expression(scanner)
        scanner.skip_ws()
        if not scanner.take_char(")"):
            scanner.fail(f"')' to close the '(' at column {opened + 1}")
    else:
        lhs = _parse_operand(scanner)
        scanner.skip_ws()
        op = _parse_operator(scanner)
        scanner.skip_ws()
        rhs = _parse_operand(scanner)
        lhs, rhs = _normalise_names(lhs, rhs)
        node = Comparison(lhs, op, rhs)
    scanner.skip_ws()
    return node


def _parse_expression(scanner: _Scanner) -> Group:
    """Parse ``atom (('and' | 'or') atom)*`` at the scanner's position."""
    items: list[Comparison | Group | str] = [_parse_atom(scanner)]
    while (word := scanner.take(_BOOLEAN)) is not None:
        items += [word, _parse_atom(scanner)]
    return Group(tuple(items))


def _format(node: Comparison | Group, top: bool) -> str:
    """Marker text; nested groups keep their parentheses, redundant ones are dropped."""
    if isinstance(node, Comparison):
        return str(node)
    if len(node.items) == 1:
        only = node.items[0]
        assert not isinstance(only, str)
        return _format(only, top)
    text = " ".join(item if isinstance(item, str) else _format(item, False) for item in node.items)
    return text if top else f"({text})"


#: What Marker.evaluate reads: variable name to value (a set for extras/dependency_groups).
Environment = Mapping[str, str | AbstractSet[str]]


@dataclass(frozen=True, eq=False)
class Marker:
    """A parsed PEP 508 marker; equal markers have equal normalised text."""

    tree: Group

    @classmethod
    def parse(cls, text: str) -> Marker:
        """Parse marker text, raising InvalidMarker with the position of the problem."""
        if not isinstance(text, str):
            raise InvalidMarker(f"invalid marker {text!r}: not a string")
        scanner = _Scanner(text)
        try:
            tree = _parse_expression(scanner)
            if not scanner.at_end():
                scanner.fail("'and', 'or' or the end of the marker")
        except _ParseError as exc:
            raise InvalidMarker(
                f"invalid marker {text!r}: {exc.message} at column {exc.position + 1}"
            ) from exc
        return cls(tree)

    @cached_property
    def _text(self) -> str:
        return _format(self.tree, True)

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"Marker.parse({self._text!r})"

    def __hash__(self) -> int:
        return hash(self._text)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Marker):
            return NotImplemented
        return self._text == other._text

    def evaluate(self, environment: Environment | None = None) -> bool:
        """Evaluate against ``environment`` (default: the running interpreter).

        Only the given mapping is consulted: a variable it lacks raises
        UndefinedEnvironmentName, except ``extra``, which defaults to ``""``.
        ``extras`` and ``dependency_groups`` may map to sets of names.
        """
        env: dict[str, str | AbstractSet[str]] = dict(
            default_environment() if environment is None else environment
        )
        extra = env.get("extra")
        env["extra"] = _canonicalize_name(extra) if isinstance(extra, str) and extra else ""
        full_version = env.get("python_full_version")
        if isinstance(full_version, str) and full_version.endswith("+"):
            env["python_full_version"] = full_version + "local"  # untagged CPython builds
        return self._evaluate(self.tree, env)

    def _evaluate(self, group: Group, env: Environment) -> bool:
        """``or`` of ``and``-runs; like packaging, every comparison is evaluated."""
        runs: list[list[bool]] = [[]]
        for item in group.items:
            if item == "or":
                runs.append([])
            elif isinstance(item, Group):
                runs[-1].append(self._evaluate(item, env))
            elif isinstance(item, Comparison):
                runs[-1].append(self._compare(item, env))
        return any(all(run) for run in runs)

    def _compare(self, item: Comparison, env: Environment) -> bool:
        """Evaluate one comparison the way packaging 26.3 does."""
        rhs_text = item.rhs.name if isinstance(item.rhs, Variable) else item.rhs.value
        rhs: str | AbstractSet[str]
        if isinstance(item.lhs, Variable):
            key = item.lhs.name
            lhs, rhs = self._lookup(env, key), rhs_text
        else:
            # packaging looks up the right-hand side even when it is a literal.
            key = rhs_text
            lhs, rhs = item.lhs.value, self._lookup(env, key)
        if not isinstance(lhs, str):
            raise InvalidMarker(
                f"cannot evaluate {str(item)!r} in marker {str(self)!r}: {key!r} holds a set,"
                " which only works on the right of 'in' / 'not in'"
            )
        if key in _SET_VARIABLES:
            lhs = _canonicalize_name(lhs)
            if isinstance(rhs, str):
                rhs = _canonicalize_name(rhs)
            else:
                rhs = {_canonicalize_name(name) for name in rhs}
        if key in _VERSION_VARIABLES and isinstance(rhs, str):
            spec = _parse_specifier(item.op + rhs)
            if isinstance(spec, Specifier):
                return spec.contains(lhs, prereleases=True)
        if item.op == "in":
            return lhs in rhs
        if item.op == "not in":
            return lhs not in rhs
        if item.op in ("==", "<=", ">="):  # non-version values: equal or not, no ordering
            return lhs == rhs
        if item.op == "!=":
            return lhs != rhs
        if item.op in ("<", ">"):
            return False
        raise InvalidMarker(
            f"cannot evaluate {str(item)!r} in marker {str(self)!r}: {item.op!r} needs"
            f" PEP 440 versions, got {lhs!r} and {rhs!r}"
        )

    def _lookup(self, env: Environment, key: str) -> str | AbstractSet[str]:
        """``env[key]``, or UndefinedEnvironmentName."""
        try:
            return env[key]
        except KeyError as exc:
            raise UndefinedEnvironmentName(
                f"cannot evaluate marker {str(self)!r}: the environment does not define {key!r}"
            ) from exc


def default_environment() -> dict[str, str]:
    """The marker environment of the running interpreter (packaging's keys)."""
    info = sys.implementation.version
    implementation_version = f"{info.major}.{info.minor}.{info.micro}"
    if info.releaselevel != "final":
        implementation_version += info.releaselevel[0] + str(info.serial)
    return {
        "implementation_name": sys.implementation.name,
        "implementation_version": implementation_version,
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    }
