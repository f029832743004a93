"""Reproducible layer archives: a built layer's folder tree as tar.xz, tar.gz, tar.zst or zip.

The bytes depend on the tree's names, contents, symlink targets and execute bits, the
overrides, `root`, `clamp` and the compressors: not on the tree's location, the time,
the owner, the umask or the order the file system lists folders in.
"""

from __future__ import annotations

import bisect
import calendar
import contextlib
import enum
import functools
import hashlib
import importlib
import io
import lzma
import os
import posixpath
import stat
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePath
from types import ModuleType
from typing import IO, BinaryIO, Literal, cast

from .. import cancel
from ..blockpack import BLOCK_SIZE, SLOTS_PER_JOB, BlockPool, Compress, gzip_block, write_blocks, xz_block
from ..errors import ArchiveError

__all__ = [
    "ArchiveFormat", "ArchiveResult", "FileEntry", "LinkEntry", "Override", "available_formats", "write_layer_archive",
    "archived_entries", "excluded", "shipped_bytecode", "DEFAULT_FORMAT", "XZ_PRESET", "GZIP_LEVEL", "ZIP_LEVEL", "ZSTD_LEVEL", "CHUNK_SIZE",
]  # fmt: skip

# Fixed compressor settings: changing any of them changes every archive's bytes.
# `.tar.xz` and `.tar.gz` are compressed in independent 32 MiB blocks on every
# core (see blockpack.py). The xz default matches upstream's preset 6 and adds
# xz's x86 branch filter for layers of x86-64 platforms, whose shared libraries
# it makes more compressible: on SciPy's installed tree that gives 23.05 MB
# where upstream's single-stream preset 6 gives 23.31 MB (docs/benchmarks.md
# has these and more figures).
XZ_PRESET = 6  # `.tar.xz`, with xz's CRC64 check
GZIP_LEVEL = 6  # `.tar.gz`, zlib's default level
ZIP_LEVEL = 6  # deflated `.zip` members: zlib's own default, as upstream's zips use
ZSTD_LEVEL = 3  # `.tar.zst`: zstd's own default
CHUNK_SIZE = 1 << 20  # how much of a file is in memory at a time while it is compressed

_ZIP_EARLIEST = calendar.timegm((1980, 1, 1, 0, 0, 0))
_ZIP_LATEST = calendar.timegm((2107, 12, 31, 23, 59, 58))
_ZIP_LEVEL_FIELD = "compress_level" if hasattr(zipfile.ZipInfo, "compress_level") else "_compresslevel"  # 3.13+


@functools.cache
def _zstd_module() -> ModuleType | None:
    """`compression.zstd` (Python 3.14+, built with libzstd), or None."""
    try:
        return importlib.import_module("compression.zstd")
    except ImportError:
        return None


class ArchiveFormat(enum.StrEnum):
    """An archive format, named by its file extension without the leading dot."""

    TAR_XZ = "tar.xz"
    TAR_GZ = "tar.gz"
    ZIP = "zip"
    TAR_ZST = "tar.zst"

    @property
    def suffix(self) -> str:
        """The file name suffix, e.g. `.tar.xz`."""
        return "." + self.value

    @property
    def levels(self) -> range:
        """The compression levels the format takes."""
        return range(1, 23) if self is ArchiveFormat.TAR_ZST else range(0, 10)

    @property
    def available(self) -> bool:
        """Whether this Python can write the format (`tar.zst` needs `compression.zstd`)."""
        return self is not ArchiveFormat.TAR_ZST or _zstd_module() is not None


DEFAULT_FORMAT = ArchiveFormat.TAR_XZ


def available_formats() -> tuple[ArchiveFormat, ...]:
    """The formats this Python can write, in declaration order."""
    return tuple(fmt for fmt in ArchiveFormat if fmt.available)


@dataclass(frozen=True)
class FileEntry:
    """A file to put in the archive instead of (or in addition to) the tree's."""

    content: bytes
    mode: int = 0o644
    """Only the execute bits count: the stored mode is 0o755 if any is set, else 0o644."""


