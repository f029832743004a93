"""Building layers concurrently: a layer starts only once the layers underneath it are built."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from venvstacks.build.builder import BuildOutcome, _build_when_ready
from venvstacks.errors import BuildError
from venvstacks.spec.model import LayerSpec, StackSpec
from venvstacks.spec.load import load_spec

STACK = """\
[[runtimes]]
name = "rt"
python_implementation = "cpython@3.11.7"
requirements = []

[[frameworks]]
name = "left"
runtime = "rt"
requirements = []

[[frameworks]]
name = "right"
runtime = "rt"
requirements = []

[[applications]]
name = "app"
launch_module = "app.py"
frameworks = ["left", "right"]
requirements = []
"""


@pytest.fixture
def spec(tmp_path: Path) -> StackSpec:
    (tmp_path / "app.py").write_text("print('app')\n", encoding="utf-8")
    (tmp_path / "venvstacks.toml").write_text(STACK, encoding="utf-8")
    return load_spec(tmp_path / "venvstacks.toml", environ={})


class Recorder:
    """A fake layer build that records when layers start and finish."""

    def __init__(self, spec: StackSpec, fail: str | None = None) -> None:
        self.spec = spec
        self.fail = fail
        self.guard = threading.Lock()
        self.events: list[tuple[str, str]] = []
        self.both_frameworks = threading.Barrier(2, timeout=30)

    def __call__(self, layer: LayerSpec) -> BuildOutcome:
        with self.guard:
            self.events.append(("start", layer.build_name))
        if layer.build_name.startswith("framework-") and self.fail is None:
            self.both_frameworks.wait()  # both frameworks are building at the same time, or this times out
        if layer.build_name == self.fail:
            raise BuildError(f"layer {layer.build_name!r} failed")
        with self.guard:
            self.events.append(("end", layer.build_name))
        return BuildOutcome(layer.build_name, Path(layer.build_name), "built")


def test_independent_layers_build_at_once_and_dependencies_first(spec: StackSpec) -> None:
    build = Recorder(spec)
    outcomes = _build_when_ready(spec, list(spec.layers()), build, jobs=2)
    assert sorted(outcomes) == ["app-app", "framework-left", "framework-right", "rt"]
    position = {event: index for index, event in enumerate(build.events)}
    for layer in spec.layers():
        for below in spec.dependencies(layer):
            assert position[("end", below.build_name)] < position[("start", layer.build_name)]


def test_one_job_builds_one_layer_at_a_time(spec: StackSpec) -> None:
    build = Recorder(spec, fail="nothing")  # no barrier: one at a time must not wait for a partner
    _build_when_ready(spec, list(spec.layers()), build, jobs=1)
    kinds = [kind for kind, _ in build.events]
    assert kinds == ["start", "end"] * 4


def test_after_a_failure_nothing_above_it_starts(spec: StackSpec) -> None:
    build = Recorder(spec, fail="framework-left")
    with pytest.raises(BuildError, match="layer 'framework-left' failed"):
        _build_when_ready(spec, list(spec.layers()), build, jobs=2)
    assert ("start", "app-app") not in build.events
