"""Compressing a byte stream in fixed-size blocks on a shared pool of threads, reproducibly.

`write_blocks` compresses the blocks of a stream, each on its own on a
`BlockPool` thread, and writes the results to a sink in order. Each block
becomes a complete xz stream or gzip member, so the output is an ordinary
multi-stream `.xz` or multi-member `.gz` file that `xz -d`, `gzip -d`, GNU
tar and Python's `lzma`/`gzip`/`tarfile` read as one. The block size is
fixed here and every block is compressed with the same settings, so the
bytes do not depend on the number of threads.

A block is never held whole: the thread compressing it gets its pieces from
a function that makes them (`archive` reads them from the files the tar
stream is made of) and feeds them to its compressor one at a time. One pool
serves every layer of a publish, so one huge layer uses every core and so
do many small ones; each stream's last block, usually short, starts only
when no other block waits, so that the cores finish together. The
compressors release the GIL. Memory is bounded: one
encoder and one piece per thread, and at most `SLOTS_PER_JOB * jobs`
compressed blocks submitted and not yet written, over all layers: the
oldest goes straight into its archive, and those ahead of it wait for their
turn in unnamed temporary files rather than in memory.

A `BlockReader` is the other way round, for deploy: a readable stream of
blocks decompressed ahead on a pool and handed out in order. A reader that
gets no slot decompresses its next block itself, so readers sharing a pool
never wait for each other.
"""

from __future__ import annotations

import collections
import gzip
import heapq
import io
import itertools
import lzma
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast

from . import cancel

__all__ = ["BLOCK_SIZE", "READ_AHEAD_PER_JOB", "SLOTS_PER_JOB", "BlockPool", "BlockReader", "write_blocks", "xz_block", "gzip_block"]

BLOCK_SIZE = 32 << 20
"""How much of the uncompressed stream each block holds (fixed: it decides the archive's bytes)."""
SLOTS_PER_JOB = 3
"""How many blocks per compressing thread may be submitted and not yet written.

More than two, so that a thread that frees up finds more than one block waiting
and can leave each stream's short last block for the end (see `BlockPool`).
Waiting blocks take no memory: a block's pieces are made as it is compressed,
and a block made ahead of its turn waits on disk.
"""
READ_AHEAD_PER_JOB = 2
"""How many blocks per thread a `BlockReader` decompresses ahead (each held in memory until read)."""

COPY_SIZE = 1 << 18
"""How much of a compressed block is in memory at a time while it is copied into the archive.

Every layer's writer may be copying at once, from the page cache: a MiB each
showed as 4 MB more peak memory on the seed stack, for no speed.
"""

Piece = bytes | memoryview
Compress = Callable[[Iterable[Piece], BinaryIO], None]
"""Writes the pieces of one block, as a self-contained compressed stream, to a file."""
_T = TypeVar("_T")


def _checked(pieces: Iterable[Piece]) -> Iterator[Piece]:
    """`pieces`, checking for a stop before each."""
    for piece in pieces:
        cancel.check()
        yield piece


def xz_block(filters: list[dict[str, int]]) -> Compress:
    """A block compressor writing one xz stream (CRC64 check) with the filter chain `filters`."""

    def compress(pieces: Iterable[Piece], out: BinaryIO) -> None:
        packer = lzma.LZMACompressor(format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, filters=filters)
        for piece in _checked(pieces):
            out.write(packer.compress(piece))
        out.write(packer.flush())

    return compress


def gzip_block(level: int) -> Compress:
    """A block compressor writing one gzip member with no name and no time in its header."""

    def compress(pieces: Iterable[Piece], out: BinaryIO) -> None:
        with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=level, mtime=0) as packer:
            for piece in _checked(pieces):
                packer.write(piece)

    return compress


class BlockPool:
    """Threads that compress blocks, with a bound on the blocks submitted and not yet written.

    A block submitted as `last` (a stream's final block, usually short) runs
    only when no other block is waiting: a thread that takes it early may
    leave the other cores a full block of the slowest layer to finish alone.
    """

    def __init__(self, jobs: int, name: str = "compress", *, slots_per_job: int = SLOTS_PER_JOB) -> None:
        self.jobs = max(1, jobs)
        self.slots = slots_per_job * self.jobs
        """How many blocks may be submitted and not yet written (or read) at once."""
        self._executor = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix=name)
        self._slots = threading.Semaphore(self.slots)
        self._waiting: list[tuple[bool, int, Future[Any], Callable[[int], Any], int]] = []
        """Blocks submitted and not started, as a heap: (last, submission number, future, work, index)."""
        self._submitted = itertools.count()
        self._lock = threading.Lock()

    def __enter__(self) -> BlockPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the threads once running blocks are done; those not started are dropped (after a failure)."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for _last, _number, future, _work, _index in self._waiting:
                future.cancel()
            self._waiting.clear()

    def try_reserve(self, timeout: float) -> bool:
        """Take a slot for one more block, waiting at most `timeout` seconds."""
        return self._slots.acquire(timeout=timeout)

    def release(self) -> None:
        """Give back a block's slot once it is written (or dropped)."""
        self._slots.release()

    def submit_block(self, work: Callable[[int], _T], index: int, *, last: bool = False) -> Future[_T]:
        """Run `work(index)`, which makes block `index`, on a pool thread (the caller holds a slot for it).

        Blocks start in the order submitted, those submitted as `last` after all others waiting.
        """
        future: Future[_T] = Future()
        with self._lock:
            heapq.heappush(self._waiting, (last, next(self._submitted), future, work, index))
        self._executor.submit(self._run_next)  # one run per block: each takes the first block waiting
        return future

    def _run_next(self) -> None:
        with self._lock:
            _last, _number, future, work, index = heapq.heappop(self._waiting)
        if not future.set_running_or_notify_cancel():
            return  # dropped meanwhile
        try:
            result = work(index)
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)

    def drop(self, pending: collections.deque[Future[_T]]) -> None:
        """Cancel the blocks in `pending` (none of them wanted any more) and give back their slots."""
        while pending:
            pending.popleft().cancel()
            self.release()


