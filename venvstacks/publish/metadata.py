"""The metadata published next to layer archives, in upstream venvstacks' format.

`__venvstacks__/venvstacks.json` lists the layers published in a run, by
category; `__venvstacks__/env_metadata/<layer>.json` holds one layer's entry.
Both carry the same fields as upstream's, so its consumers read ours unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Required, TypedDict

from ..lock.files import module_hash
from ..lock.state import LockCheck, deployed_name
from ..platforms import TargetPlatform
from ..spec.model import ApplicationSpec, LayerSpec, RuntimeSpec, StackSpec

__all__ = [
    "Digests", "LayerMetadata", "StackManifest", "SupportModule", "layer_metadata", "with_archive", "archive_file_name", "stack_manifest",
    "METADATA_DIR",
]  # fmt: skip

METADATA_DIR = "__venvstacks__"


class Digests(TypedDict):
    """`{"sha256": "<hex digest>"}`."""

    sha256: str


class SupportModule(TypedDict):
    """An application's support module: its importable name and content hash."""

    name: str
    hash: str


class LayerMetadata(TypedDict, total=False):
    """`env_metadata/<layer>.json`, and each entry of `venvstacks.json` (docs/deploying.md describes every field)."""

    layer_name: Required[str]
    install_target: Required[str]
    requirements_hash: Required[str]
    lock_version: Required[int]
    locked_at: Required[str]
    runtime_layer: Required[str]
    python_implementation: Required[str]
    bound_to_implementation: Required[bool]
    required_layers: list[str]
    """Frameworks and applications."""
    app_launch_module: str
    app_launch_module_hash: str
    app_support_modules: list[SupportModule]
    archive_build: int
    """This and the rest: published layers (`archive_size` and the hashes once the archive is written)."""
    archive_name: str
    target_platform: str
    archive_size: int
    archive_hashes: Digests
    manifest_hashes: Digests
    """Ours: upstream has no layer manifest."""


class StackManifest(TypedDict):
    """`venvstacks.json`: every layer of a publish run, by category (`applications`, `frameworks`, `runtimes`)."""

    layers: dict[str, list[LayerMetadata]]


def layer_metadata(spec: StackSpec, layer: LayerSpec, checks: Mapping[str, LockCheck]) -> LayerMetadata:
    """A layer's metadata without the archive fields (what local export publishes)."""
    metadata = checks[layer.build_name].metadata
    assert metadata is not None

    def deployed(other: LayerSpec) -> str:
        return deployed_name(other, checks)

    runtime = spec.runtime_of(layer)
    data: LayerMetadata = {
        "layer_name": layer.build_name,
        "install_target": deployed(layer),
        "requirements_hash": metadata.requirements_hash,
        "lock_version": metadata.lock_version,
        "locked_at": metadata.locked_at,
        "runtime_layer": deployed(runtime),
        "python_implementation": str(runtime.python_implementation),
        "bound_to_implementation": isinstance(layer, RuntimeSpec),
    }
    if not isinstance(layer, RuntimeSpec):
        data["required_layers"] = [deployed(spec.framework(name)) for name in layer.linearised_frameworks]
    if isinstance(layer, ApplicationSpec):
        data["app_launch_module"] = layer.launch_module_name
        data["app_launch_module_hash"] = module_hash(layer.launch_module)
        if layer.support_modules:
            data["app_support_modules"] = [
                {"name": path.stem, "hash": module_hash(path)} for path in layer.support_modules
            ]
    return data


def archive_file_name(install_target: str, suffix: str, *, platform: TargetPlatform, build: int, tagged: bool) -> str:
    """`<install target><suffix>`, or `<install target>-<platform>-<build><suffix>` when tagged."""
    return f"{install_target}-{platform}-{build}{suffix}" if tagged else f"{install_target}{suffix}"


def with_archive(
    base: LayerMetadata,
    *,
    archive_build: int,
    archive_name: str,
    platform: TargetPlatform,
    size: int | None = None,
    sha256: str | None = None,
    manifest_sha256: str | None = None,
) -> LayerMetadata:
    """A layer's published metadata: the base fields plus the archive's (size and hashes once written).

    `manifest_hashes` (the sha256 of the manifest inside the archive) is ours: upstream has no manifest.
    """
    data = base.copy()
    data["archive_build"], data["archive_name"], data["target_platform"] = archive_build, archive_name, str(platform)
    if size is not None and sha256 is not None:
        data["archive_size"], data["archive_hashes"] = size, {"sha256": sha256}
    if manifest_sha256 is not None:
        data["manifest_hashes"] = {"sha256": manifest_sha256}
    return data


def stack_manifest(spec: StackSpec, entries: Mapping[str, LayerMetadata]) -> StackManifest:
    """`venvstacks.json`: the given layers' entries (by build name) by category, in definition order."""
    layers: dict[str, list[LayerMetadata]] = {"applications": [], "frameworks": [], "runtimes": []}
    for layer in spec.layers():
        if layer.build_name in entries:
            layers[layer.kind.category].append(entries[layer.build_name])
    return {"layers": layers}


def metadata_file_name(layer_name: str, platform: TargetPlatform, *, tagged: bool) -> str:
    """`env_metadata/<layer>.json`, or `<layer>-<platform>.json` when tagged."""
    return f"{layer_name}-{platform}.json" if tagged else f"{layer_name}.json"


def manifest_file_name(platform: TargetPlatform, *, tagged: bool) -> str:
    """`venvstacks.json`, or `venvstacks-<platform>.json` when tagged."""
    return f"venvstacks-{platform}.json" if tagged else "venvstacks.json"
