"""Safe, all-or-nothing extraction of tar archives (runtime archives in particular).

tarfile only reads the archive: this module writes every member itself, so the
result does not depend on tarfile's extraction filters (missing before Python
3.11.4, and with a default that changed in 3.14). The archive is streamed, never
loaded whole, and unpacked into a sibling `<destination>.partial-XXXX` folder that
is renamed to the destination only once every member is written and checked; on
any error that folder is removed again, so nothing half-unpacked remains.

Refused with UnsafeArchiveError, naming the archive and the member: absolute
paths, `..` components, backslashes (and drive letters on Windows), members
outside `strip_prefix`, symbolic links whose target is absolute or resolves
outside the destination, hard links to anything but a regular file extracted
before them, devices, FIFOs and other special members, a member that would
replace one extracted before it (a directory may be repeated), and a member
whose path goes through a symbolic link or a file. A damaged archive (bad
compressed data, truncated, no end-of-archive marker) raises ArchiveError.

File modes keep their permission bits, less setuid/setgid/sticky and group/other
write; the owner can always read and write. Directories get default modes.

`extract_into` takes a `check` callable, called before each member and each
chunk written, that raises to abandon the extraction (a deployment being
interrupted), so that a worker thread stops within moments.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import logging
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, cast

from .blockpack import BlockPool, BlockReader
from .errors import ArchiveError, UnsafeArchiveError
from .xzindex import XzBlock, find_blocks, standalone_stream

__all__ = ["safe_extract_tar", "extract_into"]

_log = logging.getLogger(__name__)

_BLOCK = tarfile.BLOCKSIZE
_CHUNK = 1 << 20
_TAIL = 1 << 16
"""How much of the most recently read tar data is kept, to check the end marker."""
_GZIP_MAGIC = b"\x1f\x8b"
_XZ_MAGIC = b"\xfd7zXZ\x00"
_BZIP2_MAGIC = b"BZh"
_MAX_PARALLEL_BLOCK = 64 << 20
"""Bigger xz blocks are decompressed in one pass, so that blocks read ahead do not take too much memory."""


class _ReadFailure(Exception):
    """Reading or decompressing the archive itself failed."""


class _TailReader:
    """A read-only stream over the decompressed tar data that counts bytes and keeps the last ones."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.position = 0
        self._tail = bytearray()

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._stream.read(size)
        except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
            raise _ReadFailure(str(exc) or type(exc).__name__) from exc
        self.position += len(data)
        self._tail += data
        if len(self._tail) > 2 * _TAIL:
            del self._tail[:-_TAIL]
        return data

    def bytes_at(self, offset: int, size: int) -> bytes:
        """Up to `size` bytes read earlier from `offset`, if they are still kept."""
        start = offset - (self.position - len(self._tail))
        if start < 0:
            return b""
        return bytes(self._tail[start : start + size])

    def drain(self) -> None:
        """Read to the end, so the decompressor checks the stream's length and checksum."""
        while self.read(_CHUNK):
            pass


def _xz_block_fetcher(raw: BinaryIO, blocks: list[XzBlock]) -> Callable[[int], bytes]:
    """A function decompressing block `index` of the xz file `raw` on its own (any thread may call it)."""
    fd = raw.fileno()

    def fetch(index: int) -> bytes:
        block = blocks[index]
        size = (block.unpadded_size + 3) & ~3
        data = os.pread(fd, size, block.offset)
        if len(data) != size:
            raise EOFError(f"block {index} is cut short")
        decompressor = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        out = decompressor.decompress(standalone_stream(block, data), max_length=block.uncompressed_size + 1)
        if len(out) != block.uncompressed_size or not decompressor.eof:
            raise lzma.LZMAError(f"block {index} does not decompress to the {block.uncompressed_size} bytes its index records")
        return out

    return fetch


