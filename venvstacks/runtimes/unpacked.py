"""The build folder's unpacked copy of each runtime's archive, which runtimes are hard-linked from.

A runtime archive holds a thousand files or more. Unpacking it means
decompressing it and creating every file, and a file system that has just
deleted a runtime (`build --clean`) can be slow to create files again. So a
runtime's archive is unpacked once, into `<build dir>/_python-unpacked/<runtime>/`,
and each (clean) build of the runtime is made from there: a folder for each
folder, a link for each link, and a hard link for each file (a copy where the
file system cannot link).

Nothing runs in the unpacked copy or writes into it, and nothing a build does
afterwards writes into an installed file (`fsutil.replace_file`). But a hard
link is the same file as the copy's, so an edit made in place through the
runtime would change the copy too. `snapshot.json` records each file's size,
modification time, mode and inode as unpacked; before linking a file, its
copy is compared with the record, and one that differs has the whole archive
unpacked again. The snapshot is written last, so a copy without one (its
unpacking was killed) is never used.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import posixpath
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from .. import _hooks
from ..errors import ArchiveError, RuntimeSourceError
from ..extract import safe_extract_tar
from ..fsutil import dump_json, remove_path, write_text_atomic
from ..progress import progress
from .pbs import RuntimeArchive

__all__ = ["UNPACKED_DIR", "link_runtime"]

UNPACKED_DIR = "_python-unpacked"
"""The build folder's folder of unpacked runtime archives (the build and lock runs clear its temporaries)."""
_SNAPSHOT = "snapshot.json"
_TREE = "python"
_LOG = logging.getLogger(__name__)


class SnapshotData(TypedDict):
    """`snapshot.json`: the archive unpacked, and every entry of the tree as unpacked, parents first."""

    archive: str
    sha256: str
    folders: list[tuple[str, int]]
    """`[path, mode]`; the tree itself is `""`."""
    links: list[tuple[str, str]]
    """`[path, target]`."""
    files: list[tuple[str, int, int, int, int]]
    """`[path, mode, size, mtime_ns, inode]`."""


@dataclass(frozen=True)
class _Unpacked:
    """An archive's unpacked tree and its snapshot."""

    tree: Path
    snapshot: SnapshotData


def _scan(tree: Path, archive: RuntimeArchive) -> SnapshotData:
    root = ("", stat.S_IMODE(os.lstat(tree).st_mode))
    data: SnapshotData = {"archive": archive.name.filename, "sha256": archive.sha256, "folders": [root], "links": [], "files": []}
    pending = [""]
    while pending:
        folder = pending.pop()
        with os.scandir(tree / folder) as scanned:
            entries = sorted(scanned, key=lambda entry: entry.name)
        for entry in entries:
            path = f"{folder}/{entry.name}" if folder else entry.name
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                data["folders"].append((path, stat.S_IMODE(info.st_mode)))
                pending.append(path)
            elif stat.S_ISLNK(info.st_mode):
                data["links"].append((path, os.readlink(entry.path)))
            else:  # the extractor makes nothing else
                data["files"].append((path, stat.S_IMODE(info.st_mode), info.st_size, info.st_mtime_ns, info.st_ino))
    return data


def _read_snapshot(home: Path) -> SnapshotData | None:
    """The snapshot of an unpacked copy, or None if there is none or it is not one this module wrote."""
    try:
        data = json.loads((home / _SNAPSHOT).read_text(encoding="utf-8"))
        snapshot: SnapshotData = {
            "archive": str(data["archive"]),
            "sha256": str(data["sha256"]),
            "folders": [(str(path), int(mode)) for path, mode in data["folders"]],
            "links": [(str(path), str(target)) for path, target in data["links"]],
            "files": [(str(path), int(mode), int(size), int(mtime), int(inode)) for path, mode, size, mtime, inode in data["files"]],
        }
    except (OSError, ValueError, TypeError, KeyError):
        return None
    folders, links, files = snapshot["folders"], snapshot["links"], snapshot["files"]
    paths = [path for path, _ in folders[1:]] + [path for path, _ in links] + [path for path, *_ in files]
    if [path for path, _mode in folders[:1]] != [""] or not all(map(_plain_path, paths)):
        return None  # not written by `_scan`
    if not all(_inside(path, target) for path, target in links):
        return None  # the extractor refuses links out of the tree
    return snapshot


