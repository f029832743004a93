"""Publishing built layers as archives with metadata, and exporting them locally.

Each layer's archive holds the built layer under its deployed folder name,
with `postinstall.py` on top and the launcher and runtime link rewritten for
deployed names. A publish holds the build and output folders for itself,
writes every archive into a staging folder first, and moves them into place
only when all are complete, in an order that never lets metadata describe
a file that is not there (see `_commit`). A layer whose inputs are unchanged
since its last archive is not archived again unless forced.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import importlib.resources
import json
import logging
import os
import shutil
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

from .. import __version__, _hooks, _proc
from ..blockpack import BlockPool
from ..errors import CommandError, PublishError, raise_failures
from ..folderlock import STAGING_DIR, exclusive
from ..fsutil import dump_json, remove_path, write_text_atomic
from ..lock.state import LockCheck, deployed_name
from ..platforms import TargetPlatform
from ..postinstall import DYNLIB_DIR, LAYER_CONFIG, render_python_wrapper
from ..progress import progress
from ..publish.archive import (
    ArchiveFormat,
    check_format,
    FileEntry,
    LinkEntry,
    archived_entries,
    excluded,
    shipped_bytecode,
    write_layer_archive,
)
from ..publish.manifest import (
    MANIFEST,
    ManifestEntry,
    render_manifest,
    scan_tree,
    written_on_target,
)
from ..publish.metadata import (
    LayerMetadata,
    StackManifest,
    METADATA_DIR,
    archive_file_name,
    layer_metadata,
    manifest_file_name,
    metadata_file_name,
    stack_manifest,
    with_archive,
)
from ..runtimes.unpack import runtime_python
from ..spec.model import LayerSpec, RuntimeSpec, StackSpec

__all__ = ["PublishSettings", "PublishedLayer", "publish_layers", "export_layers", "postinstall_source", "stack_metadata_path"]

_LOG = logging.getLogger(__name__)
_INPUTS_DIR = "archive_inputs"
_X86_64 = frozenset({TargetPlatform.LINUX_X86_64, TargetPlatform.MACOSX_X86_64, TargetPlatform.WIN_AMD64})
"""Platforms whose layers get xz's x86 branch filter."""


PublishAction = Literal["archived", "exported", "unchanged", "dry run"]
"""What a run did with one layer."""


@dataclass(frozen=True)
class PublishSettings:
    """Where archives go and how they are made."""

    build_dir: Path
    output_dir: Path
    platform: TargetPlatform
    fmt: ArchiveFormat = ArchiveFormat.TAR_XZ
    tag_outputs: bool = False
    force: bool = False
    dry_run: bool = False
    precompile: bool = False
    """Ship hash-checked bytecode compiled by each layer's runtime, so deploying compiles nothing."""
    jobs: int | None = None
    """How many threads compress at once, over all layers (None: one per core)."""
    level: int | None = None
    """The compression level (None: the format's default)."""

    def __post_init__(self) -> None:
        check_format(self.fmt, self.level)


def stack_metadata_path(settings: PublishSettings, *, export: bool) -> Path:
    """Where a publish (or local export) writes the stack's metadata, `venvstacks.json` or its tagged name."""
    name = "venvstacks.json" if export else manifest_file_name(settings.platform, tagged=settings.tag_outputs)
    return settings.output_dir / METADATA_DIR / name


@dataclass(frozen=True)
class PublishedLayer:
    """One layer's published (or exported) result."""

    build_name: str
    path: Path
    """The archive, or the exported folder."""
    metadata: LayerMetadata
    action: PublishAction
    """`archived`, `exported`, `unchanged` or `dry run`."""


@functools.cache
def postinstall_source() -> bytes:
    """The deploy-time script shipped in every layer (read once from the package, zipapp or not)."""
    return importlib.resources.files("venvstacks").joinpath("postinstall.py").read_bytes()


def _cache_tag(spec: StackSpec, layer: LayerSpec) -> str:
    """The bytecode file tag of the layer's runtime (`cpython-311`)."""
    return "cpython-" + spec.runtime_of(layer).python_implementation.short_version.replace(".", "")


