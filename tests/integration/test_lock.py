"""`lock` against PyPI with real uv and real runtimes: contents, reuse, invalidation, errors."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import tomllib
from pathlib import Path

import pytest

from support import EXCLUDE_NEWER, PY311_RUNTIME, StackFactory, find_uv, run, without_progress

pytestmark = pytest.mark.slow

# exclude-newer pins what PyPI offers, so the locks are the same on every run.
STACK = PY311_RUNTIME + """\
[[runtimes]]
name = "cpython-3.12"
python_implementation = "cpython@{py312}"
requirements = []

[[frameworks]]
name = "web"
runtime = "cpython-3.11"
requirements = ["idna", "certifi"]

[[frameworks]]
name = "web-extra"
frameworks = ["web"]
requirements = ["six", "colorama; sys_platform == 'win32'"]

[[applications]]
name = "dates"
launch_module = "launch/dates.py"
frameworks = ["web-extra"]
requirements = ["python-dateutil", "idna"]

[[applications]]
name = "records"
launch_module = "launch/records.py"
runtime = "cpython-3.12"
versioned = true
requirements = ["attrs"]
""" + EXCLUDE_NEWER
LAYERS = ["cpython-3.11", "cpython-3.12", "framework-web", "framework-web-extra", "app-dates", "app-records"]
LAUNCH = {"launch/dates.py": "import dateutil\nprint('dates')\n", "launch/records.py": "import attrs\nprint('records')\n"}


@pytest.fixture(scope="module")
def uv_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A uv wrapper that records every call, so tests can see when uv ran."""
    folder = tmp_path_factory.mktemp("uvwrap")
    log = folder / "calls.log"
    wrapper = folder / "uv"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {find_uv()} "$@"\n', encoding="utf-8")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    return wrapper, log


def _venvstacks(*args: str, pyz: Path, archive_dir: Path, uv: Path | None = None, cwd: Path | None = None) -> tuple[int, str, str]:
    env = {"VENVSTACKS_PYTHON_ARCHIVE_DIR": str(archive_dir)}
    if uv is not None:
        env["VENVSTACKS_UV"] = str(uv)
    result = run([sys.executable, str(pyz), *args], env=env, cwd=cwd)
    return result.returncode, result.stdout, result.stderr


@pytest.fixture(scope="module")
def locked(make_stack: StackFactory, pyz: Path, runtime_archive_dir: Path, uv_log: tuple[Path, Path]) -> Path:
    """A six-layer stack on two runtimes, locked once for the tests of this module."""
    spec = make_stack(STACK, LAUNCH)
    status, out, err = _venvstacks("lock", str(spec), pyz=pyz, archive_dir=runtime_archive_dir, uv=uv_log[0])
    assert status == 0, err
    assert out.startswith("Locked environments:\n")
    return spec


def _add_to_framework_web(spec: Path, requirement: str) -> None:
    """Change the stack `spec`: framework-web also requires `requirement`."""
    text = spec.read_text(encoding="utf-8")
    spec.write_text(text.replace('requirements = ["idna", "certifi"]', f'requirements = ["idna", "certifi", "{requirement}"]'), encoding="utf-8")


def _actions(out: str) -> dict[str, str]:
    """What `lock` said it did to each layer, from its output lines."""
    actions = {}
    for line in out.splitlines()[1:-1]:
        layer = line.split("/")[1]
        actions[layer] = line.rsplit("[", 1)[1].rstrip("]")
    return actions


def _pylock(spec: Path, layer: str) -> dict:
    folder = spec.parent / "requirements" / layer
    return tomllib.loads(next(folder.glob("pylock.*.toml")).read_text(encoding="utf-8"))


def _packages(spec: Path, layer: str) -> dict[str, dict]:
    return {p["name"]: p for p in _pylock(spec, layer)["packages"]}


def _meta(spec: Path, layer: str) -> dict:
    folder = spec.parent / "requirements" / layer
    return json.loads(next(folder.glob("pylock.*.meta.json")).read_text(encoding="utf-8"))


