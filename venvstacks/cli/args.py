"""The parsed command line's type."""

from __future__ import annotations

import argparse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from .output import Output

__all__ = ["Args"]


class Args(argparse.Namespace):
    """The parsed command line, with every attribute any command can set."""

    verbose: int
    quiet: bool
    command: str | None
    handler: Callable[[Args, Output], int]
    """The command's function in `handlers.py`, set by its subparser."""
    artifacts_dir: str
    target: str
    deployment: str
    spec_path: str
    include: list[str] | None
    allow_missing: bool
    json: bool
    build_dir: str
    reset_lock: list[str] | None
    if_needed: bool
    lock_dependencies: bool
    index: bool
    local_wheels: list[str] | None
    python_archive_dir: str | None
    bundle: str | None
    platform: list[str] | None
    uv: str | None
    clean: bool
    lock_if_needed: bool
    build_derived: bool
    publish: bool
    output_dir: str
    force: bool
    dry_run: bool
    format: str
    tag_outputs: bool
    precompile: bool
    jobs: int | None
    compression_level: int | None
    show: bool
    show_only: bool
    manifest: str | None
