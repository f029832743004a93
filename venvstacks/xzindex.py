"""The blocks of an `.xz` file, found from its end, each to be decompressed on its own.

An xz file is one or more streams (with zero padding between them), and a
stream is a header, blocks, an index and a footer. The footer gives the size
of the index and the index gives the compressed and uncompressed size of
every block, so walking back from the end of the file finds every block
without decompressing anything. A block wrapped in a stream header, a
one-record index and a footer is a complete xz stream of its own: that is
how several threads decompress one file at once.

Publish writes one stream per 32 MiB of tar data (see `blockpack`); `xz -T`
writes one stream of many blocks; tarfile and `xz` without threads write one
block. Anything that does not add up (a damaged file, or not xz at all) gives
None, and the caller decompresses the file in one pass, which reports the
damage as it does today.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

__all__ = ["XzBlock", "find_blocks", "standalone_stream"]

_HEADER_MAGIC = b"\xfd7zXZ\x00"
_FOOTER_MAGIC = b"YZ"
_EDGE = 12
"""The size of a stream header, and of a stream footer."""
_MAX_INDEX = 16 << 20
"""A bigger index (a million blocks) is not worth reading: the file is decompressed in one pass."""


@dataclass(frozen=True)
class XzBlock:
    """One block of an xz file: where it lies, its sizes and its stream's flags."""

    offset: int
    """Where the block starts in the file."""
    unpadded_size: int
    """The block's size without its padding to a multiple of four bytes (as the index records it)."""
    uncompressed_size: int
    flags: bytes
    """The two stream flag bytes (the check type) of the stream holding it."""


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """The xz variable-length integer at `at`, and where the next field starts."""
    value = 0
    for shift in range(0, 63, 7):
        if at >= len(data):
            raise ValueError("truncated integer")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and shift:
                raise ValueError("integer not in its shortest form")
            return value, at
    raise ValueError("integer too long")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _parse_index(index: bytes) -> list[tuple[int, int]]:
    """The (unpadded size, uncompressed size) records of a complete index field, checked."""
    if len(index) < 8 or len(index) % 4 or index[0] != 0:
        raise ValueError("not an index")
    if zlib.crc32(index[:-4]) != struct.unpack("<I", index[-4:])[0]:
        raise ValueError("index checksum")
    count, at = _varint(index, 1)
    records = []
    for _ in range(count):
        unpadded, at = _varint(index, at)
        uncompressed, at = _varint(index, at)
        if unpadded < 5:
            raise ValueError("block too small")
        records.append((unpadded, uncompressed))
    if index[at:-4] != bytes(len(index) - 4 - at) or (len(index) - 4 - at) >= 4:
        raise ValueError("index padding")
    return records


def _padded(size: int) -> int:
    return (size + 3) & ~3


def _read_at(file: BinaryIO, offset: int, size: int) -> bytes:
    file.seek(offset)
    data = file.read(size)
    if len(data) != size:
        raise ValueError("short read")
    return data


def _stream_before(file: BinaryIO, end: int) -> tuple[int, list[XzBlock]]:
    """The stream ending at `end`: where it starts, and its blocks in order."""
    footer = _read_at(file, end - _EDGE, _EDGE)
    if footer[10:] != _FOOTER_MAGIC or zlib.crc32(footer[4:10]) != struct.unpack("<I", footer[:4])[0]:
        raise ValueError("not a stream footer")
    flags = footer[8:10]
    index_size = (struct.unpack("<I", footer[4:8])[0] + 1) * 4
    if index_size > _MAX_INDEX or index_size > end - 2 * _EDGE:
        raise ValueError("index too big")
    records = _parse_index(_read_at(file, end - _EDGE - index_size, index_size))
    blocks_size = sum(_padded(unpadded) for unpadded, _ in records)
    start = end - _EDGE - index_size - blocks_size - _EDGE
    if start < 0:
        raise ValueError("stream larger than the file")
    header = _read_at(file, start, _EDGE)
    if header[:6] != _HEADER_MAGIC or header[6:8] != flags or zlib.crc32(header[6:8]) != struct.unpack("<I", header[8:])[0]:
        raise ValueError("not the stream header the footer expects")
    blocks, offset = [], start + _EDGE
    for unpadded, uncompressed in records:
        blocks.append(XzBlock(offset, unpadded, uncompressed, flags))
        offset += _padded(unpadded)
    return start, blocks


def find_blocks(file: BinaryIO, size: int) -> list[XzBlock] | None:
    """Every block of the xz file `file` (`size` bytes), in order; None where the file is not laid out as xz says."""
    if size % 4 or size < 2 * _EDGE:
        return None
    streams: list[list[XzBlock]] = []
    end = size
    try:
        while end > 0:
            while end >= 4 and _read_at(file, end - 4, 4) == bytes(4):  # stream padding
                end -= 4
            end, blocks = _stream_before(file, end)
            streams.append(blocks)
    except (ValueError, OSError):
        return None
    return [block for blocks in reversed(streams) for block in blocks]


def standalone_stream(block: XzBlock, data: bytes) -> bytes:
    """The block's bytes (`data`, padding included) as a complete xz stream of its own."""
    header = _HEADER_MAGIC + block.flags + struct.pack("<I", zlib.crc32(block.flags))
    records = b"\x00" + _encode_varint(1) + _encode_varint(block.unpadded_size) + _encode_varint(block.uncompressed_size)
    records += bytes(-len(records) % 4)
    index = records + struct.pack("<I", zlib.crc32(records))
    backward = struct.pack("<I", len(index) // 4 - 1) + block.flags
    footer = struct.pack("<I", zlib.crc32(backward)) + backward + _FOOTER_MAGIC
    return header + data + index + footer
