"""What `publish` decides for each layer: archive it again, keep its archive, or only say what it would do.

The layers are locked and built with a fake uv (see fakeuv.py); archiving
them is real, and fast, for such small trees.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fakeuv import APP, FRAMEWORK, HOST, LAYERS, RUNTIME, SHORT, Stack, edit
from venvstacks.errors import PublishError
from venvstacks.lock.state import check_stack_locks
from venvstacks.publish.archive import ArchiveFormat
from venvstacks.publish.publisher import PublishedLayer, PublishSettings, publish_layers

META = "__venvstacks__"


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    """The stack locked and built, not yet published."""
    return Stack(tmp_path).built()


def _output(stack: Stack) -> Path:
    return stack.path.parent / "_artifacts"


def _publish(stack: Stack, **options: Any) -> dict[str, PublishedLayer]:
    """Publish every layer; one compressing thread at the lowest level unless `options` say otherwise, which is fastest here."""
    spec = stack.spec
    settings = PublishSettings(build_dir=stack.build_dir, output_dir=_output(stack), platform=HOST, **{"jobs": 1, "level": 0, **options})
    return {p.build_name: p for p in publish_layers(spec, list(spec.layers()), check_stack_locks(spec), settings)}


def _actions(published: dict[str, PublishedLayer]) -> dict[str, tuple[str, int]]:
    """Each layer's action and archive build number."""
    return {name: (p.action, p.metadata["archive_build"]) for name, p in published.items()}


