"""The JSON documents the commands print with `--json` (docs/commands.md describes them)."""

from __future__ import annotations

from typing import NotRequired, TypedDict

from ..publish.metadata import LayerMetadata

__all__ = [
    "LayerStatus", "StackStatus", "LockedLayer", "LockDocument", "BuiltLayer", "BuildDocument", "PublishedLayerEntry",
    "PublishDocument", "DeployedLayer", "DeployDocument",
]  # fmt: skip


class LayerStatus(TypedDict):
    """One layer in `show --json` (and the `--show --json` plan): layered environments add their dependencies."""

    name: str
    install_target: str
    has_valid_lock: bool
    selected_operations: list[str] | None
    dependencies: NotRequired[list[LayerStatus]]


class StackStatus(TypedDict):
    """`show --json`: the stack's layers by kind."""

    spec_name: str
    runtimes: list[LayerStatus]
    frameworks: list[LayerStatus]
    applications: list[LayerStatus]


class LockedLayer(TypedDict):
    name: str
    action: str
    lock_file: str
    locked_at: str
    lock_version: int


class LockDocument(TypedDict):
    """`lock --json`; `plan` (the layers and their operations) with `--show`."""

    command: str
    spec_path: str
    layers: list[LockedLayer]
    plan: NotRequired[StackStatus]


class PublishedLayerEntry(TypedDict):
    name: str
    path: str
    action: str
    metadata: LayerMetadata


class PublishDocument(TypedDict):
    """`publish --json` and `local-export --json` (and `published` in `build --publish --json`); `plan` with `--show`."""

    command: str
    spec_path: str
    output_dir: str
    dry_run: bool
    manifest: str | None
    layers: list[PublishedLayerEntry]
    plan: NotRequired[StackStatus]


class BuiltLayer(TypedDict):
    name: str
    path: str
    action: str


class BuildDocument(TypedDict):
    """`build --json`; `published` with `--publish`, `plan` with `--show`."""

    command: str
    spec_path: str
    layers: list[BuiltLayer]
    published: NotRequired[PublishDocument]
    plan: NotRequired[StackStatus]


class DeployedLayer(TypedDict):
    name: str
    install_target: str
    path: str
    action: str


class DeployDocument(TypedDict):
    """`deploy --json`."""

    command: str
    artifacts_dir: str
    target: str
    layers: list[DeployedLayer]
