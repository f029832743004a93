"""Launch and support modules stay inside the spec's folder, and no symbolic link is copied.

Real files and real links: the loader refuses them with an error naming the
file, the layer and the field, and the build's copy refuses them even when
given a spec the loader never saw.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from venvstacks.build.builder import _copy_module
from venvstacks.cli.main import main
from venvstacks.errors import BuildError, SpecError
from venvstacks.spec.load import load_spec

HEAD = '[[runtimes]]\nname = "rt"\npython_implementation = "cpython@3.12.1"\nrequirements = []\n'


def _stack(tmp_path: Path, launch: str, support: list[str] | None = None) -> Path:
    """A spec in `tmp_path/stack` with one application; `tmp_path/outside` is beside it."""
    folder = tmp_path / "stack"
    folder.mkdir(exist_ok=True)
    (tmp_path / "outside").mkdir(exist_ok=True)
    (tmp_path / "outside" / "secret.py").write_text("SECRET = 1\n", encoding="utf-8")
    text = HEAD + f'[[applications]]\nname = "demo"\nruntime = "rt"\nrequirements = []\nlaunch_module = "{launch}"\n'
    if support is not None:
        text += f"support_modules = {support!r}\n".replace("'", '"')
    spec = folder / "venvstacks.toml"
    spec.write_text(text, encoding="utf-8")
    return spec


def _problem(spec: Path) -> str:
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    (line,) = str(caught.value).splitlines()
    return line


def test_launch_module_linked_to_a_host_file_is_refused(tmp_path: Path) -> None:
    spec = _stack(tmp_path, "app.py")
    (spec.parent / "app.py").symlink_to("/etc/passwd")
    assert _problem(spec) == (
        f"{spec}: application 'demo': field 'launch_module': 'app.py' is a symbolic link (to '/etc/passwd'): "
        "links are not copied into layers, use real files"
    )


def test_launch_module_linked_inside_the_spec_folder_is_refused_too(tmp_path: Path) -> None:
    spec = _stack(tmp_path, "app.py")
    (spec.parent / "real.py").write_text("print('hi')\n", encoding="utf-8")
    (spec.parent / "app.py").symlink_to("real.py")
    assert "field 'launch_module': 'app.py' is a symbolic link (to 'real.py')" in _problem(spec)


def test_launch_package_holding_a_linked_folder_is_refused(tmp_path: Path) -> None:
    spec = _stack(tmp_path, "pkg")
    package = spec.parent / "pkg"
    package.mkdir()
    (package / "__main__.py").write_text("print('hi')\n", encoding="utf-8")
    (package / "data").symlink_to(tmp_path / "outside", target_is_directory=True)
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "stale.pyc").symlink_to("/etc/passwd")  # not copied, so not refused
    line = _problem(spec)
    assert line.startswith(f"{spec}: application 'demo': field 'launch_module': 'pkg' holds the symbolic link 'data' (to ")


@pytest.mark.parametrize(
    ("launch", "message"),
    [
        ("/etc/hostname.py", "'/etc/hostname.py' is an absolute path: module paths are relative to the spec's folder"),
        ("../outside/secret.py", "'../outside/secret.py' is outside the spec's folder: module paths must stay inside it"),
        ("sub/../../outside/secret.py", "is outside the spec's folder"),
    ],
)
def test_launch_module_outside_the_spec_folder_is_refused(tmp_path: Path, launch: str, message: str) -> None:
    spec = _stack(tmp_path, launch)
    (spec.parent / "sub").mkdir()
    line = _problem(spec)
    assert line.startswith(f"{spec}: application 'demo': field 'launch_module': ") and message in line


def test_a_linked_folder_on_the_way_must_stay_inside(tmp_path: Path) -> None:
    spec = _stack(tmp_path, "ext/secret.py")
    (spec.parent / "ext").symlink_to(tmp_path / "outside", target_is_directory=True)
    assert "field 'launch_module': 'ext/secret.py' leads outside the spec's folder through a symbolic link" in _problem(spec)
    (spec.parent / "ext").unlink()
    (spec.parent / "modules").mkdir()
    (spec.parent / "modules" / "secret.py").write_text("print('hi')\n", encoding="utf-8")
    (spec.parent / "ext").symlink_to("modules", target_is_directory=True)
    assert load_spec(spec).applications[0].launch_module == spec.parent / "ext" / "secret.py"


def test_support_modules_follow_the_same_rules(tmp_path: Path) -> None:
    spec = _stack(tmp_path, "app.py", ["/abs/helper.py", "../outside/secret.py", "linked.py"])
    (spec.parent / "app.py").write_text("print('hi')\n", encoding="utf-8")
    (spec.parent / "linked.py").symlink_to(tmp_path / "outside" / "secret.py")
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    lines = str(caught.value).splitlines()
    assert [line.split(": ")[2] for line in lines] == [
        "field 'support_modules[0]'", "field 'support_modules[1]'", "field 'support_modules[2]'"
    ]
    # Support modules are sorted, as upstream sorts them: '../' comes before '/'.
    assert "is outside the spec's folder" in lines[0] and "is an absolute path" in lines[1]
    assert "'linked.py' is a symbolic link" in lines[2]


def test_the_command_line_reports_a_linked_module_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _stack(tmp_path, "app.py")
    (spec.parent / "app.py").symlink_to("/etc/passwd")
    assert main(["show", str(spec)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"error: {spec}: application 'demo': field 'launch_module': 'app.py' is a symbolic link (to '/etc/passwd'): "
        "links are not copied into layers, use real files\n"
    )


# The build's copy, given paths the loader never checked


def test_copy_refuses_a_linked_file(tmp_path: Path) -> None:
    (tmp_path / "app.py").symlink_to("/etc/passwd")
    with pytest.raises(BuildError, match="is a symbolic link"):
        _copy_module(tmp_path / "app.py", tmp_path / "site" / "app.py")
    assert not (tmp_path / "site" / "app.py").exists()


def test_copy_refuses_a_linked_folder_in_a_package(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "inner").mkdir(parents=True)
    (package / "__main__.py").write_text("print('hi')\n", encoding="utf-8")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("secret\n", encoding="utf-8")
    (package / "inner" / "data").symlink_to(tmp_path / "outside", target_is_directory=True)
    (tmp_path / "site").mkdir()
    with pytest.raises(BuildError, match=r"inner/data' is a symbolic link"):
        _copy_module(package, tmp_path / "site" / "pkg")
    assert not list((tmp_path / "site").rglob("secret.txt"))


def test_copy_leaves_out_caches_and_replaces_what_was_there(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "__pycache__").mkdir(parents=True)
    (package / "__main__.py").write_text("print('hi')\n", encoding="utf-8")
    (package / "__pycache__" / "x.pyc").symlink_to("/etc/passwd")  # left out, so harmless
    site = tmp_path / "site"
    site.mkdir()
    victim = tmp_path / "victim.py"
    victim.write_text("untouched\n", encoding="utf-8")
    (site / "app.py").symlink_to(victim)  # an old link in the layer is replaced, never written through
    (tmp_path / "app.py").write_text("print('app')\n", encoding="utf-8")
    _copy_module(tmp_path / "app.py", site / "app.py")
    _copy_module(package, site / "pkg")
    assert not (site / "app.py").is_symlink() and (site / "app.py").read_text(encoding="utf-8") == "print('app')\n"
    assert victim.read_text(encoding="utf-8") == "untouched\n"
    assert sorted(os.listdir(site / "pkg")) == ["__main__.py"]
