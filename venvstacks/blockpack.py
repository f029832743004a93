"""Compressing a byte stream in fixed-size blocks on a shared pool of threads, reproducibly.

A `BlockWriter` is a writable stream: it cuts what is written to it into
blocks of `BLOCK_SIZE` bytes (the last one shorter), has each block
compressed on its own by a `BlockPool` thread, and writes the results to its
sink in order. Each block becomes a complete xz stream or gzip member, so the
output is an ordinary multi-stream `.xz` or multi-member `.gz` file that
`xz -d`, `gzip -d`, GNU tar and Python's `lzma`/`gzip`/`tarfile` read as one.
The block size is fixed here and every block is compressed with the same
settings, so the bytes do not depend on the number of threads.

One pool serves every writer of a publish, so one huge layer uses every core
and so do many small ones. The compressors release the GIL. Memory is bounded:
at most `2 * jobs` blocks are submitted and not yet written, over all writers.

A `BlockReader` is the other way round, for deploy: a readable stream of
blocks decompressed ahead on a pool and handed out in order. A reader that
gets no slot decompresses its next block itself, so readers sharing a pool
never wait for each other.
"""

from __future__ import annotations

import collections
import gzip
import io
import lzma
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

from . import cancel

__all__ = ["BLOCK_SIZE", "SLOTS_PER_JOB", "BlockPool", "BlockReader", "BlockWriter", "xz_block", "gzip_block"]

BLOCK_SIZE = 16 << 20
"""How much of the uncompressed stream each block holds (fixed: it decides the archive's bytes)."""
SLOTS_PER_JOB = 2
"""How many blocks per compressing thread may be submitted and not yet written."""

Compress = Callable[[bytes], bytes]
"""Turns one block into a self-contained compressed stream."""


_PIECE = 1 << 20
"""Blocks are fed to their compressor a piece at a time, checking for a stop in between."""


def _pieces(block: bytes) -> Iterator[memoryview]:
    """`block` a piece at a time, checking for a stop before each."""
    view = memoryview(block)
    for start in range(0, len(view), _PIECE):
        cancel.check()
        yield view[start : start + _PIECE]


def xz_block(filters: list[dict[str, int]]) -> Compress:
    """A block compressor writing one xz stream (CRC64 check) with the filter chain `filters`."""

    def compress(block: bytes) -> bytes:
        packer = lzma.LZMACompressor(format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, filters=filters)
        return b"".join([*map(packer.compress, _pieces(block)), packer.flush()])

    return compress


def gzip_block(level: int) -> Compress:
    """A block compressor writing one gzip member with no name and no time in its header."""

    def compress(block: bytes) -> bytes:
        out = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=level, mtime=0) as packer:
            for piece in _pieces(block):
                packer.write(piece)
        return out.getvalue()

    return compress


class BlockPool:
    """Threads that compress blocks, with a bound on the blocks submitted and not yet written."""

    def __init__(self, jobs: int, name: str = "compress") -> None:
        self.jobs = max(1, jobs)
        self._executor = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix=name)
        self._slots = threading.Semaphore(SLOTS_PER_JOB * self.jobs)

    def __enter__(self) -> BlockPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the threads once queued blocks are done (queued ones are dropped after a failure)."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def try_reserve(self, timeout: float) -> bool:
        """Take a slot for one more block, waiting at most `timeout` seconds."""
        return self._slots.acquire(timeout=timeout)

    def release(self) -> None:
        """Give back a block's slot once it is written (or dropped)."""
        self._slots.release()

    def submit(self, compress: Compress, block: bytes) -> Future[bytes]:
        """Compress `block` on a pool thread (the caller holds a slot for it)."""
        return self._executor.submit(compress, block)

    def submit_fetch(self, fetch: Callable[[int], bytes], index: int) -> Future[bytes]:
        """Get block `index` with `fetch` on a pool thread (the caller holds a slot for it)."""
        return self._executor.submit(fetch, index)


