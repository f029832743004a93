"""The one place that runs external commands.

Every command gets a scrubbed environment (no virtual environment, no ambient
Python or uv settings), has its output captured, and is logged with its full
command line. A failure raises `CommandError` holding the command's result
(its exit status and the last part of its output) and the log file that
keeps all of it, so the caller can say what failed and show why. Commands die with this process (Linux) and are
killed when it is interrupted.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Protocol

from . import cancel
from .errors import CommandError, CommandResult

__all__ = ["CommandResult", "FedCommand", "Runner", "run", "scrubbed_environment", "format_command"]

_LOG = logging.getLogger(__name__)

# Python settings that would leak the caller's configuration into the layers.
_PYTHON_OVERRIDES = {
    "PYTHONNOUSERSITE": "1",
    "PYTHONSAFEPATH": "1",
    "PYTHONPATH": "",
    "PYTHONSTARTUP": "",
    "PYTHONUTF8": "1",
    "PYTHONLEGACYWINDOWSFSENCODING": "",
    "PYTHONLEGACYWINDOWSSTDIO": "",
}
_DROPPED = ("VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONHOME", "__PYVENV_LAUNCHER__")
# uv environment variables that are kept: where uv keeps its cache, how it
# reaches the network (offline mode, TLS, timeouts, Python download mirrors)
# and credentials, which can only come from the environment. Every other UV_*
# setting would change what gets locked or installed, so it is dropped.
_UV_KEPT = frozenset(
    {
        "UV_CACHE_DIR",
        "UV_OFFLINE",
        "UV_HTTP_TIMEOUT",
        "UV_NATIVE_TLS",
        "UV_CONCURRENT_DOWNLOADS",
        "UV_PYTHON_INSTALL_MIRROR",
        "UV_PYPY_INSTALL_MIRROR",
        "UV_PYTHON_DOWNLOADS_JSON_URL",
    }
)
_UV_CREDENTIAL_SUFFIXES = ("_USERNAME", "_PASSWORD")


class Runner(Protocol):
    """Runs a command; `run` below is the real one, tests may pass their own."""

    def __call__(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        description: str,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> CommandResult: ...


def format_command(argv: Sequence[str | os.PathLike[str]]) -> str:
    """A command line as a user could paste it into a POSIX shell."""
    return shlex.join(os.fspath(arg) for arg in argv)


def _keep_uv_variable(name: str) -> bool:
    if name in _UV_KEPT:
        return True
    return name.startswith("UV_INDEX_") and name.endswith(_UV_CREDENTIAL_SUFFIXES)


def scrubbed_environment(extra: Mapping[str, str] | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment external commands run with: the caller's, minus what would leak in."""
    env = {
        name: value
        for name, value in (os.environ if base is None else base).items()
        if name not in _DROPPED and not (name.startswith("UV_") and not _keep_uv_variable(name))
    }
    env.update(_PYTHON_OVERRIDES)
    if extra:
        env.update(extra)
    return env


_TAIL_BYTES = CommandError.TAIL_LINES * CommandError.LINE_LIMIT
"""How much of a failed command's output its error keeps."""
_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_GUARD = threading.Lock()


def _stop_children() -> None:
    """Kill every command still running (the process is being interrupted)."""
    with _LIVE_GUARD:
        for process in _LIVE:
            with contextlib.suppress(OSError):
                process.kill()


cancel.on_request(_stop_children)


def _die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook making the child get SIGKILL when its parent dies (Linux), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the hook ran
            os._exit(1)

    return hook


_PR_SET_PDEATHSIG = 1


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    description: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> CommandResult:
    """Run a command to completion; raise CommandError (with its output) if it fails.

    `description` says what the command is for (`locking layer 'x'`); it starts
    the error message. `env` adds to the scrubbed environment. The command's
    output goes to temporary files, never all into memory; a failure's error
    shows its last lines and names a log file holding all of it. The command
    dies with this process, and is killed when the user interrupts.
    """
    words = tuple(os.fspath(arg) for arg in argv)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = _start(words, description, env, cwd, subprocess.DEVNULL, out, err)
        result = _outcome(description, words, _wait(process), out, err)
    if result.stderr.strip():
        _LOG.debug("%s", result.stderr.rstrip())
    return result


def _start(
    words: tuple[str, ...], description: str, env: Mapping[str, str] | None, cwd: Path | None,
    stdin: int, out: int | IO[bytes], err: IO[bytes],
) -> subprocess.Popen[bytes]:  # fmt: skip
    """Log and start a command with a scrubbed environment, dying with this process and known to `_stop_children`."""
    _LOG.info("$ %s", format_command(words))
    cancel.check()
    try:
        process = subprocess.Popen(
            words, env=scrubbed_environment(env), cwd=cwd, stdin=stdin, stdout=out, stderr=err, preexec_fn=_die_with_parent()
        )
    except OSError as exc:
        raise CommandError(description, reason=f"cannot run {words[0]!r}: {exc.strerror or exc}") from exc
    with _LIVE_GUARD:
        _LIVE.add(process)
    if cancel.requested():  # asked to stop while it started: `_stop_children` may have run before it was known
        _wait_killed(process)
        cancel.check()
    return process


