"""Making a built layer environment relocatable.

A built environment must not depend on the folder it was built in: foreign
executables (entry-point scripts, `activate`, `pip`...) hard-code the build
path, so they go, and their RECORD rows with them; absolute symbolic links
become relative ones, or hard links (or copies) when they lead outside the
build folder. `find_absolute_references` checks what is left.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

from ..errors import BuildError
from ..fsutil import is_within, replace_file

__all__ = [
    "find_absolute_references",
    "prune_records",
    "relativise_symlinks",
    "remove_foreign_executables",
]

_LOG = logging.getLogger(__name__)

_CHUNK_SIZE = 1 << 20
"""How many bytes `find_absolute_references` reads at a time."""


def remove_foreign_executables(bin_dir: Path) -> list[Path]:
    """Delete every folder in `bin_dir` and every entry not named `python*`; return them, sorted.

    Names are compared case-insensitively. A missing `bin_dir` removes nothing.
    """
    if not bin_dir.is_dir():
        return []
    removed: list[Path] = []
    for entry in sorted(bin_dir.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        elif not entry.name.lower().startswith("python"):
            entry.unlink()
        else:
            continue
        _LOG.debug("removed %s", entry)
        removed.append(entry)
    return removed


def _lexical(path: str | os.PathLike[str]) -> str:
    return os.path.normpath(os.path.abspath(path))


def prune_records(site_packages: Path, removed: Sequence[Path]) -> int:
    """Drop RECORD rows that name a removed path; return how many RECORD files changed.

    Row paths are resolved lexically against `site_packages` (so
    `../../../bin/foo` names `<env>/bin/foo`); rows inside a removed folder go
    too. A RECORD with nothing to drop is left untouched.
    """
    gone = [_lexical(path) for path in removed]
    if not gone:
        return 0
    base = _lexical(site_packages)
    rewritten = 0
    for record in sorted(site_packages.glob("*.dist-info/RECORD")):
        with record.open(encoding="utf-8", newline="") as stream:
            rows = list(csv.reader(stream, delimiter=",", quotechar='"'))
        kept = [
            row
            for row in rows
            if not row or not any(is_within(_lexical(os.path.join(base, row[0])), path) for path in gone)
        ]
        if len(kept) == len(rows):
            continue
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=",", quotechar='"', lineterminator="\n").writerows(kept)
        replace_file(record, buffer.getvalue().encode("utf-8"))
        _LOG.debug("dropped %d rows from %s", len(rows) - len(kept), record)
        rewritten += 1
    return rewritten


def _replace_with_symlink(link: Path, target: str) -> None:
    temporary = link.with_name(f".{link.name}.{os.getpid()}.partial")
    temporary.unlink(missing_ok=True)
    os.symlink(target, temporary)
    os.replace(temporary, link)


def _same_device(first: str | Path, second: str | Path) -> bool:
    return os.stat(first).st_dev == os.stat(second).st_dev


def _replace_with_file(link: Path, source: str) -> None:
    """Replace the symbolic link `link` by a hard link to `source`, or a copy on another device."""
    temporary = link.with_name(f".{link.name}.{os.getpid()}.partial")
    temporary.unlink(missing_ok=True)
    try:
        if _same_device(source, link.parent):
            os.link(source, temporary)
        else:
            shutil.copy2(source, temporary)
        os.replace(temporary, link)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _symlinks(tree: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(tree):
        dirs.sort()
        for name in sorted(dirs + files):
            path = Path(folder, name)
            if path.is_symlink():
                yield path


def _real_dir_path(path: str) -> str:
    """`path` with its folder resolved but its final component kept, so a link to a link stays one."""
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def relativise_symlinks(tree: Path, build_dir: Path) -> None:
    """Make the absolute symbolic links under `tree` portable.

    A link into `build_dir` becomes relative; a link to a file elsewhere is
    replaced by a hard link to that file (a copy if it is on another device).
    Relative links are left alone. A link that leads outside `build_dir` to a
    folder or to nothing raises BuildError.
    """
    build = _lexical(build_dir)
    real_build = os.path.realpath(build_dir)
    for link in _symlinks(tree):
        target = os.readlink(link)
        if not os.path.isabs(target):
            continue
        real_target = _real_dir_path(_lexical(target))
        if is_within(_lexical(target), build) or is_within(real_target, real_build):
            relative = os.path.relpath(real_target, os.path.realpath(link.parent))
            _replace_with_symlink(link, relative)
            _LOG.debug("relinked %s: %s -> %s", link, target, relative)
            continue
        source = os.path.realpath(target)
        if not os.path.isfile(source):
            raise BuildError(f"{link} links to {target}, outside {build_dir}, which is not a file")
        _replace_with_file(link, source)
        _LOG.debug("replaced %s (-> %s) by its target", link, target)


def _contains(path: Path, needle: bytes) -> bool:
    overlap = len(needle) - 1
    tail = b""
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK_SIZE):
            data = tail + chunk
            if needle in data:
                return True
            tail = data[-overlap:] if overlap else b""
    return False


def find_absolute_references(tree: Path, needle: str, *, skip: Collection[str]) -> list[Path]:
    """The regular files under `tree` whose bytes contain `needle`, sorted.

    Symbolic links are not followed, `__pycache__` folders are skipped, and so
    is every path in `skip` (relative to `tree`, `/`-separated; a folder skips
    everything in it).
    """
    if not needle:
        raise ValueError("the needle must not be empty")
    encoded = os.fsencode(needle)
    skipped = {os.path.normpath(entry).replace(os.sep, "/") for entry in skip}
    found: list[Path] = []
    for folder, dirs, files in os.walk(tree):
        relative = Path(folder).relative_to(tree)
        dirs[:] = sorted(
            name for name in dirs if name != "__pycache__" and (relative / name).as_posix() not in skipped
        )
        for name in sorted(files):
            path = Path(folder, name)
            if (relative / name).as_posix() in skipped or path.is_symlink() or not path.is_file():
                continue
            if _contains(path, encoded):
                found.append(path)
    return sorted(found)
