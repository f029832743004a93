"""Guard tests on the package's structure: which module may import which."""

from __future__ import annotations

import ast
from pathlib import Path

from support import ROOT

PACKAGE = ROOT / "venvstacks"

# Bottom-up: each module may import only the package modules listed for it.
ALLOWED = {
    "__init__": set(),
    "errors": set(),
    "versions": {"errors"},
    "markers": {"errors", "versions"},
    "reqs": {"errors", "versions", "markers"},
    "platforms": set(),
    "tomlw": set(),
    "fsutil": set(),
    "cancel": set(),
    "_hooks": {"cancel"},
    "folderlock": {"errors", "fsutil"},
    "_proc": {"cancel", "errors"},
    "uv": {"_proc", "errors"},
    "wheels": {"errors", "platforms", "versions"},
    "xzindex": set(),
    "blockpack": {"cancel"},
    "extract": {"blockpack", "cancel", "errors", "xzindex"},
    "pbs": {"errors", "spec"},
    "spec": {"platforms", "reqs"},
    "tomlfields": {"errors"},
    "layering": {"platforms", "reqs"},
    "uvconfig": {"reqs", "spec", "tomlfields"},
    "specfields": {"errors", "platforms", "reqs", "specmodules", "tomlfields"},
    "specmodules": {"tomlfields"},
    "specrefs": {"layering", "spec", "tomlfields"},
    "specload": {"errors", "layering", "platforms", "spec", "specfields", "specmodules", "specrefs", "tomlfields", "uvconfig"},
    "selection": {"spec"},
    "lockfiles": {"platforms", "spec"},
    "render": {"spec"},
    "pylockedit": {"errors", "lockfiles", "markers", "platforms", "reqs", "tomlw", "wheels"},
    "lockstate": {"lockfiles", "spec"},
    "installed": {"errors", "lockfiles", "markers", "reqs", "versions"},
    "progress": set(),
    "runtimeenv": {"errors", "extract", "fsutil", "pbs", "progress", "spec", "uv"},
    "locking": {"_hooks", "errors", "folderlock", "fsutil", "lockfiles", "lockstate", "progress", "pylockedit", "reqs", "runtimeenv", "spec", "tomlw", "uv", "uvconfig",
                "wheels"},
    "postinstall": set(),
    "consolescripts": {"errors", "portability", "postinstall"},
    "layermanifest": {"postinstall"},
    "archive": {"blockpack", "cancel", "errors"},
    "pubmeta": {"lockfiles", "lockstate", "platforms", "spec"},
    "publishing": {
        "__init__", "_hooks", "_proc", "archive", "blockpack", "cancel", "errors", "folderlock", "fsutil", "layermanifest", "lockstate", "platforms",
        "postinstall", "progress", "pubmeta", "runtimeenv", "spec",
    },
    "dynlib": {"errors"},
    "portability": {"errors"},
    "bundle": {"errors", "folderlock", "fsutil", "lockfiles", "lockstate", "pbs", "platforms", "progress", "spec", "tomlw", "wheels"},
    "building": {
        "__init__", "_hooks", "_proc", "bundle", "cancel", "consolescripts", "dynlib", "errors", "folderlock", "fsutil", "installed", "lockfiles",
        "lockstate", "platforms", "portability", "postinstall", "progress", "runtimeenv", "spec", "uv",
    },
    "compileahead": {"_proc", "cancel", "errors"},
    "deploying": {"_hooks", "_proc", "blockpack", "cancel", "compileahead", "errors", "extract", "fsutil", "postinstall", "progress", "pubmeta"},
    "commands": {
        "archive", "building", "bundle", "cli", "deploying", "errors", "locking", "lockstate", "platforms", "pubmeta", "publishing",
        "render", "runtimeenv", "selection", "spec", "specload", "uv",
    },
    "cli": {"__init__", "cancel", "commands", "errors", "progress"},
    "__main__": {"cli"},
}


def _package_imports(path: Path) -> set[str]:
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                imported.add(node.module.split(".")[0])
            else:
                imported.update("__init__" if alias.name == "__version__" else alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("venvstacks"):
            imported.add("absolute import of venvstacks")
    return imported


def test_every_module_is_in_the_table() -> None:
    assert sorted(p.stem for p in PACKAGE.glob("*.py")) == sorted(ALLOWED)


def test_modules_import_only_lower_layers() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        extra = _package_imports(path) - ALLOWED[path.stem]
        assert not extra, f"{path.name} imports {sorted(extra)}"


def test_only_one_module_runs_subprocesses() -> None:
    for path in sorted(PACKAGE.glob("*.py")):
        # postinstall.py runs on the target without the tool (and so without _proc): there it runs a layer's hook.
        if path.name not in ("_proc.py", "postinstall.py"):
            assert "subprocess" not in path.read_text(encoding="utf-8"), path.name


def test_test_file_names_are_unique() -> None:
    # pytest imports test files by base name, so two with one name cannot both run.
    names = [path.name for path in (ROOT / "tests").rglob("test_*.py")]
    assert sorted(names) == sorted(set(names))
