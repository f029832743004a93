"""Safe extraction of hand-made archives: unsafe or damaged ones leave nothing behind, good ones unpack as they are.

The real runtime archives are extracted and run in tests/integration/test_runtime_archives.py.
"""

from __future__ import annotations

import io
import os
import platform
import stat
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import assert_nothing_left
from venvstacks.errors import ArchiveError, UnsafeArchiveError
from venvstacks.extract import safe_extract_tar

MTIME = 1_700_000_000


@dataclass(frozen=True)
class Entry:
    """One member of a crafted archive."""

    name: str
    kind: bytes = tarfile.REGTYPE
    data: bytes = b""
    link: str = ""
    mode: int = 0o644


def _dir(name: str) -> Entry:
    return Entry(name, tarfile.DIRTYPE, mode=0o755)


def _file(name: str, data: bytes = b"data", mode: int = 0o644) -> Entry:
    return Entry(name, data=data, mode=mode)


def _symlink(name: str, target: str) -> Entry:
    return Entry(name, tarfile.SYMTYPE, link=target, mode=0o777)


def _hardlink(name: str, target: str) -> Entry:
    return Entry(name, tarfile.LNKTYPE, link=target)


def _make_tar(path: Path, entries: list[Entry], compression: str = "gz") -> Path:
    """Write a tar archive holding exactly these entries, unchecked."""
    with tarfile.open(path, f"w:{compression}" if compression else "w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type = entry.kind
            info.mode = entry.mode
            info.mtime = MTIME
            info.linkname = entry.link
            if entry.kind == tarfile.CHRTYPE:
                info.devmajor, info.devminor = 1, 3
            info.size = len(entry.data) if entry.kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(entry.data) if entry.kind == tarfile.REGTYPE else None)
    return path


@pytest.fixture
def places(tmp_path: Path) -> tuple[Path, Path]:
    """A folder for crafted archives, and a destination inside an otherwise empty folder."""
    sources = tmp_path / "sources"
    sources.mkdir()
    return sources, tmp_path / "out" / "runtime"


# --- crafted archives that must be refused ----------------------------------------------------

UNSAFE = [
    pytest.param([_file("/python/evil")], "/python/evil", "is absolute", id="absolute"),
    pytest.param([_file("python/../outside")], "python/../outside", "has a '..' component", id="dotdot"),
    pytest.param([_dir("python/bin"), _file("python/bin/../../outside")], "python/bin/../../outside", "'..'", id="dotdot-deep"),
    pytest.param([_file("python\\..\\outside")], "python\\..\\outside", "backslash", id="backslash"),
    pytest.param([_symlink("python/passwd", "/etc/passwd")], "python/passwd", "symbolic link to the absolute path '/etc/passwd'", id="symlink-absolute"),
    pytest.param([_symlink("python/up", "../../outside")], "python/up", "leads outside the destination", id="symlink-dotdot"),
    pytest.param(
        [_dir("python/sub"), _symlink("python/sub/parent", ".."), _symlink("python/escape", "sub/parent/..")],
        "python/escape",
        "resolves outside the destination",
        id="symlink-chain",
    ),
    pytest.param(
        [_dir("python/real"), _symlink("python/alias", "real"), _file("python/alias/file")],
        "python/alias/file",
        "its path goes through the symbolic link 'alias'",
        id="file-through-symlink",
    ),
    pytest.param(
        [_symlink("python/lib", "."), _dir("python/lib/sub")],
        "python/lib/sub",
        "goes through the symbolic link 'lib'",
        id="dir-through-symlink",
    ),
    pytest.param([_hardlink("python/h", "/etc/passwd")], "python/h", "hard link target '/etc/passwd' is absolute", id="hardlink-absolute"),
    pytest.param([_hardlink("python/h", "python/../../etc/passwd")], "python/h", "'..' component", id="hardlink-dotdot"),
    pytest.param([_hardlink("python/h", "etc/passwd")], "python/h", "is not inside 'python/'", id="hardlink-outside-prefix"),
    pytest.param([_hardlink("python/h", "python/later"), _file("python/later")], "python/h", "not a file extracted before it", id="hardlink-forward"),
    pytest.param(
        [_file("python/f"), _symlink("python/s", "f"), _hardlink("python/h", "python/s")],
        "python/h",
        "hard link to the symbolic link",
        id="hardlink-to-symlink",
    ),
    pytest.param([Entry("python/null", tarfile.CHRTYPE)], "python/null", "device and FIFO", id="char-device"),
    pytest.param([Entry("python/disk", tarfile.BLKTYPE)], "python/disk", "device and FIFO", id="block-device"),
    pytest.param([Entry("python/pipe", tarfile.FIFOTYPE)], "python/pipe", "device and FIFO", id="fifo"),
    pytest.param([_file("other/file")], "other/file", "is not inside 'python/'", id="no-prefix"),
    pytest.param([_file("pythonic/file")], "pythonic/file", "is not inside 'python/'", id="prefix-lookalike"),
    pytest.param([_file("python")], "python", "replace the destination folder itself", id="file-as-top-folder"),
    pytest.param([_dir("python/bin"), _file("python/bin")], "python/bin", "would replace the directory 'bin'", id="file-over-dir"),
    pytest.param([_file("python/x"), _dir("python/x")], "python/x", "would replace the file 'x' with a directory", id="dir-over-file"),
    pytest.param([_file("python/x"), _file("python/x/y")], "python/x/y", "goes through the file 'x'", id="file-under-file"),
    pytest.param([_file("python/x"), _file("python/x")], "python/x", "would replace the file 'x'", id="duplicate-file"),
    pytest.param([_symlink("python/x", "y"), _file("python/x")], "python/x", "would replace the symbolic link 'x'", id="file-over-symlink"),
]


