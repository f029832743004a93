"""Console scripts, the in-layer manifest and post-install hooks, on a really built, published and deployed stack."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from support import StackFactory, publish_stack, relink_all, run
from venvstacks.deploy.deployer import DeployError, deploy
from venvstacks.deploy.verify import verify

pytestmark = [pytest.mark.slow, pytest.mark.network]

STACK = """\
[[runtimes]]
name = "cpython-3.11"
python_implementation = "cpython@{py311}"
requirements = []

[[frameworks]]
name = "text"
runtime = "cpython-3.11"
requirements = ["pygments"]
console_scripts = ["pygmentize"]

[[applications]]
name = "tools"
launch_module = "launch/tools.py"
frameworks = ["text"]
requirements = ["rich", "charset-normalizer", "idna"]
postinstall_hook = "hooks/configure.py"

[tool.uv]
exclude-newer = "2025-08-27T00:00:00Z"
"""
LAYERS = ["cpython-3.11", "framework-text", "app-tools"]
SITE = "lib/python3.11/site-packages"
HOOK = """\
import json, os, sys
layer, deployment = sys.argv[1:]
if os.environ.get("TEST_HOOK_FAIL"):
    print("hook: refusing on purpose", file=sys.stderr)
    sys.exit(3)
import rich  # the layer's own packages import: the hook runs with the layer's Python
config = os.path.join(layer, "share", "venv", "local", "config.json")
os.makedirs(os.path.dirname(config), exist_ok=True)
with open(config, "w", encoding="utf-8") as stream:
    json.dump({"layer": layer, "deployment": deployment, "cwd": os.getcwd(), "rich": rich.__name__}, stream)
