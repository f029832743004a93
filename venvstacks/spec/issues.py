"""Typed reading of TOML tables that records every problem instead of stopping at the first."""

from __future__ import annotations

import datetime
import difflib
from collections.abc import Collection, Mapping
from typing import TypeVar

from ..errors import SpecIssue
from ..standards.tomlwriter import TomlTable

__all__ = ["IssueLog", "TableReader", "describe_type", "closest"]

_Value = TypeVar("_Value")


def describe_type(value: object) -> str:
    """How a TOML value's type is named in messages (`a string`, `an array`...)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, (datetime.date, datetime.time)):
        return "a date/time"
    return type(value).__name__


def closest(word: str, choices: Collection[str]) -> str | None:
    """The choice most like `word`, if any is close enough to be a likely typo."""
    matches = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(word: str, choices: Collection[str]) -> str:
    """` (did you mean 'x'?)` or the empty string."""
    match = closest(word, choices)
    return f" (did you mean {match!r}?)" if match else ""


class IssueLog:
    """Collects the problems found in one specification, in the order found."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.issues: list[SpecIssue] = []

    def add(self, layer: str | None, field: str | None, message: str, *, path: str | None = None) -> None:
        """Record a problem with `field` of `layer` (either may be None)."""
        self.issues.append(SpecIssue(path or self.path, layer, field, message))

    def __len__(self) -> int:
        return len(self.issues)


class TableReader:
    """Reads typed fields from one TOML table; a bad field is logged and read as None."""

    def __init__(
        self, table: TomlTable, log: IssueLog, layer: str | None, *, prefix: str = "", path: str | None = None
    ) -> None:
        self.table = table
        self.log = log
        self.layer = layer
        self.prefix = prefix
        self.path = path

    def error(self, field: str | None, message: str) -> None:
        """Record a problem with one of this table's fields."""
        self.log.add(self.layer, None if field is None else self.prefix + field, message, path=self.path)

    def check_keys(self, allowed: Collection[str], elsewhere: Mapping[str, str] | None = None) -> None:
        """Report every key that is not allowed here, suggesting the likeliest intended one.

        `elsewhere` maps keys that are valid for other kinds of table to where they belong.
        """
        for key in self.table:
            if key in allowed:
                continue
            if elsewhere and key in elsewhere:
                self.error(key, f"not allowed here: {elsewhere[key]}")
            else:
                self.error(key, "unknown field" + did_you_mean(key, allowed))

    def _get(self, key: str, expected: type[_Value], what: str, required: bool) -> _Value | None:
        """The field if it is an `expected` (a bool is no int here); None, with the problem logged, if not."""
        if key not in self.table:
            if required:
                self.error(None, f"missing required field {self.prefix + key!r}")
            return None
        value = self.table[key]
        if isinstance(value, expected) and not (isinstance(value, bool) and expected is not bool):
            return value
        self.error(key, f"expected {what}, got {describe_type(value)} ({_short_repr(value)})")
        return None

    def string(self, key: str, *, required: bool = False) -> str | None:
        """A string field."""
        return self._get(key, str, "a string", required)

    def boolean(self, key: str, *, default: bool = False) -> bool | None:
        """A boolean field; its default when absent, None when mistyped."""
        if key not in self.table:
            return default
        return self._get(key, bool, "a boolean (true or false)", False)

    def string_list(self, key: str, *, required: bool = False) -> tuple[str, ...] | None:
        """An array of strings; None if absent or if any element is not a string."""
        value = self._get(key, list, "an array of strings", required)
        if value is None:
            return None
        good = True
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self.error(f"{key}[{index}]", f"expected a string, got {describe_type(item)} ({_short_repr(item)})")
                good = False
        return tuple(value) if good else None

    def string_table(self, key: str) -> dict[str, str] | None:
        """A table whose values are all strings; None if absent or mistyped."""
        value = self._get(key, dict, "a table of strings", False)
        if value is None:
            return None
        good = True
        for name, item in value.items():
            if not isinstance(item, str):
                self.error(f"{key}.{name}", f"expected a string, got {describe_type(item)} ({_short_repr(item)})")
                good = False
        return dict(value) if good else None


def _short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