def _result(future: Future[_T], check: Callable[[], None]) -> _T:
    """The block `future` makes, calling `check` (which raises to stop waiting) every 50 ms meanwhile."""
    while True:
        check()
        try:
            return future.result(timeout=0.05)
        except TimeoutError:
            continue


class _BlockOutput(io.RawIOBase):
    """Where one block's compressed bytes go: the archive itself once every block before it is written.

    Until then they wait in an unnamed temporary file in the folder `spill`
    (made only when there is something to keep), and are copied into the
    archive when their turn comes. Writing after `close` raises ValueError,
    which stops the block's compressor.
    """

    def __init__(self, spill: Path | None) -> None:
        super().__init__()
        self._spill = spill
        self._lock = threading.Lock()
        self._waiting: BinaryIO | None = None
        self._sink: BinaryIO | None = None

    def writable(self) -> bool:
        return True

    def write(self, data: Piece) -> int:  # type: ignore[override]  # Buffer is 3.12+
        with self._lock:
            if self.closed:
                raise ValueError("this block is no longer wanted")
            if self._sink is not None:
                self._sink.write(data)
            else:
                if self._waiting is None:
                    self._waiting = cast(BinaryIO, tempfile.TemporaryFile(dir=self._spill))
                self._waiting.write(data)
        return memoryview(data).nbytes

    def send_to(self, sink: BinaryIO) -> None:
        """Copy what waited into `sink`, and write straight into it from now on (once is enough)."""
        with self._lock:
            if self._sink is not None:
                return
            if self._waiting is not None:
                self._waiting.seek(0)
                shutil.copyfileobj(self._waiting, sink, COPY_SIZE)
                self._waiting.close()
                self._waiting = None
            self._sink = sink

    def close(self) -> None:
        with self._lock:
            if self._waiting is not None:
                self._waiting.close()
                self._waiting = None
            super().close()


def write_blocks(
    sink: BinaryIO, pool: BlockPool, compress: Compress, count: int, pieces: Callable[[int], Iterable[Piece]], spill: Path | None = None,
) -> None:  # fmt: skip
    """Compress blocks 0 to `count - 1` (one at least) on `pool`, block `k` from `pieces(k)`, and write them to `sink` in order.

    The oldest block not yet written goes straight into `sink`; blocks ahead of
    it wait in unnamed temporary files in the folder `spill` (the system's
    default if None). So memory does not grow with how well the data compresses,
    and a layer of one block takes no disk beyond its archive.
    """
    pending: collections.deque[tuple[_BlockOutput, Future[None]]] = collections.deque()

    def submit(index: int) -> None:
        output = _BlockOutput(spill)
        if not pending:
            output.send_to(sink)  # the oldest not written: none of it need wait
        pending.append((output, pool.submit_block(lambda k: compress(pieces(k), cast(BinaryIO, output)), index, last=index == count - 1)))

    def write_done(*, wait: bool) -> None:
        """Write finished blocks in order; with `wait`, wait for at least the oldest."""
        while pending:
            output, future = pending[0]
            output.send_to(sink)
            if not (wait or future.done()):
                return
            pending.popleft()
            try:
                _result(future, cancel.check)
            finally:
                output.close()
                pool.release()
            wait = False

    try:
        for index in range(count):
            # While waiting for a slot, write what is done: the slots this writer holds may be the ones missing.
            # It must not wait for its own oldest block meanwhile: another layer's writer may free a slot first.
            while not pool.try_reserve(timeout=0.05):
                cancel.check()
                write_done(wait=False)
            try:
                submit(index)
            except BaseException:
                pool.release()
                raise
            write_done(wait=False)
        while pending:
            write_done(wait=True)
    finally:
        # After a failure: what is not written stops writing anywhere, and its compressor soon stops.
        for output, _ in pending:
            output.close()
        pool.drop(collections.deque(future for _, future in pending))


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
        while self._submitted < self._count and len(self._pending) < self._pool.slots:
            if not self._pool.try_reserve(timeout=0):
                return
            try:
                self._pending.append(self._pool.submit_block(self._fetch, self._submitted))
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
            return _result(future, self._check)
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
        self._pool.drop(self._pending)
        self._current = memoryview(b"")
        super().close()
