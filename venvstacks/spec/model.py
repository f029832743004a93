"""The immutable model of a stack specification (`venvstacks.toml`).

`load_spec` in `load.py` builds it; everything here is plain data plus the
naming rules that the rest of the tool relies on.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Never

from ..platforms import LinuxTarget, MacOSTarget, TargetPlatform
from ..standards.requirements import Requirement
from ..standards.tomlwriter import TomlTable

__all__ = [
    "LayerKind",
    "PythonImplementation",
    "PackageIndex",
    "UvConfig",
    "RuntimeSpec",
    "FrameworkSpec",
    "ApplicationSpec",
    "LayerSpec",
    "StackSpec",
    "UNKNOWN_VERSION",
    "derived_file_names",
]

UNKNOWN_VERSION = "???"
"""Shown in place of the lock version of a versioned layer that has no valid lock."""


def _empty() -> Mapping[str, Never]:
    return MappingProxyType({})


class LayerKind(enum.StrEnum):
    """The three kinds of layer, in the order they are defined and built."""

    RUNTIME = "runtime"
    FRAMEWORK = "framework"
    APPLICATION = "application"

    @property
    def category(self) -> str:
        """The plural name: the spec's array-of-tables key and the JSON key."""
        return {"runtime": "runtimes", "framework": "frameworks", "application": "applications"}[
            self.value
        ]

    @property
    def name_prefix(self) -> str:
        """What precedes a layer's name in its build name."""
        return {"runtime": "", "framework": "framework-", "application": "app-"}[self.value]


@dataclass(frozen=True)
class PythonImplementation:
    """A runtime's interpreter: `cpython@3.11.7` or `pypy@3.11.13`."""

    implementation: str
    """`cpython` or `pypy`."""
    version: str
    """The full version as written, `X.Y.Z` with an optional pre-release suffix."""

    def __str__(self) -> str:
        return f"{self.implementation}@{self.version}"

    @property
    def short_version(self) -> str:
        """`X.Y`, as in `python_version` markers and `requires-python`."""
        major, minor, _ = self.version.split(".", 2)
        return f"{major}.{minor}"


@dataclass(frozen=True, kw_only=True)
class PackageIndex:
    """One `[[tool.uv.index]]` entry."""

    name: str | None
    url: str
    explicit: bool = False
    default: bool = False
    settings: TomlTable = field(default_factory=_empty)
    """The whole table as written, for passing on to uv."""

    @property
    def is_common(self) -> bool:
        """True if uv consults this index for every package, not only pinned ones."""
        return self.default or not self.explicit


@dataclass(frozen=True, kw_only=True)
class UvConfig:
    """The uv settings shared by every layer: `[tool.uv]` or `venvstacks.uv.toml`."""

    source: Path | None = None
    """Where the settings came from (the spec itself or the sibling file), if anywhere."""
    settings: TomlTable = field(default_factory=_empty)
    """Every setting other than `index` and `sources`, deeply read-only."""
    indexes: tuple[PackageIndex, ...] = ()
    sources: Mapping[str, str] = field(default_factory=_empty)
    """Normalised distribution name -> index name, from `[tool.uv.sources]`."""

    @property
    def named_indexes(self) -> Mapping[str, PackageIndex]:
        """The indexes that layers can refer to, by name."""
        return {index.name: index for index in self.indexes if index.name is not None}


@dataclass(frozen=True, kw_only=True)
class _LayerBase:
    """Fields every kind of layer has."""

    name: str
    """The name as written in the spec; other layers refer to it by this name."""
    requirements: tuple[Requirement, ...]
    platforms: tuple[TargetPlatform, ...]
    """The effective target platforms (declared, or inferred from lower layers)."""
    platforms_declared: bool = False
    versioned: bool = False
    linux_target: LinuxTarget
    macosx_target: MacOSTarget
    dynlib_exclude: tuple[str, ...] = ()
    package_indexes: Mapping[str, str] = field(default_factory=_empty)
    """Normalised distribution name -> index name, including inherited pins."""
    priority_indexes: tuple[str, ...] = ()
    index_overrides: Mapping[str, str] = field(default_factory=_empty)
    console_scripts: bool | tuple[str, ...] = False
    """Which entry-point scripts of the layer's own packages get launchers: all, none, or these names."""
    postinstall_hook: Path | None = None
    """Absolute path of the script run after the layer is relinked on the target, if any."""

    kind: LayerKind = field(init=False)

    @property
    def build_name(self) -> str:
        """The layer's name in the build folder, lock folder and metadata file names."""
        return self.kind.name_prefix + self.name

    def deployed_name(self, lock_version: int | None = None) -> str:
        """The folder name the layer is deployed as.

        Implicitly versioned layers deploy as `<build name>@<lock version>`; until
        they have a valid lock the version shows as `???`.
        """
        if not self.versioned:
            return self.build_name
        version = UNKNOWN_VERSION if lock_version is None else str(lock_version)
        return f"{self.build_name}@{version}"


