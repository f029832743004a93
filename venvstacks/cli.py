"""The command line: argument parsing, output and exit codes.

This is the only module that prints or decides the exit status. It imports
the rest of the package lazily, inside the command handlers, so that `--help`
and `--version` start fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__

# Importing `typing` costs a few milliseconds of the start-up budget that
# `--help` and `--version` must meet, and only type checkers need it here.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TextIO

    from .spec import StackSpec

__all__ = ["main"]

PROG = "venvstacks"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_DESCRIPTION = "Lock, build and publish layered Python environment stacks."
_EPILOG = """\
Runtime layers hold a relocatable Python; framework layers hold big shared
packages; application layers hold an app and its launch module. All of them
are described in one stack specification (usually venvstacks.toml).

example:
  venvstacks show venvstacks.toml
"""


class _Args(argparse.Namespace):
    """The parsed command line, with every attribute any command can set."""

    verbose: int
    quiet: bool
    command: str | None
    spec_path: str
    include: list[str] | None
    allow_missing: bool
    json: bool
    build_dir: str


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors name the tool and exit with status 2."""

    def error(self, message: str) -> Any:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _add_output_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    # The verbosity options work before or after the command name. Under the
    # command, their defaults are suppressed so they don't reset what was
    # given before it.
    default: Any = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default if suppress else 0,
        help="show more detail (uv command lines, tracebacks on errors); repeat for debug output",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default if suppress else False,
        help="show nothing but errors",
    )


def _build_parser() -> _Parser:
    parser = _Parser(
        prog=PROG,
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-V", "--version", action="version", version=f"{PROG}: {__version__}", help="show the version and exit"
    )
    _add_output_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    show = commands.add_parser(
        "show",
        help="show the layers of a stack and what each one builds on",
        description=(
            "Show the runtimes, frameworks and applications of a stack specification, each "
            "layered environment followed by the layers it uses in sys.path order. A leading "
            "'*' marks a layer without a valid lock."
        ),
        epilog="examples:\n  venvstacks show venvstacks.toml\n  venvstacks show --include 'app-*' --json venvstacks.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("spec_path", metavar="SPEC_PATH", help="the stack specification (a TOML file)")
    show.add_argument(
        "--build-dir",
        default="_build",
        metavar="DIR",
        help="the build folder, relative to the spec's folder (default: _build)",
    )
    show.add_argument(
        "--include",
        action="append",
        metavar="PATTERN",
        help="only layers whose build name matches this wildcard pattern, plus the layers "
        "they use and the layers that use them (repeatable)",
    )
    show.add_argument(
        "--allow-missing",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="only warn when an --include pattern matches no layer",
    )
    show.add_argument(
        "--json",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="print the stack as JSON instead of a tree",
    )
    _add_output_options(show, suppress=True)
    show.set_defaults(handler=_cmd_show)
    return parser


class _Output:
    """Where the command's results, warnings and errors go."""

    def __init__(self, args: _Args, stdout: TextIO, stderr: TextIO) -> None:
        self.verbose = args.verbose
        self.quiet = args.quiet
        self.stdout = stdout
        self.stderr = stderr

    def result(self, text: str) -> None:
        """The command's result, on stdout."""
        self.stdout.write(text)
        self.stdout.flush()

    def warning(self, message: str) -> None:
        """A non-fatal problem, on stderr unless --quiet."""
        if not self.quiet:
            self.stderr.write(f"warning: {message}\n")

    def error(self, message: str) -> None:
        """A fatal problem, on stderr, one line per line of the message."""
        for line in message.splitlines() or [""]:
            self.stderr.write(f"error: {line}\n")


def _load_spec(spec_path: str, out: _Output) -> StackSpec:
    from .specload import load_spec

    spec = load_spec(spec_path)
    for warning in spec.warnings:
        out.warning(warning)
    return spec


def _cmd_show(args: _Args, out: _Output) -> int:
    import json

    from .render import render_tree, stack_status
    from .selection import select_layers

    spec = _load_spec(args.spec_path, out)
    selected = None
    if args.include:
        selection = select_layers(spec, args.include)
        if selection.unmatched_patterns:
            patterns = ", ".join(repr(p) for p in selection.unmatched_patterns)
            if not args.allow_missing:
                out.error(f"no layers match --include {patterns} (pass --allow-missing to continue without them)")
                return EXIT_FAILURE
            out.warning(f"no layers match --include {patterns}")
        selected = selection.build_names
    status = stack_status(spec, selected=selected)
    if args.json:
        out.result(json.dumps(status, indent=2, sort_keys=True) + "\n")
    else:
        out.result(render_tree(status))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit status."""
    stdout, stderr = sys.stdout, sys.stderr
    if sys.version_info < (3, 11):
        found = ".".join(map(str, sys.version_info[:2]))
        stderr.write(f"error: {PROG} needs Python 3.11 or newer (this is Python {found})\n")
        return EXIT_FAILURE
    parser = _build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments:
        parser.print_help(stderr)
        return EXIT_USAGE
    try:
        args = parser.parse_args(arguments, namespace=_Args())
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_usage(stderr)
        stderr.write(f"{PROG}: error: a command is required\n")
        return EXIT_USAGE
    out = _Output(args, stdout, stderr)
    return _run(args, out)


def _run(args: _Args, out: _Output) -> int:
    from .errors import VenvStacksError

    try:
        status: int = args.handler(args, out)
        return status
    except VenvStacksError as exc:
        if out.verbose:
            import traceback

            traceback.print_exc(file=out.stderr)
        out.error(str(exc))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        out.error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (as with `| head`); nothing more can be shown.
        return EXIT_FAILURE
    except Exception as exc:  # a bug: say so briefly, in full with -v
        if out.verbose:
            import traceback

            traceback.print_exc(file=out.stderr)
        out.error(f"internal error: {type(exc).__name__}: {exc}" + ("" if out.verbose else " (run with -v for a traceback)"))
        return EXIT_FAILURE
