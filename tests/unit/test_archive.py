"""Layer archives: contents and order, overrides, reproducibility, refusals and failure handling."""

from __future__ import annotations

import collections
import gzip
import hashlib
import io
import lzma
import os
import stat
import tarfile
import tempfile
import threading
import time
import tracemalloc
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

import pytest

from venvstacks.errors import ArchiveError

from venvstacks.publish import archive
from venvstacks.publish.archive import compression_memory
from venvstacks.blockpack import BLOCK_SIZE, SLOTS_PER_JOB, BlockPool, Piece, gzip_block, write_blocks
from venvstacks.publish.members import content_group
from venvstacks.publish.archive import (
    ArchiveFormat,
    ArchiveResult,
    FileEntry,
    LinkEntry,
    Override,
    available_formats,
    excluded,
    shipped_bytecode,
    write_layer_archive,
)

ROOT = "app-foo@3"
CLAMP = 1_700_000_000  # 2023-11-14 22:13:20 UTC: an even second, exact in zip's DOS times
SITE = "lib/python3.11/site-packages"
try:
    import compression.zstd  # type: ignore[import-not-found]  # noqa: F401  (Python 3.14+)
except ImportError:
    HAS_ZSTD = False
else:
    HAS_ZSTD = True
FORMATS = available_formats()
TAR_FORMATS = tuple(fmt for fmt in FORMATS if fmt is not ArchiveFormat.ZIP)

FILES: dict[str, bytes] = {
    "bin/tool": b"#!/bin/sh\necho tool\n",
    f"{SITE}/pkg/__init__.py": b"VALUE = 1\n",
    f"{SITE}/pkg/data file.txt": b"a name with a space\n",
    f"{SITE}/pkg/\u00fcn\u00efc\u00f8d\u00e9.py": b"# a non-ASCII name\n",
    f"{SITE}/pkg-1.0.dist-info/RECORD": b"pkg/__init__.py,,\n",
    "share/.keep": b"",
    "share/pyvenv.cfg": b"not at the top, so kept\n",
    # Left out of every archive:
    "pyvenv.cfg": b"home = /build/cpython/bin\n",
    ".gitignore": b"*\n",
    ".lock": b"",
    f"{SITE}/.lock": b"",
    "lib/python3.11/sitecustomize.py": b"import os\n",
    f"{SITE}/sitecustomize.py": b"import sys\n",
    f"{SITE}/pkg/__pycache__/__init__.cpython-311.pyc": b"\x00bytecode",
    f"{SITE}/pkg/stale.pyc": b"\x00bytecode",
}
EXECUTABLES = {"bin/tool"}
HARD_LINKS = {f"{SITE}/pkg/copy.txt": f"{SITE}/pkg/data file.txt"}
SYMLINKS = {"bin/run": "tool", "lib64": "lib"}
EMPTY_DIRS = ("share/empty",)

Row = tuple[str, str, int, bytes]


def folder(name: str) -> Row:
    return (name, "dir", 0o755, b"")


def file(name: str, content: bytes | None = None, mode: int = 0o644) -> Row:
    return (name, "file", mode, FILES[name] if content is None else content)


def link(name: str, target: str) -> Row:
    return (name, "link", 0o777, target.encode())


_FOLDERS = [folder(name) for name in ("", "bin", "lib", "lib/python3.11", SITE, f"{SITE}/pkg", f"{SITE}/pkg-1.0.dist-info")]
_FILES = [
    file("bin/tool", mode=0o755),
    file(f"{SITE}/pkg-1.0.dist-info/RECORD"),
]
EXPECTED: list[Row] = [
    # Folders first, each before its contents; "-" sorts before "/" in names, but not in paths.
    *_FOLDERS,
    folder("share"),
    folder("share/empty"),
    # Then files by kind, Python sources first; then the rest by suffix (none, cfg, txt).
    file(f"{SITE}/pkg/__init__.py"),
    file(f"{SITE}/pkg/\u00fcn\u00efc\u00f8d\u00e9.py"),
    *_FILES,
    file("share/.keep"),
    file("share/pyvenv.cfg"),
    file(f"{SITE}/pkg/copy.txt", FILES[f"{SITE}/pkg/data file.txt"]),
    file(f"{SITE}/pkg/data file.txt"),
    # Links last.
    link("bin/run", "tool"),
    link("lib64", "lib"),
]


def rooted(rows: list[Row]) -> list[Row]:
    return [("/".join(filter(None, (ROOT, name))), *rest) for name, *rest in rows]  # type: ignore[misc]


