"""What `lock` decides for each layer, with a fake uv: lock, keep, relock, version, and when."""

from __future__ import annotations

import datetime
import json
import sys
import tomllib
from pathlib import Path

import pytest

from fakeuv import APP, FRAMEWORK, LAYERS, PYTHON, RUNTIME, SHORT, Stack, at, edit
from venvstacks.errors import LockError
from venvstacks.lock.files import LockPaths
from venvstacks.lock.locker import LockOutcome
from venvstacks.lock.state import check_stack_locks
from venvstacks.spec.selection import lock_wants, select_layers


@pytest.fixture
def stack(tmp_path: Path) -> Stack:
    return Stack(tmp_path)


@pytest.fixture
def locked(stack: Stack) -> Stack:
    """The stack locked once, at 01:00, with the uv calls that took forgotten."""
    stack.lock(now=at(1))
    stack.uv.clear()
    return stack


def _all(want: bool | None) -> dict[str, bool | None]:
    return dict.fromkeys(LAYERS, want)


def _actions(outcomes: dict[str, LockOutcome]) -> dict[str, str]:
    return {name: outcome.action for name, outcome in outcomes.items()}


def _versions(stack: Stack) -> dict[str, int]:
    return {name: json.loads(LockPaths.for_layer(stack.spec, stack.layer(name)).metadata.read_text())["lock_version"] for name in LAYERS}


def _resolved(stack: Stack) -> list[str]:
    """The layers uv locked and exported in the last runs (each must be exported after it was locked)."""
    calls = [(call.command, call.description.rpartition(" ")[2].strip("'")) for call in stack.uv.calls if call.command in ("lock", "export")]
    locked = [name for command, name in calls if command == "lock"]
    assert [name for command, name in calls if command == "export"] == locked
    return sorted(locked)


