"""The fields every kind of layer has, read and checked one by one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import InvalidRequirement
from ..platforms import (
    DEFAULT_LINUX_TARGET,
    LinuxTarget,
    MacOSTarget,
    TargetPlatform,
    parse_linux_target,
    parse_macosx_target,
)
from ..standards.requirements import Requirement
from ..spec.modules import check_hook
from ..spec.issues import TableReader, describe_type, did_you_mean

_Target = TypeVar("_Target")

__all__ = ["CommonFields", "read_common_fields"]

_PLATFORM_NAMES = tuple(str(p) for p in TargetPlatform)
_SCRIPT_NAME = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9._+-]*")


@dataclass(frozen=True)
class CommonFields:
    """The shared layer fields; a field is None when it was invalid (and reported)."""

    requirements: tuple[Requirement, ...] | None
    platforms: tuple[TargetPlatform, ...] | None
    """The declared platforms, or None when not declared (inferred later)."""
    platforms_valid: bool
    versioned: bool | None
    linux_target: LinuxTarget | None
    macosx_target: MacOSTarget | None
    dynlib_exclude: tuple[str, ...] | None
    package_indexes: dict[str, str] | None
    priority_indexes: tuple[str, ...] | None
    index_overrides: dict[str, str] | None
    console_scripts: bool | tuple[str, ...] | None
    """All, none or the named entry-point scripts (the kind's default when absent)."""
    postinstall_hook: Path | None
    hook_valid: bool

    @property
    def complete(self) -> bool:
        """True if every field was valid."""
        return self.platforms_valid and self.hook_valid and None not in (
            self.requirements,
            self.versioned,
            self.linux_target,
            self.macosx_target,
            self.dynlib_exclude,
            self.package_indexes,
            self.priority_indexes,
            self.index_overrides,
            self.console_scripts,
        )

    def model_args(self, name: str) -> dict[str, Any]:
        """Keyword arguments for the layer model (only valid when `complete`)."""
        return {
            "name": name,
            "requirements": self.requirements,
            "platforms_declared": self.platforms is not None,
            "versioned": self.versioned,
            "linux_target": self.linux_target,
            "macosx_target": self.macosx_target,
            "dynlib_exclude": self.dynlib_exclude,
            "priority_indexes": self.priority_indexes,
            "index_overrides": self.index_overrides,
            "console_scripts": self.console_scripts,
            "postinstall_hook": self.postinstall_hook,
        }


def read_common_fields(reader: TableReader, default_macosx: MacOSTarget, spec_dir: Path, *, scripts_default: bool) -> CommonFields:
    """Read and check the fields shared by runtimes, frameworks and applications.

    `scripts_default` is whether the layer's kind writes console scripts unless told otherwise.
    """
    requirements = _read_requirements(reader)
    platforms, platforms_valid = _read_platforms(reader)
    hook, hook_valid = check_hook(reader, spec_dir)
    return CommonFields(
        requirements=requirements,
        platforms=platforms,
        platforms_valid=platforms_valid,
        versioned=reader.boolean("versioned"),
        linux_target=_read_target(reader, "linux_target", DEFAULT_LINUX_TARGET, parse_linux_target),
        macosx_target=_read_target(reader, "macosx_target", default_macosx.raw, parse_macosx_target),
        dynlib_exclude=_or_empty(reader, "dynlib_exclude", reader.string_list("dynlib_exclude"), ()),
        package_indexes=_or_empty(reader, "package_indexes", reader.string_table("package_indexes"), {}),
        priority_indexes=_or_empty(reader, "priority_indexes", reader.string_list("priority_indexes"), ()),
        index_overrides=_or_empty(reader, "index_overrides", reader.string_table("index_overrides"), {}),
        console_scripts=_read_console_scripts(reader, scripts_default),
        postinstall_hook=hook,
        hook_valid=hook_valid,
    )


def _read_console_scripts(reader: TableReader, default: bool) -> bool | tuple[str, ...] | None:
    """`console_scripts`: true, false or a list of script names; None when invalid (reported)."""
    if "console_scripts" not in reader.table:
        return default
    value = reader.table["console_scripts"]
    if isinstance(value, bool):
        return value
    names = reader.string_list("console_scripts") if isinstance(value, list) else None
    if names is None:
        if not isinstance(value, list):
            reader.error("console_scripts", f"expected true, false or an array of script names, got {describe_type(value)}")
        return None
    valid = True
    for position, name in enumerate(names):
        if not _SCRIPT_NAME.fullmatch(name):
            reader.error(f"console_scripts[{position}]", f"{name!r} is not a script name (letters, digits, '.', '_', '-', '+')")
            valid = False
        elif name in names[:position]:
            reader.error(f"console_scripts[{position}]", f"script {name!r} is listed more than once")
            valid = False
    return tuple(names) if valid else None


def _or_empty(reader: TableReader, key: str, value: _Target | None, empty: _Target) -> _Target | None:
    """An absent optional field reads as `empty`; a present but invalid one stays None."""
    return empty if value is None and key not in reader.table else value


def _read_requirements(reader: TableReader) -> tuple[Requirement, ...] | None:
    texts = reader.string_list("requirements", required=True)
    if texts is None:
        return None
    parsed: list[Requirement] = []
    for position, text in enumerate(texts):
        try:
            parsed.append(Requirement.parse(text))
        except InvalidRequirement as exc:
            detail = str(exc).removeprefix("invalid requirement ")
            reader.error(f"requirements[{position}]", f"invalid requirement syntax {detail}")
    return tuple(parsed) if len(parsed) == len(texts) else None


def _read_platforms(reader: TableReader) -> tuple[tuple[TargetPlatform, ...] | None, bool]:
    if "platforms" not in reader.table:
        return None, True
    names = reader.string_list("platforms")
    if names is None:
        return None, False
    platforms: list[TargetPlatform] = []
    valid = True
    for position, name in enumerate(names):
        field = f"platforms[{position}]"
        if name not in _PLATFORM_NAMES:
            expected = ", ".join(_PLATFORM_NAMES)
            reader.error(
                field,
                f"invalid target platform {name!r}{did_you_mean(name, _PLATFORM_NAMES)} (expected one of: {expected})",
            )
            valid = False
        elif TargetPlatform(name) in platforms:
            reader.error(field, f"platform {name!r} is listed more than once")
            valid = False
        else:
            platforms.append(TargetPlatform(name))
    return tuple(platforms), valid


def _read_target(reader: TableReader, key: str, default: str, parse: Callable[[str], _Target]) -> _Target | None:
    raw = reader.string(key)
    if raw is None:
        return None if key in reader.table else parse(default)
    try:
        return parse(raw)
    except ValueError as exc:
        reader.error(key, str(exc))
        return None
