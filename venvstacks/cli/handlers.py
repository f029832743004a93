"""The command handlers: each turns parsed options into calls on the library.

`main.py` parses the command line (with `parser.py`) and picks a handler by name; a handler
returns the exit status and reports through the `Output` it is given (the
only way anything reaches the terminal). Library modules are imported inside
the handlers, so a command loads only what it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .args import Args
from .output import EXIT_FAILURE, EXIT_OK, Output

if TYPE_CHECKING:
    from pathlib import Path

    from ..spec.model import StackSpec


def _load_spec(spec_path: str, out: Output) -> StackSpec:
    from ..spec.load import load_spec

    spec = load_spec(spec_path)
    for warning in spec.warnings:
        out.warning(warning)
    return spec


def _lock_states(spec: StackSpec) -> Any:
    from ..cli.render import LockState
    from ..lock.state import check_stack_locks

    checks = check_stack_locks(spec)
    return lambda layer: LockState(checks[layer.build_name].valid, checks[layer.build_name].lock_version)


def _show_plan(spec: StackSpec, args: Args, out: Output, operations: dict[str, list[str]]) -> tuple[bool, Any]:
    """With --show or --show-only, show the selected layers and their operations.

    Returns whether the command stops here (--show-only), and the plan to put
    in the JSON result (for --show --json).
    """
    from ..cli.render import render_tree, stack_status
    from ..fsutil import dump_json

    if not (args.show or args.show_only):
        return False, None
    status = stack_status(spec, selected=set(operations), lock_state=_lock_states(spec), operations=operations)
    if not args.json:
        out.result(render_tree(status))
    elif args.show_only:
        out.result(dump_json(status))
    return args.show_only, status


def _emit(out: Output, text: str, document: dict[str, Any], plan: Any = None) -> None:
    """The result: `text` for people, or with --json the `document` (plus the --show plan)."""
    from ..fsutil import dump_json

    if not out.json:
        out.result(text)
        return
    if plan is not None:
        document = {**document, "plan": plan}
    out.result(dump_json(document))


def cmd_show(args: Args, out: Output) -> int:
    from ..cli.render import render_tree, stack_status
    from ..fsutil import dump_json

    spec = _load_spec(args.spec_path, out)
    selected = None
    if args.include:
        selected = _selection(spec, args, out, args.include, "--include").build_names
    status = stack_status(spec, selected=selected, lock_state=_lock_states(spec))
    if args.json:
        out.result(dump_json(status))
    else:
        out.result(render_tree(status))
    return EXIT_OK


def _spec_relative(spec: StackSpec, value: str) -> Path:
    """A path option resolved from the spec's folder (as upstream does), `~` expanded."""
    import os
    from pathlib import Path

    return Path(os.path.normpath(spec.spec_dir / os.path.expanduser(value)))


def _selection(spec: StackSpec, args: Args, out: Output, patterns: list[str] | None, what: str) -> Any:
    from ..spec.selection import select_layers

    selection = select_layers(spec, patterns)
    if selection.unmatched_patterns:
        unmatched = ", ".join(repr(p) for p in selection.unmatched_patterns)
        if not args.allow_missing:
            from ..errors import VenvStacksError

            msg = f"no layers match {what} {unmatched} (pass --allow-missing to continue without them)"
            raise VenvStacksError(msg)
        out.warning(f"no layers match {what} {unmatched}")
    return selection


def _archive_dir(args: Args, *, from_bundle: bool = True) -> Path | None:
    import os
    from pathlib import Path

    from ..runtimes.unpack import ARCHIVE_DIR_VARIABLE

    bundle = _bundle_dir(args) if from_bundle else None
    if bundle is not None:
        return bundle / "runtimes"
    archive_dir = args.python_archive_dir or os.environ.get(ARCHIVE_DIR_VARIABLE) or None
    return Path(os.path.abspath(os.path.expanduser(archive_dir))) if archive_dir else None


def _lock_settings(spec: StackSpec, args: Args) -> Any:
    from ..lock.locker import LockSettings, environ_exclude_newer

    return LockSettings(
        build_dir=_spec_relative(spec, args.build_dir),
        archive_dir=_archive_dir(args),
        use_index=args.index,
        local_wheels=tuple(_spec_relative(spec, d) for d in args.local_wheels or ()),
        clean=args.clean,
        exclude_newer=environ_exclude_newer(),
    )


def _uv_finder(args: Args, out: Output) -> Any:
    """A function that finds uv the first time it is really needed."""
    from ..uv import find_uv

    found: list[Any] = []

    def uv() -> Any:
        if not found:
            found.append(find_uv(args.uv))
            out.info(f"using uv {found[0].version} ({' '.join(found[0].command)})")
        return found[0]

    return uv