@pytest.mark.parametrize(("entries", "member", "reason"), UNSAFE)
def test_unsafe_member_is_refused(places: tuple[Path, Path], entries: list[Entry], member: str, reason: str) -> None:
    sources, destination = places
    archive = _make_tar(sources / "evil.tar.gz", [_dir("python"), _file("python/first", b"x" * 5000), *entries])
    with pytest.raises(UnsafeArchiveError) as caught:
        safe_extract_tar(archive, destination, strip_prefix="python")
    message = str(caught.value)
    assert message.startswith(f"{archive}: refusing to extract {member!r}: "), message
    assert reason in message
    assert_nothing_left(destination)


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        pytest.param(_file("/tmp/evil"), "is absolute", id="absolute"),
        pytest.param(_file("../outside"), "'..' component", id="dotdot"),
        pytest.param(_symlink("up", ".."), "leads outside", id="symlink-to-parent"),
    ],
)
def test_unsafe_member_without_prefix(places: tuple[Path, Path], entry: Entry, reason: str) -> None:
    sources, destination = places
    archive = _make_tar(sources / "evil.tar", [_file("ok"), entry], compression="")
    with pytest.raises(UnsafeArchiveError, match=reason):
        safe_extract_tar(archive, destination)
    assert_nothing_left(destination)


# --- damaged archives -------------------------------------------------------------------------


def _sample_entries() -> list[Entry]:
    return [_dir("python"), _file("python/a", os.urandom(100_000)), _file("python/b", os.urandom(100_000))]


def test_truncated_gzip_leaves_nothing(places: tuple[Path, Path]) -> None:
    sources, destination = places
    archive = _make_tar(sources / "sample.tar.gz", _sample_entries())
    archive.write_bytes(archive.read_bytes()[:150_000])
    with pytest.raises(ArchiveError, match=f"cannot extract {archive}: the archive is damaged"):
        safe_extract_tar(archive, destination, strip_prefix="python")
    assert_nothing_left(destination)


def test_corrupted_gzip_leaves_nothing(places: tuple[Path, Path]) -> None:
    sources, destination = places
    archive = _make_tar(sources / "sample.tar.gz", _sample_entries())
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="the archive is damaged"):
        safe_extract_tar(archive, destination, strip_prefix="python")
    assert_nothing_left(destination)


@pytest.mark.parametrize("cut", ["second-header", "end-marker", "mid-header"])
def test_plain_tar_truncated_between_members_leaves_nothing(places: tuple[Path, Path], cut: str) -> None:
    """tarfile itself stops silently at a truncated header; the missing end marker gives it away."""
    sources, destination = places
    archive = _make_tar(sources / "sample.tar", _sample_entries(), compression="")
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        end_of_data = tar.offset
    offset = {"second-header": members[2].offset, "end-marker": end_of_data, "mid-header": members[2].offset + 100}[cut]
    archive.write_bytes(archive.read_bytes()[:offset])
    with pytest.raises(ArchiveError, match="no end-of-archive marker"):
        safe_extract_tar(archive, destination, strip_prefix="python")
    assert_nothing_left(destination)