@pytest.mark.network
def test_lock_files_and_contents(locked: Path) -> None:
    for layer in LAYERS:
        folder = locked.parent / "requirements" / layer
        stem = layer.replace(".", "_")
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            [f"requirements-{stem}.in", f"pylock.{stem}.toml", f"pylock.{stem}.meta.json", f"packages-{layer}.txt"]
        )
    runtime = _packages(locked, "cpython-3.11")
    assert list(runtime) == ["packaging"]
    assert runtime["packaging"]["version"] == "25.0"
    web = _packages(locked, "framework-web")
    assert sorted(web) == ["certifi", "idna"]
    extra = _packages(locked, "framework-web-extra")
    # colorama is Windows-only: kept with its marker; six everywhere: no marker.
    assert extra["colorama"]["marker"] == "sys_platform == 'win32'"
    assert "marker" not in extra["six"]
    dates = _packages(locked, "app-dates")
    # What lower layers provide stays in the lock (with its version) but can never be installed.
    assert dates["idna"] == {"name": "idna", "version": web["idna"]["version"], "marker": "sys_platform == 'from_lower_layer'"}
    assert dates["six"]["marker"] == "sys_platform == 'from_lower_layer'"
    assert "wheels" in dates["python-dateutil"] and "index" in dates["python-dateutil"]
    for layer in LAYERS:
        for package in _pylock(locked, layer)["packages"]:
            assert "sdist" not in package
            for wheel in package.get("wheels", []):
                assert wheel["url"].endswith(".whl") and wheel["hashes"]["sha256"]
    summary = (locked.parent / "requirements" / "app-dates" / "packages-app-dates.txt").read_text(encoding="utf-8")
    assert summary.startswith("# Package summary for app-dates\n#     Auto-generated by venvstacks (DO NOT EDIT)\npython-dateutil==")
    assert "\n# Shared packages inherited from other layers\nidna==" in summary
    meta = _meta(locked, "cpython-3.11")
    assert meta["locked_at"] == "2025-08-27T00:00:00+00:00"
    assert meta["lock_version"] == 1
    assert meta["runtime_archive"]["name"].startswith("cpython-3.11.")
    assert len(meta["runtime_archive"]["sha256"]) == 64


