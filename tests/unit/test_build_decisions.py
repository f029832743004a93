"""What `build` decides for each layer, with a fake uv: build, keep up to date, rebuild, and when to start."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import pytest

from fakeuv import APP, FRAMEWORK, LAYERS, PYTHON, RUNTIME, SHORT, Stack, edit, write_stack
from venvstacks.build.builder import BuildOutcome, _build_when_ready, _state
from venvstacks.errors import BuildError, MultipleErrors, VenvStacksError
from venvstacks.fsutil import dump_json
from venvstacks.lock.state import check_stack_locks
from venvstacks.spec.load import load_spec
from venvstacks.spec.model import LayerSpec

SITE = f"lib/python{SHORT}/site-packages"


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    """The stack locked and built once, with the uv calls that took forgotten."""
    return Stack(tmp_path).built()


def _actions(outcomes: dict[str, BuildOutcome]) -> dict[str, str]:
    return {name: outcome.action for name, outcome in outcomes.items()}


def _installed(stack: Stack, name: str) -> list[str]:
    return sorted(path.name for path in (stack.build_dir / name / SITE).glob("*.dist-info"))


def test_a_first_build_installs_each_layer_from_its_own_lock(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    stack.lock()
    stack.uv.clear()
    assert _actions(stack.build()) == dict.fromkeys(LAYERS, "built")
    # The runtime's packages and the framework's install side by side, in either order.
    installs = [call for call in stack.uv.calls if call.command == "pip install"]
    pythons = [stack.build_dir / RUNTIME / "bin/python3", stack.build_dir / FRAMEWORK / "bin/python", stack.build_dir / APP / "bin/python"]
    expected = {(str(python), str(stack.pylock_path(name))) for python, name in zip(pythons, LAYERS)}
    assert len(installs) == 3 and {(call.option("--python"), call.option("-r")) for call in installs} == expected
    assert all(call.env is not None and call.env["UV_NO_INSTALLER_METADATA"] == "1" for call in installs)
    # the runtime starts again from a fresh copy of the CPython uv installed, without its build tools
    assert stack.uv.ran("python install") == [f"downloading CPython {PYTHON} with uv"]
    assert stack.uv.ran("pip uninstall") == [f"removing build tools from runtime '{RUNTIME}'"]
    assert _installed(stack, RUNTIME) == ["packaging-25.0.dist-info"]
    assert _installed(stack, FRAMEWORK) == ["certifi-2025.8.3.dist-info", "idna-3.10.dist-info"]
    assert _installed(stack, APP) == ["python_dateutil-2.9.0.post0.dist-info", "six-1.17.0.dist-info"]  # idna comes from the framework
    # each layer records what it was built from, which is what the next build compares
    spec, checks = stack.spec, check_stack_locks(stack.spec)
    for layer in spec.layers():
        archive = f"uv-managed cpython-{PYTHON}-linux-x86_64-gnu" if layer.build_name == RUNTIME else None
        record = stack.build_dir / f"{layer.build_name}.last-build.json"
        assert record.read_text(encoding="utf-8") == dump_json(_state(spec, layer, checks, archive))


def test_an_unchanged_layer_is_up_to_date_and_nothing_runs(stack: Stack) -> None:
    package = stack.build_dir / FRAMEWORK / SITE / "idna" / "__init__.py"
    before = package.stat().st_mtime_ns
    assert _actions(stack.build()) == dict.fromkeys(LAYERS, "up to date")
    assert stack.uv.calls == []
    assert package.stat().st_mtime_ns == before


@pytest.mark.parametrize(
    ("package", "rebuilt"),
    [
        pytest.param("certifi", [FRAMEWORK], id="only-the-framework-has-it"),
        pytest.param("idna", [FRAMEWORK, APP], id="the-app-shares-it"),
        pytest.param("packaging", [RUNTIME], id="only-the-runtime-has-it"),
    ],
)
def test_a_relocked_layer_is_rebuilt_and_the_layers_above_only_if_their_own_lock_changed(stack: Stack, package: str, rebuilt: list[str]) -> None:
    stack.uv.releases[package] = "99.0"
    stack.lock(dict.fromkeys(LAYERS, True))
    stack.uv.clear()
    outcomes = stack.build()
    assert _actions(outcomes) == {name: "built" if name in rebuilt else "up to date" for name in LAYERS}
    assert stack.uv.ran("pip install") == sorted(f"installing the packages of layer '{name}'" for name in rebuilt)
    owner = rebuilt[0]
    assert f"{package}-99.0.dist-info" in _installed(stack, owner)


def _console_scripts(stack: Stack) -> None:
    edit(stack.path, 'requirements = ["idna", "certifi"]', 'requirements = ["idna", "certifi"]\nconsole_scripts = true')


def _dynlib_exclude(stack: Stack) -> None:
    edit(stack.path, 'name = "dates"\n', 'name = "dates"\ndynlib_exclude = ["*.so"]\n')


def _patch_release(stack: Stack) -> None:
    major, minor, micro = PYTHON.split(".")
    edit(stack.path, f"cpython@{PYTHON}", f"cpython@{major}.{minor}.{int(micro) + 1}")


@pytest.mark.parametrize(
    ("change", "rebuilt"),
    [
        pytest.param(_console_scripts, [FRAMEWORK], id="console-scripts"),
        pytest.param(_dynlib_exclude, [APP], id="dynlib-exclude"),
        pytest.param(_patch_release, LAYERS, id="runtime-patch-release"),
    ],
)
def test_a_changed_build_input_rebuilds_without_relocking(stack: Stack, change: Callable[[Stack], None], rebuilt: list[str]) -> None:
    change(stack)
    assert all(check.valid for check in check_stack_locks(stack.spec).values())  # the locks still hold
    assert _actions(stack.build()) == {name: "built" if name in rebuilt else "up to date" for name in LAYERS}
    assert stack.uv.ran("pip install") == sorted(f"installing the packages of layer '{name}'" for name in rebuilt)


def test_a_changed_launch_module_rebuilds_the_app_with_the_new_module(stack: Stack) -> None:
    (stack.path.parent / "dates.py").write_text("import dateutil, six\n", encoding="utf-8")
    assert stack.lock()[APP].action == "versioned"  # build --lock-if-needed
    assert _actions(stack.build()) == {RUNTIME: "up to date", FRAMEWORK: "up to date", APP: "built"}
    assert (stack.build_dir / APP / SITE / "dates.py").read_text(encoding="utf-8") == "import dateutil, six\n"


def test_clean_rebuilds_every_layer_from_a_fresh_runtime(stack: Stack) -> None:
    strays = [stack.build_dir / name / SITE / "stray.py" for name in LAYERS]
    for stray in strays:
        stray.write_text("left by hand\n", encoding="utf-8")
    assert _actions(stack.build(clean=True)) == dict.fromkeys(LAYERS, "built")
    assert stack.uv.ran("python install") == [f"downloading CPython {PYTHON} with uv"]
    assert [stray.exists() for stray in strays] == [False, False, False]


def test_a_layer_without_its_build_record_is_built_again_from_scratch(stack: Stack) -> None:
    # what a build interrupted half-way through the framework leaves
    (stack.build_dir / f"{FRAMEWORK}.last-build.json").unlink()
    stray = stack.build_dir / FRAMEWORK / SITE / "stray.py"
    stray.write_text("half-installed\n", encoding="utf-8")
    assert _actions(stack.build()) == {RUNTIME: "up to date", FRAMEWORK: "built", APP: "up to date"}
    assert not stray.exists()


def test_only_the_selected_layers_are_built(tmp_path: Path) -> None:
    stack = Stack(tmp_path)
    stack.lock()
    stack.uv.clear()
    assert _actions(stack.build([APP])) == {APP: "built"}
    assert stack.uv.ran("pip install") == [f"installing the packages of layer '{APP}'"]
    assert not (stack.build_dir / f"{FRAMEWORK}.last-build.json").exists()


def test_layers_without_a_valid_lock_are_refused_before_anything_runs(stack: Stack) -> None:
    edit(stack.path, 'requirements = ["idna", "certifi"]', 'requirements = ["idna", "certifi", "six"]')
    with pytest.raises(VenvStacksError, match="these layers must be locked before building") as caught:
        stack.build()
    assert f"{FRAMEWORK} (the declared requirements changed)" in str(caught.value)
    assert f"{APP} (layers underneath need locking: {FRAMEWORK})" in str(caught.value)
    assert RUNTIME not in str(caught.value)
    assert (stack.uv.calls, stack.uv.found) == ([], 0)


TWO_RUNTIMES = """\
[[runtimes]]
name = "cpython-a"
python_implementation = "cpython@3.11.7"
requirements = []

