"""Compiling a layer's Python sources while the rest of its archive is still being unpacked.

Deploy unpacks a layer, then has the layer's `postinstall.py --compile-only`
compile its bytecode. For a big layer the second step used to start only once
the first was done. A `CompileAhead` is fed each file the extractor writes;
it sends the sources under `lib/` to processes of the layer's runtime Python
as soon as that Python is unpacked, so compiling overlaps unpacking on every
core. The bytecode is what `compileall` writes (the same function makes it),
and `postinstall.py --compile-only` then finds it up to date.

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

__all__ = ["CompileAhead", "FILES_PER_WORKER"]

_LOG = logging.getLogger(__name__)

FILES_PER_WORKER = 200
"""One more compiling process starts for every this many sources, up to the jobs allowed."""

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
"""
"""The compiling process: paths arrive on its input, each ended by a NUL byte."""


class CompileAhead:
    """Compiles the sources of one layer as they are unpacked into `folder`, in up to `jobs` processes."""

    def __init__(self, name: str, jobs: int) -> None:
        self._name = name
        self._jobs = max(1, jobs)
        self._folder: Path | None = None
        self._open: list[tuple[str, list[str]]] = []
        """The folders holding the member being unpacked, with their sources not sent yet (innermost last)."""
        self._ships_bytecode = False
        self._ready: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._feeder: threading.Thread | None = None
        self._workers: list[FedCommand] = []
        self._stopped = threading.Event()
        self._starting = threading.Lock()
        """Held while the feeder is started, so that `stop` sees it started or not at all."""

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

    def _release(self, sources: list[str]) -> None:
        if not self._ships_bytecode:
            for source in sources:
                self._ready.put(source)

    def start(self, python: Path) -> None:
        """Start compiling with `python` (the layer's runtime interpreter, unpacked); once only."""
        with self._starting:
            if self._feeder is None and not self._stopped.is_set():
                feeder = threading.Thread(target=self._feed, args=(python,), name=f"compile-ahead-{self._name}", daemon=True)
                feeder.start()
                self._feeder = feeder

    def _feed(self, python: Path) -> None:
        # This thread starts the compiling processes and waits for them: they die with the thread that
        # started them (PR_SET_PDEATHSIG is per thread on Linux).
        sent = 0
        try:
            while (source := self._ready.get()) is not None and not self._stopped.is_set():
                if len(self._workers) < self._jobs and sent >= len(self._workers) * FILES_PER_WORKER:
                    command: list[str | os.PathLike[str]] = [python, "-X", "utf8", "-I", "-c", _WORKER]
                    self._workers.append(FedCommand(command, description=f"compiling layer {self._name!r} ahead"))
                assert self._folder is not None
                self._workers[sent % len(self._workers)].send(os.fsencode(self._folder / source) + b"\0", flush=self._ready.empty())
                sent += 1
        except (CommandError, OSError, cancel.Interrupted) as exc:  # a head start only: the final step compiles what is left
            _LOG.debug("compiling layer %r ahead stopped: %s", self._name, exc)
            self._stopped.set()
        for worker in list(self._workers):
            if self._stopped.is_set():
                worker.kill()
                continue
            try:
                worker.finish()
            except (CommandError, cancel.Interrupted) as exc:
                _LOG.debug("compiling layer %r ahead failed: %s", self._name, exc)

    def finish(self) -> None:
        """Wait for what was sent to be compiled (after `unpacked`); failures are left to the final step."""
        self._ready.put(None)
        with self._starting:
            feeder = self._feeder
        if feeder is not None:
            feeder.join()

    def stop(self) -> None:
        """Stop at once (the deployment failed or was interrupted)."""
        self._stopped.set()
        self._ready.put(None)
        with self._starting:  # a feeder is either started, or never will be
            feeder = self._feeder
        for worker in list(self._workers):
            worker.kill()
        if feeder is not None:
            feeder.join()
