"""Where a command's results, progress, warnings and errors go, and the exit statuses."""

from __future__ import annotations

# Importing `typing` costs a few milliseconds of the start-up budget that
# `--help` and `--version` must meet, and only type checkers need it here.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from argparse import Namespace
    from collections.abc import Mapping
    from typing import TextIO

__all__ = ["Output", "PROG", "EXIT_OK", "EXIT_FAILURE", "EXIT_USAGE", "EXIT_INTERRUPTED"]

PROG = "venvstacks"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class Output:
    """Where the command's results, progress, warnings and errors go.

    Results go to stdout; everything else to stderr. On a terminal, progress is
    one status line rewritten in place and warnings and errors are coloured
    (unless NO_COLOR is set or TERM is dumb); elsewhere progress comes as plain
    lines. With --quiet only errors (and results) are shown.
    """

    def __init__(self, args: Namespace, stdout: TextIO, stderr: TextIO, environ: Mapping[str, str] | None = None) -> None:
        """Report as the parsed options (`verbose`, `quiet`, `json`) ask."""
        import os

        environ = os.environ if environ is None else environ
        self.verbose = args.verbose
        self.quiet = args.quiet
        self.json = bool(getattr(args, "json", False))
        self.stdout = stdout
        self.stderr = stderr
        interactive = _isatty(stderr) and environ.get("TERM") != "dumb"
        self.status_line = interactive and not self.verbose
        self.colour = interactive and not environ.get("NO_COLOR")
        self._status_shown = False

    def _clear_status(self) -> None:
        if self._status_shown:
            self.stderr.write("\r\033[K")
            self.stderr.flush()
            self._status_shown = False

    def result(self, text: str) -> None:
        """The command's result, on stdout."""
        self._clear_status()
        self.stdout.write(text)
        self.stdout.flush()

    def progress(self, message: str) -> None:
        """A long step starting: a status line on a terminal, a plain line elsewhere, nothing with --quiet."""
        if self.quiet:
            return
        if self.status_line:
            import shutil

            width = max(20, shutil.get_terminal_size().columns - 1)
            text = message if len(message) <= width else message[: width - 3] + "..."
            self.stderr.write("\r\033[K" + text)
            self._status_shown = True
        else:
            self.stderr.write(f"{message}\n")
        self.stderr.flush()

    def info(self, message: str) -> None:
        """Detail shown with -v."""
        if self.verbose and not self.quiet:
            self._clear_status()
            self.stderr.write(f"{message}\n")

    def warning(self, message: str) -> None:
        """A non-fatal problem, on stderr unless --quiet."""
        if not self.quiet:
            self._clear_status()
            self.stderr.write(f"{self._label('warning', '33')} {message}\n")

    def error(self, message: str) -> None:
        """A fatal problem, on stderr, one line per line of the message."""
        self._clear_status()
        label = self._label("error", "31")
        for line in message.splitlines() or [""]:
            self.stderr.write(f"{label} {line}\n")

    def finish(self) -> None:
        """Leave the terminal as it was: no status line."""
        self._clear_status()

    def _label(self, word: str, colour: str) -> str:
        return f"\033[1;{colour}m{word}:\033[0m" if self.colour else f"{word}:"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