print("hook: configured", layer)
"""


@pytest.fixture(scope="module")
def published(make_stack: StackFactory, pyz: Path, runtime_archive_dir: Path) -> Path:
    files = {"launch/tools.py": "import rich, idna\nprint('tools', idna.encode('b\\u00fccher.example').decode())\n", "hooks/configure.py": HOOK}
    return publish_stack(make_stack(STACK, files), pyz, runtime_archive_dir)


@pytest.fixture(scope="module")
def deployed(published: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("deploy") / "first place"
    layers = deploy(published, target)
    assert [(layer.install_target, layer.action) for layer in layers] == [(name, "installed") for name in LAYERS]
    return target


def _stack_manifest(published: Path) -> dict[str, dict[str, object]]:
    data = json.loads((published / "__venvstacks__" / "venvstacks.json").read_text(encoding="utf-8"))
    return {entry["install_target"]: entry for group in data["layers"].values() for entry in group}


def _snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry below `folder`, with its mode, mtime and size; the hook's own folder aside (it writes there on every run)."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            rel = path.relative_to(folder).as_posix()
            if "/share/venv/local" not in f"/{rel}":
                info = os.lstat(path)
                found[rel] = (info.st_mode, info.st_mtime_ns, info.st_size)
    return found


def _scripts_work(deployment: Path) -> None:
    normalizer = run([str(deployment / "app-tools" / "bin" / "normalizer"), "--version"])
    assert normalizer.returncode == 0 and "Charset-Normalizer" in normalizer.stdout + normalizer.stderr, normalizer
    markdown = run([str(deployment / "app-tools" / "bin" / "markdown-it"), "--help"])
    assert markdown.returncode == 0 and "usage: markdown-it" in markdown.stdout, markdown
    pygmentize = run([str(deployment / "framework-text" / "bin" / "pygmentize"), "-V"])
    assert pygmentize.returncode == 0 and pygmentize.stdout.startswith("Pygments version"), pygmentize


def test_console_scripts_work_after_deploy_and_after_moving(deployed: Path, tmp_path: Path) -> None:
    app_bin = deployed / "app-tools" / "bin"
    scripts = sorted(p.name for p in app_bin.iterdir() if not p.name.startswith("python"))
    assert scripts == ["markdown-it", "normalizer"]  # its own packages' scripts only: pygmentize comes from the framework
    assert sorted(p.name for p in (deployed / "framework-text" / "bin").iterdir() if not p.name.startswith("python")) == ["pygmentize"]
    assert not [p for p in (deployed / "cpython-3.11" / "bin").iterdir() if not p.name.startswith(("python", "pydoc", "idle", "2to3"))]
    _scripts_work(deployed)
    # A link to a launcher, as on PATH, runs it too.
    (tmp_path / "path").mkdir()
    os.symlink(app_bin / "normalizer", tmp_path / "path" / "normalizer")
    assert run([str(tmp_path / "path" / "normalizer"), "--version"]).returncode == 0
    # RECORD lists each launcher with its content's hash.
    (record,) = (deployed / "app-tools" / SITE).glob("charset_normalizer-*.dist-info/RECORD")
    rows = {row[0]: row for row in csv.reader(record.read_text(encoding="utf-8").splitlines()) if row}
    data = (app_bin / "normalizer").read_bytes()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    assert rows["../../../bin/normalizer"][1:] == [f"sha256={digest}", str(len(data))]
    assert verify(deployed) == []

    moved = tmp_path / "moved, with spaces" / "here"
    moved.parent.mkdir()
    shutil.copytree(deployed, moved, symlinks=True)
    relink_all(moved, LAYERS)
    _scripts_work(moved)
    config = json.loads((moved / "app-tools" / "share" / "venv" / "local" / "config.json").read_text(encoding="utf-8"))
    assert config == {"layer": str(moved / "app-tools"), "deployment": str(moved), "cwd": str(moved / "app-tools"), "rich": "rich"}
    before = _snapshot(moved)
    relink_all(moved, LAYERS)  # again: nothing changes
    assert _snapshot(moved) == before
    assert verify(moved) == []


def test_the_hook_ran_at_deploy_with_the_deployed_paths(deployed: Path) -> None:
    config = json.loads((deployed / "app-tools" / "share" / "venv" / "local" / "config.json").read_text(encoding="utf-8"))
    assert config == {"layer": str(deployed / "app-tools"), "deployment": str(deployed), "cwd": str(deployed / "app-tools"), "rich": "rich"}
    assert (deployed / "app-tools" / "share" / "venv" / "postinstall_hook.py").is_file()


def test_a_failing_hook_fails_deploy_which_changes_nothing(published: Path, deployed: Path, pyz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "fresh"
    monkeypatch.setenv("TEST_HOOK_FAIL", "1")
    with pytest.raises(DeployError) as caught:
        deploy(published, target)
    assert "hook: refusing on purpose" in str(caught.value) and "post-install hook" in str(caught.value)
    assert not target.exists()
    result = run([sys.executable, str(pyz), "deploy", str(published), "--target", str(target)])
    assert result.returncode == 1 and "hook: refusing on purpose" in result.stderr and "Traceback" not in result.stderr
    assert not target.exists()
    # Plain postinstall.py: the hook's output is shown and the exit status is not 0.
    copy = tmp_path / "copy"
    shutil.copytree(deployed, copy, symlinks=True)
    result = run([str(copy / "cpython-3.11" / "bin" / "python3"), "-I", str(copy / "app-tools" / "postinstall.py")])
    assert result.returncode == 1
    assert "hook: refusing on purpose" in result.stderr and "post-install hook" in result.stderr and "exit status 3" in result.stderr


def _unpack_with_tar(published: Path, target: Path) -> None:
    target.mkdir(parents=True)
    for name in LAYERS:
        subprocess.run(["tar", "-xf", str(published / f"{name}.tar.xz"), "-C", str(target)], check=True)
    relink_all(target, LAYERS)


def _tamper(target: Path) -> list[str]:
    """Change the deployment in ways that run code or break it; the problems verify must report."""
    app, site = target / "app-tools", target / "app-tools" / SITE
    with (site / "rich" / "__init__.py").open("a", encoding="utf-8") as stream:
        stream.write("import os\n")
    (site / "zz-evil.pth").write_text("import os\n", encoding="utf-8")
    (site / "idna" / "codec.py").unlink()
    launcher = app / "bin" / "normalizer"
    launcher.write_text(launcher.read_text(encoding="utf-8") + "import os\n", encoding="utf-8")
    pyc = site / "idna" / "__pycache__" / "core.cpython-311.pyc"
    data = pyc.read_bytes()
    pyc.write_bytes(data[:16] + bytes(reversed(data[16:])))
    (site / "idna" / "core.py").chmod(0o4755)
    cfg = app / "pyvenv.cfg"
    cfg.write_text(cfg.read_text(encoding="utf-8").replace("= false", "= true"), encoding="utf-8")
    with (site / "sitecustomize.py").open("a", encoding="utf-8") as stream:
        stream.write("import os\n")
    return [
        f"app-tools/{SITE}/rich/__init__.py: modified (",
        f"app-tools/{SITE}/zz-evil.pth: added after it was shipped (a file)",
        f"app-tools/{SITE}/idna/codec.py: missing",
        "app-tools/bin/normalizer: modified (",
        f"app-tools/{SITE}/idna/__pycache__/core.cpython-311.pyc: modified (sha256 differs)",
        f"app-tools/{SITE}/idna/core.py: mode 4755, 0644 when shipped (more permissions)",
        "app-tools/pyvenv.cfg: modified (not what relinking writes where the layer is now)",
        f"app-tools/{SITE}/sitecustomize.py: modified (",
    ]


def test_plain_tar_and_postinstall_verify_clean_then_tampered(published: Path, pyz: Path, tmp_path: Path) -> None:
    target = tmp_path / "unpacked by tar"
    _unpack_with_tar(published, target)
    _scripts_work(target)
    metadata = published / "__venvstacks__" / "venvstacks.json"
    assert verify(target) == [] and verify(target, metadata=metadata) == []
    result = run([sys.executable, str(pyz), "verify", str(target), "--metadata", str(metadata)])
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    python = str(target / "cpython-3.11" / "bin" / "python3")
    for name, entry in _stack_manifest(published).items():
        digest = entry["manifest_hashes"]["sha256"]  # type: ignore[index]
        with tarfile.open(published / f"{name}.tar.xz") as archive:
            shipped = archive.extractfile(f"{name}/share/venv/metadata/venvstacks_manifest.json")
            assert shipped is not None and hashlib.sha256(shipped.read()).hexdigest() == digest
        result = run([python, "-I", str(target / name / "postinstall.py"), "--verify", "--manifest-sha256", digest])
        assert (result.returncode, result.stdout, result.stderr) == (0, "", ""), name

    expected = _tamper(target)
    problems = verify(target)
    assert len(problems) == len(expected) and all(any(p.startswith(e) for p in problems) for e in expected), problems
    result = run([sys.executable, str(pyz), "verify", str(target)])
    assert result.returncode == 1 and result.stderr.splitlines() == [f"error: {p}" for p in problems]
    result = run([python, "-I", str(target / "app-tools" / "postinstall.py"), "--verify"])
    assert result.returncode == 1 and result.stdout.splitlines() == problems, result.stdout


def test_a_signed_metadata_file_vouches_for_every_file(published: Path, tmp_path: Path) -> None:
    """The chain docs/deploying.md describes: signature -> venvstacks.json -> each layer's manifest -> its files."""
    keygen = shutil.which("ssh-keygen")
    assert keygen is not None, "ssh-keygen (OpenSSH) is needed to test signed metadata"
    key, metadata = tmp_path / "publisher_key", published / "__venvstacks__" / "venvstacks.json"
    assert run([keygen, "-q", "-t", "ed25519", "-N", "", "-C", "publisher", "-f", str(key)]).returncode == 0
    signed = tmp_path / "venvstacks.json"
    shutil.copy(metadata, signed)
    assert run([keygen, "-Y", "sign", "-f", str(key), "-n", "stack-metadata", str(signed)]).returncode == 0
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f'publisher@example.org namespaces="stack-metadata" {(tmp_path / "publisher_key.pub").read_text(encoding="utf-8")}', encoding="utf-8")

    def signature_holds() -> bool:
        command = [keygen, "-Y", "verify", "-f", str(allowed), "-I", "publisher@example.org", "-n", "stack-metadata", "-s", f"{signed}.sig"]
        return subprocess.run(command, input=signed.read_bytes(), capture_output=True, check=False).returncode == 0

    target = tmp_path / "installed"
    _unpack_with_tar(published, target)
    assert signature_holds() and verify(target, metadata=signed) == []
    # A layer whose manifest was rewritten to match a tampered file no longer matches the signed metadata.
    manifest_path = target / "app-tools" / "share" / "venv" / "metadata" / "venvstacks_manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    init = target / "app-tools" / SITE / "idna" / "__init__.py"
    init.write_text(init.read_text(encoding="utf-8") + "import os\n", encoding="utf-8")
    data = init.read_bytes()
    manifest["entries"][f"{SITE}/idna/__init__.py"][2:] = [len(data), hashlib.sha256(data).hexdigest()]
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    assert verify(target) == []  # consistent on its own...
    assert verify(target, metadata=signed) == ["app-tools: the manifest " + str(manifest_path) + " is not the published one (its sha256 differs)"]
    # ...and metadata changed to match breaks the signature.
    document = json.loads(signed.read_text(encoding="utf-8"))
    document["layers"]["applications"][0]["manifest_hashes"]["sha256"] = hashlib.sha256(manifest_path.read_bytes()).hexdigest()
    signed.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    assert verify(target, metadata=signed) == [] and not signature_holds()


