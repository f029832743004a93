"""Checking a layer's site-packages against its lock: markers, versions, packages from below."""

from __future__ import annotations

from pathlib import Path

import pytest

from venvstacks.errors import BuildError
from venvstacks.build.installed import check_installed, install_problems, installed_distributions, locked_for
from venvstacks.platforms import TargetPlatform, marker_environment

LINUX = marker_environment(TargetPlatform("linux_x86_64"), "cpython", "3.11.7")
PYLOCK = """\
lock-version = "1.0"
created-by = "uv"

[[packages]]
name = "python-dateutil"
version = "2.9.0.post0"

[[packages]]
name = "Colorama"
version = "0.4.6"
marker = "sys_platform == 'win32'"

[[packages]]
name = "numpy"
version = "1.26.4"
marker = "python_version < '3.11'"

[[packages]]
name = "numpy"
version = "2.3.2"
marker = "python_version >= '3.11'"

[[packages]]
name = "six"
version = "1.17.0"
marker = "sys_platform == 'from_lower_layer'"

[[packages]]
name = "distro"
version = "1.9.0"
marker = "platform_release >= '5'"
"""


def _dist(site: Path, folder: str, metadata: str | None) -> None:
    (site / folder).mkdir(parents=True)
    if metadata is not None:
        (site / folder / "METADATA").write_text(metadata, encoding="utf-8")


def _site(tmp_path: Path, *dists: tuple[str, str]) -> Path:
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    for name, version in dists:
        _dist(site, f"{name.replace('-', '_')}-{version}.dist-info", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nbody: x\n")
    return site


def _pylock(tmp_path: Path, text: str = PYLOCK) -> Path:
    path = tmp_path / "pylock.x.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_what_the_lock_selects_for_this_machine() -> None:
    import tomllib

    locked = locked_for(tomllib.loads(PYLOCK), LINUX)
    assert locked.required == {"python-dateutil": {"2.9.0.post0"}, "numpy": {"2.3.2"}}
    assert locked.optional == {"distro": {"1.9.0"}}
    assert locked.provided_below == {"six"}
    windows = locked_for(tomllib.loads(PYLOCK), marker_environment(TargetPlatform("win_amd64"), "cpython", "3.10.11"))
    assert windows.required == {"python-dateutil": {"2.9.0.post0"}, "colorama": {"0.4.6"}, "numpy": {"1.26.4"}}


def test_installed_distributions_read_metadata_then_the_folder_name(tmp_path: Path) -> None:
    site = _site(tmp_path, ("python-dateutil", "2.9.0.post0"))
    _dist(site, "Six-1.17.0.dist-info", None)  # no METADATA: the folder name tells
    _dist(site, "odd_name-1.0.dist-info", "Name: Odd.Name\nVersion: 1.0-1\n")
    (site / "numpy").mkdir()  # a package folder is not a distribution
    assert installed_distributions(site) == {"python-dateutil": "2.9.0.post0", "six": "1.17.0", "odd-name": "1.0.post1"}
    assert installed_distributions(tmp_path / "nowhere") == {}


def test_a_matching_install_passes(tmp_path: Path) -> None:
    site = _site(tmp_path, ("python-dateutil", "2.9.0.post0"), ("numpy", "2.3.2"), ("distro", "1.9.0"))
    check_installed("fw", _pylock(tmp_path), site, LINUX)
    # the optional package may also be absent
    (site / "distro-1.9.0.dist-info" / "METADATA").unlink()
    (site / "distro-1.9.0.dist-info").rmdir()
    check_installed("fw", _pylock(tmp_path), site, LINUX)


def test_every_difference_is_named(tmp_path: Path) -> None:
    site = _site(tmp_path, ("numpy", "1.26.4"), ("six", "1.17.0"), ("distro", "1.8.0"), ("extra-thing", "1.0"))
    with pytest.raises(BuildError) as caught:
        check_installed("app-x", _pylock(tmp_path), site, LINUX)
    assert str(caught.value) == (
        "layer 'app-x' was not built: what uv installed does not match its lock:\n"
        "  distro is 1.8.0, but the lock has 1.9.0\n"
        "  extra-thing 1.0 is installed, but the lock does not have it\n"
        "  numpy is 1.26.4, but the lock has 2.3.2\n"
        "  python-dateutil 2.9.0.post0 is missing\n"
        "  six 1.17.0 is installed, but a layer underneath provides it"
    )


def test_an_empty_site_packages_fails_with_a_bounded_message(tmp_path: Path) -> None:
    text = 'lock-version = "1.0"\n' + "".join(f'[[packages]]\nname = "p{i:02}"\nversion = "1.{i}"\n' for i in range(25))
    with pytest.raises(BuildError) as caught:
        check_installed("rt", _pylock(tmp_path, text), _site(tmp_path), LINUX)
    lines = str(caught.value).splitlines()
    assert lines[1:3] == ["  p00 1.0 is missing", "  p01 1.1 is missing"]
    assert lines[-1] == "  ... and 15 more" and len(lines) == 12


def test_shared_and_own_entries_of_one_name(tmp_path: Path) -> None:
    # provided below on some platforms, this layer's own elsewhere: not "provided below" here
    locked = locked_for(
        {"packages": [
            {"name": "idna", "version": "3.9", "marker": "sys_platform == 'darwin' and sys_platform == 'from_lower_layer'"},
            {"name": "idna", "version": "3.10", "marker": "sys_platform == 'darwin'"},
        ]},
        LINUX,
    )  # fmt: skip
    assert locked.provided_below == frozenset() and locked.required == {}
    assert install_problems(locked, {}) == []
    assert install_problems(locked, {"idna": "3.10"}) == ["idna 3.10 is installed, but the lock does not have it"]
