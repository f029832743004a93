"""The command line: parse, run the command's handler, print its outcome and return the exit status.

The cli package is the only one that prints or decides the exit status. It
imports the rest of the package lazily, inside the command handlers, so that
`--help` and `--version` start fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from .output import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, PROG, Output
from .args import Args
from .parser import build_parser

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit status."""
    stdout, stderr = sys.stdout, sys.stderr
    if sys.version_info < (3, 11):  # noqa: UP036  # the .pyz may be started by an older Python
        found = ".".join(map(str, sys.version_info[:2]))
        stderr.write(f"error: {PROG} needs Python 3.11 or newer (this is Python {found})\n")
        return EXIT_FAILURE
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments:
        parser.print_help(stderr)
        return EXIT_USAGE
    try:
        args = parser.parse_args(arguments, namespace=Args())
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_usage(stderr)
        stderr.write(f"{PROG}: error: a command is required\n")
        return EXIT_USAGE
    out = Output(args, stdout, stderr)
    restore_signals = _stop_on_signals()
    try:
        return _run(args, out)
    finally:
        restore_signals()


def _stop_on_signals() -> Callable[[], None]:
    """Make SIGINT and SIGTERM stop the command cleanly; returns what puts the handlers back.

    The first signal stops running commands and worker threads (see `cancel`)
    and raises KeyboardInterrupt here, so that every cleanup runs; later
    signals are ignored while it does.
    """
    import signal
    import threading

    from .. import cancel

    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def stop(signum: int, frame: object) -> None:
        if cancel.requested():
            return
        cancel.request()
        raise KeyboardInterrupt

    saved = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
        cancel.reset()

    return restore


def _setup_logging(out: Output) -> Callable[[], None]:
    """Send the package's log records to `out`; returns what puts logging back as it was."""
    import logging

    from ..progress import PROGRESS

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if record.levelno >= logging.ERROR:
                out.error(message)
            elif record.levelno >= logging.WARNING:
                out.warning(message)
            elif record.levelno >= PROGRESS:
                out.progress(message)
            else:
                out.info(message)

    logger = logging.getLogger("venvstacks")
    saved = logger.handlers[:], logger.propagate, logger.level
    logger.handlers[:] = [Handler()]
    logger.propagate = False
    if out.quiet:
        logger.setLevel(logging.ERROR)
    elif out.verbose >= 2:
        logger.setLevel(logging.DEBUG)
    elif out.verbose:
        logger.setLevel(logging.INFO)
    else:
        logger.setLevel(PROGRESS)

    def restore() -> None:
        logger.handlers[:], logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])

    return restore


def _traceback(out: Output) -> None:
    """With -v, the traceback of the exception being handled."""
    if out.verbose:
        import traceback

        traceback.print_exc(file=out.stderr)


def _run(args: Args, out: Output) -> int:
    from ..errors import VenvStacksError

    restore_logging = _setup_logging(out)

    try:
        status = args.handler(args, out)
        out.finish()
        return status
    except VenvStacksError as exc:
        _traceback(out)
        out.error(str(exc))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        out.error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (as with `| head`); nothing more can be shown.
        return EXIT_FAILURE
    except OSError as exc:  # the file system refused: a full disk, a name too long, no permission
        _traceback(out)
        where = f"{exc.filename}: " if exc.filename else ""
        out.error(f"{where}{exc.strerror or exc}")
        return EXIT_FAILURE
    except Exception as exc:  # a bug: say so briefly, in full with -v
        _traceback(out)
        out.error(f"internal error: {type(exc).__name__}: {exc}" + ("" if out.verbose else " (run with -v for a traceback)"))
        return EXIT_FAILURE
    finally:
        restore_logging()
