"""Deploying published layer archives side by side into a folder, and checking a deployment.

`deploy` checks the size and sha256 of every chosen archive against the stack
manifest before unpacking anything, unpacks each into a hidden
`.<layer>.partial-XXXX` folder of the target (members must lie inside the layer's
folder; links may reach peer layers, never leave the target), then, lowest layers
first, moves each into place, then relinks them all at once with their
`postinstall.py`, each run by its runtime's interpreter. A layer deployed from the
same archive is left alone; one from another archive is moved aside and replaced.
If any relinking fails, every layer is put back as it was: a deployment is all or
nothing. Archives are checked and unpacked several at a time, and each layer's
bytecode is compiled where it was unpacked as soon as its runtime is unpacked too
(nothing for layers that ship it), so relinking afterwards is quick.
`.venvstacks-deployed/<layer>.json` records each deployed layer once relinked:
every file (size, sha256, mode), folder (mode) and link (target) in it, which
`verify` checks.

Interrupted (SIGINT, SIGTERM), a deployment stops its workers and removes what
it made; killed, it leaves marked temporary folders and, while swapping layers
in, a journal, from which the next deployment restores the target first.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from .. import _hooks, _proc, cancel
from ..blockpack import BlockPool
from ..deploy.compileahead import CompileAhead
from ..errors import CommandError, DeployError, MultipleErrors, raise_failures
from ..extract import extract_into
from ..fsutil import file_sha256, is_within, write_text_atomic
from ..postinstall import (
    BYTECODE_RECORD,
    LAYER_CONFIG,
    LOCAL_DIR,
    MANIFEST,
    PostinstallError,
    bytecode_problem,
    layered_environment_files,
    read_bytecode_record,
    read_layer_config,
    relocate_config_script,
    relocate_pkgconfig,
    render_bytecode_record,
    rewrite_sysconfigdata,
    verify_layer,
)
from ..progress import progress
from ..publish.metadata import METADATA_DIR

__all__ = ["DeployError", "DeployedLayer", "deploy", "verify", "RECORD_DIR"]

_LOG = logging.getLogger(__name__)

RECORD_DIR = ".venvstacks-deployed"
"""The folder of the target holding one `<install target>.json` record per deployed layer."""
_CATEGORIES = ("runtimes", "frameworks", "applications")
_TAR_SUFFIXES = (".tar.xz", ".tar.gz", ".tgz", ".tar.bz2", ".tar")
_CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")
_LEFTOVER = re.compile(r"\.(.+)\.(partial|old|failed)-[A-Za-z0-9_]+")
_MARKER = ".venvstacks-partial"
"""The file deploy writes (holding its pid) into each temporary folder it makes in the target, right
after making it: only folders named like `_LEFTOVER` and holding it are removed as leftovers."""
_JOURNAL = "journal"
"""The file of the records folder naming the layers being swapped into place (see `_Swap`);
while it exists, the deployment is unfinished and the next one undoes it."""
_RECORD_TEMPORARY = re.compile(r"\..+\.partial")
"""A record being written (`fsutil.write_atomic`)."""
# Files the post-install step writes or rewrites (with `__pycache__`, `*.pyc` and
# `sitecustomize.py` anywhere): their digests are taken once it has run.
_REGENERATED = ("pyvenv.cfg", "bin/python", "bin/python_")
_RELOCATED: Mapping[str, Callable[[str, str], str]] = {
    "lib/python*/_sysconfigdata_*.py": rewrite_sysconfigdata,
    "bin/python*-config": relocate_config_script,
    "lib/pkgconfig/*.pc": relocate_pkgconfig,
}
"""A runtime's files naming where it is, and how relinking moves each to a new place."""
_RELOCATED_BYTECODE = "lib/python*/__pycache__/_sysconfigdata_*.pyc"


def _check(stop: threading.Event) -> None:
    """Raise `cancel.Interrupted` once the deployment is abandoned: worker threads call this between steps.

    The main thread sets `stop` when it is interrupted (or fails) while workers
    run; the command line also sets the process-wide `cancel` flag.
    """
    if stop.is_set():
        raise cancel.Interrupted
    cancel.check()


@contextlib.contextmanager
def _pool(workers: int, stop: threading.Event) -> Iterator[ThreadPoolExecutor]:
    """A thread pool that, when its block fails or is interrupted, sets `stop`, drops queued work and waits for the rest.

    The block must wait for its futures itself (not leave it to the pool's
    exit), so that an interruption while waiting lands here.
    """
    with ThreadPoolExecutor(max_workers=workers) as pool:
        try:
            yield pool
        except BaseException:
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            raise