@dataclass(frozen=True, kw_only=True)
class RuntimeSpec(_LayerBase):
    """A `[[runtimes]]` entry: a CPython (or PyPy) runtime plus a few base packages."""

    python_implementation: PythonImplementation
    kind: LayerKind = field(init=False, default=LayerKind.RUNTIME)


@dataclass(frozen=True, kw_only=True)
class _LayeredBase(_LayerBase):
    """Fields of the layers that are virtual environments on a runtime."""

    runtime: str
    """The name of the runtime underneath (declared or inherited from frameworks)."""
    frameworks: tuple[str, ...] = ()
    """The framework names as declared, in declared order."""
    linearised_frameworks: tuple[str, ...] = ()
    """Every framework underneath, in sys.path order (C3 linearisation)."""


@dataclass(frozen=True, kw_only=True)
class FrameworkSpec(_LayeredBase):
    """A `[[frameworks]]` entry: big shared packages on a runtime or other frameworks."""

    kind: LayerKind = field(init=False, default=LayerKind.FRAMEWORK)


@dataclass(frozen=True, kw_only=True)
class ApplicationSpec(_LayeredBase):
    """An `[[applications]]` entry: an app's own packages and its launch module."""

    launch_module: Path
    """Absolute path of the launch module: a `.py` file or a package folder."""
    support_modules: tuple[Path, ...] = ()
    """Absolute paths of the support modules, sorted as upstream sorts them."""
    kind: LayerKind = field(init=False, default=LayerKind.APPLICATION)

    @property
    def launch_module_name(self) -> str:
        """The importable name of the launch module (`python -m <name>`)."""
        return self.launch_module.stem


LayerSpec = RuntimeSpec | FrameworkSpec | ApplicationSpec
LayeredSpec = FrameworkSpec | ApplicationSpec


@dataclass(frozen=True, kw_only=True)
class StackSpec:
    """A whole stack specification, validated."""

    spec_path: Path
    """Absolute path of the spec file (symlinks not resolved)."""
    runtimes: tuple[RuntimeSpec, ...] = ()
    frameworks: tuple[FrameworkSpec, ...] = ()
    applications: tuple[ApplicationSpec, ...] = ()
    disabled: tuple[str, ...] = ()
    """Build names of layers that target no platform (`platforms = []`), and are skipped."""
    uv_config: UvConfig = field(default_factory=UvConfig)
    warnings: tuple[str, ...] = ()
    """Deprecations and other non-fatal findings, for the command line to show."""

    @property
    def spec_dir(self) -> Path:
        """The folder relative paths in the spec are resolved against."""
        return self.spec_path.parent

    def layers(self) -> Iterator[LayerSpec]:
        """Every enabled layer: runtimes, then frameworks, then applications."""
        yield from self.runtimes
        yield from self.frameworks
        yield from self.applications

    def runtime(self, name: str) -> RuntimeSpec:
        """The runtime called `name` (KeyError if there is none)."""
        for layer in self.runtimes:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def runtime_of(self, layer: LayerSpec) -> RuntimeSpec:
        """The runtime `layer` runs on: itself for a runtime layer."""
        return layer if isinstance(layer, RuntimeSpec) else self.runtime(layer.runtime)

    def framework(self, name: str) -> FrameworkSpec:
        """The framework called `name` (KeyError if there is none)."""
        for layer in self.frameworks:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def dependencies(self, layer: LayerSpec) -> tuple[LayerSpec, ...]:
        """The layers underneath `layer` in sys.path order: frameworks, then the runtime."""
        if isinstance(layer, RuntimeSpec):
            return ()
        frameworks = tuple(self.framework(name) for name in layer.linearised_frameworks)
        return (*frameworks, self.runtime(layer.runtime))

    def dependants(self, layer: LayerSpec) -> tuple[LayerSpec, ...]:
        """The layers that have `layer` underneath them, in definition order."""
        return tuple(upper for upper in self.layers() if layer in self.dependencies(upper))


_ROOM = "9" * 9
_RANDOM = "x" * 8


def derived_file_names(build_name: str) -> tuple[str, ...]:
    """The longest file and folder names the tool may derive from a layer's build name.

    Each path component must fit the file system's limit on names. Numbers (lock
    versions, archive builds) get nine digits, temporary names the eight random
    characters `tempfile` adds, and the layer counts as versioned.
    """
    stem = build_name.replace(".", "_")
    deployed = f"{build_name}@{_ROOM}"
    platform = max((str(p) for p in TargetPlatform), key=len)
    archive = f"{deployed}-{platform}-{_ROOM}.tar.zst"
    return (
        f".pylock.{stem}.meta.json.{_RANDOM}.partial",  # requirements/<build name>/, written atomically
        f".requirements-{stem}.in.{_RANDOM}.partial",
        f".packages-{build_name}.txt.{_RANDOM}.partial",
        f".{build_name}.last-build.json.{_RANDOM}.partial",  # in the build folder
        f"{build_name}_resolve",
        f"{build_name}_install",
        f".{build_name}-{platform}.json.{_RANDOM}.partial",  # published metadata, tagged
        f".{archive}.partial-{_RANDOM}",  # an archive being written
        f".{deployed}.partial-{_RANDOM}",  # deploy's unpacking folder
    )
