"""What goes into a layer's archive: the tree's entries, less what stays out, plus the overrides.

`collect_members` lists them in archive order; `archived_entries` describes
them, hashed, for the layer manifest. The writers in archive.py write them.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import stat
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import BinaryIO, Literal

from .. import cancel
from ..errors import ArchiveError

__all__ = [
    "CHUNK_SIZE", "FileEntry", "LinkEntry", "Member", "Override", "archived_entries", "collect_members", "excluded", "file_mode",
    "open_source", "shipped_bytecode",
]  # fmt: skip

CHUNK_SIZE = 1 << 20
"""How much of a file is in memory at a time while it is hashed or compressed."""


@dataclass(frozen=True)
class FileEntry:
    """A file to put in the archive instead of (or in addition to) the tree's."""

    content: bytes
    mode: int = 0o644
    """Only the execute bits count: the stored mode is 0o755 if any is set, else 0o644."""


@dataclass(frozen=True)
class LinkEntry:
    """A symlink to put in the archive; relative, and it may reach sibling layers."""

    target: str


Override = FileEntry | LinkEntry | None
"""What an override maps a layer path to: an entry, or None to leave the path out."""


_Parts = tuple[str, ...]


@dataclass(frozen=True)
class Member:
    """One archive entry, before it is written; `parts` is its path inside the layer."""

    parts: _Parts
    kind: Literal["dir", "file", "link"]
    mode: int
    source: Path | None = None
    content: bytes | None = None
    target: str | None = None


def file_mode(mode: int) -> int:
    return 0o755 if mode & 0o111 else 0o644


def _excluded_name(name: str, *, top: bool, is_dir: bool) -> bool:
    if name in ("sitecustomize.py", ".lock") or name.endswith(".pyc") or (is_dir and name == "__pycache__"):
        return True
    return top and (name == "pyvenv.cfg" or name.startswith("."))


def excluded(path: PurePath | str, *, is_dir: bool = False) -> bool:
    """Whether the relative layer path `path` (a folder if `is_dir`) stays out, overrides aside.

    Left out: `__pycache__` folders, `*.pyc`, `sitecustomize.py` and uv's `.lock` files
    anywhere; `pyvenv.cfg` and hidden entries at the top.
    """
    parts = PurePath(path).parts
    last = len(parts) - 1
    return any(
        _excluded_name(name, top=index == 0, is_dir=is_dir or index < last) for index, name in enumerate(parts)
    )


_CHECKED_HASH_FLAGS = b"\x03\x00\x00\x00"
"""Bytes 4-8 of a hash-based `.pyc` that the import system checks against its source."""


def shipped_bytecode(cache: Path, cache_tag: str) -> list[str]:
    """The names in the `__pycache__` folder `cache` that a layer shipping bytecode keeps.

    Those are hash-checked `<module>.<cache_tag>.pyc` files (no optimisation
    level) whose `<module>.py` lies beside the folder and is itself archived;
    stale, timestamp-based or other versions' files stay out.
    """
    kept = []
    suffix = f".{cache_tag}.pyc"
    try:
        names = sorted(os.listdir(cache))
    except OSError:
        return []
    for name in names:
        stem = name[: -len(suffix)]
        if not name.endswith(suffix) or not stem or "." in stem or _excluded_name(stem + ".py", top=False, is_dir=False):
            continue
        path = cache / name
        if not (cache.parent / (stem + ".py")).is_file() or path.is_symlink() or not path.is_file():
            continue
        with path.open("rb") as stream:
            if stream.read(8)[4:] == _CHECKED_HASH_FLAGS:
                kept.append(name)
    return kept


def _check_link(parts: _Parts, target: str, *, reach: int) -> None:
    """Refuse an absolute target, or one climbing more than `reach` folders above the layer."""
    where = "/".join(parts)
    if not target or posixpath.isabs(target):
        raise ArchiveError(f"symlink {where!r} -> {target!r}: the target must be a relative path")
    depth = len(parts) - 1
    for piece in target.split("/"):
        if piece == "..":
            depth -= 1
            if depth < -reach:
                raise ArchiveError(f"symlink {where!r} -> {target!r} points outside the layer")
        elif piece not in ("", "."):
            depth += 1


def _override_parts(key: str) -> _Parts:
    parts = tuple(key.split("/"))
    if any(piece in ("", ".", "..") or "\0" in piece for piece in parts):
        raise ArchiveError(f"override path {key!r} is not a relative POSIX path inside the layer")
    return parts


def _scan(source: Path, dropped: set[_Parts], replaced: set[_Parts], cache_tag: str | None) -> dict[_Parts, Member]:
    """Every entry of the tree that goes in the archive, keyed by its path parts."""
    members: dict[_Parts, Member] = {}
    pending: list[tuple[Path, _Parts]] = [(source, ())]
    while pending:
        folder, prefix = pending.pop()
        with os.scandir(folder) as listing:
            for item in listing:
                parts = (*prefix, item.name)
                mode = item.stat(follow_symlinks=False).st_mode
                if cache_tag and prefix and item.name == "__pycache__" and stat.S_ISDIR(mode) and parts not in dropped:
                    if kept := shipped_bytecode(Path(item.path), cache_tag):
                        members[parts] = Member(parts, "dir", 0o755)
                        for name in kept:
                            members[(*parts, name)] = Member((*parts, name), "file", 0o644, source=Path(item.path, name))
                    continue
                if parts in dropped or _excluded_name(item.name, top=not prefix, is_dir=stat.S_ISDIR(mode)):
                    continue
                path = Path(item.path)
                if stat.S_ISLNK(mode):
                    target = os.readlink(path)
                    if parts not in replaced:
                        _check_link(parts, target, reach=0)
                    members[parts] = Member(parts, "link", 0o777, target=target)
                elif stat.S_ISDIR(mode):
                    members[parts] = Member(parts, "dir", 0o755)
                    pending.append((path, parts))
                elif stat.S_ISREG(mode):
                    members[parts] = Member(parts, "file", file_mode(mode), source=path)
                else:
                    raise ArchiveError(f"cannot archive {path}: not a file, folder or symlink")
    return members


