"""Locking a stack: each layer resolved by uv for all its platforms, lowest layers first.

For each layer that needs it, a synthetic project (the layer's requirements,
constrained to the versions the layers underneath install) is resolved with
`uv lock` and exported with `uv export`; `pylock.py` turns the export into
the layer's lock. A lock that comes out the same keeps its time and version.
New lock files are held in memory (layers above read their lower layers' new
locks from there) and replace the old ones only once every selected layer has
locked: a failed or interrupted run leaves `requirements/` as it was.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import threading
import tomllib
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from ..errors import LockError, UvError
from ..folderlock import exclusive, remove_temporaries
from ..fsutil import write_text_atomic
from ..lock.files import (
    LockMetadata,
    LockPaths,
    lock_input_hash,
    other_inputs_hash,
    pylock_hash,
    replace_lock_files,
    requirements_in_text,
    version_inputs_hash,
)
from ..lock.pylock import LayerTarget, constraint_lines, edit_pylock, lower_pins, render_pylock, summary_text
from ..lock.state import LockCheck, check_layer_lock, check_stack_locks, read_pylock, require_valid_locks
from ..progress import progress
from ..runtimes.unpack import RuntimeInstall, ensure_runtime
from ..runtimes.unpacked import UNPACKED_DIR
from ..spec.model import LayerSpec, RuntimeSpec, StackSpec
from ..spec.uvconfig import parse_exclude_newer
from ..standards.requirements import canonicalize_name
from ..standards.tomlwriter import TomlTable, dumps
from ..standards.wheels import describe_wheel_gaps
from ..uv import Uv, export_argv, lock_argv

__all__ = ["LockSettings", "LockOutcome", "lock_stack", "ensure_locked", "uv_config_text"]

_LOG = logging.getLogger(__name__)

# uv settings that belong to a project (pyproject.toml) rather than a uv.toml.
_PROJECT_KEYS = frozenset(
    {
        "constraint-dependencies",
        "override-dependencies",
        "build-constraint-dependencies",
        "dev-dependencies",
        "default-groups",
        "environments",
        "required-environments",
        "conflicts",
        "managed",
        "package",
        "workspace",
        "exclude-dependencies",
    }
)


LockAction = Literal["locked", "unchanged", "skipped", "versioned"]
"""What a run did with one layer."""


@dataclass(frozen=True)
class LockSettings:
    """How locking runs: where things go and which package sources uv may use."""

    build_dir: Path
    archive_dir: Path | None = None
    use_index: bool = True
    local_wheels: tuple[Path, ...] = ()
    clean: bool = False
    exclude_newer: str | None = None
    """`UV_EXCLUDE_NEWER` from the environment, which wins over the spec's setting."""


@dataclass(frozen=True)
class LockOutcome:
    """What locking did to one layer."""

    build_name: str
    action: LockAction
    """`locked` (new content), `unchanged` (relocked, same content), `skipped` (valid, not relocked)
    or `versioned` (only the implicit version moved on)."""
    pylock: Path
    locked_at: str
    lock_version: int


def _thaw(value: object) -> object:
    """A writable copy of a frozen TOML value (mappings become dicts, tuples lists)."""
    if isinstance(value, Mapping):
        return _thaw_table(value)
    if isinstance(value, (list, tuple)):
        return [_thaw(item) for item in value]
    return value


def _thaw_table(table: TomlTable) -> dict[str, object]:
    return {key: _thaw(item) for key, item in table.items()}


def _common_settings(spec: StackSpec, settings: LockSettings) -> tuple[dict[str, object], dict[str, object]]:
    """The shared uv settings, split into (uv.toml settings, project-only settings)."""
    config = _thaw_table(spec.uv_config.settings)
    project = {key: config.pop(key) for key in list(config) if key in _PROJECT_KEYS}
    base = (spec.uv_config.source or spec.spec_path).parent
    given = config.pop("find-links", [])
    if not isinstance(given, list) or not all(isinstance(link, str) for link in given):
        raise LockError(f"{spec.uv_config.source or spec.spec_path}: tool.uv find-links must be an array of strings")
    find_links = [str(base / link) if "://" not in link else link for link in given]
    find_links += [str(path) for path in settings.local_wheels]
    if find_links:
        config["find-links"] = find_links
    config["no-build"] = True
    if settings.exclude_newer:
        config["exclude-newer"] = settings.exclude_newer
    if not settings.use_index:
        config["no-index"] = True
    return config, project


