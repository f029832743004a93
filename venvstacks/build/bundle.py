"""Bundles: everything building a locked stack needs, in one folder, for air-gapped hosts.

`fetch_bundle` (run where the network is) puts every wheel named in the
layers' locks for the chosen platforms, and the runtime archives, into a
bundle folder with a manifest of sizes and sha256 digests. A build from the
bundle installs each layer from a copy of its lock that points at the
bundle's files, so nothing is downloaded.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypedDict

from ..errors import BundleError
from ..folderlock import exclusive
from ..fsutil import dump_json, file_sha256, write_text_atomic
from ..lock.files import LockPaths, is_shared, tables, text_field, wheel_filename
from ..lock.state import read_pylock
from ..runtimes.pbs import find_runtime_archive
from ..platforms import TargetPlatform
from ..progress import progress
from ..spec.model import LayerSpec, RuntimeSpec, StackSpec
from ..standards.tomlwriter import dumps
from ..standards.wheels import parse_wheel_filename, platform_supported

__all__ = ["BundleError", "WheelNeed", "wheels_needed", "fetch_bundle", "bundle_pylock", "bundle_runtimes", "MANIFEST"]

_LOG = logging.getLogger(__name__)
MANIFEST = "venvstacks-bundle.json"
WHEELS = "wheels"
RUNTIMES = "runtimes"
_CHUNK = 1 << 20
TRIPLES = {
    TargetPlatform.LINUX_X86_64: "x86_64-unknown-linux-gnu",
    TargetPlatform.LINUX_AARCH64: "aarch64-unknown-linux-gnu",
    TargetPlatform.MACOSX_ARM64: "aarch64-apple-darwin",
    TargetPlatform.MACOSX_X86_64: "x86_64-apple-darwin",
    TargetPlatform.WIN_AMD64: "x86_64-pc-windows-msvc",
    TargetPlatform.WIN_ARM64: "aarch64-pc-windows-msvc",
}
"""The python-build-standalone target triple of each platform."""


@dataclass(frozen=True)
class WheelNeed:
    """One wheel a layer installs on one of the chosen platforms."""

    layer: str
    filename: str
    sha256: str
    url: str | None
    local: Path | None
    """For wheels locked from a local folder: the file, resolved from the lock folder."""


class BundleFile(TypedDict):
    size: int
    sha256: str


class BundleManifest(TypedDict):
    """The bundle's manifest: every file `fetch` stored, by path inside the bundle."""

    files: dict[str, BundleFile]


def _compatible(filename: str, platform: TargetPlatform, python: tuple[int, int], layer: LayerSpec) -> bool:
    wheel = parse_wheel_filename(filename)
    major, minor = python
    pythons = {"py3", f"py{major}", f"py{major}{minor}", f"cp{major}{minor}", "py2.py3"}
    for py, abi, plat in wheel.tags:
        if py not in pythons and not (abi == "abi3" and py.startswith("cp3") and int(py[3:] or 0) <= minor):
            continue
        if platform_supported([plat], platform, linux_glibc=layer.linux_target.version, macos=layer.macosx_target.version):
            return True
    return False


def wheels_needed(spec: StackSpec, layers: Iterable[LayerSpec], platforms: Sequence[TargetPlatform]) -> list[WheelNeed]:
    """Every wheel the layers' locks install on any of `platforms`, in a stable order."""
    needs: dict[str, WheelNeed] = {}
    for layer in layers:
        runtime = spec.runtime_of(layer)
        major, minor = runtime.python_implementation.short_version.split(".")[:2]
        python = (int(major), int(minor))
        paths = LockPaths.for_layer(spec, layer)
        pylock = read_pylock(paths) or {}
        for package in tables(pylock.get("packages")):
            if is_shared(package):
                continue
            for wheel in tables(package.get("wheels")):
                filename = wheel_filename(wheel)
                if not any(_compatible(filename, p, python, layer) for p in platforms if p in layer.platforms):
                    continue
                path, hashes = text_field(wheel, "path"), wheel.get("hashes")
                local = (paths.folder / path).resolve() if path else None
                sha256 = str(hashes.get("sha256", "")) if isinstance(hashes, Mapping) else ""
                needs.setdefault(filename, WheelNeed(layer.build_name, filename, sha256, text_field(wheel, "url"), local))
    return [needs[name] for name in sorted(needs)]


def _digest(path: Path) -> tuple[int, str]:
    return path.stat().st_size, file_sha256(path)


def _download(url: str, stream: IO[bytes]) -> None:
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (https URLs from the lock)
        shutil.copyfileobj(response, stream, _CHUNK)


def _copy_from(source: Path, stream: IO[bytes]) -> None:
    with source.open("rb") as data:
        shutil.copyfileobj(data, stream, _CHUNK)


