"""Options that several commands share, and the checks on their values."""

from __future__ import annotations

import argparse

__all__ = [
    "add_allow_missing_option", "add_jobs_option", "add_lock_options", "add_output_options", "add_publish_options", "add_report_options", "add_source_options",
    "add_spec_options",
]  # fmt: skip


def add_output_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    # The verbosity options work before or after the command name. Under the
    # command, their defaults are suppressed so they don't reset what was
    # given before it.
    default: object = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=default if suppress else 0,
        help="more detail: commands run, tracebacks; -vv for debug output",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default if suppress else False,
        help="show nothing but errors",
    )


def add_publish_options(parser: argparse.ArgumentParser, *, default_output: str, archives: bool) -> None:
    parser.add_argument(
        "--output-dir",
        default=default_output,
        metavar="DIR",
        help=f"where to write, relative to the spec's folder (default: {default_output})",
    )
    parser.add_argument(
        "--force",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="write every selected layer again, even if unchanged",
    )
    parser.add_argument(
        "--precompile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="ship bytecode compiled by each layer's runtime: deploy compiles none",
    )
    if archives:
        parser.add_argument(
            "--format",
            choices=["tar.xz", "tar.gz", "zip", "tar.zst"],
            default="tar.xz",
            help="archive format (default: tar.xz; tar.zst needs Python 3.14 or newer)",
        )
        parser.add_argument(
            "--tag-outputs",
            action=argparse.BooleanOptionalAction,
            default=False,
            help="name outputs <layer>-<platform>[-<build>] (archives, metadata)",
        )
        parser.add_argument(
            "--compression-level",
            type=_level,
            default=None,
            metavar="N",
            help="xz/gzip 0-9, zstd 1-22 (default: xz 6, 4 MiB dictionary; gzip 6)",
        )


def add_jobs_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--jobs",
        type=_positive,
        default=None,
        metavar="N",
        help=f"how many threads {what} at once (default: one per core)",
    )


def _positive(text: str) -> int:
    """A whole number of 1 or more, for argparse."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, not {text!r}")
    return int(text)


def _level(text: str) -> int:
    """A compression level from 0 to 22, for argparse (the format narrows it)."""
    if not text.isdigit() or int(text) > 22:
        raise argparse.ArgumentTypeError(f"expected a compression level from 0 to 22, not {text!r}")
    return int(text)


def add_report_options(parser: argparse.ArgumentParser, *, show: bool = True) -> None:
    if show:
        parser.add_argument(
            "--show",
            action=argparse.BooleanOptionalAction,
            default=False,
            help="first show the selected layers and the operations that will run",
        )
        parser.add_argument(
            "--show-only",
            action=argparse.BooleanOptionalAction,
            default=False,
            help="only show the selected layers and the operations that would run",
        )
    parser.add_argument(
        "--json",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="print the result as JSON" + (" (with --show-only: the plan)" if show else ""),
    )


def add_allow_missing_option(parser: argparse.ArgumentParser, *, reset_lock: bool = False) -> None:
    """`--allow-missing`, which follows the spec options of every command that selects layers."""
    parser.add_argument(
        "--allow-missing",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="only warn when an --include" + (" or --reset-lock" if reset_lock else "") + " pattern matches no layer",
    )


def add_spec_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec_path", metavar="SPEC_PATH", help="the stack specification (a TOML file)")
    parser.add_argument(
        "--build-dir",
        default="_build",
        metavar="DIR",
        help="the build folder, relative to the spec's folder (default: _build)",
    )
    parser.add_argument(
        "--include",
        action="append",
        metavar="PATTERN",
        help="layers matching this build-name wildcard, and related (repeatable)",
    )


def add_lock_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--if-needed",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="lock only the layers without a valid lock",
    )
    parser.add_argument(
        "--reset-lock",
        action="append",
        metavar="PATTERN",
        help="discard the locks of matching layers and lock afresh (repeatable)",
    )
    parser.add_argument(
        "--lock-dependencies",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="with --include, relock the layers underneath too (else: if needed)",
    )
    add_source_options(parser)
    parser.add_argument(
        "--clean",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="make the runtimes afresh before locking",
    )


def add_source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--index",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="let uv use package indexes (--no-index: local wheels, find-links)",
    )
    parser.add_argument(
        "--local-wheels",
        action="append",
        metavar="DIR",
        help="a folder of wheels for uv, relative to the spec folder (repeatable)",
    )
    parser.add_argument(
        "--python-archive-dir",
        metavar="DIR",
        help="folder of runtime archives (default: $VENVSTACKS_PYTHON_ARCHIVE_DIR)",
    )
    parser.add_argument("--uv", metavar="PATH", help="uv to use (else $VENVSTACKS_UV, PATH, beside python3, python3 -m uv)")
