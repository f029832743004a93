"""`show`: layer selection, the tree and the JSON form, checked against upstream's output."""

from __future__ import annotations

import json
import re

import pytest

from support import COMPAT, SPECS
from venvstacks.cli.render import LockState, render_tree, stack_status
from venvstacks.spec.selection import select_layers
from venvstacks.spec.model import StackSpec
from venvstacks.spec.load import load_spec


@pytest.fixture(scope="module")
def compat() -> StackSpec:
    return load_spec(COMPAT / "venvstacks.toml")


def _unlocked(text: str) -> str:
    """Upstream's output for a locked stack, turned into what it shows before locking."""
    text = re.sub(r"(── )(?=[a-z])", r"\1*", text)
    return text.replace("@1", "@???")


def test_tree_matches_upstream_before_locking(compat: StackSpec) -> None:
    upstream = (COMPAT / "upstream-show.txt").read_text(encoding="utf-8")
    expected = _unlocked(upstream).replace("<spec dir>", str(COMPAT))
    assert render_tree(stack_status(compat)) == expected


def test_json_matches_upstream_before_locking(compat: StackSpec) -> None:
    upstream = (COMPAT / "upstream-show.json").read_text(encoding="utf-8")
    expected = json.loads(upstream.replace('"has_valid_lock": true', '"has_valid_lock": false').replace("@1", "@???"))
    expected["spec_name"] = str(COMPAT / "venvstacks.toml")
    assert stack_status(compat) == expected


def test_tree_with_valid_locks_matches_upstream(compat: StackSpec) -> None:
    # Once locking exists, valid locks drop the '*' and versioned layers show their version.
    status = stack_status(compat, lock_state=lambda layer: LockState(valid=True, lock_version=1))
    upstream = (COMPAT / "upstream-show.txt").read_text(encoding="utf-8")
    assert render_tree(status) == upstream.replace("<spec dir>", str(COMPAT))


@pytest.mark.parametrize(
    ("patterns", "included", "dependencies", "derived"),
    [
        pytest.param(["framework-web"], ["framework-web"], ["cpython-3.11"], ["framework-web-extra", "app-dates"], id="framework"),
        pytest.param(["app-*"], ["app-dates", "app-records"], ["cpython-3.11", "framework-web", "framework-web-extra"], [], id="apps"),
        pytest.param(["cpython-3.11"], ["cpython-3.11"], [], ["framework-web", "framework-web-extra", "app-dates", "app-records"], id="runtime"),
        pytest.param(["*-extra", "app-records"], ["framework-web-extra", "app-records"], ["cpython-3.11", "framework-web"], ["app-dates"], id="two-patterns"),
    ],
)
def test_select_layers(
    compat: StackSpec, patterns: list[str], included: list[str], dependencies: list[str], derived: list[str]
) -> None:
    selection = select_layers(compat, patterns)
    assert [layer.build_name for layer in selection.included] == included
    assert [layer.build_name for layer in selection.dependencies] == dependencies
    assert [layer.build_name for layer in selection.derived] == derived
    assert selection.unmatched_patterns == ()


def test_select_layers_reports_unmatched_patterns_and_is_case_sensitive(compat: StackSpec) -> None:
    selection = select_layers(compat, ["APP-*", "app-dates", "nothing*"])
    assert [layer.build_name for layer in selection.included] == ["app-dates"]
    assert selection.unmatched_patterns == ("APP-*", "nothing*")


def test_selected_tree(compat: StackSpec) -> None:
    selection = select_layers(compat, ["framework-web-extra"])
    tree = render_tree(stack_status(compat, selected=selection.build_names))
    assert tree == (
        f"{COMPAT / 'venvstacks.toml'}\n"
        "├── Runtimes\n"
        "│   └── *cpython-3.11\n"
        "├── Frameworks\n"
        "│   ├── *framework-web\n"
        "│   │   └── *cpython-3.11\n"
        "│   └── *framework-web-extra\n"
        "│       ├── *framework-web\n"
        "│       └── *cpython-3.11\n"
        "└── Applications\n"
        "    └── *app-dates\n"
        "        ├── *framework-web-extra\n"
        "        ├── *framework-web\n"
        "        └── *cpython-3.11\n"
    )


def test_tree_of_a_deep_stack() -> None:
    spec = load_spec(SPECS / "ok_everything.toml", environ={})
    tree = render_tree(stack_status(spec))
    assert "│   ├── *framework-torch -> framework-torch@???\n│   │   └── *cpython-3.12\n" in tree
    assert "    ├── *app-viewer -> app-viewer@???\n    │   ├── *framework-vision\n    │   ├── *framework-torch -> framework-torch@???\n    │   └── *cpython-3.12\n" in tree
    assert tree.endswith("    └── *app-plain\n        └── *cpython-3.12\n")
