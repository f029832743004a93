"""`deploy` and `verify` on a really built and published stack."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from support import EXCLUDE_NEWER, PY311_RUNTIME, StackFactory, publish_stack, relink_all, run
from venvstacks.deploy.deployer import RECORD_DIR, DeployError, deploy
from venvstacks.deploy.verify import verify

pytestmark = [pytest.mark.slow, pytest.mark.network]

STACK = PY311_RUNTIME + """\
[[frameworks]]
name = "web"
runtime = "cpython-3.11"
requirements = ["idna"]

[[applications]]
name = "hello"
launch_module = "launch/hello.py"
frameworks = ["web"]
requirements = ["six"]

[[applications]]
name = "counter"
launch_module = "launch/counter.py"
runtime = "cpython-3.11"
versioned = true
requirements = []
""" + EXCLUDE_NEWER
LAYERS = ["cpython-3.11", "framework-web", "app-hello", "app-counter@1"]


@pytest.fixture(scope="module")
def published(make_stack: StackFactory, pyz: Path, runtime_archive_dir: Path) -> Path:
    files = {
        "launch/hello.py": "import idna, six\nprint('hello', idna.encode('b\\u00fccher.example').decode(), six.PY3)\n",
        "launch/counter.py": "import packaging\nprint('counter', packaging.__name__)\n",
    }
    return publish_stack(make_stack(STACK, files), pyz, runtime_archive_dir)


@pytest.fixture(scope="module")
def deployed(published: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("deploy") / "déployé ici" / "my stack"
    layers = deploy(published, target)
    assert [(layer.install_target, layer.action) for layer in layers] == [(name, "installed") for name in LAYERS]
    return target


def _snapshot(folder: Path) -> dict[str, tuple[int, int, int, str]]:
    """Every entry below `folder`: its mode, mtime, size and link target (the records folder's mtime aside: records come and go)."""
    result = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            info, rel = os.lstat(path), os.path.relpath(path, folder)
            link = os.readlink(path) if path.is_symlink() else ""
            result[rel] = (info.st_mode, 0 if rel == RECORD_DIR else info.st_mtime_ns, info.st_size, link)
    return result


def test_deployed_apps_run_and_verify_cleanly(published: Path, deployed: Path) -> None:
    result = run([str(deployed / "app-hello" / "bin" / "python"), "-m", "hello"])
    assert (result.returncode, result.stdout, result.stderr) == (0, "hello xn--bcher-kva.example True\n", "")
    result = run([str(deployed / "app-counter@1" / "bin" / "python"), "-m", "counter"])
    assert (result.returncode, result.stdout) == (0, "counter packaging\n")
    assert verify(deployed) == []
    before = _snapshot(deployed)
    assert {layer.action for layer in deploy(published, deployed)} == {"unchanged"}
    assert _snapshot(deployed) == before


def test_a_tampered_archive_is_refused(published: Path, deployed: Path, tmp_path: Path) -> None:
    copy = tmp_path / "artifacts"
    shutil.copytree(published, copy)
    archive = copy / "framework-web.tar.xz"
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0x01
    archive.write_bytes(bytes(data))
    before = _snapshot(deployed)
    with pytest.raises(DeployError, match="framework-web.tar.xz: sha256 is"):
        deploy(copy, deployed)
    assert _snapshot(deployed) == before
    with pytest.raises(DeployError, match="framework-web.tar.xz"):
        deploy(copy, tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()


def test_verify_reports_a_tampered_deployed_file(published: Path, tmp_path: Path) -> None:
    target = tmp_path / "only the counter ✓"
    layers = deploy(published, target, include=["app-counter*"])
    assert [layer.install_target for layer in layers] == ["cpython-3.11", "app-counter@1"]
    result = run([str(target / "app-counter@1" / "bin" / "python"), "-m", "counter"])
    assert (result.returncode, result.stdout) == (0, "counter packaging\n")
    assert verify(target) == []
    init = next((target / "cpython-3.11" / "lib" / "python3.11" / "site-packages" / "packaging").glob("__init__.py"))
    init.write_text(init.read_text(encoding="utf-8") + "# tampered\n", encoding="utf-8")
    rel = init.relative_to(target).as_posix()
    problems = verify(target)
    assert len(problems) == 1 and problems[0].startswith(f"{rel}: modified (")


SITE = "lib/python3.11/site-packages"


def _tamper_pth(target: Path) -> str:
    (target / "app-hello" / SITE / "zz-evil.pth").write_text("import os; os.system('true')\n", encoding="utf-8")
    return f"app-hello/{SITE}/zz-evil.pth: added after deployment (a file)"


def _tamper_wrapper(target: Path) -> str:
    wrapper = target / "app-hello" / "bin" / "python"
    wrapper.write_text(wrapper.read_text(encoding="utf-8").replace("set -eu\n", "set -eu\ntrue evil\n"), encoding="utf-8")
    return "app-hello/bin/python: modified ("


def _tamper_sitecustomize(target: Path) -> str:
    with (target / "app-hello" / SITE / "sitecustomize.py").open("a", encoding="utf-8") as stream:
        stream.write("import os\n")
    return f"app-hello/{SITE}/sitecustomize.py: modified ("


def _tamper_bytecode(target: Path) -> str:
    pyc = target / "app-hello" / SITE / "__pycache__" / "hello.cpython-311.pyc"
    data = pyc.read_bytes()
    pyc.write_bytes(data[:16] + compile("print('evil')", "hello.py", "exec").co_code + data[16:][5:])
    return f"app-hello/{SITE}/__pycache__/hello.cpython-311.pyc: modified ("


def _tamper_pyvenv_cfg(target: Path) -> str:
    cfg = target / "app-hello" / "pyvenv.cfg"
    cfg.write_text(cfg.read_text(encoding="utf-8").replace("include-system-site-packages = false", "include-system-site-packages = true"), encoding="utf-8")
    return "app-hello/pyvenv.cfg: modified ("


def _tamper_setuid(target: Path) -> str:
    binary = Path(os.path.realpath(target / "cpython-3.11" / "bin" / "python3"))
    binary.chmod(0o4755)
    return f"cpython-3.11/bin/{binary.name}: mode 4755 (setuid), 0755 when deployed"


TAMPERINGS = {f.__name__.removeprefix("_tamper_"): f for f in (_tamper_pth, _tamper_wrapper, _tamper_sitecustomize, _tamper_bytecode, _tamper_pyvenv_cfg, _tamper_setuid)}


@pytest.mark.parametrize("how", sorted(TAMPERINGS))
def test_verify_reports_tampering_that_runs_code(pyz: Path, published: Path, tmp_path: Path, how: str) -> None:
    target = tmp_path / "deployed"
    deploy(published, target, include=["app-hello"])
    assert verify(target) == []
    expected = TAMPERINGS[how](target)
    problems = verify(target)
    assert len(problems) == 1 and problems[0].startswith(expected), problems
    result = run([sys.executable, str(pyz), "verify", str(target)])
    assert (result.returncode, result.stderr) == (1, f"error: {problems[0]}\n")


def test_verify_checks_a_moved_deployment_against_what_relinking_writes_there(published: Path, tmp_path: Path) -> None:
    target = tmp_path / "first place"
    deploy(published, target, include=["app-hello"])
    moved = tmp_path / "moved, later" / "here"
    moved.parent.mkdir()
    target.rename(moved)
    problems = verify(moved)  # not relinked yet: the files naming the old place are stale
    assert "app-hello/pyvenv.cfg: modified (not what relinking writes where the layer is now)" in problems
    assert any(p.startswith("cpython-3.11/lib/python3.11/_sysconfigdata_") and p.endswith("not relinked where the layer is now (run its postinstall.py)") for p in problems), problems
    relink_all(moved, ["cpython-3.11", "framework-web", "app-hello"])
    assert verify(moved) == []
    result = run([str(moved / "app-hello" / "bin" / "python"), "-m", "hello"])
    assert (result.returncode, result.stdout) == (0, "hello xn--bcher-kva.example True\n")
    # Tampering is still found, location-dependent files included.
    expected = [TAMPERINGS[how](moved) for how in ("pyvenv_cfg", "wrapper", "pth")]
    (sysconfigdata,) = (moved / "cpython-3.11" / "lib" / "python3.11").glob("_sysconfigdata_*.py")
    with sysconfigdata.open("a", encoding="utf-8") as stream:
        stream.write("import os\n")
    expected.append(f"{sysconfigdata.relative_to(moved).as_posix()}: modified (sha256 differs, even relinked back to where it was deployed)")
    expected.append(f"cpython-3.11/lib/python3.11/__pycache__/{sysconfigdata.stem}.cpython-311.pyc: modified (not the bytecode of its source)")
    problems = verify(moved)
    assert len(problems) == 5 and all(any(p.startswith(e) for p in problems) for e in expected), problems


def test_the_documented_installer_sketch_deploys_tagged_outputs(pyz: Path, published: Path, tmp_path: Path) -> None:
    """The Python sketch in docs/deploying.md, run on `publish --tag-outputs` output, whose manifest is venvstacks-<platform>.json."""
    spec = published.parent / "venvstacks.toml"
    tagged = tmp_path / "tagged"
    result = run([sys.executable, str(pyz), "publish", "--tag-outputs", "--output-dir", str(tagged), str(spec)])
    assert result.returncode == 0, result.stderr
    manifests = [p.name for p in (tagged / "__venvstacks__").glob("venvstacks*.json")]
    assert len(manifests) == 1 and manifests[0].startswith("venvstacks-"), manifests
    page = (Path(__file__).parents[2] / "docs" / "deploying.md").read_text(encoding="utf-8")
    sketch = tmp_path / "install.py"
    sketch.write_text(page.split("The whole procedure in Python", 1)[1].split("```python\n", 1)[1].split("```", 1)[0], encoding="utf-8")
    target = tmp_path / "installed"
    result = run([sys.executable, str(sketch), str(tagged), str(target)])
    assert result.returncode == 0, result.stderr
    result = run([str(target / "app-hello" / "bin" / "python"), "-m", "hello"])
    assert (result.returncode, result.stdout) == (0, "hello xn--bcher-kva.example True\n")
