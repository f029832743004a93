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


def _copy(example: str, tmp_path: Path, runtime_versions: dict[str, str]) -> Path:
    folder = tmp_path / example
    shutil.copytree(EXAMPLES / example, folder)
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


def test_examples_are_documented() -> None:
    listed = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    folders = sorted(p.name for p in EXAMPLES.iterdir() if (p / "venvstacks.toml").is_file())
    assert folders == ["quick", "sklearn"]
    assert all(f"`{name}/`" in listed for name in folders)


def test_quick_example(tmp_path: Path, pyz: Path, runtime_archive_dir: Path, runtime_versions: dict[str, str]) -> None:
    spec = _copy("quick", tmp_path, runtime_versions)
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
    assert "deployed 12.3 MB of layers" in result.stdout


def test_sklearn_example(tmp_path: Path, pyz: Path, runtime_archive_dir: Path, runtime_versions: dict[str, str]) -> None:
    spec = _copy("sklearn", tmp_path, runtime_versions)
    out = _vs("build", "--lock-if-needed", str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert out.count("[built]") == 4
    build = spec.parent / "_build"
    result = run([str(build / "app-classification-demo" / "bin" / "python"), "-m", "sklearn_classification"])
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"classification accuracy on 45 held-out flowers: (0\.9\d|1\.00)\n", result.stdout), result.stdout
    result = run([str(build / "app-clustering-demo" / "bin" / "python"), "-m", "sklearn_clustering"])
    assert (result.returncode, result.stdout) == (0, "cluster sizes: [100, 100, 100]\n"), result.stderr