@dataclass(frozen=True)
class LinkEntry:
    """A symlink to put in the archive; relative, and it may reach sibling layers."""

    target: str


Override = FileEntry | LinkEntry | None
"""What an override maps a layer path to: an entry, or None to leave the path out."""


@dataclass(frozen=True)
class ArchiveResult:
    """A written archive: where it is, its size in bytes and its SHA-256 (hex, no prefix)."""

    path: Path
    size: int
    sha256: str


_Parts = tuple[str, ...]


@dataclass(frozen=True)
class _Member:
    """One archive entry, before it is written; `parts` is its path inside the layer."""

    parts: _Parts
    kind: Literal["dir", "file", "link"]
    mode: int
    source: Path | None = None
    content: bytes | None = None
    target: str | None = None


class _HashingWriter(io.RawIOBase):
    """An unseekable sink that hashes and counts the bytes on their way to `raw`."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self._raw = raw
        self._sha256 = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]  # Buffer is 3.12+
        view = memoryview(data).cast("B")
        self._raw.write(view)
        self._sha256.update(view)
        self.size += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        if not self._raw.closed:
            self._raw.flush()

    def hexdigest(self) -> str:
        return self._sha256.hexdigest()


def _file_mode(mode: int) -> int:
    return 0o755 if mode & 0o111 else 0o644


def _excluded_name(name: str, *, top: bool, is_dir: bool) -> bool:
    if name in ("sitecustomize.py", ".lock") or name.endswith(".pyc") or (is_dir and name == "__pycache__"):
        return True
    return top and (name == "pyvenv.cfg" or name.startswith("."))


def excluded(path: PurePath | str, *, is_dir: bool = False) -> bool:
    """Whether the relative layer path `path` (a folder if `is_dir`) stays out, overrides aside.

    Left out: `__pycache__` folders, `*.pyc`, `sitecustomize.py` and uv's `.lock` files
    anywhere; `pyvenv.cfg` and hidden entries at the top.
    """
    parts = PurePath(path).parts
    last = len(parts) - 1
    return any(
        _excluded_name(name, top=index == 0, is_dir=is_dir or index < last) for index, name in enumerate(parts)
    )


_CHECKED_HASH_FLAGS = b"\x03\x00\x00\x00"
"""Bytes 4-8 of a hash-based `.pyc` that the import system checks against its source."""


def shipped_bytecode(cache: Path, cache_tag: str) -> list[str]:
    """The names in the `__pycache__` folder `cache` that a layer shipping bytecode keeps.

    Those are hash-checked `<module>.<cache_tag>.pyc` files (no optimisation
    level) whose `<module>.py` lies beside the folder and is itself archived;
    stale, timestamp-based or other versions' files stay out.
    """
    kept = []
    suffix = f".{cache_tag}.pyc"
    try:
        names = sorted(os.listdir(cache))
    except OSError:
        return []
    for name in names:
        stem = name[: -len(suffix)]
        if not name.endswith(suffix) or not stem or "." in stem or _excluded_name(stem + ".py", top=False, is_dir=False):
            continue
        path = cache / name
        if not (cache.parent / (stem + ".py")).is_file() or path.is_symlink() or not path.is_file():
            continue
        with path.open("rb") as stream:
            if stream.read(8)[4:] == _CHECKED_HASH_FLAGS:
                kept.append(name)
    return kept


def _check_link(parts: _Parts, target: str, *, reach: int) -> None:
    """Refuse an absolute target, or one climbing more than `reach` folders above the layer."""
    where = "/".join(parts)
    if not target or posixpath.isabs(target):
        raise ArchiveError(f"symlink {where!r} -> {target!r}: the target must be a relative path")
    depth = len(parts) - 1
    for piece in target.split("/"):
        if piece == "..":
            depth -= 1
            if depth < -reach:
                raise ArchiveError(f"symlink {where!r} -> {target!r} points outside the layer")
        elif piece not in ("", "."):
            depth += 1


def _override_parts(key: str) -> _Parts:
    parts = tuple(key.split("/"))
    if any(piece in ("", ".", "..") or "\0" in piece for piece in parts):
        raise ArchiveError(f"override path {key!r} is not a relative POSIX path inside the layer")
    return parts


def _scan(source: Path, dropped: set[_Parts], replaced: set[_Parts], cache_tag: str | None) -> dict[_Parts, _Member]:
    """Every entry of the tree that goes in the archive, keyed by its path parts."""
    members: dict[_Parts, _Member] = {}
    pending: list[tuple[Path, _Parts]] = [(source, ())]
    while pending:
        folder, prefix = pending.pop()
        with os.scandir(folder) as listing:
            for item in listing:
                parts = (*prefix, item.name)
                mode = item.stat(follow_symlinks=False).st_mode
                if cache_tag and prefix and item.name == "__pycache__" and stat.S_ISDIR(mode) and parts not in dropped:
                    if kept := shipped_bytecode(Path(item.path), cache_tag):
                        members[parts] = _Member(parts, "dir", 0o755)
                        for name in kept:
                            members[(*parts, name)] = _Member((*parts, name), "file", 0o644, source=Path(item.path, name))
                    continue
                if parts in dropped or _excluded_name(item.name, top=not prefix, is_dir=stat.S_ISDIR(mode)):
                    continue
                path = Path(item.path)
                if stat.S_ISLNK(mode):
                    target = os.readlink(path)
                    if parts not in replaced:
                        _check_link(parts, target, reach=0)
                    members[parts] = _Member(parts, "link", 0o777, target=target)
                elif stat.S_ISDIR(mode):
                    members[parts] = _Member(parts, "dir", 0o755)
                    pending.append((path, parts))
                elif stat.S_ISREG(mode):
                    members[parts] = _Member(parts, "file", _file_mode(mode), source=path)
                else:
                    raise ArchiveError(f"cannot archive {path}: not a file, folder or symlink")
    return members


def _apply_overrides(members: dict[_Parts, _Member], entries: dict[_Parts, FileEntry | LinkEntry]) -> None:
    """Add or replace the overridden entries, creating any folders they need."""
    for parts, entry in sorted(entries.items()):
        where = "/".join(parts)
        existing = members.get(parts)
        if existing is not None and existing.kind == "dir":
            raise ArchiveError(f"override {where!r} would replace a folder")
        for depth in range(1, len(parts)):
            parent = parts[:depth]
            found = members.get(parent)
            if found is None:
                members[parent] = _Member(parent, "dir", 0o755)
            elif found.kind != "dir":
                raise ArchiveError(f"override {where!r}: {'/'.join(parent)!r} is not a folder")
        if isinstance(entry, FileEntry):
            members[parts] = _Member(parts, "file", _file_mode(entry.mode), content=bytes(entry.content))
        else:
            _check_link(parts, entry.target, reach=1)
            members[parts] = _Member(parts, "link", 0o777, target=entry.target)


def _collect(source: Path, overrides: Mapping[str, Override], cache_tag: str | None) -> list[_Member]:
    """The archive's members in order: sorted by path components, so a folder precedes its contents."""
    if not source.is_dir():
        raise ArchiveError(f"cannot archive {source}: not a folder")
    dropped: set[_Parts] = set()
    entries: dict[_Parts, FileEntry | LinkEntry] = {}
    for key, entry in overrides.items():
        parts = _override_parts(key)
        if entry is None:
            dropped.add(parts)
        elif isinstance(entry, (FileEntry, LinkEntry)):
            entries[parts] = entry
        else:
            raise ArchiveError(f"override {key!r}: expected FileEntry, LinkEntry or None, got {entry!r}")
    members = _scan(source, dropped, set(entries), cache_tag)
    members[()] = _Member((), "dir", 0o755)
    _apply_overrides(members, entries)
    return [members[parts] for parts in sorted(members)]


