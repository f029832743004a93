"""Checks of an application's launch module and support modules.

A module path is relative to the spec's folder and must stay inside it. No
symbolic link is accepted, neither the module itself nor anything the build
would copy from a package folder: the build copies modules into the layer, and
a link could bring in files from anywhere. Folders on the way to a module may
be links, as long as the module's real location is inside the spec's folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..spec.issues import TableReader

__all__ = ["check_app_modules", "check_hook", "links_in_module", "module_name"]


def module_name(relative: str) -> str:
    """The importable name of a module path: the final component without `.py`."""
    return Path(relative).stem


def check_app_modules(reader: TableReader, spec_dir: Path) -> tuple[Path, tuple[Path, ...]] | None:
    """Check `launch_module` and `support_modules`; their absolute paths, or None.

    The name and location checks come first, then the existence checks, so a
    spec with both kinds of problem reports both.
    """
    launch = reader.string("launch_module", required=True)
    support = reader.string_list("support_modules")
    if support is None and "support_modules" in reader.table:
        return None
    support = tuple(sorted(support or ()))
    ok = launch_placed = launch is not None
    if launch is not None:
        ok = _check_name(reader, "launch_module", launch)
        launch_placed = _check_place(reader, "launch_module", spec_dir, launch)
        ok = ok and launch_placed
    names: dict[str, str] = {}
    placed: list[str] = []
    for position, path in enumerate(support):
        field = f"support_modules[{position}]"
        if not (_check_name(reader, field, path) and _check_place(reader, field, spec_dir, path)):
            ok = False
            continue
        placed.append(path)
        name = module_name(path)
        if launch is not None and name == module_name(launch):
            reader.error(field, f"launch module {name!r} conflicts with support module {path!r}")
            ok = False
        elif name in names:
            reader.error(field, f"conflicting support module names: {names[name]!r} and {path!r} are both {name!r}")
            ok = False
        names.setdefault(name, path)
    if launch is not None and launch_placed:
        ok = _check_launch_exists(reader, spec_dir, launch) and ok
    missing = [path for path in placed if not _module_exists(spec_dir, path)]
    if missing:
        reader.error(
            "support_modules",
            "support modules do not exist (or are not .py files or folders): "
            + ", ".join(repr(p) for p in missing)
            + f" (relative to {str(spec_dir)!r})",
        )
        ok = False
    if not ok or launch is None:
        return None
    return _absolute(spec_dir, launch), tuple(_absolute(spec_dir, p) for p in support)


def check_hook(reader: TableReader, spec_dir: Path) -> tuple[Path | None, bool]:
    """Check `postinstall_hook`: a `.py` file inside the spec's folder. Its absolute path (or None), and whether it is valid."""
    relative = reader.string("postinstall_hook")
    if relative is None:
        return None, "postinstall_hook" not in reader.table
    if not relative.strip():
        reader.error("postinstall_hook", "must not be empty")
        return None, False
    if not _check_place(reader, "postinstall_hook", spec_dir, relative):
        return None, False
    path = _absolute(spec_dir, relative)
    if not path.is_file():
        reader.error("postinstall_hook", f"post-install hook {relative!r} does not exist or is not a file (looked for {str(path)!r})")
        return None, False
    if path.suffix != ".py":
        reader.error("postinstall_hook", f"post-install hook {relative!r} must be a .py file")
        return None, False
    return path, True


def _absolute(spec_dir: Path, relative: str) -> Path:
    return Path(os.path.normpath(spec_dir / relative))


def _check_name(reader: TableReader, field: str, relative: str) -> bool:
    if not relative.strip():
        reader.error(field, "must not be empty")
        return False
    name = module_name(relative)
    if not name.isidentifier():
        reader.error(field, f"{relative!r} cannot be imported: {name!r} is not a valid Python module name")
        return False
    return True


def _left_out(name: str) -> bool:
    # What the build does not copy: bytecode caches and version-control files.
    return name == "__pycache__" or name.startswith(".git") or name.endswith(".pyc")


def links_in_module(path: Path) -> list[Path]:
    """The symbolic links in a module: the module itself, or what the build would copy from its folder."""
    if path.is_symlink():
        return [path]
    found: list[Path] = []
    for root, dirs, files in os.walk(path):  # a link to a folder is listed, never entered
        found += [Path(root, n) for n in sorted(dirs + files) if not _left_out(n) and os.path.islink(os.path.join(root, n))]
        dirs[:] = [n for n in dirs if not _left_out(n)]
    return found


def _check_place(reader: TableReader, field: str, spec_dir: Path, relative: str) -> bool:
    """Report a module path that is absolute, leaves the spec's folder or is (or holds) a link."""
    problem = _place_problem(spec_dir, relative) if relative.strip() else None
    if problem is not None:
        reader.error(field, f"{relative!r} {problem}")
    return problem is None


def _place_problem(spec_dir: Path, relative: str) -> str | None:
    if Path(relative).anchor or os.path.isabs(relative):
        return "is an absolute path: module paths are relative to the spec's folder"
    if os.path.normpath(relative).split(os.sep)[0] == os.pardir:
        return "is outside the spec's folder: module paths must stay inside it"
    path = _absolute(spec_dir, relative)
    links = links_in_module(path)
    if links:
        where = "is a symbolic link" if links[0] == path else f"holds the symbolic link {str(links[0].relative_to(path))!r}"
        more = f" (and {len(links) - 1} more)" if len(links) > 1 else ""
        return f"{where} (to {os.readlink(links[0])!r}){more}: links are not copied into layers, use real files"
    real = Path(os.path.realpath(path))
    if not real.is_relative_to(os.path.realpath(spec_dir)):
        return f"leads outside the spec's folder through a symbolic link (to {str(real)!r})"
    return None


def _module_exists(spec_dir: Path, relative: str) -> bool:
    path = _absolute(spec_dir, relative)
    return (path.is_file() and path.suffix == ".py") or path.is_dir()


def _check_launch_exists(reader: TableReader, spec_dir: Path, relative: str) -> bool:
    path = _absolute(spec_dir, relative)
    if path.is_dir():
        if (path / "__main__.py").is_file():
            return True
        name = module_name(relative)
        reader.error(
            "launch_module",
            f"launch package {relative!r} has no __main__.py, so 'python -m {name}' could not run it",
        )
        return False
    if path.is_file():
        if path.suffix == ".py":
            return True
        reader.error("launch_module", f"launch module {relative!r} must be a .py file or a package folder")
        return False
    reader.error("launch_module", f"launch module {relative!r} does not exist (looked for {str(path)!r})")
    return False
