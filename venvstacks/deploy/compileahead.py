"""Compiling a layer's Python sources while the rest of its archive is still being unpacked.

Deploy unpacks a layer, then has the layer's `postinstall.py --compile-only`
compile its bytecode. For a big layer the second step used to start only once
the first was done. A `CompileAhead` is fed each file the extractor writes;
it sends the sources under `lib/` to processes of the layer's runtime Python
as soon as that Python is unpacked, so compiling overlaps unpacking on every
core. The bytecode is what `compileall` writes (the same function makes it),
and `postinstall.py --compile-only` then finds it up to date.

The layers on one runtime share a `CompileGroup`: at most `jobs` processes of
that runtime's Python, fed by every layer's head start, rather than up to `jobs`
per layer. More processes than cores only take turns, and each switch costs
the compiler its warm caches (six processes on two cores took 17% more CPU
time than two for the same sources). The group's processes end once every
one of its layers is unpacked and all their sources are compiled. A process
holds a few sources at a time and gets another for each one it reports
done, so that none sits idle at the end while another still has a backlog
(sources used to be dealt out in turn, and at the end one of two processes
often had half a second of work left).

It is only a head start: nothing fails because of it. The final compile step
still runs, compiles whatever is left and reports what does not compile.

Sources are sent only once their folder is complete in the archive (in a
path-sorted archive a folder is complete when a member outside it comes),
and none at all once the archive shows shipped bytecode (`__pycache__/*.pyc`,
a layer published with `--precompile`): the extractor refuses to replace a
file, so compiling a source whose shipped bytecode is still to come would
fail the deployment. Our archives put shipped bytecode before every source
(publish/members.py), and a folder's sources together, so both hold there too.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from pathlib import Path

from .. import cancel
from .._proc import FedCommand
from ..errors import CommandError

__all__ = ["CompileAhead", "CompileGroup", "FILES_PER_WORKER"]

_LOG = logging.getLogger(__name__)

FILES_PER_WORKER = 200
"""One more compiling process starts for every this many sources received, up to the jobs allowed."""

IN_FLIGHT = 8
"""How many sources a compiling process is given before it has compiled the first of them."""

_WORKER = """\
import compileall, os
rest = b""
while True:
    chunk = os.read(0, 1 << 16)
    if not chunk:
        break
    *paths, rest = (rest + chunk).split(b"\\0")
    for path in paths:
        compileall.compile_file(os.fsdecode(path), quiet=2)
        os.write(1, b".")
