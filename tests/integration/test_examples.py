"""The stacks in examples/ lock, build, publish, deploy and run, so they never rot.

The examples name python-build-standalone releases that uv downloads; here
the runtimes come from the test runtime archives, so each copy of an example
names the version of the archive at hand (same minor version) instead.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from support import ROOT, run

pytestmark = pytest.mark.slow

EXAMPLES = ROOT / "examples"


# What the quick start writes into an example's folder (git ignores it): never copied.
BUILD_OUTPUTS = frozenset({"_build", "_artifacts", "_export", "requirements", "__pycache__"})


def _copy(source: Path, tmp_path: Path, runtime_versions: dict[str, str]) -> Path:
    """Copy an example's own files, not what an earlier build left in its folder."""
    def outputs(where: str, names: list[str]) -> set[str]:
        return set(names) & (BUILD_OUTPUTS if where == str(source) else {"__pycache__"})

    folder = tmp_path / source.name
    shutil.copytree(source, folder, ignore=outputs)
    spec = folder / "venvstacks.toml"

    def local(match: re.Match[str]) -> str:
        minor = "py" + "".join(match[1].split(".")[:2])
        return f'python_implementation = "cpython@{runtime_versions[minor]}"'

    text, count = re.subn(r'python_implementation = "cpython@([0-9.]+)"', local, spec.read_text(encoding="utf-8"))
    assert count >= 1
    spec.write_text(text, encoding="utf-8")
    return spec


def _vs(*args: str, pyz: Path, archive_dir: Path) -> str:
    result = run([sys.executable, str(pyz), *args], env={"VENVSTACKS_PYTHON_ARCHIVE_DIR": str(archive_dir)})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_copies_leave_what_the_quick_start_wrote_behind(tmp_path: Path) -> None:
    # After the README's quick start, the example's folder also holds its locks, builds and archives.
    source = tmp_path / "checkout" / "quick"
    (source / "launch_modules").mkdir(parents=True)
    for name in ("venvstacks.toml", "launch_modules/where.py"):
        shutil.copyfile(EXAMPLES / "quick" / name, source / name)
    (source / "_build" / "app-where" / "bin").mkdir(parents=True)
    (source / "_build" / "app-where" / "bin" / "python").symlink_to("../../cpython-3.12/bin/python3")  # dangling once copied
    (source / "_artifacts").mkdir()
    (source / "_artifacts" / "app-where.tar.xz").write_bytes(b"stale")
    (source / "requirements" / "app-where").mkdir(parents=True)
    (source / "requirements" / "app-where" / "pylock.app-where.toml").write_text("stale = true\n", encoding="utf-8")
    (source / "launch_modules" / "__pycache__").mkdir()
    (source / "launch_modules" / "__pycache__" / "where.cpython-312.pyc").write_bytes(b"stale")
    spec = _copy(source, tmp_path / "copy", {"py312": "3.12.99"})
    copied = sorted(str(p.relative_to(spec.parent)) for p in spec.parent.rglob("*") if not p.is_dir())
    assert copied == ["launch_modules/where.py", "venvstacks.toml"]
    assert 'python_implementation = "cpython@3.12.99"' in spec.read_text(encoding="utf-8")


@pytest.mark.network
def test_quick_example(tmp_path: Path, pyz: Path, runtime_archive_dir: Path, runtime_versions: dict[str, str]) -> None:
    spec = _copy(EXAMPLES / "quick", tmp_path, runtime_versions)
    out = _vs("build", "--lock-if-needed", "--publish", str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert out.count("[archived]") == 3
    result = run([str(spec.parent / "_build" / "app-where" / "bin" / "python"), "-m", "where"])
    assert result.returncode == 0, result.stderr
    rows = {line.split()[1]: line.split()[3] for line in result.stdout.splitlines() if re.match(r"│ \w+ +│", line)}
    assert rows == {"humanize": "app-where", "rich": "framework-console", "packaging": "cpython-3.12"}, result.stdout
    target = tmp_path / "deployed"
    _vs("deploy", str(spec.parent / "_artifacts"), "--target", str(target), pyz=pyz, archive_dir=runtime_archive_dir)
    shutil.rmtree(spec.parent / "_build")  # the deployed layers need nothing of the build
    result = run([str(target / "app-where" / "bin" / "python"), "-m", "where"])
    assert result.returncode == 0, result.stderr
    size = re.search(r"^these 3 layers hold ([0-9.]+) (MB|GB) of files$", result.stdout, re.MULTILINE)
    assert size is not None, result.stdout
    # The same sum, as humanize rounds it: every file (links not followed) of the three deployed layers.
    files = [p for layer in ("app-where", "framework-console", "cpython-3.12") for p in (target / layer).rglob("*")]
    total = sum(p.lstat().st_size for p in files if not p.is_dir())
    assert size[1] == "%.1f" % (1000 * total / 1000 ** {"MB": 3, "GB": 4}[size[2]])


@pytest.mark.network
def test_sklearn_example(tmp_path: Path, pyz: Path, runtime_archive_dir: Path, runtime_versions: dict[str, str]) -> None:
    spec = _copy(EXAMPLES / "sklearn", tmp_path, runtime_versions)
    out = _vs("build", "--lock-if-needed", str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert out.count("[built]") == 4
    build = spec.parent / "_build"
    result = run([str(build / "app-classification-demo" / "bin" / "python"), "-m", "sklearn_classification"])
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"classification accuracy on 45 held-out flowers: (0\.9\d|1\.00)\n", result.stdout), result.stdout
    result = run([str(build / "app-clustering-demo" / "bin" / "python"), "-m", "sklearn_clustering"])
    assert (result.returncode, result.stdout) == (0, "cluster sizes: [100, 100, 100]\n"), result.stderr