@dataclass(frozen=True)
class DeployedLayer:
    """What `deploy` did with one layer."""

    layer_name: str
    install_target: str
    path: Path
    action: str
    """`installed`, `unchanged` or `replaced`."""


@dataclass(frozen=True)
class _Layer:
    """One layer's (checked) entry in the stack manifest."""

    category: str
    layer_name: str
    install_target: str
    sha256: str
    needs: tuple[str, ...]
    """The install targets of the layers it runs on: its runtime, then its frameworks."""
    entry: Mapping[str, Any]


def _plain_name(value: object) -> bool:
    """Whether `value` can name a folder or file directly inside the target (and is not hidden)."""
    return isinstance(value, str) and bool(value) and not value.startswith(".") and not any(c in value for c in "/\\\0")


def _manifest_path(artifacts: Path, platform_manifest: str | None) -> Path:
    folder = artifacts / METADATA_DIR
    if platform_manifest is not None:
        found = [p for p in (folder / platform_manifest, folder / f"venvstacks-{platform_manifest}.json") if p.is_file()]
        if not found:
            raise DeployError(f"no stack manifest {platform_manifest!r} in {folder}")
        return found[0]
    tagged = [folder / "venvstacks.json"] if (folder / "venvstacks.json").is_file() else sorted(folder.glob("venvstacks-*.json"))
    if len(tagged) > 1:
        names = ", ".join(path.name for path in tagged)
        raise DeployError(f"{folder} holds several stack manifests ({names}): name the one to deploy with --manifest")
    if not tagged:
        raise DeployError(f"no stack manifest (venvstacks.json) in {folder}: is {artifacts} a publish output folder?")
    return tagged[0]


def _parse_layer(category: str, entry: object, where: Path) -> _Layer:
    if not isinstance(entry, dict):
        raise DeployError(f"{where}: a {category} entry is not a JSON object")
    hashes, required, size = entry.get("archive_hashes"), entry.get("required_layers", []), entry.get("archive_size")
    sha256 = hashes.get("sha256") if isinstance(hashes, dict) else None
    checks = {
        "layer_name must be a non-empty string": isinstance(entry.get("layer_name"), str) and entry["layer_name"],
        "install_target, runtime_layer and archive_name must be plain names": all(
            _plain_name(entry.get(key)) for key in ("install_target", "runtime_layer", "archive_name")
        ),
        "required_layers must be a list of plain names": isinstance(required, list) and all(map(_plain_name, required)),
        "archive_size must be a byte count": type(size) is int and size >= 0,
        "archive_hashes.sha256 must be a hex SHA-256 digest": isinstance(sha256, str) and _SHA256.fullmatch(sha256),
    }
    problems = [message for message, ok in checks.items() if not ok]
    if problems:
        label = entry.get("layer_name") or entry.get("install_target") or "?"
        raise DeployError(f"{where}: layer {label!r}: " + "; ".join(problems) + " (was this stack published?)")
    target = entry["install_target"]
    needs = tuple(name for name in dict.fromkeys([entry["runtime_layer"], *required]) if name != target)
    return _Layer(category, entry["layer_name"], target, str(sha256), needs, entry)