def build_tree(
    base: Path, *, reverse: bool = False, file_mode: int = 0o644, dir_mode: int = 0o755, mtime: float = 1e9
) -> Path:
    """The test layer under `base`, created in the given order, with the given modes and times."""
    entries = list(FILES.items())
    for rel, content in reversed(entries) if reverse else entries:
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(file_mode | 0o111 if rel in EXECUTABLES else file_mode)
    for rel, original in HARD_LINKS.items():
        os.link(base / original, base / rel)
    for rel in EMPTY_DIRS:
        (base / rel).mkdir(parents=True)
    for rel, target in sorted(SYMLINKS.items(), reverse=reverse):
        (base / rel).symlink_to(target)
    for here, dirs, files in os.walk(base):
        for name in dirs + files:
            path = Path(here, name)
            if not path.is_symlink() and path.is_dir():
                path.chmod(dir_mode)
            os.utime(path, (mtime, mtime), follow_symlinks=False)
    os.utime(base, (mtime, mtime))
    return base


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return build_tree(tmp_path / "build" / "app-foo")


def listing(path: Path) -> list[Row]:
    """(name, kind, mode, content or link target) of every entry, in archive order."""
    rows: list[Row] = []
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as zipped:
            for info in zipped.infolist():
                mode = info.external_attr >> 16
                kind = "dir" if stat.S_ISDIR(mode) else "link" if stat.S_ISLNK(mode) else "file"
                assert kind != "dir" or info.filename.endswith("/")
                rows.append((info.filename.rstrip("/"), kind, stat.S_IMODE(mode), zipped.read(info)))
        return rows
    with tarfile.open(path) as tar:
        for member in tar:
            assert member.isdir() or member.issym() or member.isreg(), member.name
            kind = "dir" if member.isdir() else "link" if member.issym() else "file"
            stream = tar.extractfile(member) if member.isreg() else None
            payload = member.linkname.encode() if member.issym() else stream.read() if stream else b""
            rows.append((member.name, kind, member.mode, payload))
    return rows


def write(tree: Path, destination: Path, fmt: ArchiveFormat, **kwargs: object) -> ArchiveResult:
    options: dict[str, object] = {"root": ROOT, "clamp": CLAMP, "fmt": fmt} | kwargs
    return write_layer_archive(tree, destination, **options)  # type: ignore[arg-type]


def test_formats() -> None:
    assert [fmt.suffix for fmt in ArchiveFormat] == [".tar.xz", ".tar.gz", ".zip", ".tar.zst"]
    assert ArchiveFormat("tar.gz") is ArchiveFormat.TAR_GZ and str(ArchiveFormat.ZIP) == "zip"
    assert FORMATS[:3] == (ArchiveFormat.TAR_XZ, ArchiveFormat.TAR_GZ, ArchiveFormat.ZIP)
    assert (ArchiveFormat.TAR_ZST in FORMATS) is HAS_ZSTD is ArchiveFormat.TAR_ZST.available


def test_default_format_is_xz(tree: Path, tmp_path: Path) -> None:
    result = write_layer_archive(tree, tmp_path / "out" / "layer.tar.xz", root=ROOT, clamp=CLAMP)
    assert result.path.read_bytes()[:6] == b"\xfd7zXZ\x00"
    assert result.path.read_bytes()[7] == 0x04  # stream flags: CRC64 check
    assert listing(result.path) == rooted(EXPECTED)


@pytest.mark.parametrize("fmt", FORMATS)
def test_contents_and_order(tree: Path, tmp_path: Path, fmt: ArchiveFormat) -> None:
    result = write(tree, tmp_path / f"layer{fmt.suffix}", fmt)
    assert listing(result.path) == rooted(EXPECTED)
    data = result.path.read_bytes()
    assert (result.size, result.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert result.path == tmp_path / f"layer{fmt.suffix}"
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["build", result.path.name])


@pytest.mark.parametrize("fmt", TAR_FORMATS)
def test_tar_metadata(tree: Path, tmp_path: Path, fmt: ArchiveFormat) -> None:
    result = write(tree, tmp_path / f"layer{fmt.suffix}", fmt)
    with tarfile.open(result.path) as tar:
        members = tar.getmembers()
        assert tar.pax_headers == {}
    for member in members:
        assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "root", "root")
        assert member.mtime == CLAMP and not member.islnk()
        assert set(member.pax_headers) <= {"path"}
    assert [m.name for m in members if m.pax_headers] == [f"{ROOT}/{SITE}/pkg/\u00fcn\u00efc\u00f8d\u00e9.py"]
    if fmt is ArchiveFormat.TAR_GZ:
        header = result.path.read_bytes()[:10]
        assert header[3] == 0 and header[4:8] == bytes(4)  # no file name, no timestamp


