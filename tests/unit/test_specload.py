"""Loading stack specifications: one data file per validation rule, plus the model."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from support import SPECS
from venvstacks.errors import SpecError
from venvstacks.platforms import TargetPlatform
from venvstacks.spec.model import ApplicationSpec, FrameworkSpec, LayerKind, RuntimeSpec
from venvstacks.spec.load import load_spec, parse_spec

ERROR_SPECS = sorted(SPECS.glob("error_*.toml"))
OK_SPECS = sorted(SPECS.glob("ok_*.toml"))


def _expectations(path: Path) -> list[str]:
    return [
        line.removeprefix("# expect: ")
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.startswith("# expect: ")
    ]


def _load(path: Path, **kwargs: object) -> object:
    # Load with a path relative to the spec folder, as a user in that folder would.
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        return load_spec(path.name, **kwargs)  # type: ignore[arg-type]
    finally:
        os.chdir(cwd)


def test_every_error_spec_states_its_expected_messages() -> None:
    assert len(ERROR_SPECS) >= 50
    for path in ERROR_SPECS:
        assert _expectations(path), path.name


@pytest.mark.parametrize("path", ERROR_SPECS, ids=lambda p: p.stem)
def test_error_spec(path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        _load(path, environ={})
    lines = str(caught.value).splitlines()
    expected = _expectations(path)
    # Exactly the expected problems, in order, each on one line naming the file.
    assert len(lines) == len(expected), lines
    for line, pattern in zip(lines, expected):
        assert line.startswith(f"{path.name}: "), line
        assert re.search(pattern, line), (pattern, line)


@pytest.mark.parametrize("path", OK_SPECS, ids=lambda p: p.stem)
def test_ok_spec(path: Path) -> None:
    spec = _load(path, environ={})
    assert spec.warnings == ()  # type: ignore[attr-defined]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"nowhere\.toml: no such file$"):
        load_spec(tmp_path / "nowhere.toml")


def test_folder_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r": is a folder, not a TOML file$"):
        load_spec(tmp_path)


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # File modes don't stop root, so the refusal is simulated at the read.
    spec = tmp_path / "venvstacks.toml"
    spec.write_text("", encoding="utf-8")

    def refuse(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(SpecError, match=r"venvstacks\.toml: cannot be read \(permission denied\)$"):
        load_spec(spec)


def test_not_utf8(tmp_path: Path) -> None:
    spec = tmp_path / "venvstacks.toml"
    spec.write_bytes(b'[[runtimes]]\nname = "caf\xe9"\n')
    with pytest.raises(SpecError, match=r"venvstacks\.toml: is not valid UTF-8 \(byte 0xe9 on line 2\)$"):
        load_spec(spec)


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    spec = tmp_path / "venvstacks.toml"
    text = '[[runtimes]]\nname = "rt"\npython_implementation = "cpython@3.12.1"\nrequirements = []\n'
    spec.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_spec(spec).runtimes[0].name == "rt"


SEED_EXAMPLE = """\
[[runtimes]]
name = "cpython@3.11"
fully_versioned_name = "cpython@3.11.10"
requirements = ["numpy"]

[[frameworks]]
name = "sklearn"
runtime = "cpython@3.11"
requirements = ["scikit-learn"]
build_requirements = []

