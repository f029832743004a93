"""File helpers: writes that never leave a half-written file under the final name, digests, removal."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

__all__ = ["dump_json", "file_sha256", "is_within", "remove_path", "replace_file", "write_atomic", "write_beside", "write_text_atomic"]

_CHUNK = 1 << 20


def write_beside(path: Path, content: bytes, mode: int = 0o644) -> Path:
    """`content` in a new temporary file next to `path`, named `.<name>.XXXX.partial` (a name the cleanups know)."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(content)
        os.chmod(name, mode)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def _replace(path: Path, content: bytes, mode: int) -> None:
    """Write `content` beside `path`, then rename it over `path`; an OSError names `path`."""
    temporary = None
    try:
        temporary = write_beside(path, content, mode)
        os.replace(temporary, path)
    except OSError as exc:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        if exc.errno is None:
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from exc  # the path, for the error message
    except BaseException:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, content: bytes) -> bool:
    """Write `content` to `path` (mode 0644) via a temporary file and a rename.

    Returns False (and leaves the file, and its timestamp, alone) when it
    already holds exactly this content.
    """
    try:
        if path.read_bytes() == content:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    _replace(path, content, 0o644)
    return True


def write_text_atomic(path: Path, text: str) -> bool:
    """`write_atomic` for UTF-8 text with LF line endings."""
    return write_atomic(path, text.encode("utf-8"))


def replace_file(path: Path, content: bytes) -> None:
    """Replace the existing file `path` by one holding `content`, keeping its mode.

    The file is never changed in place: it may be a hard link into uv's cache.
    """
    _replace(path, content, stat.S_IMODE(path.stat().st_mode))


def file_sha256(path: Path, check: Callable[[], None] | None = None) -> str:
    """The hex sha256 of a file's content, read a MiB at a time; `check` (which may raise) runs before each MiB."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            if check is not None:
                check()
            digest.update(chunk)
    return digest.hexdigest()


def dump_json(data: Mapping[str, object]) -> str:
    """JSON as the tool writes it (and upstream writes its metadata): two-space indent, sorted keys, trailing newline."""
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def is_within(path: str, folder: str) -> bool:
    """Whether the absolute, normalised `path` is `folder` or lies below it (lexically: links are not resolved)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def remove_path(path: Path) -> None:
    """Remove a file, a link or a whole folder tree, if there is one."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
