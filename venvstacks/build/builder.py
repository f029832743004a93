"""Building locked layers into working environments in the build folder.

A runtime layer is the unpacked runtime with its own locked packages installed
straight into it. Framework and application layers are virtual environments on
their runtime holding only their own locked packages; a generated
`sitecustomize.py` puts the layers underneath on sys.path, and a `bin/python`
wrapper puts their shared libraries on the loader's path. Each layer records
what it was built from; an unchanged layer is not rebuilt, and a layer without
that record (a build that stopped half-way) is rebuilt from scratch.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

from .. import __version__, _hooks
from ..build.bundle import bundle_pylock
from ..build.scripts import find_entry_point_scripts, record_launchers, select_scripts
from ..build.dynlib import find_shared_libraries, link_dynlibs, plan_dynlib_links
from ..errors import BuildError, UvError, VenvStacksError, raise_failures
from ..folderlock import exclusive
from ..fsutil import dump_json, remove_path, write_text_atomic
from ..lock.files import LockPaths, module_hash
from ..lock.state import LockCheck, deployed_name, require_valid_locks
from ..platforms import TargetPlatform, uv_python_platform
from ..build.portability import prune_records, relativise_symlinks, remove_foreign_executables
from ..postinstall import DYNLIB_DIR, LAYER_CONFIG, LayerConfig, render_python_wrapper, render_pyvenv_cfg, render_sitecustomize
from ..progress import progress
from ..runtimes.unpack import ensure_runtime, runtime_python
from ..runtimes.unpacked import UNPACKED_DIR
from ..spec.model import ApplicationSpec, LayerSpec, RuntimeSpec, StackSpec
from ..uv import Uv, pip_install_argv, pip_uninstall_argv

__all__ = ["BuildSettings", "BuildOutcome", "build_stack", "layer_config", "site_dir"]

_LOG = logging.getLogger(__name__)
_BUILD_TOOLS = ("pip", "setuptools", "wheel")
HOOK_PATH = "share/venv/postinstall_hook.py"
"""Where a layer's post-install hook is shipped, relative to the layer."""


BuildAction = Literal["built", "up to date"]
"""What a run did with one layer."""


@dataclass(frozen=True)
class BuildSettings:
    """Where the build happens and where runtimes come from."""

    build_dir: Path
    host: TargetPlatform
    archive_dir: Path | None = None
    clean: bool = False
    bundle: Path | None = None
    """Install from this bundle's files only, never downloading anything."""
    jobs: int | None = None
    """How many layers build at once (None: one per core); a layer waits for those underneath it."""


@dataclass(frozen=True)
class BuildOutcome:
    """What building did to one layer."""

    build_name: str
    path: Path
    action: BuildAction
    """`built`, or `up to date` when nothing it is built from changed."""


def site_dir(spec: StackSpec, layer: LayerSpec) -> str:
    """A layer's site-packages, relative to the layer's folder."""
    runtime = spec.runtime_of(layer)
    return f"lib/python{runtime.python_implementation.short_version}/site-packages"


def layer_config(
    spec: StackSpec, layer: LayerSpec, names: Callable[[LayerSpec], str], scripts: Mapping[str, str] | None = None
) -> LayerConfig:
    """The content of `share/venv/metadata/venvstacks_layer.json`; `names` gives peers' folder names.

    `scripts` maps the console scripts postinstall.py writes to their entry points.
    """
    runtime = spec.runtime_of(layer)
    own_site = site_dir(spec, layer)
    version = runtime.python_implementation.version
    if isinstance(layer, RuntimeSpec):
        config: LayerConfig = {
            "py_version": version, "site_dir": own_site, "python": "bin/python3", "base_python": "bin/python3",
            "pylib_dirs": [], "dynlib_dirs": [],
        }  # fmt: skip
    else:
        deps = spec.dependencies(layer)
        config = {
            "py_version": version, "site_dir": own_site, "python": "bin/python",
            "base_python": f"../{names(runtime)}/bin/python3",
            "pylib_dirs": [f"../{names(dep)}/{site_dir(spec, dep)}" for dep in deps],
            "dynlib_dirs": [f"../{names(dep)}/{DYNLIB_DIR}" for dep in deps],
        }  # fmt: skip
    if isinstance(layer, ApplicationSpec):
        config["launch_module"] = layer.launch_module_name
    if scripts:
        config["console_scripts"] = dict(sorted(scripts.items()))
    if layer.postinstall_hook is not None:
        config["postinstall_hook"] = HOOK_PATH
    return config


