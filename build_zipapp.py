"""Build `dist/venvstacks.pyz`, the whole tool as one file, with the stdlib `zipapp` module.

The archive is reproducible: the package's sources (and their bytecode for the
building interpreter) go into it in sorted order with a fixed time and mode,
so building twice from the same sources with the same Python gives the same
bytes.

    python build_zipapp.py [--output PATH]
"""

from __future__ import annotations

import argparse
import os
import py_compile
import sys
import tempfile
import zipapp
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "venvstacks"
DEFAULT_OUTPUT = HERE / "dist" / "venvstacks.pyz"
INTERPRETER = "/usr/bin/env python3"

# Any fixed time after the zip format's 1980 epoch will do.
FIXED_DATE_TIME = (2000, 1, 1, 0, 0, 0)

# zipapp's own --main template drops the return value, so exit codes would be
# lost; this one passes it on.
ROOT_MAIN = '''\
import sys

from venvstacks.cli import main

sys.exit(main())
'''


def _bytecode(source: Path, name: str, scratch: Path) -> bytes:
    # Bytecode for the building interpreter, checked by nothing but its magic
    # number: another Python version ignores it and compiles the source, this
    # one skips compiling on every start (zipimport cannot cache bytecode).
    target = scratch / (name.replace("/", "_") + "c")
    py_compile.compile(
        str(source), cfile=str(target), dfile=name, doraise=True,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )  # fmt: skip
    return target.read_bytes()


def _sources(scratch: Path) -> list[tuple[str, bytes]]:
    """Every file of the archive as (name inside it, content), in sorted order."""
    files = []
    for path in (HERE / PACKAGE).glob("*.py"):
        name = f"{PACKAGE}/{path.name}"
        files.append((name, path.read_bytes()))
        files.append((name + "c", _bytecode(path, name, scratch)))
    files.append(("__main__.py", ROOT_MAIN.encode("utf-8")))
    return sorted(files)


def _write_zip(target: Path, scratch: Path) -> None:
    # zipapp on Python 3.11 adds files in directory-listing order with their
    # own timestamps, so the zip is written here with a fixed order, time and
    # mode; zipapp then turns it into the runnable archive.
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, content in _sources(scratch):
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE_TIME)
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, content, compresslevel=9)


def build(output: Path) -> Path:
    """Build the zipapp at `output` (written under a temporary name, then renamed)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        plain_zip = Path(tmp) / "venvstacks.zip"
        _write_zip(plain_zip, Path(tmp))
        partial = output.with_name(f".{output.name}.partial")
        zipapp.create_archive(plain_zip, partial, interpreter=INTERPRETER)
        os.chmod(partial, 0o755)
        os.replace(partial, output)
    return output


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description="Build the single-file venvstacks zipapp.")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help=f"where to write it (default: {DEFAULT_OUTPUT.relative_to(HERE)})")
    args = parser.parse_args(argv)
    path = build(args.output.absolute())
    try:
        print(path.relative_to(Path.cwd()))
    except ValueError:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
