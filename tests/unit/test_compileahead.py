"""Compiling a layer's sources while it is unpacked: what is sent, when, and what it makes."""

from __future__ import annotations

import compileall
import os
import py_compile
import sys
import time
from pathlib import Path

import pytest

from venvstacks.deploy.compileahead import FILES_PER_WORKER, CompileAhead, CompileGroup
from venvstacks.publish.members import collect_members

TAG = sys.implementation.cache_tag


def _unpack(folder: Path, ahead: CompileAhead, files: dict[str, bytes]) -> None:
    """Write `files` in the given (archive) order, telling `ahead` about each."""
    ahead.unpacking_into(folder)
    for relative, data in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        ahead.on_file(relative)
    ahead.unpacked()


def _bytecode(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.pyc"))}


@pytest.mark.slow  # compiles in worker processes, and with compileall to compare
def test_sources_are_compiled_as_compileall_compiles_them(tmp_path: Path) -> None:
    files = {f"lib/pkg/m{index:03}.py": f"X = {index}\n".encode() for index in range(2 * FILES_PER_WORKER + 5)}
    files |= {"lib/top.py": b"T = 1\n", "lib/notes.txt": b"not python\n", "bin/tool.py": b"outside lib\n", "postinstall.py": b""}
    ahead = CompileGroup("runtime", 2, 1).ahead()
    ahead.start(Path(sys.executable))
    _unpack(tmp_path / "ahead", ahead, files)
    ahead.finish()
    made = _bytecode(tmp_path / "ahead")
    assert len(made) == 2 * FILES_PER_WORKER + 6  # everything under lib/, nothing else
    for path in made:  # compileall now finds everything up to date, and would have written the same
        assert compileall.compile_file(str(tmp_path / "ahead" / path.replace("__pycache__/", "").replace(f".{TAG}.pyc", ".py")), quiet=1)
    assert _bytecode(tmp_path / "ahead") == made


def test_nothing_is_compiled_for_a_layer_that_ships_bytecode(tmp_path: Path) -> None:
    # An upper-case module sorts before __pycache__: its source arrives before its shipped bytecode.
    files = {"lib/A.py": b"A = 1\n", f"lib/__pycache__/A.{TAG}.pyc": b"shipped", f"lib/__pycache__/b.{TAG}.pyc": b"shipped", "lib/b.py": b"B = 1\n"}
    ahead = CompileGroup("runtime", 2, 1).ahead()
    ahead.start(Path(sys.executable))
    _unpack(tmp_path, ahead, files)
    ahead.finish()
    assert _bytecode(tmp_path) == {f"lib/__pycache__/A.{TAG}.pyc": b"shipped", f"lib/__pycache__/b.{TAG}.pyc": b"shipped"}


def test_nothing_is_compiled_for_a_layer_published_with_bytecode_in_archive_order(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for relative, data in {"lib/a/A.py": b"A = 1\n", "lib/a/b.py": b"B = 1\n", "lib/c/c.py": b"C = 1\n", "lib/z.txt": b"z\n"}.items():
        (tree / relative).parent.mkdir(parents=True, exist_ok=True)
        (tree / relative).write_bytes(data)
    compileall.compile_dir(tree / "lib", quiet=2, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    order = [member for member in collect_members(tree, {}, TAG) if member.kind == "file"]
    files = {"/".join(member.parts): b"shipped" if member.parts[-1].endswith(".pyc") else tree.joinpath(*member.parts).read_bytes() for member in order}
    assert len(files) == 7 and sum(name.endswith(".pyc") for name in files) == 3
    ahead = CompileGroup("runtime", 1, 1).ahead()
    _unpack(tmp_path / "deployed", ahead, files)  # a folder's sources, once complete, would be compiled after it starts
    ahead.start(Path(sys.executable))
    ahead.finish()
    assert set(_bytecode(tmp_path / "deployed").values()) == {b"shipped"}


def test_a_folder_is_compiled_only_once_complete(tmp_path: Path) -> None:
    ahead = CompileGroup("runtime", 1, 1).ahead()
    ahead.start(Path(sys.executable))
    ahead.unpacking_into(tmp_path)
    (tmp_path / "lib" / "pkg").mkdir(parents=True)
    (tmp_path / "lib" / "pkg" / "a.py").write_text("A = 1\n", encoding="utf-8")
    ahead.on_file("lib/pkg/a.py")
    (tmp_path / "lib" / "pkg" / "sub").mkdir()
    (tmp_path / "lib" / "pkg" / "sub" / "b.py").write_text("B = 1\n", encoding="utf-8")
    ahead.on_file("lib/pkg/sub/b.py")  # still inside lib/pkg: a.py waits (lib/pkg/__pycache__ could follow)
    (tmp_path / "lib" / "z.py").write_text("Z = 1\n", encoding="utf-8")
    ahead.on_file("lib/z.py")  # lib/pkg is complete now
    ahead.unpacked()  # and lib too
    ahead.finish()
    assert sorted(_bytecode(tmp_path)) == [
        f"lib/__pycache__/z.{TAG}.pyc", f"lib/pkg/__pycache__/a.{TAG}.pyc", f"lib/pkg/sub/__pycache__/b.{TAG}.pyc"
    ]


def test_a_python_that_cannot_start_is_no_error(tmp_path: Path) -> None:
    ahead = CompileGroup("runtime", 2, 1).ahead()
    ahead.start(tmp_path / "no-such-python")
    _unpack(tmp_path / "layer", ahead, {"lib/a.py": b"A = 1\n"})
    ahead.finish()  # the final compile step compiles what is left, and reports failures
    assert _bytecode(tmp_path / "layer") == {}


def _compiling_children() -> list[int]:
    """This process's children that run the compiling loop."""
    children = []
    for entry in Path("/proc").iterdir():
        try:
            status = (entry / "status").read_text(encoding="utf-8")
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if f"\nPPid:\t{os.getpid()}\n" in status and b"compileall.compile_file" in command:
            children.append(int(entry.name))
    return children


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_stopping_kills_the_compiling_processes(tmp_path: Path) -> None:
    ahead = CompileGroup("runtime", 2, 1).ahead()
    ahead.start(Path(sys.executable))
    _unpack(tmp_path, ahead, {f"lib/m{index}.py": b"X = 1\n" * 20000 for index in range(400)})
    deadline = time.monotonic() + 10
    while len(_compiling_children()) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(_compiling_children()) == 2
    ahead.stop()
    assert _compiling_children() == []
    assert len(_bytecode(tmp_path)) < 400  # stopped before the end


def test_stopping_while_another_thread_starts_is_safe(tmp_path: Path) -> None:
    """Deploy stops a layer's head start from the unpacking thread while the main thread may be starting it."""
    import threading

    failures: list[BaseException] = []
    for _ in range(300):
        ahead = CompileGroup("runtime", 1, 1).ahead()
        ahead.unpacking_into(tmp_path)
        starter = threading.Thread(target=ahead.start, args=(Path(sys.executable),))
        starter.start()
        try:
            ahead.stop()
        except BaseException as exc:  # noqa: BLE001 - collected, then asserted
            failures.append(exc)
        starter.join()
        ahead.stop()
    assert failures == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_layers_on_one_runtime_share_its_groups_processes(tmp_path: Path) -> None:
    group = CompileGroup("runtime", 2, 3)
    aheads = [group.ahead() for _ in range(3)]
    aheads[0].start(Path(sys.executable))
    counts = []
    for index, ahead in enumerate(aheads):
        _unpack(tmp_path / f"layer-{index}", ahead, {f"lib/m{number:03}.py": b"X = 1\n" * 2000 for number in range(FILES_PER_WORKER)})
        counts.append(len(_compiling_children()))
    aheads[1].finish()
    assert max(counts) <= 2  # not two per layer
    for index in range(3):
        assert len(_bytecode(tmp_path / f"layer-{index}")) == FILES_PER_WORKER
    assert _compiling_children() == []


def test_a_group_finishes_once_all_its_layers_are_unpacked(tmp_path: Path) -> None:
    import threading

    group = CompileGroup("runtime", 1, 2)
    first, second = group.ahead(), group.ahead()
    first.start(Path(sys.executable))
    _unpack(tmp_path / "first", first, {"lib/a.py": b"A = 1\n"})
    finishing = threading.Thread(target=first.finish)
    finishing.start()
    finishing.join(0.5)
    assert finishing.is_alive()  # the second layer may still send sources
    _unpack(tmp_path / "second", second, {"lib/b.py": b"B = 1\n"})
    finishing.join(30)
    assert not finishing.is_alive()
    assert list(_bytecode(tmp_path / "first")) == [f"lib/__pycache__/a.{TAG}.pyc"]
    assert list(_bytecode(tmp_path / "second")) == [f"lib/__pycache__/b.{TAG}.pyc"]


def test_stopping_one_layer_stops_its_group(tmp_path: Path) -> None:
    import threading

    group = CompileGroup("runtime", 1, 2)
    first, second = group.ahead(), group.ahead()
    first.start(Path(sys.executable))
    _unpack(tmp_path / "first", first, {"lib/a.py": b"A = 1\n"})
    second.stop()  # its unpacking failed: the first layer's wait ends, though the second never says it is unpacked
    finishing = threading.Thread(target=first.finish)
    finishing.start()
    finishing.join(30)
    assert not finishing.is_alive()
    _unpack(tmp_path / "second", second, {"lib/b.py": b"B = 1\n"})  # too late: nothing more is compiled
    first.finish()
    assert _bytecode(tmp_path / "second") == {}


def test_a_compiling_process_that_ends_early_stops_the_head_start(tmp_path: Path) -> None:
    quitter = tmp_path / "python"  # takes the place of the runtime's Python: reads a little, then leaves
    quitter.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import os; os.read(0, 10)'\n", encoding="utf-8")
    quitter.chmod(0o755)
    group = CompileGroup("runtime", 1, 1)
    ahead = group.ahead()
    ahead.start(quitter)
    _unpack(tmp_path / "layer", ahead, {f"lib/m{index:02}.py": b"X = 1\n" for index in range(40)})
    ahead.finish()  # returns: the rest is left to the final compile step
    assert _bytecode(tmp_path / "layer") == {}
    assert _compiling_children() == []