def _wait_killed(process: subprocess.Popen[bytes]) -> None:
    """Kill the command and wait for it to be gone."""
    with contextlib.suppress(OSError):
        process.kill()
    process.wait()
    with _LIVE_GUARD:
        _LIVE.discard(process)


def _wait(process: subprocess.Popen[bytes]) -> int:
    """The command's exit status once it ends; killed if the wait is interrupted."""
    try:
        return process.wait()
    except BaseException:
        _wait_killed(process)
        raise
    finally:
        with _LIVE_GUARD:
            _LIVE.discard(process)


def _outcome(description: str, words: tuple[str, ...], returncode: int, out: IO[bytes], err: IO[bytes]) -> CommandResult:
    """What an ended command did; CommandError if it failed (or the user interrupted meanwhile)."""
    cancel.check()
    if returncode != 0:
        tail = CommandResult(words, returncode, _read(out, _TAIL_BYTES), _read(err, _TAIL_BYTES))
        has_output = bool((tail.stdout + tail.stderr).strip())
        raise CommandError(description, tail, log=_write_log(words, returncode, out, err) if has_output else None)
    return CommandResult(words, returncode, _read(out), _read(err))


def _read(stream: IO[bytes], limit: int | None = None) -> str:
    """The text in `stream`, or only its last `limit` bytes."""
    size = stream.seek(0, os.SEEK_END)
    stream.seek(max(0, size - limit) if limit is not None else 0)
    return stream.read().decode("utf-8", errors="replace")


def _write_log(argv: tuple[str, ...], returncode: int, out: IO[bytes], err: IO[bytes]) -> Path | None:
    """Keep a failed command's whole output in a log file; None if it cannot be written."""
    try:
        fd, name = tempfile.mkstemp(prefix="venvstacks-", suffix=".log")
        with os.fdopen(fd, "wb") as log:
            log.write(f"$ {format_command(argv)}\nexit status {returncode}\n".encode())
            for title, stream in (("stderr", err), ("stdout", out)):
                log.write(f"--- {title} ---\n".encode())
                stream.seek(0)
                shutil.copyfileobj(stream, log)
    except OSError:
        return None
    return Path(name)


class FedCommand:
    """A command started with a pipe to its standard input, for feeding it work as it comes.

    Like `run`'s commands it gets a scrubbed environment, dies with this
    process and is killed when the user interrupts; its output goes to
    temporary files, or with `replies` its standard output comes back through
    a pipe, for `receive`. `finish` closes its input, waits for it, and raises
    CommandError (with its last lines of output) if it failed.
    """

    def __init__(
        self, argv: Sequence[str | os.PathLike[str]], *, description: str, env: Mapping[str, str] | None = None, replies: bool = False
    ) -> None:
        self._words = tuple(os.fspath(arg) for arg in argv)
        self._description = description
        self._out, self._err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        try:
            self._process = _start(self._words, description, env, None, subprocess.PIPE, subprocess.PIPE if replies else self._out, self._err)
        except BaseException:
            self._out.close()
            self._err.close()
            raise

    def send(self, data: bytes, *, flush: bool = False) -> None:
        """Write `data` to the command's input (dropped if it has stopped reading: `finish` tells why)."""
        stdin = self._process.stdin
        assert stdin is not None
        with contextlib.suppress(BrokenPipeError, ValueError):
            stdin.write(data)
            if flush:
                stdin.flush()

    def receive(self) -> bytes:
        """What the command has written to its output since the last call, waiting for some; b"" once it ends.

        With `replies` only, and from one thread, which must go on until b""
        (which closes the pipe: nothing else does, so no other thread can
        close it under a waiting read).
        """
        stdout = self._process.stdout
        assert stdout is not None
        if stdout.closed:
            return b""
        try:
            data = os.read(stdout.fileno(), 1 << 12)
        except OSError:
            data = b""
        if not data:
            stdout.close()
        return data

    def finish(self) -> CommandResult:
        """Close the command's input and wait for it to end; CommandError if it failed."""
        try:
            with contextlib.suppress(OSError):
                assert self._process.stdin is not None
                self._process.stdin.close()
            return _outcome(self._description, self._words, _wait(self._process), self._out, self._err)
        finally:
            self._close()

    def kill(self) -> None:
        """Stop the command at once."""
        _wait_killed(self._process)
        self._close()

    def abort(self) -> None:
        """Kill the command without waiting for it, for another thread to call while one waits in `finish` (which then fails)."""
        with contextlib.suppress(OSError):
            self._process.kill()

    def _close(self) -> None:
        for stream in (self._process.stdin, self._out, self._err):
            with contextlib.suppress(OSError, ValueError):
                if stream is not None:
                    stream.close()