# Compiles every source under a folder with hash-checked bytecode in one process, in sorted
# order, so that the same sources give the same bytes; problems are printed, never fatal.
_COMPILE_SCRIPT = """\
import compileall, py_compile, sys
compileall.compile_dir(sys.argv[1], ddir=sys.argv[2], quiet=1, force=True,
                       invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
"""


def _compile_bytecode(spec: StackSpec, layer: LayerSpec, source: Path, root: str, settings: PublishSettings) -> None:
    """Compile the built layer's sources in place with its runtime, as `root/lib/...` for tracebacks."""
    lib = source / "lib"
    if not lib.is_dir():
        return
    python = runtime_python(settings.build_dir / spec.runtime_of(layer).build_name)
    command: list[str | os.PathLike[str]] = [python, "-X", "utf8", "-S", "-c", _COMPILE_SCRIPT, lib, f"{root}/lib"]
    try:
        result = _proc.run(command, description=f"compiling the bytecode of layer {layer.build_name!r}", env={"PYTHONHASHSEED": "0"})
    except CommandError as exc:
        raise PublishError(str(exc)) from exc
    if problems := [line for line in result.stdout.splitlines() if line.startswith("***")]:
        _LOG.warning("layer %r: %d source files did not compile and ship without bytecode (first: %s)",
                     layer.build_name, len(problems), problems[0].removeprefix("*** "))  # fmt: skip


def _overrides(
    spec: StackSpec, layer: LayerSpec, checks: Mapping[str, LockCheck], source: Path, *, precompiled: bool
) -> dict[str, FileEntry | LinkEntry | None]:
    """The files that differ between the build tree and a deployed layer."""
    overrides: dict[str, FileEntry | LinkEntry | None] = {"postinstall.py": FileEntry(postinstall_source())}
    if precompiled:
        config = json.loads((source / LAYER_CONFIG).read_text(encoding="utf-8"))
        config["precompiled"] = True
        overrides[LAYER_CONFIG] = FileEntry((dump_json(config)).encode("utf-8"))
    if not isinstance(layer, RuntimeSpec):
        runtime = spec.runtime_of(layer)
        dynlib_dirs = [f"../../{deployed_name(dep, checks)}/{DYNLIB_DIR}" for dep in spec.dependencies(layer)]
        wrapper = render_python_wrapper(dynlib_dirs, macos=sys.platform == "darwin")
        overrides["bin/python"] = FileEntry(wrapper.encode("utf-8"), 0o755)
        overrides["bin/python_"] = LinkEntry(f"../../{deployed_name(runtime, checks)}/bin/python3")
    return overrides


def _manifest(install_target: str, source: Path, overrides: Mapping[str, FileEntry | LinkEntry | None], entries: Mapping[str, ManifestEntry]) -> bytes:
    """The layer manifest of a layer shipped with these entries (see manifest.py)."""

    def shipped(rel: str) -> bytes:
        entry = overrides.get(rel)
        return entry.content if isinstance(entry, FileEntry) else (source / rel).read_bytes()

    config = json.loads(shipped(LAYER_CONFIG))
    return render_manifest(install_target, entries, written_on_target(config, entries, shipped))


def _clamp(locked_at: str) -> int:
    stamp = datetime.datetime.fromisoformat(locked_at)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.UTC)
    return int(stamp.timestamp())


def _inputs_digest(build_dir: Path, layer: LayerSpec, base: LayerMetadata, fmt: str, precompile: bool, level: int | None = None) -> str:
    """A digest of everything that decides an archive's content and metadata."""
    record = build_dir / f"{layer.build_name}.last-build.json"
    parts = [
        __version__, fmt, dump_json(base), record.read_text(encoding="utf-8"),
        hashlib.sha256(postinstall_source()).hexdigest(), "bytecode" if precompile else "sources", f"level {level}",
    ]  # fmt: skip
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _require_built(settings: PublishSettings, layer: LayerSpec) -> Path:
    path = settings.build_dir / layer.build_name
    if not (settings.build_dir / f"{layer.build_name}.last-build.json").exists():
        msg = f"layer {layer.build_name!r} has not been built (run 'venvstacks build' first)"
        raise PublishError(msg)
    return path


