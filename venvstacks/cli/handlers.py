"""The command handlers: each turns parsed options into one library call and renders its result.

The parser (`parser.py`) attaches each command's handler to its subparser;
`main.py` calls it with the parsed options and the `Output` that is the only
way anything reaches the terminal. What to select, lock, build or refuse is
decided in the library; a handler only translates options into settings and
results into text or a `--json` document. Library modules are imported
inside the handlers, so a command loads only what it uses.
"""

from __future__ import annotations

from .args import Args
from .output import EXIT_FAILURE, EXIT_OK, Output

# Importing `typing` costs a few milliseconds of the start-up budget that
# `--help` and `--version` must meet, and only type checkers need it here.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

    from ..build.plan import LayerPlan
    from ..lock.locker import LockSettings
    from ..lock.state import LockCheck
    from ..platforms import TargetPlatform
    from ..publish.publisher import PublishedLayer, PublishSettings
    from ..spec.model import LayerSpec, StackSpec
    from ..spec.selection import Selection
    from ..uv import Uv
    from .documents import BuildDocument, LockDocument, PublishDocument, StackStatus
    from .render import LockState

__all__ = ["cmd_show", "cmd_lock", "cmd_build", "cmd_publish", "cmd_export", "cmd_fetch", "cmd_deploy", "cmd_verify"]


def _load_spec(spec_path: str, out: Output) -> StackSpec:
    from ..spec.load import load_spec

    spec = load_spec(spec_path)
    for warning in spec.warnings:
        out.warning(warning)
    return spec


def _select(spec: StackSpec, args: Args, out: Output, patterns: Sequence[str] | None, option: str = "--include") -> Selection:
    """The layers `patterns` pick; unmatched patterns are an error, or with --allow-missing a warning."""
    from ..spec.selection import choose_layers

    selection = choose_layers(spec, patterns, option=option, allow_missing=args.allow_missing)
    if selection.unmatched_patterns:
        out.warning(f"no layers match {option} {', '.join(repr(p) for p in selection.unmatched_patterns)}")
    return selection


def _lock_states(spec: StackSpec, checks: Mapping[str, LockCheck] | None = None) -> Callable[[LayerSpec], LockState]:
    """Each layer's lock state for `show`, from `checks` if the command has them already."""
    from ..lock.state import check_stack_locks
    from .render import LockState

    checks = check_stack_locks(spec) if checks is None else checks
    return lambda layer: LockState(checks[layer.build_name].valid, checks[layer.build_name].lock_version)


def _show_plan(
    spec: StackSpec, args: Args, out: Output, operations: dict[str, list[str]], checks: Mapping[str, LockCheck] | None = None
) -> tuple[bool, StackStatus | None]:
    """With --show or --show-only, show the selected layers and their operations.

    Returns whether the command stops here (--show-only), and the plan to put
    in the JSON result (for --show --json).
    """
    from ..fsutil import dump_json
    from .render import render_tree, stack_status

    if not (args.show or args.show_only):
        return False, None
    status = stack_status(spec, selected=set(operations), lock_state=_lock_states(spec, checks), operations=operations)
    if not args.json:
        out.result(render_tree(status))
    elif args.show_only:
        out.result(dump_json(status))
    return args.show_only, status


def _emit(out: Output, text: str, document: Mapping[str, object], plan: StackStatus | None = None) -> None:
    """The result: `text` for people, or with --json the `document` (with the --show plan as `plan`)."""
    from ..fsutil import dump_json

    if not out.json:
        out.result(text)
    else:
        out.result(dump_json(document if plan is None else {**document, "plan": plan}))


def _report(spec: StackSpec, *sections: tuple[str, Sequence[tuple[Path, str]]]) -> str:
    """Result lines: under each title, each path relative to the spec's folder, then what happened to it."""
    import os

    lines = []
    for title, entries in sections:
        lines += [title, *(f"  {os.path.relpath(path, spec.spec_dir)} {what}" for path, what in entries)]
    lines.append(f"All paths reported relative to {spec.spec_dir}")
    return "\n".join(lines) + "\n"


