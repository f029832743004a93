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
import stat
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import IO, BinaryIO, cast

from .. import cancel
from ..blockpack import BLOCK_SIZE, COPY_SIZE, SLOTS_PER_JOB, BlockPool, Compress, gzip_block, write_blocks, xz_block
from ..errors import ArchiveError
from .members import (
    CHUNK_SIZE,
    FileEntry,
    LinkEntry,
    Member,
    Override,
    archived_entries,
    collect_members,
    excluded,
    open_source,
    shipped_bytecode,
)

__all__ = [
    "ArchiveFormat", "ArchiveResult", "FileEntry", "LinkEntry", "Override", "available_formats", "check_format", "write_layer_archive",
    "archived_entries", "excluded", "shipped_bytecode", "DEFAULT_FORMAT", "XZ_PRESET", "GZIP_LEVEL", "ZIP_LEVEL", "ZSTD_LEVEL", "CHUNK_SIZE",
]  # fmt: skip

# Fixed compressor settings: changing any of them changes every archive's bytes.
# `.tar.xz` and `.tar.gz` are compressed in independent 32 MiB blocks on every
# core (see blockpack.py). The xz default is preset 6 with a 4 MiB dictionary
# (half of preset 6's, so half its encoder's memory), plus xz's x86 branch
# filter for layers of x86-64 platforms, whose shared libraries it makes more
# compressible. With members grouped by kind (members.py) that is as small as
# preset 6's own dictionary in path order, and smaller than upstream's single
# stream: docs/benchmarks.md has the figures.
XZ_PRESET = 6  # `.tar.xz`, with xz's CRC64 check
XZ_DICT_SIZE = 4 << 20  # the default's dictionary; an explicit level keeps its preset's
GZIP_LEVEL = 6  # `.tar.gz`, zlib's default level
ZIP_LEVEL = 6  # deflated `.zip` members: zlib's own default, as upstream's zips use
ZSTD_LEVEL = 3  # `.tar.zst`: zstd's own default

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


def check_format(fmt: ArchiveFormat, level: int | None) -> None:
    """ArchiveError unless this Python can write `fmt` at compression `level` (None: the format's default)."""
    if not fmt.available:
        raise ArchiveError(f"--format {fmt}: this Python cannot write it (tar.zst needs Python 3.14 or newer)")
    if level is not None and level not in fmt.levels:
        raise ArchiveError(f"--compression-level {level}: {fmt} takes {fmt.levels.start} to {fmt.levels.stop - 1}")


@dataclass(frozen=True)
class ArchiveResult:
    """A written archive: where it is, its size in bytes and its SHA-256 (hex, no prefix)."""

    path: Path
    size: int
    sha256: str


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


def _tar_info(name: str, member: Member, clamp: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = {"dir": tarfile.DIRTYPE, "file": tarfile.REGTYPE, "link": tarfile.SYMTYPE}[member.kind]
    info.linkname = member.target or ""
    info.mode, info.mtime, info.uid, info.gid, info.uname, info.gname = member.mode, clamp, 0, 0, "root", "root"
    return info


def xz_filters(level: int | None = None, *, x86_code: bool = False) -> list[dict[str, int]]:
    """The xz filter chain for a compression level (0 to 9; None: the default), x86 branch filter first if asked."""
    if level is None:
        lzma2 = {"id": lzma.FILTER_LZMA2, "preset": XZ_PRESET, "dict_size": XZ_DICT_SIZE}
    else:
        lzma2 = {"id": lzma.FILTER_LZMA2, "preset": level}
    return [{"id": lzma.FILTER_X86}, lzma2] if x86_code else [lzma2]


_XZ_ENCODER_MIB = (3, 9, 17, 32, 48, 94, 94, 186, 370, 674)
"""The memory an xz encoder takes at presets 0 to 9 (xz's manual), in MiB."""
_XZ_DEFAULT_ENCODER_MIB = _XZ_ENCODER_MIB[4]
"""The default's encoder: preset 4's dictionary (4 MiB) and match finder, hence its memory."""
_GZIP_ENCODER_MIB = 1


def compression_memory(fmt: ArchiveFormat, level: int | None, jobs: int) -> int:
    """The most memory (bytes) compressing `.tar.xz`/`.tar.gz` takes with `jobs` threads, over all layers.

    Per thread, one encoder and one piece of input (`CHUNK_SIZE`); and at most
    `SLOTS_PER_JOB * jobs` compressed blocks in flight (being made, or made and
    waiting to be written in order), each in a temporary file with a write
    buffer; and one buffer (`COPY_SIZE`) copying a block into the archive.
    Neither the block size nor how well the data compresses counts.
    """
    if fmt is ArchiveFormat.TAR_GZ:
        encoder = _GZIP_ENCODER_MIB
    else:
        encoder = _XZ_DEFAULT_ENCODER_MIB if level is None else _XZ_ENCODER_MIB[level]
    return jobs * ((encoder << 20) + CHUNK_SIZE) + SLOTS_PER_JOB * jobs * io.DEFAULT_BUFFER_SIZE + COPY_SIZE


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

    def __init__(self, root: str, clamp: int, members: Iterable[Member]) -> None:
        self._root = root
        self._clamp = clamp
        self._members: list[tuple[Member, int, int]] = []
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
    def _content_size(member: Member) -> int:
        if member.source is not None:
            return os.stat(member.source).st_size
        return len(member.content) if member.content is not None else 0

    def _header(self, member: Member, size: int) -> bytes:
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
    def _content(member: Member, start: int, length: int) -> Iterator[bytes]:
        if member.content is not None:
            yield member.content[start : start + length]
            return
        assert member.source is not None
        with open_source(member.source) as stream:
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
    sink: _HashingWriter, fmt: ArchiveFormat, root: str, clamp: int, members: Iterable[Member],
    pool: BlockPool | None, level: int | None, x86_code: bool, spill: Path,
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
            lambda k: layout.pieces(k * BLOCK_SIZE, min((k + 1) * BLOCK_SIZE, layout.size)), spill,
        )  # fmt: skip


def _zip_info(name: str, member: Member, date_time: tuple[int, int, int, int, int, int], level: int) -> zipfile.ZipInfo:
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


def _write_zip(sink: _HashingWriter, root: str, clamp: int, members: Iterable[Member], level: int | None) -> None:
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
                with open_source(member.source) as stream:
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
    members = collect_members(Path(source), overrides, cache_tag)
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(prefix=f".{destination.name}.partial-", dir=destination.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            sink = _HashingWriter(raw)
            if fmt is ArchiveFormat.ZIP:
                _write_zip(sink, root, clamp, members, level)
            else:
                _write_tar(sink, fmt, root, clamp, members, pool, level, x86_code, destination.parent)
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
