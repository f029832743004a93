"""The manifest shipped inside each layer: every entry it holds, and what `postinstall.py` writes on the target.

`share/venv/metadata/venvstacks_manifest.json` is written into each archive
and each local export, and its sha256 goes into the layer's published
metadata (`manifest_hashes`), so one signed metadata file vouches for every
file of every layer. `postinstall.py --verify` and `venvstacks verify` check a
deployment against it (`postinstall.verify_layer`).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import stat
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..postinstall import (
    MANIFEST,
    ManifestDocument,
    ManifestEntry,
    LayerConfig,
    MANIFEST_FORMAT,
    console_script_files,
    file_sha256,
    relocated_digest,
    relocation_for,
    render_sitecustomize,
)

__all__ = ["ManifestDocument", "ManifestEntry", "render_manifest", "scan_tree", "written_on_target", "MANIFEST"]


def _file_entry(data: bytes, mode: int) -> ManifestEntry:
    return ["file", mode, len(data), hashlib.sha256(data).hexdigest()]


def written_on_target(config: LayerConfig, entries: Mapping[str, ManifestEntry], read: Callable[[str], bytes]) -> dict[str, ManifestEntry]:
    """What postinstall.py writes into a layer with this config (see `ManifestDocument.written_on_target`).

    `read` gives the shipped content of a layer file, for a runtime's
    relocated files.
    """
    written: dict[str, ManifestEntry] = {}
    root = "/layer"
    resolved = config.copy()
    resolved["python"] = posixpath.join(root, config["python"])
    for path, text in console_script_files(root, resolved).items():
        written[posixpath.relpath(path, root)] = _file_entry(text.encode("utf-8"), 0o755)
    if config["python"] == config["base_python"]:
        for rel in sorted(entries):
            if relocation_for(rel) is not None and entries[rel][0] == "file":
                written[rel] = ["relinked", relocated_digest(rel, read(rel))]
        for rel in sorted(entries):
            if _source_of(rel) in written:
                written[rel] = ["recompiled"]  # shipped bytecode (--precompile) of a relocated source
        return written
    written["pyvenv.cfg"] = ["relinked"]
    site = str(config["site_dir"])
    pylib = config["pylib_dirs"]
    assert isinstance(pylib, list)
    sitecustomize = render_sitecustomize([posixpath.relpath(posixpath.join(root, p), posixpath.join(root, site)) for p in pylib])
    if sitecustomize is not None:
        written[f"{site}/sitecustomize.py"] = _file_entry(sitecustomize.encode("utf-8"), 0o644)
    return written


def _source_of(rel: str) -> str | None:
    """The source of a `__pycache__/<module>.<tag>.pyc` path, or None for any other path."""
    folder, _, name = rel.rpartition("/")
    parent, _, cache = folder.rpartition("/")
    if cache != "__pycache__" or not name.endswith(".pyc"):
        return None
    return f"{parent}/{name.split('.')[0]}.py" if parent else f"{name.split('.')[0]}.py"


def render_manifest(layer: str, entries: Mapping[str, ManifestEntry], written: Mapping[str, ManifestEntry]) -> bytes:
    """The manifest's bytes: compact JSON with sorted keys, one line."""
    document: ManifestDocument = {
        "format": MANIFEST_FORMAT,
        "layer": layer,
        "entries": {rel: entries[rel] for rel in sorted(entries) if rel != MANIFEST},
        "written_on_target": dict(sorted(written.items())),
    }
    return (json.dumps(document, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")


def scan_tree(folder: Path, jobs: int | None = None) -> dict[str, ManifestEntry]:
    """The manifest entries of every entry below `folder` as it is (links not followed), files hashed in `jobs` threads."""
    entries: dict[str, ManifestEntry] = {}
    files: list[tuple[str, str, int]] = []
    for root, dirs, names in os.walk(folder):
        for name in dirs + names:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, folder).replace(os.sep, "/")
            info = os.lstat(path)
            if stat.S_ISLNK(info.st_mode):
                entries[rel] = ["link", os.readlink(path)]
            elif stat.S_ISDIR(info.st_mode):
                entries[rel] = ["folder", stat.S_IMODE(info.st_mode)]
            else:
                files.append((rel, path, stat.S_IMODE(info.st_mode)))
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        digests = pool.map(file_sha256, [path for _rel, path, _mode in files])
        for (rel, path, mode), digest in zip(files, digests):
            entries[rel] = ["file", mode, os.lstat(path).st_size, digest]
    return entries
