"""Reading a published stack manifest (`venvstacks.json`) for deploying, and choosing the layers to deploy."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from ..errors import DeployError
from ..publish.metadata import METADATA_DIR, LayerMetadata
from .records import CATEGORIES, SHA256, plain_name

__all__ = ["ManifestLayer", "manifest_path", "read_manifest", "select_layers"]


@dataclass(frozen=True)
class ManifestLayer:
    """One layer's (checked) entry in the stack manifest."""

    category: str
    layer_name: str
    install_target: str
    sha256: str
    needs: tuple[str, ...]
    """The install targets of the layers it runs on: its runtime, then its frameworks."""
    entry: LayerMetadata
    """The entry as published (the fields deploying relies on are checked)."""


def manifest_path(artifacts: Path, platform_manifest: str | None) -> Path:
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


def _parse_layer(category: str, entry: object, where: Path) -> ManifestLayer:
    if not isinstance(entry, dict):
        raise DeployError(f"{where}: a {category} entry is not a JSON object")
    hashes, required, size = entry.get("archive_hashes"), entry.get("required_layers", []), entry.get("archive_size")
    sha256 = hashes.get("sha256") if isinstance(hashes, dict) else None
    checks = {
        "layer_name must be a non-empty string": isinstance(entry.get("layer_name"), str) and entry["layer_name"],
        "install_target, runtime_layer and archive_name must be plain names": all(
            plain_name(entry.get(key)) for key in ("install_target", "runtime_layer", "archive_name")
        ),
        "required_layers must be a list of plain names": isinstance(required, list) and all(map(plain_name, required)),
        "archive_size must be a byte count": type(size) is int and size >= 0,
        "archive_hashes.sha256 must be a hex SHA-256 digest": isinstance(sha256, str) and SHA256.fullmatch(sha256),
    }
    problems = [message for message, ok in checks.items() if not ok]
    if problems:
        label = entry.get("layer_name") or entry.get("install_target") or "?"
        raise DeployError(f"{where}: layer {label!r}: " + "; ".join(problems) + " (was this stack published?)")
    target = entry["install_target"]
    needs = tuple(name for name in dict.fromkeys([entry["runtime_layer"], *required]) if name != target)
    return ManifestLayer(category, entry["layer_name"], target, str(sha256), needs, cast("LayerMetadata", entry))


def read_manifest(path: Path) -> list[ManifestLayer]:
    """The manifest's layers: runtimes, frameworks, then applications, each in manifest order."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DeployError(f"cannot read the stack manifest {path}: {exc}") from exc
    groups = data.get("layers") if isinstance(data, dict) else None
    if not isinstance(groups, dict) or not all(isinstance(groups.get(c, []), list) for c in CATEGORIES):
        raise DeployError(f"{path}: not a stack manifest (no 'layers' lists)")
    layers = [_parse_layer(category, entry, path) for category in CATEGORIES for entry in groups.get(category, [])]
    targets = [layer.install_target for layer in layers]
    if duplicates := sorted({name for name in targets if targets.count(name) > 1}):
        raise DeployError(f"{path}: several layers deploy as {', '.join(duplicates)}")
    return layers


def select_layers(layers: list[ManifestLayer], include: Sequence[str], target: Path) -> list[ManifestLayer]:
    """The layers to deploy (all, or those matching `include` with what they need), lowest first."""
    by_target = {layer.install_target: layer for layer in layers}
    chosen = set(by_target) if not include else set()
    for pattern in include:
        matched = {l.install_target for l in layers if fnmatch.fnmatchcase(l.layer_name, pattern) or fnmatch.fnmatchcase(l.install_target, pattern)}
        if not matched:
            raise DeployError(f"no layer of the stack matches {pattern!r}")
        chosen |= matched
    ordered: list[ManifestLayer] = []
    seen: set[str] = set()

    def visit(layer: ManifestLayer) -> None:
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
