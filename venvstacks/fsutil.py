"""File helpers: writes that never leave a half-written file under the final name."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["write_atomic", "write_text_atomic", "remove_path"]


def write_atomic(path: Path, content: bytes) -> bool:
    """Write `content` to `path` via a temporary file and a rename.

    Returns False (and leaves the file, and its timestamp, alone) when it
    already holds exactly this content.
    """
    try:
        if path.read_bytes() == content:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            stream.write(content)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from exc  # the path, for the error message
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return True


def write_text_atomic(path: Path, text: str) -> bool:
    """`write_atomic` for UTF-8 text with LF line endings."""
    return write_atomic(path, text.encode("utf-8"))


def remove_path(path: Path) -> None:
    """Remove a file, a link or a whole folder tree, if there is one."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
