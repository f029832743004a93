"""Finding, excluding and linking the shared libraries a layer shares with the layers above it."""

from __future__ import annotations

import glob
import importlib.machinery
import os
import re
import sys
from pathlib import Path

import pytest

from venvstacks.build import dynlib
from venvstacks.build.dynlib import (
    DYNLIB_DIR,
    exclusion_regex,
    extension_suffixes,
    find_shared_libraries,
    link_dynlibs,
    plan_dynlib_links,
)
from venvstacks.errors import BuildError

RUNNING_TAG = f".{sys.implementation.name}-{sys.version_info.major}{sys.version_info.minor}"
PLATFORM_SUFFIX = next(s for s in importlib.machinery.EXTENSION_SUFFIXES if s.startswith(RUNNING_TAG))


def ext(stem: str, version: str) -> str:
    """An extension module's file name for a CPython `X.Y`, on this platform."""
    major, minor = version.split(".")[:2]
    return stem + f".{sys.implementation.name}-{major}{minor}" + PLATFORM_SUFFIX[len(RUNNING_TAG) :]


def touch(path: Path, content: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


# --- extension suffixes -----------------------------------------------------------


@pytest.mark.parametrize("version", ["3.11", "3.12", "3.13.1", "3.14"])
def test_extension_suffixes_use_the_layer_version_tag(version: str) -> None:
    suffixes = extension_suffixes(version)
    tag = f".{sys.implementation.name}-{version.replace('.', '')[:3]}"
    assert ".abi3.so" in suffixes
    assert ".so" not in suffixes
    assert ext("", version) in suffixes
    assert not [s for s in suffixes if s.startswith(f".{sys.implementation.name}-") and not s.startswith(tag)]


@pytest.mark.parametrize("version", ["3", "", "three.eleven", "3.x"])
def test_extension_suffixes_reject_bad_versions(version: str) -> None:
    with pytest.raises(ValueError, match="not a Python version"):
        extension_suffixes(version)


# --- find_shared_libraries --------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "env" / "lib" / "python3.12" / "site-packages"
    touch(site / "numpy" / "_core" / ext("_multiarray_umath", "3.12"))
    touch(site / "numpy.libs" / "libscipy_openblas64_-ff651d7f.so", b"openblas")
    touch(site / "numpy.libs" / "libgfortran-040039e1.so.5.0.0")
    touch(site / "speedups" / "_speedups.abi3.so")
    touch(site / "speedups" / "_legacy.so")
    touch(site / "speedups" / "libhelper.dylib")
    touch(site / "speedups" / "libversioned.so.1")
    touch(site / "speedups" / "README.txt")
    touch(site / "PIL" / ".libs" / "libpng16-1a2b.so")
    touch(site / "PIL" / ext("_imaging", "3.12"))
    touch(site / "zz_top.so")
    (site / "speedups" / "liblink.so").symlink_to("libversioned.so.1")
    (site / "speedups" / "libdangling.so").symlink_to("missing.so")
    (site / "speedups" / "libdir.so").mkdir()
    return site


def test_libraries_are_found_in_sorted_order(site: Path) -> None:
    found = find_shared_libraries(site, exclude=(), python_version="3.12")
    assert [p.relative_to(site).as_posix() for p in found] == [
        "PIL/.libs/libpng16-1a2b.so",
        "numpy.libs/libscipy_openblas64_-ff651d7f.so",
        "speedups/_legacy.so",
        "speedups/libhelper.dylib",
        "speedups/liblink.so",
        "zz_top.so",
    ]


@pytest.mark.parametrize(
    ("name", "version", "is_library"),
    [
        pytest.param(ext("_mod", "3.11"), "3.11", False, id="cpython-311-extension"),
        pytest.param(ext("_mod", "3.12"), "3.12", False, id="cpython-312-extension"),
        pytest.param(ext("_mod", "3.11"), "3.12", True, id="other-version-tag"),
        pytest.param("_mod.abi3.so", "3.11", False, id="abi3"),
        pytest.param("_mod.abi3.so", "3.13", False, id="abi3-313"),
        pytest.param("libfoo.so", "3.12", True, id="bare-so"),
        pytest.param("libfoo.dylib", "3.12", True, id="dylib"),
        pytest.param("libfoo-1.2.so", "3.12", True, id="dotted-name"),
        pytest.param("libfoo.so.1", "3.12", False, id="versioned"),
        pytest.param("libfoo.so.1.2.3", "3.12", False, id="versioned-long"),
        pytest.param("libfoo.a", "3.12", False, id="static"),
        pytest.param("foo.py", "3.12", False, id="python"),
    ],
)
def test_extension_modules_are_not_libraries(tmp_path: Path, name: str, version: str, is_library: bool) -> None:
    touch(tmp_path / "pkg" / name)
    found = find_shared_libraries(tmp_path, exclude=(), python_version=version)
    assert found == ([tmp_path / "pkg" / name] if is_library else [])


def test_excluded_libraries_are_left_out(site: Path) -> None:
    found = find_shared_libraries(site, exclude=("libpng16*", "*.dylib"), python_version="3.12")
    assert [p.name for p in found] == ["libscipy_openblas64_-ff651d7f.so", "_legacy.so", "liblink.so", "zz_top.so"]
    assert find_shared_libraries(site, exclude=("*",), python_version="3.12") == []


def test_a_missing_site_packages_has_no_libraries(tmp_path: Path) -> None:
    assert find_shared_libraries(tmp_path / "missing", exclude=(), python_version="3.12") == []


# --- exclusion patterns -----------------------------------------------------------

SP = "/build/framework-x/lib/python3.12/site-packages"

EXCLUSIONS = [
    ("libpng16.*", f"{SP}/PIL/libpng16.so", True),
    ("libpng16.*", f"{SP}/PIL/.libs/libpng16.so.16", True),
    ("libpng16.*", f"{SP}/PIL/xlibpng16.so", False),
    ("libpng16.*", f"{SP}/libpng16.d/libz.so", False),
    ("LIBPNG16.*", f"{SP}/PIL/libpng16.so", False),
    ("PIL/**/libpng16.*", f"{SP}/PIL/libpng16.so", True),
    ("PIL/**/libpng16.*", f"{SP}/PIL/.libs/deep/libpng16.so", True),
    ("PIL/**/libpng16.*", f"{SP}/notPIL/libpng16.so", False),
    ("PIL/**/libpng16.*", f"{SP}/PIL/libz.so", False),
    ("PIL/**/**/libpng16.*", f"{SP}/PIL/a/libpng16.so", True),
    ("**/libpng16.*", f"{SP}/libpng16.so", True),
    ("triton/**", f"{SP}/triton/_C/libtriton.so", True),
    ("triton/**", f"{SP}/triton/libtriton.so", True),
    ("triton/**", f"{SP}/triton_x/libtriton.so", False),
    ("triton/**", f"{SP}/mytriton/libtriton.so", False),
    ("*", f"{SP}/numpy.libs/libopenblas.so", True),
    ("*", f"{SP}/.hidden.so", True),
    ("*/libz.so", f"{SP}/pkg/libz.so", True),
    ("*/libz.so", f"{SP}/pkg/sub/libz.so", True),
    ("pkg/*/libz.so", f"{SP}/pkg/sub/libz.so", True),
    ("pkg/*/libz.so", f"{SP}/pkg/a/b/libz.so", False),
    ("pkg/*/libz.so", f"{SP}/pkg/libz.so", False),
    ("*.dylib", f"{SP}/pkg/libz.dylib", True),
    ("*.dylib", f"{SP}/pkg/libz.so", False),
    ("lib*.so", f"{SP}/pkg/lib.so", True),
    ("lib**z.so", f"{SP}/pkg/libxyz.so", True),
    ("lib**z.so", f"{SP}/pkg/lib/z.so", False),
    ("lib?.so", f"{SP}/pkg/liba.so", True),
    ("lib?.so", f"{SP}/pkg/libab.so", False),
    ("lib?.so", f"{SP}/pkg/lib.so", False),
    ("lib[ab].so", f"{SP}/pkg/libb.so", True),
    ("lib[ab].so", f"{SP}/pkg/libc.so", False),
    ("lib[!ab].so", f"{SP}/pkg/libc.so", True),
    ("lib[!ab].so", f"{SP}/pkg/liba.so", False),
    ("lib[a-c]*.so", f"{SP}/pkg/libcore.so", True),
    ("lib[a-c]*.so", f"{SP}/pkg/libdcore.so", False),
    ("lib[a-c-e].so", f"{SP}/pkg/lib-.so", True),
    ("lib[a-c-e].so", f"{SP}/pkg/libd.so", False),
    ("lib[z-a]x.so", f"{SP}/pkg/libzx.so", False),
    ("lib[z-a]x.so", f"{SP}/pkg/libax.so", False),
    ("lib[!z-a]x.so", f"{SP}/pkg/libqx.so", True),
    # As in fnmatch, a "!" that an empty leading range leaves at the front negates.
    ("lib[z-a!]x.so", f"{SP}/pkg/libqx.so", True),
    ("lib[z-a!b]x.so", f"{SP}/pkg/libbx.so", False),
    ("lib[z-a!b]x.so", f"{SP}/pkg/libcx.so", True),
    ("lib[z-a!-c]x.so", f"{SP}/pkg/libbx.so", True),
    ("lib[z-a!-c]x.so", f"{SP}/pkg/lib-x.so", False),
    ("lib[]]x.so", f"{SP}/pkg/lib]x.so", True),
    ("lib[!]]x.so", f"{SP}/pkg/lib]x.so", False),
    ("lib[^a]x.so", f"{SP}/pkg/lib^x.so", True),
    ("lib[^a]x.so", f"{SP}/pkg/libbx.so", False),
    ("lib[.so", f"{SP}/pkg/lib[.so", True),
    ("lib[&&~|\\]x.so", f"{SP}/pkg/lib\\x.so", True),
    ("lib+(x){2}$.so", f"{SP}/pkg/lib+(x){{2}}$.so", True),
    ("lib+(x){2}$.so", f"{SP}/pkg/libxx.so", False),
    ("pkg/", f"{SP}/pkg/libz.so", False),
    ("site-packages/pkg/libz.so", f"{SP}/pkg/libz.so", True),
    ("/pkg/libz.so", f"{SP}/pkg/libz.so", False),
]


@pytest.mark.parametrize(("pattern", "path", "excluded"), EXCLUSIONS)
def test_exclusion_patterns_match_trailing_path_segments(pattern: str, path: str, excluded: bool) -> None:
    assert bool(exclusion_regex(pattern).search(path)) is excluded


@pytest.mark.parametrize(("pattern", "path", "excluded"), EXCLUSIONS)
def test_own_translation_matches_the_same_paths(pattern: str, path: str, excluded: bool) -> None:
    assert bool(re.search(dynlib._translate("/" + pattern), path)) is excluded


def test_own_translation_is_anchored_at_the_end_only() -> None:
    regex = dynlib._translate("/a/*.so")
    assert regex.endswith(r")\Z")
    assert re.search(regex, "/x/y/a/b.so")
    assert not re.search(regex, "/x/y/a/b.so/c")
    assert re.fullmatch(regex, "/a/b.so")


_REFERENCE = """
import glob, json, re, sys
patterns, paths = json.loads(sys.stdin.read())
print(json.dumps([[bool(re.search(glob.translate("/" + p, recursive=True, include_hidden=True, seps="/"), path))
                   for path in paths] for p in patterns]))
"""


def _python_with_glob_translate() -> str:
    """This interpreter if it has glob.translate (3.13+), else the machine's CPython 3.13 build."""
    if hasattr(glob, "translate"):
        return sys.executable
    found = sorted((Path.home() / ".pyenv" / "versions").glob("3.1[3-9]*/bin/python3"))
    if not found:
        pytest.fail("comparing with glob.translate needs a CPython 3.13 or newer on this machine")
    return str(found[-1])


def test_own_translation_agrees_with_glob_translate() -> None:
    import json
    import subprocess

    patterns = sorted({p for p, _, _ in EXCLUSIONS} | {"**", "*/**", "**/*", "a/**/**", "[!/]", "x[", "[!]", "a?*b"})
    paths = sorted({p for _, p, _ in EXCLUSIONS} | {"/", "/a", "/a/b", "//x", "/x[", "/a/b/c/d.so", "/ab/b"})
    reference = subprocess.run(
        [_python_with_glob_translate(), "-I", "-c", _REFERENCE],
        input=json.dumps([patterns, paths]), capture_output=True, text=True, check=True,
    )  # fmt: skip
    theirs = json.loads(reference.stdout)
    for pattern, expected in zip(patterns, theirs):
        ours = re.compile(dynlib._translate("/" + pattern))
        assert [bool(ours.search(path)) for path in paths] == expected, pattern


# --- plan_dynlib_links ------------------------------------------------------------


def test_plan_maps_names_to_libraries(tmp_path: Path) -> None:
    a = touch(tmp_path / "a" / "libfoo.so")
    b = touch(tmp_path / "b" / "libbar.so")
    assert plan_dynlib_links("framework-x", [a, b], tmp_path) == {"libbar.so": b, "libfoo.so": a}
    assert list(plan_dynlib_links("framework-x", [a, b], tmp_path)) == ["libbar.so", "libfoo.so"]


def test_paths_to_one_file_are_not_ambiguous(tmp_path: Path) -> None:
    real = touch(tmp_path / "a" / "libfoo.so")
    alias = tmp_path / "b" / "libfoo.so"
    alias.parent.mkdir()
    alias.symlink_to(real)
    assert plan_dynlib_links("framework-x", [real, alias], tmp_path) == {"libfoo.so": real}


def test_every_ambiguous_name_is_reported_at_once(tmp_path: Path) -> None:
    libraries = [
        touch(tmp_path / "a" / "libfoo.so"),
        touch(tmp_path / "b" / "libfoo.so"),
        touch(tmp_path / "c" / "d" / "libfoo.so"),
        touch(tmp_path / "a" / "libok.so"),
        touch(tmp_path / "a" / "libbar.dylib"),
        touch(tmp_path / "z" / "libbar.dylib"),
    ]
    with pytest.raises(BuildError) as caught:
        plan_dynlib_links("framework-x", libraries, tmp_path)
    assert str(caught.value) == (
        "Layer framework-x: ambiguous shared library names:\n"
        "  libbar.dylib => [a/libbar.dylib, z/libbar.dylib]\n"
        "  libfoo.so => [a/libfoo.so, b/libfoo.so, c/d/libfoo.so]\n"
        "Set dynlib_exclude in the layer definition to choose between them."
    )


def test_no_libraries_plan_no_links(tmp_path: Path) -> None:
    assert plan_dynlib_links("cpython-3.11", [], tmp_path) == {}


# --- link_dynlibs -----------------------------------------------------------------


def test_links_are_relative_and_reach_the_libraries(site: Path) -> None:
    layer = site.parents[2]
    libraries = find_shared_libraries(site, exclude=(), python_version="3.12")
    link_dynlibs(layer, plan_dynlib_links("framework-x", libraries, site))
    folder = layer / DYNLIB_DIR
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(p.name for p in libraries)
    link = folder / "libscipy_openblas64_-ff651d7f.so"
    assert os.readlink(link) == "../../../lib/python3.12/site-packages/numpy.libs/libscipy_openblas64_-ff651d7f.so"
    assert link.read_bytes() == b"openblas"
    for library in libraries:
        target = os.readlink(folder / library.name)
        assert not os.path.isabs(target)
        assert (folder / library.name).resolve() == library.resolve()


def test_the_folder_is_made_even_with_nothing_to_link(tmp_path: Path) -> None:
    link_dynlibs(tmp_path / "layer", {})
    assert (tmp_path / "layer" / DYNLIB_DIR).is_dir()
    assert list((tmp_path / "layer" / DYNLIB_DIR).iterdir()) == []


def test_stale_links_are_removed(tmp_path: Path) -> None:
    library = touch(tmp_path / "layer" / "lib" / "libnew.so")
    folder = tmp_path / "layer" / DYNLIB_DIR
    folder.mkdir(parents=True)
    (folder / "libold.so").symlink_to("../../../lib/libold.so")
    (folder / "libnew.so").symlink_to("/somewhere/else/libnew.so")
    link_dynlibs(tmp_path / "layer", {"libnew.so": library})
    assert sorted(p.name for p in folder.iterdir()) == ["libnew.so"]
    assert os.readlink(folder / "libnew.so") == "../../../lib/libnew.so"


def test_anything_but_a_link_in_the_folder_is_an_error(tmp_path: Path) -> None:
    library = touch(tmp_path / "layer" / "lib" / "libnew.so")
    folder = tmp_path / "layer" / DYNLIB_DIR
    touch(folder / "libnew.so")
    (folder / "subdir").mkdir()
    (folder / "libold.so").symlink_to("missing.so")
    with pytest.raises(BuildError, match="not symbolic links") as caught:
        link_dynlibs(tmp_path / "layer", {"libnew.so": library})
    assert str(folder / "libnew.so") in str(caught.value)
    assert str(folder / "subdir") in str(caught.value)
    assert (folder / "libold.so").is_symlink()
    assert not (folder / "libnew.so").is_symlink()


@pytest.mark.parametrize("name", ["", "a/libfoo.so", "."])
def test_link_names_must_be_plain_file_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(BuildError, match="not a valid shared library link name"):
        link_dynlibs(tmp_path, {name: tmp_path / "libfoo.so"})