def test_zip_metadata(tree: Path, tmp_path: Path) -> None:
    result = write(tree, tmp_path / "layer.zip", ArchiveFormat.ZIP)
    with zipfile.ZipFile(result.path) as zipped:
        assert zipped.testzip() is None
        infos = zipped.infolist()
    assert {info.date_time for info in infos} == {time.gmtime(CLAMP)[:6]}
    assert {info.create_system for info in infos} == {3}
    for info in infos:
        mode = info.external_attr >> 16
        assert bool(info.external_attr & 0x10) is stat.S_ISDIR(mode)
        expected = zipfile.ZIP_DEFLATED if stat.S_ISREG(mode) else zipfile.ZIP_STORED
        assert info.compress_type == expected, info.filename
    early = write(tree, tmp_path / "early.zip", ArchiveFormat.ZIP, clamp=0)
    with zipfile.ZipFile(early.path) as zipped:
        assert {info.date_time for info in zipped.infolist()} == {(1980, 1, 1, 0, 0, 0)}


@pytest.mark.parametrize("fmt", [ArchiveFormat.TAR_GZ, ArchiveFormat.ZIP])
def test_overrides(tree: Path, tmp_path: Path, fmt: ArchiveFormat) -> None:
    (tree / "bin" / "python_").symlink_to("/build/cpython-3.11/bin/python3")  # refused unless overridden
    overrides: dict[str, Override] = {
        f"{SITE}/pkg/__init__.py": FileEntry(b"VALUE = 2\n"),
        "postinstall.py": FileEntry(b"print('deployed')\n"),
        "bin/python_": LinkEntry("../../cpython-3.11/bin/python"),
        "bin/run": None,
        "share": None,
        "missing/anyway": None,
        "etc/layer/conf.sh": FileEntry(b"#!/bin/sh\n", mode=0o700),
        "pyvenv.cfg": FileEntry(b"explicit entries win over the exclusions\n"),
    }
    result = write(tree, tmp_path / f"layer{fmt.suffix}", fmt, overrides=overrides)
    expected = [
        *_FOLDERS[:2],
        folder("etc"),
        folder("etc/layer"),
        *_FOLDERS[2:],
        file(f"{SITE}/pkg/__init__.py", b"VALUE = 2\n"),
        file(f"{SITE}/pkg/\u00fcn\u00efc\u00f8d\u00e9.py"),
        file("postinstall.py", b"print('deployed')\n"),
        *_FILES,
        file("pyvenv.cfg", b"explicit entries win over the exclusions\n"),
        ("etc/layer/conf.sh", "file", 0o755, b"#!/bin/sh\n"),
        file(f"{SITE}/pkg/copy.txt", FILES[f"{SITE}/pkg/data file.txt"]),
        file(f"{SITE}/pkg/data file.txt"),
        link("bin/python_", "../../cpython-3.11/bin/python"),
        link("lib64", "lib"),
    ]
    assert listing(result.path) == rooted(expected)


@pytest.mark.parametrize(
    "overrides",
    [
        {"/abs": FileEntry(b"")},
        {"": FileEntry(b"")},
        {"bin/": FileEntry(b"")},
        {"bin/../x": None},
        {"./x": FileEntry(b"")},
        {"bin": FileEntry(b"")},
        {"bin/tool/inside": FileEntry(b"")},
        {"new": FileEntry(b""), "new/inside": FileEntry(b"")},
        {"x": b"not an entry"},
        {"bin/abs": LinkEntry("/usr/bin/python3")},
        {"bin/far": LinkEntry("../../../elsewhere")},
        {"bin/empty": LinkEntry("")},
    ],
)
def test_bad_overrides(tree: Path, tmp_path: Path, overrides: Mapping[str, Override]) -> None:
    with pytest.raises(ArchiveError):
        write(tree, tmp_path / "out" / "layer.tar.gz", ArchiveFormat.TAR_GZ, overrides=overrides)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("where", "target"),
    [("bin/abs", "/usr/bin/python3"), ("up", "../sibling"), ("bin/up", "../../x"), ("a/b/c", "../x/../../../y")],
)
def test_refuses_unsafe_symlinks(tree: Path, tmp_path: Path, where: str, target: str) -> None:
    (tree / where).parent.mkdir(parents=True, exist_ok=True)
    (tree / where).symlink_to(target)
    with pytest.raises(ArchiveError, match="symlink"):
        write(tree, tmp_path / "layer.tar.gz", ArchiveFormat.TAR_GZ)
    assert not (tmp_path / "layer.tar.gz").exists()