@dataclass(frozen=True)
class _Staged:
    """A layer archived into the staging folder, with the files that describe it, not yet in place."""

    layer: PublishedLayer
    staged: Path
    """The complete archive, under its final name in the staging folder."""
    meta_path: Path
    inputs_path: Path
    inputs_digest: str


def _meta_paths(settings: PublishSettings, layer: LayerSpec) -> tuple[Path, Path]:
    """Where a layer's published metadata and the digest of its archive's inputs go."""
    name = metadata_file_name(layer.build_name, settings.platform, tagged=settings.tag_outputs)
    meta_dir = settings.output_dir / METADATA_DIR
    return meta_dir / "env_metadata" / name, meta_dir / _INPUTS_DIR / name


def _still_current(settings: PublishSettings, previous: Mapping[str, object], base: LayerMetadata, inputs_path: Path, digest: str) -> bool:
    """Whether the previous archive and metadata are still what this publish would write."""
    archive = settings.output_dir / str(previous.get("archive_name"))
    try:
        return (
            archive.stat().st_size == previous.get("archive_size")
            and inputs_path.read_text(encoding="utf-8").strip() == digest
            and all(previous.get(key) == value for key, value in base.items())
        )
    except OSError:
        return False


def _publish_one(
    spec: StackSpec, layer: LayerSpec, checks: Mapping[str, LockCheck], settings: PublishSettings, pool: BlockPool
) -> PublishedLayer | _Staged:
    """Archive one layer into the staging folder (or report it unchanged, or planned for a dry run)."""
    source = _require_built(settings, layer)
    base = layer_metadata(spec, layer, checks)
    meta_path, inputs_path = _meta_paths(settings, layer)
    previous: Mapping[str, object] = {}
    try:
        found = json.loads(meta_path.read_text(encoding="utf-8"))
        previous = found if isinstance(found, dict) else {}
    except (OSError, ValueError):
        pass
    digest = _inputs_digest(settings.build_dir, layer, base, settings.fmt.value, settings.precompile, settings.level)
    if not settings.force and previous and _still_current(settings, previous, base, inputs_path, digest):
        written = cast(LayerMetadata, previous)  # what the last publish wrote, still what this one would
        return PublishedLayer(layer.build_name, settings.output_dir / written["archive_name"], written, "unchanged")
    last_build = previous.get("archive_build", 0) if previous.get("lock_version") == base["lock_version"] else 0
    build = 1 + (last_build if isinstance(last_build, int) else 0)
    name = archive_file_name(base["install_target"], settings.fmt.suffix, platform=settings.platform, build=build, tagged=settings.tag_outputs)
    if settings.dry_run:
        metadata = with_archive(base, archive_build=build, archive_name=name, platform=settings.platform)
        return PublishedLayer(layer.build_name, settings.output_dir / name, metadata, "dry run")
    cache_tag = None
    if settings.precompile:
        progress(_LOG, "compiling the bytecode of layer %r", layer.build_name)
        _compile_bytecode(spec, layer, source, base["install_target"], settings)
        cache_tag = _cache_tag(spec, layer)
    progress(_LOG, "archiving layer %r as %s", layer.build_name, name)
    overrides = _overrides(spec, layer, checks, source, precompiled=settings.precompile)
    entries = archived_entries(source, overrides, cache_tag, settings.jobs)
    manifest = _manifest(base["install_target"], source, overrides, entries)
    overrides[MANIFEST] = FileEntry(manifest)
    result = write_layer_archive(
        source, settings.output_dir / STAGING_DIR / name, root=base["install_target"], clamp=_clamp(base["locked_at"]),
        fmt=settings.fmt, overrides=overrides, cache_tag=cache_tag, pool=pool, level=settings.level,
        x86_code=settings.platform in _X86_64,
    )  # fmt: skip
    metadata = with_archive(
        base, archive_build=build, archive_name=name, platform=settings.platform, size=result.size, sha256=result.sha256,
        manifest_sha256=hashlib.sha256(manifest).hexdigest(),
    )  # fmt: skip
    published = PublishedLayer(layer.build_name, settings.output_dir / name, metadata, "archived")
    return _Staged(published, result.path, meta_path, inputs_path, digest)


