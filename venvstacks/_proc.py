"""The one place that runs external commands.

Every command gets a scrubbed environment (no virtual environment, no ambient
Python or uv settings), has its output captured, and is logged with its full
command line. A failure raises `CommandError` carrying that output, so the
caller can say what failed and show why.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .errors import CommandError

__all__ = ["CommandResult", "Runner", "run", "scrubbed_environment", "format_command"]

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


@dataclass(frozen=True)
class CommandResult:
    """What a finished command did."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


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


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    description: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> CommandResult:
    """Run a command to completion; raise CommandError (with its output) if it fails.

    `description` says what the command is for (`locking layer 'x'`); it starts
    the error message. `env` adds to the scrubbed environment.
    """
    words = tuple(os.fspath(arg) for arg in argv)
    _LOG.info("$ %s", format_command(words))
    try:
        completed = subprocess.run(
            words,
            env=scrubbed_environment(env),
            cwd=cwd,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            check=False,
        )
    except OSError as exc:
        msg = f"{description}: cannot run {words[0]!r}: {exc.strerror or exc}"
        raise CommandError(msg) from None
    result = CommandResult(words, completed.returncode, completed.stdout, completed.stderr)
    if completed.returncode != 0:
        raise CommandError(_failure_message(description, result))
    if completed.stderr.strip():
        _LOG.debug("%s", completed.stderr.rstrip())
    return result


def _failure_message(description: str, result: CommandResult) -> str:
    lines = [f"{description} failed (exit status {result.returncode})", f"command: {format_command(result.argv)}"]
    output = (result.stderr.strip() + "\n" + result.stdout.strip()).strip()
    if output:
        lines.extend("  " + line for line in output.splitlines())
    return "\n".join(lines)