@pytest.mark.network
def test_show_after_locking(locked: Path, pyz: Path, runtime_archive_dir: Path) -> None:
    status, out, _ = _venvstacks("show", str(locked), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 0
    assert "*" not in out
    assert "    └── app-records -> app-records@1\n" in out


@pytest.mark.network
def test_relock_is_byte_identical_and_keeps_times(locked: Path, pyz: Path, runtime_archive_dir: Path, tmp_path: Path, make_stack: StackFactory) -> None:
    before = {p: p.read_bytes() for p in (locked.parent / "requirements").rglob("*") if p.is_file()}
    mtimes = {p: p.stat().st_mtime_ns for p in before}
    status, out, err = _venvstacks("lock", str(locked), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 0, err
    assert out.count("[unchanged]") == len(LAYERS)
    after = {p: p.read_bytes() for p in (locked.parent / "requirements").rglob("*") if p.is_file()}
    assert after == before
    assert {p: p.stat().st_mtime_ns for p in after} == mtimes  # not even rewritten
    # A fresh copy of the stack in another folder locks to the same bytes.
    copy = make_stack(STACK, LAUNCH, folder=tmp_path / "again")
    status, _, err = _venvstacks("lock", str(copy), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 0, err
    again = {p.relative_to(copy.parent): p.read_bytes() for p in (copy.parent / "requirements").rglob("*") if p.is_file()}
    assert again == {p.relative_to(locked.parent): b for p, b in before.items()}


@pytest.mark.network
def test_lock_if_needed_runs_no_uv(locked: Path, pyz: Path, runtime_archive_dir: Path, uv_log: tuple[Path, Path]) -> None:
    wrapper, log = uv_log
    log.write_text("", encoding="utf-8")
    status, out, err = _venvstacks("lock", "--if-needed", str(locked), pyz=pyz, archive_dir=runtime_archive_dir, uv=wrapper)
    assert status == 0, err
    assert out.count("[skipped]") == len(LAYERS)
    assert log.read_text(encoding="utf-8") == ""


@pytest.mark.network
def test_if_needed_relocks_what_changed_and_what_is_above(tmp_path: Path, locked: Path, pyz: Path, runtime_archive_dir: Path, uv_log: tuple[Path, Path]) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(locked.parent, folder, ignore=shutil.ignore_patterns("_build"))
    spec = folder / "venvstacks.toml"
    _add_to_framework_web(spec, "charset-normalizer")
    old_dates = _meta(spec, "app-dates")
    wrapper, log = uv_log
    log.write_text("", encoding="utf-8")
    status, out, err = _venvstacks("lock", "--if-needed", str(spec), pyz=pyz, archive_dir=runtime_archive_dir, uv=wrapper)
    assert status == 0, err
    assert _actions(out) == {
        "cpython-3.11": "skipped", "cpython-3.12": "skipped", "framework-web": "locked",
        "framework-web-extra": "unchanged", "app-dates": "unchanged", "app-records": "skipped",
    }  # fmt: skip
    assert "charset-normalizer" in _packages(spec, "framework-web")
    # The layers above were re-resolved, but came out the same: time and version stay.
    assert _meta(spec, "app-dates") == old_dates
    assert [line.split()[0] for line in log.read_text(encoding="utf-8").splitlines()].count("lock") == 3


@pytest.mark.network
def test_versioned_layer_bumps_without_uv(tmp_path: Path, locked: Path, pyz: Path, runtime_archive_dir: Path, uv_log: tuple[Path, Path]) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(locked.parent, folder, ignore=shutil.ignore_patterns("_build"))
    spec = folder / "venvstacks.toml"
    (folder / "launch" / "records.py").write_text("import attrs\nprint('records 2')\n", encoding="utf-8")
    wrapper, log = uv_log
    log.write_text("", encoding="utf-8")
    status, out, err = _venvstacks("lock", "--if-needed", str(spec), pyz=pyz, archive_dir=runtime_archive_dir, uv=wrapper)
    assert status == 0, err
    assert "app-records.toml (locked at: 2025-08-27T00:00:00+00:00) [versioned]" in out
    assert _meta(spec, "app-records")["lock_version"] == 2
    assert log.read_text(encoding="utf-8") == ""
    status, out, _ = _venvstacks("show", str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert "app-records -> app-records@2" in out


@pytest.mark.network
def test_reset_lock_and_include(tmp_path: Path, locked: Path, pyz: Path, runtime_archive_dir: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(locked.parent, folder, ignore=shutil.ignore_patterns("_build"))
    spec = folder / "venvstacks.toml"
    status, out, err = _venvstacks("lock", "--include", "framework-web-extra", "--reset-lock", "framework-web-extra", str(spec),
                                   pyz=pyz, archive_dir=runtime_archive_dir)  # fmt: skip
    assert status == 0, err
    # the included layer (reset, so relocked), the layers underneath (only if needed)
    # and the layers built on it
    assert _actions(out) == {
        "cpython-3.11": "skipped", "framework-web": "skipped", "framework-web-extra": "unchanged", "app-dates": "unchanged",
    }  # fmt: skip
    status, _, err = _venvstacks("lock", "--include", "nothing-*", str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 1
    assert err == "error: no layers match --include 'nothing-*' (pass --allow-missing to continue without them)\n"


def _lock_error(make_stack: StackFactory, pyz: Path, archive_dir: Path, text: str) -> str:
    spec = make_stack(text)
    status, out, err = _venvstacks("lock", str(spec), pyz=pyz, archive_dir=archive_dir)
    assert status == 1 and out == ""
    assert "Traceback" not in err
    return without_progress(err)


RUNTIME = '[[runtimes]]\nname = "rt"\npython_implementation = "cpython@{py311}"\n'
CLAMP = '[tool.uv]\nexclude-newer = "2025-08-27T00:00:00Z"\n'


@pytest.mark.network
def test_unresolvable_requirements_name_the_layer(make_stack: StackFactory, pyz: Path, runtime_archive_dir: Path) -> None:
    err = _lock_error(make_stack, pyz, runtime_archive_dir, RUNTIME + 'requirements = ["numpy<2.0", "numpy>=2.0"]\n' + CLAMP)
    assert err.startswith("error: failed to lock layer 'rt':\n")
    assert "numpy" in err and "unsatisfiable" in err


@pytest.mark.network
def test_conflict_between_layers(make_stack: StackFactory, pyz: Path, runtime_archive_dir: Path) -> None:
    text = (RUNTIME + 'requirements = ["six==1.16.0"]\n'
            '[[frameworks]]\nname = "x"\nruntime = "rt"\nrequirements = ["six>=1.17"]\n' + CLAMP)  # fmt: skip
    err = _lock_error(make_stack, pyz, runtime_archive_dir, text)
    assert err.startswith("error: failed to lock layer 'framework-x':\n")


@pytest.mark.network
def test_missing_wheels_are_reported_together(make_stack: StackFactory, pyz: Path, runtime_archive_dir: Path) -> None:
    # pywin32 has only Windows wheels; windows-curses too.
    err = _lock_error(make_stack, pyz, runtime_archive_dir, RUNTIME + 'requirements = ["pywin32", "windows-curses", "six"]\n' + CLAMP)
    lines = err.splitlines()
    assert lines[0] == "error: rt: some packages have no wheels for all target platforms:"
    assert any(line.startswith("error:   pywin32: no wheels for linux_x86_64, linux_aarch64, macosx_arm64, macosx_x86_64") for line in lines)
    assert any(line.startswith("error:   windows-curses: no wheels for") for line in lines)
    assert lines[-1].startswith("error: Set platforms = [")


def test_runtime_not_available(make_stack: StackFactory, pyz: Path, runtime_archive_dir: Path) -> None:
    text = '[[runtimes]]\nname = "rt"\npython_implementation = "cpython@3.11.99"\nrequirements = []\n'
    err = _lock_error(make_stack, pyz, runtime_archive_dir, text)
    assert "no CPython 3.11.99 archive for" in err and "(it has: " in err


def test_uv_not_found(tmp_path: Path, make_stack: StackFactory, pyz: Path, runtime_archive_dir: Path) -> None:
    spec = make_stack(RUNTIME + "requirements = []\n")
    status, _, err = _venvstacks("lock", "--uv", str(tmp_path / "no-uv"), str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 1
    assert without_progress(err).startswith("error: --uv names ") and "not a working uv binary" in err


@pytest.mark.network
def test_local_wheels_without_index(tmp_path: Path, make_stack: StackFactory, pyz: Path, runtime_archive_dir: Path) -> None:
    wheels = tmp_path / "wheels"
    downloaded = run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(wheels), "six==1.17.0"])
    assert downloaded.returncode == 0, downloaded.stderr
    spec = make_stack(RUNTIME + 'requirements = ["six"]\n')
    status, _, err = _venvstacks("lock", "--no-index", "--local-wheels", str(wheels), str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 0, err
    (six,) = _pylock(spec, "rt")["packages"]
    # Local wheels are recorded relative to the lock folder, never by absolute path.
    assert six["wheels"][0]["path"] == os.path.relpath(wheels / "six-1.17.0-py2.py3-none-any.whl", spec.parent / "requirements" / "rt")
    assert "url" not in six["wheels"][0]


@pytest.mark.network
def test_seed_example(make_stack: StackFactory, pyz: Path, runtime_archive_dir: Path) -> None:
    text = (
        '[[runtimes]]\nname = "cpython@3.11"\nfully_versioned_name = "cpython@{py311}"\nrequirements = ["numpy"]\n'
        '[[frameworks]]\nname = "sklearn"\nruntime = "cpython@3.11"\nrequirements = ["scikit-learn"]\n'
        '[[applications]]\nname = "classification-demo"\nlaunch_module = "launch/dates.py"\nframeworks = ["sklearn"]\nrequirements = ["scikit-learn"]\n'
        '[[applications]]\nname = "clustering-demo"\nlaunch_module = "launch/records.py"\nframeworks = ["sklearn"]\nrequirements = ["scikit-learn"]\n'
        # By this date scikit-learn and scipy have wheels for all six platforms (win_arm64 included).
        '[tool.uv]\nexclude-newer = "2026-11-01T00:00:00Z"\n'
    )
    spec = make_stack(text, LAUNCH)
    status, out, err = _venvstacks("lock", str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 0, err
    assert "fully_versioned_name" in err  # the deprecation warning
    assert list(_packages(spec, "cpython@3.11")) == ["numpy"]
    framework = _packages(spec, "framework-sklearn")
    assert framework["numpy"]["marker"] == "sys_platform == 'from_lower_layer'"
    assert {"scikit-learn", "scipy", "joblib", "threadpoolctl"} <= set(framework)
    for app in ("app-classification-demo", "app-clustering-demo"):
        packages = _packages(spec, app)
        assert packages["scikit-learn"]["marker"] == "sys_platform == 'from_lower_layer'"
        assert packages["scikit-learn"]["version"] == framework["scikit-learn"]["version"]
        assert all(p.get("marker", "").endswith("from_lower_layer'") for p in packages.values())
    # numpy has wheels for all six platforms: nothing was filtered.
    assert len(_pylock(spec, "cpython@3.11")["packages"][0]["wheels"]) > 6


@pytest.mark.network
def test_runtime_from_uv_managed_downloads(
    tmp_path: Path, make_stack: StackFactory, pyz: Path, runtime_archives: dict[str, Path], runtime_versions: dict[str, str]
) -> None:
    # Without an archive folder the runtime comes from `uv python install`. No
    # download site is reachable here, so uv is pointed at a download list that
    # offers one of our archives (uv verifies its sha256 like a real download).
    from venvstacks.fsutil import file_sha256

    archive = runtime_archives["3.11"]
    major, minor, patch = runtime_versions["py311"].split(".")
    key = f"cpython-{runtime_versions['py311']}-linux-x86_64-gnu"
    listing = {key: {
        "name": "cpython", "arch": {"family": "x86_64", "variant": None}, "os": "linux", "libc": "gnu",
        "major": int(major), "minor": int(minor), "patch": int(patch), "prerelease": "",
        "url": archive.as_uri(), "sha256": file_sha256(archive), "variant": None, "build": "local",
    }}  # fmt: skip
    (tmp_path / "downloads.json").write_text(json.dumps(listing), encoding="utf-8")
    spec = make_stack(RUNTIME + 'requirements = ["six"]\n' + CLAMP)
    env = {"UV_PYTHON_DOWNLOADS_JSON_URL": str(tmp_path / "downloads.json"), "VENVSTACKS_PYTHON_ARCHIVE_DIR": ""}
    result = run([sys.executable, str(pyz), "lock", str(spec)], env=env)
    assert result.returncode == 0, result.stderr
    assert (spec.parent / "_build" / "rt" / "bin" / "python3").exists()
    assert _meta(spec, "rt")["runtime_archive"] == {"name": f"uv-managed {key}"}
    # Nothing went into the user's own folders.
    assert not (Path.home() / ".local" / "bin" / f"python{major}.{minor}").exists()


def test_runtime_download_failure_says_where_it_looked(tmp_path: Path, make_stack: StackFactory, pyz: Path, runtime_versions: dict[str, str]) -> None:
    spec = make_stack(RUNTIME + "requirements = []\n")
    env = {"UV_PYTHON_INSTALL_MIRROR": (tmp_path / "no-mirror").as_uri(), "VENVSTACKS_PYTHON_ARCHIVE_DIR": "", "UV_OFFLINE": "1"}
    result = run([sys.executable, str(pyz), "lock", str(spec)], env=env)
    assert result.returncode == 1
    assert f"downloading CPython {runtime_versions['py311']} with uv\n" in result.stderr
    assert without_progress(result.stderr).startswith(
        f"error: runtime 'rt': no cpython@{runtime_versions['py311']} runtime found: no runtime archive folder was given "
        "(--python-archive-dir or VENVSTACKS_PYTHON_ARCHIVE_DIR), and uv could not download it:\n"
    )


@pytest.mark.network
def test_ambient_uv_configuration_is_ignored(tmp_path: Path, locked: Path, pyz: Path, runtime_archive_dir: Path) -> None:
    # A user-level uv.toml and UV_* settings that would change the result (or break it).
    config_home = tmp_path / "config"
    (config_home / "uv").mkdir(parents=True)
    (config_home / "uv" / "uv.toml").write_text('exclude-newer = "2019-01-01T00:00:00Z"\nindex-url = "https://nowhere.invalid/simple"\n', encoding="utf-8")
    folder = tmp_path / "copy"
    shutil.copytree(locked.parent, folder, ignore=shutil.ignore_patterns("_build"))
    before = {p: p.read_bytes() for p in (folder / "requirements").rglob("*") if p.is_file()}
    env = {
        "VENVSTACKS_PYTHON_ARCHIVE_DIR": str(runtime_archive_dir), "XDG_CONFIG_HOME": str(config_home),
        "UV_INDEX_URL": "https://nowhere.invalid/simple", "UV_EXCLUDE_NEWER": "", "UV_NO_BUILD": "0",
    }  # fmt: skip
    result = run([sys.executable, str(pyz), "lock", str(folder / "venvstacks.toml")], env=env)
    assert result.returncode == 0, result.stderr
    assert {p: p.read_bytes() for p in (folder / "requirements").rglob("*") if p.is_file()} == before


def test_changed_runtime_archive_is_reported(tmp_path: Path, make_stack: StackFactory, pyz: Path, runtime_archives: dict[str, Path]) -> None:
    import gzip

    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    archive = runtime_archives["3.11"]
    shutil.copy(archive, first / archive.name)
    # The same runtime, compressed differently: other bytes, another sha256.
    (second / archive.name).write_bytes(gzip.compress(gzip.decompress(archive.read_bytes()), compresslevel=1, mtime=0))
    spec = make_stack(RUNTIME + "requirements = []\n" + CLAMP)
    for folder in (first, second):
        result = run([sys.executable, str(pyz), "lock", "--python-archive-dir", str(folder), str(spec)])
        assert result.returncode == 0, result.stderr
        if folder is first:
            assert without_progress(result.stderr) == ""
            assert "locking layer 'rt'\n" in result.stderr  # progress, as plain lines when not on a terminal
            first_sha = _meta(spec, "rt")["runtime_archive"]["sha256"]
    assert "warning: runtime 'rt': the runtime archive changed: it was " in result.stderr
    second_sha = _meta(spec, "rt")["runtime_archive"]["sha256"]
    assert first_sha != second_sha and second_sha in result.stderr
    assert _meta(spec, "rt")["lock_version"] == 1


@pytest.mark.network
def test_package_pinned_to_a_named_index(tmp_path: Path, make_stack: StackFactory, pyz: Path, runtime_archive_dir: Path) -> None:
    wheels = tmp_path / "wheels"
    downloaded = run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", str(wheels), "six==1.16.0"])
    assert downloaded.returncode == 0, downloaded.stderr
    text = (
        RUNTIME + 'requirements = ["six", "idna"]\npackage_indexes = { six = "local" }\n' + CLAMP
        + f'[[tool.uv.index]]\nname = "local"\nurl = "{wheels.as_posix()}"\nformat = "flat"\nexplicit = true\n'
    )
    spec = make_stack(text)
    status, _, err = _venvstacks("lock", str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 0, err
    packages = _packages(spec, "rt")
    # six comes only from the pinned index (which holds 1.16.0); idna still from PyPI
    assert packages["six"]["version"] == "1.16.0"
    assert packages["six"]["wheels"][0]["path"].endswith("six-1.16.0-py2.py3-none-any.whl")
    assert packages["idna"]["index"].startswith("https://") and "wheels" in packages["idna"]


def _files(folder: Path) -> dict[Path, tuple[bytes, int]]:
    """Every file under `folder` (hidden ones too): its bytes and modification time."""
    return {p.relative_to(folder): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.network
def test_failed_relock_keeps_every_lock(tmp_path: Path, locked: Path, pyz: Path, runtime_archive_dir: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(locked.parent, folder, ignore=shutil.ignore_patterns("_build"))
    spec = folder / "venvstacks.toml"
    before = _files(folder / "requirements")
    # No network: uv may not go online, and its cache is empty.
    env = {"VENVSTACKS_PYTHON_ARCHIVE_DIR": str(runtime_archive_dir), "UV_OFFLINE": "1", "UV_CACHE_DIR": str(tmp_path / "empty-cache")}
    result = run([sys.executable, str(pyz), "lock", "--reset-lock", "*", str(spec)], env=env)
    assert result.returncode == 1 and result.stdout == ""
    assert without_progress(result.stderr).startswith("error: failed to lock layer 'cpython-3.1")
    assert "Traceback" not in result.stderr
    assert _files(folder / "requirements") == before
    # and the old locks still build
    result = run([sys.executable, str(pyz), "build", str(spec)], env={"VENVSTACKS_PYTHON_ARCHIVE_DIR": str(runtime_archive_dir)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("[built]") == len(LAYERS)


@pytest.mark.network
def test_a_layer_failing_late_keeps_the_locks_of_those_that_locked(tmp_path: Path, locked: Path, pyz: Path, runtime_archive_dir: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(locked.parent, folder, ignore=shutil.ignore_patterns("_build"))
    spec = folder / "venvstacks.toml"
    # framework-web would lock to new content; then app-dates, two waves later, fails.
    _add_to_framework_web(spec, "charset-normalizer")
    failing = tmp_path / "uv"
    failing.write_text(
        f'#!/bin/sh\ncase "$*" in\n  "lock "*app-dates_resolve*) echo "error: no route to the index" >&2; exit 2 ;;\nesac\nexec {find_uv()} "$@"\n',
        encoding="utf-8",
    )
    failing.chmod(0o755)
    before = _files(folder / "requirements")
    status, out, err = _venvstacks("lock", str(spec), pyz=pyz, archive_dir=runtime_archive_dir, uv=failing)
    assert (status, out) == (1, "")
    assert without_progress(err).startswith("error: failed to lock layer 'app-dates':\n")
    assert "no route to the index" in err
    assert _files(folder / "requirements") == before
    assert not list((folder / "requirements").rglob("*.partial"))


@pytest.mark.network
def test_upper_layers_lock_against_the_new_locks_underneath(tmp_path: Path, locked: Path, pyz: Path, runtime_archive_dir: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(locked.parent, folder, ignore=shutil.ignore_patterns("_build"))
    spec = folder / "venvstacks.toml"
    spec.write_text(spec.read_text(encoding="utf-8").replace('requirements = ["idna", "certifi"]', 'requirements = ["idna==3.7", "certifi"]'), encoding="utf-8")
    status, out, err = _venvstacks("lock", str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 0, err
    assert _packages(spec, "framework-web")["idna"]["version"] == "3.7"
    # app-dates needs idna too: it takes the version framework-web has now, from below
    assert _packages(spec, "app-dates")["idna"] == {"name": "idna", "version": "3.7", "marker": "sys_platform == 'from_lower_layer'"}


def test_failed_runtime_download_shows_why_and_writes_no_lock(make_stack: StackFactory, pyz: Path, runtime_versions: dict[str, str]) -> None:
    # No --python-archive-dir: uv must download the runtime, and nothing beyond the
    # package registries is reachable here.
    spec = make_stack(RUNTIME + 'requirements = ["six"]\n' + CLAMP)
    result = run([sys.executable, str(pyz), "lock", str(spec)], env={"VENVSTACKS_PYTHON_ARCHIVE_DIR": ""})
    assert result.returncode == 1 and result.stdout == ""
    err = without_progress(result.stderr)
    assert err.startswith(f"error: runtime 'rt': no cpython@{runtime_versions['py311']} runtime found: ")
    # uv's own reason, not only that it failed
    assert f"error:   error: Failed to install cpython-{runtime_versions['py311']}-" in err
    assert "error:     cause: " in err
    assert "Traceback" not in result.stderr
    assert not (spec.parent / "requirements").exists()


@pytest.mark.network
def test_interrupted_relock_keeps_every_lock(tmp_path: Path, locked: Path, pyz: Path, runtime_archive_dir: Path) -> None:
    import signal
    import subprocess
    import time

    folder = tmp_path / "copy"
    shutil.copytree(locked.parent, folder, ignore=shutil.ignore_patterns("_build"))
    spec = folder / "venvstacks.toml"
    _add_to_framework_web(spec, "charset-normalizer")
    flag = tmp_path / "locking-app-dates"
    slow = tmp_path / "uv"  # stops at app-dates, when the framework layers have new locks in hand
    slow.write_text(f'#!/bin/sh\ncase "$*" in\n  "lock "*app-dates_resolve*) touch {flag}; exec sleep 120 ;;\nesac\nexec {find_uv()} "$@"\n', encoding="utf-8")
    slow.chmod(0o755)
    before = _files(folder / "requirements")
    env = {**os.environ, "VENVSTACKS_PYTHON_ARCHIVE_DIR": str(runtime_archive_dir), "VENVSTACKS_UV": str(slow)}
    env.pop("PYTHONPATH", None)
    process = subprocess.Popen([sys.executable, str(pyz), "lock", str(spec)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not flag.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert flag.exists(), process.communicate(timeout=5) if process.poll() is not None else "never reached app-dates"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "error: interrupted" in stderr and "Traceback" not in stderr
    assert _files(folder / "requirements") == before