def uv_config_text(spec: StackSpec, settings: LockSettings) -> str:
    """The uv.toml every uv call uses (which also stops uv reading the user's own)."""
    return dumps(_common_settings(spec, settings)[0])


def _lock_clamp(spec: StackSpec, settings: LockSettings) -> datetime.datetime | None:
    text = settings.exclude_newer or spec.uv_config.settings.get("exclude-newer")
    if not text:
        return None
    try:
        return parse_exclude_newer(str(text))
    except ValueError as exc:
        msg = f"UV_EXCLUDE_NEWER={text!r} is not a timestamp such as 2025-08-27T00:00:00Z"
        raise LockError(msg) from exc


def _layer_indexes(spec: StackSpec, layer: LayerSpec) -> tuple[list[dict[str, object]], dict[str, object]]:
    named = spec.uv_config.named_indexes
    indexes = [{**_thaw_table(named[n].settings), "explicit": False} for n in layer.priority_indexes]
    sources = {**spec.uv_config.sources, **layer.package_indexes}
    for name in dict.fromkeys(sources.values()):
        if name not in layer.priority_indexes and named[name].explicit:
            indexes.append(_thaw_table(named[name].settings))
    indexes += [_thaw_table(i.settings) for i in spec.uv_config.indexes if i.is_common and i.name not in layer.priority_indexes]
    return indexes, {dist: {"index": index} for dist, index in sorted(sources.items())}


def _project_text(spec: StackSpec, layer: LayerSpec, constraints: list[str], project_settings: dict[str, object]) -> str:
    runtime = spec.runtime_of(layer)
    tool = dict(project_settings)
    given = tool.get("constraint-dependencies")
    tool["constraint-dependencies"] = [*(given if isinstance(given, list) else []), *constraints]
    indexes, sources = _layer_indexes(spec, layer)
    if indexes:
        tool["index"] = indexes
    if sources:
        tool["sources"] = sources
    project = {
        "name": canonicalize_name(re.sub(r"[^a-zA-Z0-9._-]", "-", layer.build_name)),
        "version": "0",
        "dependencies": sorted(str(requirement) for requirement in layer.requirements),
        "requires-python": f"=={runtime.python_implementation.short_version}.*",
    }
    return dumps({"project": project, "tool": {"uv": tool}})


@dataclass
class _Run:
    """The state of one `lock` run."""

    spec: StackSpec
    settings: LockSettings
    uv: Callable[[], Uv]
    now: Callable[[], datetime.datetime]
    runtimes: dict[str, RuntimeInstall] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)
    """Layers whose locked packages changed in this run: the layers above must follow."""
    staged: dict[Path, str] = field(default_factory=dict)
    """The new lock files, written only once every selected layer has locked."""
    guard: threading.Lock = field(default_factory=threading.Lock)

    def stage(self, path: Path, text: str) -> None:
        with self.guard:
            self.staged[path] = text

    def pylock(self, layer: LayerSpec) -> dict[str, object] | None:
        """A layer's pylock: the one locked in this run, else the one on disk."""
        paths = LockPaths.for_layer(self.spec, layer)
        with self.guard:
            text = self.staged.get(paths.pylock)
        return tomllib.loads(text) if text is not None else read_pylock(paths)

    def runtime(self, layer: LayerSpec) -> RuntimeInstall:
        runtime = self.spec.runtime_of(layer)
        with self.guard:
            return self._runtime(runtime)

    def find_uv(self) -> Uv:
        with self.guard:
            return self.uv()

    def _runtime(self, runtime: RuntimeSpec) -> RuntimeInstall:
        if runtime.name not in self.runtimes:
            uv = None if self.settings.archive_dir else self.uv()
            self.runtimes[runtime.name] = ensure_runtime(
                runtime, self.settings.build_dir, archive_dir=self.settings.archive_dir, uv=uv, clean=self.settings.clean
            )
        return self.runtimes[runtime.name]

    def locked_at(self) -> str:
        clamp = _lock_clamp(self.spec, self.settings)
        now = self.now().astimezone(datetime.UTC)
        return (min(now, clamp) if clamp else now).isoformat()


