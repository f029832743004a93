"""Guard tests on the package's structure: which package and module may import which, and no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

from support import ROOT

PACKAGE = ROOT / "venvstacks"

# The top-level modules: infrastructure every package may use. Bottom-up: each may import only
# the top-level modules listed for it.
TOP_LEVEL = {
    "__init__": set(),
    "__main__": {"cli"},
    "errors": set(),
    "platforms": set(),
    "fsutil": set(),
    "cancel": set(),
    "progress": set(),
    "postinstall": set(),
    "_hooks": {"cancel"},
    "folderlock": {"errors", "fsutil"},
    "_proc": {"cancel", "errors"},
    "uv": {"_proc", "errors"},
    "xzindex": set(),
    "blockpack": {"cancel"},
    "extract": {"blockpack", "cancel", "errors", "xzindex"},
}
# The packages, bottom-up: each may import the packages listed for it (and itself), and the
# top-level modules; `standards` only the pure ones.
PACKAGES = {
    "standards": set(),
    "spec": {"standards"},
    "runtimes": {"spec", "standards"},
    "lock": {"runtimes", "spec", "standards"},
    "build": {"lock", "runtimes", "spec", "standards"},
    "publish": {"build", "lock", "runtimes", "spec", "standards"},
    "deploy": {"publish"},
    "cli": {"deploy", "publish", "build", "lock", "runtimes", "spec", "standards"},
}
PURE = {"errors", "platforms"}
"""The only top-level modules `standards` may import."""


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name below `venvstacks` (`spec.load`, `errors`)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules `name` imports (at the top or inside functions), by dotted name."""
    here = name.split(".")[:-1] if not path.name == "__init__.py" else name.split(".")[:-1]
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("venvstacks"):
            imported.add("absolute import of venvstacks")
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        base = here[: len(here) - (node.level - 1)] if node.level > 1 else here
        target = [*base, *(node.module.split(".") if node.module else [])]
        for alias in node.names:
            candidate = ".".join([*target, alias.name])
            if candidate in modules:
                imported.add(candidate)
            elif target:
                imported.add(".".join(target))
            else:
                imported.add("__init__")  # `from .. import __version__`
    return imported


def _allowed(name: str, imported: str) -> bool:
    package, _, _ = name.partition(".")
    other, _, _ = imported.partition(".")
    if imported == "absolute import of venvstacks":
        return False
    if "." not in name:  # a top-level module
        return imported in TOP_LEVEL[name] or (name == "__main__" and other == "cli")
    if "." not in imported or imported == "__init__":  # a top-level module, from a package
        return package != "standards" or imported in PURE
    return other == package or other in PACKAGES[package]


def test_every_module_has_a_place() -> None:
    for name in _modules():
        package = name.partition(".")[0]
        assert name in TOP_LEVEL if "." not in name else package in PACKAGES, name


def test_modules_import_only_lower_layers() -> None:
    modules = _modules()
    for name, path in modules.items():
        extra = sorted(i for i in _imports(name, path, modules) if i != name and not _allowed(name, i))
        assert not extra, f"{name} imports {extra}"


def test_the_import_graph_has_no_cycle() -> None:
    modules = _modules()
    graph = {name: {i for i in _imports(name, path, modules) if i in modules and i != name and not i.endswith("__init__")}
             for name, path in modules.items()}  # fmt: skip
    state: dict[str, int] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for other in sorted(graph[name]):
            assert state.get(other) != 1, "import cycle: " + " -> ".join([*trail, name, other])
            if other not in state:
                visit(other, [*trail, name])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_only_one_module_runs_subprocesses() -> None:
    for name, path in _modules().items():
        # postinstall.py runs on the target without the tool (and so without _proc): there it runs a layer's hook.
        if name not in ("_proc", "postinstall"):
            assert "subprocess" not in path.read_text(encoding="utf-8"), name


def test_test_file_names_are_unique() -> None:
    # pytest imports test files by base name, so two with one name cannot both run.
    names = [path.name for path in (ROOT / "tests").rglob("test_*.py")]
    assert sorted(names) == sorted(set(names))


def test_git_ignores_no_file_of_the_package() -> None:
    # A `build/` pattern once hid venvstacks/build/__init__.py from commits: CI's clone then lacked it.
    import subprocess

    files = [str(path.relative_to(ROOT)) for path in sorted(PACKAGE.rglob("*.py"))]
    result = subprocess.run(["git", "check-ignore", *files], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.stdout == "", f"ignored by git: {result.stdout.split()}"
