"""The only module that knows uv's command line.

`find_uv` locates the binary (`--uv`, then `VENVSTACKS_UV`, then `PATH`, then
`python -m uv`); the `*_argv` functions spell out each command as a pure list;
`Uv` runs them through the command runner. uv never reads the user's own
configuration files: every call names our generated config file (which stops
uv discovering any other) and the runner drops ambient `UV_*` settings. A uv
older than `MINIMUM_VERSION` is refused: it lacks flags used here.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import _proc
from .errors import CommandError, UvError

__all__ = ["MINIMUM_VERSION", "Uv", "find_uv", "lock_argv", "export_argv", "python_install_argv", "pip_install_argv", "pip_uninstall_argv", "UV_HINT"]

UV_ENV_VARIABLE = "VENVSTACKS_UV"
UV_HINT = (
    "uv was not found: install it (for example 'python3 -m pip install uv'), "
    f"or name the binary with --uv PATH or the {UV_ENV_VARIABLE} environment variable"
)
_VERSION = re.compile(r"uv ([0-9][^\s]*)")
MINIMUM_VERSION = "0.8.12"
"""The oldest uv that has every flag used here: `--preview-features` (0.8.4) and
`--python-platform aarch64-pc-windows-msvc` (0.8.12); `uv python install --no-bin` is 0.8.0."""
# Flags every command gets: quiet, no colour, never a uv-managed interpreter.
_COMMON = ("--quiet", "--color", "never", "--no-python-downloads")


def lock_argv(uv: Sequence[str], *, project: Path, python: Path, config_file: Path) -> list[str]:
    """Resolve a layer's synthetic project afresh (`--upgrade`: no previous pins)."""
    return [
        *uv, "lock",
        "--project", str(project),
        "--python", str(python),
        "--config-file", str(config_file),
        "--upgrade",
        "--no-managed-python",
        *_COMMON,
    ]  # fmt: skip


def export_argv(uv: Sequence[str], *, project: Path, python: Path, config_file: Path, output: Path) -> list[str]:
    """Export a resolved project's lock as a PEP 751 `pylock.toml` without file paths in comments."""
    return [
        *uv, "export",
        "--project", str(project),
        "--python", str(python),
        "--config-file", str(config_file),
        "--locked",
        "--format", "pylock.toml",
        "--output-file", str(output),
        "--no-header",
        "--no-annotate",
        "--no-emit-project",
        "--no-managed-python",
        *_COMMON,
    ]  # fmt: skip


def python_install_argv(uv: Sequence[str], *, version: str, install_dir: Path, config_file: Path) -> list[str]:
    """Download a managed CPython into a folder of ours, linking nothing into the user's PATH.

    Not `--quiet`: that would hide why a download failed.
    """
    return [
        *uv, "python", "install", f"cpython-{version}",
        "--install-dir", str(install_dir),
        "--no-bin",
        "--config-file", str(config_file),
        "--color", "never",
    ]  # fmt: skip


def pip_install_argv(uv: Sequence[str], *, python: Path, pylock: Path, python_platform: str) -> list[str]:
    """Install exactly what a layer's pylock holds for this host: wheels only, files hard-linked from uv's cache.

    uv copies instead where it cannot link (the cache on another file system).
    The build never writes into an installed file: it replaces a file it
    changes (see `portability`), so uv's cache is never modified.
    """
    return [
        *uv, "pip", "install",
        "--python", str(python),
        "--no-config",
        "--no-build",
        "--link-mode", "hardlink",
        "--python-platform", python_platform,
        "--preview-features", "pylock",
        "-r", str(pylock),
        *_COMMON,
    ]  # fmt: skip


def pip_uninstall_argv(uv: Sequence[str], *, python: Path, packages: Sequence[str]) -> list[str]:
    """Remove packages from an environment (ones that are not there are skipped)."""
    return [*uv, "pip", "uninstall", "--python", str(python), "--no-config", *packages, *_COMMON]


def version_argv(uv: Sequence[str]) -> list[str]:
    """Ask uv for its version."""
    return [*uv, "--version"]


@dataclass(frozen=True)
class Uv:
    """A located uv, ready to run commands."""

    command: tuple[str, ...]
    """How to start uv: its binary, or a Python with `-m uv`."""
    version: str
    runner: _proc.Runner = field(default=_proc.run, compare=False, repr=False)

    def run(self, argv: Sequence[str], *, description: str, env: Mapping[str, str] | None = None) -> _proc.CommandResult:
        """Run one uv command; a failure becomes a UvError carrying uv's explanation."""
        try:
            return self.runner(argv, description=description, env=env)
        except UvError:
            raise
        except CommandError as exc:
            raise UvError.from_command(exc) from exc


def _version_key(version: str) -> tuple[int, ...]:
    """The release numbers at the start of a uv version (`0.13.9`, `0.9.0-alpha.1`) for comparing."""
    match = re.match(r"[0-9]+(?:\.[0-9]+)*", version)
    return tuple(int(part) for part in match[0].split(".")) if match else ()


def is_supported(version: str) -> bool:
    """Whether a uv version is `MINIMUM_VERSION` or newer."""
    return _version_key(version) >= _version_key(MINIMUM_VERSION)


def _too_old(version: str, where: str) -> str:
    return f"{where} is uv {version}, but venvstacks needs uv {MINIMUM_VERSION} or newer: upgrade it, or name a newer one with --uv"


def _probe(command: tuple[str, ...], runner: _proc.Runner) -> str | None:
    try:
        result = runner(version_argv(command), description="checking the uv version")
    except CommandError:
        return None
    match = _VERSION.search(result.stdout)
    return match[1] if match else None


def find_uv(
    explicit: str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    runner: _proc.Runner = _proc.run,
) -> Uv:
    """Find a working uv: `explicit` (from `--uv`), `VENVSTACKS_UV`, `PATH`, then `python -m uv`.

    A uv older than `MINIMUM_VERSION` is refused; when looking, the next candidate is tried.
    """
    environ = os.environ if environ is None else environ
    named = explicit or environ.get(UV_ENV_VARIABLE)
    if named:
        where = "--uv" if explicit else UV_ENV_VARIABLE
        path = shutil.which(named) or named
        version = _probe((path,), runner)
        if version is None:
            msg = f"{where} names {named!r}, which is not a working uv binary"
            raise UvError(msg)
        if not is_supported(version):
            raise UvError(_too_old(version, f"{where} names {named!r}, which"))
        return Uv((path,), version, runner)
    candidates: list[tuple[str, ...]] = []
    on_path = shutil.which("uv")
    if on_path:
        candidates.append((on_path,))
    beside = Path(sys.executable).with_name("uv")
    if beside.exists() and str(beside) != on_path:
        candidates.append((str(beside),))
    candidates.append((sys.executable, "-m", "uv"))
    too_old: list[str] = []
    for command in candidates:
        version = _probe(command, runner)
        if version is not None and is_supported(version):
            return Uv(command, version, runner)
        if version is not None:
            too_old.append(_too_old(version, " ".join(command)))
    raise UvError(too_old[0] if too_old else UV_HINT)