[[runtimes]]
name = "cpython-b"
python_implementation = "cpython@3.12.1"
requirements = []

[[frameworks]]
name = "on-a"
runtime = "cpython-a"
requirements = []

[[frameworks]]
name = "on-b"
runtime = "cpython-b"
requirements = []
"""


def test_a_framework_waits_only_for_the_layers_it_stands_on(tmp_path: Path) -> None:
    spec = load_spec(write_stack(tmp_path, TWO_RUNTIMES), environ={})
    events: list[tuple[str, str]] = []
    guard = threading.Lock()
    on_a_started = threading.Event()

    def build(layer: LayerSpec) -> BuildOutcome:
        with guard:
            events.append(("start", layer.build_name))
        if layer.build_name == "framework-on-a":
            on_a_started.set()
        if layer.build_name == "cpython-b":
            # Runtime b finishes only once the framework on runtime a has started: had
            # that framework waited for every runtime, this would time out.
            assert on_a_started.wait(timeout=10), "the framework on runtime a waited for runtime b"
        with guard:
            events.append(("end", layer.build_name))
        return BuildOutcome(layer.build_name, tmp_path / layer.build_name, "built")

    outcomes = _build_when_ready(spec, list(spec.layers()), build, jobs=4)
    assert sorted(outcomes) == ["cpython-a", "cpython-b", "framework-on-a", "framework-on-b"]
    position = {event: index for index, event in enumerate(events)}
    assert position[("end", "cpython-a")] < position[("start", "framework-on-a")] < position[("end", "cpython-b")]
    assert position[("end", "cpython-b")] < position[("start", "framework-on-b")]


def test_a_framework_starts_once_its_runtimes_interpreter_is_unpacked(tmp_path: Path) -> None:
    spec = load_spec(write_stack(tmp_path, TWO_RUNTIMES), environ={})
    interpreters: dict[str, Future[None]] = {"cpython-a": Future(), "cpython-b": Future()}
    framework_started = threading.Event()

    def build(layer: LayerSpec) -> BuildOutcome:
        if layer.build_name.startswith("cpython-"):
            interpreters[layer.build_name].set_result(None)
        if layer.build_name == "cpython-a":
            # Runtime a installs its own packages while the framework on it builds: had the
            # framework waited for the whole runtime, this would time out.
            assert framework_started.wait(timeout=10), "the framework waited for its runtime's packages"
        if layer.build_name == "framework-on-a":
            framework_started.set()
        return BuildOutcome(layer.build_name, tmp_path / layer.build_name, "built")

    outcomes = _build_when_ready(spec, list(spec.layers()), build, jobs=4, interpreters=interpreters)
    assert sorted(outcomes) == ["cpython-a", "cpython-b", "framework-on-a", "framework-on-b"]


def test_a_runtime_that_fails_before_its_interpreter_is_unpacked_starts_nothing_on_it(tmp_path: Path) -> None:
    spec = load_spec(write_stack(tmp_path, TWO_RUNTIMES), environ={})
    interpreters: dict[str, Future[None]] = {"cpython-a": Future(), "cpython-b": Future()}
    started: list[str] = []

    def build(layer: LayerSpec) -> BuildOutcome:
        started.append(layer.build_name)
        if layer.build_name == "cpython-a":
            error = BuildError("runtime 'cpython-a': the archive is damaged")
            interpreters["cpython-a"].set_exception(error)
            raise error
        if layer.build_name == "cpython-b":
            interpreters["cpython-b"].set_result(None)
        return BuildOutcome(layer.build_name, tmp_path / layer.build_name, "built")

    with pytest.raises(BuildError, match="damaged"):
        _build_when_ready(spec, list(spec.layers()), build, jobs=4, interpreters=interpreters)
    assert "framework-on-a" not in started


def test_failures_are_reported_in_layer_order_less_those_on_a_failed_runtime(tmp_path: Path) -> None:
    spec = load_spec(write_stack(tmp_path, TWO_RUNTIMES), environ={})
    interpreters: dict[str, Future[None]] = {"cpython-a": Future(), "cpython-b": Future()}
    framework_failed, runtime_b_failed = threading.Event(), threading.Event()

    def build(layer: LayerSpec) -> BuildOutcome:
        if layer.build_name == "cpython-a":
            interpreters["cpython-a"].set_result(None)
            # Runtime a fails last: after the framework started on it, and after runtime b.
            assert framework_failed.wait(timeout=10) and runtime_b_failed.wait(timeout=10)
            raise BuildError("layer 'cpython-a' was not built")
        if layer.build_name == "framework-on-a":
            framework_failed.set()
            raise BuildError("layer 'framework-on-a' was not built")
        assert framework_failed.wait(timeout=10)  # the framework on runtime a has started, and failed, first
        runtime_b_failed.set()
        raise BuildError("layer 'cpython-b' was not built")

    with pytest.raises(MultipleErrors) as caught:
        _build_when_ready(spec, list(spec.layers()), build, jobs=4, interpreters=interpreters)
    # The framework's failure is left out (it comes again once its runtime builds); the runtimes' come in layer order.
    assert [str(error) for error in caught.value.errors] == ["layer 'cpython-a' was not built", "layer 'cpython-b' was not built"]