def test_local_export_carries_manifests_and_verifies(published: Path, pyz: Path) -> None:
    spec = published.parent / "venvstacks.toml"
    result = run([sys.executable, str(pyz), "local-export", str(spec)])
    assert result.returncode == 0, result.stderr
    exported = published.parent / "_export"
    assert all((exported / name / "share" / "venv" / "metadata" / "venvstacks_manifest.json").is_file() for name in LAYERS)
    _scripts_work(exported)
    assert verify(exported) == []


def test_shipped_bytecode_is_in_the_manifest_and_verifies(published: Path, pyz: Path, tmp_path: Path) -> None:
    spec = published.parent / "venvstacks.toml"
    output = tmp_path / "precompiled"
    result = run([sys.executable, str(pyz), "publish", "--precompile", "--output-dir", str(output), str(spec)])
    assert result.returncode == 0, result.stderr
    with tarfile.open(output / "app-tools.tar.xz") as archive:
        shipped = archive.extractfile("app-tools/share/venv/metadata/venvstacks_manifest.json")
        assert shipped is not None
        entries = json.loads(shipped.read())["entries"]
    assert f"{SITE}/idna/__pycache__/core.cpython-311.pyc" in entries
    target = tmp_path / "unpacked"
    _unpack_with_tar(output, target)
    assert verify(target, metadata=output / "__venvstacks__" / "venvstacks.json") == []
    pyc = target / "app-tools" / SITE / "idna" / "__pycache__" / "core.cpython-311.pyc"
    data = pyc.read_bytes()
    pyc.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert verify(target) == [f"app-tools/{SITE}/idna/__pycache__/core.cpython-311.pyc: modified (sha256 differs)"]
    assert verify(target / "app-tools") == [f"app-tools/{SITE}/idna/__pycache__/core.cpython-311.pyc: modified (sha256 differs)"]
