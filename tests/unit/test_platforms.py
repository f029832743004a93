"""Target platforms, libc and macOS targets, and marker environments."""

from __future__ import annotations

import pytest

from venvstacks.platforms import (
    TargetPlatform,
    marker_environment,
    parse_linux_target,
    parse_macosx_target,
    sort_platforms,
)


def test_platform_names_and_default_order() -> None:
    assert [str(p) for p in TargetPlatform] == [
        "linux_x86_64", "linux_aarch64", "macosx_arm64", "macosx_x86_64", "win_amd64", "win_arm64",
    ]
    assert sort_platforms([TargetPlatform.WIN_ARM64, TargetPlatform.LINUX_X86_64]) == (
        TargetPlatform.LINUX_X86_64, TargetPlatform.WIN_ARM64,
    )


@pytest.mark.parametrize(
    ("raw", "version"),
    [("glibc", (2, 28)), ("glibc@2.28", (2, 28)), ("glibc@2.17", (2, 17)), ("glibc@2.39", (2, 39))],
)
def test_linux_target(raw: str, version: tuple[int, int]) -> None:
    target = parse_linux_target(raw)
    assert (target.raw, target.libc, target.version) == (raw, "glibc", version)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("musl", "Linux libc variant must be one of 'glibc', not 'musl'"),
        ("glibc@235", "Linux libc version must be of the form 'X.Y', not '235'"),
        ("glibc@2.x", "Linux libc version must be of the form 'X.Y', not '2.x'"),
        ("glibc@", "Linux libc version must be of the form 'X.Y', not ''"),
    ],
)
def test_invalid_linux_target(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_linux_target(raw)


@pytest.mark.parametrize(("raw", "version"), [("13.0", (13, 0)), ("14", (14, 0)), ("10.9", (10, 9)), ("15.4", (15, 4))])
def test_macosx_target(raw: str, version: tuple[int, int]) -> None:
    assert parse_macosx_target(raw).version == version


@pytest.mark.parametrize("raw", ["", "x", "13.", "13.0.1", "9", " 13"])
def test_invalid_macosx_target(raw: str) -> None:
    with pytest.raises(ValueError, match="macOS target must be"):
        parse_macosx_target(raw)


def test_marker_environments() -> None:
    linux = marker_environment(TargetPlatform.LINUX_AARCH64, "cpython", "3.14.0b1")
    assert linux == {
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "python_version": "3.14",
        "python_full_version": "3.14.0b1",
        "os_name": "posix",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "aarch64",
    }
    mac = marker_environment(TargetPlatform.MACOSX_ARM64, "pypy", "3.11.13")
    assert (mac["sys_platform"], mac["platform_machine"], mac["platform_python_implementation"]) == ("darwin", "arm64", "PyPy")
    win = marker_environment(TargetPlatform.WIN_AMD64, "cpython", "3.12.1")
    assert (win["os_name"], win["sys_platform"], win["platform_system"], win["platform_machine"]) == (
        "nt", "win32", "Windows", "AMD64",
    )
