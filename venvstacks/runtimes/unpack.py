"""Putting a runtime layer's CPython into the build folder.

The interpreter comes from a folder of python-build-standalone archives when
one is given (`--python-archive-dir` or `VENVSTACKS_PYTHON_ARCHIVE_DIR`), and
otherwise from uv's managed Python downloads, installed into the build folder.
An archive is unpacked once, and the runtime made of hard links to that copy
(`unpacked.py`), so a clean build does not unpack it again.
A small record next to the unpacked runtime says which archive it came from,
so a different archive later is noticed, and so a half-finished unpack is
never taken for a complete one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import RuntimeSourceError, UvError
from ..fsutil import dump_json, remove_path, write_text_atomic
from ..progress import progress
from ..runtimes.pbs import find_runtime_archive
from ..runtimes.unpacked import link_runtime
from ..spec.model import RuntimeSpec
from ..uv import Uv, python_install_argv

__all__ = ["ARCHIVE_DIR_VARIABLE", "RuntimeInstall", "ensure_runtime", "runtime_python"]

ARCHIVE_DIR_VARIABLE = "VENVSTACKS_PYTHON_ARCHIVE_DIR"
_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class RuntimeInstall:
    """An unpacked runtime in the build folder and where it came from."""

    path: Path
    archive_name: str
    archive_sha256: str | None
    """None when uv installed it (uv checks the download itself)."""
    fresh: bool = field(default=False, compare=False)
    """True when this call unpacked it, so nothing has been installed into it yet."""

    @property
    def python(self) -> Path:
        """The runtime's interpreter."""
        return runtime_python(self.path)


def runtime_python(path: Path) -> Path:
    """The interpreter inside an unpacked runtime."""
    return path / "python.exe" if sys.platform == "win32" else path / "bin" / "python3"


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".runtime.json")


def _read_record(path: Path) -> dict[str, str] | None:
    try:
        data = json.loads(_record_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and runtime_python(path).exists() else None


def _write_record(install: RuntimeInstall, implementation: str) -> None:
    data = {"archive": install.archive_name, "sha256": install.archive_sha256, "python_implementation": implementation}
    write_text_atomic(_record_path(install.path), dump_json(data))


def _remove(path: Path) -> None:
    _record_path(path).unlink(missing_ok=True)
    remove_path(path)


def ensure_runtime(
    layer: RuntimeSpec,
    build_dir: Path,
    *,
    archive_dir: Path | None,
    uv: Uv | None = None,
    clean: bool = False,
) -> RuntimeInstall:
    """The runtime of `layer`, unpacked into `<build dir>/<build name>` if it is not there yet."""
    destination = build_dir / layer.build_name
    if clean:
        _remove(destination)
    record = _read_record(destination)
    if record is not None and record.get("python_implementation") != str(layer.python_implementation):
        record = None  # another version was asked for: the runtime is replaced
    if archive_dir is not None:
        archive = find_runtime_archive(archive_dir, layer.python_implementation)
        if record is not None:
            if record.get("sha256") == archive.sha256:
                return RuntimeInstall(destination, archive.name.filename, archive.sha256)
            _LOG.warning(
                "runtime %r: the runtime archive changed: it was %s (sha256 %s), it is now %s (sha256 %s); unpacking the new one",
                layer.name, record.get("archive"), record.get("sha256"), archive.name.filename, archive.sha256,
            )  # fmt: skip
        _remove(destination)
        link_runtime(archive, build_dir, layer.build_name, destination)
        install = RuntimeInstall(destination, archive.name.filename, archive.sha256, fresh=True)
    else:
        if record is not None:
            return RuntimeInstall(destination, str(record.get("archive")), record.get("sha256"))
        install = _install_with_uv(layer, build_dir, destination, uv)
    if not install.python.exists():
        _remove(destination)
        msg = f"runtime {layer.name!r}: {install.archive_name} holds no interpreter at {install.python.relative_to(destination)}"
        raise RuntimeSourceError(msg)
    _write_record(install, str(layer.python_implementation))
    return install


def _install_with_uv(layer: RuntimeSpec, build_dir: Path, destination: Path, uv: Uv | None) -> RuntimeInstall:
    implementation = layer.python_implementation
    looked = (
        f"no runtime archive folder was given (--python-archive-dir or {ARCHIVE_DIR_VARIABLE})"
    )
    if implementation.implementation != "cpython":
        msg = f"runtime {layer.name!r}: no {implementation} runtime found: {looked}, and only CPython can be downloaded"
        raise RuntimeSourceError(msg)
    if uv is None:
        msg = f"runtime {layer.name!r}: no {implementation} runtime found: {looked}, and uv is not available to download one"
        raise RuntimeSourceError(msg)
    downloads = build_dir / "_python-downloads"
    config = build_dir / "uv.toml"
    if not config.exists():
        write_text_atomic(config, "")
    argv = python_install_argv(uv.command, version=implementation.version, install_dir=downloads, config_file=config)
    progress(_LOG, "downloading CPython %s with uv", implementation.version)
    try:
        uv.run(argv, description=f"downloading CPython {implementation.version} with uv")
    except UvError as exc:
        msg = f"runtime {layer.name!r}: no {implementation} runtime found: {looked}, and uv could not download it:\n{exc}"
        raise RuntimeSourceError(msg) from exc
    installed = sorted(downloads.glob(f"cpython-{implementation.version}-*"))
    installed = [path for path in installed if runtime_python(path).exists()]
    if not installed:
        msg = f"runtime {layer.name!r}: uv reported success but installed no CPython {implementation.version} in {downloads}"
        raise RuntimeSourceError(msg)
    partial = destination.with_name(destination.name + ".partial")
    _remove(partial)
    shutil.copytree(installed[0], partial, symlinks=True)
    _remove(destination)  # a runtime of another Python version, which os.replace cannot replace
    os.replace(partial, destination)
    return RuntimeInstall(destination, f"uv-managed {installed[0].name}", None, fresh=True)
