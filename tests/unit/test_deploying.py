"""`deploy` and `verify` on small hand-made layer archives (a shell script stands in for the runtime's Python)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support import ROOT, without_progress
from venvstacks.deploy.deployer import RECORD_DIR, DeployError, deploy
from venvstacks.deploy.verify import verify
from venvstacks.errors import UnsafeArchiveError, VenvStacksError

RUNTIME = "cpython-3.11"
TAG = sys.implementation.cache_tag
LINK_TO_RUNTIME = f"../../{RUNTIME}/bin/python3"

# Relinking writes the regenerated pyvenv.cfg; each run logs the layer and its arguments where the test says.
POSTINSTALL = """\
import os, sys
here = os.path.dirname(os.path.abspath(__file__))
if "--compile-only" not in sys.argv:
    with open(os.path.join(here, "pyvenv.cfg"), "w") as stream:
        stream.write("home = somewhere\\n")
with open(os.environ["DEPLOY_TEST_LOG"], "a", encoding="utf-8") as stream:
    stream.write(" ".join([os.path.basename(here)] + sys.argv[1:]) + "\\n")
"""


@dataclass(frozen=True)
class Link:
    target: str


Extra = tuple[tarfile.TarInfo, bytes | None]


def _write_archive(path: Path, root: str, files: Mapping[str, bytes | str | Link], extra: Sequence[Extra] = ()) -> None:
    with tarfile.open(path, "w:gz") as tar:
        top = tarfile.TarInfo(root)
        top.type, top.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(top)
        for rel, content in files.items():
            info = tarfile.TarInfo(f"{root}/{rel}")
            if isinstance(content, Link):
                info.type, info.linkname = tarfile.SYMTYPE, content.target
                tar.addfile(info)
                continue
            data = content.encode("utf-8") if isinstance(content, str) else content
            info.size, info.mode = len(data), 0o755 if rel.startswith("bin/") else 0o644
            tar.addfile(info, io.BytesIO(data))
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


class Stack:
    """Archives and a `venvstacks.json` in an artifacts folder, as publish writes them."""

    def __init__(self, artifacts: Path) -> None:
        self.artifacts = artifacts
        self.layers: dict[str, list[dict[str, Any]]] = {"runtimes": [], "frameworks": [], "applications": []}

    def add(self, category: str, name: str, files: Mapping[str, bytes | str | Link], *, install_target: str | None = None,
            required: Sequence[str] = (), build: int = 1, extra: Sequence[Extra] = ()) -> dict[str, Any]:  # fmt: skip
        target = install_target or name
        archive = self.artifacts / f"{target}.tar.gz"
        self.artifacts.mkdir(parents=True, exist_ok=True)
        _write_archive(archive, target, {"postinstall.py": POSTINSTALL, **files}, extra)
        data = archive.read_bytes()
        entry: dict[str, Any] = {
            "layer_name": name, "install_target": target, "runtime_layer": RUNTIME, "archive_name": archive.name,
            "archive_size": len(data), "archive_hashes": {"sha256": hashlib.sha256(data).hexdigest()},
            "archive_build": build, "lock_version": 1,
        }  # fmt: skip
        if category != "runtimes":
            entry["required_layers"] = list(required)
        group = self.layers[category]
        names = [e["layer_name"] for e in group]
        if name in names:
            group[names.index(name)] = entry  # a new build keeps its place
        else:
            group.append(entry)
        meta = self.artifacts / "__venvstacks__" / "venvstacks.json"
        meta.parent.mkdir(exist_ok=True)
        meta.write_text(json.dumps({"layers": self.layers}, indent=2), encoding="utf-8")
        return entry

    def archive(self, install_target: str) -> Path:
        return self.artifacts / f"{install_target}.tar.gz"


def _runtime_files() -> dict[str, bytes | str | Link]:
    return {"bin/python3": f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n', "lib/stdlib.py": "STD = 1\n"}


def _upper_files(module: str, text: str) -> dict[str, bytes | str | Link]:
    return {"bin/python_": Link(LINK_TO_RUNTIME), f"lib/{module}.py": text}


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "postinstall.log"
    monkeypatch.setenv("DEPLOY_TEST_LOG", str(path))
    return path


@pytest.fixture
def stack(tmp_path: Path, log: Path) -> Stack:
    stack = Stack(tmp_path / "artifacts")
    stack.add("runtimes", RUNTIME, _runtime_files())
    stack.add("frameworks", "framework-web", _upper_files("web", "WEB = 1\n"))
    stack.add("applications", "app-hello", _upper_files("hello", "HELLO = 1\n"), required=["framework-web"])
    stack.add("applications", "app-counter", _upper_files("counter", "COUNT = 1\n"), install_target="app-counter@1")
    return stack


@pytest.fixture
def target(tmp_path: Path) -> Path:
    return tmp_path / "deployed here"


def _runs(log: Path) -> list[str]:
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


def _ran(log: Path) -> list[str]:
    """The layers relinked (all at once, so sorted by name)."""
    return sorted(line.split()[0] for line in _runs(log) if line.endswith(" --no-compile"))


def _snapshot(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Every entry below `folder`: mtime, size and link target (not the mtime of the records folder, whose files come and go)."""
    if not folder.exists():
        return {}
    result = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            info = os.lstat(path)
            link = os.readlink(path) if path.is_symlink() else ""
            rel = str(path.relative_to(folder))
            result[rel] = (0 if rel == RECORD_DIR else info.st_mtime_ns, info.st_size, link)
    return result