def test_symlinks_inside_the_layer_are_fine(tree: Path, tmp_path: Path) -> None:
    (tree / "share" / "deep").mkdir()
    (tree / "share" / "deep" / "up").symlink_to("../../bin/./tool")
    (tree / "share" / "dangling").symlink_to("nowhere/yet")
    rows = listing(write(tree, tmp_path / "layer.tar.gz", ArchiveFormat.TAR_GZ).path)
    folders = len(_FOLDERS) + 1  # and share
    added = [link("share/dangling", "nowhere/yet"), link("share/deep/up", "../../bin/./tool")]
    assert rows == rooted([*EXPECTED[:folders], folder("share/deep"), *EXPECTED[folders:], *added])


def test_refuses_special_files(tree: Path, tmp_path: Path) -> None:
    os.mkfifo(tree / "share" / "pipe")
    with pytest.raises(ArchiveError, match="not a file, folder or symlink"):
        write(tree, tmp_path / "layer.tar.gz", ArchiveFormat.TAR_GZ)
    assert not (tmp_path / "layer.tar.gz").exists()


@pytest.mark.parametrize(("root", "clamp"), [("a/b", CLAMP), ("", CLAMP), ("..", CLAMP), (ROOT, -1), (ROOT, 1.5)])
def test_bad_root_or_clamp(tree: Path, tmp_path: Path, root: str, clamp: int) -> None:
    with pytest.raises(ArchiveError):
        write(tree, tmp_path / "layer.tar.gz", ArchiveFormat.TAR_GZ, root=root, clamp=clamp)


def test_source_must_be_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="not a folder"):
        write(tmp_path / "missing", tmp_path / "layer.tar.gz", ArchiveFormat.TAR_GZ)