def _commit(settings: PublishSettings, staged: list[_Staged], manifest_path: Path, manifest: StackManifest) -> None:
    """Move staged archives into place so that no metadata file ever describes another file.

    The stack manifest goes first and comes back last, so while it is absent
    the output is visibly unfinished. Each layer's metadata (and the digest of
    its inputs, which lets the next publish skip it) is removed before its
    archive is replaced, and written after.
    """
    _hooks.pause("publish-commit")
    if staged:
        manifest_path.unlink(missing_ok=True)
    for item in staged:
        item.inputs_path.unlink(missing_ok=True)
        item.meta_path.unlink(missing_ok=True)
        os.replace(item.staged, item.layer.path)
        _hooks.pause("publish-moved")
        write_text_atomic(item.meta_path, dump_json(item.layer.metadata))
        write_text_atomic(item.inputs_path, item.inputs_digest + "\n")
    write_text_atomic(manifest_path, dump_json(manifest))


def _holding_folders(settings: PublishSettings, command: str) -> contextlib.ExitStack:
    """Exclusive use of the build folder (read, and compiled into with --precompile) and the output folder."""
    stack = contextlib.ExitStack()
    if settings.dry_run:
        return stack  # reads only
    try:
        stack.enter_context(exclusive(settings.build_dir, command=command))
        if os.path.realpath(settings.output_dir) != os.path.realpath(settings.build_dir):
            nested = (METADATA_DIR, f"{METADATA_DIR}/env_metadata", f"{METADATA_DIR}/{_INPUTS_DIR}")
            stack.enter_context(exclusive(settings.output_dir, command=command, nested=nested))
    except BaseException:
        stack.close()
        raise
    return stack


def publish_layers(
    spec: StackSpec, layers: list[LayerSpec], checks: Mapping[str, LockCheck], settings: PublishSettings
) -> list[PublishedLayer]:
    """Archive `layers` in parallel into a staging folder, then move them into place with their metadata.

    If any layer fails, or the run is interrupted, nothing in the output
    folder changes (the staging folder goes when the folder lock is let go).
    See `_commit` for the order in which files are replaced.
    """
    jobs = settings.jobs or os.cpu_count() or 1
    with _holding_folders(settings, "publish"), BlockPool(jobs) as compressors:
        # One thread per layer writes its tar stream; all of them share the compressing threads.
        with ThreadPoolExecutor(max_workers=max(1, min(len(layers), jobs))) as pool:
            futures = [pool.submit(_publish_one, spec, layer, checks, settings, compressors) for layer in layers]
        raise_failures([error for future in futures if (error := future.exception()) is not None])
        results = [future.result() for future in futures]
        published = [item.layer if isinstance(item, _Staged) else item for item in results]
        if not settings.dry_run:
            manifest = stack_manifest(spec, {p.build_name: p.metadata for p in published})
            _commit(settings, [item for item in results if isinstance(item, _Staged)], stack_metadata_path(settings, export=False), manifest)
    return published


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _copy_tree(source: Path, target: Path, overrides: Mapping[str, FileEntry | LinkEntry | None], cache_tag: str | None) -> None:
    """Copy a built layer as it would be unpacked: hard links where possible, deployed files swapped in."""
    for root, dirs, files in os.walk(source):
        rel_root = Path(root).relative_to(source)
        if cache_tag and rel_root.parts and "__pycache__" in dirs and (kept := shipped_bytecode(Path(root, "__pycache__"), cache_tag)):
            (target / rel_root / "__pycache__").mkdir(parents=True)
            for name in kept:
                _link_or_copy(Path(root, "__pycache__", name), target / rel_root / "__pycache__" / name)
        dirs[:] = sorted(d for d in dirs if not excluded(rel_root / d, is_dir=True) and not (Path(root) / d).is_symlink())
        (target / rel_root).mkdir(parents=True, exist_ok=True)
        entries = sorted(files) + sorted(d for d in os.listdir(root) if (Path(root) / d).is_symlink() and (Path(root) / d).is_dir())
        for name in entries:
            rel = rel_root / name
            if excluded(rel, is_dir=False) or rel.as_posix() in overrides:
                continue
            src, dst = Path(root) / name, target / rel
            if src.is_symlink():
                os.symlink(os.readlink(src), dst)
                continue
            _link_or_copy(src, dst)
    for rel_path, entry in overrides.items():
        dst = target / rel_path
        if entry is None:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(entry, LinkEntry):
            os.symlink(entry.target, dst)
        else:
            dst.write_bytes(entry.content)
            dst.chmod(entry.mode)