def _read_manifest(path: Path) -> list[_Layer]:
    """The manifest's layers: runtimes, frameworks, then applications, each in manifest order."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DeployError(f"cannot read the stack manifest {path}: {exc}") from exc
    groups = data.get("layers") if isinstance(data, dict) else None
    if not isinstance(groups, dict) or not all(isinstance(groups.get(c, []), list) for c in _CATEGORIES):
        raise DeployError(f"{path}: not a stack manifest (no 'layers' lists)")
    layers = [_parse_layer(category, entry, path) for category in _CATEGORIES for entry in groups.get(category, [])]
    targets = [layer.install_target for layer in layers]
    if duplicates := sorted({name for name in targets if targets.count(name) > 1}):
        raise DeployError(f"{path}: several layers deploy as {', '.join(duplicates)}")
    return layers


def _select(layers: list[_Layer], include: Sequence[str], target: Path) -> list[_Layer]:
    """The layers to deploy (all, or those matching `include` with what they need), lowest first."""
    by_target = {layer.install_target: layer for layer in layers}
    chosen = set(by_target) if not include else set()
    for pattern in include:
        matched = {l.install_target for l in layers if fnmatch.fnmatchcase(l.layer_name, pattern) or fnmatch.fnmatchcase(l.install_target, pattern)}
        if not matched:
            raise DeployError(f"no layer of the stack matches {pattern!r}")
        chosen |= matched
    ordered: list[_Layer] = []
    seen: set[str] = set()

    def visit(layer: _Layer) -> None:
        seen.add(layer.install_target)
        for name in layer.needs:
            if name in by_target and name not in seen:
                visit(by_target[name])
            elif name not in by_target and not (target / name).is_dir():  # else deployed earlier, not republished
                raise DeployError(f"layer {layer.install_target!r} needs {name!r}, which is neither in the manifest nor deployed in {target}")
        ordered.append(layer)

    for layer in layers:
        if layer.install_target in chosen and layer.install_target not in seen:
            visit(layer)
    return ordered


def _archive_problem(artifacts: Path, layer: _Layer, stop: threading.Event) -> str | None:
    """Why the layer's archive cannot be deployed (missing, other size or hash, not a tar), or None."""
    path, expected = artifacts / layer.entry["archive_name"], layer.entry["archive_size"]
    if not path.name.endswith(_TAR_SUFFIXES):
        return f"{path}: only tar archives ({', '.join(_TAR_SUFFIXES)}) can be deployed"
    try:
        if (size := path.stat().st_size) != expected:
            return f"{path}: {size} bytes, but the metadata says {expected} (truncated or replaced?)"
        sha256 = file_sha256(path, partial(_check, stop))
    except FileNotFoundError:
        return f"{path}: the archive is missing"
    except OSError as exc:
        return f"{path}: cannot read the archive: {exc.strerror or exc}"
    return None if sha256 == layer.sha256 else f"{path}: sha256 is {sha256}, but the metadata says {layer.sha256} (modified?)"


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _matches(rel: str, pattern: str) -> bool:
    """Whether the `/`-separated path matches the wildcard `pattern` component by component."""
    parts, pieces = rel.split("/"), pattern.split("/")
    return len(parts) == len(pieces) and all(map(fnmatch.fnmatchcase, parts, pieces))


def _regenerated(rel: str, runtime: bool) -> bool:
    """Whether the post-install step (relinking or compiling) may write this layer file."""
    parts = rel.split("/")
    if "__pycache__" in parts or parts[-1] == "sitecustomize.py" or parts[-1].endswith(".pyc"):
        return True
    return any(_matches(rel, pattern) for pattern in (*_REGENERATED, *(_RELOCATED if runtime else ())))


def _scan(folder: Path) -> dict[str, os.stat_result]:
    """`folder` (as `.`) and every entry below it (links not followed) by `/`-separated relative path, with its `lstat`."""
    found = {".": os.lstat(folder)}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            found[os.path.relpath(path, folder).replace(os.sep, "/")] = os.lstat(path)
    return found


def _kind(info: os.stat_result) -> str:
    if stat.S_ISLNK(info.st_mode):
        return "link"
    if stat.S_ISDIR(info.st_mode):
        return "folder"
    return "file" if stat.S_ISREG(info.st_mode) else "special file"


def _entries(folder: Path, digests: Mapping[str, tuple[int, str]], runtime: bool, stop: threading.Event) -> dict[str, list[Any]]:
    """The record of every entry of a deployed, relinked layer: `[kind, mode, size, sha256]` for a file,
    `[kind, mode]` for a folder or special file, `[kind, target]` for a link.

    Files hashed while unpacking are not read again, unless the post-install step may have written them;
    nor is the bytecode whose digest the post-install step recorded a moment ago (`BYTECODE_RECORD`).
    """
    entries: dict[str, list[Any]] = {}
    bytecode = read_bytecode_record(folder) or {}
    for rel, info in sorted(_scan(folder).items()):
        kind, mode = _kind(info), stat.S_IMODE(info.st_mode)
        if kind == "link":
            entries[rel] = [kind, os.readlink(folder / rel)]
        elif kind == "file":
            known = digests.get(rel) if not _regenerated(rel, runtime) else None
            if known is None and rel in bytecode:
                known = (info.st_size, bytecode[rel])
            entries[rel] = [kind, mode, *(known or (info.st_size, file_sha256(folder / rel, partial(_check, stop))))]
        else:
            entries[rel] = [kind, mode]
    return entries