class ReversedScan:
    """`os.scandir`, listing a folder in the reverse of the file system's order."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        with REAL_SCANDIR(path) as listing:
            self.entries = list(listing)[::-1]

    def __enter__(self) -> Iterator[os.DirEntry[str]]:
        return iter(self.entries)

    def __exit__(self, *exc_info: object) -> None:
        return None


REAL_SCANDIR = os.scandir


@pytest.mark.parametrize("fmt", FORMATS)
def test_reproducible(tmp_path: Path, fmt: ArchiveFormat, monkeypatch: pytest.MonkeyPatch) -> None:
    first = build_tree(tmp_path / "one" / "deeper" / "layer", mtime=1e9)
    old_umask = os.umask(0o002)
    try:
        second = build_tree(tmp_path / "two", reverse=True, file_mode=0o664, dir_mode=0o775, mtime=2e9 + 0.25)
    finally:
        os.umask(old_umask)
    overrides = {"postinstall.py": FileEntry(b"print()\n"), "bin/python_": LinkEntry("../../rt/bin/python")}
    results = [write(first, tmp_path / "out-a" / f"layer{fmt.suffix}", fmt, overrides=overrides)]
    with monkeypatch.context() as patched:  # and list every folder backwards
        patched.setattr(os, "scandir", ReversedScan)
        results.append(write(second, tmp_path / "out-b" / f"layer{fmt.suffix}", fmt, overrides=overrides))
    contents = [result.path.read_bytes() for result in results]
    assert contents[0] == contents[1]
    assert results[0].sha256 == results[1].sha256 == hashlib.sha256(contents[0]).hexdigest()
    assert results[0].size == results[1].size == len(contents[0])
    later = write(first, tmp_path / "out-c" / f"layer{fmt.suffix}", fmt, overrides=overrides, clamp=CLAMP + 86400)
    assert later.sha256 != results[0].sha256


@pytest.mark.parametrize("fmt", [ArchiveFormat.TAR_XZ, ArchiveFormat.ZIP])
def test_failure_keeps_old_destination(
    tree: Path, tmp_path: Path, fmt: ArchiveFormat, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    destination = out / f"layer{fmt.suffix}"
    destination.write_bytes(b"the previous archive")
    opened: list[Path] = []
    seen_partials: list[str] = []

    def failing_open(path: Path) -> BinaryIO:
        opened.append(path)
        seen_partials.extend(p.name for p in out.iterdir() if p.name.startswith(f".{destination.name}.partial-"))
        if len(opened) == 3:
            raise OSError("disk went away")
        return path.open("rb")

    monkeypatch.setattr(archive, "open_source", failing_open)
    with pytest.raises(ArchiveError, match=f"cannot write the archive .*{destination.name}: disk went away"):
        write(tree, destination, fmt)
    assert seen_partials and len(set(seen_partials)) == 1
    assert destination.read_bytes() == b"the previous archive"
    assert [p.name for p in out.iterdir()] == [destination.name]


@pytest.mark.skipif(HAS_ZSTD, reason="this Python can write tar.zst")
def test_zstd_needs_compression_zstd(tree: Path, tmp_path: Path) -> None:
    assert not ArchiveFormat.TAR_ZST.available and ArchiveFormat.TAR_ZST not in FORMATS
    with pytest.raises(ArchiveError, match=r"\.tar\.zst.*compression\.zstd"):
        write(tree, tmp_path / "out" / "layer.tar.zst", ArchiveFormat.TAR_ZST)
    assert not (tmp_path / "out").exists()


def _peak_while_writing(tree: Path, destination: Path, fmt: ArchiveFormat, jobs: int) -> tuple[int, ArchiveResult]:
    tracemalloc.start()
    try:
        with BlockPool(jobs) as pool:
            result = write(tree, destination, fmt, pool=pool)
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


@pytest.mark.slow  # compresses almost 1 GiB per format, for seconds
@pytest.mark.parametrize("fmt", [ArchiveFormat.TAR_GZ, ArchiveFormat.TAR_XZ, ArchiveFormat.ZIP])
def test_large_files_are_streamed_in_bounded_memory(tmp_path: Path, fmt: ArchiveFormat) -> None:
    peaks = []
    for size in (256 << 20, 640 << 20):  # both long enough to fill every slot
        tree = tmp_path / f"tree{size}"
        tree.mkdir()
        with (tree / "big.bin").open("wb") as stream:
            stream.truncate(size)  # sparse: cheap to make, and quick to compress
        peak, result = _peak_while_writing(tree, tmp_path / f"big{size}{fmt.suffix}", fmt, jobs=2)
        assert result.size == result.path.stat().st_size < size // 100
        peaks.append(peak)
    # Bounded by the blocks in flight and the encoders, not by the file.
    bound = (compression_memory(fmt, None, jobs=2) if fmt is not ArchiveFormat.ZIP else 0) + (8 << 20)
    assert max(peaks) < bound < 640 << 20, f"peak Python memory {peaks} bytes"


@pytest.mark.slow  # compresses 96 MiB of random bytes, for seconds
def test_blocks_that_do_not_compress_are_not_held_in_memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "noise.bin").write_bytes(os.urandom(3 * BLOCK_SIZE))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))  # blocks waiting their turn go beside the archive
    fds = len(os.listdir("/proc/self/fd"))
    peak, result = _peak_while_writing(tree, tmp_path / "out" / "noise.tar.gz", ArchiveFormat.TAR_GZ, jobs=2)
    assert result.size > 3 * BLOCK_SIZE
    # Three compressed blocks of 32 MiB each, yet the peak is a gzip encoder and a few buffers per thread.
    assert peak < compression_memory(ArchiveFormat.TAR_GZ, None, jobs=2) + (8 << 20) < BLOCK_SIZE, peak
    assert sorted(os.listdir(tmp_path / "out")) == ["noise.tar.gz"]
    assert len(os.listdir("/proc/self/fd")) == fds
    with tarfile.open(result.path) as tar:
        assert tar.getnames() == [ROOT, f"{ROOT}/noise.bin"]


def test_a_failing_block_leaves_no_temporary_file_open(tmp_path: Path) -> None:
    def pieces(index: int) -> Iterator[bytes]:
        yield b"x" * 1000
        if index == 2:
            raise OSError(28, "No space left on device")

    fds = len(os.listdir("/proc/self/fd"))
    with BlockPool(2) as pool, pytest.raises(OSError, match="No space"):
        write_blocks(io.BytesIO(), pool, gzip_block(1), 6, pieces, tmp_path)  # type: ignore[arg-type]
    assert len(os.listdir("/proc/self/fd")) == fds


def test_the_oldest_block_goes_straight_into_the_archive(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    sink = io.BytesIO()
    with BlockPool(2) as pool:
        write_blocks(sink, pool, gzip_block(1), 1, lambda k: [data], tmp_path / "missing")  # type: ignore[arg-type]
    assert gzip.decompress(sink.getvalue()) == data  # and no temporary file was needed where none can be made


def test_a_writer_waiting_for_a_slot_takes_one_another_writer_frees(tmp_path: Path) -> None:
    # Two layers share a pool. While its oldest block is still being compressed, one layer's writer
    # must take a slot as soon as the other layer frees it, not wait for that block first: else a
    # core stays idle (as it did for seconds while the seed stack was published).
    first_started, second_started = threading.Event(), threading.Event()
    waited: list[bool] = []

    def pieces(index: int) -> list[bytes]:
        if index == 0:
            first_started.set()
            waited.append(second_started.wait(timeout=10))  # block 0 ends only once block 1 runs
        else:
            second_started.set()
        return [bytes([index]) * 1000]

    def raw(blocks: Iterable[Piece], out: BinaryIO) -> None:
        for piece in blocks:
            out.write(piece)

    sink = io.BytesIO()
    with BlockPool(2) as pool:
        others = [pool.try_reserve(timeout=0) for _ in range(SLOTS_PER_JOB * pool.jobs - 1)]  # the other layer's blocks
        assert all(others)
        writer = threading.Thread(target=write_blocks, args=(sink, pool, raw, 2, pieces, tmp_path))
        writer.start()
        assert first_started.wait(timeout=10)
        time.sleep(0.2)  # the writer is now waiting for a slot for block 1
        for _ in others:
            pool.release()  # the other layer's blocks are written
        writer.join(timeout=20)
    assert waited == [True]
    assert sink.getvalue() == bytes([0]) * 1000 + bytes([1]) * 1000


def test_a_streams_last_block_starts_only_when_no_other_block_waits() -> None:
    # A thread that took a short last block early could leave another core a full block to finish alone.
    started: list[str] = []
    running, go_on = threading.Event(), threading.Event()

    def work(name: str) -> None:
        if name == "busy":
            running.set()
            go_on.wait(timeout=10)
        started.append(name)

    with BlockPool(1) as pool:
        futures = [pool.submit_block(lambda _k: work("busy"), 0)]
        assert running.wait(timeout=10)  # the one thread is taken: the rest wait
        for name, last in (("a-last", True), ("b-1", False), ("c-last", True), ("d-2", False)):
            futures.append(pool.submit_block(lambda _k, name=name: work(name), 0, last=last))
        go_on.set()
        for future in futures:
            future.result(timeout=10)
    assert started == ["busy", "b-1", "d-2", "a-last", "c-last"]


def test_blocks_dropped_before_they_start_never_run(tmp_path: Path) -> None:
    ran: list[int] = []
    release = threading.Event()
    with BlockPool(1) as pool:
        busy = pool.submit_block(lambda _k: release.wait(timeout=10), 0)
        waiting = collections.deque(pool.submit_block(ran.append, index) for index in (1, 2))
        for _ in waiting:
            assert pool.try_reserve(timeout=0)
        pool.drop(waiting)
        release.set()
        busy.result(timeout=10)
    assert ran == []


def test_content_groups() -> None:
    groups = {name: content_group(name) for name in ("a.py", "_x.cpython-311-x86_64-linux-gnu.so", "libz.so.1.3", "x.pyi",
                                                      "RECORD", ".keep", "LICENSE.txt", "a.tar.gz", "Makefile.PY")}  # fmt: skip
    assert groups == {
        "a.py": "py", "_x.cpython-311-x86_64-linux-gnu.so": "so", "libz.so.1.3": "so", "x.pyi": "pyi",
        "RECORD": "", ".keep": "", "LICENSE.txt": "txt", "a.tar.gz": "gz", "Makefile.PY": "py",
    }  # fmt: skip


def test_the_default_xz_settings_halve_the_dictionary_and_levels_keep_their_presets() -> None:
    assert archive.xz_filters() == [{"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": 4 << 20}]
    assert archive.xz_filters(6, x86_code=True) == [{"id": lzma.FILTER_X86}, {"id": lzma.FILTER_LZMA2, "preset": 6}]
    assert compression_memory(ArchiveFormat.TAR_XZ, None, jobs=2) < 0.55 * compression_memory(ArchiveFormat.TAR_XZ, 6, jobs=2)


def test_excluded() -> None:
    assert excluded("pyvenv.cfg") and excluded(".gitignore") and excluded(Path(".venv/bin"), is_dir=True)
    assert not excluded("share/pyvenv.cfg") and not excluded("share/.keep")
    assert excluded("a/__pycache__", is_dir=True) and excluded("a/__pycache__/x.txt")
    assert not excluded("a/__pycache__")  # a file, oddly named
    assert excluded("a/b/mod.cpython-311.pyc") and excluded("a/sitecustomize.py") and excluded("a/.lock")
    assert not excluded("a/b/mod.py") and not excluded("bin/python")


def _pyc(flags: int) -> bytes:
    return b"MAGC" + flags.to_bytes(4, "little") + bytes(8) + b"code"


def test_shipped_bytecode_is_hash_checked_current_and_has_its_source(tmp_path: Path) -> None:
    site = tmp_path / "layer" / "lib" / "site"
    cache = site / "pkg" / "__pycache__"
    cache.mkdir(parents=True)
    for name in ("mod.py", "old.py", "sitecustomize.py"):
        (site / "pkg" / name).write_text("X = 1\n", encoding="utf-8")
    rows = {
        "mod.cpython-311.pyc": _pyc(3),  # kept
        "old.cpython-311.pyc": _pyc(0),  # timestamp-based: stale once unpacked
        "gone.cpython-311.pyc": _pyc(3),  # no source any more
        "mod.cpython-312.pyc": _pyc(3),  # another Python
        "mod.cpython-311.opt-1.pyc": _pyc(3),  # optimised: not what imports read
        "sitecustomize.cpython-311.pyc": _pyc(3),  # its source is regenerated at deploy time
        "unchecked.cpython-311.pyc": _pyc(1),
    }
    for name, content in rows.items():
        (cache / name).write_bytes(content)
    assert shipped_bytecode(cache, "cpython-311") == ["mod.cpython-311.pyc"]
    result = write(tmp_path / "layer", tmp_path / "with.tar.gz", ArchiveFormat.TAR_GZ, cache_tag="cpython-311")
    names = [row[0] for row in listing(result.path)]
    assert f"{ROOT}/lib/site/pkg/__pycache__" in names and f"{ROOT}/lib/site/pkg/__pycache__/mod.cpython-311.pyc" in names
    assert len([name for name in names if "__pycache__" in name]) == 2
    (cache / "mod.cpython-311.pyc").write_bytes(_pyc(0))  # nothing left to ship: no empty folder either
    result = write(tmp_path / "layer", tmp_path / "none.tar.gz", ArchiveFormat.TAR_GZ, cache_tag="cpython-311")
    assert not [row for row in listing(result.path) if "__pycache__" in row[0]]
    without = write(tmp_path / "layer", tmp_path / "without.tar.gz", ArchiveFormat.TAR_GZ)
    assert not [row for row in listing(without.path) if "__pycache__" in row[0]]


@pytest.fixture(scope="module")
def several_blocks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tree whose tar stream spans three blocks and a bit."""
    import random

    tree = tmp_path_factory.mktemp("blocks") / "tree"
    (tree / "lib").mkdir(parents=True)
    rng = random.Random(7)
    pieces = [rng.randbytes(4096) for _ in range(64)]
    for index in range(5):
        with (tree / "lib" / f"part{index}.bin").open("wb") as stream:
            for _ in range((BLOCK_SIZE * 3 // 5 + (1 << 20)) // 4096):
                stream.write(rng.choice(pieces))
    (tree / "lib" / "small.txt").write_text("small\n", encoding="utf-8")
    return tree


@pytest.mark.slow  # compresses a multi-block tree four times and runs xz, gzip and tar
@pytest.mark.parametrize("fmt", [ArchiveFormat.TAR_XZ, ArchiveFormat.TAR_GZ])
def test_block_archives_are_identical_whatever_the_jobs_and_read_by_every_tool(
    several_blocks: Path, tmp_path: Path, fmt: ArchiveFormat
) -> None:
    import shutil
    import subprocess

    results = []
    for jobs in (1, 2, os.cpu_count() or 1, 5):
        with BlockPool(jobs) as pool:
            results.append(write(several_blocks, tmp_path / f"jobs{jobs}" / f"layer{fmt.suffix}", fmt, pool=pool))
    digests = {result.sha256 for result in results}
    assert len(digests) == 1, "the bytes depend on the number of threads"
    archive = results[0].path
    data = archive.read_bytes()
    magic = b"\xfd7zXZ\x00" if fmt is ArchiveFormat.TAR_XZ else b"\x1f\x8b"
    assert data.count(magic) >= 4, "one stream (or member) per block"
    expected = {f"{ROOT}/lib/part{i}.bin" for i in range(5)} | {f"{ROOT}/lib/small.txt"}
    with tarfile.open(archive) as tar:  # Python's tarfile, multi-stream aware
        assert expected <= set(tar.getnames())
        assert tar.extractfile(f"{ROOT}/lib/small.txt").read() == b"small\n"  # type: ignore[union-attr]
    tool = "xz" if fmt is ArchiveFormat.TAR_XZ else "gzip"
    for command in ([tool, "-t", str(archive)], ["tar", "-tf", str(archive)]):
        assert shutil.which(command[0]), f"{command[0]} is needed for this test"
        completed = subprocess.run(command, capture_output=True, check=False)
        assert completed.returncode == 0, completed.stderr
    listed = subprocess.run(["tar", "-tf", str(archive)], capture_output=True, text=True, check=True).stdout.split()
    assert expected <= set(listed)
    raw = subprocess.run([tool, "-dc", str(archive)], capture_output=True, check=True).stdout
    out = tmp_path / "unpacked"
    out.mkdir()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(out)], check=True)
    assert (out / ROOT / "lib" / "part3.bin").read_bytes() == (several_blocks / "lib" / "part3.bin").read_bytes()
    assert len(raw) > 3 * BLOCK_SIZE