def _resolve(run: _Run, layer: LayerSpec, paths: LockPaths) -> dict[str, object]:
    """Run uv for one layer and return its edited pylock data."""
    spec, settings = run.spec, run.settings
    runtime = run.runtime(layer)
    lower = [run.pylock(dep) or {} for dep in reversed(spec.dependencies(layer))]
    pins = lower_pins(lower)
    config, project_settings = _common_settings(spec, settings)
    resolve_dir = settings.build_dir / f"{layer.build_name}_resolve"
    config_file = settings.build_dir / "uv.toml"
    write_text_atomic(config_file, dumps(config))
    write_text_atomic(resolve_dir / "pyproject.toml", _project_text(spec, layer, constraint_lines(pins), project_settings))
    exported_path = resolve_dir / "pylock.toml"
    exported_path.unlink(missing_ok=True)
    uv = run.find_uv()
    progress(_LOG, "locking layer %r", layer.build_name)
    try:
        uv.run(lock_argv(uv.command, project=resolve_dir, python=runtime.python, config_file=config_file),
               description=f"locking layer {layer.build_name!r}")  # fmt: skip
        uv.run(export_argv(uv.command, project=resolve_dir, python=runtime.python, config_file=config_file, output=exported_path),
               description=f"exporting the lock of layer {layer.build_name!r}")  # fmt: skip
    except UvError as exc:
        raise LockError(f"failed to lock layer {layer.build_name!r}:\n{exc}") from exc
    exported = _read_exported(exported_path)
    runtime_spec = spec.runtime_of(layer)
    target = LayerTarget(
        platforms=layer.platforms,
        implementation=runtime_spec.python_implementation.implementation,
        python_version=runtime_spec.python_implementation.version,
        linux_glibc=layer.linux_target.version,
        macos=layer.macosx_target.version,
    )
    data, gaps = edit_pylock(exported, target, pins, paths.folder)
    if gaps:
        raise LockError(describe_wheel_gaps(layer.build_name, gaps, layer.platforms))
    return data


def _read_exported(path: Path) -> dict[str, object]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LockError(f"uv did not produce a readable lock at {path}: {exc}") from exc


def _lock_layer(run: _Run, layer: LayerSpec, want: bool | None) -> LockOutcome:
    spec = run.spec
    paths = LockPaths.for_layer(spec, layer)
    run.stage(paths.requirements_in, requirements_in_text(layer))
    check: LockCheck = check_layer_lock(spec, layer)
    below_changed = any(dep.build_name in run.changed for dep in spec.dependencies(layer))
    old = check.metadata
    if want is None and check.valid and not below_changed and old is not None:  # a valid lock has metadata
        pylock = read_pylock(paths) or {}
        run.stage(paths.summary, summary_text(layer.build_name, pylock))
        return LockOutcome(layer.build_name, "skipped", paths.pylock, old.locked_at, old.lock_version)
    if want is None and check.only_version_inputs and not below_changed and old is not None:
        metadata = replace(old, lock_version=old.lock_version + 1, locked_at=run.locked_at(),
                           version_inputs_hash=version_inputs_hash(layer))  # fmt: skip
        run.stage(paths.metadata, metadata.to_json())
        return LockOutcome(layer.build_name, "versioned", paths.pylock, metadata.locked_at, metadata.lock_version)
    data = _resolve(run, layer, paths)
    text = render_pylock(layer.build_name, data)
    hashes = {
        "lock_input_hash": lock_input_hash(layer),
        "other_inputs_hash": other_inputs_hash(spec, layer),
        "requirements_hash": pylock_hash(data),
        "version_inputs_hash": version_inputs_hash(layer),
    }
    archive = None
    if isinstance(layer, RuntimeSpec):
        install = run.runtime(layer)
        archive = {"name": install.archive_name, **({"sha256": install.archive_sha256} if install.archive_sha256 else {})}
    same = old is not None and all(getattr(old, key) == value for key, value in hashes.items())
    if same:
        assert old is not None
        metadata = replace(old, runtime_archive=archive or old.runtime_archive)
        action: LockAction = "unchanged"
    else:
        version = old.lock_version + 1 if (layer.versioned and old is not None) else 1
        metadata = LockMetadata(lock_version=version, locked_at=run.locked_at(), runtime_archive=archive, **hashes)
        action = "locked"
    if old is None or old.requirements_hash != hashes["requirements_hash"]:
        with run.guard:
            run.changed.add(layer.build_name)
    run.stage(paths.pylock, text)
    run.stage(paths.summary, summary_text(layer.build_name, data))
    run.stage(paths.metadata, metadata.to_json())
    return LockOutcome(layer.build_name, action, paths.pylock, metadata.locked_at, metadata.lock_version)


