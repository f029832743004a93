"""Deploying a really built stack: layers copied side by side elsewhere and relinked by their postinstall.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import EXCLUDE_NEWER, PY311_RUNTIME, ROOT, StackFactory

pytestmark = [pytest.mark.slow, pytest.mark.network]

STACK = PY311_RUNTIME + """\
[[frameworks]]
name = "web"
runtime = "cpython-3.11"
versioned = true
requirements = ["idna"]

[[applications]]
name = "dates"
launch_module = "launch/dates.py"
frameworks = ["web"]
requirements = ["python-dateutil"]
""" + EXCLUDE_NEWER

DATES = """\
import dateutil.parser, idna, packaging.version
print("dates", dateutil.parser.isoparse("2025-01-02").year, idna.encode("bücher.example").decode(), packaging.version.Version("1.0"))
"""
DATES_OUTPUT = "dates 2025 xn--bcher-kva.example 1.0\n"

REPORT = """\
import json, sys, sysconfig
print(json.dumps({"path": sys.path, "prefix": sys.prefix, "config_prefix": sysconfig.get_config_var("prefix"),
                  "LIBDIR": sysconfig.get_config_var("LIBDIR"), "INCLUDEPY": sysconfig.get_config_var("INCLUDEPY"),
                  "include": sysconfig.get_paths()["include"]}))
"""
SITE = "lib/python3.11/site-packages"
CONFIG = "share/venv/metadata/venvstacks_layer.json"
# What an archive leaves out; the post-install step regenerates it.
NOT_SHIPPED = shutil.ignore_patterns("pyvenv.cfg", "sitecustomize.py", "__pycache__")


def _run(command: list, *, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run with bytecode writing allowed, so a missing .pyc would show up as a new file."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    return subprocess.run([str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, encoding="utf-8", check=False)


@pytest.fixture(scope="module")
def build_dir(make_stack: StackFactory, pyz: Path, runtime_archive_dir: Path) -> Path:
    spec = make_stack(STACK, {"launch/dates.py": DATES})
    result = subprocess.run(
        [sys.executable, str(pyz), "build", "--lock-if-needed", str(spec)],
        env={**os.environ, "VENVSTACKS_PYTHON_ARCHIVE_DIR": str(runtime_archive_dir)},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("[built]") == 3
    return spec.parent / "_build"


def _deployed_names(build_dir: Path) -> dict[str, str]:
    """Build name -> deployed folder name, as the app's config names its peers."""
    app = json.loads((build_dir / "app-dates" / CONFIG).read_text(encoding="utf-8"))
    names = {"app-dates": "app-dates"}
    for relative in app["pylib_dirs"]:
        deployed = Path(relative).parts[1]
        names[deployed.split("@")[0]] = deployed
    return names


def _postinstall_all(deployment: Path, order: list[str]) -> None:
    python = deployment / order[0] / "bin" / "python3"
    for name in order:
        result = _run([python, "-I", deployment / name / "postinstall.py"])
        assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), name


def _snapshot(folder: Path, *, with_bytecode: bool) -> dict[str, tuple]:
    """Every entry under `folder`: its content (or link target), mode and mtime."""
    found = {}
    for path in sorted(folder.rglob("*")):
        if not with_bytecode and "__pycache__" in path.parts:
            continue
        info = path.lstat()
        if path.is_symlink():
            content: object = os.readlink(path)
        elif path.is_dir():
            content = None
        else:
            content = path.read_bytes()
        found[str(path.relative_to(folder))] = (content, info.st_mode, info.st_mtime_ns)
    return found


def _report(python: Path) -> dict:
    result = _run([python, "-c", REPORT])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _check_deployment(deployment: Path, names: dict[str, str]) -> None:
    """The app runs from the deployed layers, sysconfig names the deployed runtime, and no bytecode gets written."""
    runtime, framework, app = (deployment / names[key] for key in ("cpython-3.11", "framework-web", "app-dates"))
    before = _snapshot(deployment, with_bytecode=True)
    result = _run([app / "bin" / "python", "-m", "dates"], cwd=deployment)
    assert (result.returncode, result.stdout, result.stderr) == (0, DATES_OUTPUT, "")
    report = _report(app / "bin" / "python")
    assert [p for p in report["path"] if p.endswith("site-packages")] == [str(app / SITE), str(framework / SITE), str(runtime / SITE)]
    assert report["prefix"] == str(app) and report["include"] == f"{runtime}/include/python3.11"
    report = _report(runtime / "bin" / "python3")
    assert report["config_prefix"] == report["prefix"] == str(runtime)
    assert (report["LIBDIR"], report["INCLUDEPY"], report["include"]) == (f"{runtime}/lib", f"{runtime}/include/python3.11", f"{runtime}/include/python3.11")
    # everything was compiled by the post-install step: running wrote no __pycache__ entry
    assert _snapshot(deployment, with_bytecode=True).keys() == before.keys()


def _mentions(folder: Path, text: str) -> list[str]:
    """Files (bytecode aside) holding `text`, and links pointing at it."""
    needle = text.encode("utf-8")
    found = []
    for path in sorted(folder.rglob("*")):
        if "__pycache__" in path.parts:
            continue
        if path.is_symlink():
            if text in os.readlink(path):
                found.append(str(path))
        elif path.is_file() and needle in path.read_bytes():
            found.append(str(path))
    return found


def test_deployed_stack_is_relinked_in_place_and_after_a_move(build_dir: Path, tmp_path: Path) -> None:
    names = _deployed_names(build_dir)
    assert names == {"cpython-3.11": "cpython-3.11", "framework-web": "framework-web@1", "app-dates": "app-dates"}
    order = [names[key] for key in ("cpython-3.11", "framework-web", "app-dates")]
    deployment = tmp_path / "déploiement à tester"
    deployment.mkdir()
    for build_name, deployed in names.items():
        shutil.copytree(build_dir / build_name, deployment / deployed, symlinks=True, ignore=NOT_SHIPPED)
        shutil.copyfile(ROOT / "venvstacks" / "postinstall.py", deployment / deployed / "postinstall.py")
    build_dir.rename(build_dir.with_name("_build-moved-away"))

    _postinstall_all(deployment, order)
    _check_deployment(deployment, names)

    # a second run changes nothing at all
    before = _snapshot(deployment, with_bytecode=False)
    _postinstall_all(deployment, order)
    assert _snapshot(deployment, with_bytecode=False) == before

    # the whole deployment moves, and is relinked where it is now
    moved = tmp_path / "ailleurs, déplacé" / "pile de couches"
    moved.parent.mkdir()
    deployment.rename(moved)
    _postinstall_all(moved, order)
    _check_deployment(moved, names)
    assert _mentions(moved, str(deployment)) == []
    assert _mentions(moved, str(build_dir)) == []