def cmd_build(args: Args, out: Output) -> int:
    import os

    from ..build.builder import BuildSettings, build_stack
    from ..errors import BuildError
    from ..lock.locker import lock_stack
    from ..lock.state import check_stack_locks
    from ..platforms import host_platform

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
    steps = ["lock-if-needed"] * args.lock_if_needed + ["build" if args.clean else "build-if-needed"] + ["publish"] * args.publish
    stop, plan = _show_plan(spec, args, out, {layer.build_name: steps for layer in layers})
    if stop:
        return EXIT_OK
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
        bundle=_bundle_dir(args), jobs=args.jobs,
    )
    checks = check_stack_locks(spec)
    outcomes = build_stack(spec, layers, settings, checks, uv=uv)
    document: dict[str, Any] = {
        "command": "build", "spec_path": str(spec.spec_path),
        "layers": [{"name": o.build_name, "path": str(o.path), "action": o.action} for o in outcomes],
    }  # fmt: skip
    if not outcomes:
        _emit(out, "No environments found to build\n", document, plan)
        return EXIT_OK
    lines = ["Built environments:"]
    lines += [f"  {os.path.relpath(o.path, spec.spec_dir)} [{o.action}]" for o in outcomes]
    if args.publish:
        from ..publish.publisher import publish_layers

        settings = _publish_settings(spec, args, host)
        published = publish_layers(spec, layers, checks, settings)
        document["published"] = _published_document(spec, "publish", settings, published)
        lines.append("Published archives:")
        lines += [f"  {os.path.relpath(p.path, spec.spec_dir)} [{p.action}]" for p in published]
    lines.append(f"All paths reported relative to {spec.spec_dir}")
    _emit(out, "\n".join(lines) + "\n", document, plan)
    return EXIT_OK


def _publish_settings(spec: StackSpec, args: Args, host: Any) -> Any:
    from ..errors import VenvStacksError
    from ..publish.archive import ArchiveFormat, available_formats
    from ..publish.publisher import PublishSettings

    fmt = ArchiveFormat(getattr(args, "format", "tar.xz"))
    if fmt not in available_formats():
        raise VenvStacksError(f"--format {fmt}: this Python cannot write it (tar.zst needs Python 3.14 or newer)")
    level = getattr(args, "compression_level", None)
    if level is not None and level not in fmt.levels:
        raise VenvStacksError(f"--compression-level {level}: {fmt} takes {fmt.levels.start} to {fmt.levels.stop - 1}")
    return PublishSettings(
        build_dir=_spec_relative(spec, args.build_dir),
        output_dir=_spec_relative(spec, args.output_dir),
        platform=host,
        fmt=fmt,
        tag_outputs=getattr(args, "tag_outputs", False),
        force=args.force,
        dry_run=args.dry_run,
        precompile=args.precompile,
        jobs=getattr(args, "jobs", None),
        level=level,
    )


def _publish_selection(spec: StackSpec, args: Args, out: Output) -> tuple[list[Any], Any, Any]:
    from ..errors import BuildError
    from ..lock.state import check_stack_locks
    from ..platforms import host_platform

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


def _report(spec: StackSpec, title: str, entries: list[tuple[Path, str]]) -> str:
    """Result lines: what happened to each path, relative to the spec's folder."""
    import os

    lines = [title, *(f"  {os.path.relpath(path, spec.spec_dir)} [{action}]" for path, action in entries)]
    lines.append(f"All paths reported relative to {spec.spec_dir}")
    return "\n".join(lines) + "\n"


def _published_document(spec: StackSpec, command: str, settings: Any, results: list[Any]) -> dict[str, Any]:
    """The JSON result of publish or local-export: each layer's path, action and metadata, and the manifest."""
    from ..publish.metadata import METADATA_DIR, manifest_file_name

    if command == "local-export":
        manifest = settings.output_dir / METADATA_DIR / "venvstacks.json"
    else:
        manifest = settings.output_dir / METADATA_DIR / manifest_file_name(settings.platform, tagged=settings.tag_outputs)
    return {
        "command": command, "spec_path": str(spec.spec_path), "output_dir": str(settings.output_dir),
        "dry_run": settings.dry_run, "manifest": None if settings.dry_run else str(manifest),
        "layers": [{"name": p.build_name, "path": str(p.path), "action": p.action, "metadata": p.metadata} for p in results],
    }  # fmt: skip


def _publish_or_export(args: Args, out: Output, *, export: bool) -> int:
    from ..fsutil import dump_json
    from ..publish.publisher import export_layers, publish_layers

    spec = _load_spec(args.spec_path, out)
    layers, checks, host = _publish_selection(spec, args, out)
    stop, plan = _show_plan(spec, args, out, {layer.build_name: ["export" if export else "publish"] for layer in layers})
    if stop:
        return EXIT_OK
    run = export_layers if export else publish_layers
    settings = _publish_settings(spec, args, host)
    results = run(spec, layers, checks, settings)
    document = _published_document(spec, "local-export" if export else "publish", settings, results)
    if args.dry_run:
        text = dump_json({"layers": {p.build_name: p.metadata for p in results}})
        _emit(out, text + ("Environment export" if export else "Archive creation") + " skipped (dry run)\n", document, plan)
        return EXIT_OK
    title = "Exported environments:" if export else "Published archives:"
    _emit(out, _report(spec, title, [(p.path, p.action) for p in results]), document, plan)
    return EXIT_OK