"""
"""The compiling process: paths arrive on its input, each ended by a NUL byte; a dot comes back for each one done."""


class CompileGroup:
    """Up to `jobs` processes of one runtime's Python, compiling the sources of its `layers` layers as they are unpacked."""

    def __init__(self, runtime: str, jobs: int, layers: int) -> None:
        self._name = runtime
        self._jobs = max(1, jobs)
        self._still_unpacking = layers
        self._ready: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._feeder: threading.Thread | None = None
        self._workers: list[FedCommand] = []
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        """Held while the feeder is started (so that `stop` sees it started or not at all) and while layers are counted."""

    def ahead(self) -> CompileAhead:
        """The head start of one of the group's layers."""
        return CompileAhead(self)

    def send(self, sources: list[Path]) -> None:
        """Have `sources` (complete files, not to be written again) compiled."""
        for source in sources:
            self._ready.put(os.fsencode(source) + b"\0")

    def layer_unpacked(self) -> None:
        """One of the group's layers is unpacked: once all are, the processes end when their work is done."""
        with self._lock:
            self._still_unpacking -= 1
            if self._still_unpacking == 0:
                self._ready.put(None)

    def start(self, python: Path) -> None:
        """Start compiling with `python` (the runtime's interpreter, unpacked); only the first call counts."""
        with self._lock:
            if self._feeder is None and not self._stopped.is_set():
                feeder = threading.Thread(target=self._feed, args=(python,), name=f"compile-ahead-{self._name}", daemon=True)
                feeder.start()
                self._feeder = feeder

    def _feed(self, python: Path) -> None:
        # This thread starts the compiling processes and waits for them: they die with the thread that
        # started them (PR_SET_PDEATHSIG is per thread on Linux).
        # Each source goes to whichever process has room: up to IN_FLIGHT sources each, and a process
        # gets another for each one it reports done, so none idles while another has a backlog.
        sent = 0
        room: queue.SimpleQueue[int] = queue.SimpleQueue()
        readers: list[threading.Thread] = []
        try:
            while (path := self._ready.get()) is not None and not self._stopped.is_set():
                if len(self._workers) < self._jobs and sent + self._ready.qsize() >= len(self._workers) * FILES_PER_WORKER:
                    command: list[str | os.PathLike[str]] = [python, "-X", "utf8", "-I", "-c", _WORKER]
                    worker = FedCommand(command, description=f"compiling the layers on {self._name!r} ahead", replies=True)
                    self._workers.append(worker)
                    readers.append(threading.Thread(target=_count_replies, args=(worker, len(self._workers) - 1, room), daemon=True))
                    readers[-1].start()
                    for _ in range(IN_FLIGHT):
                        room.put(len(self._workers) - 1)
                if (index := room.get()) < 0:
                    raise OSError(f"compiling process {-index} of {len(self._workers)} ended early")
                self._workers[index].send(path, flush=True)
                sent += 1
        except (CommandError, OSError, cancel.Interrupted) as exc:  # a head start only: the final step compiles what is left
            _LOG.debug("compiling the layers on %r ahead stopped: %s", self._name, exc)
            self._stopped.set()
        for worker in list(self._workers):
            if self._stopped.is_set():
                worker.kill()
                continue
            try:
                worker.finish()
            except (CommandError, cancel.Interrupted) as exc:
                _LOG.debug("compiling the layers on %r ahead failed: %s", self._name, exc)
        for reader in readers:
            reader.join()

    def finish(self) -> None:
        """Wait until every layer is unpacked and what was sent is compiled; failures are left to the final step."""
        with self._lock:
            feeder = self._feeder
        if feeder is not None:
            feeder.join()

    def stop(self) -> None:
        """Stop at once (the deployment failed or was interrupted)."""
        self._stopped.set()
        self._ready.put(None)
        with self._lock:  # a feeder is either started, or never will be
            feeder = self._feeder
        for worker in list(self._workers):
            worker.abort()  # the feeder, waiting for it or about to kill it, reaps it and closes its files
        if feeder is not None:
            feeder.join()


def _count_replies(worker: FedCommand, index: int, room: queue.SimpleQueue[int]) -> None:
    """Make room for another source at process `index` for each one it reports done; -(index + 1) once it ends."""
    while replies := worker.receive():
        for _ in range(len(replies)):
            room.put(index)
    room.put(-(index + 1))


class CompileAhead:
    """What one layer being unpacked into `folder` gives its `CompileGroup` to compile."""

    def __init__(self, group: CompileGroup) -> None:
        self._group = group
        self._folder: Path | None = None
        self._open: list[tuple[str, list[str]]] = []
        """The folders holding the member being unpacked, with their sources not sent yet (innermost last)."""
        self._ships_bytecode = False
        self._unpacked = False

    def unpacking_into(self, folder: Path) -> None:
        """Say where the layer is being unpacked (before its first file)."""
        self._folder = folder

    def on_file(self, relative: str) -> None:
        """Note a file the extractor has written (`relative` to the layer's folder, in archive order)."""
        parent, _, name = relative.rpartition("/")
        if name.endswith(".pyc") and parent.rpartition("/")[2] == "__pycache__":
            self._ships_bytecode = True
            self._open.clear()
            return
        while self._open and not (parent == self._open[-1][0] or parent.startswith(self._open[-1][0] + "/")):
            self._release(self._open.pop()[1])
        if self._ships_bytecode or not (relative.startswith("lib/") and name.endswith(".py")):
            return
        if not self._open or self._open[-1][0] != parent:
            self._open.append((parent, []))
        self._open[-1][1].append(relative)

    def unpacked(self) -> None:
        """The whole archive is unpacked: every folder is complete."""
        while self._open:
            self._release(self._open.pop()[1])
        if not self._unpacked:
            self._unpacked = True
            self._group.layer_unpacked()

    def _release(self, sources: list[str]) -> None:
        if not self._ships_bytecode:
            assert self._folder is not None
            self._group.send([self._folder / source for source in sources])

    def start(self, python: Path) -> None:
        """Start compiling with `python` (the layer's runtime interpreter, unpacked)."""
        self._group.start(python)

    def finish(self) -> None:
        """Wait for the group's work to be compiled (after `unpacked`); failures are left to the final step."""
        self._group.finish()

    def stop(self) -> None:
        """Stop the group at once (the deployment failed or was interrupted)."""
        self._group.stop()