def _spec_relative(spec: StackSpec, value: str) -> Path:
    """A path option resolved from the spec's folder (as upstream does), `~` expanded."""
    import os
    from pathlib import Path

    return Path(os.path.normpath(spec.spec_dir / os.path.expanduser(value)))


def _bundle_dir(args: Args) -> Path | None:
    """The `--bundle` folder, checked to be one; None without the option."""
    import os
    from pathlib import Path

    from ..build.bundle import bundle_runtimes

    if not args.bundle:
        return None
    bundle = Path(os.path.abspath(os.path.expanduser(args.bundle)))
    bundle_runtimes(bundle)
    return bundle


def _archive_dir(args: Args, bundle: Path | None) -> Path | None:
    """Where runtime archives are: the `bundle`'s, `--python-archive-dir`, or the environment's setting."""
    import os
    from pathlib import Path

    from ..runtimes.unpack import ARCHIVE_DIR_VARIABLE

    if bundle is not None:
        return bundle / "runtimes"
    archive_dir = args.python_archive_dir or os.environ.get(ARCHIVE_DIR_VARIABLE) or None
    return Path(os.path.abspath(os.path.expanduser(archive_dir))) if archive_dir else None


def _lock_settings(spec: StackSpec, args: Args, bundle: Path | None) -> LockSettings:
    from ..lock.locker import LockSettings, environ_exclude_newer

    return LockSettings(
        build_dir=_spec_relative(spec, args.build_dir),
        archive_dir=_archive_dir(args, bundle),
        use_index=args.index,
        local_wheels=tuple(_spec_relative(spec, d) for d in args.local_wheels or ()),
        clean=args.clean,
        exclude_newer=environ_exclude_newer(),
    )


def _uv_finder(args: Args, out: Output) -> Callable[[], Uv]:
    """A function that finds uv the first time it is really needed."""
    from ..uv import find_uv

    found: list[Uv] = []

    def uv() -> Uv:
        if not found:
            found.append(find_uv(args.uv))
            out.info(f"using uv {found[0].version} ({' '.join(found[0].command)})")
        return found[0]

    return uv


def cmd_show(args: Args, out: Output) -> int:
    """`show`: the stack's layers, as a tree or JSON."""
    from ..fsutil import dump_json
    from .render import render_tree, stack_status

    spec = _load_spec(args.spec_path, out)
    selected = _select(spec, args, out, args.include).build_names if args.include else None
    status = stack_status(spec, selected=selected, lock_state=_lock_states(spec))
    out.result(dump_json(status) if args.json else render_tree(status))
    return EXIT_OK


def cmd_lock(args: Args, out: Output) -> int:
    """`lock`: resolve the selected layers with uv."""
    from ..lock.locker import lock_stack
    from ..lock.state import require_no_relocking
    from ..spec.selection import lock_wants

    spec = _load_spec(args.spec_path, out)
    selection = _select(spec, args, out, args.include or (["*"] if args.reset_lock else None))
    wants = lock_wants(spec, selection, if_needed=args.if_needed, lock_dependencies=args.lock_dependencies)
    reset: frozenset[str] = frozenset()
    if args.reset_lock:
        resets = _select(spec, args, out, args.reset_lock, "--reset-lock").included
        reset = frozenset(layer.build_name for layer in resets if layer.build_name in wants)
    bundle = _bundle_dir(args)
    if bundle is not None:
        lead = "with --bundle, locking can only confirm valid locks (pass --if-needed); these layers would need a package index"
        require_no_relocking(spec, wants, reset, lead=lead)
    operations = {name: ["reset-lock"] * (name in reset) + ["lock-if-needed" if want is None else "lock"] for name, want in wants.items()}
    stop, plan = _show_plan(spec, args, out, operations)
    if stop:
        return EXIT_OK
    outcomes = lock_stack(spec, wants, _lock_settings(spec, args, bundle), uv=_uv_finder(args, out), reset=reset)
    document: LockDocument = {
        "command": "lock", "spec_path": str(spec.spec_path),
        "layers": [
            {"name": o.build_name, "action": o.action, "lock_file": str(o.pylock), "locked_at": o.locked_at, "lock_version": o.lock_version}
            for o in outcomes
        ],
    }  # fmt: skip
    if not outcomes:
        _emit(out, "No environments found to lock\n", document, plan)
        return EXIT_OK
    entries = [(o.pylock, f"(locked at: {o.locked_at}) [{o.action}]") for o in outcomes]
    _emit(out, _report(spec, ("Locked environments:", entries)), document, plan)
    return EXIT_OK


