"""The fields every kind of layer has, read and checked one by one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import InvalidRequirement
from .platforms import (
    DEFAULT_LINUX_TARGET,
    LinuxTarget,
    MacOSTarget,
    TargetPlatform,
    parse_linux_target,
    parse_macosx_target,
)
from .reqs import Requirement
from .tomlfields import TableReader, did_you_mean

__all__ = ["CommonFields", "read_common_fields"]

_PLATFORM_NAMES = tuple(str(p) for p in TargetPlatform)


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

    @property
    def complete(self) -> bool:
        """True if every field was valid."""
        return self.platforms_valid and None not in (
            self.requirements,
            self.versioned,
            self.linux_target,
            self.macosx_target,
            self.dynlib_exclude,
            self.package_indexes,
            self.priority_indexes,
            self.index_overrides,
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
        }


def read_common_fields(reader: TableReader, default_macosx: MacOSTarget) -> CommonFields:
    """Read and check the fields shared by runtimes, frameworks and applications."""
    requirements = _read_requirements(reader)
    platforms, platforms_valid = _read_platforms(reader)
    return CommonFields(
        requirements=requirements,
        platforms=platforms,
        platforms_valid=platforms_valid,
        versioned=reader.boolean("versioned"),
        linux_target=_read_target(reader, "linux_target", DEFAULT_LINUX_TARGET, parse_linux_target),
        macosx_target=_read_target(reader, "macosx_target", default_macosx.raw, parse_macosx_target),
        dynlib_exclude=_or_empty(reader, "dynlib_exclude", reader.string_list("dynlib_exclude")),
        package_indexes=_or_empty(reader, "package_indexes", reader.string_table("package_indexes")),
        priority_indexes=_or_empty(reader, "priority_indexes", reader.string_list("priority_indexes")),
        index_overrides=_or_empty(reader, "index_overrides", reader.string_table("index_overrides")),
    )


def _or_empty(reader: TableReader, key: str, value: Any) -> Any:
    # An absent optional field reads as empty; a present but invalid one stays None.
    if value is None and key not in reader.table:
        return {} if key in ("package_indexes", "index_overrides") else ()
    return value


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


def _read_target(reader: TableReader, key: str, default: str, parse: Any) -> Any:
    raw = reader.string(key)
    if raw is None:
        return None if key in reader.table else parse(default)
    try:
        return parse(raw)
    except ValueError as exc:
        reader.error(key, str(exc))
        return None
