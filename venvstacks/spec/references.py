"""References between layers: which runtime and frameworks a layer builds on.

A `LayerRegistry` holds the layers checked so far, plus the names of every
layer in the file, so a reference to a later layer is told apart from a typo
or a cycle.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..spec.issues import TableReader, did_you_mean
from ..spec.layering import LinearisationError, linearise
from ..spec.model import ApplicationSpec, FrameworkSpec, LayerKind, LayerSpec, RuntimeSpec
from ..standards.tomlwriter import TomlTable

__all__ = ["LayerRegistry"]


class LayerRegistry:
    """The layers of a specification, as they are checked one by one."""

    def __init__(self) -> None:
        self.runtimes: dict[str, RuntimeSpec] = {}
        self.frameworks: dict[str, FrameworkSpec] = {}
        self.applications: dict[str, ApplicationSpec] = {}
        self.broken: set[tuple[LayerKind, str]] = set()
        """Layers that exist but are invalid: references to them are not reported again."""
        self.declared: dict[LayerKind, list[str]] = {kind: [] for kind in LayerKind}
        self.raw_frameworks: dict[str, list[str]] = {}

    def prescan(self, tables: Mapping[LayerKind, list[TomlTable]]) -> None:
        """Note every layer's name and raw framework list before checking any of them."""
        for kind, entries in tables.items():
            for table in entries:
                name = table.get("name")
                if isinstance(name, str):
                    self.declared[kind].append(name)
                    deps = table.get("frameworks")
                    if kind is LayerKind.FRAMEWORK and isinstance(deps, list):
                        self.raw_frameworks.setdefault(name, [d for d in deps if isinstance(d, str)])

    def _registry(self, kind: LayerKind) -> Mapping[str, LayerSpec]:
        registries: dict[LayerKind, Mapping[str, LayerSpec]] = {
            LayerKind.RUNTIME: self.runtimes, LayerKind.FRAMEWORK: self.frameworks, LayerKind.APPLICATION: self.applications,
        }  # fmt: skip
        return registries[kind]

    def add(self, layer: LayerSpec) -> None:
        """Record a layer that passed its checks."""
        if isinstance(layer, RuntimeSpec):
            self.runtimes[layer.name] = layer
        elif isinstance(layer, FrameworkSpec):
            self.frameworks[layer.name] = layer
        else:
            self.applications[layer.name] = layer

    def add_broken(self, kind: LayerKind, name: str) -> None:
        """Record a layer that failed its checks."""
        self.broken.add((kind, name))

    def clash(self, kind: LayerKind, name: str) -> str | None:
        """The earlier layer of this kind whose name equals `name` ignoring case, if any."""
        taken = {n.casefold(): n for n in self._registry(kind)}
        taken.update({n.casefold(): n for k, n in self.broken if k is kind})
        return taken.get(name.casefold())

    def resolve_dependencies(
        self, reader: TableReader, kind: LayerKind, name: str | None
    ) -> tuple[str, tuple[str, ...], tuple[str, ...]] | None:
        """The runtime name, declared frameworks and C3 framework order of a layer."""
        runtime = reader.string("runtime")
        frameworks = reader.string_list("frameworks")
        has_runtime, has_frameworks = "runtime" in reader.table, "frameworks" in reader.table
        if has_runtime and has_frameworks:
            reader.error(
                "frameworks",
                "specify either 'runtime' or 'frameworks', not both "
                "(a layer on frameworks uses their runtime)",
            )
            return None
        if not has_runtime and (not has_frameworks or frameworks == ()):
            reader.error(
                None,
                "must specify a runtime ('runtime = \"name\"') or at least one framework ('frameworks = [...]')",
            )
            return None
        if runtime is not None:
            return (runtime, (), ()) if self._check_runtime(reader, runtime) else None
        if frameworks is None:
            return None
        ok = True
        for position, dep in enumerate(frameworks):
            if not self._check_framework(reader, kind, name, f"frameworks[{position}]", dep):
                ok = False
            elif frameworks.index(dep) != position:
                reader.error(f"frameworks[{position}]", f"framework {dep!r} is listed more than once")
                ok = False
        if not ok:
            return None
        runtimes = {dep: self.frameworks[dep].runtime for dep in frameworks}
        if len(set(runtimes.values())) > 1:
            detail = ", ".join(f"{dep!r} is on runtime {rt!r}" for dep, rt in runtimes.items())
            reader.error("frameworks", f"references inconsistent frameworks: {detail}")
            return None
        try:
            order = linearise(frameworks, lambda dep: self.frameworks[dep].linearised_frameworks)
        except LinearisationError as exc:
            reader.error("frameworks", str(exc))
            return None
        return runtimes[frameworks[0]], frameworks, order

    def _check_runtime(self, reader: TableReader, runtime: str) -> bool:
        if runtime in self.runtimes:
            return True
        if (LayerKind.RUNTIME, runtime) in self.broken:
            return False  # its own problems are already reported
        hint = did_you_mean(runtime, self.declared[LayerKind.RUNTIME])
        if not hint and runtime in self.declared[LayerKind.FRAMEWORK]:
            hint = f" ({runtime!r} is a framework: use 'frameworks = [{runtime!r}]')"
        reader.error("runtime", f"references unknown runtime {runtime!r}{hint}")
        return False

    def _check_framework(
        self, reader: TableReader, kind: LayerKind, name: str | None, field: str, dep: str
    ) -> bool:
        if dep in self.frameworks:
            return True
        if (LayerKind.FRAMEWORK, dep) in self.broken:
            return False
        declared = self.declared[LayerKind.FRAMEWORK]
        if kind is LayerKind.FRAMEWORK and dep == name:
            reader.error(field, f"framework {dep!r} cannot depend on itself")
        elif dep in declared:
            cycle = self._find_cycle(dep, name) if kind is LayerKind.FRAMEWORK and name else None
            if cycle:
                path = " -> ".join(repr(n) for n in cycle)
                reader.error(field, f"dependency cycle between frameworks: {path}")
            else:
                reader.error(
                    field,
                    f"references unknown framework {dep!r}: it is defined later in the file, "
                    "and frameworks must be defined before the layers that use them",
                )
        else:
            hint = did_you_mean(dep, declared)
            if not hint and dep in self.declared[LayerKind.RUNTIME]:
                hint = f" ({dep!r} is a runtime: use 'runtime = {dep!r}')"
            elif not hint and dep in self.declared[LayerKind.APPLICATION]:
                hint = f" ({dep!r} is an application; layers cannot be built on applications)"
            reader.error(field, f"references unknown framework {dep!r}{hint}")
        return False

    def _find_cycle(self, start: str, target: str) -> list[str] | None:
        """A path of framework references from `target` through `start` back to `target`."""
        stack: list[tuple[str, list[str]]] = [(start, [target, start])]
        seen: set[str] = set()
        while stack:
            current, path = stack.pop()
            for nxt in self.raw_frameworks.get(current, []):
                if nxt == target:
                    return [*path, target]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
        return None