def test_not_an_archive(places: tuple[Path, Path]) -> None:
    sources, destination = places
    archive = sources / "junk.tar.gz"
    archive.write_bytes(b"this is not a tar archive at all" * 40)
    with pytest.raises(ArchiveError, match="the archive is damaged"):
        safe_extract_tar(archive, destination)
    assert_nothing_left(destination)


def test_missing_archive(places: tuple[Path, Path]) -> None:
    sources, destination = places
    with pytest.raises(ArchiveError, match="cannot read the archive"):
        safe_extract_tar(sources / "missing.tar.gz", destination)
    assert_nothing_left(destination)


# --- what a good archive becomes --------------------------------------------------------------


@pytest.mark.parametrize("compression", ["gz", "xz", "bz2", ""])
def test_modes_links_and_times_are_kept(places: tuple[Path, Path], compression: str) -> None:
    sources, destination = places
    entries = [
        _dir("./python"),
        _dir("python/bin"),
        _file("python/bin/tool", b"#!/bin/sh\necho hi\n", mode=0o755),
        _file("python/bin/setuid", b"x", mode=0o4775),
        _file("python/readonly.txt", b"text", mode=0o444),
        _symlink("python/bin/alias", "tool"),
        _symlink("python/lib64", "lib"),
        _dir("python/lib"),
        _file("python/lib/data", b"payload"),
        _hardlink("python/lib/same", "python/lib/data"),
        _dir("python/bin"),
    ]
    archive = _make_tar(sources / f"good.tar{'.' + compression if compression else ''}", entries, compression)
    safe_extract_tar(archive, destination, strip_prefix="python")
    assert sorted(p.name for p in destination.parent.iterdir()) == ["runtime"]
    tool = destination / "bin" / "tool"
    assert stat.S_IMODE(tool.stat().st_mode) == 0o755
    assert tool.read_bytes() == b"#!/bin/sh\necho hi\n"
    assert tool.stat().st_mtime == MTIME
    assert stat.S_IMODE((destination / "bin" / "setuid").stat().st_mode) == 0o755
    assert stat.S_IMODE((destination / "readonly.txt").stat().st_mode) == 0o644
    assert os.readlink(destination / "bin" / "alias") == "tool"
    assert os.readlink(destination / "lib64") == "lib"
    assert (destination / "lib64" / "data").read_bytes() == b"payload"
    assert os.path.samefile(destination / "lib" / "same", destination / "lib" / "data")
    assert stat.S_IMODE(destination.stat().st_mode) == 0o755


def test_without_prefix_names_are_kept(places: tuple[Path, Path]) -> None:
    sources, destination = places
    archive = _make_tar(sources / "plain.tar.gz", [_dir("python"), _file("python/x", b"1"), _file("top", b"2")])
    safe_extract_tar(archive, destination)
    assert (destination / "python" / "x").read_bytes() == b"1"
    assert (destination / "top").read_bytes() == b"2"


def test_existing_destination_is_left_alone(places: tuple[Path, Path]) -> None:
    sources, destination = places
    archive = _make_tar(sources / "plain.tar.gz", [_dir("python"), _file("python/x")])
    destination.mkdir(parents=True)
    (destination / "keep").write_text("mine", encoding="utf-8")
    with pytest.raises(FileExistsError):
        safe_extract_tar(archive, destination, strip_prefix="python")
    assert sorted(p.name for p in destination.parent.iterdir()) == ["runtime"]
    assert (destination / "keep").read_text(encoding="utf-8") == "mine"


def test_host_can_run_extracted_scripts(places: tuple[Path, Path]) -> None:
    if platform.system() == "Windows":
        pytest.skip("POSIX shell scripts")
    sources, destination = places
    archive = _make_tar(sources / "script.tar.gz", [_file("python/run.sh", b"#!/bin/sh\necho ran\n", mode=0o755)])
    safe_extract_tar(archive, destination, strip_prefix="python")
    result = subprocess.run([str(destination / "run.sh")], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout) == (0, "ran\n")


@pytest.mark.parametrize("prefix", ["", "python/bin", ".."])
def test_strip_prefix_must_be_one_folder_name(places: tuple[Path, Path], prefix: str) -> None:
    sources, destination = places
    archive = _make_tar(sources / "plain.tar.gz", [_dir("python"), _file("python/x")])
    with pytest.raises(ValueError, match="strip_prefix must be a single folder name"):
        safe_extract_tar(archive, destination, strip_prefix=prefix)
    assert not destination.parent.exists()
