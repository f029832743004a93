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
import subprocess
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

from venvstacks.cli.main import main

sys.exit(main())
'''


# Compiled in a fresh interpreter: marshal's output depends on the reference
# counts of the objects it writes, so compiling inside a long-lived process
# (a test session, say) could change the bytes from one build to the next.
_COMPILE = """
import py_compile, sys
for source, target, name in zip(*[iter(sys.argv[1:])] * 3):
    py_compile.compile(source, cfile=target, dfile=name, doraise=True,
                       invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
"""


def _bytecode(sources: list[tuple[Path, str]], scratch: Path) -> dict[str, bytes]:
    """Bytecode for the building interpreter, by name in the archive.

    It is checked by nothing but its magic number: another Python version
    ignores it and compiles the source, this one skips compiling on every
    start (zipimport cannot cache bytecode itself).
    """
    argv = [sys.executable, "-I", "-c", _COMPILE]
    for source, name in sources:
        argv += [str(source), str(scratch / (name.replace("/", "_") + "c")), name]
    subprocess.run(argv, check=True)
    return {name + "c": (scratch / (name.replace("/", "_") + "c")).read_bytes() for _, name in sources}


def _sources(scratch: Path) -> list[tuple[str, bytes]]:
    """Every file of the archive as (name inside it, content), in sorted order."""
    modules = [(path, f"{PACKAGE}/{path.relative_to(HERE / PACKAGE).as_posix()}") for path in sorted((HERE / PACKAGE).rglob("*.py"))]
    files = [(name, path.read_bytes()) for path, name in modules]
    files += list(_bytecode(modules, scratch).items())
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
