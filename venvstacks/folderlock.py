"""Exclusive use of a working folder, and removal of what interrupted runs left in it.

`lock`, `build`, `publish` and `local-export` each hold an exclusive lock on
the folders they write (the build folder, the output folder) for as long as
they run: an advisory `flock` on the folder itself. The operating system
releases it when its owner exits, however it exits (SIGKILL included), so a
lock never goes stale. While it runs, the owner keeps its unfinished files in
the folder's `.venvstacks-staging` folder, with an `owner` file giving its pid
and command for the message a second run gets; nothing of it remains once the
run ends. A run that holds the lock knows that any temporary in the folder
belongs to a run that is gone, and removes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterator
from pathlib import Path

from .errors import VenvStacksError
from .fsutil import remove_path

__all__ = ["FolderBusy", "STAGING_DIR", "exclusive", "is_temporary", "remove_temporaries"]

STAGING_DIR = ".venvstacks-staging"
"""A folder of the locked folder holding a run's unfinished files until they are moved into place."""
_OWNER = "owner"
# The names the tool gives its temporaries: `<name>.partial`, `.<name>.<random>.partial`
# (`fsutil.write_atomic`) and `[.]<name>.partial-<random>` (`tempfile` with a `.partial-` prefix).
_TEMPORARY = re.compile(r"(.+\.partial|.+\.partial-[a-z0-9_]{8})")


class FolderBusy(VenvStacksError):
    """Another venvstacks process is working in the folder."""


def is_temporary(name: str) -> bool:
    """Whether `name` is one the tool gives a file or folder only while writing it."""
    return name == STAGING_DIR or _TEMPORARY.fullmatch(name) is not None


def remove_temporaries(folder: Path) -> None:
    """Remove the tool's temporaries directly in `folder` (only while holding the lock that covers it)."""
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for name in sorted(os.listdir(folder)):
            if is_temporary(name):
                remove_path(folder / name)


def _owner(folder: Path) -> str:
    """The pid and command the lock's holder recorded, as `process 123 (build)`."""
    with contextlib.suppress(OSError, ValueError):
        pid, command = (folder / STAGING_DIR / _OWNER).read_text(encoding="utf-8").split(maxsplit=1)
        return f"process {int(pid)} ({command.strip()})"
    return "another process"


@contextlib.contextmanager
def exclusive(folder: Path, *, command: str, nested: tuple[str, ...] = ()) -> Iterator[None]:
    """Hold `folder` for `command` (creating it), or raise FolderBusy if another process holds it.

    Once the lock is held, every temporary directly in the folder (and in the
    folders named in `nested`) is removed: by construction, its owner is gone.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            msg = f"{folder} is in use by {_owner(folder)}: wait for it to finish, then run this again"
            raise FolderBusy(msg) from exc
        for where in (folder, *(folder / sub for sub in nested)):
            remove_temporaries(where)
        try:
            (folder / STAGING_DIR).mkdir()
            (folder / STAGING_DIR / _OWNER).write_text(f"{os.getpid()} {command}\n", encoding="utf-8")
            yield
        finally:
            remove_path(folder / STAGING_DIR)
    finally:
        os.close(fd)