def lock_stack(
    spec: StackSpec,
    wants: Mapping[str, bool | None],
    settings: LockSettings,
    *,
    uv: Callable[[], Uv],
    reset: frozenset[str] = frozenset(),
    now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
) -> list[LockOutcome]:
    """Lock the layers named in `wants`, lowest first.

    A want of True relocks the layer; None relocks it only if its lock is not
    valid (or a layer underneath changed in this run). Layers in `reset` are
    resolved afresh. `uv` is called only when uv is really needed. The new lock
    files replace the old ones only once every layer has locked; the build
    folder is held meanwhile.
    """
    run = _Run(spec, settings, uv, now)
    layers = [layer for layer in spec.layers() if layer.build_name in wants]
    for layer in spec.layers():
        if layer.build_name not in wants:
            continue
        for dep in spec.dependencies(layer):
            if dep.build_name not in wants and not check_layer_lock(spec, dep).valid:
                msg = f"layer {layer.build_name!r} cannot be locked: layer {dep.build_name!r} underneath it has no valid lock"
                raise LockError(msg)
    with exclusive(settings.build_dir, command="lock", nested=(UNPACKED_DIR,)):
        for layer in layers:  # what a lock run killed while renaming left
            remove_temporaries(LockPaths.for_layer(spec, layer).folder)
        outcomes = _lock_waves(run, layers, wants, reset)
        replace_lock_files(run.staged)
    for layer in spec.layers():
        if layer.build_name not in wants and any(dep.build_name in run.changed for dep in spec.dependencies(layer)):
            _LOG.warning("layer %r builds on a layer whose lock changed: lock it too", layer.build_name)
    return [outcomes[layer.build_name] for layer in layers]


def ensure_locked(
    spec: StackSpec, layers: list[LayerSpec], settings: LockSettings, *, uv: Callable[[], Uv], offline: bool
) -> Mapping[str, LockCheck]:
    """Lock those of `layers` that have no valid lock (`build --lock-if-needed`); every layer's lock check after.

    `offline` (a bundle instead of an index) can only confirm the locks:
    StaleLockError names the layers that would need locking.
    """
    if offline:
        return require_valid_locks(spec, layers, lead="with --bundle these layers cannot be locked (that needs a package index)")
    lock_stack(spec, {layer.build_name: None for layer in layers}, settings, uv=uv)
    return check_stack_locks(spec)


def _lock_waves(run: _Run, layers: list[LayerSpec], wants: Mapping[str, bool | None], reset: frozenset[str]) -> dict[str, LockOutcome]:
    """Lock `layers` into `run.staged`, a wave at a time; the first failing wave stops the run."""
    # Layers at the same height (nothing between them) are locked concurrently:
    # uv spends most of its time waiting on the network and the cache.
    outcomes: dict[str, LockOutcome] = {}
    for wave in _waves(run.spec, layers):
        with ThreadPoolExecutor(max_workers=min(len(wave), os.cpu_count() or 1)) as pool:
            futures = {
                layer.build_name: pool.submit(_lock_layer, run, layer, True if layer.build_name in reset else wants[layer.build_name])
                for layer in wave
            }
        failures = [error for future in futures.values() if (error := future.exception()) is not None]
        if failures:
            messages = [str(exc) for exc in failures if isinstance(exc, LockError)]
            others = [exc for exc in failures if not isinstance(exc, LockError)]
            if others:
                raise others[0]
            raise LockError("\n".join(messages))
        outcomes.update({name: future.result() for name, future in futures.items()})
    return outcomes


def _waves(spec: StackSpec, layers: list[LayerSpec]) -> list[list[LayerSpec]]:
    """The layers grouped by height: each group only builds on the groups before it."""
    height: dict[str, int] = {}
    for layer in spec.layers():
        height[layer.build_name] = 1 + max((height[dep.build_name] for dep in spec.dependencies(layer)), default=-1)
    waves: dict[int, list[LayerSpec]] = {}
    for layer in layers:
        waves.setdefault(height[layer.build_name], []).append(layer)
    return [waves[level] for level in sorted(waves)]


def environ_exclude_newer() -> str | None:
    """`UV_EXCLUDE_NEWER` from the environment, if set."""
    return os.environ.get("UV_EXCLUDE_NEWER") or None
