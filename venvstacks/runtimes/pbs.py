"""python-build-standalone (PBS) runtime archives in a local folder.

A runtime layer is unpacked from a PBS `install_only` or `install_only_stripped`
CPython archive for the host platform, named the way PBS names its release assets:
`cpython-<X.Y.Z>+<build>-<target triple>-install_only[_stripped].tar.gz`.
`find_runtime_archive` picks one from a folder, computes its sha256 and checks it
against any digest published beside it (`<archive>.sha256` or `SHA256SUMS`).

Selection rule, when several archives in the folder match the version and triple:
`install_only_stripped` is preferred over `install_only` (upstream venvstacks uses
the stripped builds), then the greatest build tag by plain string comparison
(PBS tags are dates such as `20240107`, so this is the newest build), then the
greatest file name.
"""

from __future__ import annotations

import logging
import platform
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import RuntimeSourceError
from ..fsutil import file_sha256
from ..spec.model import PythonImplementation

__all__ = [
    "FLAVOURS",
    "RuntimeArchive",
    "RuntimeArchiveName",
    "find_runtime_archive",
    "host_triple",
    "parse_runtime_archive_name",
    "published_digests",
    "triple_for",
    "verify_archive",
]

_log = logging.getLogger(__name__)

FLAVOURS = ("install_only_stripped", "install_only")
"""The archive flavours accepted, most preferred first."""
DIGEST_SUFFIX = ".sha256"
"""PBS publishes `<archive>.sha256` beside each asset (older releases)."""
SUMS_FILE = "SHA256SUMS"
"""PBS publishes one `SHA256SUMS` file per release (`<digest>  <file name>` lines)."""
NAME_LAYOUT = "cpython-<X.Y.Z>+<build>-<target triple>-install_only[_stripped].tar.gz"

_ARCHIVE_NAME = re.compile(
    r"(?P<implementation>cpython)-"
    r"(?P<version>[0-9]+\.[0-9]+\.[0-9]+(?:(?:a|b|rc)[0-9]+)?)"
    r"\+(?P<build>[0-9A-Za-z][0-9A-Za-z._]*)-"
    r"(?P<triple>[0-9a-z_]+-(?:unknown|pc|apple)-(?P<os>linux-gnu[0-9a-z]*|linux-musl[0-9a-z]*|windows-msvc|darwin))"
    r"(?P<shared>-shared)?"
    r"-(?P<flavour>install_only(?:_stripped)?)\.tar\.gz"
)
_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
_SUMS_LINE = re.compile(r"(?P<digest>[0-9a-fA-F]{64}) [ *](?P<name>.+)")
_VERSION_KEY = re.compile(r"([0-9]+)\.([0-9]+)\.([0-9]+)(.*)")
_ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
_SYSTEMS = {"linux": "unknown-linux-gnu", "darwin": "apple-darwin", "win32": "pc-windows-msvc"}
_DISPLAY_NAMES = {"cpython": "CPython", "pypy": "PyPy"}


def triple_for(sys_platform: str, machine: str) -> str:
    """The PBS target triple for a `sys.platform` value and a `platform.machine()` value.

    Only x86_64 and aarch64 Linux (glibc), macOS and Windows are supported.
    """
    system_key = "linux" if sys_platform.startswith("linux") else sys_platform
    arch = _ARCHES.get(machine.lower())
    system = _SYSTEMS.get(system_key)
    if arch is None or system is None:
        msg = (
            f"no python-build-standalone runtime for {sys_platform} on {machine or 'an unknown machine'}"
            " (supported: x86_64 and aarch64 Linux, macOS and Windows)"
        )
        raise RuntimeSourceError(msg)
    return f"{arch}-{system}"


def host_triple() -> str:
    """The PBS target triple of the running machine, such as `x86_64-unknown-linux-gnu`."""
    return triple_for(sys.platform, platform.machine())


@dataclass(frozen=True)
class RuntimeArchiveName:
    """The parts of a PBS `install_only` archive's file name."""

    implementation: str
    """Always `cpython`: PBS builds nothing else."""
    version: str
    """`3.11.7`, or a pre-release such as `3.14.0rc1`."""
    build: str
    """The release tag (`20240107`), or `local` for archives built locally."""
    triple: str
    """The target triple, CPU variants included (`x86_64_v3-unknown-linux-gnu`).

    The `-shared` suffix of older Windows asset names is not part of it.
    """
    flavour: str
    """`install_only` or `install_only_stripped`."""
    filename: str

    @property
    def stripped(self) -> bool:
        """True for `install_only_stripped` archives (no debug symbols)."""
        return self.flavour == "install_only_stripped"


def parse_runtime_archive_name(filename: str) -> RuntimeArchiveName | None:
    """The parts of a PBS `install_only[_stripped].tar.gz` file name; None for any other file."""
    match = _ARCHIVE_NAME.fullmatch(filename)
    if match is None:
        return None
    if match["shared"] and match["os"] != "windows-msvc":
        return None
    return RuntimeArchiveName(
        implementation=match["implementation"],
        version=match["version"],
        build=match["build"],
        triple=match["triple"],
        flavour=match["flavour"],
        filename=filename,
    )


@dataclass(frozen=True)
class RuntimeArchive:
    """A chosen runtime archive and its digests."""

    path: Path
    name: RuntimeArchiveName
    sha256: str
    """The archive's actual sha256, lower-case hex."""
    expected_sha256: str | None
    """The digest published beside it, if any (it equals `sha256`)."""