class BuildRecord(TypedDict):
    """The build record beside a built layer: everything it was built from (`_state`)."""

    tool_version: str
    requirements_hash: str
    lock_version: int
    platforms: list[str]
    linux_target: str
    macosx_target: str
    dynlib_exclude: list[str]
    layers_underneath: list[str]
    runtime_archive: str | None
    runtime: str
    console_scripts: NotRequired[bool | tuple[str, ...]]
    postinstall_hook: NotRequired[str]
    modules: NotRequired[list[str]]
    """Application layers: the hashes of the launch module and support modules, and their names."""
    module_names: NotRequired[list[str]]


def _state(spec: StackSpec, layer: LayerSpec, checks: Mapping[str, LockCheck], archive: str | None) -> BuildRecord:
    """Everything a built layer depends on; the layer is rebuilt when this changes."""
    metadata = checks[layer.build_name].metadata
    assert metadata is not None
    state: BuildRecord = {
        "tool_version": __version__,
        "requirements_hash": metadata.requirements_hash,
        "lock_version": metadata.lock_version,
        "platforms": [str(p) for p in layer.platforms],
        "linux_target": layer.linux_target.raw,
        "macosx_target": layer.macosx_target.raw,
        "dynlib_exclude": list(layer.dynlib_exclude),
        "layers_underneath": [deployed_name(dep, checks) for dep in spec.dependencies(layer)],
        "runtime_archive": archive,
        "runtime": str(spec.runtime_of(layer).python_implementation),
    }
    if layer.console_scripts:
        state["console_scripts"] = layer.console_scripts
    if layer.postinstall_hook is not None:
        state["postinstall_hook"] = module_hash(layer.postinstall_hook)
    if isinstance(layer, ApplicationSpec):
        state["modules"] = [module_hash(path) for path in (layer.launch_module, *layer.support_modules)]
        state["module_names"] = [path.name for path in (layer.launch_module, *layer.support_modules)]
    return state



def _state_path(path: Path) -> Path:
    return path.with_name(path.name + ".last-build.json")


def _remove(path: Path) -> None:
    _state_path(path).unlink(missing_ok=True)
    remove_path(path)


