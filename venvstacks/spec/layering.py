"""How layers stack: C3 ordering of frameworks, inherited platforms and index pins.

Pure functions over names; `load.py` feeds them and turns their
complaints into spec issues.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from ..platforms import ALL_PLATFORMS, TargetPlatform, sort_platforms
from ..standards.requirements import canonicalize_name

__all__ = [
    "LinearisationError",
    "linearise",
    "infer_platforms",
    "merge_package_indexes",
]


@dataclass(frozen=True)
class LinearisationError(Exception):
    """The frameworks a layer builds on cannot be put in one consistent order."""

    remaining: tuple[tuple[str, tuple[str, ...]], ...]
    """The sequences left unmerged, each with where it came from."""

    def __str__(self) -> str:
        orders = ", ".join(f"{list(seq)!r} (from {origin})" for origin, seq in self.remaining)
        return f"dependency linearization failed: no sys.path order satisfies {orders}"


def linearise(declared: Sequence[str], lineage: Callable[[str], Sequence[str]]) -> tuple[str, ...]:
    """C3-linearise a layer's frameworks, as Python orders base classes (its MRO).

    `declared` is the layer's `frameworks` list; `lineage(name)` gives an already
    linearised framework's own frameworks. The result excludes the layer itself
    and lists frameworks in the order they appear on sys.path.
    """
    sequences: list[tuple[str, list[str]]] = [
        (f"framework {name!r}", [name, *lineage(name)]) for name in declared
    ]
    sequences.append(("the declared 'frameworks' order", list(declared)))
    result: list[str] = []
    while True:
        live = [seq for _, seq in sequences if seq]
        if not live:
            return tuple(result)
        for seq in live:
            head = seq[0]
            if not any(head in other[1:] for other in live):
                break
        else:
            raise LinearisationError(tuple((origin, tuple(seq)) for origin, seq in sequences if seq))
        result.append(head)
        for _, seq in sequences:
            if seq and seq[0] == head:
                del seq[0]


def infer_platforms(
    declared: Sequence[TargetPlatform] | None, lower: Iterable[Sequence[TargetPlatform]]
) -> tuple[tuple[TargetPlatform, ...], tuple[TargetPlatform, ...]]:
    """The platforms a layer targets, and any declared ones its lower layers lack.

    Without a declaration, a layer targets every platform all its lower layers
    target, in the default order. A declaration keeps its own order but must be
    a subset of that.
    """
    offered = set(ALL_PLATFORMS)
    for platforms in lower:
        offered &= set(platforms)
    if declared is None:
        return sort_platforms(offered), ()
    unsupported = tuple(p for p in declared if p not in offered)
    return tuple(p for p in declared if p in offered), unsupported


def merge_package_indexes(
    own: Mapping[str, str],
    overrides: Mapping[str, str],
    inherited: Sequence[Mapping[str, str]],
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Combine a layer's `package_indexes` with those of the layers underneath.

    `inherited` holds the lower layers' merged pins, highest priority first
    (frameworks in sys.path order, or just the runtime). A lower layer may pin a
    package to a different index than a higher one only if `index_overrides`
    maps one index to the other. Returns the merged pins (normalised names) and
    the problems found, as (field, message) pairs.
    """
    problems: list[tuple[str, str]] = []
    merged: dict[str, str] = {}
    for lower in inherited:
        for dist, index in lower.items():
            chosen = merged.setdefault(dist, index)
            if chosen != index and overrides.get(index, index) != chosen:
                problems.append(
                    (
                        "index_overrides",
                        f"depends on layers with inconsistent package index overrides for {dist!r} "
                        f"({chosen!r} and {index!r}); "
                        f"specify 'index_overrides = {{{index} = \"{chosen}\"}}' to accept",
                    )
                )
    seen: dict[str, str] = {}
    for raw_name, index in own.items():
        dist = canonicalize_name(raw_name)
        if dist in seen:
            problems.append(
                (f"package_indexes.{raw_name}", f"specifies more than one index for {dist!r} (also as {seen[dist]!r})")
            )
            continue
        seen[dist] = raw_name
        lower_index = merged.get(dist)
        if lower_index is not None and lower_index != index and overrides.get(lower_index, lower_index) != index:
            problems.append(
                (
                    f"package_indexes.{raw_name}",
                    f"declares an inconsistent package index override for {raw_name!r} "
                    f"(a lower layer uses {lower_index!r}); "
                    f"specify 'index_overrides = {{{lower_index} = \"{index}\"}}' to accept",
                )
            )
        merged[dist] = index
    return merged, problems
