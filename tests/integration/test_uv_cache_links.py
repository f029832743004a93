"""Builds take installed files from uv's cache, and runtimes from their unpacked archive, by hard link; nothing the tool does afterwards changes either."""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from pathlib import Path

import pytest

from support import EXCLUDE_NEWER, PY311_RUNTIME, StackFactory, run
from venvstacks.runtimes.unpacked import UNPACKED_DIR

pytestmark = [pytest.mark.slow, pytest.mark.network]

STACK = PY311_RUNTIME + """\
[[frameworks]]
name = "numeric"
runtime = "cpython-3.11"
requirements = ["numpy"]

[[applications]]
name = "sum"
launch_module = "launch/sum.py"
frameworks = ["numeric"]
requirements = ["idna"]
""" + EXCLUDE_NEWER


def _cache_state(cache: Path) -> dict[str, tuple[int, str]]:
    """Every file of the unpacked wheels in the cache (what builds link to): its mode and sha256.

    uv's own records elsewhere in the cache (such as what it learnt about an
    interpreter) change as uv pleases.
    """
    state = {}
    for folder, _dirs, files in os.walk(cache / "archive-v0"):
        for name in files:
            path = Path(folder, name)
            info = path.lstat()
            if stat.S_ISREG(info.st_mode) and not name.endswith(".lock"):
                state[str(path.relative_to(cache))] = (info.st_mode, hashlib.sha256(path.read_bytes()).hexdigest())
    return state


def _tree_state(tree: Path) -> dict[str, tuple[int, str]]:
    """Every file under `tree`: its mode and sha256."""
    return {str(p.relative_to(tree)): (p.lstat().st_mode, hashlib.sha256(p.read_bytes()).hexdigest()) for p in tree.rglob("*") if p.is_file() and not p.is_symlink()}


def _inodes(tree: Path) -> dict[tuple[int, int], Path]:
    return {(p.lstat().st_dev, p.lstat().st_ino): p for p in tree.rglob("*") if p.is_file() and not p.is_symlink()}


def test_installed_files_are_linked_from_the_caches_and_the_caches_never_change(
    tmp_path: Path, make_stack: StackFactory, runtime_versions: dict[str, str], runtime_archive_dir: Path, pyz: Path
) -> None:
    spec = make_stack(STACK, {"launch/sum.py": "import idna, numpy\nprint('sum', numpy.arange(5).sum())\n"}, folder=tmp_path)
    cache = tmp_path / "uv-cache"
    env = {"VENVSTACKS_PYTHON_ARCHIVE_DIR": str(runtime_archive_dir), "UV_CACHE_DIR": str(cache)}

    def venvstacks(*args: str) -> None:
        result = run([sys.executable, str(pyz), *args, str(spec)], env=env)
        assert result.returncode == 0, result.stderr

    venvstacks("lock")
    venvstacks("build")
    before = _cache_state(cache)
    assert len(before) > 1000
    build = tmp_path / "_build"
    cached = _inodes(cache)
    site = build / "framework-numeric" / "lib" / f"python{runtime_versions['py311'].rsplit('.', 1)[0]}" / "site-packages"
    numpy_init = site / "numpy" / "__init__.py"
    assert (numpy_init.stat().st_dev, numpy_init.stat().st_ino) in cached  # the cache's own file, not a copy
    linked = [p for key, p in _inodes(build).items() if key in cached]
    assert len(linked) > 100
    unpacked = build / UNPACKED_DIR / "cpython-3.11" / "python"
    runtime_before = _tree_state(unpacked)
    assert len(runtime_before) > 500
    runtime_inodes = _inodes(unpacked)
    assert (build / "cpython-3.11" / "bin" / "python3").resolve().stat().st_ino in {ino for _dev, ino in runtime_inodes}
    assert len([p for key, p in _inodes(build / "cpython-3.11").items() if key in runtime_inodes]) > 500

    # Everything that rewrites, removes or relinks files after installing: a clean rebuild, archives
    # with and without bytecode, and a local export relinked by its post-install step.
    venvstacks("build", "--clean")
    venvstacks("publish", "--output-dir", str(tmp_path / "out"))
    venvstacks("publish", "--precompile", "--output-dir", str(tmp_path / "out-pc"))
    venvstacks("local-export", "--output-dir", str(tmp_path / "export"))
    launched = run([str(tmp_path / "export" / "app-sum" / "bin" / "python"), "-m", "sum"])
    assert launched.returncode == 0 and launched.stdout == "sum 10\n", launched.stderr
    assert _cache_state(cache) == before
    assert _tree_state(unpacked) == runtime_before
