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
import json
import logging
import os
import stat
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

from .. import _hooks, _proc, cancel
from ..blockpack import READ_AHEAD_PER_JOB, BlockPool
from ..deploy.compileahead import CompileAhead, CompileGroup
from ..errors import CommandError, DeployError, MultipleErrors, raise_failures
from ..extract import extract_into
from ..fsutil import file_sha256, write_text_atomic
from ..postinstall import (
    LAYER_CONFIG,
    read_bytecode_record,
)
from ..progress import progress
from .stack import ManifestLayer, manifest_path, read_manifest, select_layers
from .swap import Swap, locked, marked_folder, remove_marked, swap_in, undo, write_journal
from .records import JOURNAL, RECORD_DIR, DeployRecord, RecordEntry, kind_of, read_record, regenerated, scan

__all__ = ["DeployError", "DeployedLayer", "deploy", "RECORD_DIR"]

_LOG = logging.getLogger(__name__)

_TAR_SUFFIXES = (".tar.xz", ".tar.gz", ".tgz", ".tar.bz2", ".tar")


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


DeployAction = Literal["installed", "unchanged", "replaced"]
"""What a run did with one layer."""


@dataclass(frozen=True)
class DeployedLayer:
    """What `deploy` did with one layer."""

    layer_name: str
    install_target: str
    path: Path
    action: DeployAction
    """`installed`, `unchanged` or `replaced`."""


def _archive_problem(artifacts: Path, layer: ManifestLayer, stop: threading.Event) -> str | None:
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


def _entries(folder: Path, digests: Mapping[str, tuple[int, str]], runtime: bool, stop: threading.Event) -> dict[str, RecordEntry]:
    """The record of every entry of a deployed, relinked layer: `[kind, mode, size, sha256]` for a file,
    `[kind, mode]` for a folder or special file, `[kind, target]` for a link.

    Files hashed while unpacking are not read again, unless the post-install step may have written them;
    nor is the bytecode whose digest the post-install step recorded a moment ago (`BYTECODE_RECORD`).
    """
    entries: dict[str, RecordEntry] = {}
    bytecode = read_bytecode_record(folder) or {}
    for rel, info in sorted(scan(folder).items()):
        kind, mode = kind_of(info), stat.S_IMODE(info.st_mode)
        if kind == "link":
            entries[rel] = [kind, os.readlink(folder / rel)]
        elif kind == "file":
            known = digests.get(rel) if not regenerated(rel, runtime) else None
            if known is None and rel in bytecode:
                known = (info.st_size, bytecode[rel])
            entries[rel] = [kind, mode, *(known or (info.st_size, file_sha256(folder / rel, partial(_check, stop))))]
        else:
            entries[rel] = [kind, mode]
    return entries


