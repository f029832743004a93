"""Reading and validating a stack specification into the `model.py` model.

`load_spec(path)` does the file reading; `parse_spec(data, ...)` does the
checking. Every problem found is collected and raised together as one
`SpecError`, each naming the file, the layer and the field.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path

from ..errors import SpecError, SpecIssue
from ..platforms import DEFAULT_MACOSX_TARGET, MacOSTarget, parse_macosx_target
from ..spec.fields import CommonFields, read_common_fields
from ..spec.issues import IssueLog, TableReader, describe_type, did_you_mean
from ..spec.layering import infer_platforms, merge_package_indexes
from ..spec.model import (
    ApplicationSpec,
    FrameworkSpec,
    LayerKind,
    LayerSpec,
    PythonImplementation,
    RuntimeSpec,
    StackSpec,
    UvConfig,
    derived_file_names,
)
from ..spec.modules import check_app_modules
from ..spec.references import LayerRegistry
from ..spec.uvconfig import parse_uv_config
from ..standards.tomlwriter import TomlTable

__all__ = ["load_spec", "parse_spec", "read_toml", "UV_CONFIG_FILENAME"]

UV_CONFIG_FILENAME = "venvstacks.uv.toml"

_COMMON_KEYS = frozenset(
    {
        "name",
        "requirements",
        "platforms",
        "versioned",
        "linux_target",
        "macosx_target",
        "dynlib_exclude",
        "package_indexes",
        "priority_indexes",
        "index_overrides",
        "build_requirements",
        "console_scripts",
        "postinstall_hook",
    }
)
_KEYS = {
    LayerKind.RUNTIME: _COMMON_KEYS | {"python_implementation", "fully_versioned_name"},
    LayerKind.FRAMEWORK: _COMMON_KEYS | {"runtime", "frameworks"},
    LayerKind.APPLICATION: _COMMON_KEYS | {"runtime", "frameworks", "launch_module", "support_modules"},
}
_ELSEWHERE = {
    "python_implementation": "only runtimes have a 'python_implementation'",
    "fully_versioned_name": "only runtimes have a 'fully_versioned_name'",
    "runtime": "runtimes do not sit on another runtime",
    "frameworks": "runtimes cannot depend on frameworks",
    "launch_module": "only applications have a 'launch_module'",
    "support_modules": "only applications have 'support_modules'",
}
_TOP_LEVEL_KEYS = ("runtimes", "frameworks", "applications", "tool")
_LAYER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]*")
_NAME_MAX = 255
"""The usual limit on a file name's length, for file systems that say nothing else; outputs may go elsewhere."""
_IMPLEMENTATION = re.compile(r"(cpython|pypy)@(([0-9]+)\.([0-9]+)\.[0-9]+(?:(?:a|b|rc)[0-9]+)?)")


def read_toml(path: Path, label: str) -> TomlTable:
    """Read a TOML file; any problem becomes a one-line SpecError naming `label`."""
    def fail(message: str) -> SpecError:
        return SpecError([SpecIssue(label, None, None, message)])

    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise fail("no such file") from exc
    except IsADirectoryError as exc:
        raise fail("is a folder, not a TOML file") from exc
    except PermissionError as exc:
        raise fail("cannot be read (permission denied)") from exc
    except OSError as exc:
        raise fail(f"cannot be read ({exc.strerror or exc})") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise fail(f"is not valid UTF-8 (byte 0x{raw[exc.start]:02x} on line {line})") from exc
    text = text.removeprefix("\ufeff")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise fail(f"invalid TOML: {exc}") from exc
    except RecursionError:
        raise fail("invalid TOML: arrays or inline tables are nested too deeply to read") from None


def load_spec(path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None) -> StackSpec:
    """Read, check and return the stack specification at `path`."""
    label = os.fspath(path)
    spec_path = Path(os.path.abspath(os.path.expanduser(label)))
    data = read_toml(spec_path, label)
    uv_file = spec_path.parent / UV_CONFIG_FILENAME
    uv_file_data = None
    if uv_file.is_file():
        uv_file_data = read_toml(uv_file, os.path.join(os.path.dirname(label), UV_CONFIG_FILENAME))
    return parse_spec(
        data,
        spec_path=spec_path,
        label=label,
        uv_file_data=uv_file_data,
        environ=os.environ if environ is None else environ,
    )