def archived_entries(
    source: Path, overrides: Mapping[str, Override], cache_tag: str | None = None, jobs: int | None = None
) -> dict[str, list[str | int]]:
    """What `write_layer_archive` would put in the archive, by `/`-separated layer path: `["file", mode,
    size, sha256]`, `["folder", mode]` or `["link", target]` (the layer's manifest entries).

    Files are hashed in up to `jobs` threads (default: one per core).
    """
    members = [member for member in _collect(Path(source), overrides, cache_tag) if member.parts]

    def describe(member: _Member) -> list[str | int]:
        cancel.check()
        if member.kind == "dir":
            return ["folder", member.mode]
        if member.kind == "link":
            return ["link", member.target or ""]
        if member.content is not None:
            return ["file", member.mode, len(member.content), hashlib.sha256(member.content).hexdigest()]
        assert member.source is not None
        digest, size = hashlib.sha256(), 0
        with _open_source(member.source) as stream:
            while chunk := stream.read(CHUNK_SIZE):
                digest.update(chunk)
                size += len(chunk)
        return ["file", member.mode, size, digest.hexdigest()]

    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 1) as pool:
        return {"/".join(member.parts): entry for member, entry in zip(members, pool.map(describe, members))}


def _open_source(path: Path) -> BinaryIO:
    """Open a tree file for reading into the archive."""
    return path.open("rb")


