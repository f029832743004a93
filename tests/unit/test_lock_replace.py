"""Writing a lock run's files together: all or nothing, unchanged files untouched, interrupts held."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from venvstacks.lock.files import replace_lock_files


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_new_files_and_folders_are_written_unchanged_ones_left_alone(tmp_path: Path) -> None:
    same = tmp_path / "requirements" / "rt" / "pylock.rt.toml"
    same.parent.mkdir(parents=True)
    same.write_text("same\n", encoding="utf-8")
    os.utime(same, ns=(1, 1))
    replace_lock_files({
        same: "same\n",
        tmp_path / "requirements" / "rt" / "pylock.rt.meta.json": "{}\n",
        tmp_path / "requirements" / "app-x" / "pylock.app-x.toml": "new\n",
    })  # fmt: skip
    assert _tree(tmp_path) == {
        "requirements/app-x/pylock.app-x.toml": b"new\n",
        "requirements/rt/pylock.rt.meta.json": b"{}\n",
        "requirements/rt/pylock.rt.toml": b"same\n",
    }
    assert same.stat().st_mtime_ns == 1


def test_a_file_that_cannot_be_written_changes_nothing(tmp_path: Path) -> None:
    old = tmp_path / "requirements" / "rt" / "pylock.rt.toml"
    old.parent.mkdir(parents=True)
    old.write_text("old\n", encoding="utf-8")
    (tmp_path / "requirements" / "blocked").write_text("a file where a folder should be", encoding="utf-8")
    before = _tree(tmp_path)
    with pytest.raises(OSError) as caught:
        replace_lock_files({
            old: "new\n",
            tmp_path / "requirements" / "fw" / "pylock.fw.toml": "new\n",
            tmp_path / "requirements" / "blocked" / "app" / "pylock.app.toml": "new\n",
        })  # fmt: skip
    assert "blocked" in str(caught.value)
    assert _tree(tmp_path) == before  # no temporaries, no new file
    assert not (tmp_path / "requirements" / "fw").exists()  # nor the folder made for one


def test_an_interrupt_during_the_renames_waits_for_the_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    renamed: list[str] = []
    real_replace = os.replace

    def replace_then_interrupt(source: str, target: str) -> None:
        real_replace(source, target)
        renamed.append(Path(target).name)
        if len(renamed) == 1:
            raise KeyboardInterrupt  # as Ctrl-C arriving just after the first rename

    monkeypatch.setattr(os, "replace", replace_then_interrupt)
    folder = tmp_path / "requirements" / "rt"
    with pytest.raises(KeyboardInterrupt):
        replace_lock_files({folder / "pylock.rt.meta.json": "{}\n", folder / "pylock.rt.toml": "new\n", folder / "packages-rt.txt": "x\n"})
    # every file is in place, each renamed once, and the metadata last
    assert _tree(tmp_path) == {
        "requirements/rt/packages-rt.txt": b"x\n", "requirements/rt/pylock.rt.meta.json": b"{}\n", "requirements/rt/pylock.rt.toml": b"new\n",
    }  # fmt: skip
    assert renamed == ["pylock.rt.toml", "packages-rt.txt", "pylock.rt.meta.json"]
