"""Lock validity and upstream's hash formulas, checked on a lock folder upstream venvstacks wrote."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest

from support import COMPAT
from venvstacks.lock.files import (
    LockMetadata,
    LockPaths,
    hash_strings,
    lock_input_hash,
    module_hash,
    other_inputs_hash,
    pylock_hash,
    requirements_in_text,
    version_inputs_hash,
)
from venvstacks.lock.state import check_stack_locks
from venvstacks.lock.pylock import summary_text
from venvstacks.spec.model import StackSpec
from venvstacks.spec.load import load_spec

LAYERS = ["cpython-3.11", "framework-web", "framework-web-extra", "app-dates", "app-records"]


@pytest.fixture()
def compat_copy(tmp_path: Path) -> Path:
    """A private copy of the upstream-locked stack, free to be edited."""
    folder = tmp_path / "compat"
    shutil.copytree(COMPAT, folder)
    return folder / "venvstacks.toml"


def _invalid(spec_path: Path) -> list[str]:
    checks = check_stack_locks(load_spec(spec_path, environ={}))
    return [name for name in LAYERS if not checks[name].valid]


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@pytest.fixture(scope="module")
def compat() -> StackSpec:
    return load_spec(COMPAT / "venvstacks.toml", environ={})


def test_hash_strings() -> None:
    assert hash_strings([]) == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert hash_strings(["a", "bc"]) == hash_strings(["abc"])


def test_file_names_follow_upstream(compat: StackSpec) -> None:
    paths = LockPaths.for_layer(compat, compat.runtime("cpython-3.11"))
    assert paths.requirements_in.name == "requirements-cpython-3_11.in"
    assert paths.pylock.name == "pylock.cpython-3_11.toml"
    assert paths.metadata.name == "pylock.cpython-3_11.meta.json"
    assert paths.summary.name == "packages-cpython-3.11.txt"
    assert paths.folder == COMPAT / "requirements" / "cpython-3.11"


@pytest.mark.parametrize("name", LAYERS)
def test_hashes_reproduce_upstream_metadata(compat: StackSpec, name: str) -> None:
    layer = next(layer for layer in compat.layers() if layer.build_name == name)
    paths = LockPaths.for_layer(compat, layer)
    recorded = json.loads(paths.metadata.read_text(encoding="utf-8"))
    assert lock_input_hash(layer) == recorded["lock_input_hash"]
    assert other_inputs_hash(compat, layer) == recorded["other_inputs_hash"]
    assert version_inputs_hash(layer) == recorded["version_inputs_hash"]
    assert pylock_hash(tomllib.loads(paths.pylock.read_text(encoding="utf-8"))) == recorded["requirements_hash"]
    # The cache of declared requirements and the package summary are byte-identical too.
    assert requirements_in_text(layer) == paths.requirements_in.read_text(encoding="utf-8")
    pylock = tomllib.loads(paths.pylock.read_text(encoding="utf-8"))
    assert summary_text(name, pylock) == paths.summary.read_text(encoding="utf-8")


def test_launch_module_hashes_match_upstream_published_metadata(compat: StackSpec) -> None:
    for app in compat.applications:
        published = json.loads((COMPAT / "upstream-published-metadata" / "env_metadata" / f"{app.build_name}.json").read_text())
        assert module_hash(app.launch_module) == published["app_launch_module_hash"]


def test_metadata_round_trip(compat: StackSpec) -> None:
    paths = LockPaths.for_layer(compat, compat.runtime("cpython-3.11"))
    metadata = LockMetadata.read(paths.metadata)
    assert metadata is not None
    assert metadata.to_json() == paths.metadata.read_text(encoding="utf-8")
    assert LockMetadata.from_json({"_legacy_requirements_hash": "x"}) is None


def test_upstream_locks_are_valid(compat: StackSpec) -> None:
    checks = check_stack_locks(compat)
    assert {name: check.problems for name, check in checks.items()} == dict.fromkeys(LAYERS, ())
    assert checks["app-records"].lock_version == 1


# What invalidates what (upstream-behaviour.md section 4.7).
@pytest.mark.parametrize(
    ("file", "old", "new", "invalid"),
    [
        pytest.param("venvstacks.toml", 'requirements = ["idna", "certifi"]', 'requirements = ["idna", "certifi", "six"]',
                     ["framework-web", "framework-web-extra", "app-dates"], id="requirements"),
        pytest.param("venvstacks.toml", "cpython@3.11.7", "cpython@3.11.9", [], id="patch-release"),
        pytest.param("venvstacks.toml", "cpython@3.11.7", "cpython@3.12.1", LAYERS, id="minor-release"),
        pytest.param("venvstacks.toml", 'runtime = "cpython-3.11"\nrequirements = ["idna", "certifi"]',
                     'runtime = "cpython-3.11"\nrequirements = ["idna", "certifi"]\nversioned = true',
                     ["framework-web", "framework-web-extra", "app-dates"], id="versioned-toggled"),
        pytest.param("venvstacks.toml", 'frameworks = ["web-extra"]\nrequirements = ["python-dateutil", "idna"]',
                     'frameworks = ["web"]\nrequirements = ["python-dateutil", "idna"]', ["app-dates"], id="frameworks-changed"),
        pytest.param("venvstacks.toml", 'name = "dates"\n', 'name = "dates"\nlinux_target = "glibc@2.34"\n',
                     ["app-dates"], id="linux-target"),
        pytest.param("venvstacks.toml", 'name = "dates"\n', 'name = "dates"\nplatforms = ["linux_x86_64"]\n',
                     ["app-dates"], id="platforms-drop-macos"),
        pytest.param("launch/dates.py", "year", "month", [], id="unversioned-launch-module"),
        pytest.param("launch/records/__main__.py", 'Record("x")', 'Record("y")', ["app-records"], id="versioned-launch-module"),
        pytest.param("requirements/framework-web/pylock.framework-web.toml", 'version = "3.10"', 'version = "3.9"',
                     ["framework-web", "framework-web-extra", "app-dates"], id="pylock-edited"),
        pytest.param("requirements/framework-web/requirements-framework-web.in", "certifi", "", [], id="in-file-is-only-a-cache"),
    ],
)
def test_invalidation(compat_copy: Path, file: str, old: str, new: str, invalid: list[str]) -> None:
    assert _invalid(compat_copy) == []
    _edit(compat_copy.parent / file, old, new)
    assert _invalid(compat_copy) == invalid


def test_missing_lock_files(compat_copy: Path) -> None:
    (compat_copy.parent / "requirements" / "framework-web-extra" / "pylock.framework-web-extra.meta.json").unlink()
    (compat_copy.parent / "requirements" / "app-records" / "pylock.app-records.toml").unlink()
    checks = check_stack_locks(load_spec(compat_copy, environ={}))
    assert checks["framework-web-extra"].problems == ("no lock metadata",)
    assert checks["app-records"].problems == ("no pylock file",)
    assert checks["app-dates"].problems == ("layers underneath need locking: framework-web-extra",)
    assert checks["framework-web"].valid


def test_show_marks_invalid_layers(compat_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from venvstacks.cli.main import main

    _edit(compat_copy.parent / "launch/records/__main__.py", 'Record("x")', 'Record("y")')
    assert main(["show", str(compat_copy)]) == 0
    out = capsys.readouterr().out
    assert "    └── *app-records -> app-records@???\n" in out
    assert "    ├── app-dates\n" in out