def _inside(link: str, target: str) -> bool:
    """Whether the relative `target` of the link at `link` stays inside the tree."""
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(link), target))
    return not posixpath.isabs(target) and resolved != ".." and not resolved.startswith("../")


def _plain_path(path: str) -> bool:
    """Whether `path` is relative, `/`-separated and free of `.`, `..` and empty parts."""
    return all(part not in ("", ".", "..") and "\\" not in part for part in path.split("/"))


def _unpack(archive: RuntimeArchive, home: Path, runtime: str) -> _Unpacked:
    """Unpack `archive` into `home` (replacing what is there), snapshot last."""
    remove_path(home)
    home.parent.mkdir(parents=True, exist_ok=True)
    progress(_LOG, "unpacking %s for runtime %r", archive.path.name, runtime)
    partial = Path(tempfile.mkdtemp(prefix=f"{home.name}.partial-", dir=home.parent))
    try:
        safe_extract_tar(archive.path, partial / _TREE, strip_prefix="python")
        snapshot = _scan(partial / _TREE, archive)
        write_text_atomic(partial / _SNAPSHOT, dump_json(snapshot))
        _hooks.pause("runtime-unpacked")  # a test hook: unpacked, not yet in place
        os.replace(partial, home)
    except ArchiveError as exc:
        remove_path(partial)
        raise RuntimeSourceError(f"runtime {runtime!r}: {exc}") from exc
    except BaseException:
        remove_path(partial)
        raise
    return _Unpacked(home / _TREE, snapshot)


def _link_or_copy(source: Path, destination: Path) -> None:
    try:
        os.link(source, destination)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
            raise
        shutil.copy2(source, destination)


def _state(path: Path) -> tuple[int, int, int, int] | None:
    """A regular file's mode, size, mtime_ns and inode, as the snapshot records them; None for anything else."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    return (stat.S_IMODE(info.st_mode), info.st_size, info.st_mtime_ns, info.st_ino) if stat.S_ISREG(info.st_mode) else None


def _link_tree(unpacked: _Unpacked, destination: Path) -> bool:
    """Make the absent `destination` from the unpacked tree; False, with nothing made, if a file there is not as recorded."""
    partial = Path(tempfile.mkdtemp(prefix=f"{destination.name}.partial-", dir=destination.parent))
    try:
        snapshot = unpacked.snapshot
        for path, _mode in snapshot["folders"][1:]:
            os.mkdir(partial / path)
        for path, mode, size, mtime_ns, inode in snapshot["files"]:
            source = unpacked.tree / path
            if _state(source) != (mode, size, mtime_ns, inode):
                _LOG.warning("%s changed since it was unpacked (edited through a runtime's hard link?)", source)
                remove_path(partial)
                return False
            _link_or_copy(source, partial / path)
        for path, target in snapshot["links"]:
            os.symlink(target, partial / path)
        for path, mode in reversed(snapshot["folders"]):  # the innermost first: a read-only folder is made so last
            os.chmod(partial / path, mode)
        _hooks.pause("runtime-linked")  # a test hook: linked, not yet in place
        os.replace(partial, destination)
    except BaseException:
        remove_path(partial)
        raise
    return True


def link_runtime(archive: RuntimeArchive, build_dir: Path, runtime: str, destination: Path) -> None:
    """Make the absent `destination` the runtime unpacked from `archive`, by hard links to the build folder's unpacked copy.

    The copy is (re)unpacked first when it is missing, of another archive, or
    changed since it was unpacked. Raises RuntimeSourceError for an archive
    that cannot be unpacked.
    """
    home = build_dir / UNPACKED_DIR / runtime
    snapshot = _read_snapshot(home)
    if snapshot is not None and snapshot["sha256"] == archive.sha256:
        unpacked = _Unpacked(home / _TREE, snapshot)
    else:
        unpacked = _unpack(archive, home, runtime)
    destination.parent.mkdir(parents=True, exist_ok=True)
    if not _link_tree(unpacked, destination):
        if not _link_tree(_unpack(archive, home, runtime), destination):
            raise RuntimeSourceError(f"runtime {runtime!r}: the files unpacked in {home} keep changing while they are linked")
