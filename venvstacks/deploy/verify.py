"""Checking a deployment: `verify` against deploy's records, or against the manifest each layer ships."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from ..errors import DeployError
from ..fsutil import file_sha256, is_within
from ..postinstall import (
    BYTECODE_RECORD,
    LOCAL_DIR,
    MANIFEST,
    PostinstallError,
    bytecode_problem,
    layered_environment_files,
    read_layer_config,
    relocation_for,
    render_bytecode_record,
    verify_layer,
)
from .records import (
    CATEGORIES,
    JOURNAL,
    DeployRecord,
    RecordEntry,
    RECORD_DIR,
    RELOCATED_BYTECODE,
    SHA256,
    kind_of,
    matches,
    plain_name,
    read_record,
    records_folder_problem,
    scan,
)

__all__ = ["verify"]

_RISKY_BITS = ((stat.S_ISUID, "setuid"), (stat.S_ISGID, "setgid"), (stat.S_IWOTH, "world-writable"))


def _mode_problem(mode: int, recorded: int) -> str | None:
    if mode == recorded:
        return None
    risky = ", ".join(word for bit, word in _RISKY_BITS if mode & bit and not recorded & bit)
    return f"mode {mode:04o}{f' ({risky})' if risky else ''}, {recorded:04o} when deployed"


@dataclass(frozen=True)
class _Moved:
    """A layer whose deployment folder moved since it was recorded: its files that name their location
    are checked against what relinking writes where it is now."""

    old: str
    """The layer's folder when deployed."""
    new: str
    runtime: bool
    rendered: Mapping[str, str] | str
    """What relinking a layered environment writes here, by relative path (or why that cannot be known)."""


def _moved(record: DeployRecord, name: str, layer_dir: Path) -> _Moved | None:
    location, runtime = record["location"], record["category"] == "runtimes"
    with contextlib.suppress(OSError):
        if os.path.samefile(location, layer_dir.parent):
            return None
    rendered: Mapping[str, str] | str = {}
    if not runtime:
        try:
            files = layered_environment_files(layer_dir, read_layer_config(layer_dir))
            rendered = {os.path.relpath(path, layer_dir).replace(os.sep, "/"): text for path, text in files.items()}
        except (PostinstallError, OSError, ValueError) as exc:
            rendered = str(exc)
    return _Moved(os.path.join(location, name), str(layer_dir), runtime, rendered)


def _names_location(rel: str, moved: _Moved) -> bool:
    """Whether relinking writes this file of a moved layer otherwise where the layer is now."""
    if rel == BYTECODE_RECORD:
        return True  # relinking a runtime recompiles its relocated sources
    if not moved.runtime:
        return rel in moved.rendered if isinstance(moved.rendered, Mapping) else rel == "pyvenv.cfg"
    return matches(rel, RELOCATED_BYTECODE) or relocation_for(rel) is not None


def _relocated_problem(path: Path, rel: str, sha256: str, moved: _Moved) -> str | None:
    """What is wrong with a file of a moved layer that names its location (see `_names_location`), or None."""
    if rel == BYTECODE_RECORD:
        ok = path.read_text(encoding="utf-8", errors="replace") == render_bytecode_record(moved.new)
        return None if ok else "modified (not the digests of the layer's bytecode)"
    if isinstance(moved.rendered, str):
        return f"cannot work out what relinking writes here: {moved.rendered}"
    if not moved.runtime:
        ok = path.read_bytes() == moved.rendered[rel].encode("utf-8")
        return None if ok else "modified (not what relinking writes where the layer is now)"
    if matches(rel, RELOCATED_BYTECODE):
        return bytecode_problem(str(path))
    relocate = relocation_for(rel)
    assert relocate is not None  # `_names_location` chose this file
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    try:
        back, here = relocate(text, moved.old), relocate(text, moved.new)
    except (SyntaxError, ValueError) as exc:
        return f"modified (cannot be read: {exc})"
    if hashlib.sha256(back.encode("utf-8", "surrogateescape")).hexdigest() != sha256:
        return "modified (sha256 differs, even relinked back to where it was deployed)"
    return None if here == text else "not relinked where the layer is now (run its postinstall.py)"


def _content_problem(path: Path, rel: str, size: int, recorded: RecordEntry, moved: _Moved | None) -> str | None:
    if moved is not None and _names_location(rel, moved):
        return _relocated_problem(path, rel, str(recorded[3]), moved)
    if size != recorded[2]:
        return f"modified ({size} bytes, {recorded[2]} when deployed)"
    return "modified (sha256 differs)" if file_sha256(path) != recorded[3] else None