def _store(target: Path, sha256: str, fill: Callable[[IO[bytes]], None], what: str) -> None:
    """Fill `target` via a temporary file; it only gets its name if its digest matches."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as stream:
            fill(stream)
        _, actual = _digest(Path(temporary))
        if sha256 and actual != sha256:
            msg = f"{what}: sha256 {actual} does not match the lock's {sha256}"
            raise BundleError(msg)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def fetch_bundle(
    spec: StackSpec,
    layers: Sequence[LayerSpec],
    bundle: Path,
    platforms: Sequence[TargetPlatform],
    *,
    archive_dir: Path | None,
    download: Callable[[str, IO[bytes]], None] = _download,
) -> dict[str, int]:
    """Fill `bundle` with the wheels and runtime archives the layers need; returns counts.

    The bundle folder is held meanwhile (a second fetch into it is refused),
    and downloads an interrupted fetch left half-done are removed first.
    """
    with exclusive(bundle, command="fetch", nested=(WHEELS, RUNTIMES)):
        return _fill_bundle(spec, layers, bundle, platforms, archive_dir=archive_dir, download=download)


def _fill_bundle(
    spec: StackSpec,
    layers: Sequence[LayerSpec],
    bundle: Path,
    platforms: Sequence[TargetPlatform],
    *,
    archive_dir: Path | None,
    download: Callable[[str, IO[bytes]], None],
) -> dict[str, int]:
    counts = {"fetched": 0, "present": 0}
    manifest: dict[str, BundleFile] = {}
    runtimes = [layer for layer in layers if isinstance(layer, RuntimeSpec)]
    if runtimes and archive_dir is None:
        msg = "fetch needs the runtime archives: pass --python-archive-dir (or set VENVSTACKS_PYTHON_ARCHIVE_DIR)"
        raise BundleError(msg)
    for need in wheels_needed(spec, layers, platforms):
        target = bundle / WHEELS / need.filename
        if target.exists() and _digest(target)[1] == need.sha256:
            counts["present"] += 1
        else:
            if need.local is not None:
                source = need.local
                if not source.is_file():
                    msg = f"layer {need.layer!r}: the lock names the local wheel {source}, which does not exist"
                    raise BundleError(msg)
                _store(target, need.sha256, lambda out: _copy_from(source, out), need.filename)
            elif need.url:
                url = need.url
                progress(_LOG, "downloading %s", need.filename)
                _store(target, need.sha256, lambda out: download(url, out), need.filename)
            else:
                raise BundleError(f"layer {need.layer!r}: the lock names {need.filename} with no URL or path")
            counts["fetched"] += 1
        size, sha256 = _digest(target)
        manifest[f"{WHEELS}/{need.filename}"] = {"size": size, "sha256": sha256}
    for runtime, platform in [(r, p) for r in runtimes for p in platforms if p in r.platforms]:
        assert archive_dir is not None
        archive = find_runtime_archive(archive_dir, runtime.python_implementation, triple=TRIPLES[platform])
        target = bundle / RUNTIMES / archive.path.name
        if target.exists() and _digest(target)[1] == archive.sha256:
            counts["present"] += 1
        else:
            _store(target, archive.sha256, functools.partial(_copy_from, archive.path), archive.path.name)
            counts["fetched"] += 1
        manifest[f"{RUNTIMES}/{archive.path.name}"] = {"size": archive.path.stat().st_size, "sha256": archive.sha256}
    document: BundleManifest = {"files": manifest}
    write_text_atomic(bundle / MANIFEST, dump_json(document))
    return counts


def bundle_runtimes(bundle: Path) -> Path:
    """The bundle's folder of runtime archives (what `--python-archive-dir` would name)."""
    if not (bundle / MANIFEST).exists():
        msg = f"{bundle} is not a venvstacks bundle (no {MANIFEST}); create it with 'venvstacks fetch'"
        raise BundleError(msg)
    return bundle / RUNTIMES


def bundle_pylock(spec: StackSpec, layer: LayerSpec, bundle: Path, destination: Path, platform: TargetPlatform) -> Path:
    """A copy of a layer's lock whose wheels for `platform` point at the bundle's files.

    Wheels for other platforms are left out of the copy; a needed wheel the
    bundle lacks is an error naming every missing file.
    """
    paths = LockPaths.for_layer(spec, layer)
    pylock = read_pylock(paths) or {}
    needed = {need.filename for need in wheels_needed(spec, [layer], [platform])}
    missing: list[str] = []
    for package in tables(pylock.get("packages")):
        if is_shared(package) or "wheels" not in package:
            continue
        kept = []
        for wheel in tables(package["wheels"]):
            filename = wheel_filename(wheel)
            if filename not in needed:
                continue
            stored = bundle / WHEELS / filename
            if not stored.exists():
                missing.append(filename)
            kept.append({"name": filename, "path": os.path.relpath(stored, destination.parent), "hashes": wheel.get("hashes", {})})
        package["wheels"] = kept
        package.pop("index", None)
    if missing:
        msg = f"layer {layer.build_name!r}: the bundle {bundle} is missing " + ", ".join(missing) + (
            "; run 'venvstacks fetch' for this platform where the network is available"
        )
        raise BundleError(msg)
    write_text_atomic(destination, dumps(pylock, inline_arrays=frozenset({"packages.wheels"})))
    return destination
