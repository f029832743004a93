"""Wheel file names, and whether a locked package has wheels for every target platform.

File names follow the binary distribution format: the accept/reject decision and the
tags match ``packaging.utils.parse_wheel_filename`` (packaging 26.3). Platform coverage
follows upstream venvstacks' cross-platform lock check: a package must have a wheel
usable on each platform it applies to, given the layer's glibc and macOS targets.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import InvalidVersion, InvalidWheelFilename
from ..platforms import TargetPlatform
from ..standards.versions import Version

__all__ = [
    "WheelGap",
    "WheelName",
    "describe_wheel_gaps",
    "find_wheel_gaps",
    "parse_wheel_filename",
    "platform_supported",
]

# PEP 427: an escaped project name is word characters and dots (and never holds "__").
_DISTRIBUTION_RE = re.compile(r"[\w.]+")
_BUILD_RE = re.compile(r"[0-9]")
_NAME_SEPARATORS_RE = re.compile(r"[-_.]+")
_WHEEL_LAYOUT = "name-version[-build]-python-abi-platform.whl"


@dataclass(frozen=True)
class WheelName:
    """The parts of a wheel file name, as written in it (tags keep their order and case)."""

    distribution: str
    """The escaped project name (``typing_extensions``); see `canonical_name`."""
    version: str
    """The version as written; it is known to be a valid PEP 440 version."""
    build: str | None
    """The build tag (starting with a digit), or None if the file name has none."""
    python_tags: tuple[str, ...]
    abi_tags: tuple[str, ...]
    platform_tags: tuple[str, ...]

    @property
    def canonical_name(self) -> str:
        """The project name normalised as PEP 503 says (``typing-extensions``)."""
        return _NAME_SEPARATORS_RE.sub("-", self.distribution).lower()

    @property
    def tags(self) -> frozenset[tuple[str, str, str]]:
        """Every (python, abi, platform) tag the compressed tag sets expand to, lower-cased."""
        return frozenset(
            (python.lower(), abi.lower(), platform.lower())
            for python in self.python_tags
            for abi in self.abi_tags
            for platform in self.platform_tags
        )


def _invalid(filename: str, reason: str) -> InvalidWheelFilename:
    return InvalidWheelFilename(f"invalid wheel file name {filename!r}: {reason}")


def _tag_set(filename: str, kind: str, text: str) -> tuple[str, ...]:
    tags = tuple(text.split("."))
    if "" in tags:
        raise _invalid(filename, f"the {kind} tag set {text!r} has an empty tag")
    return tags


def parse_wheel_filename(filename: str) -> WheelName:
    """Split a wheel file name into its parts; raise InvalidWheelFilename if it is malformed."""
    if not filename.endswith(".whl"):
        raise _invalid(filename, "it must end in '.whl'")
    parts = filename[: -len(".whl")].split("-")
    if len(parts) not in (5, 6):
        raise _invalid(
            filename,
            f"expected 5 or 6 dash-separated parts ({_WHEEL_LAYOUT}), found {len(parts)}",
        )
    distribution, version = parts[0], parts[1]
    build = parts[2] if len(parts) == 6 else None
    if "__" in distribution or _DISTRIBUTION_RE.fullmatch(distribution) is None:
        raise _invalid(
            filename,
            f"the distribution name {distribution!r} must be letters, digits, '_' and '.' "
            "(with no '__')",
        )
    try:
        Version.parse(version)
    except InvalidVersion as exc:
        raise _invalid(filename, f"{version!r} is not a valid PEP 440 version") from exc
    if build is not None and _BUILD_RE.match(build) is None:
        raise _invalid(filename, f"the build tag {build!r} must start with a digit")
    python_tags = _tag_set(filename, "python", parts[-3])
    abi_tags = _tag_set(filename, "ABI", parts[-2])
    platform_tags = _tag_set(filename, "platform", parts[-1])
    for tag in python_tags:
        if not tag.isidentifier():
            raise _invalid(filename, f"the python tag {tag!r} is not an identifier")
    return WheelName(distribution, version, build, python_tags, abi_tags, platform_tags)


# Linux: the legacy manylinux names and the glibc version each one stands for.
_MANYLINUX_ALIASES = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_LEGACY_MANYLINUX_RE = re.compile(r"(manylinux1|manylinux2010|manylinux2014)_(.+)")
_MANYLINUX_RE = re.compile(r"manylinux_([0-9]+)_([0-9]+)_(.+)")
_MACOSX_RE = re.compile(r"macosx_([0-9]+)_([0-9]+)_(.+)")

_LINUX_ARCHES = {
    TargetPlatform.LINUX_X86_64: "x86_64",
    TargetPlatform.LINUX_AARCH64: "aarch64",
}
# macOS: the binary formats a wheel may name that include the target's architecture.
_MACOS_FORMATS = {
    TargetPlatform.MACOSX_ARM64: frozenset({"arm64", "universal2"}),
    TargetPlatform.MACOSX_X86_64: frozenset(
        {"x86_64", "universal2", "universal", "intel", "fat64", "fat32"}
    ),
}


def _tag_supported(
    tag: str, platform: TargetPlatform, linux_glibc: tuple[int, int], macos: tuple[int, int]
) -> bool:
    if tag == "any" or tag == platform.value:
        return True
    if platform in _LINUX_ARCHES:
        legacy = _LEGACY_MANYLINUX_RE.fullmatch(tag)
        if legacy is not None:
            glibc, arch = _MANYLINUX_ALIASES[legacy[1]], legacy[2]
        else:
            match = _MANYLINUX_RE.fullmatch(tag)
            if match is None:
                return False
            glibc, arch = (int(match[1]), int(match[2])), match[3]
        return arch == _LINUX_ARCHES[platform] and glibc <= linux_glibc
    if platform in _MACOS_FORMATS:
        match = _MACOSX_RE.fullmatch(tag)
        if match is None:
            return False
        version = (int(match[1]), int(match[2]))
        return match[3] in _MACOS_FORMATS[platform] and version <= macos
    return False  # Windows: only the exact platform name matches.


def platform_supported(
    platform_tags: Iterable[str],
    platform: TargetPlatform,
    *,
    linux_glibc: tuple[int, int],
    macos: tuple[int, int],
) -> bool:
    """Whether any of the given wheel platform tags runs on a target platform.

    Tags compare case-insensitively. ``any`` and the target's own name (such as
    ``linux_x86_64`` or ``win_amd64``) always match. On Linux a ``manylinux_X_Y_<arch>``
    tag matches when ``(X, Y) <= linux_glibc`` and the architecture is the target's
    (``manylinux1``, ``manylinux2010`` and ``manylinux2014`` stand for glibc 2.5, 2.12
    and 2.17); ``musllinux`` never matches. On macOS a ``macosx_X_Y_<format>`` tag
    matches when ``(X, Y) <= macos`` and the format includes the target's architecture:
    ``arm64`` or ``universal2`` for arm64; ``x86_64``, ``universal2``, ``universal``,
    ``intel``, ``fat64`` or ``fat32`` for x86_64. On Windows only the exact name matches.
    """
    return any(
        _tag_supported(tag.lower(), platform, linux_glibc, macos) for tag in platform_tags
    )


@dataclass(frozen=True)
class WheelGap:
    """A package that has no usable wheel on some of the platforms it applies to."""

    package: str
    missing: tuple[TargetPlatform, ...]


def find_wheel_gaps(
    packages: Iterable[tuple[str, Sequence[str], Sequence[TargetPlatform]]],
    *,
    linux_glibc: tuple[int, int],
    macos: tuple[int, int],
) -> list[WheelGap]:
    """The packages lacking wheels for some of their platforms, in the order given.

    Each package is ``(name, wheel file names, platforms it applies to)``; a package
    with no wheel file names (sdist only) lacks wheels everywhere it applies. The
    missing platforms keep the package's order, without duplicates. Raises
    InvalidWheelFilename if a wheel file name is malformed.
    """
    gaps: list[WheelGap] = []
    for name, filenames, platforms in packages:
        tags = [tag for file in filenames for tag in parse_wheel_filename(file).platform_tags]
        missing = tuple(
            platform
            for platform in dict.fromkeys(platforms)
            if not platform_supported(tags, platform, linux_glibc=linux_glibc, macos=macos)
        )
        if missing:
            gaps.append(WheelGap(name, missing))
    return gaps


def describe_wheel_gaps(
    layer: str, gaps: Sequence[WheelGap], platforms: Sequence[TargetPlatform]
) -> str:
    """A multi-line message naming each package's missing platforms, and what to do.

    It suggests the layer's platforms (in the given order) that no gap mentions, written
    as a TOML array to paste into the layer's ``platforms`` field.
    """
    lines = [f"{layer}: some packages have no wheels for all target platforms:"]
    lines.extend(f"  {gap.package}: no wheels for {', '.join(gap.missing)}" for gap in gaps)
    lacking = {platform for gap in gaps for platform in gap.missing}
    covered = [platform for platform in dict.fromkeys(platforms) if platform not in lacking]
    if covered:
        listed = ", ".join(f'"{platform}"' for platform in covered)
        lines.append(
            f"Set platforms = [{listed}] (those with wheels for every package) "
            "to lock for the others."
        )
    else:
        lines.append("No target platform has wheels for every package.")
    return "\n".join(lines)
