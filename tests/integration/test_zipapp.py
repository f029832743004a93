"""The single-file zipapp: reproducible, standard-library only, and identical to the
other two ways of running the tool (`python -m venvstacks` and the console script)."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

from support import COMPAT, ROOT, SPECS, find_uv, run

pytestmark = pytest.mark.slow


def test_building_twice_gives_identical_bytes(pyz: Path, tmp_path: Path) -> None:
    import build_zipapp

    again = build_zipapp.build(tmp_path / "again.pyz")
    assert again.read_bytes() == pyz.read_bytes()


def test_build_script_writes_dist_by_default(tmp_path: Path) -> None:
    result = run([sys.executable, str(ROOT / "build_zipapp.py"), "--output", str(tmp_path / "out.pyz")])
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.pyz").exists()
    assert result.stdout.strip() == str(tmp_path / "out.pyz")
    in_tree = run([sys.executable, "build_zipapp.py"], cwd=ROOT)
    assert in_tree.returncode == 0 and in_tree.stdout == "dist/venvstacks.pyz\n"


def test_zipapp_contents(pyz: Path) -> None:
    assert pyz.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(pyz) as archive:
        names = archive.namelist()
        assert names == sorted(names)
        assert "__main__.py" in names
        package = sorted(p.relative_to(ROOT / "venvstacks").as_posix() for p in (ROOT / "venvstacks").rglob("*.py"))
        assert sorted(n.removeprefix("venvstacks/") for n in names if n.startswith("venvstacks/") and n.endswith(".py")) == package
        assert not [n for n in names if "__pycache__" in n]
        # next to each module, its bytecode for the building Python (unchecked hash-based)
        sources = [n for n in names if n.startswith("venvstacks/") and n.endswith(".py")]
        assert sorted(n for n in names if n.endswith(".pyc")) == sorted(n + "c" for n in sources)
        pyc = archive.read("venvstacks/cli/main.pyc")
        import importlib.util

        assert pyc[:4] == importlib.util.MAGIC_NUMBER and int.from_bytes(pyc[4:8], "little") == 0b01
        assert {info.date_time for info in archive.infolist()} == {(2000, 1, 1, 0, 0, 0)}


def test_help_imports_only_what_it_needs(pyz: Path) -> None:
    # --help and --version must not load the spec machinery, tomllib or json.
    code = (
        "import runpy, sys\n"
        f"sys.argv = [{str(pyz)!r}, '--help']\n"
        "try:\n"
        f"    runpy.run_path({str(pyz)!r}, run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('venvstacks') or m in ('tomllib', 'json', 'logging')), file=sys.stderr)\n"
    )
    result = run([sys.executable, "-c", code])
    expected = ["venvstacks", "venvstacks.cli", "venvstacks.cli.args", "venvstacks.cli.handlers", "venvstacks.cli.main", "venvstacks.cli.options", "venvstacks.cli.output", "venvstacks.cli.parser"]
    assert result.stderr.strip() == str(expected)


@pytest.fixture(scope="module")
def console_script(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `venvstacks` console script, from installing the project into a fresh venv with uv."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    uv = find_uv()
    created = run([uv, "venv", "--no-config", "--python", sys.executable, str(venv)])
    assert created.returncode == 0, created.stderr
    installed = run([uv, "pip", "install", "--no-config", "--python", str(venv / "bin" / "python"), str(ROOT)])
    assert installed.returncode == 0, installed.stderr
    script = venv / "bin" / "venvstacks"
    assert script.exists()
    return script


def _invocations(pyz: Path, console_script: Path) -> dict[str, list[str]]:
    return {
        "zipapp": [sys.executable, str(pyz)],
        "module": [sys.executable, "-m", "venvstacks"],
        "console script": [str(console_script)],
    }


CASES = [
    pytest.param([], id="no-arguments"),
    pytest.param(["--help"], id="help"),
    pytest.param(["--version"], id="version"),
    pytest.param(["show", "--help"], id="show-help"),
    pytest.param(["show"], id="usage-error"),
    pytest.param(["bogus"], id="unknown-command"),
    pytest.param(["show", str(COMPAT / "venvstacks.toml")], id="show"),
    pytest.param(["show", "--json", "--include", "app-*", str(COMPAT / "venvstacks.toml")], id="show-json"),
    pytest.param(["show", str(SPECS / "error_many_at_once.toml")], id="invalid-spec"),
    pytest.param(["show", str(SPECS / "does-not-exist.toml")], id="missing-spec"),
]


@pytest.mark.network
@pytest.mark.parametrize("argv", CASES)
def test_three_ways_to_run_behave_identically(pyz: Path, console_script: Path, argv: list[str]) -> None:
    results = {
        name: run([*command, *argv], cwd=ROOT) for name, command in _invocations(pyz, console_script).items()
    }
    reference = results["zipapp"]
    assert "Traceback" not in reference.stderr
    for name, result in results.items():
        assert (result.returncode, result.stdout, result.stderr) == (
            reference.returncode,
            reference.stdout,
            reference.stderr,
        ), name


def test_exit_codes_through_the_zipapp(pyz: Path) -> None:
    assert run([sys.executable, str(pyz), "--version"]).returncode == 0
    assert run([sys.executable, str(pyz)]).returncode == 2
    assert run([sys.executable, str(pyz), "show"]).returncode == 2
    assert run([sys.executable, str(pyz), "show", str(SPECS / "error_unknown_key.toml")]).returncode == 1
    assert run([sys.executable, str(pyz), "show", str(COMPAT / "venvstacks.toml")]).returncode == 0


def test_zipapp_runs_directly_as_an_executable(pyz: Path) -> None:
    result = run([str(pyz), "--version"])
    assert result.returncode == 0
    assert result.stdout.startswith("venvstacks: ")


def _other_pythons() -> dict[str, str]:
    """The machine's other CPython builds (pyenv), by X.Y version."""
    import shutil
    import subprocess

    found: dict[str, str] = {}
    roots = [Path.home() / ".pyenv" / "versions"]
    pyenv = shutil.which("pyenv")
    if pyenv:
        root = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False).stdout.strip()
        if root:
            roots.insert(0, Path(root) / "versions")
    for versions in roots:
        for python in sorted(versions.glob("3.*/bin/python3")):
            found.setdefault(".".join(python.parent.parent.name.split(".")[:2]), str(python))
    for minor in range(9, 16):
        which = shutil.which(f"python3.{minor}")
        if which:
            found.setdefault(f"3.{minor}", which)
    return found


def test_zipapp_on_every_supported_python(pyz: Path) -> None:
    pythons = {v: p for v, p in _other_pythons().items() if tuple(map(int, v.split("."))) >= (3, 11)}
    assert len(pythons) >= 2, f"expected CPython 3.11 and newer builds on this machine, found {pythons}"
    args = ["show", "--json", str(COMPAT / "venvstacks.toml")]
    reference = run([sys.executable, str(pyz), *args])
    assert reference.returncode == 0
    for version, python in pythons.items():
        result = run([python, str(pyz), *args])
        assert (version, result.returncode, result.stdout, result.stderr) == (version, 0, reference.stdout, ""), python


def test_zipapp_on_too_old_python_says_so(pyz: Path) -> None:
    old = {v: p for v, p in _other_pythons().items() if v in ("3.9", "3.10")}
    assert old, "expected a CPython 3.9 or 3.10 build on this machine"
    for version, python in old.items():
        result = run([python, str(pyz), "show", str(COMPAT / "venvstacks.toml")])
        assert result.returncode == 1
        assert result.stderr == f"error: venvstacks needs Python 3.11 or newer (this is Python {version})\n"