def cmd_build(args: Args, out: Output) -> int:
    """`build`: the selected layers built (locked first if asked), and published if asked."""
    from ..build.builder import BuildSettings, build_stack
    from ..build.plan import plan_build
    from ..lock.locker import ensure_locked
    from ..lock.state import check_stack_locks

    spec = _load_spec(args.spec_path, out)
    plan = plan_build(spec, _select(spec, args, out, args.include), build_derived=args.build_derived)
    for layer in plan.skipped:
        out.warning(f"skipping layer {layer.build_name!r}: it does not target this platform ({plan.host})")
    steps = ["lock-if-needed"] * args.lock_if_needed + ["build" if args.clean else "build-if-needed"] + ["publish"] * args.publish
    stop, shown = _show_plan(spec, args, out, {layer.build_name: steps for layer in plan.layers})
    if stop:
        return EXIT_OK
    uv, bundle, layers = _uv_finder(args, out), _bundle_dir(args), list(plan.layers)
    publish_settings = _publish_settings(spec, args, plan.host) if args.publish else None  # checked before building
    if args.lock_if_needed:
        checks = ensure_locked(spec, layers, _lock_settings(spec, args, bundle), uv=uv, offline=bundle is not None)
    else:
        checks = check_stack_locks(spec)
    settings = BuildSettings(
        build_dir=_spec_relative(spec, args.build_dir), host=plan.host, archive_dir=_archive_dir(args, bundle), clean=args.clean,
        bundle=bundle, jobs=args.jobs,
    )  # fmt: skip
    outcomes = build_stack(spec, layers, settings, checks, uv=uv)
    document: BuildDocument = {
        "command": "build", "spec_path": str(spec.spec_path),
        "layers": [{"name": o.build_name, "path": str(o.path), "action": o.action} for o in outcomes],
    }  # fmt: skip
    if not outcomes:
        _emit(out, "No environments found to build\n", document, shown)
        return EXIT_OK
    sections = [("Built environments:", [(o.path, f"[{o.action}]") for o in outcomes])]
    if publish_settings is not None:
        from ..publish.publisher import publish_layers

        published = publish_layers(spec, layers, checks, publish_settings)
        document["published"] = _published_document(spec, "publish", publish_settings, published)
        sections.append(("Published archives:", [(p.path, f"[{p.action}]") for p in published]))
    _emit(out, _report(spec, *sections), document, shown)
    return EXIT_OK


def _publish_settings(spec: StackSpec, args: Args, host: TargetPlatform) -> PublishSettings:
    """Publish or local-export settings from the options (checked when made)."""
    from ..publish.archive import ArchiveFormat
    from ..publish.publisher import PublishSettings

    return PublishSettings(
        build_dir=_spec_relative(spec, args.build_dir),
        output_dir=_spec_relative(spec, args.output_dir),
        platform=host,
        fmt=ArchiveFormat(getattr(args, "format", "tar.xz")),
        tag_outputs=getattr(args, "tag_outputs", False),
        force=args.force,
        dry_run=args.dry_run,
        precompile=args.precompile,
        jobs=getattr(args, "jobs", None),
        level=getattr(args, "compression_level", None),
    )


def _published_document(spec: StackSpec, command: str, settings: PublishSettings, results: Sequence[PublishedLayer]) -> PublishDocument:
    """The JSON result of publish or local-export: each layer's path, action and metadata, and the stack's metadata file."""
    from ..publish.publisher import stack_metadata_path

    return {
        "command": command, "spec_path": str(spec.spec_path), "output_dir": str(settings.output_dir),
        "dry_run": settings.dry_run,
        "manifest": None if settings.dry_run else str(stack_metadata_path(settings, export=command == "local-export")),
        "layers": [{"name": p.build_name, "path": str(p.path), "action": p.action, "metadata": p.metadata} for p in results],
    }  # fmt: skip


