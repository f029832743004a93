"""Checks of an application's launch module and support modules."""

from __future__ import annotations

import os
from pathlib import Path

from .tomlfields import TableReader

__all__ = ["check_app_modules", "module_name"]


def module_name(relative: str) -> str:
    """The importable name of a module path: the final component without `.py`."""
    return Path(relative).stem


def check_app_modules(reader: TableReader, spec_dir: Path) -> tuple[Path, tuple[Path, ...]] | None:
    """Check `launch_module` and `support_modules`; their absolute paths, or None.

    The name checks come first, then the existence checks, so a spec with both
    kinds of problem reports both.
    """
    launch = reader.string("launch_module", required=True)
    support = reader.string_list("support_modules")
    if support is None and "support_modules" in reader.table:
        return None
    support = tuple(sorted(support or ()))
    ok = launch is not None
    if launch is not None:
        ok = _check_name(reader, "launch_module", launch) and ok
    names: dict[str, str] = {}
    for position, path in enumerate(support):
        field = f"support_modules[{position}]"
        if not _check_name(reader, field, path):
            ok = False
            continue
        name = module_name(path)
        if launch is not None and name == module_name(launch):
            reader.error(field, f"launch module {name!r} conflicts with support module {path!r}")
            ok = False
        elif name in names:
            reader.error(field, f"conflicting support module names: {names[name]!r} and {path!r} are both {name!r}")
            ok = False
        names.setdefault(name, path)
    if launch is not None:
        ok = _check_launch_exists(reader, spec_dir, launch) and ok
    missing = [path for path in support if not _module_exists(spec_dir, path)]
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