def test_layers_without_a_lock_are_locked_lowest_first(stack: Stack) -> None:
    outcomes = stack.lock(now=at(1))
    assert _actions(outcomes) == dict.fromkeys(LAYERS, "locked")
    assert {(o.lock_version, o.locked_at) for o in outcomes.values()} == {(1, at(1).isoformat())}
    assert [check.problems for check in check_stack_locks(stack.spec).values()] == [(), (), ()]
    # uv fetched the runtime once, then resolved each layer after the layers underneath it
    assert [call.description for call in stack.uv.calls] == [
        f"downloading CPython {PYTHON} with uv",
        *(f"{step} layer '{name}'" for name in LAYERS for step in ("locking", "exporting the lock of")),
    ]
    # the app was held to what the layers underneath install, and shares idna rather than installing it again
    app_lock = next(call for call in stack.uv.calls if call.description == f"locking layer '{APP}'")
    project = tomllib.loads((Path(app_lock.option("--project")) / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["tool"]["uv"]["constraint-dependencies"] == ["certifi==2025.8.3", "idna==3.10", "packaging==25.0"]
    packages = tomllib.loads(stack.pylock_path(APP).read_text(encoding="utf-8"))["packages"]
    assert {p["name"]: p.get("marker") for p in packages} == {
        "idna": "sys_platform == 'from_lower_layer'", "python-dateutil": None, "six": None,
    }  # fmt: skip


def test_a_valid_lock_is_kept_without_running_uv(locked: Stack) -> None:
    before = locked.lock_files()
    outcomes = locked.lock(_all(None), now=at(2))
    assert _actions(outcomes) == dict.fromkeys(LAYERS, "skipped")
    assert {(o.lock_version, o.locked_at) for o in outcomes.values()} == {(1, at(1).isoformat())}
    assert (locked.uv.calls, locked.uv.found) == ([], 0)  # not even looked for
    assert locked.lock_files() == before


def test_relocking_to_the_same_packages_keeps_the_time_and_version(locked: Stack) -> None:
    before = locked.lock_files()
    outcomes = locked.lock(_all(True), now=at(2))
    assert _actions(outcomes) == dict.fromkeys(LAYERS, "unchanged")
    assert {(o.lock_version, o.locked_at) for o in outcomes.values()} == {(1, at(1).isoformat())}
    assert _resolved(locked) == sorted(LAYERS)
    assert locked.uv.ran("python install") == []  # the runtime unpacked by the first run is used again
    assert locked.lock_files() == before


def test_a_new_release_relocks_and_moves_only_a_versioned_layer_on(locked: Stack) -> None:
    locked.uv.releases["idna"] = "3.11"
    outcomes = locked.lock(_all(True), now=at(2))
    assert _actions(outcomes) == {RUNTIME: "unchanged", FRAMEWORK: "locked", APP: "locked"}
    assert {name: (o.lock_version, o.locked_at) for name, o in outcomes.items()} == {
        RUNTIME: (1, at(1).isoformat()),
        FRAMEWORK: (1, at(2).isoformat()),  # not versioned: always version 1
        APP: (2, at(2).isoformat()),
    }
    # relocking again finds nothing new: the version stays where it is
    again = locked.lock(_all(True), now=at(3))
    assert _actions(again) == dict.fromkeys(LAYERS, "unchanged")
    assert _versions(locked) == {RUNTIME: 1, FRAMEWORK: 1, APP: 2}
    assert again[APP].locked_at == at(2).isoformat()


@pytest.mark.parametrize(
    ("added", "app_action", "app_version"),
    [
        pytest.param("six", "locked", 2, id="the-app-now-shares-what-the-framework-added"),
        pytest.param("attrs", "unchanged", 1, id="the-app-does-not-use-what-the-framework-added"),
    ],
)
def test_a_changed_requirement_relocks_the_layer_and_the_layers_above_it(locked: Stack, added: str, app_action: str, app_version: int) -> None:
    locked.uv.releases["attrs"] = "25.3.0"
    edit(locked.path, 'requirements = ["idna", "certifi"]', f'requirements = ["idna", "certifi", "{added}"]')
    assert check_stack_locks(locked.spec)[FRAMEWORK].problems == ("the declared requirements changed",)
    outcomes = locked.lock(_all(None), now=at(2))
    assert _actions(outcomes) == {RUNTIME: "skipped", FRAMEWORK: "locked", APP: app_action}
    assert outcomes[APP].lock_version == app_version
    assert _resolved(locked) == [APP, FRAMEWORK]  # the app's lock was valid, but what it stands on changed


def test_a_layer_left_out_over_a_relocked_layer_is_warned_about(locked: Stack, caplog: pytest.LogCaptureFixture) -> None:
    app_files = {path: text for path, text in locked.lock_files().items() if path.startswith(APP)}
    edit(locked.path, 'requirements = ["idna", "certifi"]', 'requirements = ["idna", "certifi", "six"]')
    outcomes = locked.lock({FRAMEWORK: None}, now=at(2))
    assert _actions(outcomes) == {FRAMEWORK: "locked"}
    assert _resolved(locked) == [FRAMEWORK]
    assert {path: text for path, text in locked.lock_files().items() if path.startswith(APP)} == app_files
    assert f"layer '{APP}' builds on a layer whose lock changed: lock it too" in caplog.messages


def _next_minor() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor + 1}.0"


@pytest.mark.parametrize(
    ("old", "new", "actions"),
    [
        pytest.param('name = "dates"\n', 'name = "dates"\nlinux_target = "glibc@2.34"\n', {RUNTIME: "skipped", FRAMEWORK: "skipped", APP: "locked"},
                     id="target-of-the-app"),
        pytest.param(f"cpython@{PYTHON}", f"cpython@{_next_minor()}", dict.fromkeys(LAYERS, "locked"), id="python-minor-release"),
        pytest.param(f"cpython@{PYTHON}", f"cpython@{SHORT}.99", dict.fromkeys(LAYERS, "skipped"), id="python-patch-release"),
    ],
)  # fmt: skip
def test_changed_lock_inputs_relock_only_the_layers_they_belong_to(locked: Stack, old: str, new: str, actions: dict[str, str]) -> None:
    edit(locked.path, old, new)
    outcomes = locked.lock(_all(None), now=at(2))
    assert _actions(outcomes) == actions
    relocked = sorted(name for name, action in actions.items() if action != "skipped")
    assert _resolved(locked) == relocked
    # the same packages came out, but with other inputs: a new lock, so the versioned app moves on
    assert outcomes[APP].lock_version == (2 if APP in relocked else 1)
    assert all(check.valid for check in check_stack_locks(locked.spec).values())


def test_a_changed_launch_module_moves_the_version_on_without_uv(locked: Stack) -> None:
    pylock = locked.pylock_path(APP).read_bytes()
    (locked.path.parent / "dates.py").write_text("import dateutil, six\n", encoding="utf-8")
    assert check_stack_locks(locked.spec)[APP].only_version_inputs
    outcomes = locked.lock(_all(None), now=at(2))
    assert _actions(outcomes) == {RUNTIME: "skipped", FRAMEWORK: "skipped", APP: "versioned"}
    assert (outcomes[APP].lock_version, outcomes[APP].locked_at) == (2, at(2).isoformat())
    assert (locked.uv.calls, locked.uv.found) == ([], 0)
    assert locked.pylock_path(APP).read_bytes() == pylock
    assert check_stack_locks(locked.spec)[APP].valid


@pytest.mark.parametrize(("release", "actions"), [
    pytest.param(None, {RUNTIME: "skipped", FRAMEWORK: "unchanged", APP: "skipped"}, id="nothing-new"),
    pytest.param("3.11", {RUNTIME: "skipped", FRAMEWORK: "locked", APP: "locked"}, id="new-release"),
])  # fmt: skip
def test_reset_resolves_a_valid_lock_afresh(locked: Stack, release: str | None, actions: dict[str, str]) -> None:
    if release is not None:
        locked.uv.releases["idna"] = release
    outcomes = locked.lock(_all(None), reset=frozenset({FRAMEWORK}), now=at(2))
    assert _actions(outcomes) == actions
    assert _resolved(locked) == sorted(name for name, action in actions.items() if action != "skipped")


def test_the_lock_time_is_utc_and_never_later_than_exclude_newer(stack: Stack) -> None:
    two_hours_east = datetime.timezone(datetime.timedelta(hours=2))
    outcomes = stack.lock(now=datetime.datetime(2025, 3, 1, 12, tzinfo=two_hours_east))
    assert {o.locked_at for o in outcomes.values()} == {"2025-03-01T10:00:00+00:00"}
    relocked = stack.lock(_all(True), now=at(2), exclude_newer="2025-02-01T00:00:00Z")
    # the same packages: the old time stays; a new lock would be clamped to the exclude-newer time
    assert {o.locked_at for o in relocked.values()} == {"2025-03-01T10:00:00+00:00"}
    stack.uv.releases["six"] = "1.18.0"
    newer = stack.lock(_all(True), now=at(2), exclude_newer="2025-02-01T00:00:00Z")
    assert (newer[APP].action, newer[APP].locked_at) == ("locked", "2025-02-01T00:00:00+00:00")
    assert 'exclude-newer = "2025-02-01T00:00:00Z"' in (stack.build_dir / "uv.toml").read_text(encoding="utf-8")


def test_an_unreadable_exclude_newer_fails_and_writes_nothing(stack: Stack) -> None:
    with pytest.raises(LockError, match="UV_EXCLUDE_NEWER='last week' is not a timestamp"):
        stack.lock(exclude_newer="last week")
    assert not (stack.path.parent / "requirements").exists()


def test_lock_wants_follow_the_selection(locked: Stack) -> None:
    selection = select_layers(locked.spec, ["framework-*"])
    wants = lock_wants(locked.spec, selection, if_needed=False, lock_dependencies=False)
    assert wants == {FRAMEWORK: True, APP: True, RUNTIME: None}  # the app is derived, the runtime underneath
    assert lock_wants(locked.spec, selection, if_needed=False, lock_dependencies=True) == {FRAMEWORK: True, APP: True, RUNTIME: True}
    assert lock_wants(locked.spec, selection, if_needed=True, lock_dependencies=True) == {FRAMEWORK: None, APP: None, RUNTIME: None}
    outcomes = locked.lock(wants, now=at(2))
    assert _actions(outcomes) == {RUNTIME: "skipped", FRAMEWORK: "unchanged", APP: "unchanged"}
    assert _resolved(locked) == [APP, FRAMEWORK]


def test_a_layer_over_an_unlocked_layer_is_refused_before_uv_runs(stack: Stack) -> None:
    with pytest.raises(LockError, match=f"layer '{APP}' cannot be locked: layer '{FRAMEWORK}' underneath it has no valid lock"):
        stack.lock({APP: None})
    assert (stack.uv.calls, stack.uv.found) == ([], 0)
    assert not (stack.path.parent / "requirements").exists()


def test_a_failing_layer_leaves_every_lock_file_as_it_was(locked: Stack) -> None:
    before = locked.lock_files()
    locked.uv.releases["idna"] = "3.11"
    locked.uv.fail_on = f"layer '{APP}'"
    with pytest.raises(LockError, match=f"failed to lock layer '{APP}'"):
        locked.lock(_all(True), now=at(2))
    steps = [f"{step} layer '{name}'" for name in LAYERS for step in ("locking", "exporting the lock of")]
    assert [call.description for call in locked.uv.calls] == steps[:-1]  # the app's lock failed, so there was no export
    assert locked.lock_files() == before  # the framework's new lock was not written either