def _write_records(
    layers: Sequence[_Layer], unpacked: Mapping[str, _Unpacked], target: Path, stop: threading.Event, jobs: int | None
) -> None:
    """Record each relinked layer: its manifest entry, where it was deployed, and every entry in it."""
    with _pool(_workers(len(layers), jobs), stop) as pool:
        futures = []
        for layer in layers:
            folder = target / layer.install_target
            digests = _unpacked_digests(folder, unpacked[layer.install_target])
            futures.append(pool.submit(_entries, folder, digests, layer.category == "runtimes", stop))
        wait(futures)
    for layer, future in zip(layers, futures):
        data = {**layer.entry, "category": layer.category, "archive_sha256": layer.sha256, "location": str(target), "entries": future.result()}
        write_text_atomic(target / RECORD_DIR / f"{layer.install_target}.json", json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n")


def _runtime_python(layer: _Layer, target: Path) -> Path:
    return target / str(layer.entry["runtime_layer"]) / "bin" / "python3"


def _relink(layer: _Layer, target: Path) -> None:
    final = target / layer.install_target
    postinstall: list[str | os.PathLike[str]] = [_runtime_python(layer, target), "-X", "utf8", "-I", final / "postinstall.py", "--no-compile"]
    _proc.run(postinstall, description=f"running the post-install step of layer {layer.install_target!r}")


@dataclass(frozen=True)
class _Swap:
    """How one layer goes into place, as the journal names it, so that it can be undone after any interruption.

    Before anything moves, a marked `aside` folder is made. The old record, if
    any, goes into it as `record.json`, the old layer, if any, as `layer`, and
    the unpacked `partial` folder takes the layer's place.
    """

    name: str
    partial: str
    aside: str
    replacing: bool
    """An old layer is moved aside (else the layer is new)."""
    had_record: bool


def _marked_folder(target: Path, prefix: str) -> Path:
    """A new empty hidden folder of the target, marked at once as deploy's own (see `_MARKER`)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=target))
    (folder / _MARKER).write_text(f"{os.getpid()}\n", encoding="utf-8")
    return folder


def _is_marked(folder: Path) -> bool:
    """Whether `folder` is a real folder holding deploy's marker file."""
    try:
        return stat.S_ISDIR(os.lstat(folder).st_mode) and stat.S_ISREG(os.lstat(folder / _MARKER).st_mode)
    except OSError:
        return False


def _remove_marked(folder: Path) -> None:
    """Remove one of deploy's temporary folders, its marker last, so that the next deploy finishes an interrupted removal."""
    with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
        for entry in entries:
            if entry.name == _MARKER:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                Path(entry.path).unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)


def _discard(target: Path, name: str) -> None:
    """Remove the layer folder `name` of the target: first moved into a marked folder, then deleted."""
    failed = _marked_folder(target, f".{name}.failed-")
    os.replace(target / name, failed / "layer")
    _remove_marked(failed)


def _prepare_swap(layer: _Layer, unpacked: _Unpacked, target: Path) -> _Swap:
    name = layer.install_target
    aside = _marked_folder(target, f".{name}.old-").name
    had_record = os.path.lexists(target / RECORD_DIR / f"{name}.json")
    return _Swap(name, unpacked.folder.name, aside, os.path.lexists(target / name), had_record)


def _swap_in(target: Path, swap: _Swap) -> None:
    final, aside = target / swap.name, target / swap.aside
    if swap.had_record:
        os.replace(target / RECORD_DIR / f"{swap.name}.json", aside / "record.json")
    if swap.replacing:
        os.replace(final, aside / "layer")
    os.replace(target / swap.partial, final)
    (final / _MARKER).unlink()


def _swap_back(target: Path, swap: _Swap) -> None:
    """Undo `_swap_in`, however far it got: the new layer goes, the old one and its record come back."""
    final, aside, record = target / swap.name, target / swap.aside, target / RECORD_DIR / f"{swap.name}.json"
    new_in_place = os.path.lexists(aside / "layer") if swap.replacing else not os.path.lexists(target / swap.partial)
    if new_in_place and os.path.lexists(final):
        _discard(target, swap.name)
    if os.path.lexists(aside / "layer"):
        os.replace(aside / "layer", final)
    if os.path.lexists(aside / "record.json"):
        os.replace(aside / "record.json", record)
    elif not swap.had_record:
        record.unlink(missing_ok=True)


def _write_journal(target: Path, swaps: Sequence[_Swap]) -> None:
    entries = [vars(swap) for swap in swaps]
    write_text_atomic(target / RECORD_DIR / _JOURNAL, json.dumps(entries, indent=1) + "\n")