def _open_decompressed(raw: BinaryIO, pool: BlockPool | None, check: Callable[[], None]) -> BinaryIO:
    """The archive's tar data: gzip, xz and bzip2 are recognised by their magic bytes.

    With a `pool`, an xz file of several blocks (each at most `_MAX_PARALLEL_BLOCK`
    bytes decompressed) is decompressed a block per thread, ahead of reading.
    """
    try:
        magic = raw.read(len(_XZ_MAGIC))
        raw.seek(0)
    except OSError as exc:
        raise _ReadFailure(str(exc)) from exc
    if magic.startswith(_GZIP_MAGIC):
        return cast(BinaryIO, gzip.GzipFile(fileobj=raw, mode="rb"))
    if magic.startswith(_XZ_MAGIC):
        if pool is not None:
            blocks = find_blocks(raw, os.fstat(raw.fileno()).st_size)
            raw.seek(0)
            if blocks is not None and len(blocks) > 1 and max(block.uncompressed_size for block in blocks) <= _MAX_PARALLEL_BLOCK:
                return BlockReader(_xz_block_fetcher(raw, blocks), len(blocks), pool, check)  # type: ignore[return-value]
        return cast(BinaryIO, lzma.LZMAFile(raw))
    if magic.startswith(_BZIP2_MAGIC):
        import bz2

        return cast(BinaryIO, bz2.BZ2File(raw))
    return raw


def _file_mode(mode: int) -> int:
    """A member's permission bits as extracted (see the module docstring)."""
    mode &= 0o755
    if not mode & 0o100:
        mode &= ~0o111
    return mode | 0o600


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISLNK(mode):
        return "symbolic link"
    return "file"


