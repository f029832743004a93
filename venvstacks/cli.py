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

    from pathlib import Path

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
    _add_spec_options(show)
    show.add_argument(
        "--json",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="print the stack as JSON instead of a tree",
    )
    _add_output_options(show, suppress=True)
    show.set_defaults(handler=_cmd_show)
    lock = commands.add_parser(
        "lock",
        help="lock every layer's requirements for all its target platforms",
        description=(
            "Resolve each layer's requirements with uv for all of the layer's target platforms at "
            "once, constrained to the versions the layers underneath install, and write the locks "
            "to requirements/<layer>/ next to the spec. By default every selected layer is "
            "relocked; a lock that comes out the same keeps its time and version."
        ),
        epilog=(
            "examples:\n"
            "  venvstacks lock venvstacks.toml\n"
            "  venvstacks lock --if-needed --python-archive-dir ~/pbs venvstacks.toml\n"
            "  venvstacks lock --include 'framework-*' --reset-lock 'framework-torch' venvstacks.toml"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_spec_options(lock)
    _add_lock_options(lock)
    _add_output_options(lock, suppress=True)
    lock.set_defaults(handler=_cmd_lock)
    build = commands.add_parser(
        "build",
        help="build locked layers into working environments in the build folder",
        description=(
            "Build each selected layer for this machine: runtimes with their own packages, "
            "framework and application layers as virtual environments holding only their own "
            "packages, linked to the layers underneath. A layer whose lock, spec entry and "
            "sources are unchanged is not rebuilt."
        ),
        epilog=(
            "examples:\n"
            "  venvstacks build venvstacks.toml\n"
            "  venvstacks build --lock-if-needed --python-archive-dir ~/pbs venvstacks.toml\n"
            "  venvstacks build --include 'app-*' --clean venvstacks.toml"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_spec_options(build)
    build.add_argument(
        "--lock-if-needed",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="lock layers without a valid lock first (otherwise such layers are an error)",
    )
    build.add_argument(
        "--build-derived",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="with --include, also build the layers built on the included ones",
    )
    build.add_argument(
        "--clean",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="rebuild the selected layers from scratch, runtimes unpacked afresh",
    )
    _add_source_options(build)
    _add_output_options(build, suppress=True)
    build.add_argument(
        "--publish",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="publish the built layers as archives too (see 'publish')",
    )
    _add_publish_options(build, default_output="_artifacts", archives=True)
    build.set_defaults(handler=_cmd_build, if_needed=True, reset_lock=None, lock_dependencies=False, dry_run=False)
    publish = commands.add_parser(
        "publish",
        help="archive built layers, with metadata, for deployment elsewhere",
        description=(
            "Write one reproducible archive per built layer for this platform, each holding the "
            "layer under its deployed folder name with postinstall.py on top, and the metadata "
            "describing them in __venvstacks__/. Layers whose inputs are unchanged since their "
            "last archive are not archived again."
        ),
        epilog=(
            "examples:\n"
            "  venvstacks publish venvstacks.toml\n"
            "  venvstacks publish --tag-outputs --output-dir demo_artifacts --format tar.gz venvstacks.toml"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_spec_options(publish)
    _add_publish_options(publish, default_output="_artifacts", archives=True)
    publish.add_argument(
        "--dry-run",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="show the metadata that would be published, without writing anything",
    )
    _add_output_options(publish, suppress=True)
    publish.set_defaults(handler=_cmd_publish)
    export = commands.add_parser(
        "local-export",
        help="export built layers to a folder as if published and unpacked",
        description=(
            "Copy each built layer to <output dir>/<deployed name> (hard links where possible), "
            "exactly as its archive would unpack, run its post-install step, and write the same "
            "metadata as publish without the archive fields."
        ),
        epilog="example:\n  venvstacks local-export --output-dir demo_export venvstacks.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_spec_options(export)
    _add_publish_options(export, default_output="_export", archives=False)
    export.add_argument(
        "--dry-run",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="show what would be exported, without writing anything",
    )
    _add_output_options(export, suppress=True)
    export.set_defaults(handler=_cmd_export)
    fetch = commands.add_parser(
        "fetch",
        help="put everything building the locked stack needs into a bundle folder",
        description=(
            "Download every wheel named in the layers' locks for the chosen platforms, and copy "
            "the runtime archives, into one bundle folder with a manifest of sizes and sha256 "
            "digests (checked against the locks). Run it where the network is; then lock "
            "--if-needed, build and publish with --bundle need no network. Running it again "
            "fetches only what is missing."
        ),
        epilog="example:\n  venvstacks fetch --bundle stack-bundle --python-archive-dir ~/pbs venvstacks.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_spec_options(fetch)
    fetch.add_argument("--bundle", required=True, metavar="DIR", help="the bundle folder to fill")
    fetch.add_argument(
        "--platform",
        action="append",
        metavar="PLATFORM",
        choices=["linux_x86_64", "linux_aarch64", "macosx_arm64", "macosx_x86_64", "win_amd64", "win_arm64"],
        help="a platform to fetch for (repeatable; default: this machine's)",
    )
    fetch.add_argument(
        "--python-archive-dir",
        metavar="DIR",
        help="where the runtime archives come from (default: $VENVSTACKS_PYTHON_ARCHIVE_DIR)",
    )
    _add_output_options(fetch, suppress=True)
    fetch.set_defaults(handler=_cmd_fetch)
    for sub in (lock, build, publish):
        sub.add_argument(
            "--bundle",
            metavar="DIR",
            help="use only this bundle (from 'venvstacks fetch'): no index, no downloads",
        )
    return parser


def _add_publish_options(parser: argparse.ArgumentParser, *, default_output: str, archives: bool) -> None:
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
            help="name archives <layer>-<platform>-<build> and metadata files <name>-<platform>",
        )


def _add_spec_options(parser: argparse.ArgumentParser) -> None:
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
        help="only layers whose build name matches this wildcard pattern, plus the layers "
        "they use and the layers that use them (repeatable)",
    )
    parser.add_argument(
        "--allow-missing",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="only warn when an --include or --reset-lock pattern matches no layer",
    )


def _add_lock_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--if-needed",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="lock only layers without a valid lock (others are not passed to uv at all)",
    )
    parser.add_argument(
        "--reset-lock",
        action="append",
        metavar="PATTERN",
        help="discard the existing lock of matching layers and lock them afresh (repeatable)",
    )
    parser.add_argument(
        "--lock-dependencies",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="with --include, also relock the layers underneath (otherwise only if needed)",
    )
    _add_source_options(parser)
    parser.add_argument(
        "--clean",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="unpack the runtimes afresh before locking",
    )


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--index",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="let uv use package indexes (--no-index: only --local-wheels and find-links)",
    )
    parser.add_argument(
        "--local-wheels",
        action="append",
        metavar="DIR",
        help="a folder of wheels for uv to use, relative to the spec's folder (repeatable)",
    )
    parser.add_argument(
        "--python-archive-dir",
        metavar="DIR",
        help="a folder of python-build-standalone runtime archives (default: "
        "$VENVSTACKS_PYTHON_ARCHIVE_DIR, else uv downloads the runtime)",
    )
    parser.add_argument("--uv", metavar="PATH", help="the uv binary to use (default: $VENVSTACKS_UV, then PATH)")


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

    def info(self, message: str) -> None:
        """Detail shown with -v."""
        if self.verbose and not self.quiet:
            self.stderr.write(f"{message}\n")

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

    spec = _load_spec(args.spec_path, out)
    selected = None
    if args.include:
        selected = _selection(spec, args, out, args.include, "--include").build_names
    from .lockstate import check_stack_locks
    from .render import LockState

    checks = check_stack_locks(spec)
    status = stack_status(
        spec,
        selected=selected,
        lock_state=lambda layer: LockState(checks[layer.build_name].valid, checks[layer.build_name].lock_version),
    )
    if args.json:
        out.result(json.dumps(status, indent=2, sort_keys=True) + "\n")
    else:
        out.result(render_tree(status))
    return EXIT_OK


def _spec_relative(spec: StackSpec, value: str) -> Path:
    """A path option resolved from the spec's folder (as upstream does), `~` expanded."""
    import os
    from pathlib import Path

    return Path(os.path.normpath(spec.spec_dir / os.path.expanduser(value)))


def _selection(spec: StackSpec, args: _Args, out: _Output, patterns: list[str] | None, what: str) -> Any:
    from .selection import select_layers

    selection = select_layers(spec, patterns)
    if selection.unmatched_patterns:
        unmatched = ", ".join(repr(p) for p in selection.unmatched_patterns)
        if not args.allow_missing:
            from .errors import VenvStacksError

            msg = f"no layers match {what} {unmatched} (pass --allow-missing to continue without them)"
            raise VenvStacksError(msg)
        out.warning(f"no layers match {what} {unmatched}")
    return selection


def _archive_dir(args: _Args, *, from_bundle: bool = True) -> Path | None:
    import os
    from pathlib import Path

    from .runtimeenv import ARCHIVE_DIR_VARIABLE

    bundle = _bundle_dir(args) if from_bundle else None
    if bundle is not None:
        return bundle / "runtimes"
    archive_dir = args.python_archive_dir or os.environ.get(ARCHIVE_DIR_VARIABLE) or None
    return Path(os.path.abspath(os.path.expanduser(archive_dir))) if archive_dir else None


def _lock_settings(spec: StackSpec, args: _Args) -> Any:
    from .locking import LockSettings, environ_exclude_newer

    return LockSettings(
        build_dir=_spec_relative(spec, args.build_dir),
        archive_dir=_archive_dir(args),
        use_index=args.index,
        local_wheels=tuple(_spec_relative(spec, d) for d in args.local_wheels or ()),
        clean=args.clean,
        exclude_newer=environ_exclude_newer(),
    )


def _uv_finder(args: _Args, out: _Output) -> Any:
    """A function that finds uv the first time it is really needed."""
    from .uv import find_uv

    found: list[Any] = []

    def uv() -> Any:
        if not found:
            found.append(find_uv(args.uv))
            out.info(f"using uv {found[0].version} ({' '.join(found[0].command)})")
        return found[0]

    return uv


def _cmd_build(args: _Args, out: _Output) -> int:
    import os

    from .building import BuildSettings, build_stack
    from .errors import BuildError
    from .locking import lock_stack
    from .lockstate import check_stack_locks
    from .platforms import host_platform

    spec = _load_spec(args.spec_path, out)
    selection = _selection(spec, args, out, args.include, "--include")
    chosen = {layer.build_name for layer in selection.included + selection.dependencies}
    if args.build_derived or not args.include:
        chosen |= {layer.build_name for layer in selection.derived}
    host = host_platform()
    if host is None:
        raise BuildError("this machine is not one of the platforms venvstacks builds for")
    layers = [layer for layer in spec.layers() if layer.build_name in chosen]
    skipped = [layer for layer in layers if host not in layer.platforms]
    layers = [layer for layer in layers if host in layer.platforms]
    for layer in skipped:
        out.warning(f"skipping layer {layer.build_name!r}: it does not target this platform ({host})")
    uv = _uv_finder(args, out)
    if args.lock_if_needed and _bundle_dir(args) is not None:
        checks = check_stack_locks(spec)
        stale = [layer.build_name for layer in layers if not checks[layer.build_name].valid]
        if stale:
            raise BuildError("with --bundle these layers cannot be locked (that needs a package index): " + ", ".join(stale))
    elif args.lock_if_needed:
        lock_stack(spec, {layer.build_name: None for layer in layers}, _lock_settings(spec, args), uv=uv)
    settings = BuildSettings(
        build_dir=_spec_relative(spec, args.build_dir), host=host, archive_dir=_archive_dir(args), clean=args.clean,
        bundle=_bundle_dir(args),
    )
    checks = check_stack_locks(spec)
    outcomes = build_stack(spec, layers, settings, checks, uv=uv)
    if not outcomes:
        out.result("No environments found to build\n")
        return EXIT_OK
    lines = ["Built environments:"]
    lines += [f"  {os.path.relpath(o.path, spec.spec_dir)} [{o.action}]" for o in outcomes]
    if args.publish:
        from .publishing import publish_layers

        published = publish_layers(spec, layers, checks, _publish_settings(spec, args, host))
        lines.append("Published archives:")
        lines += [f"  {os.path.relpath(p.path, spec.spec_dir)} [{p.action}]" for p in published]
    lines.append(f"All paths reported relative to {spec.spec_dir}")
    out.result("\n".join(lines) + "\n")
    return EXIT_OK


def _publish_settings(spec: StackSpec, args: _Args, host: Any) -> Any:
    from .archive import ArchiveFormat, available_formats
    from .errors import VenvStacksError
    from .publishing import PublishSettings

    fmt = ArchiveFormat(getattr(args, "format", "tar.xz"))
    if fmt not in available_formats():
        raise VenvStacksError(f"--format {fmt}: this Python cannot write it (tar.zst needs Python 3.14 or newer)")
    return PublishSettings(
        build_dir=_spec_relative(spec, args.build_dir),
        output_dir=_spec_relative(spec, args.output_dir),
        platform=host,
        fmt=fmt,
        tag_outputs=getattr(args, "tag_outputs", False),
        force=args.force,
        dry_run=args.dry_run,
    )


def _publish_selection(spec: StackSpec, args: _Args, out: _Output) -> tuple[list[Any], Any, Any]:
    from .errors import BuildError
    from .lockstate import check_stack_locks
    from .platforms import host_platform

    selection = _selection(spec, args, out, args.include, "--include")
    chosen = {layer.build_name for layer in (selection.included if args.include else selection.layers)}
    host = host_platform()
    if host is None:
        raise BuildError("this machine is not one of the platforms venvstacks builds for")
    layers = [layer for layer in spec.layers() if layer.build_name in chosen and host in layer.platforms]
    checks = check_stack_locks(spec)
    stale = [f"{layer.build_name} ({'; '.join(checks[layer.build_name].problems)})" for layer in layers if not checks[layer.build_name].valid]
    if stale:
        raise BuildError("these layers have no valid lock (lock and build them first):\n  " + "\n  ".join(stale))
    return layers, checks, host


def _cmd_publish(args: _Args, out: _Output) -> int:
    import os

    from .pubmeta import dump_json
    from .publishing import publish_layers

    spec = _load_spec(args.spec_path, out)
    layers, checks, host = _publish_selection(spec, args, out)
    published = publish_layers(spec, layers, checks, _publish_settings(spec, args, host))
    if args.dry_run:
        out.result(dump_json({"layers": {p.build_name: p.metadata for p in published}}))
        out.result("Archive creation skipped (dry run)\n")
        return EXIT_OK
    lines = ["Published archives:"]
    lines += [f"  {os.path.relpath(p.path, spec.spec_dir)} [{p.action}]" for p in published]
    lines.append(f"All paths reported relative to {spec.spec_dir}")
    out.result("\n".join(lines) + "\n")
    return EXIT_OK


def _cmd_export(args: _Args, out: _Output) -> int:
    import os

    from .pubmeta import dump_json
    from .publishing import export_layers

    spec = _load_spec(args.spec_path, out)
    layers, checks, host = _publish_selection(spec, args, out)
    exported = export_layers(spec, layers, checks, _publish_settings(spec, args, host))
    if args.dry_run:
        out.result(dump_json({"layers": {p.build_name: p.metadata for p in exported}}))
        out.result("Environment export skipped (dry run)\n")
        return EXIT_OK
    lines = ["Exported environments:"]
    lines += [f"  {os.path.relpath(p.path, spec.spec_dir)} [{p.action}]" for p in exported]
    lines.append(f"All paths reported relative to {spec.spec_dir}")
    out.result("\n".join(lines) + "\n")
    return EXIT_OK


def _cmd_fetch(args: _Args, out: _Output) -> int:
    import os
    from pathlib import Path

    from .bundle import fetch_bundle
    from .errors import VenvStacksError
    from .lockstate import check_stack_locks
    from .platforms import TargetPlatform, host_platform

    spec = _load_spec(args.spec_path, out)
    selection = _selection(spec, args, out, args.include, "--include")
    platforms = [TargetPlatform(p) for p in args.platform or [str(host_platform())]]
    layers = [layer for layer in selection.layers if any(p in layer.platforms for p in platforms)]
    checks = check_stack_locks(spec)
    stale = [layer.build_name for layer in layers if not checks[layer.build_name].valid]
    if stale:
        raise VenvStacksError("these layers have no valid lock (run 'venvstacks lock' first): " + ", ".join(stale))
    bundle = Path(os.path.abspath(args.bundle))
    counts = fetch_bundle(spec, layers, bundle, platforms, archive_dir=_archive_dir(args, from_bundle=False))
    out.result(f"Bundle {bundle}: {counts['fetched']} files fetched, {counts['present']} already present\n")
    return EXIT_OK


def _bundle_dir(args: _Args) -> Path | None:
    import os
    from pathlib import Path

    from .bundle import bundle_runtimes

    value = getattr(args, "bundle", None)
    if not value:
        return None
    bundle = Path(os.path.abspath(os.path.expanduser(value)))
    bundle_runtimes(bundle)  # checks that it is one
    return bundle


def _cmd_lock(args: _Args, out: _Output) -> int:
    import os

    from .locking import lock_stack
    from .selection import lock_wants

    spec = _load_spec(args.spec_path, out)
    include = args.include
    if args.reset_lock and not include:
        include = ["*"]
    selection = _selection(spec, args, out, include, "--include")
    wants = lock_wants(spec, selection, if_needed=args.if_needed, lock_dependencies=args.lock_dependencies)
    reset: frozenset[str] = frozenset()
    if args.reset_lock:
        resets = _selection(spec, args, out, args.reset_lock, "--reset-lock")
        reset = frozenset(layer.build_name for layer in resets.included if layer.build_name in wants)
    if _bundle_dir(args) is not None:
        from .errors import LockError
        from .lockstate import check_stack_locks

        checks = check_stack_locks(spec)
        stale = [name for name, want in wants.items() if want is not None or not checks[name].valid]
        if stale or reset:
            raise LockError(
                "with --bundle, locking can only confirm valid locks (pass --if-needed); these layers "
                "would need a package index: " + ", ".join(sorted(set(stale) | reset))
            )
    settings = _lock_settings(spec, args)
    outcomes = lock_stack(spec, wants, settings, uv=_uv_finder(args, out), reset=reset)
    if not outcomes:
        out.result("No environments found to lock\n")
        return EXIT_OK
    lines = ["Locked environments:"]
    for outcome in outcomes:
        where = os.path.relpath(outcome.pylock, spec.spec_dir)
        lines.append(f"  {where} (locked at: {outcome.locked_at}) [{outcome.action}]")
    lines.append(f"All paths reported relative to {spec.spec_dir}")
    out.result("\n".join(lines) + "\n")
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


def _setup_logging(out: _Output) -> None:
    import logging

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage()
            if record.levelno >= logging.ERROR:
                out.error(message)
            elif record.levelno >= logging.WARNING:
                out.warning(message)
            else:
                out.info(message)

    logger = logging.getLogger("venvstacks")
    logger.handlers[:] = [Handler()]
    logger.propagate = False
    if out.quiet:
        logger.setLevel(logging.ERROR)
    elif out.verbose >= 2:
        logger.setLevel(logging.DEBUG)
    elif out.verbose:
        logger.setLevel(logging.INFO)
    else:
        logger.setLevel(logging.WARNING)


def _run(args: _Args, out: _Output) -> int:
    from .errors import VenvStacksError

    _setup_logging(out)

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
