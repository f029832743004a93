"""A small, deterministic TOML writer laid out like uv's pylock.toml files.

``tomllib.loads(dumps(data)) == data`` for every value it accepts. Keys keep their given
order within each group: a table's plain ``key = value`` lines come first, then its
sub-tables (``[parent.key]``) and arrays of tables (``[[parent.key]]``). Output uses LF
line endings, basic strings and RFC 3339 date-times; comments are never written.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from typing import TypeGuard

__all__ = ["TomlTable", "dumps"]

TomlTable = Mapping[str, object]
"""TOML data as `tomllib` reads it (or as `dumps` writes it): keys to TOML values, unchecked."""

_BARE_KEY_RE = re.compile(r"[A-Za-z0-9_-]+")
_SHORT_ESCAPES = {
    "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\",
}
_NEEDS_ESCAPE_RE = re.compile(r'[\x00-\x1f\x7f"\\]')
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")
_INT_RANGE = range(-(2**63), 2**63)
_ELEMENT_INDENT = "    "


def dumps(data: TomlTable, *, inline_arrays: frozenset[str] = frozenset()) -> str:
    """Render a mapping as TOML text (empty, or ending in a newline).

    Values may be mappings, lists or tuples, ``str``, ``int`` (64-bit), ``bool``,
    ``float``, ``datetime.datetime`` (naive or with a whole-minute UTC offset),
    ``datetime.date`` and ``datetime.time``. A list whose elements are all mappings
    becomes an array of tables, one ``[[parent.key]]`` section per element.

    ``inline_arrays`` names dotted key paths (array indices left out, as in
    ``"packages.wheels"``) whose value is written inline on its key's line instead:
    tables as ``{ k = v, ... }``, lists as ``[...]``. As uv does, such a list with two
    or more elements puts each element on its own line, indented four spaces, with a
    trailing comma. Keys containing dots cannot be named in ``inline_arrays``.

    Raises TypeError for a non-string key or an unsupported value (such as None), and
    ValueError for a value TOML cannot hold (an integer outside 64 bits, a string with
    a lone surrogate, a UTC offset with seconds).
    """
    lines: list[str] = []
    _write_table(lines, (), data, header=None, inline_paths=inline_arrays)
    return "".join(f"{line}\n" for line in lines)


def _write_table(
    lines: list[str],
    path: tuple[str, ...],
    table: TomlTable,
    header: str | None,
    inline_paths: frozenset[str],
) -> None:
    """Append a table's header (if any), its key/value lines, then its sub-sections."""
    inline_items: list[tuple[str, object]] = []
    sections: list[tuple[str, object]] = []
    for key, value in table.items():
        _check_key(key, path)
        if ".".join((*path, key)) not in inline_paths and _is_section(value):
            sections.append((key, value))
        else:
            inline_items.append((key, value))
    if header is not None:
        if lines:
            lines.append("")
        lines.append(header)
    for key, value in inline_items:
        child = (*path, key)
        if ".".join(child) in inline_paths and _is_array(value) and len(value) > 1:  # one element a line
            lines.append(f"{_key(key)} = [")
            lines.extend(f"{_ELEMENT_INDENT}{_value(item, child)}," for item in value)
            lines.append("]")
        else:
            lines.append(f"{_key(key)} = {_value(value, child)}")
    for key, value in sections:
        child = (*path, key)
        dotted = ".".join(_key(part) for part in child)
        if isinstance(value, Mapping):
            # A table holding only sub-sections is created implicitly by their headers.
            implicit = bool(value) and all(
                _is_section(item) and ".".join((*child, name)) not in inline_paths
                for name, item in value.items()
                if isinstance(name, str)
            )
            _write_table(lines, child, value, None if implicit else f"[{dotted}]", inline_paths)
        elif _is_array(value):  # of tables (see `_is_section`)
            for element in value:
                assert isinstance(element, Mapping)
                _write_table(lines, child, element, f"[[{dotted}]]", inline_paths)


def _is_array(value: object) -> TypeGuard[list[object] | tuple[object, ...]]:
    return isinstance(value, (list, tuple))


def _is_section(value: object) -> bool:
    """Whether a value is written as a ``[table]`` or as ``[[array of tables]]`` sections."""
    if isinstance(value, Mapping):
        return True
    return _is_array(value) and bool(value) and all(isinstance(item, Mapping) for item in value)


def _where(path: tuple[str, ...]) -> str:
    return f"at {'.'.join(path)!r}" if path else "at the top level"


def _check_key(key: object, path: tuple[str, ...]) -> None:
    if not isinstance(key, str):
        raise TypeError(f"TOML keys must be strings, not {type(key).__name__} ({_where(path)})")


def _key(key: str) -> str:
    """A key, bare when TOML allows it, else as a basic string."""
    return key if _BARE_KEY_RE.fullmatch(key) else _string(key, ())


def _string(text: str, path: tuple[str, ...]) -> str:
    if _SURROGATE_RE.search(text):
        raise ValueError(f"TOML strings cannot hold lone surrogates ({_where(path)})")
    escaped = _NEEDS_ESCAPE_RE.sub(_escape, text)
    return f'"{escaped}"'


def _escape(match: re.Match[str]) -> str:
    char = match[0]
    return _SHORT_ESCAPES.get(char) or f"\\u{ord(char):04X}"


def _value(value: object, path: tuple[str, ...]) -> str:
    """A value written inline: a scalar, ``[a, b]`` or ``{ k = v, ... }``."""
    if isinstance(value, str):
        return _string(value, path)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if value not in _INT_RANGE:
            raise ValueError(f"TOML integers must fit in 64 bits, not {value} ({_where(path)})")
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, dt.datetime):
        return _datetime(value, path)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        if value.tzinfo is not None:
            raise ValueError(f"TOML local times cannot have a time zone ({_where(path)})")
        return _clock(value)
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = []
        for key, item in value.items():
            _check_key(key, path)
            items.append(f"{_key(key)} = {_value(item, (*path, key))}")
        return "{ " + ", ".join(items) + " }"
    if _is_array(value):
        return "[" + ", ".join(_value(item, path) for item in value) + "]"
    raise TypeError(f"TOML cannot hold a value of type {type(value).__name__} ({_where(path)})")


def _clock(value: dt.time | dt.datetime) -> str:
    """``HH:MM:SS``, with the fraction of a second (trailing zeros dropped) if not zero."""
    text = f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    if value.microsecond:
        text += f".{value.microsecond:06d}".rstrip("0")
    return text


def _datetime(value: dt.datetime, path: tuple[str, ...]) -> str:
    """RFC 3339: ``Z`` for UTC, ``+HH:MM`` for other offsets, nothing for naive values."""
    text = f"{value.date().isoformat()}T{_clock(value)}"
    offset = value.utcoffset()
    if offset is None:
        return text
    if not offset:
        return text + "Z"
    if offset % dt.timedelta(minutes=1):
        raise ValueError(f"TOML UTC offsets must be whole minutes, not {offset} ({_where(path)})")
    sign = "-" if offset < dt.timedelta(0) else "+"
    minutes = abs(offset) // dt.timedelta(minutes=1)
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"