def cmd_publish(args: Args, out: Output) -> int:
    """`publish`: reproducible archives of built layers, with metadata."""
    return _publish_or_export(args, out, export=False)


def cmd_export(args: Args, out: Output) -> int:
    """`local-export`: built layers copied out as if unpacked, post-install run."""
    return _publish_or_export(args, out, export=True)


def cmd_fetch(args: Args, out: Output) -> int:
    import os
    from pathlib import Path

    from ..build.bundle import fetch_bundle
    from ..errors import VenvStacksError
    from ..lock.state import check_stack_locks
    from ..platforms import TargetPlatform, host_platform

    spec = _load_spec(args.spec_path, out)
    selection = _selection(spec, args, out, args.include, "--include")
    platforms = [TargetPlatform(p) for p in args.platform or [str(host_platform())]]
    layers = [layer for layer in selection.layers if any(p in layer.platforms for p in platforms)]
    checks = check_stack_locks(spec)
    stale = [layer.build_name for layer in layers if not checks[layer.build_name].valid]
    if stale:
        raise VenvStacksError("these layers have no valid lock (run 'venvstacks lock' first): " + ", ".join(stale))
    assert args.bundle is not None  # `fetch` requires --bundle
    bundle = Path(os.path.abspath(args.bundle))
    counts = fetch_bundle(spec, layers, bundle, platforms, archive_dir=_archive_dir(args, from_bundle=False))
    out.result(f"Bundle {bundle}: {counts['fetched']} files fetched, {counts['present']} already present\n")
    return EXIT_OK


def _bundle_dir(args: Args) -> Path | None:
    import os
    from pathlib import Path

    from ..build.bundle import bundle_runtimes

    value = getattr(args, "bundle", None)
    if not value:
        return None
    bundle = Path(os.path.abspath(os.path.expanduser(value)))
    bundle_runtimes(bundle)  # checks that it is one
    return bundle


def cmd_lock(args: Args, out: Output) -> int:
    import os

    from ..lock.locker import lock_stack
    from ..spec.selection import lock_wants

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
        from ..errors import LockError
        from ..lock.state import check_stack_locks

        checks = check_stack_locks(spec)
        stale = [name for name, want in wants.items() if want is not None or not checks[name].valid]
        if stale or reset:
            raise LockError(
                "with --bundle, locking can only confirm valid locks (pass --if-needed); these layers "
                "would need a package index: " + ", ".join(sorted(set(stale) | reset))
            )
    operations = {name: ["reset-lock"] * (name in reset) + ["lock-if-needed" if want is None else "lock"] for name, want in wants.items()}
    stop, plan = _show_plan(spec, args, out, operations)
    if stop:
        return EXIT_OK
    settings = _lock_settings(spec, args)
    outcomes = lock_stack(spec, wants, settings, uv=_uv_finder(args, out), reset=reset)
    document = {
        "command": "lock", "spec_path": str(spec.spec_path),
        "layers": [
            {"name": o.build_name, "action": o.action, "lock_file": str(o.pylock), "locked_at": o.locked_at, "lock_version": o.lock_version}
            for o in outcomes
        ],
    }  # fmt: skip
    if not outcomes:
        _emit(out, "No environments found to lock\n", document, plan)
        return EXIT_OK
    lines = ["Locked environments:"]
    for outcome in outcomes:
        where = os.path.relpath(outcome.pylock, spec.spec_dir)
        lines.append(f"  {where} (locked at: {outcome.locked_at}) [{outcome.action}]")
    lines.append(f"All paths reported relative to {spec.spec_dir}")
    _emit(out, "\n".join(lines) + "\n", document, plan)
    return EXIT_OK


def cmd_deploy(args: Args, out: Output) -> int:
    """`deploy`: verified, safe, atomic installation of published layers."""
    import os
    from pathlib import Path

    from ..deploy.deployer import deploy

    target = Path(os.path.abspath(os.path.expanduser(args.target)))
    deployed = deploy(Path(args.artifacts_dir), target, include=args.include or (), platform_manifest=args.manifest, jobs=args.jobs)
    lines = [f"Deployed layers in {target}:"]
    lines += [f"  {layer.install_target} [{layer.action}]" for layer in deployed]
    document = {
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
    if problems:
        for problem in problems:
            out.error(problem)
        return EXIT_FAILURE
    out.result(f"{args.deployment}: every deployed layer matches what was deployed or shipped\n")
    return EXIT_OK