def _entry_problems(path: Path, rel: str, recorded: RecordEntry | None, info: os.stat_result | None, moved: _Moved | None) -> Iterator[str]:
    """What changed in one entry of a layer since it was deployed."""
    if info is None:
        yield "missing"
        return
    kind = kind_of(info)
    if recorded is None:
        yield f"added after deployment (a {kind})"
    elif kind != recorded[0]:
        yield f"a {kind} now, a {recorded[0]} when deployed"
    elif kind == "link":
        if (link := os.readlink(path)) != recorded[1]:
            yield f"link to {link!r}, to {recorded[1]!r} when deployed"
    else:
        if problem := _mode_problem(stat.S_IMODE(info.st_mode), int(recorded[1])):
            yield problem
        if kind == "file" and (problem := _content_problem(path, rel, info.st_size, recorded, moved)):
            yield problem


def _link_problem(path: Path, root: str) -> str | None:
    link = os.readlink(path)
    if not path.exists():
        return f"broken link to {link!r}"
    real = os.path.realpath(path)
    return None if real != root and is_within(real, root) else f"link to {link!r} leads outside the deployment folder"


def _layer_problems(name: str, layer_dir: Path, record: DeployRecord, root: str) -> Iterator[str]:
    """Entries added, missing or changed since the layer was deployed, and links that are broken or lead out of the target."""
    recorded = record["entries"]
    found, moved = scan(layer_dir), _moved(record, name, layer_dir)
    for rel in sorted(recorded.keys() | found.keys()):
        if rel == LOCAL_DIR or rel.startswith(LOCAL_DIR + "/"):
            continue  # the post-install hook's own files
        path, info = layer_dir / rel, found.get(rel)
        try:
            problems = list(_entry_problems(path, rel, recorded.get(rel), info, moved))
            if info is not None and stat.S_ISLNK(info.st_mode) and (problem := _link_problem(path, root)):
                problems.append(problem)
        except OSError as exc:
            problems = [f"cannot be read: {exc.strerror or exc}"]
        where = name if rel == "." else f"{name}/{rel}"
        yield from (f"{where}: {problem}" for problem in problems)


def _entry_ok(entry: object) -> bool:
    """Whether a record's entry has the shape `_entries` writes."""
    if not isinstance(entry, list) or not entry:
        return False
    shapes = {"file": (str, int, int, str), "folder": (str, int), "special file": (str, int), "link": (str, str)}
    shape = shapes.get(entry[0])
    return shape is not None and len(entry) == len(shape) and all(type(v) is t for v, t in zip(entry, shape))


def _record_problem(record: Mapping[str, object], path: Path) -> str | None:
    """Why a record cannot be checked against (damaged, or from an older venvstacks), or None."""
    required = record.get("required_layers", [])
    needs = [record.get("runtime_layer"), *required] if isinstance(required, list) else [None]
    if "entries" not in record and "files" in record:
        return f"recorded by an older venvstacks, which kept less: deploy it again to record all of its files ({path})"
    entries = record.get("entries")
    if not isinstance(entries, dict):
        return f"the deployment record {path} is damaged"
    shape_ok = isinstance(record.get("location"), str) and all(map(_entry_ok, entries.values()))
    paths_ok = shape_ok and all(rel and not rel.startswith("/") and ".." not in rel.split("/") for rel in entries)
    return None if paths_ok and all(plain_name(need) for need in needs) else f"the deployment record {path} is damaged"


def _recorded_layer_problems(target: Path, path: Path) -> list[str]:
    """The problems of the layer recorded in `path`, one line each."""
    name = path.name.removesuffix(".json")
    if path.is_symlink():
        return [f"{name}: the deployment record {path} is a symbolic link: refusing to trust it"]
    if problem := _record_problem(found := read_record(path) or {}, path):
        return [f"{name}: {problem}"]
    record = cast("DeployRecord", found)  # its shape was just checked
    if not (target / name).is_dir() or (target / name).is_symlink():
        return [f"{name}: the layer folder is missing"]
    needs = dict.fromkeys([record["runtime_layer"], *record.get("required_layers", [])])
    problems = [f"{name}: the required layer {need!r} is not deployed" for need in needs if need != name and not (target / need).is_dir()]
    return problems + list(_layer_problems(name, target / name, record, os.path.realpath(target)))


