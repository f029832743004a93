"""The command line's parser: one subparser per command, its options and their help.

Each subparser carries its command's handler (`handlers.py`), which `main`
calls. Parsing imports nothing of the package outside `cli/` (the handlers
import the library when they run), so that `--help` and `--version` start fast.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from . import handlers
from .options import (
    add_jobs_option,
    add_lock_options,
    add_output_options,
    add_publish_options,
    add_report_options,
    add_source_options,
    add_allow_missing_option,
    add_spec_options,
)
from .output import EXIT_USAGE, PROG

# Importing `typing` costs a few milliseconds of the start-up budget that
# `--help` and `--version` must meet, and only type checkers need it here.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

__all__ = ["build_parser"]

_DESCRIPTION = "Lock, build and publish layered Python environment stacks."
_EPILOG = """\
Runtime layers hold a relocatable Python; framework layers hold big shared
packages; application layers hold an app and its launch module. All of them
are described in one stack specification (usually venvstacks.toml).

example:
  venvstacks show venvstacks.toml
"""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help with descriptions as written and `--[no-]x` for on/off options, so each option's help fits one line."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if isinstance(action, argparse.BooleanOptionalAction):
            return "--[no-]" + action.option_strings[0].removeprefix("--")
        return super()._format_action_invocation(action)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors name the tool and exit with status 2."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> _Parser:
    """The whole command line: global options, then one subparser per command (`_add_<command>`)."""
    parser = _Parser(
        prog=PROG,
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "-V", "--version", action="version", version=f"{PROG}: {__version__}", help="show the version and exit"
    )
    add_output_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    spec_options = _Parser(add_help=False)  # the parent of every command that reads a spec
    add_spec_options(spec_options)
    _add_show(commands, spec_options)
    lock, build, publish = _add_lock(commands, spec_options), _add_build(commands, spec_options), _add_publish(commands, spec_options)
    _add_export(commands, spec_options)
    _add_fetch(commands, spec_options)
    _add_deploy(commands)
    _add_verify(commands)
    for sub in (lock, build, publish):
        sub.add_argument(
            "--bundle",
            metavar="DIR",
            help="accepted and ignored: publishing downloads nothing" if sub is publish else "use only this bundle from 'fetch': no index, no downloads",
        )
    return parser


def _add_show(commands: argparse._SubParsersAction[_Parser], spec_options: _Parser) -> _Parser:
    """The `show` command."""
    show = commands.add_parser(
        "show",
        parents=[spec_options],
        help="show the layers of a stack and what each one builds on",
        description=(
            "Show the runtimes, frameworks and applications of a stack specification, each "
            "layered environment followed by the layers it uses in sys.path order. A leading "
            "'*' marks a layer without a valid lock."
        ),
        epilog="examples:\n  venvstacks show venvstacks.toml\n  venvstacks show --include 'app-*' --json venvstacks.toml",
        formatter_class=_HelpFormatter,
    )
    add_allow_missing_option(show)
    show.add_argument(
        "--json",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="print the stack as JSON instead of a tree",
    )
    add_output_options(show, suppress=True)
    show.set_defaults(handler=handlers.cmd_show)
    return show


def _add_lock(commands: argparse._SubParsersAction[_Parser], spec_options: _Parser) -> _Parser:
    """The `lock` command."""
    lock = commands.add_parser(
        "lock",
        parents=[spec_options],
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
        formatter_class=_HelpFormatter,
    )
    add_allow_missing_option(lock, reset_lock=True)
    add_lock_options(lock)
    add_report_options(lock)
    add_output_options(lock, suppress=True)
    lock.set_defaults(handler=handlers.cmd_lock)
    return lock


def _add_build(commands: argparse._SubParsersAction[_Parser], spec_options: _Parser) -> _Parser:
    """The `build` command."""
    build = commands.add_parser(
        "build",
        parents=[spec_options],
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
        formatter_class=_HelpFormatter,
    )
    add_allow_missing_option(build)
    build.add_argument(
        "--lock-if-needed",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="first lock the layers without a valid lock (else: an error)",
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
        help="rebuild the selected layers from scratch, runtimes included",
    )
    add_source_options(build)
    add_output_options(build, suppress=True)
    build.add_argument(
        "--publish",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="publish the built layers as archives too (see 'publish')",
    )
    add_publish_options(build, default_output="_artifacts", archives=True)
    add_jobs_option(build, "build or compress")
    add_report_options(build)
    build.set_defaults(handler=handlers.cmd_build, if_needed=True, reset_lock=None, lock_dependencies=False, dry_run=False)
    return build


def _add_publish(commands: argparse._SubParsersAction[_Parser], spec_options: _Parser) -> _Parser:
    """The `publish` command."""
    publish = commands.add_parser(
        "publish",
        parents=[spec_options],
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
        formatter_class=_HelpFormatter,
    )
    add_allow_missing_option(publish)
    add_publish_options(publish, default_output="_artifacts", archives=True)
    add_jobs_option(publish, "compress")
    publish.add_argument(
        "--dry-run",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="show the metadata that would be published, without writing anything",
    )
    add_report_options(publish)
    add_output_options(publish, suppress=True)
    publish.set_defaults(handler=handlers.cmd_publish)
    return publish


def _add_export(commands: argparse._SubParsersAction[_Parser], spec_options: _Parser) -> _Parser:
    """The `local-export` command."""
    export = commands.add_parser(
        "local-export",
        parents=[spec_options],
        help="export built layers to a folder as if published and unpacked",
        description=(
            "Copy each built layer to <output dir>/<deployed name> (hard links where possible), "
            "exactly as its archive would unpack, run its post-install step, and write the same "
            "metadata as publish without the archive fields."
        ),
        epilog="example:\n  venvstacks local-export --output-dir demo_export venvstacks.toml",
        formatter_class=_HelpFormatter,
    )
    add_allow_missing_option(export)
    add_publish_options(export, default_output="_export", archives=False)
    export.add_argument(
        "--dry-run",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="show what would be exported, without writing anything",
    )
    add_report_options(export)
    add_output_options(export, suppress=True)
    export.set_defaults(handler=handlers.cmd_export)
    return export


def _add_fetch(commands: argparse._SubParsersAction[_Parser], spec_options: _Parser) -> _Parser:
    """The `fetch` command."""
    fetch = commands.add_parser(
        "fetch",
        parents=[spec_options],
        help="put everything building the locked stack needs into a bundle folder",
        description=(
            "Download every wheel named in the layers' locks for the chosen platforms, and copy "
            "the runtime archives, into one bundle folder with a manifest of sizes and sha256 "
            "digests (checked against the locks). Run it where the network is; then lock "
            "--if-needed, build and publish with --bundle need no network. Running it again "
            "fetches only what is missing."
        ),
        epilog="example:\n  venvstacks fetch --bundle stack-bundle --python-archive-dir ~/pbs venvstacks.toml",
        formatter_class=_HelpFormatter,
    )
    add_allow_missing_option(fetch)
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
        help="folder of runtime archives (default: $VENVSTACKS_PYTHON_ARCHIVE_DIR)",
    )
    add_output_options(fetch, suppress=True)
    fetch.set_defaults(handler=handlers.cmd_fetch)
    return fetch


def _add_deploy(commands: argparse._SubParsersAction[_Parser]) -> _Parser:
    """The `deploy` command."""
    deploy = commands.add_parser(
        "deploy",
        help="verify published archives and install them side by side in a folder",
        description=(
            "Read the published metadata in ARTIFACTS_DIR, check each archive's size and sha256 "
            "before unpacking it, unpack the layers safely side by side into the target folder, "
            "relink them with their post-install steps, run by the right runtime, and print what "
            "is installed. Running it again changes nothing; a new archive build of a layer "
            "replaces just that layer. All or nothing: on any failure the target stays as it was."
        ),
        epilog="example:\n  venvstacks deploy _artifacts --target /opt/stacks",
        formatter_class=_HelpFormatter,
    )
    deploy.add_argument("artifacts_dir", metavar="ARTIFACTS_DIR", help="a folder written by 'venvstacks publish'")
    deploy.add_argument("--target", required=True, metavar="DIR", help="the folder to deploy the layers into")
    deploy.add_argument(
        "--include",
        action="append",
        metavar="PATTERN",
        help="layers matching this wildcard, and the layers they need (repeatable)",
    )
    deploy.add_argument(
        "--manifest",
        metavar="NAME",
        help="the stack manifest, when there are several (venvstacks-<platform>.json)",
    )
    add_jobs_option(deploy, "unpack and compile")
    add_report_options(deploy, show=False)
    add_output_options(deploy, suppress=True)
    deploy.set_defaults(handler=handlers.cmd_deploy)
    return deploy


def _add_verify(commands: argparse._SubParsersAction[_Parser]) -> _Parser:
    """The `verify` command."""
    verify = commands.add_parser(
        "verify",
        help="check a deployed stack against what was deployed or shipped",
        description=(
            "Check every layer deployed in DIR: missing, modified or added files, layers whose required "
            "layers are absent, and broken links between layers. Layers 'venvstacks deploy' installed are "
            "checked against its records; others (unpacked by any installer and relinked by their "
            "postinstall.py) against the manifest each layer ships. Exits 1 and names each problem."
        ),
        epilog="examples:\n  venvstacks verify /opt/stacks\n  venvstacks verify /opt/stacks --metadata venvstacks.json",
        formatter_class=_HelpFormatter,
    )
    verify.add_argument("deployment", metavar="DIR", help="a deployment folder (or one layer folder)")
    verify.add_argument(
        "--metadata",
        metavar="FILE",
        help="published venvstacks.json: each layer it lists must be here with its manifest",
    )
    add_jobs_option(verify, "hash")
    add_output_options(verify, suppress=True)
    verify.set_defaults(handler=handlers.cmd_verify)
    return verify