def parse_spec(
    data: TomlTable,
    *,
    spec_path: Path,
    label: str | None = None,
    uv_file_data: TomlTable | None = None,
    environ: Mapping[str, str] | None = None,
) -> StackSpec:
    """Check parsed TOML data and build the stack model; raise SpecError listing every problem.

    `spec_path` is the spec's absolute path (relative module paths are resolved
    from its folder); `label` is how messages name it. `uv_file_data` is the
    content of a sibling `venvstacks.uv.toml`, if there is one.
    """
    parser = _SpecParser(spec_path, label or str(spec_path), environ or {})
    return parser.parse(data, uv_file_data)


def _name_max(folder: Path) -> int:
    """The longest file name allowed in `folder`'s file system, and never more than the usual 255."""
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):  # no pathconf (Windows), or no such folder
        return _NAME_MAX
    return min(limit, _NAME_MAX) if limit > 0 else _NAME_MAX


class _SpecParser:
    """One pass over a specification, collecting issues as it goes."""

    def __init__(self, spec_path: Path, label: str, environ: Mapping[str, str]) -> None:
        self.spec_path = spec_path
        self.log = IssueLog(label)
        self.environ = environ
        self.warnings: list[str] = []
        self.uv_config: UvConfig | None = UvConfig()
        self.layers = LayerRegistry()
        self.disabled: list[str] = []
        self.default_macosx = self._default_macosx_target()
        self.name_max = _name_max(spec_path.parent)

    # Top level

    def parse(self, data: TomlTable, uv_file_data: TomlTable | None) -> StackSpec:
        top = TableReader(data, self.log, None)
        for key in data:
            if key not in _TOP_LEVEL_KEYS:
                top.error(key, "unknown top-level key" + did_you_mean(key, _TOP_LEVEL_KEYS))
        self._parse_tool(data.get("tool"), uv_file_data)
        tables = {kind: self._layer_tables(data, kind) for kind in LayerKind}
        if not any(tables.values()) and not self.log.issues:
            top.error(None, "defines no layers (expected at least one [[runtimes]] table)")
        self.layers.prescan(tables)
        for kind in LayerKind:
            for position, table in enumerate(tables[kind]):
                self._parse_layer(kind, position, table)
        if self.log.issues:
            raise SpecError(self.log.issues)
        disabled = set(self.disabled)
        return StackSpec(
            spec_path=self.spec_path,
            runtimes=tuple(v for v in self.layers.runtimes.values() if v.build_name not in disabled),
            frameworks=tuple(v for v in self.layers.frameworks.values() if v.build_name not in disabled),
            applications=tuple(v for v in self.layers.applications.values() if v.build_name not in disabled),
            disabled=tuple(self.disabled),
            uv_config=self.uv_config or UvConfig(),
            warnings=tuple(self.warnings),
        )

    def _layer_tables(self, data: TomlTable, kind: LayerKind) -> list[TomlTable]:
        value = data.get(kind.category, [])
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            self.log.add(
                None, kind.category, f"expected an array of tables ([[{kind.category}]] entries), got {describe_type(value)}"
            )
            return []
        return value

    def _parse_tool(self, tool: object, uv_file_data: TomlTable | None) -> None:
        uv_file = self.spec_path.parent / "venvstacks.uv.toml"
        uv_label = os.path.join(os.path.dirname(self.log.path), "venvstacks.uv.toml")
        inline = None
        if tool is not None:
            if not isinstance(tool, dict):
                self.log.add(None, "tool", f"expected a table, got {describe_type(tool)}")
            elif "uv" in tool:
                inline = tool["uv"]
                if not isinstance(inline, dict):
                    self.log.add(None, "tool.uv", f"expected a table, got {describe_type(inline)}")
                    self.uv_config = None
                    return
        if inline is not None:
            if uv_file_data is not None:
                self.warnings.append(f"{uv_label}: ignored, because {self.log.path} has its own [tool.uv] table")
            self.uv_config = parse_uv_config(inline, self.log, prefix="tool.uv.", source=self.spec_path, label=self.log.path)
        elif uv_file_data is not None:
            self.uv_config = parse_uv_config(uv_file_data, self.log, prefix="", source=uv_file, label=uv_label)

    def _default_macosx_target(self) -> MacOSTarget:
        raw = self.environ.get("MACOSX_DEPLOYMENT_TARGET") or DEFAULT_MACOSX_TARGET
        try:
            return parse_macosx_target(raw)
        except ValueError as exc:
            self.log.add(None, None, f"environment variable MACOSX_DEPLOYMENT_TARGET: {exc}")
            return parse_macosx_target(DEFAULT_MACOSX_TARGET)

    # One layer

    def _parse_layer(self, kind: LayerKind, position: int, table: TomlTable) -> None:
        name = table.get("name")
        where = f"{kind.value} {name!r}" if isinstance(name, str) and name else f"{kind.category}[{position}]"
        reader = TableReader(table, self.log, where)
        errors_before = len(self.log)
        reader.check_keys(_KEYS[kind], {k: v for k, v in _ELSEWHERE.items() if k not in _KEYS[kind]})
        name = self._parse_name(reader, kind)
        if "build_requirements" in table:
            self.warnings.append(
                f"{self.log.path}: {where}: field 'build_requirements' is deprecated and ignored "
                "(layers never build from source)"
            )
        fields = read_common_fields(reader, self.default_macosx, self.spec_path.parent, scripts_default=kind is LayerKind.APPLICATION)
        layer: LayerSpec | None
        if kind is LayerKind.RUNTIME:
            layer = self._finish_runtime(reader, name, fields)
        else:
            layer = self._finish_layered(reader, kind, name, fields)
        if name is None:
            return
        if layer is None or len(self.log) > errors_before:
            self.layers.add_broken(kind, name)
            return
        self.layers.add(layer)
        if not layer.platforms:
            self.disabled.append(layer.build_name)

    def _parse_name(self, reader: TableReader, kind: LayerKind) -> str | None:
        name = reader.string("name", required=True)
        if name is None:
            return None
        if not _LAYER_NAME.fullmatch(name):
            reader.error(
                "name",
                f"invalid layer name {name!r}: use letters, digits and '.', '_', '-', '@' or '+', starting with a letter or digit",
            )
            return None
        if kind is LayerKind.RUNTIME:
            for prefix in ("framework-", "app-"):
                if name.startswith(prefix):
                    reader.error("name", f"runtime name {name!r} starts with the reserved prefix {prefix!r}")
                    return None
        if not self._check_name_length(reader, kind, name):
            return None
        other = self.layers.clash(kind, name)
        if other is not None:
            detail = "" if other == name else f" (as {other!r}: names may not differ only in case)"
            reader.error("name", f"{kind.value} name {name!r} is already defined{detail}")
            return None
        return name

    def _check_name_length(self, reader: TableReader, kind: LayerKind, name: str) -> bool:
        """Report a name whose derived file names (lock files, archives...) the file system would refuse."""
        build_name = kind.name_prefix + name
        longest = max(len(derived) for derived in derived_file_names(build_name))
        if longest <= self.name_max:
            return True
        allowed = self.name_max - (longest - len(name))
        reader.error(
            "name",
            f"{kind.value} name is {len(name)} characters long: the lock, build and archive file names made from it "
            f"would pass the file system's limit of {self.name_max} characters, so it can have at most {allowed}",
        )
        return False

    def _finish_runtime(self, reader: TableReader, name: str | None, fields: CommonFields) -> RuntimeSpec | None:
        implementation = self._parse_implementation(reader)
        platforms, unsupported = infer_platforms(fields.platforms, [])
        indexes = self._merge_indexes(reader, fields, [])
        if name is None or implementation is None or not fields.complete or indexes is None:
            return None
        return RuntimeSpec(python_implementation=implementation, platforms=platforms, package_indexes=indexes, **fields.model_args(name))

    def _parse_implementation(self, reader: TableReader) -> PythonImplementation | None:
        value = reader.string("python_implementation")
        legacy = reader.string("fully_versioned_name")
        if "fully_versioned_name" in reader.table:
            if "python_implementation" in reader.table:
                reader.error(
                    "fully_versioned_name",
                    "sets both 'python_implementation' and the obsolete 'fully_versioned_name'; keep only 'python_implementation'",
                )
                return None
            self.warnings.append(
                f"{self.log.path}: {reader.layer}: field 'fully_versioned_name' is deprecated; "
                "rename it to 'python_implementation'"
            )
            field, value = "fully_versioned_name", legacy
        elif "python_implementation" not in reader.table:
            reader.error(None, "missing required field 'python_implementation' (such as \"cpython@3.12.7\")")
            return None
        else:
            field = "python_implementation"
        if value is None:
            return None
        match = _IMPLEMENTATION.fullmatch(value)
        if match is None:
            reader.error(
                field,
                f"invalid Python implementation {value!r}: expected '<implementation>@<X.Y.Z>' "
                "such as 'cpython@3.12.7', where the implementation is 'cpython' or 'pypy'",
            )
            return None
        if (int(match[3]), int(match[4])) < (3, 9):
            reader.error(field, f"Python {match[2]} is not supported: runtimes need Python 3.9 or newer")
            return None
        return PythonImplementation(match[1], match[2])

    def _finish_layered(
        self, reader: TableReader, kind: LayerKind, name: str | None, fields: CommonFields
    ) -> FrameworkSpec | ApplicationSpec | None:
        base = self.layers.resolve_dependencies(reader, kind, name)
        app_modules = None
        if kind is LayerKind.APPLICATION:
            app_modules = check_app_modules(reader, self.spec_path.parent)
        if base is None:
            return None
        runtime_name, declared, order = base
        frameworks = [self.layers.frameworks[n] for n in order]
        runtime = self.layers.runtimes[runtime_name]
        lower: list[LayerSpec] = [*frameworks] if frameworks else [runtime]
        all_lower = [*frameworks, runtime]
        platforms, unsupported = infer_platforms(fields.platforms, [layer.platforms for layer in all_lower])
        if unsupported:
            reader.error(
                "platforms",
                f"specifies target platforms not supported by lower layers: {[str(p) for p in unsupported]} "
                f"(they offer {[str(p) for p in infer_platforms(None, [l.platforms for l in all_lower])[0]]})",
            )
        indexes = self._merge_indexes(reader, fields, [layer.package_indexes for layer in lower])
        if name is None or not fields.complete or indexes is None or unsupported:
            return None
        common = dict(
            runtime=runtime_name,
            frameworks=declared,
            linearised_frameworks=order,
            platforms=platforms,
            package_indexes=indexes,
            **fields.model_args(name),
        )
        if kind is LayerKind.FRAMEWORK:
            return FrameworkSpec(**common)
        if app_modules is None:
            return None
        launch, support = app_modules
        return ApplicationSpec(launch_module=launch, support_modules=support, **common)

    def _merge_indexes(
        self, reader: TableReader, fields: CommonFields, inherited: list[Mapping[str, str]]
    ) -> dict[str, str] | None:
        if self.uv_config is None:
            return {}  # the uv settings are broken; that is already reported
        known = self.uv_config.named_indexes
        ok = True
        references: list[tuple[str, str]] = []
        references += [(f"package_indexes.{d}", i) for d, i in (fields.package_indexes or {}).items()]
        references += [(f"priority_indexes[{n}]", i) for n, i in enumerate(fields.priority_indexes or ())]
        for source, target in (fields.index_overrides or {}).items():
            references += [(f"index_overrides.{source}", source), (f"index_overrides.{source}", target)]
        for field, index in references:
            if index not in known:
                hint = did_you_mean(index, known) or (
                    " (no named [[tool.uv.index]] entries are defined)" if not known else ""
                )
                reader.error(field, f"references an unknown package index {index!r}{hint}")
                ok = False
        if not ok or fields.package_indexes is None or fields.index_overrides is None:
            return None
        merged, problems = merge_package_indexes(fields.package_indexes, fields.index_overrides, inherited)
        for field, message in problems:
            reader.error(field, message)
        return None if problems else merged