def _apply_overrides(members: dict[_Parts, Member], entries: dict[_Parts, FileEntry | LinkEntry]) -> None:
    """Add or replace the overridden entries, creating any folders they need."""
    for parts, entry in sorted(entries.items()):
        where = "/".join(parts)
        existing = members.get(parts)
        if existing is not None and existing.kind == "dir":
            raise ArchiveError(f"override {where!r} would replace a folder")
        for depth in range(1, len(parts)):
            parent = parts[:depth]
            found = members.get(parent)
            if found is None:
                members[parent] = Member(parent, "dir", 0o755)
            elif found.kind != "dir":
                raise ArchiveError(f"override {where!r}: {'/'.join(parent)!r} is not a folder")
        if isinstance(entry, FileEntry):
            members[parts] = Member(parts, "file", file_mode(entry.mode), content=bytes(entry.content))
        else:
            _check_link(parts, entry.target, reach=1)
            members[parts] = Member(parts, "link", 0o777, target=entry.target)


def collect_members(source: Path, overrides: Mapping[str, Override], cache_tag: str | None) -> list[Member]:
    """The archive's members in order (`_archive_position`): every folder precedes its contents."""
    if not source.is_dir():
        raise ArchiveError(f"cannot archive {source}: not a folder")
    dropped: set[_Parts] = set()
    entries: dict[_Parts, FileEntry | LinkEntry] = {}
    for key, entry in overrides.items():
        parts = _override_parts(key)
        if entry is None:
            dropped.add(parts)
        elif isinstance(entry, (FileEntry, LinkEntry)):
            entries[parts] = entry
        else:
            raise ArchiveError(f"override {key!r}: expected FileEntry, LinkEntry or None, got {entry!r}")
    members = _scan(source, dropped, set(entries), cache_tag)
    members[()] = Member((), "dir", 0o755)
    _apply_overrides(members, entries)
    return sorted(members.values(), key=_archive_position)


def content_group(name: str) -> str:
    """The kind of content a file name suggests: `so` for shared libraries (`x.so`, `libx.so.1`), else its suffix."""
    stem, dot, suffix = name.rpartition(".")
    if ".so." in name or suffix == "so":
        return "so"
    return suffix.lower() if dot and stem else ""


_KIND_RANK = {"dir": 0, "file": 1, "link": 2}


_GROUP_RANK = {"pyc": 0, "py": 1}
"""Shipped bytecode (`--precompile`) first, then Python sources, then every other kind of file."""


def _archive_position(member: Member) -> tuple[int, int, str, _Parts]:
    """Folders first (each before its contents), then files grouped by content (`content_group`), then links.

    Files of a kind (Python sources, shared libraries, text...) side by side
    compress better than files in folder order: the compressor finds more of
    what it has just seen within its dictionary. Python sources come early,
    so that a deployment can start compiling them while it unpacks the rest;
    shipped bytecode comes before them, so that it knows not to (deploy's
    compileahead.py: it must never write bytecode the archive still holds).
    """
    group = content_group(member.parts[-1]) if member.kind == "file" and member.parts else ""
    return (_KIND_RANK[member.kind], _GROUP_RANK.get(group, len(_GROUP_RANK)), group, member.parts)


def archived_entries(
    source: Path, overrides: Mapping[str, Override], cache_tag: str | None = None, jobs: int | None = None
) -> dict[str, list[str | int]]:
    """What `write_layer_archive` would put in the archive, by `/`-separated layer path: `["file", mode,
    size, sha256]`, `["folder", mode]` or `["link", target]` (the layer's manifest entries).

    Files are hashed in up to `jobs` threads (default: one per core).
    """
    members = [member for member in collect_members(Path(source), overrides, cache_tag) if member.parts]

    def describe(member: Member) -> list[str | int]:
        cancel.check()
        if member.kind == "dir":
            return ["folder", member.mode]
        if member.kind == "link":
            return ["link", member.target or ""]
        if member.content is not None:
            return ["file", member.mode, len(member.content), hashlib.sha256(member.content).hexdigest()]
        assert member.source is not None
        digest, size = hashlib.sha256(), 0
        with open_source(member.source) as stream:
            while chunk := stream.read(CHUNK_SIZE):
                digest.update(chunk)
                size += len(chunk)
        return ["file", member.mode, size, digest.hexdigest()]

    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        return {"/".join(member.parts): entry for member, entry in zip(members, pool.map(describe, members))}


def open_source(path: Path) -> BinaryIO:
    """Open a tree file for reading into the archive."""
    return path.open("rb")
