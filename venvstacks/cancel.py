"""Stopping promptly when the user interrupts: one flag for the whole process.

The command line turns SIGINT and SIGTERM into `request()`, which sets the
flag and runs the registered stop callbacks (the command runner kills its
children there), then raises KeyboardInterrupt in the main thread. Long loops
in worker threads (archiving, unpacking) call `check()` between steps, so a
pool drains within moments and every `except BaseException` cleanup runs.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["Interrupted", "request", "requested", "check", "on_request", "reset"]

_FLAG = threading.Event()
_CALLBACKS: list[Callable[[], None]] = []


class Interrupted(KeyboardInterrupt):
    """Raised in a worker thread when the process was asked to stop."""


def on_request(callback: Callable[[], None]) -> None:
    """Run `callback` (once) when a stop is requested."""
    _CALLBACKS.append(callback)


def request() -> None:
    """Ask every running step to stop: set the flag and run the stop callbacks."""
    if _FLAG.is_set():
        return
    _FLAG.set()
    for callback in _CALLBACKS:
        callback()


def requested() -> bool:
    """Whether a stop was requested."""
    return _FLAG.is_set()


def check() -> None:
    """Raise Interrupted if a stop was requested."""
    if _FLAG.is_set():
        raise Interrupted


def reset() -> None:
    """Clear the flag (for a process that runs several commands, such as the tests)."""
    _FLAG.clear()
