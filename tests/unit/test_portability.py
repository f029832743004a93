"""Making a built environment relocatable: executables, RECORD files, symbolic links, leftover references."""

from __future__ import annotations

import csv
import importlib.metadata
import os
from pathlib import Path

import pytest

from venvstacks.build import portability
from venvstacks.errors import BuildError
from venvstacks.build.portability import (
    find_absolute_references,
    prune_records,
    relativise_symlinks,
    remove_foreign_executables,
)


def touch(path: Path, content: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


# --- remove_foreign_executables ---------------------------------------------------


def test_only_python_executables_remain(tmp_path: Path) -> None:
    bin_dir = tmp_path / "env" / "bin"
    scripts = ["python3", "python3.11", "Python-Config", "activate", "activate.fish", "Activate.ps1"]
    scripts += ["pip", "pip3.11", "pydoc3", "idle3", "myscript", "2to3"]
    for name in scripts:
        touch(bin_dir / name, b"#!/build/env/bin/python\n")
    (bin_dir / "python").symlink_to("python3")
    (bin_dir / "pip3").symlink_to("pip")
    touch(bin_dir / "python-folder" / "inside")
    touch(bin_dir / "__pycache__" / "x.pyc")
    (bin_dir / "linked-folder").symlink_to(tmp_path)
    (bin_dir / "python-linked-folder").symlink_to(tmp_path)
    removed = remove_foreign_executables(bin_dir)
    assert [p.name for p in removed] == [
        "2to3",
        "Activate.ps1",
        "__pycache__",
        "activate",
        "activate.fish",
        "idle3",
        "linked-folder",
        "myscript",
        "pip",
        "pip3",
        "pip3.11",
        "pydoc3",
        "python-folder",
    ]
    assert removed == sorted(removed)
    assert all(p.parent == bin_dir for p in removed)
    assert sorted(p.name for p in bin_dir.iterdir()) == ["Python-Config", "python", "python-linked-folder", "python3", "python3.11"]
    assert tmp_path.is_dir()


def test_a_missing_bin_folder_removes_nothing(tmp_path: Path) -> None:
    assert remove_foreign_executables(tmp_path / "bin") == []


# --- prune_records ----------------------------------------------------------------

RECORD_TEXT = (
    "../../../bin/foo,sha256=abc,123\n"
    "foo/__init__.py,sha256=def,45\n"
    '"foo/a,b.py",sha256=ghi,6\n'
    "../../../bin/foo-extra,sha256=jkl,7\n"
    "../../../bin/sub/tool,,\n"
    "../../../share/man/foo.1,,\n"
    "foo-1.0.dist-info/METADATA,sha256=mno,89\n"
    "foo-1.0.dist-info/RECORD,,\n"
)


@pytest.fixture
def env(tmp_path: Path) -> Path:
    env = tmp_path / "env"
    site = env / "lib" / "python3.11" / "site-packages"
    touch(site / "foo" / "__init__.py")
    touch(site / "foo" / "a,b.py")
    touch(site / "foo-1.0.dist-info" / "METADATA", b"Metadata-Version: 2.1\nName: foo\nVersion: 1.0\n")
    record = touch(site / "foo-1.0.dist-info" / "RECORD", RECORD_TEXT.encode())
    record.chmod(0o640)
    touch(site / "bar-2.0.dist-info" / "METADATA", b"Metadata-Version: 2.1\nName: bar\nVersion: 2.0\n")
    touch(site / "bar-2.0.dist-info" / "RECORD", b"bar.py,,\nbar-2.0.dist-info/RECORD,,\n")
    touch(site / "bar.py")
    return env


def test_rows_for_removed_paths_are_dropped(env: Path) -> None:
    site = env / "lib" / "python3.11" / "site-packages"
    record = site / "foo-1.0.dist-info" / "RECORD"
    other = site / "bar-2.0.dist-info" / "RECORD"
    other_before = other.stat()
    removed = [env / "bin" / "foo", env / "bin" / "foo-extra", env / "bin" / "sub", env / "bin" / "unrelated"]
    assert prune_records(site, removed) == 1
    assert record.read_text(encoding="utf-8") == (
        "foo/__init__.py,sha256=def,45\n"
        '"foo/a,b.py",sha256=ghi,6\n'
        "../../../share/man/foo.1,,\n"
        "foo-1.0.dist-info/METADATA,sha256=mno,89\n"
        "foo-1.0.dist-info/RECORD,,\n"
    )
    assert record.stat().st_mode & 0o777 == 0o640
    assert other.stat().st_mtime_ns == other_before.st_mtime_ns
    assert sorted(p.name for p in record.parent.iterdir()) == ["METADATA", "RECORD"]
    with record.open(encoding="utf-8", newline="") as stream:
        assert [row[0] for row in csv.reader(stream)][:2] == ["foo/__init__.py", "foo/a,b.py"]


def test_metadata_still_reads_the_pruned_record(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = env / "lib" / "python3.11" / "site-packages"
    prune_records(site, [env / "bin" / "foo", env / "bin" / "foo-extra", env / "bin" / "sub"])
    (dist,) = importlib.metadata.distributions(name="foo", path=[str(site)])
    assert dist.version == "1.0"
    files = [f.as_posix() for f in dist.files or []]
    assert "foo/a,b.py" in files
    assert not [f for f in files if "/bin/" in f]
    assert [f for f in dist.files or [] if f.as_posix() == "foo/a,b.py"][0].locate().is_file()
    monkeypatch.syspath_prepend(str(site))
    assert importlib.metadata.packages_distributions()["foo"] == ["foo"]


def test_nothing_removed_rewrites_nothing(env: Path) -> None:
    site = env / "lib" / "python3.11" / "site-packages"
    record = site / "foo-1.0.dist-info" / "RECORD"
    before = record.stat().st_mtime_ns
    assert prune_records(site, []) == 0
    assert prune_records(site, [env / "bin" / "other"]) == 0
    assert record.stat().st_mtime_ns == before
    assert record.read_text(encoding="utf-8") == RECORD_TEXT


def test_removed_paths_are_compared_lexically(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = env / "lib" / "python3.11" / "site-packages"
    monkeypatch.chdir(env / "lib")
    assert prune_records(Path("python3.11/site-packages"), [Path("../bin/./foo")]) == 1
    assert "bin/foo," not in (site / "foo-1.0.dist-info" / "RECORD").read_text(encoding="utf-8")


def test_a_failed_write_leaves_no_temporary_file(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = env / "lib" / "python3.11" / "site-packages"
    record = site / "foo-1.0.dist-info" / "RECORD"

    def failing_replace(source: str, target: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(portability.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        prune_records(site, [env / "bin" / "foo"])
    monkeypatch.undo()
    assert record.read_text(encoding="utf-8") == RECORD_TEXT
    assert sorted(p.name for p in record.parent.iterdir()) == ["METADATA", "RECORD"]


# --- relativise_symlinks ----------------------------------------------------------


@pytest.fixture
def build(tmp_path: Path) -> Path:
    build = tmp_path / "build"
    touch(build / "cpython-3.11" / "bin" / "python3.11", b"interpreter")
    (build / "cpython-3.11" / "bin" / "python3").symlink_to("python3.11")
    touch(build / "framework-x" / "lib" / "libfoo.so", b"foo")
    (build / "framework-x" / "bin").mkdir(parents=True)
    return build


def test_links_into_the_build_folder_become_relative(build: Path) -> None:
    env = build / "framework-x"
    (env / "bin" / "python_").symlink_to(build / "cpython-3.11" / "bin" / "python3")
    (env / "bin" / "python3").symlink_to("python_")
    (env / "share").mkdir()
    (env / "share" / "lib").symlink_to(env / "lib")
    (env / "lib" / "self.so").symlink_to(env / "lib" / "libfoo.so")
    relativise_symlinks(env, build)
    assert os.readlink(env / "bin" / "python_") == "../../cpython-3.11/bin/python3"
    assert os.readlink(env / "bin" / "python3") == "python_"
    assert os.readlink(env / "share" / "lib") == "../lib"
    assert os.readlink(env / "lib" / "self.so") == "libfoo.so"
    assert (env / "bin" / "python3").read_bytes() == b"interpreter"
    assert (env / "share" / "lib" / "libfoo.so").read_bytes() == b"foo"
    assert sorted(p.name for p in (env / "bin").iterdir()) == ["python3", "python_"]


@pytest.mark.parametrize("via", ["target", "tree", "build", "all"])
def test_links_through_an_aliased_build_folder_become_relative(build: Path, tmp_path: Path, via: str) -> None:
    alias = tmp_path / "alias"
    alias.symlink_to(build)
    env = build / "framework-x"
    target_root = alias if via in ("target", "all") else build
    (env / "bin" / "python_").symlink_to(target_root / "cpython-3.11" / "bin" / "python3")
    tree_root = alias if via in ("tree", "all") else build
    relativise_symlinks(tree_root / "framework-x", alias if via in ("build", "all") else build)
    assert os.readlink(env / "bin" / "python_") == "../../cpython-3.11/bin/python3"


def test_links_outside_the_build_folder_become_hard_links(build: Path, tmp_path: Path) -> None:
    outside = touch(tmp_path / "outside" / "data.bin", b"data")
    env = build / "framework-x"
    (env / "lib" / "data.bin").symlink_to(outside)
    (env / "lib" / "chain.bin").symlink_to(tmp_path / "outside" / "chain")
    (tmp_path / "outside" / "chain").symlink_to("data.bin")
    relativise_symlinks(env, build)
    for name in ("data.bin", "chain.bin"):
        copy = env / "lib" / name
        assert not copy.is_symlink()
        assert copy.read_bytes() == b"data"
        assert os.path.samefile(copy, outside)
    assert outside.is_file()
    assert sorted(p.name for p in (env / "lib").iterdir()) == ["chain.bin", "data.bin", "libfoo.so"]


def test_links_to_another_device_become_copies(build: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outside = touch(tmp_path / "outside" / "data.bin", b"data")
    os.utime(outside, ns=(1_000_000_000, 1_000_000_000))
    env = build / "framework-x"
    (env / "lib" / "data.bin").symlink_to(outside)
    monkeypatch.setattr(portability, "_same_device", lambda first, second: False)
    relativise_symlinks(env, build)
    copy = env / "lib" / "data.bin"
    assert not copy.is_symlink()
    assert copy.read_bytes() == b"data"
    assert not os.path.samefile(copy, outside)
    assert copy.stat().st_mtime_ns == 1_000_000_000


@pytest.mark.parametrize("kind", ["dangling", "folder"])
def test_links_outside_to_anything_but_a_file_are_errors(build: Path, tmp_path: Path, kind: str) -> None:
    target = tmp_path / "outside"
    if kind == "folder":
        target.mkdir()
    env = build / "framework-x"
    (env / "lib" / "odd").symlink_to(target)
    with pytest.raises(BuildError, match="which is not a file"):
        relativise_symlinks(env, build)
    assert os.readlink(env / "lib" / "odd") == str(target)


def test_relative_links_are_left_alone(build: Path) -> None:
    env = build / "framework-x"
    (env / "lib" / "up").symlink_to("../../../somewhere/else")
    (env / "lib" / "loop").symlink_to("loop")
    relativise_symlinks(env, build)
    assert os.readlink(env / "lib" / "up") == "../../../somewhere/else"
    assert os.readlink(env / "lib" / "loop") == "loop"


# --- find_absolute_references -----------------------------------------------------

NEEDLE = "/srv/build/framework-x"


def test_files_that_mention_the_needle_are_found(tmp_path: Path) -> None:
    tree = tmp_path / "env"
    touch(tree / "bin" / "python", b"#!/bin/sh\n")
    touch(tree / "z.cfg", NEEDLE.encode())
    touch(tree / "lib" / "a.txt", f"prefix {NEEDLE}/lib suffix".encode())
    touch(tree / "lib" / "b.so", b"\x00\x01" + NEEDLE.encode() + b"\x00")
    touch(tree / "lib" / "near-miss.txt", NEEDLE[:-1].encode() + b"_")
    touch(tree / "lib" / "__pycache__" / "a.pyc", NEEDLE.encode())
    touch(tree / "lib" / "sitecustomize.py", NEEDLE.encode())
    touch(tree / "skipped" / "deep" / "x.txt", NEEDLE.encode())
    touch(tmp_path / "outside.txt", NEEDLE.encode())
    (tree / "lib" / "link.txt").symlink_to(tmp_path / "outside.txt")
    (tree / "linked-folder").symlink_to(tmp_path)
    found = find_absolute_references(tree, NEEDLE, skip={"lib/sitecustomize.py", "skipped"})
    assert found == [tree / "lib" / "a.txt", tree / "lib" / "b.so", tree / "z.cfg"]
    assert find_absolute_references(tree, NEEDLE, skip=()) == [
        tree / "lib" / "a.txt",
        tree / "lib" / "b.so",
        tree / "lib" / "sitecustomize.py",
        tree / "skipped" / "deep" / "x.txt",
        tree / "z.cfg",
    ]


@pytest.mark.parametrize("chunk_size", [1, 2, 5, 7, 64])
@pytest.mark.parametrize("offset", [0, 1, 3, 11, 30])
def test_a_needle_across_chunk_boundaries_is_found(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_size: int, offset: int
) -> None:
    monkeypatch.setattr(portability, "_CHUNK_SIZE", chunk_size)
    touch(tmp_path / "hit.bin", b"x" * offset + NEEDLE.encode() + b"y" * offset)
    touch(tmp_path / "miss.bin", b"x" * offset + NEEDLE.encode()[:-1] + b"y" + NEEDLE.encode()[1:])
    assert find_absolute_references(tmp_path, NEEDLE, skip=()) == [tmp_path / "hit.bin"]


def test_a_needle_across_the_real_chunk_boundary_is_found(tmp_path: Path) -> None:
    size = portability._CHUNK_SIZE
    touch(tmp_path / "big.so", b"\x00" * (size - 5) + NEEDLE.encode() + b"\x00" * 100)
    touch(tmp_path / "big-miss.so", b"\x00" * (size - 5) + NEEDLE.encode()[:-1] + b"\x00" * 100)
    assert find_absolute_references(tmp_path, NEEDLE, skip=()) == [tmp_path / "big.so"]


def test_single_character_needles_and_empty_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(portability, "_CHUNK_SIZE", 1)
    touch(tmp_path / "a", b"abc")
    assert find_absolute_references(tmp_path, "c", skip=()) == [tmp_path / "a"]
    assert find_absolute_references(tmp_path, "d", skip=()) == []
    with pytest.raises(ValueError, match="must not be empty"):
        find_absolute_references(tmp_path, "", skip=())
