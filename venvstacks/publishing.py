"""Publishing built layers as archives with metadata, and exporting them locally.

Each layer's archive holds the built layer under its deployed folder name,
with `postinstall.py` on top and the launcher and runtime link rewritten for
deployed names. Archives (and metadata) are written under temporary names and
renamed when complete. A layer whose inputs are unchanged since its last
archive is not archived again unless forced.
"""

from __future__ import annotations

import datetime
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
from typing import Any

from . import __version__, _proc
from .archive import ArchiveFormat, FileEntry, LinkEntry, write_layer_archive
from .errors import BuildError, CommandError, VenvStacksError
from .fsutil import remove_path, write_text_atomic
from .lockstate import LockCheck
from .platforms import TargetPlatform
from .postinstall import DYNLIB_DIR, render_python_wrapper
from .pubmeta import (
    METADATA_DIR,
    archive_file_name,
    dump_json,
    layer_metadata,
    manifest_file_name,
    metadata_file_name,
    stack_manifest,
    with_archive,
)
from .spec import LayerSpec, RuntimeSpec, StackSpec

__all__ = ["PublishSettings", "PublishedLayer", "publish_layers", "export_layers", "postinstall_source"]

_LOG = logging.getLogger(__name__)
_INPUTS_DIR = "archive_inputs"


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


@dataclass(frozen=True)
class PublishedLayer:
    """One layer's published (or exported) result."""

    build_name: str
    path: Path
    """The archive, or the exported folder."""
    metadata: Mapping[str, Any]
    action: str
    """`archived`, `exported`, `unchanged` or `dry run`."""


def postinstall_source() -> bytes:
    """The deploy-time script shipped in every layer (read from the package, zipapp or not)."""
    return importlib.resources.files("venvstacks").joinpath("postinstall.py").read_bytes()


def _deployed(layer: LayerSpec, checks: Mapping[str, LockCheck]) -> str:
    return layer.deployed_name(checks[layer.build_name].lock_version)


def _overrides(spec: StackSpec, layer: LayerSpec, checks: Mapping[str, LockCheck]) -> dict[str, FileEntry | LinkEntry | None]:
    """The files that differ between the build tree and a deployed layer."""
    overrides: dict[str, FileEntry | LinkEntry | None] = {"postinstall.py": FileEntry(postinstall_source())}
    if not isinstance(layer, RuntimeSpec):
        runtime = spec.runtime(layer.runtime)
        dynlib_dirs = [f"../../{_deployed(dep, checks)}/{DYNLIB_DIR}" for dep in spec.dependencies(layer)]
        wrapper = render_python_wrapper(dynlib_dirs, macos=sys.platform == "darwin")
        overrides["bin/python"] = FileEntry(wrapper.encode("utf-8"), 0o755)
        overrides["bin/python_"] = LinkEntry(f"../../{_deployed(runtime, checks)}/bin/python3")
    return overrides


def _clamp(locked_at: str) -> int:
    stamp = datetime.datetime.fromisoformat(locked_at)
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=datetime.timezone.utc)
    return int(stamp.timestamp())


def _inputs_digest(build_dir: Path, layer: LayerSpec, base: Mapping[str, Any], fmt: str) -> str:
    """A digest of everything that decides an archive's content and metadata."""
    record = build_dir / f"{layer.build_name}.last-build.json"
    parts = [
        __version__, fmt, dump_json(base), record.read_text(encoding="utf-8"),
        hashlib.sha256(postinstall_source()).hexdigest(),
    ]  # fmt: skip
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _require_built(settings: PublishSettings, layer: LayerSpec) -> Path:
    path = settings.build_dir / layer.build_name
    if not (settings.build_dir / f"{layer.build_name}.last-build.json").exists():
        msg = f"layer {layer.build_name!r} has not been built (run 'venvstacks build' first)"
        raise BuildError(msg)
    return path


