"""Finding the blocks of xz files from their end, and decompressing each on its own, in several threads."""

from __future__ import annotations

import io
import lzma
import os
import random
import shutil
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from venvstacks.blockpack import BlockPool, write_blocks, xz_block
from venvstacks.errors import ArchiveError
from venvstacks.extract import extract_into
from venvstacks.xzindex import find_blocks, standalone_stream

DATA = random.Random(13).randbytes(3 << 20) + b"venvstacks " * (400 << 10)


def _blocks_of(blob: bytes) -> list[bytes] | None:
    """Each block of `blob` decompressed on its own, or None where none are found."""
    blocks = find_blocks(io.BytesIO(blob), len(blob))
    if blocks is None:
        return None
    return [lzma.decompress(standalone_stream(b, blob[b.offset : b.offset + ((b.unpadded_size + 3) & ~3)])) for b in blocks]


def _multi_stream(data: bytes, size: int) -> bytes:
    """`data` as one xz stream per `size` bytes."""
    return b"".join(lzma.compress(data[start : start + size], preset=1) for start in range(0, len(data), size))


def test_one_block_per_stream_as_publish_writes_them() -> None:
    out = io.BytesIO()
    size = 1 << 20  # publish's blocks are bigger: a smaller stand-in
    with BlockPool(2) as pool:
        compress = xz_block([{"id": lzma.FILTER_LZMA2, "preset": 1}])
        write_blocks(out, pool, compress, -(-len(DATA) // size), lambda k: [DATA[k * size : (k + 1) * size]])
    parts = _blocks_of(out.getvalue())
    assert parts is not None and len(parts) == -(-len(DATA) // size) > 1 and b"".join(parts) == DATA


@pytest.mark.slow  # compresses or extracts megabytes
def test_streams_with_padding_and_other_checks() -> None:
    blob = lzma.compress(DATA[:1000]) + bytes(8) + lzma.compress(DATA[1000:], check=lzma.CHECK_SHA256) + bytes(4)
    parts = _blocks_of(blob)
    assert parts is not None and len(parts) == 2 and b"".join(parts) == DATA


@pytest.mark.slow  # compresses or extracts megabytes
@pytest.mark.skipif(shutil.which("xz") is None, reason="needs the xz command")
def test_blocks_of_one_stream_as_xz_threads_write_them(tmp_path: Path) -> None:
    (tmp_path / "data").write_bytes(DATA)
    blob = subprocess.run(["xz", "-T2", "-c", "--block-size=1MiB", tmp_path / "data"], capture_output=True, check=True).stdout
    parts = _blocks_of(blob)
    assert parts is not None and len(parts) > 1 and b"".join(parts) == DATA


@pytest.mark.slow  # compresses or extracts megabytes
def test_a_single_block_and_an_empty_file() -> None:
    assert _blocks_of(lzma.compress(DATA)) == [DATA]
    assert _blocks_of(lzma.compress(b"")) == []


@pytest.mark.parametrize(
    "damage",
    ["truncated", "extra byte", "index byte", "footer byte", "header byte", "not xz", "bad padding"],
)
def test_a_file_that_does_not_add_up_has_no_blocks(damage: str) -> None:
    blob = bytearray(lzma.compress(DATA[:5000]) + lzma.compress(DATA[5000:10000]))
    if damage == "truncated":
        del blob[-4:]
    elif damage == "extra byte":
        blob += b"\0"
    elif damage == "index byte":
        blob[-20] ^= 1
    elif damage == "footer byte":
        blob[-6] ^= 1
    elif damage == "header byte":
        blob[7] ^= 1
    elif damage == "not xz":
        blob = bytearray(os.urandom(4000))
    else:
        blob = bytearray(lzma.compress(DATA[:5000])) + b"\0\0\0\1" + lzma.compress(DATA[5000:10000])
    assert find_blocks(io.BytesIO(bytes(blob)), len(blob)) is None


# --- extraction with block threads -----------------------------------------------------


def _tar(tmp_path: Path) -> bytes:
    """An uncompressed tar of a few files, about 9 MiB in all."""
    buffer = io.BytesIO()
    rng = random.Random(7)
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for index in range(9):
            data = rng.randbytes(1 << 19) + bytes(1 << 19)
            info = tarfile.TarInfo(f"layer/file{index}.bin")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _extract(archive: Path, folder: Path, pool: BlockPool | None, check=None) -> dict[str, tuple[int, str]]:  # type: ignore[no-untyped-def]
    folder.mkdir()
    digests: dict[str, tuple[int, str]] = {}
    extract_into(archive, folder, strip_prefix="layer", digests=digests, pool=pool, check=check)
    return digests


@pytest.mark.slow  # compresses or extracts megabytes
@pytest.mark.parametrize("jobs", [1, 2, 5])
def test_extracting_in_blocks_gives_what_one_pass_gives(tmp_path: Path, jobs: int) -> None:
    archive = tmp_path / "layer.tar.xz"
    archive.write_bytes(_multi_stream(_tar(tmp_path), 1 << 20))
    with archive.open("rb") as file:
        assert len(find_blocks(file, archive.stat().st_size) or []) == 10  # so the blocks are read ahead on the pool
    one_pass = _extract(archive, tmp_path / "one", None)
    with BlockPool(jobs, "unpack") as pool:
        assert _extract(archive, tmp_path / "blocks", pool) == one_pass
    assert len(one_pass) == 9
    assert all((tmp_path / "blocks" / name).read_bytes() == (tmp_path / "one" / name).read_bytes() for name in one_pass)


@pytest.mark.slow  # compresses or extracts megabytes
def test_two_readers_share_one_small_pool(tmp_path: Path) -> None:
    archive = tmp_path / "layer.tar.xz"
    archive.write_bytes(_multi_stream(_tar(tmp_path), 1 << 19))
    results: list[dict[str, tuple[int, str]]] = []
    with BlockPool(1, "unpack") as pool:
        threads = [threading.Thread(target=lambda n=n: results.append(_extract(archive, tmp_path / f"t{n}", pool))) for n in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert len(results) == 3 and results[0] == results[1] == results[2] and len(results[0]) == 9


@pytest.mark.slow  # compresses or extracts megabytes
def test_a_damaged_block_fails_the_extraction(tmp_path: Path) -> None:
    blob = bytearray(_multi_stream(_tar(tmp_path), 1 << 20))
    blocks = find_blocks(io.BytesIO(bytes(blob)), len(blob))
    assert blocks is not None and len(blocks) > 4
    blob[blocks[4].offset + 100] ^= 0xFF  # inside the compressed data: the index still adds up
    archive = tmp_path / "layer.tar.xz"
    archive.write_bytes(bytes(blob))
    with BlockPool(2, "unpack") as pool, pytest.raises(ArchiveError, match="the archive is damaged"):
        _extract(archive, tmp_path / "out", pool)


@pytest.mark.slow  # compresses or extracts megabytes
def test_a_stop_while_reading_ahead_ends_the_extraction(tmp_path: Path) -> None:
    archive = tmp_path / "layer.tar.xz"
    archive.write_bytes(_multi_stream(_tar(tmp_path), 1 << 20))
    calls = 0

    def check() -> None:
        nonlocal calls
        calls += 1
        if calls > 3:
            raise KeyboardInterrupt

    with BlockPool(2, "unpack") as pool, pytest.raises(KeyboardInterrupt):
        _extract(archive, tmp_path / "out", pool, check)