class _Extractor:
    """Writes the members of one archive into a fresh folder, checking each first."""

    def __init__(
        self, archive: Path, root: Path, strip_prefix: str | None, link_scope: Path | None = None,
        digests: dict[str, tuple[int, str]] | None = None, check: Callable[[], None] | None = None,
        pool: BlockPool | None = None, on_file: Callable[[str], None] | None = None,
    ) -> None:  # fmt: skip
        self.archive = archive
        self.pool = pool
        """Threads that decompress the blocks of a multi-block xz archive ahead of reading (None: in one pass)."""
        self.on_file = on_file
        """Called with each regular file's `/`-separated path (relative to the root) once it is complete."""
        self.root = root
        self.prefix = strip_prefix
        self.link_scope = link_scope
        """Where links may lead: the destination, or (for a layer unpacked next to its
        peers) a folder holding the stripped prefix folder and its siblings."""
        self.scope_name = "destination" if link_scope is None else "deployment folder"
        self.known_dirs: set[tuple[str, ...]] = {()}
        """Relative paths checked to be real directories (no link can replace them later)."""
        self.symlinks: list[tuple[str, str, Path]] = []
        self.count = 0
        self.digests = digests
        """When given, filled with `{relative path: (size, sha256)}` for every regular file written."""
        self.check = check or _go_on
        """Called before each member and chunk; raises to stop."""

    def refuse(self, member_name: str, reason: str) -> UnsafeArchiveError:
        return UnsafeArchiveError(f"{self.archive}: refusing to extract {member_name!r}: {reason}")

    def run(self) -> None:
        try:
            raw = self.archive.open("rb")
        except OSError as exc:
            msg = f"cannot read the archive {self.archive}: {exc.strerror or exc}"
            raise ArchiveError(msg) from exc
        with raw:
            try:
                with _open_decompressed(raw, self.pool, self.check) as stream:
                    reader = _TailReader(stream)
                    with tarfile.open(fileobj=reader, mode="r|") as tar:  # type: ignore[call-overload]
                        for member in tar:
                            self.check()
                            self.extract(tar, member)
                        end = tar.offset
                    if reader.bytes_at(end, _BLOCK) != bytes(_BLOCK):
                        raise _ReadFailure(f"no end-of-archive marker after {self.count} members (truncated?)")
                    reader.drain()
            except (tarfile.TarError, _ReadFailure) as exc:
                msg = f"cannot extract {self.archive}: the archive is damaged ({exc})"
                raise ArchiveError(msg) from exc
        self.check_symlinks()

    def parts_of(self, name: str, member_name: str, what: str) -> tuple[str, ...]:
        """The checked, prefix-stripped components of a member name or hard link target."""
        if "\\" in name or (os.name == "nt" and ":" in name):
            raise self.refuse(member_name, f"the {what} {name!r} holds a backslash or drive letter")
        if name.startswith("/"):
            raise self.refuse(member_name, f"the {what} {name!r} is absolute")
        parts = tuple(part for part in name.split("/") if part not in ("", "."))
        if ".." in parts:
            raise self.refuse(member_name, f"the {what} {name!r} has a '..' component")
        if self.prefix is None or not parts:
            return parts
        if parts[0] != self.prefix:
            raise self.refuse(member_name, f"the {what} {name!r} is not inside '{self.prefix}/'")
        return parts[1:]

    def extract(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        """Check and write one member."""
        name = member.name
        parts = self.parts_of(name, name, "path")
        if member.ischr() or member.isblk() or member.isfifo():
            raise self.refuse(name, "device and FIFO members are not allowed")
        if not (member.isdir() or member.isreg() or member.issym() or member.islnk()):
            raise self.refuse(name, f"unsupported member type {member.type!r}")
        if not parts:
            if member.isdir():
                return
            raise self.refuse(name, "it would replace the destination folder itself")
        target = self.make_parents(name, parts) / parts[-1]
        self.count += 1
        if member.isdir():
            self.make_dir(name, parts, target)
            return
        if os.path.lexists(target):
            kind = _kind(os.lstat(target).st_mode)
            raise self.refuse(name, f"it would replace the {kind} {'/'.join(parts)!r} extracted before it")
        if member.isreg():
            self.write_file(tar, member, target)
        elif member.issym():
            self.make_symlink(member, parts, target)
        else:
            self.make_hardlink(member, target)

    def make_parents(self, member_name: str, parts: tuple[str, ...]) -> Path:
        """Create the member's missing parent folders; refuse paths through links or files."""
        path = self.root
        for depth in range(1, len(parts)):
            path = path / parts[depth - 1]
            key = parts[:depth]
            if key in self.known_dirs:
                continue
            try:
                mode = os.lstat(path).st_mode
            except FileNotFoundError:
                os.mkdir(path)
            else:
                if not stat.S_ISDIR(mode):
                    where = "/".join(key)
                    raise self.refuse(member_name, f"its path goes through the {_kind(mode)} {where!r}")
            self.known_dirs.add(key)
        return path

    def make_dir(self, member_name: str, parts: tuple[str, ...], target: Path) -> None:
        try:
            mode = os.lstat(target).st_mode
        except FileNotFoundError:
            os.mkdir(target)
        else:
            if not stat.S_ISDIR(mode):
                where = "/".join(parts)
                raise self.refuse(member_name, f"it would replace the {_kind(mode)} {where!r} with a directory")
        self.known_dirs.add(parts)

    def write_file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
        source = tar.extractfile(member)
        if source is None:  # pragma: no cover - regular members always have data
            raise self.refuse(member.name, "the member has no data")
        digest, size = hashlib.sha256(), 0
        try:
            with source, target.open("xb") as out:
                while chunk := source.read(_CHUNK):
                    self.check()
                    if self.digests is not None:
                        digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
        except OSError as exc:
            if exc.filename is not None:
                raise
            raise OSError(exc.errno, exc.strerror, str(target)) from exc  # name the file (a full disk)
        relative = self.relative(target)
        if self.digests is not None:
            self.digests[relative] = (size, digest.hexdigest())
        os.chmod(target, _file_mode(member.mode))
        try:
            os.utime(target, (member.mtime, member.mtime))
        except (OverflowError, ValueError):
            pass
        if self.on_file is not None:
            self.on_file(relative)

    def make_symlink(self, member: tarfile.TarInfo, parts: tuple[str, ...], target: Path) -> None:
        link = member.linkname
        if not link:
            raise self.refuse(member.name, "symbolic link with an empty target")
        if link.startswith("/") or "\\" in link or (os.name == "nt" and ":" in link):
            raise self.refuse(member.name, f"symbolic link to the absolute path {link!r}")
        # Within a wider scope, the extracted tree sits in the scope as its prefix folder.
        base = (self.prefix,) if self.link_scope is not None and self.prefix else ()
        resolved = posixpath.normpath(posixpath.join("/".join((*base, *parts[:-1])), link))
        if resolved == ".." or resolved.startswith("../") or (self.link_scope is not None and resolved == "."):
            raise self.refuse(member.name, f"symbolic link to {link!r} leads outside the {self.scope_name}")
        os.symlink(link, target)
        self.symlinks.append((member.name, link, target))

    def make_hardlink(self, member: tarfile.TarInfo, target: Path) -> None:
        source_parts = self.parts_of(member.linkname, member.name, "hard link target")
        not_earlier = f"hard link to {member.linkname!r}, which is not a file extracted before it"
        if not source_parts or any(source_parts[:d] not in self.known_dirs for d in range(1, len(source_parts))):
            raise self.refuse(member.name, not_earlier)
        source = self.root.joinpath(*source_parts)
        try:
            mode = os.lstat(source).st_mode
        except FileNotFoundError as exc:
            raise self.refuse(member.name, not_earlier) from exc
        if not stat.S_ISREG(mode):
            raise self.refuse(member.name, f"hard link to the {_kind(mode)} {member.linkname!r}")
        os.link(source, target)
        if self.digests is not None:
            self.digests[self.relative(target)] = self.digests[self.relative(source)]

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def check_symlinks(self) -> None:
        """Once everything is written, every symbolic link must still resolve inside."""
        root = os.path.realpath(self.link_scope or self.root)
        for member_name, link, path in self.symlinks:
            resolved = os.path.realpath(path)
            if resolved != root and not resolved.startswith(root + os.sep):
                raise self.refuse(member_name, f"symbolic link to {link!r} resolves outside the {self.scope_name}")


def _go_on() -> None:
    """The `check` of an extraction nothing can stop."""


def extract_into(
    archive: Path, folder: Path, *, strip_prefix: str | None, link_scope: Path | None = None,
    digests: dict[str, tuple[int, str]] | None = None, check: Callable[[], None] | None = None,
    pool: BlockPool | None = None, on_file: Callable[[str], None] | None = None,
) -> int:  # fmt: skip
    """Extract an archive into the existing empty `folder`, with every check; returns the member count.

    With `digests`, the size and sha256 of every regular file are stored there
    under its `/`-separated path relative to `folder`, computed while writing.
    Unlike `safe_extract_tar` this neither creates nor renames anything, so the
    caller owns the folder's fate (and removes it when `check` raises). With
    `link_scope`, symbolic links may lead anywhere inside that folder (where
    the tree will sit as `strip_prefix`), not only inside the tree itself.
    With a `pool`, the blocks of an xz archive written in several (as publish
    writes them, or `xz -T`) are decompressed on its threads, ahead of reading.
    `on_file` is called with each regular file's relative path once it is
    written, with its mode and time (in the archive's order).
    """
    extractor = _Extractor(archive, folder, strip_prefix, link_scope, digests, check, pool, on_file)
    extractor.run()
    return extractor.count


def safe_extract_tar(archive: Path, destination: Path, *, strip_prefix: str | None = None) -> None:
    """Extract a `.tar`, `.tar.gz`, `.tar.xz` or `.tar.bz2` archive into `destination`.

    `destination` must not exist yet; its parent is created if needed. With
    `strip_prefix` (a top folder name such as `"python"`) every member must lie
    inside that folder and is extracted without it. See the module docstring for
    what is refused; on any error nothing is left behind.
    """
    if strip_prefix is not None and (not strip_prefix or "/" in strip_prefix or strip_prefix in (".", "..")):
        raise ValueError(f"strip_prefix must be a single folder name, not {strip_prefix!r}")
    if os.path.lexists(destination):
        raise FileExistsError(errno.EEXIST, "the extraction destination already exists", str(destination))
    destination.parent.mkdir(parents=True, exist_ok=True)
    _log.info("Extracting %s into %s", archive, destination)
    partial = Path(tempfile.mkdtemp(prefix=f"{destination.name}.partial-", dir=destination.parent))
    try:
        count = extract_into(archive, partial, strip_prefix=strip_prefix)
        os.chmod(partial, 0o755)
        os.replace(partial, destination)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _log.info("Extracted %d members into %s", count, destination)
