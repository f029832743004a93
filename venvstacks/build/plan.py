"""Which layers a build or publish works on: the selected ones that target this machine."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BuildError
from ..platforms import TargetPlatform, host_platform
from ..spec.model import LayerSpec, StackSpec
from ..spec.selection import Selection

__all__ = ["LayerPlan", "this_platform", "plan_build", "plan_publish"]


@dataclass(frozen=True)
class LayerPlan:
    """The layers a command works on, lowest first, and the selected ones it leaves out."""

    host: TargetPlatform
    layers: tuple[LayerSpec, ...]
    skipped: tuple[LayerSpec, ...]
    """Selected layers that do not target `host`."""


def this_platform() -> TargetPlatform:
    """The platform of this machine; BuildError if venvstacks builds for no such platform."""
    host = host_platform()
    if host is None:
        raise BuildError("this machine is not one of the platforms venvstacks builds for")
    return host


def _on_host(spec: StackSpec, chosen: set[str]) -> LayerPlan:
    host = this_platform()
    layers = [layer for layer in spec.layers() if layer.build_name in chosen]
    return LayerPlan(
        host,
        tuple(layer for layer in layers if host in layer.platforms),
        tuple(layer for layer in layers if host not in layer.platforms),
    )


def plan_build(spec: StackSpec, selection: Selection, *, build_derived: bool) -> LayerPlan:
    """The layers to build: those selected and the layers underneath them (and the layers built on them, if `build_derived`)."""
    chosen = selection.included + selection.dependencies + (selection.derived if build_derived else ())
    return _on_host(spec, {layer.build_name for layer in chosen})


def plan_publish(spec: StackSpec, selection: Selection) -> LayerPlan:
    """The layers to publish or export: exactly those selected (each must be built already)."""
    return _on_host(spec, {layer.build_name for layer in selection.included})
