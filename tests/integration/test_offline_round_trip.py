"""Air-gapped builds: fetch a bundle online, then lock, build and publish with no network at all."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from support import run

pytestmark = pytest.mark.slow

STACK = """\
[[runtimes]]
name = "cpython-3.11"
python_implementation = "cpython@{py311}"
requirements = ["packaging"]

[[frameworks]]
name = "web"
runtime = "cpython-3.11"
requirements = ["idna", "numpy"]

[[applications]]
name = "dates"
launch_module = "launch/dates.py"
frameworks = ["web"]
requirements = ["python-dateutil"]

[tool.uv]
exclude-newer = "2025-08-27T00:00:00Z"
"""


def _offline(command: list[str], tmp_path: Path) -> list[str]:
    """The command in a private network namespace with no route anywhere, and an empty uv cache."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.fail("unshare (util-linux) is needed to prove builds work without a network")
    prefix = [unshare, "-n"] if os.geteuid() == 0 else [unshare, "-r", "-n"]
    cache = tmp_path / "empty-uv-cache"
    return [*prefix, "env", f"UV_CACHE_DIR={cache}", "UV_OFFLINE=1", "VENVSTACKS_PYTHON_ARCHIVE_DIR=", *command]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, runtime_versions: dict[str, str], runtime_archive_dir: Path, pyz: Path) -> tuple[Path, Path]:
    """A stack locked online and a bundle fetched for it."""
    folder = tmp_path_factory.mktemp("stack")
    (folder / "launch").mkdir()
    (folder / "launch" / "dates.py").write_text("import dateutil.parser, numpy\nprint('dates', numpy.arange(4).sum())\n", encoding="utf-8")
    spec = folder / "venvstacks.toml"
    spec.write_text(STACK.format(**runtime_versions), encoding="utf-8")
    env = {"VENVSTACKS_PYTHON_ARCHIVE_DIR": str(runtime_archive_dir)}
    locked = run([sys.executable, str(pyz), "lock", str(spec)], env=env)
    assert locked.returncode == 0, locked.stderr
    bundle = folder.parent / "bundle"
    fetched = run([sys.executable, str(pyz), "fetch", "--bundle", str(bundle), str(spec)], env=env)
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.endswith("files fetched, 0 already present\n")
    return spec, bundle


def test_bundle_contents_and_manifest(stack: tuple[Path, Path]) -> None:
    _, bundle = stack
    manifest = json.loads((bundle / "venvstacks-bundle.json").read_text(encoding="utf-8"))["files"]
    wheels = sorted(p.name for p in (bundle / "wheels").iterdir())
    assert [w.split("-")[0] for w in wheels] == ["idna", "numpy", "packaging", "python_dateutil", "six"]
    assert len([w for w in wheels if w.startswith("numpy")]) == 1  # only this platform's wheel
    assert sorted(manifest) == sorted([*(f"wheels/{w}" for w in wheels), *(f"runtimes/{p.name}" for p in (bundle / "runtimes").iterdir())])
    for name, entry in manifest.items():
        assert (bundle / name).stat().st_size == entry["size"]


def test_fetch_again_fetches_only_what_is_missing(stack: tuple[Path, Path], pyz: Path, runtime_archive_dir: Path) -> None:
    spec, bundle = stack
    victim = next((bundle / "wheels").glob("six-*.whl"))
    victim.unlink()
    env = {"VENVSTACKS_PYTHON_ARCHIVE_DIR": str(runtime_archive_dir)}
    result = run([sys.executable, str(pyz), "fetch", "--bundle", str(bundle), str(spec)], env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(": 1 files fetched, 5 already present\n")
    assert victim.exists()
    assert not list(bundle.rglob("*.partial"))


def test_build_and_publish_without_network(stack: tuple[Path, Path], pyz: Path, tmp_path: Path) -> None:
    spec, bundle = stack
    locks = {p: p.read_bytes() for p in (spec.parent / "requirements").rglob("*") if p.is_file()}
    for command in (
        ["lock", "--if-needed", "--bundle", str(bundle), str(spec)],
        ["build", "--lock-if-needed", "--bundle", str(bundle), str(spec)],
        ["publish", "--bundle", str(bundle), str(spec)],
    ):
        result = run(_offline([sys.executable, str(pyz), *command], tmp_path))
        assert result.returncode == 0, (command, result.stderr)
    # The locks are byte-identical to the ones made online.
    assert {p: p.read_bytes() for p in (spec.parent / "requirements").rglob("*") if p.is_file()} == locks
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
    copy = tmp_path / "stack"
    shutil.copytree(spec.parent, copy, symlinks=True, ignore=shutil.ignore_patterns("_build", "_artifacts"))
    result = run(_offline([sys.executable, str(pyz), "build", "--bundle", str(partial), str(copy / "venvstacks.toml")], tmp_path))
    assert result.returncode == 1
    assert "error: layer 'framework-web': the bundle " in result.stderr
    assert "is missing idna-3.10-py3-none-any.whl; run 'venvstacks fetch'" in result.stderr
    assert "Traceback" not in result.stderr


def test_lock_with_bundle_refuses_to_relock(stack: tuple[Path, Path], pyz: Path, tmp_path: Path) -> None:
    spec, bundle = stack
    result = run(_offline([sys.executable, str(pyz), "lock", "--bundle", str(bundle), str(spec)], tmp_path))
    assert result.returncode == 1
    assert result.stderr.startswith("error: with --bundle, locking can only confirm valid locks (pass --if-needed)")


def test_round_trip_deploy_and_verify_without_network(stack: tuple[Path, Path], pyz: Path, tmp_path: Path) -> None:
    # Runs after the offline build and publish above: deploy with the tool, run, then tamper.
    spec, _ = stack
    artifacts = spec.parent / "_artifacts"
    if not (artifacts / "__venvstacks__" / "venvstacks.json").exists():
        pytest.fail("the offline publish step did not run first")
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