class _Builder:
    """Builds the layers of one stack."""

    def __init__(
        self, spec: StackSpec, settings: BuildSettings, checks: Mapping[str, LockCheck], uv: Callable[[], Uv], runtimes: Iterable[str] = ()
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.checks = checks
        self.uv = uv
        self.interpreters: dict[str, Future[None]] = {name: Future() for name in runtimes}
        """For each runtime being built: resolved once its interpreter is unpacked (or its build failed before)."""

    def path(self, layer: LayerSpec) -> Path:
        return self.settings.build_dir / layer.build_name

    def build(self, layer: LayerSpec) -> BuildOutcome:
        try:
            outcome = self._build(layer)
        except BaseException as exc:
            self._interpreter_ready(layer, exc)
            raise
        self._interpreter_ready(layer)  # a runtime up to date was never unpacked again
        return outcome

    def _interpreter_ready(self, layer: LayerSpec, error: BaseException | None = None) -> None:
        """Say that a runtime's interpreter can run (or, with `error`, never will in this build); once only."""
        ready = self.interpreters.get(layer.build_name)
        if ready is not None and not ready.done():
            if error is None:
                ready.set_result(None)
            else:
                ready.set_exception(error)

    def _build(self, layer: LayerSpec) -> BuildOutcome:
        path = self.path(layer)
        archive = None
        install = None
        if isinstance(layer, RuntimeSpec):
            # Cheap when the runtime is already unpacked from the same archive.
            install = ensure_runtime(layer, self.settings.build_dir, archive_dir=self.settings.archive_dir,
                                     uv=None if self.settings.archive_dir else self.uv())  # fmt: skip
            archive = install.archive_sha256 or install.archive_name
        state = _state(self.spec, layer, self.checks, archive)
        state_text = dump_json(state)
        if not self.settings.clean and path.is_dir():
            try:
                if _state_path(path).read_text(encoding="utf-8") == state_text:
                    return BuildOutcome(layer.build_name, path, "up to date")
            except OSError:
                pass
        progress(_LOG, "building layer %r", layer.build_name)
        # Until the record is written again at the very end, the layer counts as unbuilt.
        _state_path(path).unlink(missing_ok=True)
        _hooks.pause("build-layer")
        if isinstance(layer, RuntimeSpec):
            assert install is not None
            self._build_runtime(layer, path, fresh=install.fresh)
        else:
            self._build_layered(layer, path)
        self._finish(layer, path)
        write_text_atomic(_state_path(path), state_text)
        return BuildOutcome(layer.build_name, path, "built")

    def _install(self, layer: LayerSpec, python: Path) -> None:
        uv = self.uv()
        pylock = LockPaths.for_layer(self.spec, layer).pylock
        env = {"UV_NO_INSTALLER_METADATA": "1", "MACOSX_DEPLOYMENT_TARGET": layer.macosx_target.raw}
        if self.settings.bundle is not None:
            copy = self.settings.build_dir / f"{layer.build_name}_install" / "pylock.toml"
            pylock = bundle_pylock(self.spec, layer, self.settings.bundle, copy, self.settings.host)
            env["UV_OFFLINE"] = "1"
        platform = uv_python_platform(self.settings.host, layer.linux_target)
        try:
            uv.run(pip_install_argv(uv.command, python=python, pylock=pylock, python_platform=platform),
                   description=f"installing the packages of layer {layer.build_name!r}", env=env)  # fmt: skip
        except UvError as exc:
            raise BuildError(f"failed to install into layer {layer.build_name!r}:\n{exc}") from exc
        from ..build.installed import check_installed
        from ..platforms import marker_environment

        runtime = self.spec.runtime_of(layer).python_implementation
        environment = marker_environment(self.settings.host, runtime.implementation, runtime.version)
        check_installed(layer.build_name, pylock, self.path(layer) / site_dir(self.spec, layer), environment)

    def _build_runtime(self, layer: RuntimeSpec, path: Path, *, fresh: bool) -> None:
        if not fresh:
            # Packages from an earlier build may be in it: start again from the archive.
            ensure_runtime(layer, self.settings.build_dir, archive_dir=self.settings.archive_dir,
                           uv=None if self.settings.archive_dir else self.uv(), clean=True)  # fmt: skip
        self._interpreter_ready(layer)  # the layers on this runtime may start building now
        python = runtime_python(path)
        uv = self.uv()
        try:
            uv.run(pip_uninstall_argv(uv.command, python=python, packages=_BUILD_TOOLS),
                   description=f"removing build tools from runtime {layer.build_name!r}")  # fmt: skip
        except UvError as exc:
            raise BuildError(str(exc)) from exc
        self._install(layer, python)

    def _build_layered(self, layer: LayerSpec, path: Path) -> None:
        _remove(path)
        runtime = self.spec.runtime_of(layer)
        implementation = runtime.python_implementation
        _create_environment(runtime_python(self.path(runtime)), path, implementation.version, implementation.short_version)
        self._link_python(layer, path)
        site = path / site_dir(self.spec, layer)
        peers = [f"../../../../{dep.build_name}/{site_dir(self.spec, dep)}" for dep in self.spec.dependencies(layer)]
        write_text_atomic(site / "sitecustomize.py", render_sitecustomize(peers) or "")
        self._install(layer, path / "bin" / "python")
        if isinstance(layer, ApplicationSpec):
            for module in (layer.launch_module, *layer.support_modules):
                _copy_module(module, site / module.name)

    def _link_python(self, layer: LayerSpec, path: Path) -> None:
        runtime = self.spec.runtime_of(layer)
        bin_dir = path / "bin"
        short = runtime.python_implementation.short_version
        for name in ("python", "python3", f"python{short}"):
            (bin_dir / name).unlink(missing_ok=True)
        os.symlink(f"../../{runtime.build_name}/bin/python3", bin_dir / "python_")
        os.symlink("python", bin_dir / "python3")
        os.symlink("python", bin_dir / f"python{short}")
        dynlib_dirs = [f"../../{dep.build_name}/{DYNLIB_DIR}" for dep in self.spec.dependencies(layer)]
        wrapper = bin_dir / "python"
        wrapper.write_text(render_python_wrapper(dynlib_dirs, macos=sys.platform == "darwin"), encoding="utf-8")
        wrapper.chmod(0o755)

    def _finish(self, layer: LayerSpec, path: Path) -> None:
        site = path / site_dir(self.spec, layer)
        version = self.spec.runtime_of(layer).python_implementation.short_version
        libraries = find_shared_libraries(site, exclude=layer.dynlib_exclude, python_version=version)
        link_dynlibs(path, plan_dynlib_links(layer.build_name, libraries, site))
        removed = remove_foreign_executables(path / "bin")
        prune_records(site, removed)
        scripts = select_scripts(layer.build_name, find_entry_point_scripts(site), layer.console_scripts)
        record_launchers(site, "../../../bin", scripts, "python3" if isinstance(layer, RuntimeSpec) else "python")
        relativise_symlinks(path, self.settings.build_dir)
        if layer.postinstall_hook is not None:
            (path / HOOK_PATH).parent.mkdir(parents=True, exist_ok=True)
            _copy_module(layer.postinstall_hook, path / HOOK_PATH)
        entry_points = {name: entry_point for name, (entry_point, _dist) in scripts.items()}
        config = layer_config(self.spec, layer, lambda dep: deployed_name(dep, self.checks), entry_points)
        write_text_atomic(path / LAYER_CONFIG, dump_json(config))


def _create_environment(base_python: Path, path: Path, version: str, short_version: str) -> None:
    """A virtual environment on `base_python`, as `python -m venv --without-pip --symlinks` makes it, less its scripts.

    Written here rather than by the venv module in a new interpreter (which
    took most of a small layer's build): the folders, `lib64` where venv
    makes it, and a `pyvenv.cfg` naming the runtime. The interpreter links are
    `_link_python`'s, and the scripts would be removed anyway.
    """
    site = path / "lib" / f"python{short_version}" / "site-packages"
    for folder in (path / "bin", path / "include", site):
        folder.mkdir(parents=True, exist_ok=True)
    if sys.maxsize > 2**32 and os.name == "posix" and sys.platform != "darwin":
        os.symlink("lib", path / "lib64")
    write_text_atomic(path / "pyvenv.cfg", render_pyvenv_cfg(os.path.abspath(base_python), version))


def _copy_module(source: Path, target: Path) -> None:
    """Copy a launch or support module into a layer, refusing every symbolic link in it.

    The spec loader refuses such links already; refusing them here too means a
    link is never followed out of the spec's folder, whatever built the spec.
    """
    left_out = shutil.ignore_patterns("__pycache__", "*.pyc", ".git*")

    def refuse_links(folder: str, names: list[str]) -> set[str]:
        skipped = left_out(folder, names)
        links = [name for name in names if name not in skipped and os.path.islink(os.path.join(folder, name))]
        if links:
            where = os.path.join(folder, links[0])
            raise BuildError(f"module {str(source)!r}: {where!r} is a symbolic link, and links are not copied into layers")
        return skipped

    if source.is_symlink():
        raise BuildError(f"module {str(source)!r} is a symbolic link, and links are not copied into layers")
    remove_path(target)
    if source.is_dir():
        shutil.copytree(source, target, ignore=refuse_links)
    else:
        shutil.copyfile(source, target, follow_symlinks=False)


def build_stack(
    spec: StackSpec,
    layers: list[LayerSpec],
    settings: BuildSettings,
    checks: Mapping[str, LockCheck],
    *,
    uv: Callable[[], Uv],
) -> list[BuildOutcome]:
    """Build `layers` (lowest first); every one of them, and everything under them, must be locked.

    The build folder is held for the whole run (a second run is refused), and
    what interrupted runs left in it is removed first.
    """
    require_valid_locks(spec, layers, checks=checks, lead="these layers must be locked before building (run 'venvstacks lock', or pass --lock-if-needed)")
    runtimes = [layer.build_name for layer in layers if isinstance(layer, RuntimeSpec)]
    builder = _Builder(spec, settings, checks, _once(uv), runtimes)
    with exclusive(settings.build_dir, command="build", nested=(UNPACKED_DIR,)):
        outcomes = _build_when_ready(spec, layers, builder.build, settings.jobs or os.cpu_count() or 1, builder.interpreters)
    return [outcomes[layer.build_name] for layer in layers]


def _once(find: Callable[[], Uv]) -> Callable[[], Uv]:
    """`find`, called at most once however many threads ask at the same time."""
    guard = threading.Lock()
    found: list[Uv] = []

    def uv() -> Uv:
        with guard:
            if not found:
                found.append(find())
            return found[0]

    return uv


def _build_when_ready(
    spec: StackSpec,
    layers: list[LayerSpec],
    build: Callable[[LayerSpec], BuildOutcome],
    jobs: int,
    interpreters: Mapping[str, Future[None]] | None = None,
) -> dict[str, BuildOutcome]:
    """Build each layer as soon as the selected layers underneath it are built, up to `jobs` at once.

    A layer needs its frameworks built, but of its runtime only the
    interpreter, when `interpreters` has a future for it that `build` resolves
    once the runtime is unpacked: the runtime's own packages go into the
    runtime, never into the layers on it, so they install side by side.
    After a failure nothing more is started; the layers already building
    finish, and the error of the lowest failed layer is raised (all of them
    if several failed, in layer order). A layer started on a runtime that then
    failed is left out of that report: its error comes again once the
    runtime builds, and which of the two ends first is chance.
    """
    interpreters = interpreters or {}
    selected = {layer.build_name for layer in layers}
    waiting = list(layers)
    running: dict[Future[BuildOutcome], LayerSpec] = {}
    outcomes: dict[str, BuildOutcome] = {}
    failures: dict[str, BaseException] = {}

    def ready(dep: LayerSpec) -> bool:
        if dep.build_name not in selected or dep.build_name in outcomes:
            return True
        interpreter = interpreters.get(dep.build_name) if isinstance(dep, RuntimeSpec) else None
        return interpreter is not None and interpreter.done() and interpreter.exception() is None

    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="build") as pool:
        try:
            while waiting or running:
                # Taken before looking at what can start: one unpacked from then on ends the wait at once.
                unpacking: list[Future[Any]] = [interpreter for interpreter in interpreters.values() if not interpreter.done()]
                for layer in [] if failures else list(waiting):
                    if all(ready(dep) for dep in spec.dependencies(layer)):
                        waiting.remove(layer)
                        running[pool.submit(build, layer)] = layer
                if not running:
                    break
                wait([*running, *unpacking], return_when=FIRST_COMPLETED)  # a build ends, or an interpreter is unpacked
                for future in [future for future in running if future.done()]:
                    layer = running.pop(future)
                    if (error := future.exception()) is not None:
                        failures[layer.build_name] = error
                    else:
                        outcomes[layer.build_name] = future.result()
        except BaseException:
            for future in running:
                future.cancel()
            raise
    raise_failures([failures[layer.build_name] for layer in layers if _reported(spec, layer, failures)])
    return outcomes


def _reported(spec: StackSpec, layer: LayerSpec, failures: Mapping[str, BaseException]) -> bool:
    """Whether the failure of `layer` (if it failed) is reported: not when a layer underneath failed too.

    Bugs and interruptions (anything but a VenvStacksError) are always raised.
    """
    error = failures.get(layer.build_name)
    if error is None:
        return False
    return not isinstance(error, VenvStacksError) or not any(dep.build_name in failures for dep in spec.dependencies(layer))
