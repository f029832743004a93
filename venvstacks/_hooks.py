"""A pause point for the tests, which interrupt real runs at chosen moments.

With `VENVSTACKS_TEST_PAUSE=<point>:<flag file>` in the environment, reaching
`pause("<point>")` for the first time creates the flag file and waits until it is removed, so a
test can kill the process there, or change something and let it go on.
Without the variable, `pause` does nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from . import cancel

__all__ = ["pause"]

VARIABLE = "VENVSTACKS_TEST_PAUSE"


_REACHED: set[str] = set()


def pause(point: str) -> None:
    """Wait at `point` while the test's flag file exists: the first time, and only if the test asked for it."""
    name, _, flag = os.environ.get(VARIABLE, "").partition(":")
    if name != point or not flag or point in _REACHED:
        return
    _REACHED.add(point)
    Path(flag).touch()
    while Path(flag).exists():
        cancel.check()  # an interrupted run stops waiting
        time.sleep(0.02)