def _read_journal(path: Path) -> list[_Swap]:
    """The swaps an interrupted deployment journaled; DeployError if the journal is damaged."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        swaps = [_Swap(**entry) for entry in entries]
    except (OSError, ValueError, TypeError) as exc:
        raise DeployError(f"cannot read {path}, the journal of an interrupted deployment: {exc}") from exc
    for swap in swaps:
        names_ok = _plain_name(swap.name) and all(
            _LEFTOVER.fullmatch(folder) and folder.startswith(f".{swap.name}.") for folder in (swap.partial, swap.aside)
        )
        if not names_ok or not isinstance(swap.replacing, bool) or not isinstance(swap.had_record, bool):
            raise DeployError(f"{path}, the journal of an interrupted deployment, is damaged: {vars(swap)}")
    return swaps


def _undo(target: Path, swaps: Sequence[_Swap]) -> None:
    """Put every layer of an unfinished deployment back as it was, then forget it."""
    for swap in reversed(swaps):
        _swap_back(target, swap)
    (target / RECORD_DIR / _JOURNAL).unlink(missing_ok=True)
    for swap in swaps:
        _remove_marked(target / swap.aside)


def _install_all(
    layers: Sequence[_Layer], unpacked: dict[str, _Unpacked], target: Path, stop: threading.Event, jobs: int | None
) -> dict[str, str]:
    """Move the unpacked layers into place, lowest first, then relink them all at once.

    Relinking a layer needs the layers it names in place, not relinked, so
    the post-install steps run side by side. If any of them fails (or anything
    else does), every layer, and its record, is put back as it was: a deployment
    is all or nothing. The journal names the layers being swapped, so that the
    next deployment puts them back should this process be killed. Returns each
    layer's action: `installed` or `replaced`.
    """
    if not layers:
        return {}
    swaps: list[_Swap] = []
    try:
        swaps.extend(_prepare_swap(layer, unpacked[layer.install_target], target) for layer in layers)
        _write_journal(target, swaps)
        for swap in swaps:
            _swap_in(target, swap)
        _hooks.pause("deploy-swapped")  # a test hook: every layer in place, none relinked
        progress(_LOG, "relinking %d layers", len(layers))
        with _pool(_workers(len(layers), jobs), stop) as pool:
            futures = [pool.submit(_relink, layer, target) for layer in layers]
            wait(futures)
        raise_failures([error for future in futures if (error := future.exception()) is not None])
        _write_records(layers, unpacked, target, stop, jobs)
        (target / RECORD_DIR / _JOURNAL).unlink()  # done: from here on, the old layers are leftovers
    except BaseException as exc:
        _undo(target, swaps)
        if isinstance(exc, (CommandError, OSError, DeployError, MultipleErrors)):
            msg = f"nothing was deployed (every layer in {target} is as it was before): {exc}"
            raise DeployError(msg) from exc
        raise
    for swap in swaps:
        _remove_marked(target / swap.aside)
    return {swap.name: "replaced" if swap.replacing else "installed" for swap in swaps}


def _workers(tasks: int, jobs: int | None) -> int:
    """How many threads work on `tasks` things at once: at most `jobs` (default: one per core)."""
    return max(1, min(tasks, jobs or os.cpu_count() or 1))


@dataclass(frozen=True)
class _Unpacked:
    """An archive unpacked (and its bytecode compiled) in a hidden folder of the target, with its files' digests."""

    folder: Path
    digests: Mapping[str, tuple[int, str]]
    precompiled: bool = False
    """The layer ships its bytecode (published with --precompile): nothing to compile."""


def _unpack(artifacts: Path, layer: _Layer, target: Path, stop: threading.Event, blocks: BlockPool, ahead: CompileAhead) -> _Unpacked:
    progress(_LOG, "unpacking layer %r", layer.install_target)
    folder = _marked_folder(target, f".{layer.install_target}.partial-")
    ahead.unpacking_into(folder)
    digests: dict[str, tuple[int, str]] = {}
    try:
        archive = artifacts / layer.entry["archive_name"]
        extract_into(
            archive, folder, strip_prefix=layer.install_target, link_scope=target, digests=digests,
            check=partial(_check, stop), pool=blocks, on_file=ahead.on_file,
        )  # fmt: skip
        ahead.unpacked()
        os.chmod(folder, 0o755)
        _hooks.pause("deploy-unpacked")  # a test hook
        _check(stop)
    except BaseException:
        ahead.stop()  # nothing may write into the folder while it is removed
        _remove_marked(folder)
        raise
    return _Unpacked(folder, digests, _ships_bytecode(folder))