def _published_manifest_digests(metadata: Path) -> dict[str, str]:
    """The manifest digests a (signed) stack manifest or layer metadata file publishes, by install target."""
    try:
        data = json.loads(metadata.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DeployError(f"cannot read the published metadata {metadata}: {exc}") from exc
    groups = data.get("layers") if isinstance(data, dict) else None
    entries = [e for c in CATEGORIES for e in groups.get(c, [])] if isinstance(groups, dict) else [data]
    digests: dict[str, str] = {}
    for entry in entries:
        hashes = entry.get("manifest_hashes") if isinstance(entry, dict) else None
        digest = hashes.get("sha256") if isinstance(hashes, dict) else None
        if not isinstance(entry, dict) or not plain_name(entry.get("install_target")) or not (isinstance(digest, str) and SHA256.fullmatch(digest)):
            raise DeployError(f"{metadata}: a layer entry has no install_target or manifest_hashes.sha256 (published by an older venvstacks?)")
        digests[entry["install_target"]] = digest
    return digests


def _manifest_layers(target: Path, skip: Collection[str]) -> list[str]:
    """The layer folders of `target` that carry a manifest, other than `skip`, by name."""
    return sorted(
        entry.name for entry in target.iterdir()
        if not entry.name.startswith(".") and entry.name not in skip and not entry.is_symlink() and (entry / MANIFEST).is_file()
    )  # fmt: skip


def _unrecorded_layer_problems(target: Path, name: str, digest: str | None, jobs: int | None) -> list[str]:
    return [f"{name}{'' if rel == '.' else '/' + rel}: {problem}" for rel, problem in verify_layer(target / name, digest, jobs or 0)]


def verify(target: Path, *, metadata: Path | None = None, jobs: int | None = None) -> list[str]:
    """Problems with the layers deployed in `target`, one line each naming the layer and path ([] if none).

    A layer `venvstacks deploy` recorded is checked against that record:
    every file (size, sha256 and mode), folder (mode) and link (target)
    that is missing, changed or added since it was relinked and compiled;
    that the layers it needs are deployed, and that its links resolve inside
    `target`. Where the deployment has moved, the files naming their
    location are checked against what relinking writes where they are now.
    Every other layer folder holding a layer manifest (unpacked by another
    installer, or exported) is checked against its manifest
    (`postinstall.verify_layer`), hashing in up to `jobs` threads. `target`
    may also be a single layer folder. With `metadata` (a published
    `venvstacks.json`, signed by its publisher, or a layer's metadata file),
    every layer it lists must be deployed with the manifest it publishes.
    """
    target = Path(os.path.abspath(target))
    if (target / MANIFEST).is_file() and not (target / RECORD_DIR).exists():
        digests = _published_manifest_digests(metadata) if metadata is not None else {}
        return _unrecorded_layer_problems(target.parent, target.name, digests.get(target.name), jobs)
    records = target / RECORD_DIR
    if problem := records_folder_problem(target):
        return [problem]
    problems: list[str] = []
    recorded: list[str] = []
    if records.is_dir():
        if os.path.lexists(records / JOURNAL):
            problems.append(f"{target}: a deployment was interrupted: run deploy again to put its layers back as they were")
        for path in sorted(records.glob("*.json")):
            recorded.append(path.name.removesuffix(".json"))
            problems.extend(_recorded_layer_problems(target, path))
    unrecorded = _manifest_layers(target, recorded) if target.is_dir() else []
    if not recorded and not unrecorded:
        return [f"{target}: no deployed layers: no records ({RECORD_DIR}) and no layer manifests ({MANIFEST})"]
    digests = _published_manifest_digests(metadata) if metadata is not None else {}
    for name, digest in sorted(digests.items()):
        if name not in recorded and name not in unrecorded:
            problems.append(f"{name}: published in {metadata}, but not deployed here (or without its manifest)")
        elif name in recorded and _manifest_digest(target / name) != digest:
            problems.append(f"{name}/{MANIFEST}: not the published manifest (its sha256 differs from {metadata})")
    for name in unrecorded:
        problems.extend(_unrecorded_layer_problems(target, name, digests.get(name), jobs))
    return problems


def _manifest_digest(layer_dir: Path) -> str | None:
    try:
        return file_sha256(layer_dir / MANIFEST)
    except OSError:
        return None