def _export_one(spec: StackSpec, layer: LayerSpec, checks: Mapping[str, LockCheck], settings: PublishSettings) -> PublishedLayer:
    """Export one layer unless it is unchanged; its metadata is removed first and written last."""
    source = _require_built(settings, layer)
    base = layer_metadata(spec, layer, checks)
    target = settings.output_dir / base["install_target"]
    meta_dir = settings.output_dir / METADATA_DIR
    meta_path = meta_dir / "env_metadata" / f"{layer.build_name}.json"
    inputs_path = meta_dir / _INPUTS_DIR / f"{layer.build_name}.json"
    digest = _inputs_digest(settings.build_dir, layer, base, "export", settings.precompile)
    try:
        same = json.loads(meta_path.read_text(encoding="utf-8")) == base and inputs_path.read_text(encoding="utf-8").strip() == digest
    except (OSError, ValueError):
        same = False
    if same and not settings.force and target.is_dir():
        return PublishedLayer(layer.build_name, target, base, "unchanged")
    if settings.dry_run:
        return PublishedLayer(layer.build_name, target, base, "dry run")
    progress(_LOG, "exporting layer %r to %s", layer.build_name, target)
    stack_metadata_path(settings, export=True).unlink(missing_ok=True)
    inputs_path.unlink(missing_ok=True)
    meta_path.unlink(missing_ok=True)
    cache_tag = None
    if settings.precompile:
        _compile_bytecode(spec, layer, source, base["install_target"], settings)
        cache_tag = _cache_tag(spec, layer)
    partial = settings.output_dir / STAGING_DIR / target.name
    remove_path(partial)
    overrides = _overrides(spec, layer, checks, source, precompiled=settings.precompile)
    _copy_tree(source, partial, overrides, cache_tag)
    manifest = _manifest(target.name, partial, {}, scan_tree(partial, settings.jobs))
    write_text_atomic(partial / MANIFEST, manifest.decode("utf-8"))
    remove_path(target)
    os.replace(partial, target)
    python = settings.output_dir / deployed_name(spec.runtime_of(layer), checks) / "bin" / "python3"
    try:
        _proc.run([python, "-X", "utf8", "-I", target / "postinstall.py"], description=f"running the post-install step of {target.name!r}")
    except CommandError as exc:
        raise PublishError(str(exc)) from exc
    write_text_atomic(meta_path, dump_json(base))
    write_text_atomic(inputs_path, digest + "\n")
    return PublishedLayer(layer.build_name, target, base, "exported")


def export_layers(
    spec: StackSpec, layers: list[LayerSpec], checks: Mapping[str, LockCheck], settings: PublishSettings
) -> list[PublishedLayer]:
    """Export `layers` to `<output>/<deployed name>` as unpacked archives would be, post-install run.

    The stack manifest `venvstacks.json` is removed before the first layer
    changes and written when all are done; a layer's metadata exists only
    while its folder is complete.
    """
    with _holding_folders(settings, "local-export"):
        exported = [_export_one(spec, layer, checks, settings) for layer in layers]
        if not settings.dry_run:
            manifest = stack_manifest(spec, {p.build_name: p.metadata for p in exported})
            write_text_atomic(stack_metadata_path(settings, export=True), dump_json(manifest))
    return exported
