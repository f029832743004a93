"""Show which layer of the stack each imported package was loaded from."""

import os
import sys

import humanize  # the application layer's own package
import packaging  # from the runtime layer
import rich  # from the framework layer
from rich.console import Console
from rich.table import Table


def _layer_of(module: object) -> str:
    """The deployed layer folder holding a module: the parent folder of lib/ (or Lib\\ on Windows)."""
    path = os.path.abspath(module.__file__)  # type: ignore[attr-defined]
    parts = path.split(os.sep)
    for marker in ("lib", "Lib"):
        if marker in parts:
            return parts[parts.index(marker) - 1]
    return path


def main() -> None:
    table = Table(title=f"Python {sys.version.split()[0]}: where each package comes from")
    table.add_column("package")
    table.add_column("layer")
    for module in (humanize, rich, packaging):
        table.add_row(module.__name__, _layer_of(module))
    Console(width=100).print(table)
    print(f"deployed {humanize.naturalsize(12_345_678)} of layers, relinked in place")


if __name__ == "__main__":
    main()