def _hidden(target: Path) -> list[str]:
    return sorted(p.name for p in target.iterdir() if p.name.startswith(".") and p.name != RECORD_DIR)


def test_the_compile_steps_get_deploys_jobs(stack: Stack, target: Path, log: Path) -> None:
    deploy(stack.artifacts, target, jobs=2)
    assert sorted(" ".join(line.split()[1:]) for line in _runs(log))[:4] == ["--compile-only --jobs 2"] * 4


def test_deploys_every_layer_lowest_first(stack: Stack, target: Path, log: Path) -> None:
    deployed = deploy(stack.artifacts, target)
    assert [(d.layer_name, d.install_target, d.action) for d in deployed] == [
        (RUNTIME, RUNTIME, "installed"),
        ("framework-web", "framework-web", "installed"),
        ("app-hello", "app-hello", "installed"),
        ("app-counter", "app-counter@1", "installed"),
    ]
    assert [d.path for d in deployed] == [target / d.install_target for d in deployed]
    assert _ran(log) == sorted([RUNTIME, "framework-web", "app-hello", "app-counter@1"])
    runs = _runs(log)  # each layer compiled where it was unpacked, then all relinked in place
    assert [line.split()[1:] for line in runs] == [["--compile-only", "--jobs", "0"]] * 4 + [["--no-compile"]] * 4
    compiled_in = sorted(line.split()[0] for line in runs[:4])
    assert [re.sub(r"\.partial-.*", "", name) for name in compiled_in] == sorted(f".{name}" for name in _ran(log))
    assert sorted(p.name for p in target.iterdir()) == sorted([RECORD_DIR, RUNTIME, "framework-web", "app-hello", "app-counter@1"])
    assert (target / "app-hello" / "lib" / "hello.py").read_text(encoding="utf-8") == "HELLO = 1\n"
    result = subprocess.run([target / "app-hello" / "bin" / "python_", "-c", "print(6 * 7)"], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout) == (0, "42\n")
    record = json.loads((target / RECORD_DIR / "app-hello.json").read_text(encoding="utf-8"))
    assert record["archive_sha256"] == stack.layers["applications"][0]["archive_hashes"]["sha256"]
    assert record["required_layers"] == ["framework-web"] and record["runtime_layer"] == RUNTIME
    # Every entry, as it is once relinked: pyvenv.cfg (written by the post-install step) included.
    entries = record["entries"]
    # The runtime's Python (this one here) compiled the sources while the layer was unpacked.
    compiled = ["lib/__pycache__", f"lib/__pycache__/hello.{TAG}.pyc"]
    assert sorted(entries) == sorted([".", "bin", "bin/python_", "lib", *compiled, "lib/hello.py", "postinstall.py", "pyvenv.cfg"])
    assert entries["bin/python_"] == ["link", LINK_TO_RUNTIME] and entries["lib"] == ["folder", 0o755]
    assert entries["pyvenv.cfg"] == ["file", 0o644, 17, hashlib.sha256(b"home = somewhere\n").hexdigest()]
    assert entries["lib/hello.py"] == ["file", 0o644, 10, hashlib.sha256(b"HELLO = 1\n").hexdigest()]
    assert record["location"] == str(target)
    assert verify(target) == []


def test_deploying_again_changes_nothing(stack: Stack, target: Path, log: Path) -> None:
    deploy(stack.artifacts, target)
    before, ran = _snapshot(target), _ran(log)
    again = deploy(stack.artifacts, target)
    assert {d.action for d in again} == {"unchanged"}
    assert _snapshot(target) == before and _ran(log) == ran