def test_the_x86_branch_filter_changes_the_bytes_not_the_content(tree: Path, tmp_path: Path) -> None:
    import subprocess

    plain = write(tree, tmp_path / "plain" / "layer.tar.xz", ArchiveFormat.TAR_XZ)
    filtered = write(tree, tmp_path / "x86" / "layer.tar.xz", ArchiveFormat.TAR_XZ, x86_code=True)
    assert plain.sha256 != filtered.sha256
    assert lzma.decompress(plain.path.read_bytes()) == lzma.decompress(filtered.path.read_bytes())
    listed = subprocess.run(["xz", "--list", "--verbose", "--verbose", str(filtered.path)], capture_output=True, text=True, check=True)
    assert "--x86 --lzma2" in listed.stdout
    assert subprocess.run(["tar", "-tf", str(filtered.path)], capture_output=True, check=False).returncode == 0


def test_any_range_of_the_tar_stream_is_made_alone_as_tarfile_writes_it(tree: Path) -> None:
    """Each block's bytes come from the files directly: they must be the very stream tarfile writes."""
    import io
    import random

    (tree / "long" / ("d" * 120)).mkdir(parents=True)
    (tree / "long" / ("d" * 120) / ("é" * 80 + ".txt")).write_text("pax names\n", encoding="utf-8")
    (tree / "big.bin").write_bytes(random.Random(3).randbytes(3 * archive.CHUNK_SIZE + 77))
    members = archive.collect_members(tree, {"postinstall.py": archive.FileEntry(b"print(1)\n", 0o755)}, None)
    reference = io.BytesIO()
    with tarfile.TarFile(fileobj=reference, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            info = archive._tar_info("/".join((ROOT, *member.parts)), member, 1_700_000_000)
            data = member.source.read_bytes() if member.source else member.content
            info.size = len(data or b"")
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    expected = reference.getvalue()
    layout = archive._TarLayout(ROOT, 1_700_000_000, members)
    assert layout.size == len(expected)
    cuts = sorted({0, len(expected), *random.Random(5).sample(range(1, len(expected)), 40), 512, 513, archive.CHUNK_SIZE})
    made = b"".join(bytes(piece) for start, stop in zip(cuts, cuts[1:]) for piece in layout.pieces(start, stop))
    assert made == expected


def test_a_file_that_shrinks_while_archived_is_an_error(tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tree / "big.bin").write_bytes(bytes(5 * archive.CHUNK_SIZE))
    opened = archive.open_source

    def shrinking(path: Path) -> BinaryIO:
        if path.name == "big.bin":
            os.truncate(path, archive.CHUNK_SIZE)
        return opened(path)

    monkeypatch.setattr(archive, "open_source", shrinking)
    with pytest.raises(ArchiveError, match="big.bin got shorter while it was being archived"):
        write(tree, tmp_path / "out" / "layer.tar.xz", ArchiveFormat.TAR_XZ)
    assert not (tmp_path / "out" / "layer.tar.xz").exists()
