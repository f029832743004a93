"""Progress of long steps (locking, installing, archiving, downloading, deploying).

Library modules report it through their logger at `PROGRESS`, between INFO
(detail shown with -v) and WARNING; the command line decides how it looks: a
status line on a terminal, plain lines otherwise, nothing with -q.
"""

from __future__ import annotations

import logging

__all__ = ["PROGRESS", "progress"]

PROGRESS = 25


def progress(logger: logging.Logger, message: str, *args: object) -> None:
    """Report that a long step starts (`message` %-formatted with `args`, like logging)."""
    logger.log(PROGRESS, message, *args)
