"""The policy the commands share, decided in the library: which layers, which locks, which settings are refused."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import pytest

from support import COMPAT
from venvstacks.build.plan import plan_build, plan_publish, this_platform
from venvstacks.errors import ArchiveError, LockError, SelectionError, StaleLockError
from venvstacks.lock.locker import LockSettings, uv_config_text
from venvstacks.lock.state import require_no_relocking, require_valid_locks
from venvstacks.platforms import TargetPlatform
from venvstacks.publish.archive import ArchiveFormat
from venvstacks.publish.publisher import PublishSettings, stack_metadata_path
from venvstacks.spec.load import load_spec
from venvstacks.spec.model import LayerSpec, StackSpec
from venvstacks.spec.selection import choose_layers

ALL = ["cpython-3.11", "framework-web", "framework-web-extra", "app-dates", "app-records"]


@pytest.fixture
def spec(tmp_path: Path) -> StackSpec:
    """The upstream-locked stack (every lock valid), in a copy free to be edited."""
    shutil.copytree(COMPAT, tmp_path / "compat")
    return load_spec(tmp_path / "compat" / "venvstacks.toml", environ={})


def _names(layers: Iterable[LayerSpec]) -> list[str]:
    return [layer.build_name for layer in layers]


def _unlock(spec: StackSpec, name: str) -> None:
    (spec.spec_dir / "requirements" / name / f"pylock.{name}.toml").unlink()


def test_unmatched_patterns_are_refused_unless_allowed(spec: StackSpec) -> None:
    with pytest.raises(SelectionError) as caught:
        choose_layers(spec, ["app-*", "nothing-*"], option="--include", allow_missing=False)
    assert caught.value.patterns == ("nothing-*",)
    assert str(caught.value) == "no layers match --include 'nothing-*' (pass --allow-missing to continue without them)"
    selection = choose_layers(spec, ["app-*", "nothing-*"], option="--include", allow_missing=True)
    assert selection.unmatched_patterns == ("nothing-*",)
    assert _names(selection.included) == ["app-dates", "app-records"]


def test_build_takes_the_layers_underneath_and_derived_ones_only_when_asked(spec: StackSpec) -> None:
    selection = choose_layers(spec, ["framework-web"], option="--include", allow_missing=False)
    plan = plan_build(spec, selection, build_derived=False)
    assert plan.host == this_platform()
    assert _names(plan.layers) == ["cpython-3.11", "framework-web"]
    derived = plan_build(spec, selection, build_derived=True)
    assert _names(derived.layers) == ["cpython-3.11", "framework-web", "framework-web-extra", "app-dates"]
    everything = plan_build(spec, choose_layers(spec, None, option="--include", allow_missing=False), build_derived=False)
    assert _names(everything.layers) == ALL and everything.skipped == ()


def test_publish_takes_exactly_the_selected_layers(spec: StackSpec) -> None:
    plan = plan_publish(spec, choose_layers(spec, ["app-dates"], option="--include", allow_missing=False))
    assert _names(plan.layers) == ["app-dates"]
    assert _names(plan_publish(spec, choose_layers(spec, None, option="--include", allow_missing=False)).layers) == ALL


def test_layers_for_other_platforms_are_skipped(tmp_path: Path) -> None:
    other = "win_amd64" if this_platform() != TargetPlatform("win_amd64") else "linux_x86_64"
    (tmp_path / "venvstacks.toml").write_text(
        '[[runtimes]]\nname = "here"\npython_implementation = "cpython@3.11.7"\nrequirements = []\n\n'
        f'[[runtimes]]\nname = "there"\npython_implementation = "cpython@3.11.7"\nrequirements = []\nplatforms = ["{other}"]\n',
        encoding="utf-8",
    )
    spec = load_spec(tmp_path / "venvstacks.toml", environ={})
    plan = plan_build(spec, choose_layers(spec, None, option="--include", allow_missing=False), build_derived=False)
    assert (_names(plan.layers), _names(plan.skipped)) == (["here"], ["there"])


def test_valid_locks_pass_and_stale_ones_are_named_with_their_reasons(spec: StackSpec) -> None:
    checks = require_valid_locks(spec, spec.layers())
    assert all(check.valid for check in checks.values())
    _unlock(spec, "framework-web")
    apps = [layer for layer in spec.layers() if layer.build_name == "app-records"]
    require_valid_locks(spec, apps)  # it does not stand on the framework
    with pytest.raises(StaleLockError) as caught:
        require_valid_locks(spec, spec.layers(), lead="these layers have no valid lock (lock and build them first)")
    assert list(caught.value.stale) == ["framework-web", "framework-web-extra", "app-dates"]
    assert caught.value.stale["framework-web"] == ("no pylock file",)
    assert caught.value.stale["app-dates"] == ("layers underneath need locking: framework-web-extra, framework-web",)
    assert str(caught.value).splitlines()[:2] == [
        "these layers have no valid lock (lock and build them first):",
        "  framework-web (no pylock file)",
    ]


def test_without_an_index_only_valid_locks_can_be_confirmed(spec: StackSpec) -> None:
    confirm = {"framework-web": None, "app-dates": None}
    require_no_relocking(spec, confirm, frozenset(), lead="offline")
    with pytest.raises(StaleLockError) as caught:
        require_no_relocking(spec, {"framework-web": True, "app-dates": None}, frozenset({"app-dates"}), lead="offline")
    assert caught.value.stale == {
        "app-dates": ("--reset-lock was asked for",),
        "framework-web": ("relocking was asked for",),
    }
    _unlock(spec, "app-dates")
    with pytest.raises(StaleLockError) as caught:
        require_no_relocking(spec, confirm, frozenset(), lead="offline")
    assert caught.value.stale == {"app-dates": ("no pylock file",)}


def test_publish_settings_refuse_levels_the_format_does_not_take(tmp_path: Path) -> None:
    host = this_platform()
    with pytest.raises(ArchiveError, match=r"^--compression-level 12: tar.xz takes 0 to 9$"):
        PublishSettings(tmp_path, tmp_path, host, fmt=ArchiveFormat.TAR_XZ, level=12)
    with pytest.raises(ArchiveError, match=r"^--compression-level 10: tar.gz takes 0 to 9$"):
        PublishSettings(tmp_path, tmp_path, host, fmt=ArchiveFormat.TAR_GZ, level=10)
    if not ArchiveFormat.TAR_ZST.available:
        with pytest.raises(ArchiveError, match=r"^--format tar.zst: this Python cannot write it"):
            PublishSettings(tmp_path, tmp_path, host, fmt=ArchiveFormat.TAR_ZST)
    settings = PublishSettings(tmp_path, tmp_path, host, fmt=ArchiveFormat.ZIP, level=9, tag_outputs=True)
    assert stack_metadata_path(settings, export=True) == tmp_path / "__venvstacks__" / "venvstacks.json"
    assert stack_metadata_path(settings, export=False).name == f"venvstacks-{host}.json"


@pytest.mark.parametrize("value", ['"wheels"', '["wheels", 3]'])
def test_find_links_must_be_an_array_of_strings(tmp_path: Path, value: str) -> None:
    (tmp_path / "venvstacks.toml").write_text(
        '[[runtimes]]\nname = "rt"\npython_implementation = "cpython@3.11.7"\nrequirements = []\n\n'
        f"[tool.uv]\nfind-links = {value}\n",
        encoding="utf-8",
    )
    spec = load_spec(tmp_path / "venvstacks.toml", environ={})
    with pytest.raises(LockError, match=r"venvstacks.toml: tool.uv find-links must be an array of strings$"):
        uv_config_text(spec, LockSettings(build_dir=tmp_path / "_build"))
    (tmp_path / "venvstacks.toml").write_text(
        '[[runtimes]]\nname = "rt"\npython_implementation = "cpython@3.11.7"\nrequirements = []\n\n'
        '[tool.uv]\nfind-links = ["wheels", "https://example.org/w/"]\n',
        encoding="utf-8",
    )
    text = uv_config_text(load_spec(tmp_path / "venvstacks.toml", environ={}), LockSettings(build_dir=tmp_path / "_build"))
    assert f'find-links = ["{tmp_path / "wheels"}", "https://example.org/w/"]' in text