def _publish_one(spec: StackSpec, layer: LayerSpec, checks: Mapping[str, LockCheck], settings: PublishSettings) -> PublishedLayer:
    source = _require_built(settings, layer)
    base = layer_metadata(spec, layer, checks)
    tagged = settings.tag_outputs
    meta_dir = settings.output_dir / METADATA_DIR
    meta_path = meta_dir / "env_metadata" / metadata_file_name(layer.build_name, settings.platform, tagged=tagged)
    inputs_path = meta_dir / _INPUTS_DIR / metadata_file_name(layer.build_name, settings.platform, tagged=tagged)
    previous: dict[str, Any] = {}
    try:
        previous = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    digest = _inputs_digest(settings.build_dir, layer, base, settings.fmt.value)
    build = previous.get("archive_build", 0) if previous.get("lock_version") == base["lock_version"] else 0
    suffix = settings.fmt.suffix
    unchanged = (
        not settings.force
        and previous
        and (settings.output_dir / str(previous.get("archive_name"))).exists()
        and inputs_path.exists()
        and inputs_path.read_text(encoding="utf-8").strip() == digest
        and all(previous.get(key) == value for key, value in base.items())
    )
    if unchanged:
        return PublishedLayer(layer.build_name, settings.output_dir / previous["archive_name"], previous, "unchanged")
    build += 1
    name = archive_file_name(base["install_target"], suffix, platform=settings.platform, build=build, tagged=tagged)
    if settings.dry_run:
        metadata = with_archive(base, archive_build=build, archive_name=name, platform=settings.platform)
        return PublishedLayer(layer.build_name, settings.output_dir / name, metadata, "dry run")
    _LOG.info("archiving layer %r as %s", layer.build_name, name)
    result = write_layer_archive(
        source, settings.output_dir / name, root=base["install_target"], clamp=_clamp(base["locked_at"]),
        fmt=settings.fmt, overrides=_overrides(spec, layer, checks),
    )  # fmt: skip
    metadata = with_archive(
        base, archive_build=build, archive_name=name, platform=settings.platform, size=result.size, sha256=result.sha256
    )
    write_text_atomic(meta_path, dump_json(metadata))
    write_text_atomic(inputs_path, digest + "\n")
    return PublishedLayer(layer.build_name, result.path, metadata, "archived")


def publish_layers(
    spec: StackSpec, layers: list[LayerSpec], checks: Mapping[str, LockCheck], settings: PublishSettings
) -> list[PublishedLayer]:
    """Archive `layers` in parallel, then write the stack manifest listing them."""
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, min(len(layers), os.cpu_count() or 1))) as pool:
        futures = [pool.submit(_publish_one, spec, layer, checks, settings) for layer in layers]
    failures = [f.exception() for f in futures if f.exception() is not None]
    if failures:
        errors = [str(e) for e in failures if isinstance(e, VenvStacksError)]
        if len(errors) != len(failures):
            raise next(e for e in failures if not isinstance(e, VenvStacksError))  # type: ignore[misc]
        raise BuildError("\n".join(errors))
    published = [f.result() for f in futures]
    if not settings.dry_run:
        manifest = stack_manifest(spec, {p.build_name: p.metadata for p in published})
        path = settings.output_dir / METADATA_DIR / manifest_file_name(settings.platform, tagged=settings.tag_outputs)
        write_text_atomic(path, dump_json(manifest))
    return published


def _copy_tree(source: Path, target: Path, overrides: Mapping[str, FileEntry | LinkEntry | None]) -> None:
    """Copy a built layer as it would be unpacked: hard links where possible, deployed files swapped in."""
    from .archive import excluded

    for root, dirs, files in os.walk(source):
        rel_root = Path(root).relative_to(source)
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
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
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


def export_layers(
    spec: StackSpec, layers: list[LayerSpec], checks: Mapping[str, LockCheck], settings: PublishSettings
) -> list[PublishedLayer]:
    """Export `layers` to `<output>/<deployed name>` as unpacked archives would be, post-install run."""
    exported: list[PublishedLayer] = []
    meta_dir = settings.output_dir / METADATA_DIR
    for layer in layers:
        source = _require_built(settings, layer)
        base = layer_metadata(spec, layer, checks)
        target = settings.output_dir / base["install_target"]
        meta_path = meta_dir / "env_metadata" / f"{layer.build_name}.json"
        inputs_path = meta_dir / _INPUTS_DIR / f"{layer.build_name}.json"
        digest = _inputs_digest(settings.build_dir, layer, base, "export")
        try:
            same = json.loads(meta_path.read_text(encoding="utf-8")) == base and inputs_path.read_text(encoding="utf-8").strip() == digest
        except (OSError, ValueError):
            same = False
        if same and not settings.force and target.is_dir():
            exported.append(PublishedLayer(layer.build_name, target, base, "unchanged"))
            continue
        if settings.dry_run:
            exported.append(PublishedLayer(layer.build_name, target, base, "dry run"))
            continue
        partial = target.with_name(target.name + ".partial")
        for stale in (partial, target):
            remove_path(stale)
        _copy_tree(source, partial, _overrides(spec, layer, checks))
        os.replace(partial, target)
        runtime = layer if isinstance(layer, RuntimeSpec) else spec.runtime(layer.runtime)
        python = settings.output_dir / _deployed(runtime, checks) / "bin" / "python3"
        try:
            _proc.run([python, "-X", "utf8", "-I", target / "postinstall.py"], description=f"running the post-install step of {target.name!r}")
        except CommandError as exc:
            raise BuildError(str(exc)) from None
        write_text_atomic(meta_path, dump_json(base))
        write_text_atomic(inputs_path, digest + "\n")
        exported.append(PublishedLayer(layer.build_name, target, base, "exported"))
    if not settings.dry_run:
        manifest = stack_manifest(spec, {p.build_name: p.metadata for p in exported})
        write_text_atomic(meta_dir / "venvstacks.json", dump_json(manifest))
    return exported
