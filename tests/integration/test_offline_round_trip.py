"""Air-gapped builds: fetch a bundle online, then lock, build and publish with no network at all.

The stack locked online and its bundle are shared by the module's tests, which only read them:
a test that changes a bundle or a stack folder works on its own copy, so that each test passes
alone and in any order.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from support import EXCLUDE_NEWER, PY311_RUNTIME, StackFactory, run

pytestmark = [pytest.mark.slow, pytest.mark.network]

STACK = PY311_RUNTIME + """\
[[frameworks]]
name = "web"
runtime = "cpython-3.11"
requirements = ["idna", "numpy"]

[[applications]]
name = "dates"
launch_module = "launch/dates.py"
frameworks = ["web"]
requirements = ["python-dateutil"]
""" + EXCLUDE_NEWER


def _copy_stack(spec: Path, folder: Path) -> Path:
    """A copy of the stack folder of `spec` (its locks, not its builds) at `folder`; the copy's spec."""
    shutil.copytree(spec.parent, folder, symlinks=True, ignore=shutil.ignore_patterns("_build", "_artifacts"))
    return folder / spec.name


def _files(folder: Path) -> dict[Path, bytes]:
    """Every file below `folder`, by its path relative to it: its bytes."""
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _offline(command: list[str], tmp_path: Path) -> list[str]:
    """The command in a private network namespace with no route anywhere, and an empty uv cache."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail("unshare (util-linux) is needed to prove builds work without a network")
    prefix = [unshare, "-n"] if os.geteuid() == 0 else [unshare, "-r", "-n"]
    cache = tmp_path / "empty-uv-cache"
    return [*prefix, "env", f"UV_CACHE_DIR={cache}", "UV_OFFLINE=1", "VENVSTACKS_PYTHON_ARCHIVE_DIR=", *command]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, make_stack: StackFactory, runtime_archive_dir: Path, pyz: Path) -> tuple[Path, Path]:
    """A stack locked online and a bundle fetched for it (shared: tests only read them)."""
    spec = make_stack(STACK, {"launch/dates.py": "import dateutil.parser, numpy\nprint('dates', numpy.arange(4).sum())\n"})
    env = {"VENVSTACKS_PYTHON_ARCHIVE_DIR": str(runtime_archive_dir)}
    locked = run([sys.executable, str(pyz), "lock", str(spec)], env=env)
    assert locked.returncode == 0, locked.stderr
    bundle = tmp_path_factory.mktemp("bundle") / "bundle"
    fetched = run([sys.executable, str(pyz), "fetch", "--bundle", str(bundle), str(spec)], env=env)
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.endswith("files fetched, 0 already present\n")
    return spec, bundle


@pytest.fixture(scope="module")
def built_offline(stack: tuple[Path, Path], pyz: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[list[str], int, str]]]:
    """A copy of the stack, then locked (if needed), built and published from the bundle with no network.

    Its spec, and each command with its exit status and stderr (the tests check them).
    """
    spec, bundle = stack
    folder = tmp_path_factory.mktemp("offline")
    copy = _copy_stack(spec, folder / "stack")
    results = []
    for command in (
        ["lock", "--if-needed", "--bundle", str(bundle), str(copy)],
        ["build", "--lock-if-needed", "--bundle", str(bundle), str(copy)],
        ["publish", "--bundle", str(bundle), str(copy)],
    ):
        result = run(_offline([sys.executable, str(pyz), *command], folder))
        results.append((command, result.returncode, result.stderr))
        if result.returncode != 0:
            break
    return copy, results


def test_bundle_contents_and_manifest(stack: tuple[Path, Path]) -> None:
    _, bundle = stack
    manifest = json.loads((bundle / "venvstacks-bundle.json").read_text(encoding="utf-8"))["files"]
    wheels = sorted(p.name for p in (bundle / "wheels").iterdir())
    assert [w.split("-")[0] for w in wheels] == ["idna", "numpy", "packaging", "python_dateutil", "six"]
    assert len([w for w in wheels if w.startswith("numpy")]) == 1  # only this platform's wheel
    assert sorted(manifest) == sorted([*(f"wheels/{w}" for w in wheels), *(f"runtimes/{p.name}" for p in (bundle / "runtimes").iterdir())])
    for name, entry in manifest.items():
        assert (bundle / name).stat().st_size == entry["size"]


def test_fetch_again_fetches_only_what_is_missing(stack: tuple[Path, Path], pyz: Path, runtime_archive_dir: Path, tmp_path: Path) -> None:
    spec, shared = stack
    bundle = tmp_path / "bundle"
    shutil.copytree(shared, bundle)
    victim = next((bundle / "wheels").glob("six-*.whl"))
    victim.unlink()
    env = {"VENVSTACKS_PYTHON_ARCHIVE_DIR": str(runtime_archive_dir)}
    result = run([sys.executable, str(pyz), "fetch", "--bundle", str(bundle), str(spec)], env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(": 1 files fetched, 5 already present\n")
    assert victim.exists()
    assert not list(bundle.rglob("*.partial"))


def test_build_and_publish_without_network(stack: tuple[Path, Path], built_offline: tuple[Path, list[tuple[list[str], int, str]]]) -> None:
    online, _ = stack
    spec, results = built_offline
    for command, returncode, stderr in results:
        assert returncode == 0, (command, stderr)
    assert len(results) == 3
    # The locks are byte-identical to the ones made online.
    assert _files(spec.parent / "requirements") == _files(online.parent / "requirements")
    app = run([str(spec.parent / "_build" / "app-dates" / "bin" / "python"), "-m", "dates"])
    assert (app.returncode, app.stdout) == (0, "dates 6\n")
    assert sorted(p.name for p in (spec.parent / "_artifacts").glob("*.tar.xz")) == [
        "app-dates.tar.xz", "cpython-3.11.tar.xz", "framework-web.tar.xz",
    ]  # fmt: skip


def test_incomplete_bundle_names_the_missing_file(stack: tuple[Path, Path], pyz: Path, tmp_path: Path) -> None:
    spec, bundle = stack
    partial = tmp_path / "partial-bundle"
    shutil.copytree(bundle, partial)
    next((partial / "wheels").glob("idna-*.whl")).unlink()
    copy = _copy_stack(spec, tmp_path / "stack")
    result = run(_offline([sys.executable, str(pyz), "build", "--bundle", str(partial), str(copy)], tmp_path))
    assert result.returncode == 1
    assert "error: layer 'framework-web': the bundle " in result.stderr
    assert "is missing idna-3.10-py3-none-any.whl; run 'venvstacks fetch'" in result.stderr
    assert "Traceback" not in result.stderr


def test_lock_with_bundle_refuses_to_relock(stack: tuple[Path, Path], pyz: Path, tmp_path: Path) -> None:
    spec, bundle = stack
    copy = _copy_stack(spec, tmp_path / "stack")  # should it relock after all, the shared locks stay as they are
    result = run(_offline([sys.executable, str(pyz), "lock", "--bundle", str(bundle), str(copy)], tmp_path))
    assert result.returncode == 1
    assert result.stderr.startswith("error: with --bundle, locking can only confirm valid locks (pass --if-needed)")


def test_round_trip_deploy_and_verify_without_network(built_offline: tuple[Path, list[tuple[list[str], int, str]]], pyz: Path, tmp_path: Path) -> None:
    # What the offline build published: deploy it with the tool, run, then tamper (with a copy of the archives).
    spec, results = built_offline
    assert [returncode for _, returncode, _ in results] == [0, 0, 0], results
    artifacts = spec.parent / "_artifacts"
    target = tmp_path / "déployé ici"
    result = run(_offline([sys.executable, str(pyz), "deploy", str(artifacts), "--target", str(target)], tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1:] == ["  cpython-3.11 [installed]", "  framework-web [installed]", "  app-dates [installed]"]
    app = run([str(target / "app-dates" / "bin" / "python"), "-m", "dates"])
    assert (app.returncode, app.stdout) == (0, "dates 6\n")
    assert run([sys.executable, str(pyz), "verify", str(target)]).returncode == 0
    again = run([sys.executable, str(pyz), "deploy", str(artifacts), "--target", str(target)])
    assert again.returncode == 0 and again.stdout.count("[unchanged]") == 3
    # A tampered archive is refused before anything of it is unpacked.
    tampered = tmp_path / "tampered"
    shutil.copytree(artifacts, tampered)
    archive = tampered / "framework-web.tar.xz"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    refused = run([sys.executable, str(pyz), "deploy", str(tampered), "--target", str(tmp_path / "fresh")])
    assert refused.returncode == 1 and "framework-web.tar.xz" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "fresh" / "framework-web").exists()
    # A modified deployed file is reported by verify.
    module = next((target / "framework-web").rglob("idna/core.py"))
    module.write_text(module.read_text(encoding="utf-8") + "\n# changed\n", encoding="utf-8")
    checked = run([sys.executable, str(pyz), "verify", str(target)])
    assert checked.returncode == 1
    assert "framework-web" in checked.stderr and "idna/core.py" in checked.stderr
