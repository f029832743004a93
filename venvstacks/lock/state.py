"""Whether each layer's lock is valid, by upstream venvstacks' rules.

A lock is valid when its metadata and pylock exist, the declared requirements,
the pylock's content and the layer's other inputs (Python version, targets,
the layers underneath) still hash to what the metadata recorded (versioned
layers also check their version inputs), and every layer underneath has a
valid lock too.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..errors import StaleLockError
from ..lock.files import (
    LockMetadata,
    LockPaths,
    lock_input_hash,
    other_inputs_hash,
    pylock_hash,
    version_inputs_hash,
)
from ..spec.model import LayerSpec, StackSpec

__all__ = [
    "LockCheck", "check_layer_lock", "check_stack_locks", "read_pylock", "deployed_name", "require_valid_locks",
    "require_no_relocking",
]  # fmt: skip


@dataclass(frozen=True)
class LockCheck:
    """The result of checking one layer's lock."""

    metadata: LockMetadata | None
    problems: tuple[str, ...]
    """Why the lock is not valid (empty when it is)."""
    only_version_inputs: bool = False
    """True if the only problem is a changed version input of a versioned layer."""

    @property
    def valid(self) -> bool:
        return not self.problems

    @property
    def lock_version(self) -> int | None:
        return self.metadata.lock_version if self.metadata and self.valid else None


def deployed_name(layer: LayerSpec, checks: Mapping[str, LockCheck]) -> str:
    """The folder `layer` deploys as, with the lock version its lock records (see `LayerSpec.deployed_name`)."""
    return layer.deployed_name(checks[layer.build_name].lock_version)


def read_pylock(paths: LockPaths) -> dict[str, object] | None:
    """A layer's pylock, parsed; None if it is missing or not valid TOML."""
    try:
        return tomllib.loads(paths.pylock.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def check_layer_lock(spec: StackSpec, layer: LayerSpec) -> LockCheck:
    """Check one layer's own lock files against the spec (not the layers underneath)."""
    paths = LockPaths.for_layer(spec, layer)
    metadata = LockMetadata.read(paths.metadata)
    if metadata is None:
        reason = "no lock metadata" if not paths.metadata.exists() else "lock metadata in an old or unreadable format"
        return LockCheck(None, (reason,))
    pylock = read_pylock(paths)
    if pylock is None:
        reason = "no pylock file" if not paths.pylock.exists() else "the pylock file is not valid TOML"
        return LockCheck(metadata, (reason,))
    problems = []
    if metadata.lock_input_hash != lock_input_hash(layer):
        problems.append("the declared requirements changed")
    if metadata.requirements_hash != pylock_hash(pylock):
        problems.append("the pylock file was changed by hand")
    if metadata.other_inputs_hash != other_inputs_hash(spec, layer):
        problems.append("the Python version, target or layers underneath changed")
    version_changed = layer.versioned and metadata.version_inputs_hash != version_inputs_hash(layer)
    if version_changed:
        problems.append("the layer's version inputs (name, versioning, app modules) changed")
    return LockCheck(metadata, tuple(problems), only_version_inputs=version_changed and len(problems) == 1)


def check_stack_locks(spec: StackSpec) -> Mapping[str, LockCheck]:
    """Every layer's lock check, keyed by build name; a layer over an invalid lock is invalid."""
    checks: dict[str, LockCheck] = {}
    for layer in spec.layers():
        check = check_layer_lock(spec, layer)
        stale = [dep.build_name for dep in spec.dependencies(layer) if not checks[dep.build_name].valid]
        if stale:
            check = LockCheck(check.metadata, (*check.problems, f"layers underneath need locking: {', '.join(stale)}"))
        checks[layer.build_name] = check
    return checks


NEEDS_LOCKING = "these layers have no valid lock (run 'venvstacks lock' first)"


def require_valid_locks(
    spec: StackSpec, layers: Iterable[LayerSpec], *, lead: str = NEEDS_LOCKING, checks: Mapping[str, LockCheck] | None = None
) -> Mapping[str, LockCheck]:
    """Every layer's lock check; StaleLockError (opening with `lead`) if one of `layers` has no valid lock."""
    checks = check_stack_locks(spec) if checks is None else checks
    stale = {layer.build_name: checks[layer.build_name].problems for layer in layers if not checks[layer.build_name].valid}
    if stale:
        raise StaleLockError(lead, stale)
    return checks


def require_no_relocking(spec: StackSpec, wants: Mapping[str, bool | None], reset: Iterable[str], *, lead: str) -> None:
    """StaleLockError (opening with `lead`) if locking as `wants` and `reset` ask would need a package index.

    Without an index a lock can only be confirmed: every wanted layer must
    have a valid lock, and none may be relocked or reset.
    """
    checks = check_stack_locks(spec)
    stale: dict[str, tuple[str, ...]] = {}
    for name, want in wants.items():
        reasons = list(checks[name].problems)
        if want is not None:
            reasons.append("relocking was asked for")
        if name in reset:
            reasons.append("--reset-lock was asked for")
        if reasons:
            stale[name] = tuple(reasons)
    if stale:
        raise StaleLockError(lead, dict(sorted(stale.items())))