def _write_records(
    layers: Sequence[ManifestLayer], unpacked: Mapping[str, _Unpacked], target: Path, stop: threading.Event, jobs: int | None
) -> None:
    """Record each relinked layer: its manifest entry, where it was deployed, and every entry in it."""
    with _pool(_workers(len(layers), jobs), stop) as pool:
        futures = []
        for layer in layers:
            folder, digests = target / layer.install_target, unpacked[layer.install_target].digests
            futures.append(pool.submit(_entries, folder, digests, layer.category == "runtimes", stop))
        wait(futures)
    for layer, future in zip(layers, futures):
        data: DeployRecord = {**layer.entry, "category": layer.category, "archive_sha256": layer.sha256, "location": str(target), "entries": future.result()}
        write_text_atomic(target / RECORD_DIR / f"{layer.install_target}.json", json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n")


def _runtime_python(layer: ManifestLayer, target: Path) -> Path:
    return target / layer.entry["runtime_layer"] / "bin" / "python3"


def _relink(layer: ManifestLayer, target: Path) -> None:
    final = target / layer.install_target
    postinstall: list[str | os.PathLike[str]] = [_runtime_python(layer, target), "-X", "utf8", "-I", final / "postinstall.py", "--no-compile"]
    _proc.run(postinstall, description=f"running the post-install step of layer {layer.install_target!r}")


def _prepare_swap(layer: ManifestLayer, unpacked: _Unpacked, target: Path) -> Swap:
    name = layer.install_target
    aside = marked_folder(target, f".{name}.old-").name
    had_record = os.path.lexists(target / RECORD_DIR / f"{name}.json")
    return Swap(name, unpacked.folder.name, aside, os.path.lexists(target / name), had_record)


def _install_all(
    layers: Sequence[ManifestLayer], unpacked: dict[str, _Unpacked], target: Path, stop: threading.Event, jobs: int | None
) -> dict[str, DeployAction]:
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
    swaps: list[Swap] = []
    try:
        swaps.extend(_prepare_swap(layer, unpacked[layer.install_target], target) for layer in layers)
        write_journal(target, swaps)
        for swap in swaps:
            swap_in(target, swap)
        _hooks.pause("deploy-swapped")  # a test hook: every layer in place, none relinked
        progress(_LOG, "relinking %d layers", len(layers))
        with _pool(_workers(len(layers), jobs), stop) as pool:
            futures = [pool.submit(_relink, layer, target) for layer in layers]
            wait(futures)
        raise_failures([error for future in futures if (error := future.exception()) is not None])
        _write_records(layers, unpacked, target, stop, jobs)
        (target / RECORD_DIR / JOURNAL).unlink()  # done: from here on, the old layers are leftovers
    except BaseException as exc:
        undo(target, swaps)
        if isinstance(exc, (CommandError, OSError, DeployError, MultipleErrors)):
            msg = f"nothing was deployed (every layer in {target} is as it was before): {exc}"
            raise DeployError(msg) from exc
        raise
    for swap in swaps:
        remove_marked(target / swap.aside)
    return {swap.name: "replaced" if swap.replacing else "installed" for swap in swaps}


def _workers(tasks: int, jobs: int | None) -> int:
    """How many threads work on `tasks` things at once: at most `jobs` (default: one per core)."""
    return max(1, min(tasks, jobs or os.cpu_count() or 1))


@dataclass(frozen=True)
class _Unpacked:
    """An archive unpacked (and its bytecode compiled) in a hidden folder of the target, with its files' digests."""

    folder: Path
    digests: Mapping[str, tuple[int, str]]
    """Those that still hold once the layer is relinked: none where a post-install hook runs, which may change any file."""
    precompiled: bool = False
    """The layer ships its bytecode (published with --precompile): nothing to compile."""


def _unpack(artifacts: Path, layer: ManifestLayer, target: Path, stop: threading.Event, blocks: BlockPool, ahead: CompileAhead) -> _Unpacked:
    progress(_LOG, "unpacking layer %r", layer.install_target)
    folder = marked_folder(target, f".{layer.install_target}.partial-")
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
        remove_marked(folder)
        raise
    config = _layer_config(folder)
    return _Unpacked(folder, {} if config.get("postinstall_hook") else digests, config.get("precompiled") is True)


def _layer_config(folder: Path) -> Mapping[str, object]:
    """A layer's config as unpacked, unchecked ({} if unreadable): only hints are read from it."""
    try:
        config = json.loads((folder / LAYER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # the post-install step reports a missing or broken config
    return config if isinstance(config, dict) else {}


def _compile(layer: ManifestLayer, folder: Path, python: Path, stop: threading.Event, jobs: int | None, ahead: CompileAhead) -> None:
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


@dataclass(frozen=True)
class _Runtimes:
    """Where the runtime Python of each layer being deployed is, as their archives get unpacked."""

    target: Path
    order: Mapping[str, int]
    """The position of each layer being deployed (the others are deployed already)."""
    unpacked: Mapping[str, _Unpacked]

    def python(self, layer: ManifestLayer) -> Path | None:
        """The runtime's interpreter, or None while its archive is still being unpacked."""
        runtime = layer.entry["runtime_layer"]
        if runtime not in self.order:
            return _runtime_python(layer, self.target)
        return self.unpacked[runtime].folder / "bin" / "python3" if runtime in self.unpacked else None


def _start_ahead(layers: Sequence[ManifestLayer], runtimes: _Runtimes, aheads: Mapping[str, CompileAhead]) -> None:
    """Start compiling ahead every layer whose runtime is unpacked (a no-op for those already started)."""
    for layer in layers:
        if (python := runtimes.python(layer)) is not None:
            aheads[layer.install_target].start(python)


def _compile_groups(layers: Sequence[ManifestLayer], jobs: int) -> dict[str, CompileAhead]:
    """Each layer's head start, the layers on one runtime sharing one group of at most `jobs` compiling processes."""
    runtimes = [layer.entry["runtime_layer"] for layer in layers]
    groups = {runtime: CompileGroup(runtime, jobs, runtimes.count(runtime)) for runtime in runtimes}
    return {layer.install_target: groups[runtime].ahead() for layer, runtime in zip(layers, runtimes)}


def _stop_all(aheads: Mapping[str, CompileAhead]) -> None:
    for ahead in aheads.values():
        ahead.stop()


@contextlib.contextmanager
def _stopping(aheads: Mapping[str, CompileAhead]) -> Iterator[None]:
    """Stop compiling ahead as soon as the block fails: before the pool waits for compile steps that wait for it."""
    try:
        yield
    except BaseException:
        _stop_all(aheads)
        raise


def _unpack_all(artifacts: Path, layers: Sequence[ManifestLayer], target: Path, stop: threading.Event, jobs: int | None) -> dict[str, _Unpacked]:
    """Unpack (and so check) every archive and compile its bytecode, several layers at a time.

    A layer is compiled by its runtime's interpreter as soon as both are
    unpacked. On any failure, or an interruption, the workers stop, everything
    unpacked is removed again and the error of the lowest failing layer (or the
    interruption) is raised.
    """
    order = {layer.install_target: index for index, layer in enumerate(layers)}
    unpacked: dict[str, _Unpacked] = {}
    errors: list[tuple[int, BaseException]] = []
    unpacking: dict[Future[_Unpacked], ManifestLayer] = {}
    runtimes = _Runtimes(target, order, unpacked)
    cores = jobs or os.cpu_count() or 1
    aheads = _compile_groups(layers, cores)
    try:
        # The block threads outlive the layer threads reading through them.
        with BlockPool(cores, "unpack", slots_per_job=READ_AHEAD_PER_JOB) as blocks, _pool(_workers(len(layers), jobs), stop) as pool, _stopping(aheads):
            _start_ahead(layers, runtimes, aheads)
            unpacking.update(
                {pool.submit(_unpack, artifacts, layer, target, stop, blocks, aheads[layer.install_target]): layer for layer in layers}
            )
            compiling: dict[Future[None], ManifestLayer] = {}
            waiting: list[ManifestLayer] = []
            for future in as_completed(unpacking):
                layer = unpacking[future]
                if future.cancelled():
                    continue
                if (error := future.exception()) is not None:
                    errors.append((order[layer.install_target], error))
                    _stop_all(aheads)  # a group waits for all its layers to be unpacked, and some never will be
                    for unpacking_one in unpacking:
                        unpacking_one.cancel()
                    for compiling_one in compiling:
                        compiling_one.cancel()
                    continue
                unpacked[layer.install_target] = future.result()
                if errors:
                    continue
                _start_ahead(layers, runtimes, aheads)
                if not unpacked[layer.install_target].precompiled:
                    waiting.append(layer)
                for waiter in list(waiting):
                    if (python := runtimes.python(waiter)) is not None:
                        waiting.remove(waiter)
                        folder, ahead = unpacked[waiter.install_target].folder, aheads[waiter.install_target]
                        compiling[pool.submit(_compile, waiter, folder, python, stop, jobs, ahead)] = waiter
            wait(compiling)
        errors += [(order[l.install_target], e) for job, l in compiling.items() if not job.cancelled() and (e := job.exception()) is not None]
        if errors:
            raise min(errors, key=lambda item: item[0])[1]
    except BaseException:
        _stop_all(aheads)  # nothing may write into the folders while they are removed
        _discard_unpacked(unpacking)
        raise
    _stop_all(aheads)  # those of layers that ship their bytecode
    return unpacked


def _discard_unpacked(futures: Iterable[Future[_Unpacked]]) -> None:
    """Remove the folders of the layers unpacked by the (finished) `futures`."""
    for future in futures:
        if future.done() and not future.cancelled() and future.exception() is None:
            remove_marked(future.result().folder)


def _plan(layer: ManifestLayer, target: Path) -> DeployAction:
    final, record = target / layer.install_target, target / RECORD_DIR / f"{layer.install_target}.json"
    if record.is_symlink():
        raise DeployError(f"{record} is a symbolic link: refusing to read or replace a deployment record through it")
    if not os.path.lexists(final):
        return "installed"
    if final.is_symlink() or not final.is_dir():
        raise DeployError(f"{final} exists and is not a layer folder: refusing to replace it")
    recorded = read_record(record) or {}
    return "unchanged" if recorded.get("archive_sha256") == layer.sha256 and "entries" in recorded else "replaced"


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
    manifest = manifest_path(artifacts, platform_manifest)
    target = Path(os.path.abspath(target))
    chosen = select_layers(read_manifest(manifest), include, target)
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
        with locked(target):
            actions = {layer.install_target: _plan(layer, target) for layer in chosen}
            pending = [layer for layer in chosen if actions[layer.install_target] != "unchanged"]
            unpacked = _unpack_all(artifacts, pending, target, stop, jobs)  # every archive checked before any is installed
            actions.update(_install_all(pending, unpacked, target, stop, jobs))
            unpacked = {}
    except BaseException:
        for leftover in unpacked.values():
            remove_marked(leftover.folder)
        if created:
            for folder in (target / RECORD_DIR, target):
                with contextlib.suppress(OSError):
                    folder.rmdir()
        raise
    return [DeployedLayer(l.layer_name, l.install_target, target / l.install_target, actions[l.install_target]) for l in chosen]

