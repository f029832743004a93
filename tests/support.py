"""Paths and helpers shared by the tests (a plain module: import it as `support`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
SPECS = DATA / "specs"
COMPAT = DATA / "compat"

PY311_RUNTIME = '[[runtimes]]\nname = "cpython-3.11"\npython_implementation = "cpython@{py311}"\nrequirements = ["packaging"]\n\n'
"""The runtime most test stacks start with (`make_stack` fills in `{py311}`)."""
EXCLUDE_NEWER = '\n[tool.uv]\nexclude-newer = "2025-08-27T00:00:00Z"\n'
"""The uv setting most test stacks end with: it pins what PyPI offers, so that locks are the same on every run."""


def find_uv() -> str:
    """The uv binary the tests use: the dev dependency next to this Python, else PATH.

    uv is a pinned dev dependency, so a missing uv is an error, never a skip.
    """
    candidate = Path(sys.executable).with_name("uv")
    if candidate.exists():
        return str(candidate)
    found = shutil.which("uv")
    if found is None:
        pytest.fail("uv is not installed: install the dev dependencies (see README.md)")
    return found


def run(command: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing its output as text."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("PYTHONPATH", None)
    return subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True, encoding="utf-8", check=False)


def without_progress(stderr: str) -> str:
    """The warnings and errors in a command's stderr, without the progress lines shown when it is not a terminal."""
    return "".join(line for line in stderr.splitlines(keepends=True) if line.startswith(("error:", "warning:", "usage:")))


def assert_nothing_left(destination: Path) -> None:
    """After a refused or failed extraction: neither `destination` nor a partial folder beside it, nor `outside` next to its parent."""
    assert not os.path.lexists(destination)
    if destination.parent.exists():
        assert sorted(p.name for p in destination.parent.iterdir()) == []
    assert not (destination.parent.parent / "outside").exists()


def documented_json_keys() -> dict[str, tuple[set[str], set[str]]]:
    """From docs/commands.md: each command's JSON result keys and the keys of each of its `layers` entries."""
    import re

    text = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
    section = text.split("### JSON results", 1)[1].split("\n## ", 1)[0]
    found: dict[str, tuple[set[str], set[str]]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and re.fullmatch(r"`[a-z-]+`", cells[0]):
            keys, layer_keys = (set(re.findall(r"`([a-z_]+)`", cell)) for cell in cells[1:])
            found[cells[0].strip("`")] = (keys, layer_keys)
    return found


class StackFactory:
    """Writes a stack folder for a test: the `make_stack` fixture (tests/conftest.py).

    `make_stack(spec_text, files, folder=...)` writes `venvstacks.toml` from `spec_text`, with each
    `{py311}`-style field replaced by the full version of that runtime archive in use (nothing else
    in the text is touched, so TOML's own braces need no escaping), and each of `files` (launch
    modules, hooks, ...) by its path relative to the folder. The folder is a fresh one unless
    `folder` names one; returns the spec file's path.
    """

    def __init__(self, tmp_path_factory: pytest.TempPathFactory, runtime_versions: Mapping[str, str]) -> None:
        self._tmp_path_factory = tmp_path_factory
        self._runtime_versions = dict(runtime_versions)

    def __call__(self, spec_text: str, files: Mapping[str, str] | None = None, *, folder: Path | None = None) -> Path:
        if folder is None:
            folder = self._tmp_path_factory.mktemp("stack")
        for name, text in (files or {}).items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        for field, version in self._runtime_versions.items():
            spec_text = spec_text.replace("{" + field + "}", version)
        folder.mkdir(parents=True, exist_ok=True)
        spec = folder / "venvstacks.toml"
        spec.write_text(spec_text, encoding="utf-8")
        return spec


def publish_stack(spec: Path, pyz: Path, archive_dir: Path) -> Path:
    """Lock, build and publish the stack `spec` with the zipapp; the artifacts folder."""
    command = [sys.executable, str(pyz), "build", "--lock-if-needed", "--publish", str(spec)]
    result = run(command, env={"VENVSTACKS_PYTHON_ARCHIVE_DIR": str(archive_dir)})
    assert result.returncode == 0, result.stderr
    return spec.parent / "_artifacts"


def relink_all(deployment: Path, names: list[str]) -> None:
    """Run each layer's postinstall.py where it is now, `names` lowest first (a runtime first), as another installer would."""
    for name in names:
        result = run([str(deployment / names[0] / "bin" / "python3"), "-I", str(deployment / name / "postinstall.py")])
        assert (result.returncode, result.stderr) == (0, ""), name