[[applications]]
name = "classification-demo"
launch_module = "launch_modules/sklearn_classification.py"
frameworks = ["sklearn"]
requirements = ["scikit-learn"]
"""


def _seed_example(folder: Path) -> Path:
    (folder / "launch_modules").mkdir()
    (folder / "launch_modules" / "sklearn_classification.py").write_text("print('hi')\n", encoding="utf-8")
    spec = folder / "venvstacks.toml"
    spec.write_text(SEED_EXAMPLE, encoding="utf-8")
    return spec


def test_seed_example_model(tmp_path: Path) -> None:
    spec = _load(_seed_example(tmp_path), environ={})
    assert spec.spec_path == tmp_path / "venvstacks.toml"
    (runtime,) = spec.runtimes
    (framework,) = spec.frameworks
    (app,) = spec.applications
    assert isinstance(runtime, RuntimeSpec) and runtime.kind is LayerKind.RUNTIME
    assert str(runtime.python_implementation) == "cpython@3.11.10"
    assert runtime.python_implementation.short_version == "3.11"
    assert [str(r) for r in runtime.requirements] == ["numpy"]
    assert runtime.build_name == "cpython@3.11" == runtime.deployed_name()
    assert runtime.platforms == tuple(TargetPlatform)
    assert runtime.linux_target.raw == "glibc@2.28" and runtime.linux_target.version == (2, 28)
    assert runtime.macosx_target.raw == "13.0"
    assert isinstance(framework, FrameworkSpec)
    assert framework.build_name == "framework-sklearn"
    assert framework.runtime == "cpython@3.11"
    assert isinstance(app, ApplicationSpec)
    assert app.build_name == "app-classification-demo"
    assert app.launch_module == tmp_path / "launch_modules" / "sklearn_classification.py"
    assert app.launch_module_name == "sklearn_classification"
    assert app.runtime == "cpython@3.11"
    assert app.linearised_frameworks == ("sklearn",)
    assert spec.dependencies(app) == (framework, runtime)
    assert spec.dependants(runtime) == (framework, app)
    # Both deprecated fields are accepted, each with a warning naming file, layer and field.
    assert spec.warnings == (
        "venvstacks.toml: runtime 'cpython@3.11': field 'fully_versioned_name' is deprecated; "
        "rename it to 'python_implementation'",
        "venvstacks.toml: framework 'sklearn': field 'build_requirements' is deprecated and ignored "
        "(layers never build from source)",
    )


def test_spec_model_is_immutable(tmp_path: Path) -> None:
    spec = load_spec(_seed_example(tmp_path), environ={})
    with pytest.raises(AttributeError):
        spec.runtimes[0].name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.uv_config.settings["x"] = 1  # type: ignore[index]


def test_macosx_target_defaults_from_environment(tmp_path: Path) -> None:
    spec_path = _seed_example(tmp_path)
    spec = load_spec(spec_path, environ={"MACOSX_DEPLOYMENT_TARGET": "11.5"})
    assert spec.runtimes[0].macosx_target.raw == "11.5"
    assert spec.runtimes[0].macosx_target.version == (11, 5)
    with pytest.raises(SpecError, match="environment variable MACOSX_DEPLOYMENT_TARGET: macOS target"):
        load_spec(spec_path, environ={"MACOSX_DEPLOYMENT_TARGET": "eleven"})


def test_everything_model() -> None:
    spec = load_spec(SPECS / "ok_everything.toml", environ={})
    runtime = spec.runtime("cpython-3.12")
    torch = spec.framework("torch")
    vision = spec.framework("vision")
    cuda = spec.framework("cuda")
    viewer, plain = spec.applications
    assert runtime.platforms == (TargetPlatform.LINUX_X86_64, TargetPlatform.LINUX_AARCH64, TargetPlatform.MACOSX_ARM64)
    assert runtime.platforms_declared and not torch.platforms_declared
    assert torch.platforms == runtime.platforms
    assert vision.platforms == (TargetPlatform.MACOSX_ARM64, TargetPlatform.LINUX_X86_64)  # declared order kept
    assert viewer.platforms == (TargetPlatform.LINUX_X86_64, TargetPlatform.MACOSX_ARM64)  # inferred: default order
    assert runtime.linux_target.version == (2, 34) and vision.linux_target.raw == "glibc"
    assert runtime.macosx_target.version == (14, 0)
    assert runtime.dynlib_exclude == ("libpng16.*",)
    assert dict(torch.package_indexes) == {"torch": "pytorch-cpu"}  # inherited from the runtime
    assert dict(cuda.package_indexes) == {"torch": "pytorch-cu128"}  # overridden
    assert torch.priority_indexes == ("pytorch-cpu",)
    assert torch.versioned and torch.deployed_name() == "framework-torch@???"
    assert torch.deployed_name(3) == "framework-torch@3"
    assert viewer.launch_module_name == "pkg_launch"
    assert [p.name for p in viewer.support_modules] == ["conflicting", "helper.py"]  # sorted as strings
    assert viewer.linearised_frameworks == ("vision", "torch")
    assert plain.frameworks == () and plain.runtime == "cpython-3.12"
    assert [i.name for i in spec.uv_config.indexes] == ["pytorch-cpu", "pytorch-cu128"]
    assert not spec.uv_config.indexes[0].is_common
    assert dict(spec.uv_config.sources) == {"pillow": "pytorch-cpu"}
    assert spec.uv_config.settings["exclude-newer"] == "2025-08-27T00:00:00Z"


def _write(folder: Path, text: str, name: str = "venvstacks.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


RUNTIME = '[[runtimes]]\nname = "rt"\npython_implementation = "cpython@3.12.1"\nrequirements = []\n'


def test_disabled_layers_are_skipped_with_everything_above(tmp_path: Path) -> None:
    spec_path = _write(
        tmp_path,
        RUNTIME
        + '[[frameworks]]\nname = "off"\nruntime = "rt"\nrequirements = []\nplatforms = []\n'
        + '[[frameworks]]\nname = "above"\nframeworks = ["off"]\nrequirements = []\n'
        + '[[frameworks]]\nname = "on"\nruntime = "rt"\nrequirements = []\n',
    )
    spec = load_spec(spec_path)
    assert [layer.build_name for layer in spec.layers()] == ["rt", "framework-on"]
    assert spec.disabled == ("framework-off", "framework-above")


def test_declaring_platforms_above_a_disabled_layer_is_an_error(tmp_path: Path) -> None:
    spec_path = _write(
        tmp_path,
        RUNTIME
        + '[[frameworks]]\nname = "off"\nruntime = "rt"\nrequirements = []\nplatforms = []\n'
        + '[[frameworks]]\nname = "above"\nframeworks = ["off"]\nrequirements = []\nplatforms = ["linux_x86_64"]\n',
    )
    with pytest.raises(SpecError, match=r"framework 'above': field 'platforms': .*\['linux_x86_64'\] \(they offer \[\]\)"):
        load_spec(spec_path)


def test_uv_config_from_sibling_file(tmp_path: Path) -> None:
    spec_path = _write(tmp_path, RUNTIME + 'package_indexes = { torch = "cpu" }\n')
    _write(tmp_path, '[[index]]\nname = "cpu"\nurl = "https://example.com/cpu"\nexplicit = true\n', "venvstacks.uv.toml")
    spec = load_spec(spec_path)
    assert spec.uv_config.source == tmp_path / "venvstacks.uv.toml"
    assert spec.runtimes[0].package_indexes == {"torch": "cpu"}


def test_inline_uv_config_wins_over_sibling_file_with_a_warning(tmp_path: Path) -> None:
    spec_path = _write(tmp_path, RUNTIME + '[tool.uv]\nexclude-newer = "2025-01-01"\n')
    _write(tmp_path, 'exclude-newer = "2024-01-01"\n', "venvstacks.uv.toml")
    spec = load_spec(spec_path)
    assert spec.uv_config.settings["exclude-newer"] == "2025-01-01"
    assert len(spec.warnings) == 1 and "venvstacks.uv.toml: ignored" in spec.warnings[0]


def test_problems_in_sibling_uv_file_name_that_file(tmp_path: Path) -> None:
    spec_path = _write(tmp_path, RUNTIME)
    _write(tmp_path, '[[index]]\nname = "x"\n', "venvstacks.uv.toml")
    with pytest.raises(SpecError) as caught:
        load_spec(spec_path)
    assert str(caught.value) == f"{tmp_path / 'venvstacks.uv.toml'}: field 'index[0]': missing required field 'url'"


def test_bad_toml_in_sibling_uv_file_names_that_file(tmp_path: Path) -> None:
    spec_path = _write(tmp_path, RUNTIME)
    _write(tmp_path, "index = [\n", "venvstacks.uv.toml")
    with pytest.raises(SpecError, match=r"venvstacks\.uv\.toml: invalid TOML: "):
        load_spec(spec_path)


def test_parse_spec_is_pure_data_in_model_out(tmp_path: Path) -> None:
    data = {"runtimes": [{"name": "rt", "python_implementation": "pypy@3.11.13", "requirements": ["attrs"]}]}
    spec = parse_spec(data, spec_path=tmp_path / "stack.toml")
    assert spec.runtimes[0].python_implementation.implementation == "pypy"
    assert spec.spec_dir == tmp_path


def test_prerelease_runtime_version(tmp_path: Path) -> None:
    data = {"runtimes": [{"name": "rt", "python_implementation": "cpython@3.14.0b1", "requirements": []}]}
    spec = parse_spec(data, spec_path=tmp_path / "stack.toml")
    assert spec.runtimes[0].python_implementation.version == "3.14.0b1"
    assert spec.runtimes[0].python_implementation.short_version == "3.14"


def test_deeply_nested_toml_is_an_error_naming_the_file(tmp_path: Path) -> None:
    # tomllib reads nesting by recursion: this would raise RecursionError.
    spec = _write(tmp_path, "a = " + "[" * 100000)
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    assert str(caught.value) == f"{spec}: invalid TOML: arrays or inline tables are nested too deeply to read"
    uv_file = _write(tmp_path, "x = " + "{ a = " * 50000, "venvstacks.uv.toml")
    _write(tmp_path, RUNTIME)
    with pytest.raises(SpecError, match=rf"^{re.escape(str(uv_file))}: invalid TOML: .* nested too deeply"):
        load_spec(spec)


def _longest_name(kind: LayerKind, limit: int) -> int:
    from venvstacks.spec.model import derived_file_names

    extra = max(len(name) for name in derived_file_names(kind.name_prefix + "x")) - 1
    return limit - extra


@pytest.mark.parametrize("kind", list(LayerKind))
def test_layer_names_too_long_for_the_derived_file_names_are_refused(tmp_path: Path, kind: LayerKind) -> None:
    limit = min(os.pathconf(tmp_path, "PC_NAME_MAX"), 255)
    longest = _longest_name(kind, limit)
    # Room for the longest suffix: '@<version>-<platform>-<build>.tar.zst.partial-XXXXXXXX'.
    assert longest == limit - 60 - len(kind.name_prefix)
    head = RUNTIME if kind is not LayerKind.RUNTIME else ""
    (tmp_path / "app.py").write_text("print('hi')\n", encoding="utf-8")
    for length, ok in ((longest, True), (longest + 1, False)):
        name = "n" * length
        layer = {
            LayerKind.RUNTIME: f'[[runtimes]]\nname = "{name}"\npython_implementation = "cpython@3.12.1"\n',
            LayerKind.FRAMEWORK: f'[[frameworks]]\nname = "{name}"\nruntime = "rt"\n',
            LayerKind.APPLICATION: f'[[applications]]\nname = "{name}"\nruntime = "rt"\nlaunch_module = "app.py"\n',
        }[kind]
        spec = _write(tmp_path, head + layer + "requirements = []\n")
        if ok:
            assert [layer.name for layer in load_spec(spec).layers()][-1] == name
            continue
        with pytest.raises(SpecError) as caught:
            load_spec(spec)
        assert str(caught.value) == (
            f"{spec}: {kind.value} '{name}': field 'name': {kind.value} name is {length} characters long: the lock, build "
            f"and archive file names made from it would pass the file system's limit of {limit} characters, so it can have at most {longest}"
        )
