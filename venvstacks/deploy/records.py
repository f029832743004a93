"""The records `venvstacks deploy` keeps in a deployment, shared by deploying and verifying.

`.venvstacks-deployed/<install target>.json` records a deployed layer: its
metadata entry, where it was deployed, and every entry of the layer
(`deployer._entries`). `journal` names the layers being swapped into place.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Required

from ..postinstall import entry_kind as kind_of
from ..postinstall import relocation_for
from ..publish.metadata import LayerMetadata

__all__ = [
    "CATEGORIES", "DeployRecord", "RecordEntry", "SHA256", "RECORD_DIR", "JOURNAL", "RECORD_TEMPORARY", "REGENERATED", "RELOCATED_BYTECODE",
    "kind_of", "matches", "plain_name", "read_record", "records_folder_problem", "regenerated", "scan",
]  # fmt: skip


CATEGORIES = ("runtimes", "frameworks", "applications")
"""The kinds of layer in a stack manifest, lowest first."""
SHA256 = re.compile(r"[0-9a-f]{64}")

RECORD_DIR = ".venvstacks-deployed"
"""The folder of the target holding one `<install target>.json` record per deployed layer."""

RecordEntry = list[str | int]
"""One entry of a deployed layer: `[kind, mode, size, sha256]` for a file, `[kind, mode]` for a folder
or special file, `[kind, target]` for a link."""


class DeployRecord(LayerMetadata, total=False):
    """`<install target>.json`: the layer's entry in the stack metadata, and what deploy adds to it."""

    category: Required[str]
    """`runtimes`, `frameworks` or `applications`."""
    archive_sha256: Required[str]
    location: Required[str]
    """The deployment folder, where the layer was relinked."""
    entries: Required[dict[str, RecordEntry]]
    """Every entry of the relinked layer, by `/`-separated relative path (`.` for the layer's folder)."""


JOURNAL = "journal"
"""The file of the records folder naming the layers being swapped into place (see `_Swap`);
while it exists, the deployment is unfinished and the next one undoes it."""

RECORD_TEMPORARY = re.compile(r"\..+\.partial")
"""A record being written (`fsutil.write_atomic`)."""

# Files the post-install step writes or rewrites (with `__pycache__`, `*.pyc` and
# `sitecustomize.py` anywhere, and a runtime's files `postinstall.relocation_for` names):
# their digests are taken once it has run.
REGENERATED = ("pyvenv.cfg", "bin/python", "bin/python_")

RELOCATED_BYTECODE = "lib/python*/__pycache__/_sysconfigdata_*.pyc"


def plain_name(value: object) -> bool:
    """Whether `value` can name a folder or file directly inside the target (and is not hidden)."""
    return isinstance(value, str) and bool(value) and not value.startswith(".") and not any(c in value for c in "/\\\0")


def read_record(path: Path) -> Mapping[str, object] | None:
    """A deployment record as read, not yet checked (None if it cannot be read as a JSON object)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def matches(rel: str, pattern: str) -> bool:
    """Whether the `/`-separated path matches the wildcard `pattern` component by component."""
    parts, pieces = rel.split("/"), pattern.split("/")
    return len(parts) == len(pieces) and all(map(fnmatch.fnmatchcase, parts, pieces))


def regenerated(rel: str, runtime: bool) -> bool:
    """Whether the post-install step (relinking or compiling) may write this layer file."""
    parts = rel.split("/")
    if "__pycache__" in parts or parts[-1] == "sitecustomize.py" or parts[-1].endswith(".pyc"):
        return True
    return any(matches(rel, pattern) for pattern in REGENERATED) or (runtime and relocation_for(rel) is not None)


def scan(folder: Path) -> dict[str, os.stat_result]:
    """`folder` (as `.`) and every entry below it (links not followed) by `/`-separated relative path, with its `lstat`."""
    found = {".": os.lstat(folder)}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            found[os.path.relpath(path, folder).replace(os.sep, "/")] = os.lstat(path)
    return found


def records_folder_problem(target: Path) -> str | None:
    """Why deploy must not keep its records in the target's records folder (a link, not a folder), or None."""
    records = target / RECORD_DIR
    if records.is_symlink():
        return f"{records} is a symbolic link, not the folder deploy keeps its records in: refusing to use it (remove it)"
    if os.path.lexists(records) and not records.is_dir():
        return f"{records} is not the folder deploy keeps its records in: refusing to use it (remove it)"
    return None
