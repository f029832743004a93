"""Putting unpacked layers into place all or nothing, and cleaning up after interrupted deployments.

Every temporary folder deploy makes in the target is marked at once as its
own (`MARKER`); a journal names the layers being swapped into place, so that
the next deployment can undo a swap cut short by SIGKILL. `locked` holds
the target for one deployment and clears what earlier ones left.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import DeployError
from ..fsutil import write_text_atomic
from .records import JOURNAL, RECORD_DIR, RECORD_TEMPORARY, plain_name, records_folder_problem

__all__ = [
    "LEFTOVER", "MARKER", "Swap", "clear_leftovers", "discard", "is_marked", "locked", "marked_folder", "read_journal",
    "remove_marked", "swap_back", "swap_in", "undo", "write_journal",
]  # fmt: skip


LEFTOVER = re.compile(r"\.(.+)\.(partial|old|failed)-[A-Za-z0-9_]+")


MARKER = ".venvstacks-partial"
"""The file deploy writes (holding its pid) into each temporary folder it makes in the target, right
after making it: only folders named like `LEFTOVER` and holding it are removed as leftovers."""


@dataclass(frozen=True)
class Swap:
    """How one layer goes into place, as the journal names it, so that it can be undone after any interruption.

    Before anything moves, a marked `aside` folder is made. The old record, if
    any, goes into it as `record.json`, the old layer, if any, as `layer`, and
    the unpacked `partial` folder takes the layer's place.
    """

    name: str
    partial: str
    aside: str
    replacing: bool
    """An old layer is moved aside (else the layer is new)."""
    had_record: bool


def marked_folder(target: Path, prefix: str) -> Path:
    """A new empty hidden folder of the target, marked at once as deploy's own (see `MARKER`)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=target))
    (folder / MARKER).write_text(f"{os.getpid()}\n", encoding="utf-8")
    return folder


def is_marked(folder: Path) -> bool:
    """Whether `folder` is a real folder holding deploy's marker file."""
    try:
        return stat.S_ISDIR(os.lstat(folder).st_mode) and stat.S_ISREG(os.lstat(folder / MARKER).st_mode)
    except OSError:
        return False


def remove_marked(folder: Path) -> None:
    """Remove one of deploy's temporary folders, its marker last, so that the next deploy finishes an interrupted removal."""
    with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
        for entry in entries:
            if entry.name == MARKER:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                Path(entry.path).unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)


def discard(target: Path, name: str) -> None:
    """Remove the layer folder `name` of the target: first moved into a marked folder, then deleted."""
    failed = marked_folder(target, f".{name}.failed-")
    os.replace(target / name, failed / "layer")
    remove_marked(failed)


def swap_in(target: Path, swap: Swap) -> None:
    final, aside = target / swap.name, target / swap.aside
    if swap.had_record:
        os.replace(target / RECORD_DIR / f"{swap.name}.json", aside / "record.json")
    if swap.replacing:
        os.replace(final, aside / "layer")
    os.replace(target / swap.partial, final)
    (final / MARKER).unlink()


def swap_back(target: Path, swap: Swap) -> None:
    """Undo `swap_in`, however far it got: the new layer goes, the old one and its record come back."""
    final, aside, record = target / swap.name, target / swap.aside, target / RECORD_DIR / f"{swap.name}.json"
    new_in_place = os.path.lexists(aside / "layer") if swap.replacing else not os.path.lexists(target / swap.partial)
    if new_in_place and os.path.lexists(final):
        discard(target, swap.name)
    if os.path.lexists(aside / "layer"):
        os.replace(aside / "layer", final)
    if os.path.lexists(aside / "record.json"):
        os.replace(aside / "record.json", record)
    elif not swap.had_record:
        record.unlink(missing_ok=True)


def write_journal(target: Path, swaps: Sequence[Swap]) -> None:
    entries = [vars(swap) for swap in swaps]
    write_text_atomic(target / RECORD_DIR / JOURNAL, json.dumps(entries, indent=1) + "\n")


def read_journal(path: Path) -> list[Swap]:
    """The swaps an interrupted deployment journaled; DeployError if the journal is damaged."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        swaps = [Swap(**entry) for entry in entries]
    except (OSError, ValueError, TypeError) as exc:
        raise DeployError(f"cannot read {path}, the journal of an interrupted deployment: {exc}") from exc
    for swap in swaps:
        names_ok = plain_name(swap.name) and all(
            LEFTOVER.fullmatch(folder) and folder.startswith(f".{swap.name}.") for folder in (swap.partial, swap.aside)
        )
        if not names_ok or not isinstance(swap.replacing, bool) or not isinstance(swap.had_record, bool):
            raise DeployError(f"{path}, the journal of an interrupted deployment, is damaged: {vars(swap)}")
    return swaps


def undo(target: Path, swaps: Sequence[Swap]) -> None:
    """Put every layer of an unfinished deployment back as it was, then forget it."""
    for swap in reversed(swaps):
        swap_back(target, swap)
    (target / RECORD_DIR / JOURNAL).unlink(missing_ok=True)
    for swap in swaps:
        remove_marked(target / swap.aside)


def clear_leftovers(target: Path) -> None:
    """Undo an unfinished deployment, then remove deploy's temporary folders and half-written records.

    A temporary folder is deploy's own when it holds the marker. One that
    matches the name pattern but is empty is removed too: a deployment killed
    between creating it and marking it leaves it so, and removing an empty
    folder loses nothing.
    """
    journal = target / RECORD_DIR / JOURNAL
    if journal.is_symlink():
        raise DeployError(f"{journal} is a symbolic link: refusing to read a deployment journal through it")
    if journal.exists():
        undo(target, read_journal(journal))
    for entry in target.iterdir():
        if not LEFTOVER.fullmatch(entry.name):
            continue
        if is_marked(entry):
            remove_marked(entry)
        else:  # killed between creating the folder and marking it (or after removing the marker): empty, so nothing is lost
            with contextlib.suppress(OSError):
                os.rmdir(entry)
    with contextlib.suppress(FileNotFoundError):
        for entry in (target / RECORD_DIR).iterdir():
            if RECORD_TEMPORARY.fullmatch(entry.name) and not entry.is_dir():
                entry.unlink()


@contextlib.contextmanager
def locked(target: Path) -> Iterator[None]:
    """Hold an exclusive lock on the target folder; clear what interrupted deployments left.

    Holding the lock, any temporary folder deploy marked as its own belongs
    to a deployment that is gone.
    """
    fd = os.open(target, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise DeployError(f"another deployment into {target} is running") from exc
        if problem := records_folder_problem(target):
            raise DeployError(problem)
        clear_leftovers(target)
        yield
    finally:
        os.close(fd)