class BlockWriter(io.RawIOBase):
    """A writable stream compressing what it gets in blocks on `pool`, written to `sink` in order."""

    def __init__(self, sink: BinaryIO, pool: BlockPool, compress: Compress) -> None:
        super().__init__()
        self._sink = sink
        self._pool = pool
        self._compress = compress
        self._buffer = bytearray()
        self._pending: collections.deque[Future[bytes]] = collections.deque()
        self._blocks = 0
        self._written = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        """How many uncompressed bytes were written (tarfile asks)."""
        return self._written

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data).cast("B")
        self._buffer += view
        self._written += view.nbytes
        while len(self._buffer) >= BLOCK_SIZE:
            with memoryview(self._buffer) as whole:
                block = bytes(whole[:BLOCK_SIZE])
            del self._buffer[:BLOCK_SIZE]
            self._submit(block)
        return view.nbytes

    def _submit(self, block: bytes) -> None:
        # While waiting for a slot, write what is done: the slots this writer holds may be the ones missing.
        while not self._pool.try_reserve(timeout=0.05):
            cancel.check()
            self._write_done(wait=bool(self._pending))
        try:
            self._pending.append(self._pool.submit(self._compress, block))
        except BaseException:
            self._pool.release()
            raise
        self._blocks += 1
        self._write_done(wait=False)

    def _write_done(self, *, wait: bool) -> None:
        """Write finished blocks in order; with `wait`, wait for at least the oldest."""
        while self._pending and (wait or self._pending[0].done()):
            future = self._pending.popleft()
            try:
                self._sink.write(future.result())
            finally:
                self._pool.release()
            wait = False

    def finish(self) -> None:
        """Compress what is left and write every block; the stream is complete."""
        try:
            if self._buffer or not self._blocks:
                self._submit(bytes(self._buffer))
                self._buffer.clear()
            while self._pending:
                cancel.check()
                self._write_done(wait=True)
        finally:
            self.close()

    def close(self) -> None:
        """Drop what is not written yet (after a failure; `finish` writes everything first)."""
        while self._pending:
            future = self._pending.popleft()
            future.cancel()
            self._pool.release()
        self._buffer.clear()
        super().close()


class BlockReader(io.RawIOBase):
    """A readable stream of `count` blocks, each got by `fetch(index)` ahead of time on `pool`, read in order.

    `check` is called while waiting, and raises to abandon reading.
    """

    def __init__(self, fetch: Callable[[int], bytes], count: int, pool: BlockPool, check: Callable[[], None]) -> None:
        super().__init__()
        self._fetch = fetch
        self._count = count
        self._pool = pool
        self._check = check
        self._pending: collections.deque[Future[bytes]] = collections.deque()
        self._submitted = 0
        self._current = memoryview(b"")

    def readable(self) -> bool:
        return True

    def _submit_ahead(self) -> None:
        while self._submitted < self._count and len(self._pending) < SLOTS_PER_JOB * self._pool.jobs:
            if not self._pool.try_reserve(timeout=0):
                return
            try:
                self._pending.append(self._pool.submit_fetch(self._fetch, self._submitted))
            except BaseException:
                self._pool.release()
                raise
            self._submitted += 1

    def _next_block(self) -> bytes | None:
        self._submit_ahead()
        if not self._pending:
            if self._submitted == self._count:
                return None
            self._submitted += 1  # no slot free: this thread gets the block itself
            return self._fetch(self._submitted - 1)
        future = self._pending.popleft()
        try:
            while True:
                self._check()
                try:
                    return future.result(timeout=0.05)
                except TimeoutError:
                    continue
        finally:
            self._pool.release()

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(1 << 20), b""))
        while not self._current:
            block = self._next_block()
            if block is None:
                return b""
            self._current = memoryview(block)
        data = bytes(self._current[:size])
        self._current = self._current[size:]
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def close(self) -> None:
        """Drop the blocks fetched ahead and not read."""
        while self._pending:
            future = self._pending.popleft()
            future.cancel()
            self._pool.release()
        self._current = memoryview(b"")
        super().close()
