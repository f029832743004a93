"""The `show` command's output: a tree for people, a stable JSON form for programs."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..spec.model import LayerKind, LayerSpec, StackSpec

if TYPE_CHECKING:
    from .documents import LayerStatus, StackStatus

__all__ = ["LockState", "stack_status", "render_tree", "no_locks"]


@dataclass(frozen=True)
class LockState:
    """What the lock files say about one layer."""

    valid: bool
    lock_version: int | None = None
    """The implicit version of a versioned layer, when its lock is valid."""


def no_locks(layer: LayerSpec) -> LockState:
    """The lock state of every layer before anything has been locked."""
    return LockState(valid=False)


def _layer_status(
    layer: LayerSpec, lock_state: Callable[[LayerSpec], LockState], operations: list[str] | None
) -> LayerStatus:
    state = lock_state(layer)
    return {
        "name": layer.build_name,
        "install_target": layer.deployed_name(state.lock_version if state.valid else None),
        "has_valid_lock": state.valid,
        "selected_operations": operations,
    }


def stack_status(
    spec: StackSpec,
    *,
    selected: Collection[str] | None = None,
    lock_state: Callable[[LayerSpec], LockState] = no_locks,
    operations: Mapping[str, Sequence[str]] | None = None,
) -> StackStatus:
    """The JSON form of a stack: each category's layers and, for layered
    environments, their dependencies in sys.path order.

    `selected` limits the output to the layers with those build names;
    `operations` gives the operations a command will run on each layer
    (`selected_operations`, null for layers it leaves alone).
    """

    def ops(layer: LayerSpec) -> list[str] | None:
        found = (operations or {}).get(layer.build_name)
        return list(found) if found else None

    def entries(kind: LayerKind) -> list[LayerStatus]:
        found = []
        for layer in spec.layers():
            if layer.kind is not kind or (selected is not None and layer.build_name not in selected):
                continue
            entry = _layer_status(layer, lock_state, ops(layer))
            if kind is not LayerKind.RUNTIME:
                entry["dependencies"] = [_layer_status(dep, lock_state, ops(dep)) for dep in spec.dependencies(layer)]
            found.append(entry)
        return found

    return {
        "spec_name": str(spec.spec_path),
        "runtimes": entries(LayerKind.RUNTIME),
        "frameworks": entries(LayerKind.FRAMEWORK),
        "applications": entries(LayerKind.APPLICATION),
    }


def _label(entry: LayerStatus) -> str:
    marker = "" if entry["has_valid_lock"] else "*"
    text = marker + entry["name"]
    if entry["install_target"] != entry["name"]:
        text += f" -> {entry['install_target']}"
    if entry["selected_operations"]:
        text += " (" + ", ".join(entry["selected_operations"]) + ")"
    return text


def render_tree(status: StackStatus) -> str:
    """The stack as an indented tree, one layer per line; `*` marks layers without a valid lock."""
    lines = [status["spec_name"]]
    categories = [("runtimes", status["runtimes"]), ("frameworks", status["frameworks"]), ("applications", status["applications"])]
    for index, (category, layers) in enumerate(categories):
        last_category = index == len(categories) - 1
        lines.append(("└── " if last_category else "├── ") + category.capitalize())
        outer = "    " if last_category else "│   "
        for position, entry in enumerate(layers):
            last_entry = position == len(layers) - 1
            lines.append(outer + ("└── " if last_entry else "├── ") + _label(entry))
            inner = outer + ("    " if last_entry else "│   ")
            deps = entry.get("dependencies", [])
            for dep_position, dep in enumerate(deps):
                branch = "└── " if dep_position == len(deps) - 1 else "├── "
                lines.append(inner + branch + _label(dep))
    return "\n".join(lines) + "\n"