@pytest.mark.parametrize("damage", ["truncated", "appended", "flipped", "missing"])
def test_archives_not_matching_their_metadata_are_refused(stack: Stack, target: Path, log: Path, damage: str) -> None:
    archive = stack.archive("app-hello")  # the last layer: nothing else gets deployed either
    data = archive.read_bytes()
    if damage == "missing":
        archive.unlink()
    else:
        damaged = {"truncated": data[:-10], "appended": data + b"x", "flipped": data[:50] + bytes([data[50] ^ 1]) + data[51:]}
        archive.write_bytes(damaged[damage])
    with pytest.raises(DeployError) as caught:
        deploy(stack.artifacts, target)
    message = str(caught.value)
    assert str(archive) in message
    expected = {"truncated": "bytes, but the metadata says", "appended": "bytes, but the metadata says", "flipped": "sha256 is", "missing": "missing"}
    assert expected[damage] in message
    assert not target.exists() and _ran(log) == []


def test_a_damaged_archive_leaves_an_existing_deployment_alone(stack: Stack, target: Path) -> None:
    deploy(stack.artifacts, target)
    before = _snapshot(target)
    stack.archive(RUNTIME).write_bytes(b"not an archive")
    with pytest.raises(DeployError, match="cpython-3.11.tar.gz"):
        deploy(stack.artifacts, target)
    assert _snapshot(target) == before


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", data: bytes | None = None) -> Extra:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    if data is not None:
        info.size = len(data)
    return info, data