def _tar_info(name: str, member: _Member, clamp: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = {"dir": tarfile.DIRTYPE, "file": tarfile.REGTYPE, "link": tarfile.SYMTYPE}[member.kind]
    info.linkname = member.target or ""
    info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = member.mode, clamp, 0, 0, "root", "root"
    return info


def xz_filters(level: int | None = None, *, x86_code: bool = False) -> list[dict[str, int]]:
    """The xz filter chain for a compression level (0 to 9; None: the default), x86 branch filter first if asked."""
    lzma2 = {"id": lzma.FILTER_LZMA2, "preset": XZ_PRESET if level is None else level}
    return [{"id": lzma.FILTER_X86}, lzma2] if x86_code else [lzma2]


_XZ_ENCODER_MIB = (3, 9, 17, 32, 48, 94, 94, 186, 370, 674)
"""The memory an xz encoder takes at presets 0 to 9 (xz's manual), in MiB."""
_GZIP_ENCODER_MIB = 1


def compression_memory(fmt: ArchiveFormat, level: int | None, jobs: int) -> int:
    """The most memory (bytes) compressing `.tar.xz`/`.tar.gz` takes with `jobs` threads, over all layers.

    Per thread, one encoder and one piece of input (`CHUNK_SIZE`); and at most
    `SLOTS_PER_JOB * jobs` compressed blocks in flight (being made, or made and
    waiting to be written in order), each at most a block's size (for data
    that does not compress), plus a copy while a thread joins its block's
    output. Compressible data takes far less: a compressed block is a few MiB.
    """
    encoder = _GZIP_ENCODER_MIB if fmt is ArchiveFormat.TAR_GZ else _XZ_ENCODER_MIB[XZ_PRESET if level is None else level]
    return jobs * ((encoder << 20) + CHUNK_SIZE) + (SLOTS_PER_JOB + 1) * jobs * BLOCK_SIZE


def _block_compressor(fmt: ArchiveFormat, level: int | None, x86_code: bool) -> Compress:
    """How each block of a `.tar.xz` or `.tar.gz` is compressed."""
    if fmt is ArchiveFormat.TAR_GZ:
        return gzip_block(GZIP_LEVEL if level is None else level)
    return xz_block(xz_filters(level, x86_code=x86_code))


class _TarLayout:
    """Where every byte of a layer's uncompressed tar stream comes from, so that any range of it can be made alone.

    The stream is what `tarfile` writes (PAX headers, contents padded to
    512 bytes, two zero blocks, padding to a 10 KiB record): headers are made
    again when needed, contents read from their files when needed. So each
    block of the stream is made by the thread that compresses it, and no
    block is ever held whole.
    """

    def __init__(self, root: str, clamp: int, members: Iterable[_Member]) -> None:
        self._root = root
        self._clamp = clamp
        self._members: list[tuple[_Member, int, int]] = []
        """Each member with its content size and header size."""
        self._offsets: list[int] = []
        """Where each member's header starts."""
        offset = 0
        for member in members:
            cancel.check()
            size = self._content_size(member)
            header = len(self._header(member, size))
            self._offsets.append(offset)
            self._members.append((member, size, header))
            offset += header + _padded(size)
        self.size = -(-(offset + 2 * tarfile.BLOCKSIZE) // tarfile.RECORDSIZE) * tarfile.RECORDSIZE

    @staticmethod
    def _content_size(member: _Member) -> int:
        if member.source is not None:
            return os.stat(member.source).st_size
        return len(member.content) if member.content is not None else 0

    def _header(self, member: _Member, size: int) -> bytes:
        info = _tar_info("/".join((self._root, *member.parts)), member, self._clamp)
        info.size = size
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")

    def pieces(self, start: int, stop: int) -> Iterator[bytes | memoryview]:
        """The stream's bytes from `start` to `stop`, in pieces of at most `CHUNK_SIZE`."""
        at = max(bisect.bisect_right(self._offsets, start) - 1, 0)
        position = start
        while position < stop and at < len(self._members):
            member, size, header = self._members[at]
            offset = self._offsets[at]
            content = offset + header
            padding = content + size
            end = content + _padded(size)
            if position < content:
                yield memoryview(self._header(member, size))[position - offset : min(stop, content) - offset]
                position = min(stop, content)
            if content <= position < padding:
                until = min(stop, padding)
                yield from self._content(member, position - content, until - position)
                position = until
            if padding <= position < end:
                until = min(stop, end)
                yield bytes(until - position)
                position = until
            at += 1
        while position < stop:  # the end-of-archive blocks and the record padding
            until = min(stop, position + CHUNK_SIZE)
            yield bytes(until - position)
            position = until

    @staticmethod
    def _content(member: _Member, start: int, length: int) -> Iterator[bytes]:
        if member.content is not None:
            yield member.content[start : start + length]
            return
        assert member.source is not None
        with _open_source(member.source) as stream:
            while length > 0:
                piece = os.pread(stream.fileno(), min(length, CHUNK_SIZE), start)
                if not piece:
                    raise ArchiveError(f"{member.source} got shorter while it was being archived")
                yield piece
                start += len(piece)
                length -= len(piece)


def _padded(size: int) -> int:
    """`size` rounded up to whole 512-byte tar blocks."""
    return -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def _write_tar(
    sink: _HashingWriter, fmt: ArchiveFormat, root: str, clamp: int, members: Iterable[_Member],
    pool: BlockPool | None, level: int | None, x86_code: bool,
) -> None:  # fmt: skip
    layout = _TarLayout(root, clamp, members)
    if fmt is ArchiveFormat.TAR_ZST:
        zstd = cast(ModuleType, _zstd_module())
        with zstd.ZstdFile(sink, "wb", level=ZSTD_LEVEL if level is None else level) as packed:
            for piece in layout.pieces(0, layout.size):
                cancel.check()
                packed.write(piece)
        return
    count = -(-layout.size // BLOCK_SIZE)
    with contextlib.ExitStack() as stack:
        if pool is None:
            pool = stack.enter_context(BlockPool(os.cpu_count() or 1))
        write_blocks(
            cast(BinaryIO, sink), pool, _block_compressor(fmt, level, x86_code), count,
            lambda k: layout.pieces(k * BLOCK_SIZE, min((k + 1) * BLOCK_SIZE, layout.size)),
        )  # fmt: skip


def _zip_info(name: str, member: _Member, date_time: tuple[int, int, int, int, int, int], level: int) -> zipfile.ZipInfo:
    kinds = {"dir": stat.S_IFDIR, "file": stat.S_IFREG, "link": stat.S_IFLNK}
    info = zipfile.ZipInfo(name + "/" if member.kind == "dir" else name, date_time=date_time)
    info.create_system = 3  # Unix: the external attributes carry st_mode bits
    info.external_attr = (kinds[member.kind] | member.mode) << 16
    if member.kind == "dir":
        info.external_attr |= 0x10  # MS-DOS directory flag
        info.CRC = info.compress_size = info.file_size = 0
    elif member.kind == "file":
        info.compress_type = zipfile.ZIP_DEFLATED
        setattr(info, _ZIP_LEVEL_FIELD, level)
    return info


def _copy(stream: BinaryIO, out: IO[bytes], size: int) -> None:
    """Copy exactly `size` bytes, a chunk at a time."""
    while size > 0:
        chunk = stream.read(min(size, CHUNK_SIZE))
        if not chunk:
            raise ArchiveError(f"{getattr(stream, 'name', 'a file')} shrank while it was being archived")
        out.write(chunk)
        size -= len(chunk)


def _write_zip(sink: _HashingWriter, root: str, clamp: int, members: Iterable[_Member], level: int | None) -> None:
    level = ZIP_LEVEL if level is None else level
    moment = time.gmtime(min(max(clamp, _ZIP_EARLIEST), _ZIP_LATEST))
    date_time = (moment.tm_year, moment.tm_mon, moment.tm_mday, moment.tm_hour, moment.tm_min, moment.tm_sec)
    # An unseekable sink makes zipfile stream each member, followed by a data descriptor.
    with zipfile.ZipFile(sink, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        for member in members:
            cancel.check()
            info = _zip_info("/".join((root, *member.parts)), member, date_time, level)
            if member.kind == "dir":
                archive.mkdir(info)
            elif member.kind == "link":
                archive.writestr(info, (member.target or "").encode("utf-8"), zipfile.ZIP_STORED)
            elif member.source is not None:
                with _open_source(member.source) as stream:
                    info.file_size = size = os.fstat(stream.fileno()).st_size
                    with archive.open(info, "w") as out:
                        _copy(stream, out, size)
            else:
                archive.writestr(info, member.content or b"", compresslevel=level)


def write_layer_archive(
    source: Path, destination: Path, *, root: str, clamp: int,
    fmt: ArchiveFormat = DEFAULT_FORMAT, overrides: Mapping[str, Override] = {}, cache_tag: str | None = None,
    pool: BlockPool | None = None, level: int | None = None, x86_code: bool = False,
) -> ArchiveResult:  # fmt: skip
    """Archive the tree `source`, as the folder `root`, into `destination`: reproducibly.

    Every entry gets mtime `clamp`, owner root and a normalised mode; `excluded` paths stay
    out; `overrides` map layer paths to a replacement entry, or to None to leave them out.
    With `cache_tag` (`cpython-311`), the layer ships its bytecode: `shipped_bytecode` says which.
    `.tar.xz` and `.tar.gz` are compressed in blocks on `pool` (a pool of every core if None);
    `level` overrides the format's default compression level; `x86_code` (a layer for an
    x86-64 platform) adds xz's x86 branch filter. The archive takes its final name only
    once complete; on failure `destination` is as it was.
    """
    fmt = ArchiveFormat(fmt)
    if not fmt.available:
        raise ArchiveError(f"cannot write {fmt.suffix} archives: this Python has no compression.zstd (3.14+)")
    if not root or root in (".", "..") or "/" in root or "\0" in root:
        raise ArchiveError(f"archive root {root!r} must be a single folder name")
    if isinstance(clamp, bool) or not isinstance(clamp, int) or clamp < 0:
        raise ArchiveError(f"archive clamp {clamp!r} must be a non-negative number of seconds")
    members = _collect(Path(source), overrides, cache_tag)
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{destination.name}.partial-", dir=destination.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            sink = _HashingWriter(raw)
            if fmt is ArchiveFormat.ZIP:
                _write_zip(sink, root, clamp, members, level)
            else:
                _write_tar(sink, fmt, root, clamp, members, pool, level, x86_code)
            sink.flush()
        os.chmod(partial, 0o644)
        os.replace(partial, destination)
    except OSError as exc:
        Path(partial).unlink(missing_ok=True)
        where = f"{exc.filename}: " if exc.filename else ""
        raise ArchiveError(f"cannot write the archive {destination}: {where}{exc.strerror or exc}") from exc
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return ArchiveResult(path=destination, size=sink.size, sha256=sink.hexdigest())
