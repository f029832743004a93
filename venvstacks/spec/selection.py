"""Choosing layers with `--include` patterns, as upstream venvstacks does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from ..errors import SelectionError
from ..spec.model import LayerSpec, StackSpec

__all__ = ["Selection", "select_layers", "choose_layers", "lock_wants"]


@dataclass(frozen=True)
class Selection:
    """The layers picked by `--include` patterns, grouped by why they were picked."""

    included: tuple[LayerSpec, ...]
    """Layers whose build name matches a pattern."""
    dependencies: tuple[LayerSpec, ...]
    """Layers underneath an included layer (and not included themselves)."""
    derived: tuple[LayerSpec, ...]
    """Layers built on an included layer (and not included themselves)."""
    unmatched_patterns: tuple[str, ...]
    """Patterns that matched no layer."""

    @property
    def layers(self) -> tuple[LayerSpec, ...]:
        """Every picked layer."""
        return self.included + self.dependencies + self.derived

    @property
    def build_names(self) -> frozenset[str]:
        """The build names of every picked layer."""
        return frozenset(layer.build_name for layer in self.layers)


def select_layers(spec: StackSpec, patterns: Sequence[str] | None) -> Selection:
    """Pick the layers matching any of `patterns` (all layers when there are none).

    Patterns are shell-style wildcards matched against build names (`app-*`,
    `framework-*`, runtime names as written). Matching is case-sensitive.
    """
    layers = tuple(spec.layers())
    if not patterns:
        return Selection(layers, (), (), ())
    included = tuple(
        layer for layer in layers if any(fnmatchcase(layer.build_name, p) for p in patterns)
    )
    unmatched = tuple(
        p for p in dict.fromkeys(patterns) if not any(fnmatchcase(layer.build_name, p) for layer in layers)
    )
    below = {dep.build_name for layer in included for dep in spec.dependencies(layer)}
    chosen = {layer.build_name for layer in included}
    dependencies = tuple(layer for layer in layers if layer.build_name in below - chosen)
    derived = tuple(
        layer
        for layer in layers
        if layer.build_name not in chosen | below
        and any(dep.build_name in chosen for dep in spec.dependencies(layer))
    )
    return Selection(included, dependencies, derived, unmatched)


def choose_layers(spec: StackSpec, patterns: Sequence[str] | None, *, option: str, allow_missing: bool) -> Selection:
    """`select_layers`, refusing patterns that match nothing (SelectionError) unless `allow_missing`.

    With `allow_missing` the selection's `unmatched_patterns` say which
    patterns the caller should warn about.
    """
    selection = select_layers(spec, patterns)
    if selection.unmatched_patterns and not allow_missing:
        raise SelectionError(option, selection.unmatched_patterns)
    return selection


def lock_wants(
    spec: StackSpec, selection: Selection, *, if_needed: bool, lock_dependencies: bool
) -> dict[str, bool | None]:
    """What `lock` should do to each picked layer: True relocks it, None locks it only if needed.

    Included layers and the layers built on them follow `--if-needed`; the
    layers underneath are locked only if needed, unless `--lock-dependencies`.
    """
    chosen: bool | None = None if if_needed else True
    wants: dict[str, bool | None] = {}
    for layer in selection.included + selection.derived:
        wants[layer.build_name] = chosen
    for layer in selection.dependencies:
        wants[layer.build_name] = chosen if lock_dependencies else None
    return wants
