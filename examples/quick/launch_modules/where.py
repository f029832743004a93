"""Show which layer of the stack each imported package was loaded from."""

import os
import sys

import humanize  # the application layer's own package
import packaging  # from the runtime layer
import rich  # from the framework layer
from rich.console import Console
from rich.table import Table


def _layer_folder(module: object) -> str:
    """The layer folder holding a module: the one above lib/pythonX.Y/site-packages (Lib\\site-packages on Windows)."""
    parts = os.path.abspath(module.__file__).split(os.sep)  # type: ignore[attr-defined]
    index = len(parts) - 1 - parts[::-1].index("site-packages")
    return os.sep.join(parts[: index - (1 if parts[index - 1] == "Lib" else 2)])


def _size(folder: str) -> int:
    """The bytes in the files under `folder`, links not followed."""
    return sum(os.lstat(os.path.join(root, name)).st_size for root, _, files in os.walk(folder) for name in files)


def main() -> None:
    table = Table(title=f"Python {sys.version.split()[0]}: where each package comes from")
    table.add_column("package")
    table.add_column("layer")
    folders = {module.__name__: _layer_folder(module) for module in (humanize, rich, packaging)}
    for name, folder in folders.items():
        table.add_row(name, os.path.basename(folder))
    Console(width=100).print(table)
    layers = sorted(set(folders.values()))
    print(f"these {len(layers)} layers hold {humanize.naturalsize(sum(map(_size, layers)))} of files")


if __name__ == "__main__":
    main()
