"""Wheel file names (checked against packaging) and cross-platform wheel availability."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from packaging.utils import InvalidWheelFilename as PackagingInvalidWheelFilename
from packaging.utils import parse_wheel_filename as packaging_parse_wheel_filename
from packaging.version import Version as PackagingVersion

from venvstacks.errors import InvalidWheelFilename
from venvstacks.platforms import TargetPlatform
from venvstacks.standards.wheels import (
    WheelGap,
    WheelName,
    describe_wheel_gaps,
    find_wheel_gaps,
    parse_wheel_filename,
    platform_supported,
)

P = TargetPlatform
GLIBC = (2, 28)
MACOS = (13, 0)
PROPERTY = settings(derandomize=True, deadline=None, max_examples=400, database=None)


# --- parse_wheel_filename -------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        pytest.param(
            "six-1.16.0-py2.py3-none-any.whl",
            WheelName("six", "1.16.0", None, ("py2", "py3"), ("none",), ("any",)),
            id="compressed-python-tags",
        ),
        pytest.param(
            "numpy-2.3.2-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
            WheelName(
                "numpy", "2.3.2", None, ("cp311",), ("cp311",),
                ("manylinux_2_27_x86_64", "manylinux_2_28_x86_64"),
            ),
            id="compressed-platform-tags",
        ),
        pytest.param(
            "typing_extensions-4.12.2-1abc-py3-none-any.whl",
            WheelName("typing_extensions", "4.12.2", "1abc", ("py3",), ("none",), ("any",)),
            id="build-tag",
        ),
        pytest.param(
            "Foo.Bar-1!2.0rc1.post3.dev4+local.7-py3-none-WIN_AMD64.whl",
            WheelName("Foo.Bar", "1!2.0rc1.post3.dev4+local.7", None, ("py3",), ("none",), ("WIN_AMD64",)),
            id="case-and-full-version-kept",
        ),
    ],
)
def test_parse_wheel_filename(filename: str, expected: WheelName) -> None:
    assert parse_wheel_filename(filename) == expected


def test_wheel_name_derived_forms() -> None:
    wheel = parse_wheel_filename("Typing.Extensions-4.0-py2.PY3-none-any.whl")
    assert wheel.canonical_name == "typing-extensions"
    assert wheel.tags == {("py2", "none", "any"), ("py3", "none", "any")}


@pytest.mark.parametrize(
    ("filename", "message"),
    [
        pytest.param("six-1.16.0.tar.gz", "it must end in '.whl'", id="extension"),
        pytest.param("six-1.16.0-py3-none-any.WHL", "it must end in '.whl'", id="extension-case"),
        pytest.param("six-1.16.0-py3-any.whl", "expected 5 or 6 dash-separated parts", id="too-few-parts"),
        pytest.param("a-b-1.0-1-py3-none-any.whl", "expected 5 or 6 dash-separated parts", id="too-many-parts"),
        pytest.param("six-1.0-abc-py3-none-any.whl", "the build tag 'abc' must start with a digit", id="build-tag"),
        pytest.param("six-1.0--py3-none-any.whl", "the build tag '' must start with a digit", id="empty-build-tag"),
        pytest.param("a__b-1.0-py3-none-any.whl", "the distribution name 'a__b' must be", id="double-underscore"),
        pytest.param("-1.0-py3-none-any.whl", "the distribution name '' must be", id="empty-name"),
        pytest.param("six-1.x-py3-none-any.whl", "'1.x' is not a valid PEP 440 version", id="version"),
        pytest.param("six-1.0-py3..x-none-any.whl", "the python tag set 'py3..x' has an empty tag", id="empty-tag-inside"),
        pytest.param("six-1.0-py3-none-.whl", "the platform tag set '' has an empty tag", id="empty-platform-tag"),
        pytest.param("six-1.0-py3--any.whl", "the ABI tag set '' has an empty tag", id="empty-abi-tag"),
        pytest.param("six-1.0-3py-none-any.whl", "the python tag '3py' is not an identifier", id="python-tag"),
    ],
)
def test_invalid_wheel_filename(filename: str, message: str) -> None:
    with pytest.raises(InvalidWheelFilename, match=re.escape(message)) as caught:
        parse_wheel_filename(filename)
    assert str(caught.value).startswith(f"invalid wheel file name {filename!r}: ")
    assert "\n" not in str(caught.value)


def test_invalid_wheel_filename_message_is_one_line() -> None:
    with pytest.raises(InvalidWheelFilename) as caught:
        parse_wheel_filename("a\nb-1.0-py3-none-any.whl")
    assert "\n" not in str(caught.value)


_ODD = "aZ09_.-+! é٣\n"
# Valid pieces (packaging accepts them), then odd ones; a generated name mutates 0-2 pieces.
_VALID = {
    "name": ["six", "Foo_Bar", "a.b", "zope.interface", "x1", "é", "_a_"],
    "version": ["1.0", "2!1.0rc1.post2.dev3+local.7", "0", "v1.2", " 1.0 ", "1.0.POST1"],
    "build": ["1", "123abc", "1_x", "0.a-b"],
    "python": ["py3", "py2.py3", "cp311", "é", "_x"],
    "abi": ["none", "cp311", "abi3.none", "3"],
    "platform": ["any", "win_amd64", "manylinux_2_17_x86_64.manylinux2014_x86_64"],
    "suffix": [".whl"],
}
_INVALID = {
    "name": ["A__b", "", "a+b", "a b"],
    "version": ["1.x", "", "1.0_1", "1.0 rc", "1.0-1"],
    "build": ["x1", "", "٣"],
    "python": ["3py", "py3.", "", "a+b"],
    "abi": ["", "cp311."],
    "platform": ["a..b", "", ".", "-"],
    "suffix": [".WHL", ".zip", "", ".whl.whl"],
}


@st.composite
def _filenames(draw: st.DrawFn) -> str:
    parts = {kind: draw(st.sampled_from(pieces)) for kind, pieces in _VALID.items()}
    if draw(st.booleans()):
        parts["build"] = None  # type: ignore[assignment]
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(sorted(_VALID)))
        parts[kind] = draw(st.sampled_from(_INVALID[kind]) | st.text(alphabet=_ODD, max_size=5))
    order = ("name", "version", "build", "python", "abi", "platform")
    return "-".join(parts[k] for k in order if parts[k] is not None) + parts["suffix"]


_FILENAMES = _filenames()


@pytest.mark.slow  # hundreds of generated wheel names, each also parsed by packaging
@PROPERTY
@given(_FILENAMES)
def test_parse_agrees_with_packaging(filename: str) -> None:
    try:
        ours: WheelName | None = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        ours = None
    try:
        theirs = packaging_parse_wheel_filename(filename)
    except PackagingInvalidWheelFilename:
        theirs = None
    assert (ours is None) == (theirs is None)
    if ours is None or theirs is None:
        return
    name, version, build, tags = theirs
    assert ours.canonical_name == name
    assert PackagingVersion(ours.version) == version
    if ours.build is None:
        assert build == ()
    else:
        # packaging splits the build tag as (leading digits, rest of the line).
        split = re.match(r"([0-9]+)(.*)", ours.build, re.ASCII)
        assert split is not None
        assert build == (int(split[1]), split[2])
    assert ours.tags == {(tag.interpreter, tag.abi, tag.platform) for tag in tags}


# --- platform_supported --------------------------------------------------------------


@pytest.mark.parametrize("platform", list(P), ids=str)
def test_any_covers_every_platform(platform: TargetPlatform) -> None:
    assert platform_supported(["any"], platform, linux_glibc=GLIBC, macos=MACOS)


@pytest.mark.parametrize("platform", list(P), ids=str)
def test_exact_target_name_always_matches(platform: TargetPlatform) -> None:
    assert platform_supported([platform.value], platform, linux_glibc=(2, 5), macos=(10, 9))


_SUPPORT_CASES = [
    # Linux glibc bounds
    ("manylinux_2_28_x86_64", P.LINUX_X86_64, GLIBC, MACOS, True, "glibc-equal"),
    ("manylinux_2_17_x86_64", P.LINUX_X86_64, GLIBC, MACOS, True, "glibc-older"),
    ("manylinux_2_29_x86_64", P.LINUX_X86_64, GLIBC, MACOS, False, "glibc-newer"),
    ("manylinux_3_0_x86_64", P.LINUX_X86_64, GLIBC, MACOS, False, "glibc-major-newer"),
    ("manylinux_2_28_x86_64", P.LINUX_X86_64, (2, 17), MACOS, False, "glibc-low-target"),
    # legacy manylinux aliases
    ("manylinux2014_x86_64", P.LINUX_X86_64, (2, 17), MACOS, True, "manylinux2014-is-2.17"),
    ("manylinux2014_x86_64", P.LINUX_X86_64, (2, 16), MACOS, False, "manylinux2014-above-2.16"),
    ("manylinux2014_aarch64", P.LINUX_AARCH64, GLIBC, MACOS, True, "manylinux2014-aarch64"),
    ("manylinux2010_x86_64", P.LINUX_X86_64, (2, 12), MACOS, True, "manylinux2010-is-2.12"),
    ("manylinux2010_x86_64", P.LINUX_X86_64, (2, 11), MACOS, False, "manylinux2010-above-2.11"),
    ("manylinux1_x86_64", P.LINUX_X86_64, (2, 5), MACOS, True, "manylinux1-is-2.5"),
    ("manylinux1_x86_64", P.LINUX_X86_64, (2, 4), MACOS, False, "manylinux1-above-2.4"),
    # Linux architecture separation
    ("manylinux_2_17_aarch64", P.LINUX_X86_64, GLIBC, MACOS, False, "aarch64-not-x86_64"),
    ("manylinux_2_17_x86_64", P.LINUX_AARCH64, GLIBC, MACOS, False, "x86_64-not-aarch64"),
    ("manylinux2014_x86_64", P.LINUX_AARCH64, GLIBC, MACOS, False, "alias-keeps-arch"),
    ("manylinux_2_17_i686", P.LINUX_X86_64, GLIBC, MACOS, False, "i686-not-x86_64"),
    ("linux_aarch64", P.LINUX_X86_64, GLIBC, MACOS, False, "other-exact-linux"),
    ("musllinux_1_2_x86_64", P.LINUX_X86_64, GLIBC, MACOS, False, "musllinux-never"),
    ("MANYLINUX_2_17_X86_64", P.LINUX_X86_64, GLIBC, MACOS, True, "case-insensitive"),
    # macOS version bounds and formats
    ("macosx_13_0_arm64", P.MACOSX_ARM64, MACOS, MACOS, True, "macos-equal"),
    ("macosx_11_0_arm64", P.MACOSX_ARM64, GLIBC, MACOS, True, "macos-older"),
    ("macosx_14_0_arm64", P.MACOSX_ARM64, GLIBC, MACOS, False, "macos-newer"),
    ("macosx_13_1_arm64", P.MACOSX_ARM64, GLIBC, MACOS, False, "macos-minor-newer"),
    ("macosx_10_9_x86_64", P.MACOSX_X86_64, GLIBC, MACOS, True, "macos-10.9-x86_64"),
    ("macosx_10_9_universal2", P.MACOSX_ARM64, GLIBC, MACOS, True, "universal2-arm64"),
    ("macosx_10_9_universal2", P.MACOSX_X86_64, GLIBC, MACOS, True, "universal2-x86_64"),
    ("macosx_14_0_universal2", P.MACOSX_ARM64, GLIBC, MACOS, False, "universal2-newer"),
    ("macosx_10_6_intel", P.MACOSX_X86_64, GLIBC, MACOS, True, "intel-x86_64"),
    ("macosx_10_6_intel", P.MACOSX_ARM64, GLIBC, MACOS, False, "intel-not-arm64"),
    ("macosx_10_4_universal", P.MACOSX_X86_64, GLIBC, MACOS, True, "universal-x86_64"),
    ("macosx_10_4_universal", P.MACOSX_ARM64, GLIBC, MACOS, False, "universal-not-arm64"),
    ("macosx_10_9_x86_64", P.MACOSX_ARM64, GLIBC, MACOS, False, "x86_64-not-arm64"),
    ("macosx_11_0_arm64", P.MACOSX_X86_64, GLIBC, MACOS, False, "arm64-not-x86_64"),
    ("macosx_11_0_arm64", P.MACOSX_ARM64, GLIBC, (10, 15), False, "macos-low-target"),
    ("macosx_11_0_arm64", P.LINUX_AARCH64, GLIBC, MACOS, False, "macos-tag-on-linux"),
    # Windows: the exact tag only
    ("win_amd64", P.WIN_AMD64, GLIBC, MACOS, True, "win-amd64"),
    ("win_arm64", P.WIN_ARM64, GLIBC, MACOS, True, "win-arm64"),
    ("win_amd64", P.WIN_ARM64, GLIBC, MACOS, False, "amd64-not-arm64"),
    ("win32", P.WIN_AMD64, GLIBC, MACOS, False, "win32-not-amd64"),
    ("manylinux_2_17_x86_64", P.WIN_AMD64, GLIBC, MACOS, False, "manylinux-on-windows"),
    ("macosx_10_9_universal2", P.WIN_ARM64, GLIBC, MACOS, False, "macos-on-windows"),
]


@pytest.mark.parametrize(
    ("tag", "platform", "glibc", "macos", "expected"),
    [pytest.param(*case[:5], id=case[5]) for case in _SUPPORT_CASES],
)
def test_platform_supported(
    tag: str, platform: TargetPlatform, glibc: tuple[int, int], macos: tuple[int, int], expected: bool
) -> None:
    assert platform_supported([tag], platform, linux_glibc=glibc, macos=macos) is expected


def test_platform_supported_needs_one_matching_tag() -> None:
    tags = ["musllinux_1_1_x86_64", "manylinux_2_17_x86_64"]
    assert platform_supported(tags, P.LINUX_X86_64, linux_glibc=GLIBC, macos=MACOS)
    assert not platform_supported([], P.LINUX_X86_64, linux_glibc=GLIBC, macos=MACOS)


_TAGS = st.one_of(
    st.builds("manylinux_{}_{}_{}".format, st.integers(1, 3), st.integers(0, 40), st.sampled_from(["x86_64", "aarch64"])),
    st.builds("macosx_{}_{}_{}".format, st.integers(10, 16), st.integers(0, 16), st.sampled_from(["arm64", "x86_64", "universal2", "intel"])),
    st.sampled_from(["manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_aarch64", "any", "win_amd64"]),
)
_VERSIONS = st.tuples(st.integers(1, 16), st.integers(0, 40))


@pytest.mark.slow  # hundreds of generated tag sets and targets
@PROPERTY
@given(st.lists(_TAGS, max_size=4), st.sampled_from(list(P)), _VERSIONS, _VERSIONS, _VERSIONS, _VERSIONS)
def test_raising_a_target_never_loses_support(
    tags: list[str], platform: TargetPlatform, glibc_a: tuple[int, int], glibc_b: tuple[int, int],
    macos_a: tuple[int, int], macos_b: tuple[int, int],
) -> None:
    low = platform_supported(tags, platform, linux_glibc=min(glibc_a, glibc_b), macos=min(macos_a, macos_b))
    high = platform_supported(tags, platform, linux_glibc=max(glibc_a, glibc_b), macos=max(macos_a, macos_b))
    assert not low or high


# --- find_wheel_gaps / describe_wheel_gaps ---------------------------------------------

_NUMPY_WHEELS = [
    "numpy-2.3.2-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
    "numpy-2.3.2-cp311-cp311-macosx_14_0_arm64.whl",
    "numpy-2.3.2-cp311-cp311-win_amd64.whl",
]


def test_find_wheel_gaps() -> None:
    packages = [
        ("numpy", _NUMPY_WHEELS, list(P)),
        ("six", ["six-1.17.0-py2.py3-none-any.whl"], list(P)),
        ("dlltracer", ["dlltracer-1.0.2-cp311-cp311-win_amd64.whl"], [P.WIN_AMD64]),
        ("legacy", [], [P.MACOSX_ARM64, P.LINUX_X86_64, P.MACOSX_ARM64]),
    ]
    assert find_wheel_gaps(packages, linux_glibc=GLIBC, macos=(14, 0)) == [
        WheelGap("numpy", (P.LINUX_AARCH64, P.MACOSX_X86_64, P.WIN_ARM64)),
        WheelGap("legacy", (P.MACOSX_ARM64, P.LINUX_X86_64)),
    ]
    # The same arm64 wheel is too new for a macOS 13 target.
    assert find_wheel_gaps([packages[0]], linux_glibc=GLIBC, macos=MACOS) == [
        WheelGap("numpy", (P.LINUX_AARCH64, P.MACOSX_ARM64, P.MACOSX_X86_64, P.WIN_ARM64)),
    ]


def test_find_wheel_gaps_without_gaps() -> None:
    packages = [("six", ["six-1.17.0-py2.py3-none-any.whl"], list(P)), ("none", [], [])]
    assert find_wheel_gaps(packages, linux_glibc=GLIBC, macos=MACOS) == []


def test_find_wheel_gaps_rejects_bad_file_names() -> None:
    with pytest.raises(InvalidWheelFilename, match="it must end in '.whl'"):
        find_wheel_gaps([("six", ["six-1.17.0.tar.gz"], list(P))], linux_glibc=GLIBC, macos=MACOS)


def test_describe_wheel_gaps_suggests_covered_platforms() -> None:
    gaps = [
        WheelGap("numpy", (P.LINUX_AARCH64, P.WIN_AMD64)),
        WheelGap("torch", (P.MACOSX_X86_64,)),
    ]
    platforms = [P.WIN_AMD64, P.LINUX_X86_64, P.LINUX_AARCH64, P.MACOSX_ARM64, P.MACOSX_X86_64]
    assert describe_wheel_gaps("framework-ml", gaps, platforms) == (
        "framework-ml: some packages have no wheels for all target platforms:\n"
        "  numpy: no wheels for linux_aarch64, win_amd64\n"
        "  torch: no wheels for macosx_x86_64\n"
        'Set platforms = ["linux_x86_64", "macosx_arm64"] (those with wheels for every package) '
        "to lock for the others."
    )


def test_describe_wheel_gaps_with_no_covered_platform() -> None:
    gaps = [WheelGap("legacy", (P.LINUX_X86_64, P.WIN_AMD64))]
    assert describe_wheel_gaps("app-old", gaps, [P.LINUX_X86_64, P.WIN_AMD64]) == (
        "app-old: some packages have no wheels for all target platforms:\n"
        "  legacy: no wheels for linux_x86_64, win_amd64\n"
        "No target platform has wheels for every package."
    )