def _layer_config(folder: Path) -> Mapping[str, Any]:
    try:
        config = json.loads((folder / LAYER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # the post-install step reports a missing or broken config
    return config if isinstance(config, dict) else {}


def _ships_bytecode(folder: Path) -> bool:
    return _layer_config(folder).get("precompiled") is True


def _unpacked_digests(layer_dir: Path, unpacked: _Unpacked) -> Mapping[str, tuple[int, str]]:
    """The digests taken while unpacking that still hold once the layer is relinked: none where a post-install hook ran, which may change any file."""
    return {} if _layer_config(layer_dir).get("postinstall_hook") else unpacked.digests


def _compile(layer: _Layer, folder: Path, python: Path, stop: threading.Event, jobs: int | None, ahead: CompileAhead) -> None:
    """Compile an unpacked layer's bytecode where it lies, in up to `jobs` processes; it stays valid once the layer is moved into place.

    What `ahead` compiled while the layer was unpacked is up to date by then.
    """
    ahead.finish()
    _check(stop)
    progress(_LOG, "compiling the bytecode of layer %r", layer.install_target)
    command: list[str | os.PathLike[str]] = [python, "-X", "utf8", "-I", folder / "postinstall.py", "--compile-only", "--jobs", str(jobs or 0)]
    try:
        _proc.run(command, description=f"compiling the bytecode of layer {layer.install_target!r}")
    except CommandError as exc:
        raise DeployError(str(exc)) from exc


def _unpack_all(artifacts: Path, layers: Sequence[_Layer], target: Path, stop: threading.Event, jobs: int | None) -> dict[str, _Unpacked]:
    """Unpack (and so check) every archive and compile its bytecode, several layers at a time.

    A layer is compiled by its runtime's interpreter as soon as both are
    unpacked. On any failure, or an interruption, the workers stop, everything
    unpacked is removed again and the error of the lowest failing layer (or the
    interruption) is raised.
    """
    order = {layer.install_target: index for index, layer in enumerate(layers)}
    unpacked: dict[str, _Unpacked] = {}
    errors: list[tuple[int, BaseException]] = []
    unpacking: dict[Future[_Unpacked], _Layer] = {}

    def runtime_python(layer: _Layer) -> Path | None:
        runtime = layer.entry["runtime_layer"]
        if runtime not in order:
            return _runtime_python(layer, target)
        return unpacked[runtime].folder / "bin" / "python3" if runtime in unpacked else None

    cores = jobs or os.cpu_count() or 1
    aheads = {layer.install_target: CompileAhead(layer.install_target, cores) for layer in layers}

    def start_compiling_ahead() -> None:
        for layer in layers:
            if (python := runtime_python(layer)) is not None:
                aheads[layer.install_target].start(python)

    try:
        # The block threads outlive the layer threads reading through them.
        with BlockPool(cores, "unpack") as blocks, _pool(_workers(len(layers), jobs), stop) as pool:
            start_compiling_ahead()
            unpacking.update(
                {pool.submit(_unpack, artifacts, layer, target, stop, blocks, aheads[layer.install_target]): layer for layer in layers}
            )
            compiling: dict[Future[None], _Layer] = {}
            waiting: list[_Layer] = []
            for future in as_completed(unpacking):
                layer = unpacking[future]
                if future.cancelled():
                    continue
                if (error := future.exception()) is not None:
                    errors.append((order[layer.install_target], error))
                    others: list[Future[Any]] = [*unpacking, *compiling]
                    for other in others:
                        other.cancel()
                    continue
                unpacked[layer.install_target] = future.result()
                if errors:
                    continue
                start_compiling_ahead()
                if not unpacked[layer.install_target].precompiled:
                    waiting.append(layer)
                for waiter in list(waiting):
                    if (python := runtime_python(waiter)) is not None:
                        waiting.remove(waiter)
                        folder, ahead = unpacked[waiter.install_target].folder, aheads[waiter.install_target]
                        compiling[pool.submit(_compile, waiter, folder, python, stop, jobs, ahead)] = waiter
            wait(compiling)
        for job, layer in compiling.items():
            if not job.cancelled() and (error := job.exception()) is not None:
                errors.append((order[layer.install_target], error))
        if errors:
            raise min(errors, key=lambda item: item[0])[1]
    except BaseException:
        for ahead in aheads.values():
            ahead.stop()
        _discard_unpacked(unpacking)
        raise
    for ahead in aheads.values():  # those of layers that ship their bytecode
        ahead.stop()
    return unpacked


def _discard_unpacked(futures: Iterable[Future[_Unpacked]]) -> None:
    """Remove the folders of the layers unpacked by the (finished) `futures`."""
    for future in futures:
        if future.done() and not future.cancelled() and future.exception() is None:
            _remove_marked(future.result().folder)


def _plan(layer: _Layer, target: Path) -> str:
    final, record = target / layer.install_target, target / RECORD_DIR / f"{layer.install_target}.json"
    if record.is_symlink():
        raise DeployError(f"{record} is a symbolic link: refusing to read or replace a deployment record through it")
    if not os.path.lexists(final):
        return "installed"
    if final.is_symlink() or not final.is_dir():
        raise DeployError(f"{final} exists and is not a layer folder: refusing to replace it")
    recorded = _read_record(record) or {}
    return "unchanged" if recorded.get("archive_sha256") == layer.sha256 and "entries" in recorded else "replaced"


def _records_folder_problem(target: Path) -> str | None:
    """Why deploy must not keep its records in the target's records folder (a link, not a folder), or None."""
    records = target / RECORD_DIR
    if records.is_symlink():
        return f"{records} is a symbolic link, not the folder deploy keeps its records in: refusing to use it (remove it)"
    if os.path.lexists(records) and not records.is_dir():
        return f"{records} is not the folder deploy keeps its records in: refusing to use it (remove it)"
    return None


def _clear_leftovers(target: Path) -> None:
    """Undo an unfinished deployment, then remove deploy's temporary folders and half-written records.

    A temporary folder is deploy's own when it holds the marker. One that
    matches the name pattern but is empty is removed too: a deployment killed
    between creating it and marking it leaves it so, and removing an empty
    folder loses nothing.
    """
    journal = target / RECORD_DIR / _JOURNAL
    if journal.is_symlink():
        raise DeployError(f"{journal} is a symbolic link: refusing to read a deployment journal through it")
    if journal.exists():
        _undo(target, _read_journal(journal))
    for entry in target.iterdir():
        if not _LEFTOVER.fullmatch(entry.name):
            continue
        if _is_marked(entry):
            _remove_marked(entry)
        else:  # killed between creating the folder and marking it (or after removing the marker): empty, so nothing is lost
            with contextlib.suppress(OSError):
                os.rmdir(entry)
    with contextlib.suppress(FileNotFoundError):
        for entry in (target / RECORD_DIR).iterdir():
            if _RECORD_TEMPORARY.fullmatch(entry.name) and not entry.is_dir():
                entry.unlink()


@contextlib.contextmanager
def _locked(target: Path) -> Iterator[None]:
    """Hold an exclusive lock on the target folder; clear what interrupted deployments left.

    Holding the lock, any temporary folder deploy marked as its own belongs
    to a deployment that is gone.
    """
    fd = os.open(target, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DeployError(f"another deployment into {target} is running") from None
        if problem := _records_folder_problem(target):
            raise DeployError(problem)
        _clear_leftovers(target)
        yield
    finally:
        os.close(fd)


def deploy(
    artifacts: Path, target: Path, *, include: Sequence[str] = (), platform_manifest: str | None = None, jobs: int | None = None
) -> list[DeployedLayer]:
    """Deploy the layers published in `artifacts` (or those matching `include`, with what they need) into `target`.

    `platform_manifest` names the manifest (`venvstacks-<platform>.json`, or just
    the platform) when there are several. Every archive is checked before anything
    is unpacked (see the module docstring); deploying the same archives again
    changes nothing. At most `jobs` threads (default: one per core) check,
    unpack, compile, relink and record layers at once.
    """
    manifest = _manifest_path(artifacts, platform_manifest)
    target = Path(os.path.abspath(target))
    chosen = _select(_read_manifest(manifest), include, target)
    stop = threading.Event()
    with _pool(_workers(len(chosen), jobs), stop) as pool:
        checked = list(pool.map(lambda layer: _archive_problem(artifacts, layer, stop), chosen))
    if problems := [problem for problem in checked if problem is not None]:
        raise DeployError(f"refusing to deploy: archives do not match {manifest}:\n" + "\n".join(f"  {p}" for p in problems))
    if os.path.lexists(target) and not target.is_dir():
        raise DeployError(f"cannot deploy into {target}: it is not a folder")
    created = not target.exists()
    target.mkdir(parents=True, exist_ok=True)
    unpacked: dict[str, _Unpacked] = {}
    try:
        with _locked(target):
            actions = {layer.install_target: _plan(layer, target) for layer in chosen}
            pending = [layer for layer in chosen if actions[layer.install_target] != "unchanged"]
            unpacked = _unpack_all(artifacts, pending, target, stop, jobs)  # every archive checked before any is installed
            actions.update(_install_all(pending, unpacked, target, stop, jobs))
            unpacked = {}
    except BaseException:
        for leftover in unpacked.values():
            _remove_marked(leftover.folder)
        if created:
            for folder in (target / RECORD_DIR, target):
                with contextlib.suppress(OSError):
                    folder.rmdir()
        raise
    return [DeployedLayer(l.layer_name, l.install_target, target / l.install_target, actions[l.install_target]) for l in chosen]


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


def _moved(record: Mapping[str, Any], name: str, layer_dir: Path) -> _Moved | None:
    location, runtime = str(record["location"]), record.get("category") == "runtimes"
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
    return any(_matches(rel, pattern) for pattern in (_RELOCATED_BYTECODE, *_RELOCATED))


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
    if _matches(rel, _RELOCATED_BYTECODE):
        return bytecode_problem(str(path))
    relocate = next(how for pattern, how in _RELOCATED.items() if _matches(rel, pattern))
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    try:
        back, here = relocate(text, moved.old), relocate(text, moved.new)
    except (SyntaxError, ValueError) as exc:
        return f"modified (cannot be read: {exc})"
    if hashlib.sha256(back.encode("utf-8", "surrogateescape")).hexdigest() != sha256:
        return "modified (sha256 differs, even relinked back to where it was deployed)"
    return None if here == text else "not relinked where the layer is now (run its postinstall.py)"


def _content_problem(path: Path, rel: str, size: int, recorded: Sequence[Any], moved: _Moved | None) -> str | None:
    if moved is not None and _names_location(rel, moved):
        return _relocated_problem(path, rel, recorded[3], moved)
    if size != recorded[2]:
        return f"modified ({size} bytes, {recorded[2]} when deployed)"
    return "modified (sha256 differs)" if file_sha256(path) != recorded[3] else None


def _entry_problems(path: Path, rel: str, recorded: Sequence[Any] | None, info: os.stat_result | None, moved: _Moved | None) -> Iterator[str]:
    """What changed in one entry of a layer since it was deployed."""
    if info is None:
        yield "missing"
        return
    kind = _kind(info)
    if recorded is None:
        yield f"added after deployment (a {kind})"
    elif kind != recorded[0]:
        yield f"a {kind} now, a {recorded[0]} when deployed"
    elif kind == "link":
        if (link := os.readlink(path)) != recorded[1]:
            yield f"link to {link!r}, to {recorded[1]!r} when deployed"
    else:
        if problem := _mode_problem(stat.S_IMODE(info.st_mode), recorded[1]):
            yield problem
        if kind == "file" and (problem := _content_problem(path, rel, info.st_size, recorded, moved)):
            yield problem


def _link_problem(path: Path, root: str) -> str | None:
    link = os.readlink(path)
    if not path.exists():
        return f"broken link to {link!r}"
    real = os.path.realpath(path)
    return None if real != root and is_within(real, root) else f"link to {link!r} leads outside the deployment folder"


def _layer_problems(name: str, layer_dir: Path, record: Mapping[str, Any], root: str) -> Iterator[str]:
    """Entries added, missing or changed since the layer was deployed, and links that are broken or lead out of the target."""
    recorded: Mapping[str, Sequence[Any]] = record["entries"]
    found, moved = _scan(layer_dir), _moved(record, name, layer_dir)
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


def _record_problem(record: Mapping[str, Any], path: Path) -> str | None:
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
    return None if paths_ok and all(_plain_name(need) for need in needs) else f"the deployment record {path} is damaged"


def _recorded_layer_problems(target: Path, path: Path) -> list[str]:
    """The problems of the layer recorded in `path`, one line each."""
    name = path.name.removesuffix(".json")
    if path.is_symlink():
        return [f"{name}: the deployment record {path} is a symbolic link: refusing to trust it"]
    record = _read_record(path) or {}
    if problem := _record_problem(record, path):
        return [f"{name}: {problem}"]
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
    entries = [e for c in _CATEGORIES for e in groups.get(c, [])] if isinstance(groups, dict) else [data]
    digests: dict[str, str] = {}
    for entry in entries:
        hashes = entry.get("manifest_hashes") if isinstance(entry, dict) else None
        digest = hashes.get("sha256") if isinstance(hashes, dict) else None
        if not isinstance(entry, dict) or not _plain_name(entry.get("install_target")) or not (isinstance(digest, str) and _SHA256.fullmatch(digest)):
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
    if problem := _records_folder_problem(target):
        return [problem]
    problems: list[str] = []
    recorded: list[str] = []
    if records.is_dir():
        if os.path.lexists(records / _JOURNAL):
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
