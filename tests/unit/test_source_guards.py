"""Guard tests that only read the project's own files: the package imports only the standard library,
only the command line prints or exits, and every example stack is listed in examples/README.md."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from support import ROOT


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules


def test_package_imports_only_the_standard_library() -> None:
    for path in sorted((ROOT / "venvstacks").rglob("*.py")):
        outside = _imported_modules(path) - set(sys.stdlib_module_names) - {"__future__"}
        assert not outside, f"{path.name} imports {sorted(outside)}"


def test_only_the_cli_prints_or_exits() -> None:
    for path in sorted((ROOT / "venvstacks").rglob("*.py")):
        if path.parent.name == "cli" or path.name in ("__main__.py", "postinstall.py"):
            continue  # the cli package; postinstall.py is also a standalone script with its own command line
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("print", "exit"), f"{path.name}:{node.lineno} calls {node.func.id}"
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                assert (node.value.id, node.attr) != ("sys", "exit"), f"{path.name}:{node.lineno} calls sys.exit"


def test_examples_are_documented() -> None:
    examples = ROOT / "examples"
    listed = (examples / "README.md").read_text(encoding="utf-8")
    folders = sorted(p.name for p in examples.iterdir() if (p / "venvstacks.toml").is_file())
    assert folders == ["quick", "sklearn"]
    assert all(f"`{name}/`" in listed for name in folders)