def _publish_or_export(args: Args, out: Output, *, export: bool) -> int:
    from ..fsutil import dump_json
    from ..build.plan import plan_publish
    from ..lock.state import require_valid_locks
    from ..publish.publisher import export_layers, publish_layers

    spec = _load_spec(args.spec_path, out)
    plan: LayerPlan = plan_publish(spec, _select(spec, args, out, args.include))
    layers = list(plan.layers)
    checks = require_valid_locks(spec, layers, lead="these layers have no valid lock (lock and build them first)")
    stop, shown = _show_plan(spec, args, out, {layer.build_name: ["export" if export else "publish"] for layer in layers}, checks)
    if stop:
        return EXIT_OK
    settings = _publish_settings(spec, args, plan.host)
    results = (export_layers if export else publish_layers)(spec, layers, checks, settings)
    document = _published_document(spec, "local-export" if export else "publish", settings, results)
    if args.dry_run:
        text = dump_json({"layers": {p.build_name: p.metadata for p in results}})
        _emit(out, text + ("Environment export" if export else "Archive creation") + " skipped (dry run)\n", document, shown)
        return EXIT_OK
    title = "Exported environments:" if export else "Published archives:"
    _emit(out, _report(spec, (title, [(p.path, f"[{p.action}]") for p in results])), document, shown)
    return EXIT_OK


def cmd_publish(args: Args, out: Output) -> int:
    """`publish`: reproducible archives of built layers, with metadata."""
    return _publish_or_export(args, out, export=False)


def cmd_export(args: Args, out: Output) -> int:
    """`local-export`: built layers copied out as if unpacked, post-install run."""
    return _publish_or_export(args, out, export=True)


def cmd_fetch(args: Args, out: Output) -> int:
    """`fetch`: everything the selected layers need, downloaded into a bundle."""
    import os
    from pathlib import Path

    from ..build.bundle import fetch_bundle
    from ..lock.state import require_valid_locks
    from ..platforms import TargetPlatform, host_platform

    spec = _load_spec(args.spec_path, out)
    selection = _select(spec, args, out, args.include)
    platforms = [TargetPlatform(p) for p in args.platform or [str(host_platform())]]
    layers = [layer for layer in selection.layers if any(p in layer.platforms for p in platforms)]
    require_valid_locks(spec, layers)
    assert args.bundle is not None  # `fetch` requires --bundle
    bundle = Path(os.path.abspath(args.bundle))
    counts = fetch_bundle(spec, layers, bundle, platforms, archive_dir=_archive_dir(args, None))
    out.result(f"Bundle {bundle}: {counts['fetched']} files fetched, {counts['present']} already present\n")
    return EXIT_OK


def cmd_deploy(args: Args, out: Output) -> int:
    """`deploy`: verified, safe, atomic installation of published layers."""
    import os
    from pathlib import Path

    from ..deploy.deployer import deploy
    from .documents import DeployDocument

    target = Path(os.path.abspath(os.path.expanduser(args.target)))
    deployed = deploy(Path(args.artifacts_dir), target, include=args.include or (), platform_manifest=args.manifest, jobs=args.jobs)
    lines = [f"Deployed layers in {target}:", *(f"  {layer.install_target} [{layer.action}]" for layer in deployed)]
    document: DeployDocument = {
        "command": "deploy", "artifacts_dir": os.path.abspath(args.artifacts_dir), "target": str(target),
        "layers": [
            {"name": layer.layer_name, "install_target": layer.install_target, "path": str(layer.path), "action": layer.action}
            for layer in deployed
        ],
    }  # fmt: skip
    _emit(out, "\n".join(lines) + "\n", document)
    return EXIT_OK


def cmd_verify(args: Args, out: Output) -> int:
    """`verify`: a deployed stack checked against what was deployed."""
    from pathlib import Path

    from ..deploy.verify import verify

    problems = verify(Path(args.deployment), metadata=None if args.metadata is None else Path(args.metadata), jobs=args.jobs)
    for problem in problems:
        out.error(problem)
    if problems:
        return EXIT_FAILURE
    out.result(f"{args.deployment}: every deployed layer matches what was deployed or shipped\n")
    return EXIT_OK
