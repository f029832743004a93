"""Bundles: which wheels a platform needs, and downloads that never leave a bad file behind."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import IO

import pytest

from support import COMPAT
from venvstacks.build.bundle import BundleError, fetch_bundle, wheels_needed
from venvstacks.platforms import TargetPlatform
from venvstacks.spec.load import load_spec


@pytest.fixture()
def compat(tmp_path: Path) -> Path:
    folder = tmp_path / "compat"
    shutil.copytree(COMPAT, folder)
    return folder / "venvstacks.toml"


def test_wheels_needed_come_from_every_layer_once(compat: Path) -> None:
    spec = load_spec(compat, environ={})
    needs = wheels_needed(spec, list(spec.layers()), [TargetPlatform.LINUX_X86_64])
    assert [n.filename.split("-")[0] for n in needs] == ["attrs", "certifi", "idna", "packaging", "python_dateutil", "six"]
    # upstream's locks name local wheels by relative path
    assert all(n.local is not None and n.local.name == n.filename for n in needs)


def test_a_download_with_the_wrong_digest_leaves_nothing(compat: Path, tmp_path: Path) -> None:
    spec = load_spec(compat, environ={})
    pylock = compat.parent / "requirements" / "framework-web-extra" / "pylock.framework-web-extra.toml"
    text = pylock.read_text(encoding="utf-8").replace('path = "../../wheels/six-1.17.0-py2.py3-none-any.whl"', 'url = "https://files.example/six-1.17.0-py2.py3-none-any.whl"')
    pylock.write_text(text, encoding="utf-8")
    layer = spec.framework("web-extra")

    def fake_download(url: str, stream: IO[bytes]) -> None:
        stream.write(b"not the wheel the lock names")

    bundle = tmp_path / "bundle"
    with pytest.raises(BundleError, match=r"six-1\.17\.0-py2\.py3-none-any\.whl: sha256 .* does not match the lock's 4721f391"):
        fetch_bundle(spec, [layer], bundle, [TargetPlatform.LINUX_X86_64], archive_dir=None, download=fake_download)
    assert list((bundle / "wheels").iterdir()) == []

    def good_download(url: str, stream: IO[bytes]) -> None:
        stream.write(b"x")

    digest = hashlib.sha256(b"x").hexdigest()
    pylock.write_text(text.replace("4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274", digest), encoding="utf-8")
    counts = fetch_bundle(spec, [layer], bundle, [TargetPlatform.LINUX_X86_64], archive_dir=None, download=good_download)
    assert counts == {"fetched": 1, "present": 0}
    assert (bundle / "wheels" / "six-1.17.0-py2.py3-none-any.whl").read_bytes() == b"x"


def test_runtimes_need_an_archive_folder(compat: Path, tmp_path: Path) -> None:
    spec = load_spec(compat, environ={})
    with pytest.raises(BundleError, match="fetch needs the runtime archives: pass --python-archive-dir"):
        fetch_bundle(spec, list(spec.runtimes), tmp_path / "b", [TargetPlatform.LINUX_X86_64], archive_dir=None)


def test_missing_local_wheel_is_named(compat: Path, tmp_path: Path) -> None:
    spec = load_spec(compat, environ={})
    with pytest.raises(BundleError, match=r"layer 'framework-web': the lock names the local wheel .*certifi-.*\.whl, which does not exist"):
        fetch_bundle(spec, [spec.framework("web")], tmp_path / "b", [TargetPlatform.LINUX_X86_64], archive_dir=None)


def test_a_fetch_clears_what_a_killed_one_left_and_refuses_to_share_the_bundle(compat: Path, tmp_path: Path) -> None:
    import os

    from venvstacks.folderlock import FolderBusy, exclusive

    pylock = compat.parent / "requirements" / "framework-web-extra" / "pylock.framework-web-extra.toml"
    text = pylock.read_text(encoding="utf-8").replace('path = "../../wheels/six-1.17.0-py2.py3-none-any.whl"', 'url = "https://files.example/six-1.17.0-py2.py3-none-any.whl"')
    pylock.write_text(text.replace("4721f391ed90541fddacab5acf947aa0d3dc7d27b2e1e8eda2be8970586c3274", hashlib.sha256(b"x").hexdigest()), encoding="utf-8")
    spec = load_spec(compat, environ={})
    layer = spec.framework("web-extra")

    def download(url: str, stream: IO[bytes]) -> None:
        stream.write(b"x")

    bundle = tmp_path / "bundle"
    (bundle / "wheels").mkdir(parents=True)
    leftover = bundle / "wheels" / ".six-1.17.0-py2.py3-none-any.whl.k3j4h5g6.partial"
    leftover.write_bytes(b"half a download")
    mine = bundle / "wheels" / "notes.partial.txt"
    mine.write_text("not the tool's", encoding="utf-8")
    with exclusive(bundle, command="fetch"):
        with pytest.raises(FolderBusy, match=rf"{bundle} is in use by process {os.getpid()} \(fetch\)"):
            fetch_bundle(spec, [layer], bundle, [TargetPlatform.LINUX_X86_64], archive_dir=None, download=download)
        assert leftover.exists(), "only the holder of the lock clears leftovers"
    counts = fetch_bundle(spec, [layer], bundle, [TargetPlatform.LINUX_X86_64], archive_dir=None, download=download)
    assert counts == {"fetched": 1, "present": 0}
    assert not leftover.exists() and mine.exists()
    assert not (bundle / ".venvstacks-staging").exists()
