"""Runtimes made of hard links to the build folder's unpacked copy of their archive."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from venvstacks.errors import RuntimeSourceError
from venvstacks.folderlock import exclusive
from venvstacks.fsutil import file_sha256
from venvstacks.runtimes.pbs import RuntimeArchive, parse_runtime_archive_name
from venvstacks.runtimes.unpacked import UNPACKED_DIR, link_runtime


FILES = {"python/bin/python3": (0o755, b"#!/bin/sh\necho python\n"), "python/lib/python3.11/os.py": (0o644, b"# os\n")}


def _archive(folder: Path, files: dict[str, tuple[int, bytes]] = FILES, name: str = "cpython-3.11.7+local-x86_64-unknown-linux-gnu-install_only.tar.gz") -> RuntimeArchive:
    path = folder / name
    with tarfile.open(path, "w:gz") as tar:
        for folder_name in ("python", "python/bin", "python/lib", "python/lib/python3.11", "python/include"):
            info = tarfile.TarInfo(folder_name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for member, (mode, content) in files.items():
            info = tarfile.TarInfo(member)
            info.mode, info.size, info.mtime = mode, len(content), 1_700_000_000
            tar.addfile(info, io.BytesIO(content))
        link = tarfile.TarInfo("python/bin/python")
        link.type, link.linkname = tarfile.SYMTYPE, "python3"
        tar.addfile(link)
    parsed = parse_runtime_archive_name(path.name)
    assert parsed is not None
    return RuntimeArchive(path, parsed, file_sha256(path), None)


def _tree(folder: Path) -> dict[str, tuple[str, int, bytes | str]]:
    """Every entry under `folder`: kind, mode and content (a link's target)."""
    tree: dict[str, tuple[str, int, bytes | str]] = {}
    for path in sorted(folder.rglob("*")):
        info = path.lstat()
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            tree[rel] = ("link", 0, os.readlink(path))
        elif path.is_dir():
            tree[rel] = ("folder", info.st_mode & 0o777, b"")
        else:
            tree[rel] = ("file", info.st_mode & 0o777, path.read_bytes())
    return tree


EXPECTED = {
    "bin": ("folder", 0o755, b""),
    "bin/python": ("link", 0, "python3"),
    "bin/python3": ("file", 0o755, b"#!/bin/sh\necho python\n"),
    "include": ("folder", 0o755, b""),
    "lib": ("folder", 0o755, b""),
    "lib/python3.11": ("folder", 0o755, b""),
    "lib/python3.11/os.py": ("file", 0o644, b"# os\n"),
}


def _inode(path: Path) -> tuple[int, int]:
    info = path.lstat()
    return info.st_dev, info.st_ino


def test_a_runtime_is_made_of_hard_links_to_the_unpacked_archive(tmp_path: Path) -> None:
    archive, build = _archive(tmp_path), tmp_path / "_build"
    link_runtime(archive, build, "rt", build / "rt")
    assert _tree(build / "rt") == EXPECTED
    assert (build / "rt").stat().st_mode & 0o777 == 0o755
    copy = build / UNPACKED_DIR / "rt" / "python"
    assert _tree(copy) == EXPECTED
    assert _inode(build / "rt" / "bin" / "python3") == _inode(copy / "bin" / "python3")
    assert sorted(os.listdir(build)) == [UNPACKED_DIR, "rt"]  # no temporaries left


def test_the_archive_is_unpacked_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    archive, build = _archive(tmp_path), tmp_path / "_build"
    with caplog.at_level(logging.INFO):
        link_runtime(archive, build, "rt", build / "rt")
        assert [r.getMessage() for r in caplog.records if "unpacking" in r.getMessage()] == [f"unpacking {archive.path.name} for runtime 'rt'"]
        caplog.clear()
        first = _inode(build / "rt" / "lib" / "python3.11" / "os.py")
        for _ in range(2):  # what build --clean does each time
            os.unlink(build / "rt" / "bin" / "python3")  # uv uninstalling something: unlinking does not touch the copy
            (build / "rt" / "lib" / "python3.11" / "site.py").write_text("# installed\n", encoding="utf-8")

            shutil.rmtree(build / "rt")
            link_runtime(archive, build, "rt", build / "rt")
            assert _tree(build / "rt") == EXPECTED
            assert _inode(build / "rt" / "lib" / "python3.11" / "os.py") == first
    assert not [r for r in caplog.records if "unpacking" in r.getMessage()]


def test_a_file_edited_in_place_through_a_runtime_has_the_archive_unpacked_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    archive, build = _archive(tmp_path), tmp_path / "_build"
    link_runtime(archive, build, "rt", build / "rt")
    edited = build / "rt" / "lib" / "python3.11" / "os.py"
    with edited.open("r+b") as stream:  # an editor saving in place: the copy's file is the same file
        stream.write(b"# OS\n")
    os.utime(edited, ns=(1, 1))
    assert (build / UNPACKED_DIR / "rt" / "python" / "lib" / "python3.11" / "os.py").read_bytes() == b"# OS\n"

    shutil.rmtree(build / "rt")
    with caplog.at_level(logging.WARNING):
        link_runtime(archive, build, "rt", build / "rt")
    assert _tree(build / "rt") == EXPECTED
    assert _tree(build / UNPACKED_DIR / "rt" / "python") == EXPECTED
    assert "changed since it was unpacked" in caplog.text


def test_a_mode_changed_through_a_runtime_has_the_archive_unpacked_again(tmp_path: Path) -> None:
    archive, build = _archive(tmp_path), tmp_path / "_build"
    link_runtime(archive, build, "rt", build / "rt")
    os.chmod(build / "rt" / "bin" / "python3", 0o700)

    shutil.rmtree(build / "rt")
    link_runtime(archive, build, "rt", build / "rt")
    assert _tree(build / "rt") == EXPECTED


def test_another_archive_replaces_the_unpacked_copy(tmp_path: Path) -> None:
    build = tmp_path / "_build"
    link_runtime(_archive(tmp_path), build, "rt", build / "rt")
    newer = tmp_path / "newer"
    newer.mkdir()
    files = {**FILES, "python/lib/python3.11/os.py": (0o644, b"# os, patched\n")}

    shutil.rmtree(build / "rt")
    link_runtime(_archive(newer, files), build, "rt", build / "rt")
    assert (build / "rt" / "lib" / "python3.11" / "os.py").read_bytes() == b"# os, patched\n"
    assert os.listdir(build / UNPACKED_DIR) == ["rt"]


def test_an_unpacking_that_was_killed_is_never_used_and_is_cleared(tmp_path: Path) -> None:
    archive, build = _archive(tmp_path), tmp_path / "_build"
    killed = build / UNPACKED_DIR / "rt" / "python" / "lib"
    killed.mkdir(parents=True)  # unpacked in part, no snapshot: what a kill before the rename cannot leave, but a hand might
    leftover = build / UNPACKED_DIR / "rt.partial-abcd1234"
    leftover.mkdir()
    with exclusive(build, command="build", nested=(UNPACKED_DIR,)):
        assert not leftover.exists()
        link_runtime(archive, build, "rt", build / "rt")
    assert _tree(build / "rt") == EXPECTED


def test_files_are_copied_where_they_cannot_be_linked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive, build = _archive(tmp_path), tmp_path / "_build"

    def no_link(source: object, destination: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    link_runtime(archive, build, "rt", build / "rt")
    assert _tree(build / "rt") == EXPECTED
    copy = build / UNPACKED_DIR / "rt" / "python"
    assert _inode(build / "rt" / "bin" / "python3") != _inode(copy / "bin" / "python3")
    assert (build / "rt" / "bin" / "python3").stat().st_mtime == 1_700_000_000


def test_a_bad_archive_names_the_runtime_and_leaves_nothing(tmp_path: Path) -> None:
    archive, build = _archive(tmp_path), tmp_path / "_build"
    archive.path.write_bytes(archive.path.read_bytes()[:100])
    with pytest.raises(RuntimeSourceError, match="runtime 'rt': "):
        link_runtime(archive, build, "rt", build / "rt")
    assert not (build / "rt").exists()
    assert os.listdir(build / UNPACKED_DIR) == []


def test_a_file_missing_from_the_unpacked_copy_has_the_archive_unpacked_again(tmp_path: Path) -> None:
    archive, build = _archive(tmp_path), tmp_path / "_build"
    link_runtime(archive, build, "rt", build / "rt")
    shutil.rmtree(build / "rt")
    (build / UNPACKED_DIR / "rt" / "python" / "lib" / "python3.11" / "os.py").unlink()
    link_runtime(archive, build, "rt", build / "rt")
    assert _tree(build / "rt") == EXPECTED


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda data: {**data, "links": [["../../outside", "/etc/passwd"]]}, id="a-path-leaving-the-tree"),
        pytest.param(lambda data: {**data, "links": [["bin/python", "/etc/passwd"]]}, id="an-absolute-link"),
        pytest.param(lambda data: {**data, "links": [["bin/python", "../../../outside"]]}, id="a-link-leaving-the-tree"),
        pytest.param(lambda data: {**data, "folders": []}, id="no-tree"),
        pytest.param(lambda data: {**data, "files": [["bin/python3", "755"]]}, id="a-short-entry"),
        pytest.param(lambda data: [data], id="not-a-table"),
    ],
)
def test_a_snapshot_the_tool_did_not_write_has_the_archive_unpacked_again(tmp_path: Path, edit: Callable[[dict[str, object]], object]) -> None:
    archive, build = _archive(tmp_path), tmp_path / "_build"
    link_runtime(archive, build, "rt", build / "rt")
    shutil.rmtree(build / "rt")
    snapshot = build / UNPACKED_DIR / "rt" / "snapshot.json"
    snapshot.write_text(json.dumps(edit(json.loads(snapshot.read_text(encoding="utf-8")))), encoding="utf-8")
    link_runtime(archive, build, "rt", build / "rt")
    assert _tree(build / "rt") == EXPECTED
    assert not (build / "outside").exists()
    assert os.readlink(build / "rt" / "bin" / "python") == "python3"
