"""Target platforms, libc and macOS deployment targets, and marker environments."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "DEFAULT_LINUX_TARGET",
    "DEFAULT_MACOSX_TARGET",
    "TargetPlatform",
    "LinuxTarget",
    "MacOSTarget",
    "parse_linux_target",
    "parse_macosx_target",
    "sort_platforms",
    "marker_environment",
    "host_platform",
    "uv_python_platform",
]


class TargetPlatform(enum.StrEnum):
    """A platform a layer can be locked for, named as upstream venvstacks names it."""

    LINUX_X86_64 = "linux_x86_64"
    LINUX_AARCH64 = "linux_aarch64"
    MACOSX_ARM64 = "macosx_arm64"
    MACOSX_X86_64 = "macosx_x86_64"
    WIN_AMD64 = "win_amd64"
    WIN_ARM64 = "win_arm64"

    @property
    def os_family(self) -> str:
        """`linux`, `macosx` or `win`."""
        return self.value.partition("_")[0]


# Definition order is the default platform order used when platforms are inferred.
ALL_PLATFORMS: tuple[TargetPlatform, ...] = tuple(TargetPlatform)

DEFAULT_LINUX_TARGET = "glibc@2.28"
DEFAULT_MACOSX_TARGET = "13.0"
LIBC_VARIANTS = ("glibc",)


def sort_platforms(platforms: Iterable[TargetPlatform]) -> tuple[TargetPlatform, ...]:
    """The given platforms in the default platform order, without duplicates."""
    wanted = set(platforms)
    return tuple(p for p in ALL_PLATFORMS if p in wanted)


@dataclass(frozen=True)
class LinuxTarget:
    """The oldest Linux C library a layer's wheels must run on."""

    raw: str
    """The value as written in the spec (lock hashes use it verbatim)."""
    libc: str
    version: tuple[int, int]


@dataclass(frozen=True)
class MacOSTarget:
    """The oldest macOS release a layer's wheels must run on."""

    raw: str
    """The value as written in the spec, or taken from the environment."""
    version: tuple[int, int]


_LIBC_VERSION = re.compile(r"([0-9]+)\.([0-9]+)")
_MACOS_VERSION = re.compile(r"([0-9]+)(?:\.([0-9]+))?")


def parse_linux_target(raw: str) -> LinuxTarget:
    """Parse `glibc` or `glibc@X.Y`; raise ValueError with a user-facing message."""
    libc, sep, version_text = raw.partition("@")
    if libc not in LIBC_VARIANTS:
        choices = ", ".join(repr(v) for v in LIBC_VARIANTS)
        msg = f"Linux libc variant must be one of {choices}, not {libc!r} (expected 'glibc' or 'glibc@X.Y')"
        raise ValueError(msg)
    if not sep:
        default = parse_linux_target(DEFAULT_LINUX_TARGET)
        return LinuxTarget(raw, libc, default.version)
    match = _LIBC_VERSION.fullmatch(version_text)
    if match is None:
        msg = f"Linux libc version must be of the form 'X.Y', not {version_text!r}"
        raise ValueError(msg)
    return LinuxTarget(raw, libc, (int(match[1]), int(match[2])))


def parse_macosx_target(raw: str) -> MacOSTarget:
    """Parse `major[.minor]` (such as `13.0` or `14`); raise ValueError if malformed."""
    match = _MACOS_VERSION.fullmatch(raw)
    if match is None:
        msg = f"macOS target must be of the form 'X' or 'X.Y', not {raw!r}"
        raise ValueError(msg)
    major = int(match[1])
    if major < 10:
        msg = f"macOS target must be 10.9 or newer, not {raw!r}"
        raise ValueError(msg)
    return MacOSTarget(raw, (major, int(match[2] or 0)))


_OS_MARKERS = {
    "linux": ("posix", "linux", "Linux"),
    "macosx": ("posix", "darwin", "Darwin"),
    "win": ("nt", "win32", "Windows"),
}
_MACHINES = {
    TargetPlatform.LINUX_X86_64: "x86_64",
    TargetPlatform.LINUX_AARCH64: "aarch64",
    TargetPlatform.MACOSX_ARM64: "arm64",
    TargetPlatform.MACOSX_X86_64: "x86_64",
    TargetPlatform.WIN_AMD64: "AMD64",
    TargetPlatform.WIN_ARM64: "ARM64",
}
_IMPLEMENTATION_NAMES = {"cpython": "CPython", "pypy": "PyPy"}


def marker_environment(
    platform: TargetPlatform, implementation: str, python_version: str
) -> dict[str, str]:
    """The PEP 508 marker variables of a runtime on a target platform.

    `implementation` is `cpython` or `pypy`; `python_version` is the full version
    as written in the spec (`3.11.7`, `3.14.0b1`). Variables that cannot be known
    without the target machine (`platform_release`, `platform_version`,
    `implementation_version`) are left out, so markers using them fail loudly.
    """
    os_name, sys_platform, platform_system = _OS_MARKERS[platform.os_family]
    release = re.match(r"[0-9]+\.[0-9]+", python_version)
    short_version = release[0] if release else python_version
    return {
        "implementation_name": implementation,
        "platform_python_implementation": _IMPLEMENTATION_NAMES[implementation],
        "python_version": short_version,
        "python_full_version": python_version,
        "os_name": os_name,
        "sys_platform": sys_platform,
        "platform_system": platform_system,
        "platform_machine": _MACHINES[platform],
    }


def host_platform() -> TargetPlatform | None:
    """The target platform this machine is, if it is one venvstacks knows."""
    import sysconfig

    name = sysconfig.get_platform().lower().replace("-", "_").replace(".", "_")
    if name.startswith("macosx_"):
        import platform as _platform

        machine = _platform.machine().lower()
        name = "macosx_" + ("arm64" if machine in ("arm64", "aarch64") else "x86_64")
    try:
        return TargetPlatform(name)
    except ValueError:
        return None


def uv_python_platform(platform: TargetPlatform, linux: LinuxTarget) -> str:
    """uv's `--python-platform` name for installing a layer's wheels on `platform`."""
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}[platform.value.split("_", 1)[1]]
    family = platform.os_family
    if family == "linux":
        major, minor = linux.version
        return f"{arch}-manylinux_{major}_{minor}"
    if family == "macosx":
        return f"{arch}-apple-darwin"
    return f"{arch}-pc-windows-msvc"
