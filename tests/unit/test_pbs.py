"""PBS runtime archive names, host triples, and choosing and verifying an archive in a folder."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import pytest

from venvstacks.errors import RuntimeSourceError
from venvstacks.fsutil import file_sha256
from venvstacks.runtimes.pbs import (
    RuntimeArchiveName,
    find_runtime_archive,
    host_triple,
    parse_runtime_archive_name,
    triple_for,
)
from venvstacks.spec.model import PythonImplementation

LINUX = "x86_64-unknown-linux-gnu"
CPYTHON_3_11_7 = PythonImplementation("cpython", "3.11.7")


def _name(version: str, build: str, triple: str, flavour: str, filename: str) -> RuntimeArchiveName:
    return RuntimeArchiveName("cpython", version, build, triple, flavour, filename)


PARSED = [
    pytest.param(
        "cpython-3.11.7+20240107-x86_64-unknown-linux-gnu-install_only.tar.gz",
        ("3.11.7", "20240107", LINUX, "install_only"),
        id="unstripped-dated",
    ),
    pytest.param(
        "cpython-3.12.8+20250106-aarch64-apple-darwin-install_only_stripped.tar.gz",
        ("3.12.8", "20250106", "aarch64-apple-darwin", "install_only_stripped"),
        id="stripped-dated",
    ),
    pytest.param(
        "cpython-3.11.7+local-x86_64-unknown-linux-gnu-install_only.tar.gz",
        ("3.11.7", "local", LINUX, "install_only"),
        id="local-build",
    ),
    pytest.param(
        "cpython-3.13.1+20241219-x86_64_v3-unknown-linux-gnu-install_only_stripped.tar.gz",
        ("3.13.1", "20241219", "x86_64_v3-unknown-linux-gnu", "install_only_stripped"),
        id="cpu-variant-triple",
    ),
    pytest.param(
        "cpython-3.12.1+20240107-x86_64-unknown-linux-musl-install_only.tar.gz",
        ("3.12.1", "20240107", "x86_64-unknown-linux-musl", "install_only"),
        id="musl",
    ),
    pytest.param(
        "cpython-3.12.8+20250106-x86_64-pc-windows-msvc-install_only.tar.gz",
        ("3.12.8", "20250106", "x86_64-pc-windows-msvc", "install_only"),
        id="windows",
    ),
    pytest.param(
        "cpython-3.11.7+20240107-x86_64-pc-windows-msvc-shared-install_only.tar.gz",
        ("3.11.7", "20240107", "x86_64-pc-windows-msvc", "install_only"),
        id="windows-shared-old-name",
    ),
    pytest.param(
        "cpython-3.14.0rc1+20250808-aarch64-unknown-linux-gnu-install_only_stripped.tar.gz",
        ("3.14.0rc1", "20250808", "aarch64-unknown-linux-gnu", "install_only_stripped"),
        id="pre-release",
    ),
]


@pytest.mark.parametrize(("filename", "parts"), PARSED)
def test_parse_runtime_archive_name(filename: str, parts: tuple[str, str, str, str]) -> None:
    assert parse_runtime_archive_name(filename) == _name(*parts, filename)


@pytest.mark.parametrize(
    "filename",
    [
        pytest.param("cpython-3.11.7+20240107-x86_64-unknown-linux-gnu-pgo+lto-full.tar.zst", id="full-zst"),
        pytest.param("cpython-3.11.7+20240107-x86_64-unknown-linux-gnu-install_only.tar.zst", id="zst"),
        pytest.param("cpython-3.11.7+20240107-x86_64-unknown-linux-gnu-install_only.tar.gz.sha256", id="sha256"),
        pytest.param("cpython-3.11.7+20240107-x86_64-unknown-linux-gnu-debug-full.tar.zst", id="debug"),
        pytest.param(
            "cpython-3.13.1+20241219-x86_64-unknown-linux-gnu-freethreaded-install_only.tar.gz",
            id="freethreaded",
        ),
        pytest.param("cpython-3.11.7+20240107-x86_64-unknown-linux-gnu-shared-install_only.tar.gz", id="shared-linux"),
        pytest.param("cpython-3.11.7-x86_64-unknown-linux-gnu-install_only.tar.gz", id="no-build-tag"),
        pytest.param("cpython-3.11+20240107-x86_64-unknown-linux-gnu-install_only.tar.gz", id="short-version"),
        pytest.param("pypy-3.11.13+20240107-x86_64-unknown-linux-gnu-install_only.tar.gz", id="pypy"),
        pytest.param("cpython-3.11.7+20240107-x86_64-unknown-linux-gnu-install_only.zip", id="zip"),
        pytest.param("SHA256SUMS", id="sums"),
        pytest.param("python-3.11.7-amd64.exe", id="installer"),
    ],
)
def test_other_files_are_not_runtime_archives(filename: str) -> None:
    assert parse_runtime_archive_name(filename) is None


@pytest.mark.parametrize(
    ("sys_platform", "machine", "triple"),
    [
        ("linux", "x86_64", "x86_64-unknown-linux-gnu"),
        ("linux", "aarch64", "aarch64-unknown-linux-gnu"),
        ("linux", "arm64", "aarch64-unknown-linux-gnu"),
        ("darwin", "arm64", "aarch64-apple-darwin"),
        ("darwin", "x86_64", "x86_64-apple-darwin"),
        ("win32", "AMD64", "x86_64-pc-windows-msvc"),
        ("win32", "ARM64", "aarch64-pc-windows-msvc"),
    ],
)
def test_triple_for(sys_platform: str, machine: str, triple: str) -> None:
    assert triple_for(sys_platform, machine) == triple


@pytest.mark.parametrize(("sys_platform", "machine"), [("linux", "ppc64le"), ("freebsd14", "amd64"), ("linux", "")])
def test_triple_for_unsupported_machines(sys_platform: str, machine: str) -> None:
    with pytest.raises(RuntimeSourceError, match="no python-build-standalone runtime for"):
        triple_for(sys_platform, machine)


def test_host_triple_is_a_supported_triple() -> None:
    assert host_triple() in {
        "x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu", "aarch64-apple-darwin",
        "x86_64-apple-darwin", "x86_64-pc-windows-msvc", "aarch64-pc-windows-msvc",
    }


def _archive(folder: Path, version: str, build: str = "20240107", triple: str = LINUX, stripped: bool = False) -> Path:
    """A small stand-in archive (its content is only hashed here, never unpacked)."""
    flavour = "install_only_stripped" if stripped else "install_only"
    path = folder / f"cpython-{version}+{build}-{triple}-{flavour}.tar.gz"
    path.write_bytes(f"archive {path.name}".encode())
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_finds_the_matching_archive_and_hashes_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    wanted = _archive(tmp_path, "3.11.7")
    _archive(tmp_path, "3.11.8")
    _archive(tmp_path, "3.12.1")
    _archive(tmp_path, "3.11.7", triple="aarch64-apple-darwin")
    with caplog.at_level(logging.INFO, logger="venvstacks.runtimes.pbs"):
        found = find_runtime_archive(tmp_path, CPYTHON_3_11_7, triple=LINUX)
    assert found.path == wanted
    assert found.name == parse_runtime_archive_name(wanted.name)
    assert found.sha256 == _digest(wanted) == file_sha256(wanted)
    assert found.expected_sha256 is None
    assert wanted.name in caplog.text


def test_default_triple_is_the_host(tmp_path: Path) -> None:
    wanted = _archive(tmp_path, "3.11.7", triple=host_triple())
    assert find_runtime_archive(tmp_path, CPYTHON_3_11_7).path == wanted


@pytest.mark.parametrize(
    ("present", "chosen"),
    [
        pytest.param([("20240107", False), ("20240107", True)], ("20240107", True), id="stripped-over-unstripped"),
        pytest.param([("20240107", True), ("20250106", False)], ("20240107", True), id="stripped-before-newer-build"),
        pytest.param([("20240107", False), ("20250106", False)], ("20250106", False), id="newest-build"),
        pytest.param([("20231002", True), ("20240107", True), ("20240224", True)], ("20240224", True), id="newest-of-3"),
        pytest.param([("20240107", False), ("local", False)], ("local", False), id="local-sorts-after-dates"),
    ],
)
def test_selection_rule(tmp_path: Path, present: list[tuple[str, bool]], chosen: tuple[str, bool]) -> None:
    paths = {(build, stripped): _archive(tmp_path, "3.11.7", build, stripped=stripped) for build, stripped in present}
    assert find_runtime_archive(tmp_path, CPYTHON_3_11_7, triple=LINUX).path == paths[chosen]


def test_cpu_variant_archives_do_not_match_the_plain_triple(tmp_path: Path) -> None:
    _archive(tmp_path, "3.11.7", triple="x86_64_v3-unknown-linux-gnu")
    with pytest.raises(RuntimeSourceError, match="it has none for this platform, only for: x86_64_v3-unknown-linux-gnu"):
        find_runtime_archive(tmp_path, CPYTHON_3_11_7, triple=LINUX)


def test_per_file_digest_is_verified(tmp_path: Path) -> None:
    archive = _archive(tmp_path, "3.11.7")
    Path(f"{archive}.sha256").write_text(_digest(archive).upper() + "\n", encoding="utf-8")
    found = find_runtime_archive(tmp_path, CPYTHON_3_11_7, triple=LINUX)
    assert found.expected_sha256 == found.sha256 == _digest(archive)


def test_sums_file_digest_is_verified(tmp_path: Path) -> None:
    archive = _archive(tmp_path, "3.11.7")
    other = _archive(tmp_path, "3.12.1")
    lines = [f"{'0' * 64}  {other.name}", f"{_digest(archive)}  {archive.name}", ""]
    (tmp_path / "SHA256SUMS").write_text("\n".join(lines), encoding="utf-8")
    found = find_runtime_archive(tmp_path, CPYTHON_3_11_7, triple=LINUX)
    assert found.expected_sha256 == _digest(archive)


def test_sums_file_that_does_not_list_the_archive(tmp_path: Path) -> None:
    _archive(tmp_path, "3.11.7")
    other = _archive(tmp_path, "3.12.1")
    (tmp_path / "SHA256SUMS").write_text(f"{_digest(other)}  {other.name}\n", encoding="utf-8")
    assert find_runtime_archive(tmp_path, CPYTHON_3_11_7, triple=LINUX).expected_sha256 is None


@pytest.mark.parametrize("source", ["per-file", "sums"])
def test_digest_mismatch_is_an_error(tmp_path: Path, source: str) -> None:
    archive = _archive(tmp_path, "3.11.7")
    wrong = hashlib.sha256(b"something else").hexdigest()
    if source == "per-file":
        digest_file = Path(f"{archive}.sha256")
        digest_file.write_text(f"{wrong}  {archive.name}\n", encoding="utf-8")
    else:
        digest_file = tmp_path / "SHA256SUMS"
        digest_file.write_text(f"{wrong} *{archive.name}\n", encoding="utf-8")
    with pytest.raises(RuntimeSourceError) as caught:
        find_runtime_archive(tmp_path, CPYTHON_3_11_7, triple=LINUX)
    message = str(caught.value)
    assert str(archive) in message and str(digest_file) in message
    assert f"expected sha256 {wrong}, got {_digest(archive)}" in message


@pytest.mark.parametrize(
    "content",
    [pytest.param("", id="empty"), pytest.param("not-a-digest\n", id="garbage"), pytest.param(f"{'a' * 64}  other.tar.gz", id="other-name")],
)
def test_malformed_per_file_digest_is_an_error(tmp_path: Path, content: str) -> None:
    archive = _archive(tmp_path, "3.11.7")
    Path(f"{archive}.sha256").write_text(content, encoding="utf-8")
    with pytest.raises(RuntimeSourceError, match=f"does not hold a sha256 digest for {re.escape(archive.name)}"):
        find_runtime_archive(tmp_path, CPYTHON_3_11_7, triple=LINUX)


def test_missing_version_lists_what_the_folder_has(tmp_path: Path) -> None:
    _archive(tmp_path, "3.12.1")
    _archive(tmp_path, "3.11.7", stripped=True)
    _archive(tmp_path, "3.11.7")
    _archive(tmp_path, "3.11.10")
    _archive(tmp_path, "3.13.0", triple="aarch64-apple-darwin")
    (tmp_path / "notes.txt").write_text("not an archive", encoding="utf-8")
    with pytest.raises(RuntimeSourceError) as caught:
        find_runtime_archive(tmp_path, PythonImplementation("cpython", "3.11.9"), triple=LINUX)
    assert str(caught.value) == f"no CPython 3.11.9 archive for {LINUX} in {tmp_path} (it has: 3.11.7, 3.11.10, 3.12.1)"


def test_empty_folder_explains_the_naming(tmp_path: Path) -> None:
    (tmp_path / "python-3.11.7.tar.gz").write_bytes(b"")
    with pytest.raises(RuntimeSourceError, match=r"it has no runtime archives; they must be named cpython-<X\.Y\.Z>\+<build>"):
        find_runtime_archive(tmp_path, CPYTHON_3_11_7, triple=LINUX)


def test_pypy_is_not_offered(tmp_path: Path) -> None:
    _archive(tmp_path, "3.11.7")
    with pytest.raises(RuntimeSourceError, match="no PyPy 3.11.13 archive .* archives are CPython only"):
        find_runtime_archive(tmp_path, PythonImplementation("pypy", "3.11.13"), triple=LINUX)


def test_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    expected = f"runtime archive folder {missing} does not exist (looking for a CPython 3.11.7 archive for {LINUX})"
    with pytest.raises(RuntimeSourceError, match=re.escape(expected)):
        find_runtime_archive(missing, CPYTHON_3_11_7, triple=LINUX)


def test_folder_that_is_a_file(tmp_path: Path) -> None:
    archive = _archive(tmp_path, "3.11.7")
    with pytest.raises(RuntimeSourceError, match=f"runtime archive folder {re.escape(str(archive))} is not a folder"):
        find_runtime_archive(archive, CPYTHON_3_11_7, triple=LINUX)


def test_sha256_file_streams_large_files(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    data = bytes(range(256)) * 40_000
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