def _snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Every file under `folder`: its inode, modification time and size, to tell whether anything was written."""
    return {str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_first_publish_archives_every_layer_with_its_metadata(stack: Stack) -> None:
    published = _publish(stack)
    assert _actions(published) == dict.fromkeys(LAYERS, ("archived", 1))
    output = _output(stack)
    for name, layer in published.items():
        data = layer.path.read_bytes()
        assert (layer.path.parent, layer.path.name) == (output, layer.metadata["archive_name"])
        assert (layer.metadata["archive_size"], layer.metadata["archive_hashes"]) == (len(data), {"sha256": hashlib.sha256(data).hexdigest()})
        assert json.loads((output / META / "env_metadata" / f"{name}.json").read_text(encoding="utf-8")) == layer.metadata
    stack_manifest = json.loads((output / META / "venvstacks.json").read_text(encoding="utf-8"))
    assert stack_manifest == {
        "layers": {"applications": [published[APP].metadata], "frameworks": [published[FRAMEWORK].metadata], "runtimes": [published[RUNTIME].metadata]}
    }
    # the versioned app is archived under its deployed name, holding what was built
    assert published[APP].path.name == "app-dates@1.tar.xz"
    with tarfile.open(published[APP].path) as archive:
        names = archive.getnames()
    assert {f"app-dates@1/lib/python{SHORT}/site-packages/dates.py", "app-dates@1/postinstall.py"} <= set(names)
    assert sorted(path.name for path in output.iterdir()) == sorted([META, *(layer.path.name for layer in published.values())])


def test_an_unchanged_layer_keeps_its_archive(stack: Stack) -> None:
    first = _publish(stack)
    before = _snapshot(_output(stack))
    again = _publish(stack)
    assert _actions(again) == dict.fromkeys(LAYERS, ("unchanged", 1))
    assert {name: p.metadata for name, p in again.items()} == {name: p.metadata for name, p in first.items()}
    assert _snapshot(_output(stack)) == before


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"fmt": ArchiveFormat.TAR_GZ}, id="format"),
        pytest.param({"level": 1}, id="compression-level"),
        pytest.param({"precompile": True}, id="precompile"),
    ],
)
def test_a_changed_publishing_option_archives_every_layer_again(stack: Stack, options: dict[str, Any]) -> None:
    _publish(stack)
    published = _publish(stack, **options)
    assert _actions(published) == dict.fromkeys(LAYERS, ("archived", 2))  # the same lock: the next build of the archive
    suffix = options.get("fmt", ArchiveFormat.TAR_XZ).suffix
    assert all(p.path.name.endswith(suffix) and p.path.exists() for p in published.values())
    with tarfile.open(published[APP].path) as archive:
        bytecode = [name for name in archive.getnames() if name.endswith(".pyc")]
    assert bool(bytecode) == bool(options.get("precompile"))
    # the new options are what the archives are now current for
    assert _actions(_publish(stack, **options)) == dict.fromkeys(LAYERS, ("unchanged", 2))


def test_force_archives_unchanged_layers_again(stack: Stack) -> None:
    _publish(stack)
    before = _snapshot(_output(stack))
    assert _actions(_publish(stack, force=True)) == dict.fromkeys(LAYERS, ("archived", 2))
    after = _snapshot(_output(stack))
    assert sorted(after) == sorted(before)
    assert all(after[path][:2] != before[path][:2] for path in before)  # every file written again


def test_a_rebuilt_layer_is_archived_again_and_the_others_kept(stack: Stack) -> None:
    _publish(stack)
    edit(stack.path, 'name = "dates"\n', 'name = "dates"\ndynlib_exclude = ["*.so"]\n')
    assert stack.build()[APP].action == "built"
    assert _actions(_publish(stack)) == {RUNTIME: ("unchanged", 1), FRAMEWORK: ("unchanged", 1), APP: ("archived", 2)}


def test_a_new_lock_version_starts_a_new_archive_at_build_one(stack: Stack) -> None:
    first = _publish(stack)
    stack.uv.releases["python-dateutil"] = "2.10.0"
    assert stack.lock(dict.fromkeys(LAYERS, True))[APP].lock_version == 2
    stack.build()
    published = _publish(stack)
    assert _actions(published) == {RUNTIME: ("unchanged", 1), FRAMEWORK: ("unchanged", 1), APP: ("archived", 1)}
    assert (published[APP].path.name, published[APP].metadata["install_target"]) == ("app-dates@2.tar.xz", "app-dates@2")
    assert first[APP].path.exists()  # the archive of the previous version stays for deployments still using it


def test_a_dry_run_says_what_it_would_do_and_writes_nothing(stack: Stack) -> None:
    planned = _publish(stack, dry_run=True)
    assert _actions(planned) == dict.fromkeys(LAYERS, ("dry run", 1))
    assert not _output(stack).exists()
    _publish(stack)
    before = _snapshot(_output(stack))
    assert _actions(_publish(stack, dry_run=True)) == dict.fromkeys(LAYERS, ("unchanged", 1))
    assert _actions(_publish(stack, dry_run=True, level=1)) == dict.fromkeys(LAYERS, ("dry run", 2))
    assert _snapshot(_output(stack)) == before


def _remove_archive(stack: Stack) -> None:
    (_output(stack) / "framework-web.tar.xz").unlink()


def _grow_archive(stack: Stack) -> None:
    with (_output(stack) / "framework-web.tar.xz").open("ab") as stream:
        stream.write(b"\0")


def _remove_inputs_digest(stack: Stack) -> None:
    (_output(stack) / META / "archive_inputs" / "framework-web.json").unlink()


@pytest.mark.parametrize("damage", [_remove_archive, _grow_archive, _remove_inputs_digest], ids=["archive-removed", "archive-altered", "inputs-digest-removed"])
def test_a_layer_whose_published_files_are_not_as_written_is_archived_again(stack: Stack, damage: Callable[[Stack], None]) -> None:
    _publish(stack)
    damage(stack)
    published = _publish(stack)
    assert _actions(published) == {RUNTIME: ("unchanged", 1), FRAMEWORK: ("archived", 2), APP: ("unchanged", 1)}
    assert published[FRAMEWORK].path.stat().st_size == published[FRAMEWORK].metadata["archive_size"]


def test_an_unbuilt_layer_is_refused_and_nothing_is_published(stack: Stack) -> None:
    _publish(stack)
    before = _snapshot(_output(stack))
    (stack.build_dir / f"{APP}.last-build.json").unlink()  # as a build interrupted in the app leaves it
    with pytest.raises(PublishError, match=f"layer '{APP}' has not been built"):
        _publish(stack, force=True)
    assert _snapshot(_output(stack)) == before  # not even the layers that were archived again
