"""The layer manifest: written from a layer's files, checked by `postinstall.py --verify` after relinking."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from venvstacks.publish.manifest import MANIFEST, render_manifest, scan_tree, written_on_target
from venvstacks.postinstall import BYTECODE_RECORD, LAYER_CONFIG, main, verify_layer

SHORT = f"{sys.version_info[0]}.{sys.version_info[1]}"
SITE = f"lib/python{SHORT}/site-packages"


def _runtime_layer(deployment: Path) -> tuple[Path, str]:
    """A runtime-like layer (its interpreter is this Python) with a package, a console script and a .pc file; its manifest's digest."""
    layer = deployment / "rt"
    (layer / "bin").mkdir(parents=True)
    (layer / "bin" / "python3").symlink_to(sys.executable)
    package = layer / SITE / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "cli.py").write_text("def main():\n    print('pkg says hi')\n    return 0\n", encoding="utf-8")
    (layer / "lib" / "pkgconfig").mkdir()
    (layer / "lib" / "pkgconfig" / "python3.pc").write_text("prefix=/build/place\nlibdir=${prefix}/lib\n", encoding="utf-8")
    config = {
        "python": "bin/python3", "base_python": "bin/python3", "site_dir": SITE, "py_version": f"{SHORT}.0",
        "pylib_dirs": [], "dynlib_dirs": [], "console_scripts": {"pkg-tool": "pkg.cli:main"},
    }  # fmt: skip
    (layer / LAYER_CONFIG).parent.mkdir(parents=True)
    (layer / LAYER_CONFIG).write_text(json.dumps(config), encoding="utf-8")
    entries = scan_tree(layer)
    manifest = render_manifest("rt", entries, written_on_target(config, entries, lambda rel: (layer / rel).read_bytes()))
    (layer / MANIFEST).write_bytes(manifest)
    assert main(layer, []) == 0  # relink (the .pc file now names the layer), write the launcher, compile, record the bytecode
    return layer, hashlib.sha256(manifest).hexdigest()


def test_the_manifest_is_the_same_for_the_same_layer(tmp_path: Path) -> None:
    first, digest = _runtime_layer(tmp_path / "one")
    second, again = _runtime_layer(tmp_path / "two, elsewhere")
    assert digest == again and (first / MANIFEST).read_bytes() == (second / MANIFEST).read_bytes()
    written = json.loads((first / MANIFEST).read_text(encoding="utf-8"))["written_on_target"]
    assert written["bin/pkg-tool"][:2] == ["file", 0o755] and written["lib/pkgconfig/python3.pc"][0] == "relinked"


def test_a_relinked_layer_verifies_cleanly_and_its_script_runs(tmp_path: Path) -> None:
    layer, digest = _runtime_layer(tmp_path)
    assert verify_layer(layer, digest) == []
    assert "/build/place" not in (layer / "lib" / "pkgconfig" / "python3.pc").read_text(encoding="utf-8")
    result = subprocess.run([str(layer / "bin" / "pkg-tool")], capture_output=True, text=True, check=False, env={**os.environ, "PYTHONPATH": str(layer / SITE)})
    assert (result.returncode, result.stdout) == (0, "pkg says hi\n")
    # As shipped, the script checks the layer it sits in.
    shutil.copy(Path(__file__).parents[2] / "venvstacks" / "postinstall.py", layer / "postinstall.py")
    script = subprocess.run([sys.executable, "-I", str(layer / "postinstall.py"), "--verify"], capture_output=True, text=True, check=False)
    assert (script.returncode, script.stdout) == (1, "rt/postinstall.py: added after it was shipped (a file)\n")


def test_changes_are_reported_one_line_each(tmp_path: Path) -> None:
    layer, digest = _runtime_layer(tmp_path)
    with (layer / "lib" / "pkgconfig" / "python3.pc").open("a", encoding="utf-8") as stream:
        stream.write("Libs: -levil\n")
    (layer / SITE / "pkg" / "cli.py").chmod(0o777)
    (layer / SITE / "extra.pth").write_text("import os\n", encoding="utf-8")
    (layer / "bin" / "pkg-tool").unlink()
    (layer / SITE / "pkg" / "__pycache__" / f"stray.cpython-{SHORT.replace('.', '')}.pyc").write_bytes(b"\0" * 20)
    assert verify_layer(layer, digest) == [
        ("bin/pkg-tool", "missing (written by postinstall.py: has it run here?)"),
        ("lib/pkgconfig/python3.pc", "modified (sha256 differs from what was shipped, wherever relinked)"),
        (f"{SITE}/extra.pth", "added after it was shipped (a file)"),
        (f"{SITE}/pkg/__pycache__/stray.cpython-{SHORT.replace('.', '')}.pyc", "added after it was shipped (a file)"),
        (f"{SITE}/pkg/cli.py", "mode 0777, 0644 when shipped (more permissions)"),
    ]
    assert verify_layer(layer, "0" * 64) == [(".", f"the manifest {layer / MANIFEST} is not the published one (its sha256 differs)")]


def test_bytecode_is_checked_against_the_record_postinstall_wrote(tmp_path: Path) -> None:
    layer, digest = _runtime_layer(tmp_path)
    (pyc,) = (layer / SITE / "pkg" / "__pycache__").glob("cli.*.pyc")
    rel = pyc.relative_to(layer).as_posix()
    data = pyc.read_bytes()
    pyc.write_bytes(data[:16] + data[16:].replace(b"pkg says hi", b"pkg says HI"))  # same header: only the record tells
    assert verify_layer(layer, digest) == [(rel, "modified (sha256 differs)")]
    (layer / BYTECODE_RECORD).unlink()
    pyc.write_bytes(data[:8] + b"\xff" * 8 + data[16:])  # without the record, the header must still name the source
    assert verify_layer(layer, digest) == [
        (rel, "modified (not the bytecode of its source)"),
        (BYTECODE_RECORD, "missing (written by postinstall.py: has it run here?)"),
    ]


@pytest.mark.parametrize("text", ["", "{}", '{"format": 2, "entries": {}, "written_on_target": {}}', "not json"])
def test_a_damaged_manifest_is_one_problem(tmp_path: Path, text: str) -> None:
    layer, _ = _runtime_layer(tmp_path)
    (layer / MANIFEST).write_text(text, encoding="utf-8")
    (problem,) = verify_layer(layer)
    assert problem[0] == "." and str(layer / MANIFEST) in problem[1]
