"""uv is checked, not trusted: its version, and what it says it installed, against a real build."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from support import StackFactory, find_uv, run, without_progress

pytestmark = pytest.mark.slow

STACK = """\
[[runtimes]]
name = "rt"
python_implementation = "cpython@{py311}"
requirements = ["packaging"]

[[frameworks]]
name = "fw"
runtime = "rt"
requirements = ["six", "colorama; sys_platform == 'win32'"]

[tool.uv]
exclude-newer = "2025-08-27T00:00:00Z"
"""


def _fake_uv(folder: Path, version: str) -> Path:
    """A uv that answers `--version` and does nothing else, successfully."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "uv"
    script.write_text(f'#!/bin/sh\nif [ "$1" = "--version" ]; then echo "uv {version}"; fi\nexit 0\n', encoding="utf-8")
    script.chmod(0o755)
    return script


def _venvstacks(*args: str, pyz: Path, archive_dir: Path, uv: Path | str) -> tuple[int, str, str]:
    env = {"VENVSTACKS_PYTHON_ARCHIVE_DIR": str(archive_dir), "VENVSTACKS_UV": str(uv)}
    result = run([sys.executable, str(pyz), *args], env=env)
    return result.returncode, result.stdout, result.stderr


@pytest.fixture
def stack(make_stack: StackFactory) -> Path:
    """A fresh two-layer stack, unlocked."""
    return make_stack(STACK)


@pytest.mark.network
def test_a_uv_that_installs_nothing_builds_nothing(stack: Path, tmp_path: Path, pyz: Path, runtime_archive_dir: Path) -> None:
    real, liar = find_uv(), _fake_uv(tmp_path / "liar", "0.13.9")
    build = stack.parent / "_build"
    status, out, err = _venvstacks("build", "--lock-if-needed", str(stack), pyz=pyz, archive_dir=runtime_archive_dir, uv=real)
    assert status == 0 and out.count("[built]") == 2, err
    for attempt in ("--clean", None):  # and after the failure, the layer is not "up to date"
        args = ["build", *([attempt] if attempt else []), str(stack)]
        status, out, err = _venvstacks(*args, pyz=pyz, archive_dir=runtime_archive_dir, uv=liar)
        assert (status, out) == (1, ""), out
        assert without_progress(err) == (
            "error: layer 'rt' was not built: what uv installed does not match its lock:\n"
            "error:   packaging 25.0 is missing\n"
        )
        assert not (build / "rt.last-build.json").exists()
    # A framework is checked in its own site-packages (its runtime's packages do not count).
    status, out, err = _venvstacks("build", str(stack), pyz=pyz, archive_dir=runtime_archive_dir, uv=real)
    assert status == 0 and "_build/rt [built]" in out, err
    (build / "framework-fw.last-build.json").unlink()
    status, out, err = _venvstacks("build", str(stack), pyz=pyz, archive_dir=runtime_archive_dir, uv=liar)
    assert status == 1
    assert without_progress(err) == (
        "error: layer 'framework-fw' was not built: what uv installed does not match its lock:\n"
        "error:   six 1.17.0 is missing\n"
    )
    assert (build / "rt.last-build.json").exists() and not (build / "framework-fw.last-build.json").exists()
    status, out, err = _venvstacks("build", str(stack), pyz=pyz, archive_dir=runtime_archive_dir, uv=real)
    assert status == 0 and "_build/rt [up to date]" in out and "_build/framework-fw [built]" in out, err


@pytest.mark.network
def test_a_wrong_version_is_not_built(stack: Path, tmp_path: Path, pyz: Path, runtime_archive_dir: Path) -> None:
    real = find_uv()
    # A uv whose `pip install --python PY ...` installs packaging 24.2, whatever the lock says.
    wrong = tmp_path / "wrong" / "uv"
    wrong.parent.mkdir()
    wrong.write_text(
        f'#!/bin/sh\nif [ "$1 $2" = "pip install" ]; then exec {real} pip install --python "$4" --no-config packaging==24.2; fi\n'
        f'exec {real} "$@"\n', encoding="utf-8",
    )  # fmt: skip
    wrong.chmod(0o755)
    status, out, err = _venvstacks("build", "--lock-if-needed", str(stack), pyz=pyz, archive_dir=runtime_archive_dir, uv=wrong)
    assert (status, out) == (1, ""), out
    assert without_progress(err) == (
        "error: layer 'rt' was not built: what uv installed does not match its lock:\n"
        "error:   packaging is 24.2, but the lock has 25.0\n"
    )
    assert not (stack.parent / "_build" / "rt.last-build.json").exists()


@pytest.mark.parametrize("version", ["0.7.22", "0.8.11"])
def test_a_uv_too_old_is_refused(stack: Path, tmp_path: Path, pyz: Path, runtime_archive_dir: Path, version: str) -> None:
    old = _fake_uv(tmp_path / "old", version)
    status, out, err = _venvstacks("lock", str(stack), pyz=pyz, archive_dir=runtime_archive_dir, uv=old)
    assert (status, out) == (1, "")
    assert without_progress(err) == (
        f"error: VENVSTACKS_UV names '{old}', which is uv {version}, but venvstacks needs uv 0.8.12 or newer: "
        "upgrade it, or name a newer one with --uv\n"
    )
    assert not (stack.parent / "requirements").exists()