def _preference(name: RuntimeArchiveName) -> tuple[bool, str, str]:
    """Sort key: the most preferred archive is the greatest."""
    return (name.stripped, name.build, name.filename)


def _version_key(version: str) -> tuple[int, int, int, int, str]:
    """Sort key for `X.Y.Z[pre]` versions: numeric, a pre-release before its final."""
    match = _VERSION_KEY.fullmatch(version)
    if match is None:
        return (0, 0, 0, 0, version)
    major, minor, micro, pre = match.groups()
    return (int(major), int(minor), int(micro), 0 if pre else 1, pre)


def _display(implementation: str) -> str:
    return _DISPLAY_NAMES.get(implementation, implementation)


def _no_match_message(
    folder: Path, wanted: PythonImplementation, triple: str, names: list[RuntimeArchiveName]
) -> str:
    """The error for a folder without the wanted archive, saying what it does offer."""
    looking_for = f"no {_display(wanted.implementation)} {wanted.version} archive for {triple} in {folder}"
    if wanted.implementation != "cpython":
        return f"{looking_for} (python-build-standalone archives are CPython only)"
    host_versions = sorted({name.version for name in names if name.triple == triple}, key=_version_key)
    if host_versions:
        return f"{looking_for} (it has: {', '.join(host_versions)})"
    other_triples = sorted({name.triple for name in names})
    if other_triples:
        return f"{looking_for} (it has none for this platform, only for: {', '.join(other_triples)})"
    return f"{looking_for} (it has no runtime archives; they must be named {NAME_LAYOUT})"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        msg = f"cannot read the digest file {path}: {exc.strerror or exc}"
        raise RuntimeSourceError(msg) from exc


def _digest_from_file(digest_file: Path, archive_name: str) -> str:
    """The digest in a per-archive `.sha256` file: `<hex>` or `<hex>  <archive name>`."""
    fields = _read_text(digest_file).split(maxsplit=1)
    named = fields[1].strip().removeprefix("*") if len(fields) > 1 else archive_name
    if not fields or not _DIGEST.fullmatch(fields[0]) or named != archive_name:
        msg = f"digest file {digest_file} does not hold a sha256 digest for {archive_name}"
        raise RuntimeSourceError(msg)
    return fields[0].lower()


def _digest_from_sums(sums_file: Path, archive_name: str) -> str | None:
    """The digest a `SHA256SUMS` file lists for the archive, if it lists it."""
    for line in _read_text(sums_file).splitlines():
        match = _SUMS_LINE.fullmatch(line.strip())
        if match is not None and match["name"] == archive_name:
            return match["digest"].lower()
    return None


def published_digests(archive: Path) -> list[tuple[Path, str]]:
    """Each file beside an archive that publishes its sha256, with that digest."""
    found: list[tuple[Path, str]] = []
    digest_file = archive.with_name(archive.name + DIGEST_SUFFIX)
    if digest_file.is_file():
        found.append((digest_file, _digest_from_file(digest_file, archive.name)))
    sums_file = archive.with_name(SUMS_FILE)
    if sums_file.is_file():
        listed = _digest_from_sums(sums_file, archive.name)
        if listed is not None:
            found.append((sums_file, listed))
    return found


def verify_archive(archive: Path, actual: str) -> str | None:
    """Check an archive's sha256 against every published digest; return the expected one.

    Raises RuntimeSourceError naming the archive, the digest file and both digests
    on a mismatch. Returns None when nothing beside the archive lists it.
    """
    expected: str | None = None
    for source, digest in published_digests(archive):
        if digest != actual:
            msg = (
                f"runtime archive {archive} does not match the digest published in {source}: "
                f"expected sha256 {digest}, got {actual}"
            )
            raise RuntimeSourceError(msg)
        expected = expected or digest
    return expected


def find_runtime_archive(
    folder: Path, implementation: PythonImplementation, *, triple: str | None = None
) -> RuntimeArchive:
    """Choose, hash and verify the archive in `folder` for a runtime on `triple` (default: the host).

    See the module docstring for the selection rule. Raises RuntimeSourceError if
    the folder is missing, holds no matching archive (the message lists the
    versions it has for the triple), or the chosen archive fails verification.
    """
    target = triple or host_triple()
    label = f"{_display(implementation.implementation)} {implementation.version} archive for {target}"
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        msg = f"runtime archive folder {folder} {problem} (looking for a {label})"
        raise RuntimeSourceError(msg)
    try:
        entries = sorted(entry for entry in folder.iterdir() if entry.is_file())
    except OSError as exc:
        msg = f"cannot list the runtime archive folder {folder}: {exc.strerror or exc}"
        raise RuntimeSourceError(msg) from exc
    names = [name for name in map(parse_runtime_archive_name, (e.name for e in entries)) if name]
    matches = [
        name
        for name in names
        if name.implementation == implementation.implementation
        and name.version == implementation.version
        and name.triple == target
    ]
    if not matches:
        raise RuntimeSourceError(_no_match_message(folder, implementation, target, names))
    chosen = max(matches, key=_preference)
    path = folder / chosen.filename
    try:
        actual = file_sha256(path)
    except OSError as exc:
        msg = f"cannot read the runtime archive {path}: {exc.strerror or exc}"
        raise RuntimeSourceError(msg) from exc
    expected = verify_archive(path, actual)
    _log.info(
        "Using runtime archive %s (sha256 %s, %s)",
        path,
        actual,
        "verified" if expected else "no published digest",
    )
    return RuntimeArchive(path=path, name=chosen, sha256=actual, expected_sha256=expected)