UNSAFE = {
    "absolute path": (_member("/tmp/evil", data=b"x"), "is absolute"),
    "dot-dot": (_member("framework-web/../evil", data=b"x"), "'..' component"),
    "another layer's folder": (_member(f"{RUNTIME}/bin/evil", data=b"x"), "is not inside 'framework-web/'"),
    "absolute symlink": (_member("framework-web/lib/abs", tarfile.SYMTYPE, "/etc/passwd"), "symbolic link to the absolute path"),
    "symlink leaving the target": (_member("framework-web/lib/up", tarfile.SYMTYPE, "../../../outside"), "leads outside the deployment"),
    "symlink to the target": (_member("framework-web/up", tarfile.SYMTYPE, ".."), "leads outside the deployment"),
    "hard link to another layer": (_member("framework-web/lib/hl", tarfile.LNKTYPE, f"{RUNTIME}/bin/python3"), "is not inside"),
    "hard link to a later file": (_member("framework-web/lib/hl", tarfile.LNKTYPE, "framework-web/lib/none"), "not a file extracted"),
    "device": (_member("framework-web/dev", tarfile.CHRTYPE), "device"),
    "fifo": (_member("framework-web/fifo", tarfile.FIFOTYPE), "FIFO"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_members_are_refused_and_nothing_is_left(stack: Stack, target: Path, log: Path, case: str) -> None:
    member, reason = UNSAFE[case]
    stack.add("frameworks", "framework-web", _upper_files("web", "WEB = 1\n"), extra=[member])
    with pytest.raises(UnsafeArchiveError, match="framework-web.tar.gz") as caught:
        deploy(stack.artifacts, target)
    assert reason in str(caught.value)
    assert not target.exists() and _ran(log) == []
    assert not (stack.artifacts.parent / "outside").exists()


def test_symlinks_through_a_link_out_of_the_target_are_refused(stack: Stack, target: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    target.mkdir()
    (target / "exit").symlink_to(tmp_path / "elsewhere")  # lexically inside, really outside
    member = _member("framework-web/lib/sneaky", tarfile.SYMTYPE, "../../exit/secret")
    stack.add("frameworks", "framework-web", _upper_files("web", "WEB = 1\n"), extra=[member])
    with pytest.raises(UnsafeArchiveError, match="resolves outside the deployment folder"):
        deploy(stack.artifacts, target)
    assert sorted(p.name for p in target.iterdir()) == ["exit"]


def test_an_existing_non_layer_entry_is_not_replaced(stack: Stack, target: Path) -> None:
    target.mkdir()
    (target / "framework-web").write_text("mine", encoding="utf-8")
    with pytest.raises(DeployError, match="is not a layer folder"):
        deploy(stack.artifacts, target)
    assert sorted(p.name for p in target.iterdir()) == ["framework-web"]


CHECK_OLD_ONE = """\
import glob, os, sys
here = os.path.dirname(os.path.abspath(__file__))
target = os.path.dirname(here)
# When relinking, the new build is complete, and the old one is intact beside it.
if sys.argv[1:] == ["--no-compile"]:
    with open(os.path.join(here, "lib", "hello.py")) as stream:
        assert stream.read() == "HELLO = 2\\n"
    (aside,) = glob.glob(os.path.join(target, ".app-hello.old-*"))
    old = os.path.join(aside, "layer")
    with open(os.path.join(old, "lib", "hello.py")) as stream:
        assert stream.read() == "HELLO = 1\\n"
    assert os.path.exists(os.path.join(old, "pyvenv.cfg"))
""" + POSTINSTALL


def test_a_new_build_replaces_the_old_one(stack: Stack, target: Path, log: Path) -> None:
    deploy(stack.artifacts, target)
    files = {**_upper_files("hello", "HELLO = 2\n"), "postinstall.py": CHECK_OLD_ONE}
    entry = stack.add("applications", "app-hello", files, required=["framework-web"], build=2)
    deployed = deploy(stack.artifacts, target)
    assert {d.install_target: d.action for d in deployed} == {
        RUNTIME: "unchanged", "framework-web": "unchanged", "app-hello": "replaced", "app-counter@1": "unchanged"
    }
    assert (target / "app-hello" / "lib" / "hello.py").read_text(encoding="utf-8") == "HELLO = 2\n"
    assert _hidden(target) == [] and _ran(log).count("app-hello") == 2
    record = json.loads((target / RECORD_DIR / "app-hello.json").read_text(encoding="utf-8"))
    assert record["archive_build"] == 2 and record["archive_sha256"] == entry["archive_hashes"]["sha256"]
    assert verify(target) == []


RELINK_FAILS = "import sys\nif sys.argv[1:] == ['--no-compile']:\n    sys.exit('relinking failed')\n"


def test_a_failing_post_install_step_restores_the_old_build(stack: Stack, target: Path) -> None:
    deploy(stack.artifacts, target)
    before = _snapshot(target)
    files = {**_upper_files("hello", "HELLO = 2\n"), "postinstall.py": RELINK_FAILS}
    stack.add("applications", "app-hello", files, required=["framework-web"], build=2)
    with pytest.raises(DeployError, match="nothing was deployed") as caught:
        deploy(stack.artifacts, target)
    assert "relinking failed" in str(caught.value)
    assert _snapshot(target) == before  # the same folder, records and all
    assert verify(target) == []


def test_a_failing_post_install_step_deploys_nothing(stack: Stack, target: Path) -> None:
    deploy(stack.artifacts, target, include=[RUNTIME])
    before = _snapshot(target)
    files = {**_upper_files("hello", "HELLO = 2\n"), "postinstall.py": "import sys\nif sys.argv[1:] == ['--no-compile']:\n    raise SystemExit(3)\n"}
    stack.add("applications", "app-hello", files, required=["framework-web"], build=2)
    stack.add("runtimes", RUNTIME, {**_runtime_files(), "lib/stdlib.py": "STD = 2\n"}, build=2)
    with pytest.raises(DeployError, match="nothing was deployed .*exit status 3"):
        deploy(stack.artifacts, target)
    # All or nothing: the new runtime and framework relinked fine, yet the deployment is as it was.
    assert _snapshot(target) == before and _hidden(target) == []
    assert sorted(p.name for p in (target / RECORD_DIR).iterdir()) == [f"{RUNTIME}.json"]
    assert verify(target) == []


def test_a_failing_compile_step_deploys_nothing(stack: Stack, target: Path, log: Path) -> None:
    deploy(stack.artifacts, target)
    before, relinked = _snapshot(target), _ran(log)
    compile_fails = "import sys\nif '--compile-only' in sys.argv:\n    sys.exit('cannot compile')\n"
    stack.add("applications", "app-hello", {**_upper_files("hello", "HELLO = 2\n"), "postinstall.py": compile_fails}, build=2)
    stack.add("frameworks", "framework-web", _upper_files("web", "WEB = 2\n"), build=2)
    with pytest.raises(DeployError, match="compiling the bytecode of layer 'app-hello' failed") as caught:
        deploy(stack.artifacts, target)
    assert "cannot compile" in str(caught.value)
    assert _snapshot(target) == before and _ran(log) == relinked and _hidden(target) == []  # not even the framework


def test_layers_shipping_bytecode_are_not_compiled(tmp_path: Path, target: Path, log: Path) -> None:
    stack = Stack(tmp_path / "shipped")
    config = '{"precompiled": true}'
    stack.add("runtimes", RUNTIME, {**_runtime_files(), "share/venv/metadata/venvstacks_layer.json": config})
    stack.add("frameworks", "framework-web", _upper_files("web", "WEB = 1\n"))  # compiled as usual
    deploy(stack.artifacts, target)
    runs = _runs(log)
    assert [line.split()[1] for line in runs] == ["--compile-only", "--no-compile", "--no-compile"]
    assert runs[0].startswith(".framework-web.partial-")


def test_leftovers_of_an_interrupted_deployment_are_cleared(stack: Stack, target: Path) -> None:
    for name in (".app-hello.partial-abc123", ".app-hello.old-x_y"):  # deploy's own: they hold its marker
        (target / name / "lib").mkdir(parents=True)
        (target / name / ".venvstacks-partial").write_text("12345\n", encoding="utf-8")
    (target / RECORD_DIR).mkdir()
    (target / RECORD_DIR / ".app-hello.json.k2j3.partial").write_text("{", encoding="utf-8")
    deploy(stack.artifacts, target)
    assert _hidden(target) == []
    assert sorted(p.name for p in (target / RECORD_DIR).iterdir()) == sorted(f"{n}.json" for n in (RUNTIME, "framework-web", "app-hello", "app-counter@1"))


def test_hidden_folders_without_the_marker_are_the_users(stack: Stack, target: Path, tmp_path: Path) -> None:
    users = [".app-hello.partial-abc123", ".notes.old-2024", ".x.failed-y"]
    for name in users:
        (target / name).mkdir(parents=True)
        (target / name / "mine.txt").write_text("keep me\n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".venvstacks-partial").write_text("1\n", encoding="utf-8")
    (target / ".app-hello.old-x_y").symlink_to(elsewhere)  # a link to a marked folder is not deploy's either
    deploy(stack.artifacts, target)
    assert _hidden(target) == sorted([*users, ".app-hello.old-x_y"])
    assert all((target / name / "mine.txt").read_text(encoding="utf-8") == "keep me\n" for name in users)
    assert sorted(p.name for p in elsewhere.iterdir()) == [".venvstacks-partial"]


@pytest.mark.parametrize(
    ("include", "expected"),
    [
        (["app-hello"], [RUNTIME, "framework-web", "app-hello"]),
        (["app-*"], [RUNTIME, "framework-web", "app-hello", "app-counter@1"]),
        (["app-counter"], [RUNTIME, "app-counter@1"]),  # by layer name
        (["*@1"], [RUNTIME, "app-counter@1"]),  # by install target
        (["framework-*", RUNTIME], [RUNTIME, "framework-web"]),
    ],
)
def test_include_adds_the_layers_needed(stack: Stack, target: Path, log: Path, include: list[str], expected: list[str]) -> None:
    assert [d.install_target for d in deploy(stack.artifacts, target, include=include)] == expected
    assert _ran(log) == sorted(expected)
    assert sorted(p.name for p in target.iterdir()) == sorted([RECORD_DIR, *expected])


def test_include_patterns_must_match(stack: Stack, target: Path) -> None:
    with pytest.raises(DeployError, match="no layer of the stack matches 'app-nope'"):
        deploy(stack.artifacts, target, include=["app-*", "app-nope"])
    assert not target.exists()


def test_needed_layers_may_be_deployed_already(tmp_path: Path, stack: Stack, target: Path, log: Path) -> None:
    deploy(stack.artifacts, target, include=["framework-web"])
    partial = Stack(tmp_path / "app only")  # as publishing only the app would list it
    partial.add("applications", "app-hello", _upper_files("hello", "HELLO = 1\n"), required=["framework-web"])
    assert [d.action for d in deploy(partial.artifacts, target)] == ["installed"]
    with pytest.raises(DeployError, match="needs 'cpython-3.11', which is neither in the manifest nor deployed"):
        deploy(partial.artifacts, tmp_path / "elsewhere")


def test_manifest_choice(stack: Stack, target: Path) -> None:
    meta = stack.artifacts / "__venvstacks__"
    (meta / "venvstacks.json").rename(meta / "venvstacks-linux_x86_64.json")
    assert len(deploy(stack.artifacts, target)) == 4  # the only tagged manifest
    shutil.copy(meta / "venvstacks-linux_x86_64.json", meta / "venvstacks-macosx_arm64.json")
    with pytest.raises(DeployError, match="several stack manifests"):
        deploy(stack.artifacts, target)
    assert len(deploy(stack.artifacts, target, platform_manifest="linux_x86_64")) == 4
    assert len(deploy(stack.artifacts, target, platform_manifest="venvstacks-macosx_arm64.json")) == 4
    with pytest.raises(DeployError, match="no stack manifest 'win_amd64'"):
        deploy(stack.artifacts, target, platform_manifest="win_amd64")
    with pytest.raises(DeployError, match="no stack manifest"):
        deploy(target, target)
    # The same from the command line.
    from venvstacks.cli.main import main

    assert main(["deploy", "-q", str(stack.artifacts), "--target", str(target), "--manifest", "linux_x86_64"]) == 0
    assert main(["deploy", "-q", str(stack.artifacts), "--target", str(target)]) == 1


def test_manifests_without_archive_fields_are_refused(stack: Stack, target: Path) -> None:
    path = stack.artifacts / "__venvstacks__" / "venvstacks.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    del data["layers"]["frameworks"][0]["archive_hashes"]
    data["layers"]["applications"][0]["install_target"] = "../escape"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(DeployError, match="archive_hashes.sha256") as caught:
        deploy(stack.artifacts, target)
    assert isinstance(caught.value, VenvStacksError) and not target.exists()
    del data["layers"]["frameworks"][0]
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(DeployError, match="install_target, runtime_layer and archive_name must be plain names"):
        deploy(stack.artifacts, target)


def test_verify_reports_changed_and_missing_files(stack: Stack, target: Path) -> None:
    deploy(stack.artifacts, target)
    pyc_size = (target / "app-hello" / "lib" / "__pycache__" / f"hello.{TAG}.pyc").stat().st_size
    (target / "app-hello" / "lib" / "hello.py").write_text("HELLO = 9\n", encoding="utf-8")  # same size
    (target / "framework-web" / "lib" / "web.py").write_text("WEB = 1000\n", encoding="utf-8")
    (target / RUNTIME / "lib" / "stdlib.py").unlink()
    (target / "app-counter@1" / "lib" / "counter.py").unlink()
    (target / "app-counter@1" / "lib" / "counter.py").symlink_to("../postinstall.py")
    # What the post-install step regenerates is checked too, and added files are reported.
    (target / "app-hello" / "pyvenv.cfg").write_text("changed\n", encoding="utf-8")
    # Bytecode compiled while deploying (by the runtime's Python, this one here) is checked as well.
    (target / "app-hello" / "lib" / "__pycache__" / f"hello.{TAG}.pyc").write_bytes(b"\0")
    (target / "app-hello" / "lib" / "__pycache__" / f"other.{TAG}.pyc").write_bytes(b"\0")
    (target / "app-hello" / "lib" / "extra.pth").write_text("import os\n", encoding="utf-8")
    (target / RUNTIME / "bin" / "python3").chmod(0o4755)
    (target / "framework-web" / "lib").chmod(0o777)
    (target / "app-counter@1").chmod(0o775)
    (target / "framework-web" / "bin" / "python_").unlink()
    (target / "framework-web" / "bin" / "python_").symlink_to("../lib/web.py")
    assert verify(target) == [
        "app-counter@1: mode 0775, 0755 when deployed",
        "app-counter@1/lib/counter.py: a link now, a file when deployed",
        f"app-hello/lib/__pycache__/hello.{TAG}.pyc: modified (1 bytes, {pyc_size} when deployed)",
        f"app-hello/lib/__pycache__/other.{TAG}.pyc: added after deployment (a file)",
        "app-hello/lib/extra.pth: added after deployment (a file)",
        "app-hello/lib/hello.py: modified (sha256 differs)",
        "app-hello/pyvenv.cfg: modified (8 bytes, 17 when deployed)",
        "cpython-3.11/bin/python3: mode 4755 (setuid), 0755 when deployed",
        "cpython-3.11/lib/stdlib.py: missing",
        f"framework-web/bin/python_: link to '../lib/web.py', to {LINK_TO_RUNTIME!r} when deployed",
        "framework-web/lib: mode 0777 (world-writable), 0755 when deployed",
        "framework-web/lib/web.py: modified (11 bytes, 8 when deployed)",
    ]


def test_verify_reports_missing_layers_and_broken_links(stack: Stack, target: Path, tmp_path: Path) -> None:
    deploy(stack.artifacts, target)
    shutil.rmtree(target / "framework-web")
    (target / "app-counter@1" / "lib" / "gone").symlink_to("nothing-here")
    (target / "app-counter@1" / "lib" / "out").symlink_to(tmp_path)
    assert verify(target) == [
        "app-counter@1/lib/gone: added after deployment (a link)",
        "app-counter@1/lib/gone: broken link to 'nothing-here'",
        "app-counter@1/lib/out: added after deployment (a link)",
        f"app-counter@1/lib/out: link to {str(tmp_path)!r} leads outside the deployment folder",
        "app-hello: the required layer 'framework-web' is not deployed",
        "framework-web: the layer folder is missing",
    ]
    shutil.rmtree(target / RUNTIME)
    problems = verify(target)
    assert "app-hello: the required layer 'cpython-3.11' is not deployed" in problems
    assert f"app-hello/bin/python_: broken link to {LINK_TO_RUNTIME!r}" in problems
    assert "cpython-3.11: the layer folder is missing" in problems


def test_verify_refuses_records_it_cannot_trust(stack: Stack, target: Path, tmp_path: Path) -> None:
    deploy(stack.artifacts, target)
    records = target / RECORD_DIR
    old = json.loads((records / "app-hello.json").read_text(encoding="utf-8"))
    del old["entries"], old["location"]
    old["files"] = {"lib/hello.py": [10, "0" * 64]}  # as an older venvstacks recorded it
    (records / "app-hello.json").write_text(json.dumps(old), encoding="utf-8")
    damaged = json.loads((records / "framework-web.json").read_text(encoding="utf-8"))
    damaged["entries"]["../../etc/passwd"] = ["file", 0o644, 1, "0" * 64]
    (records / "framework-web.json").write_text(json.dumps(damaged), encoding="utf-8")
    (tmp_path / "copy.json").write_bytes((records / "app-counter@1.json").read_bytes())
    (records / "app-counter@1.json").unlink()
    (records / "app-counter@1.json").symlink_to(tmp_path / "copy.json")
    assert verify(target) == [
        f"app-counter@1: the deployment record {records / 'app-counter@1.json'} is a symbolic link: refusing to trust it",
        f"app-hello: recorded by an older venvstacks, which kept less: deploy it again to record all of its files ({records / 'app-hello.json'})",
        f"framework-web: the deployment record {records / 'framework-web.json'} is damaged",
    ]
    (records / "app-counter@1.json").unlink()
    (records / "framework-web.json").unlink()
    assert {d.install_target: d.action for d in deploy(stack.artifacts, target)} == {
        RUNTIME: "unchanged", "framework-web": "replaced", "app-hello": "replaced", "app-counter@1": "replaced"
    }
    assert verify(target) == []


def test_verify_without_records(tmp_path: Path) -> None:
    expected = f"{tmp_path}: no deployed layers: no records ({RECORD_DIR}) and no layer manifests (share/venv/metadata/venvstacks_manifest.json)"
    assert verify(tmp_path) == [expected]


def test_only_tar_archives_are_deployed(stack: Stack, target: Path) -> None:
    path = stack.artifacts / "__venvstacks__" / "venvstacks.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["layers"]["frameworks"][0]["archive_name"] = "framework-web.zip"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(DeployError, match=r"framework-web.zip: only tar archives \(.tar.xz, .tar.gz"):
        deploy(stack.artifacts, target)
    assert not target.exists()


def test_one_deployment_at_a_time(stack: Stack, target: Path) -> None:
    import fcntl

    target.mkdir()
    fd = os.open(target, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(DeployError, match="another deployment into .* is running"):
            deploy(stack.artifacts, target)
    finally:
        os.close(fd)
    assert list(target.iterdir()) == []
    assert len(deploy(stack.artifacts, target)) == 4


def test_the_target_must_be_a_folder(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("", encoding="utf-8")
    with pytest.raises(DeployError, match="it is not a folder"):
        deploy(stack.artifacts, tmp_path / "file")


def _cli(*args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """`venvstacks ARGS...` from this checkout, started in a process of its own."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    command = [sys.executable, "-m", "venvstacks", *args]
    return subprocess.Popen(command, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


def test_records_are_never_kept_through_a_link(stack: Stack, target: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target.mkdir()
    (target / RECORD_DIR).symlink_to(elsewhere)
    process = _cli("deploy", str(stack.artifacts), "--target", str(target))
    _, err = process.communicate()
    expected = f"error: {target / RECORD_DIR} is a symbolic link, not the folder deploy keeps its records in: refusing to use it (remove it)\n"
    assert (process.returncode, without_progress(err)) == (1, expected)
    assert list(elsewhere.iterdir()) == [] and sorted(p.name for p in target.iterdir()) == [RECORD_DIR]
    assert verify(target) == [expected.removeprefix("error: ").rstrip()]
    # Nor through a record that is a link.
    (target / RECORD_DIR).unlink()
    deploy(stack.artifacts, target)
    outside = tmp_path / "outside.json"
    outside.write_text("{}", encoding="utf-8")
    record = target / RECORD_DIR / "app-hello.json"
    record.unlink()
    record.symlink_to(outside)
    stack.add("applications", "app-hello", _upper_files("hello", "HELLO = 2\n"), required=["framework-web"], build=2)
    with pytest.raises(DeployError, match=f"^{re.escape(str(record))} is a symbolic link: refusing to read or replace"):
        deploy(stack.artifacts, target)
    assert outside.read_text(encoding="utf-8") == "{}"
    assert (target / "app-hello" / "lib" / "hello.py").read_text(encoding="utf-8") == "HELLO = 1\n"


def test_a_killed_swap_is_undone_by_the_next_deployment(stack: Stack, target: Path, tmp_path: Path) -> None:
    deploy(stack.artifacts, target)
    first = tmp_path / "first build"
    shutil.copytree(stack.artifacts, first)
    before = _snapshot(target)
    stack.add("frameworks", "framework-web", _upper_files("web", "WEB = 2\n"), build=2)
    stack.add("applications", "app-hello", _upper_files("hello", "HELLO = 2\n"), required=["framework-web"], build=2)
    flag = tmp_path / "flag"
    process = _cli("deploy", str(stack.artifacts), "--target", str(target), env={"VENVSTACKS_TEST_PAUSE": f"deploy-swapped:{flag}"})
    _wait_for(flag.exists, "the deployment to swap the new layers in")
    assert (target / "app-hello" / "lib" / "hello.py").read_text(encoding="utf-8") == "HELLO = 2\n"
    process.kill()
    process.communicate()
    # Deploying the first build again finds it all in place once the swap is undone.
    assert [d.action for d in deploy(first, target)] == ["unchanged"] * 4
    assert _snapshot(target) == before and _hidden(target) == []
    assert verify(target) == []


SLOW_COMPILE = """\
import os, sys, time
here = os.path.dirname(os.path.abspath(__file__))
if "--compile-only" in sys.argv:
    with open(os.environ["DEPLOY_TEST_PIDS"], "a", encoding="utf-8") as stream:
        stream.write(f"{os.getpid()}\\n")
    while True:  # writes into its layer until stopped
        with open(os.path.join(here, "compiling.log"), "a", encoding="utf-8") as stream:
            stream.write("x")
        time.sleep(0.05)
"""


def _running(pid: int) -> bool:
    """Whether the process `pid` exists and is not a zombie."""
    result = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True, check=False)
    return result.returncode == 0 and not result.stdout.strip().startswith("Z")


def test_compiling_stops_when_the_deployment_is_killed(tmp_path: Path, target: Path, log: Path) -> None:
    stack = Stack(tmp_path / "slow")
    stack.add("runtimes", RUNTIME, {**_runtime_files(), "postinstall.py": SLOW_COMPILE})
    stack.add("frameworks", "framework-web", {**_upper_files("web", "WEB = 1\n"), "postinstall.py": SLOW_COMPILE})
    pids = tmp_path / "pids"
    process = _cli("deploy", str(stack.artifacts), "--target", str(target), env={"DEPLOY_TEST_PIDS": str(pids)})
    _wait_for(lambda: pids.exists() and len(pids.read_text(encoding="utf-8").split()) == 2, "both layers to be compiling")
    process.kill()
    process.communicate()
    for pid in map(int, pids.read_text(encoding="utf-8").split()):
        _wait_for(lambda pid=pid: not _running(pid), f"the compile step {pid} to stop", timeout=5)
    # The next deployment clears what the killed one left.
    stack.add("runtimes", RUNTIME, _runtime_files(), build=2)
    stack.add("frameworks", "framework-web", _upper_files("web", "WEB = 1\n"), build=2)
    assert [d.action for d in deploy(stack.artifacts, target)] == ["installed", "installed"]
    assert _hidden(target) == [] and verify(target) == []


def test_unpacking_stops_as_soon_as_its_check_raises(tmp_path: Path) -> None:
    from venvstacks.cancel import Interrupted
    from venvstacks.extract import extract_into

    archive = tmp_path / "layer.tar.gz"
    _write_archive(archive, "layer", {f"lib/m{i}.py": "x = 1\n" for i in range(50)})
    checks: list[int] = []

    def check() -> None:  # a deployment interrupted while this layer unpacks
        checks.append(1)
        if len(checks) > 4:
            raise Interrupted

    folder = tmp_path / "unpacked"
    folder.mkdir()
    with pytest.raises(Interrupted):
        extract_into(archive, folder, strip_prefix="layer", check=check)
    assert 0 < len(list(folder.rglob("*.py"))) < 4
