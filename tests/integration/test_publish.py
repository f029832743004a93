"""`publish` and `local-export`: reproducible archives, upstream's metadata, working deployments."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tarfile
from pathlib import Path

import pytest

from support import COMPAT, EXCLUDE_NEWER, PY311_RUNTIME, StackFactory, run

pytestmark = [pytest.mark.slow, pytest.mark.network]

STACK = PY311_RUNTIME + """\
[[frameworks]]
name = "web"
runtime = "cpython-3.11"
requirements = ["idna"]

[[applications]]
name = "hello"
launch_module = "launch/hello"
support_modules = ["launch/helpers.py"]
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
LAUNCH = {
    "launch/hello/__init__.py": "",
    "launch/hello/__main__.py": "import idna, six, helpers\nprint('hello', idna.encode('b\\u00fccher.example').decode(), six.PY3, helpers.VALUE)\n",
    "launch/helpers.py": "VALUE = 7\n",
    "launch/counter.py": "import packaging\nprint('counter', packaging.__name__)\n",
}


def _vs(*args: str, pyz: Path, archive_dir: Path) -> tuple[int, str, str]:
    result = run([sys.executable, str(pyz), *args], env={"VENVSTACKS_PYTHON_ARCHIVE_DIR": str(archive_dir)})
    return result.returncode, result.stdout, result.stderr


@pytest.fixture(scope="module")
def published(make_stack: StackFactory, pyz: Path, runtime_archive_dir: Path) -> Path:
    spec = make_stack(STACK, LAUNCH)
    status, out, err = _vs("build", "--lock-if-needed", "--publish", str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 0, err
    assert out.count("[archived]") == 4
    return spec.parent / "_artifacts"


def _archive(artifacts: Path, target: str) -> Path:
    return artifacts / f"{target}.tar.xz"


def test_archives_and_metadata(published: Path) -> None:
    assert sorted(p.name for p in published.glob("*.tar.xz")) == sorted(f"{name}.tar.xz" for name in LAYERS)
    manifest = json.loads((published / "__venvstacks__" / "venvstacks.json").read_text(encoding="utf-8"))
    assert [e["install_target"] for e in manifest["layers"]["runtimes"]] == ["cpython-3.11"]
    assert [e["install_target"] for e in manifest["layers"]["frameworks"]] == ["framework-web"]
    assert [e["install_target"] for e in manifest["layers"]["applications"]] == ["app-hello", "app-counter@1"]
    upstream = COMPAT / "upstream-published-metadata" / "env_metadata"
    for layer, reference in [("cpython-3.11", "cpython-3.11"), ("framework-web", "framework-web"), ("app-counter", "app-records")]:
        ours = json.loads((published / "__venvstacks__" / "env_metadata" / f"{layer}.json").read_text(encoding="utf-8"))
        theirs = json.loads((upstream / f"{reference}.json").read_text(encoding="utf-8"))
        assert sorted(ours) == sorted([*theirs, "manifest_hashes"]), layer  # upstream's fields, and the digest of our layer manifest
        archive = published / ours["archive_name"]
        assert ours["archive_size"] == archive.stat().st_size
        assert ours["archive_hashes"] == {"sha256": hashlib.sha256(archive.read_bytes()).hexdigest()}
        assert ours["target_platform"] == "linux_x86_64" and ours["archive_build"] == 1
    hello = json.loads((published / "__venvstacks__" / "env_metadata" / "app-hello.json").read_text(encoding="utf-8"))
    assert hello["required_layers"] == ["framework-web"] and hello["runtime_layer"] == "cpython-3.11"
    assert hello["app_launch_module"] == "hello" and hello["app_launch_module_hash"].startswith("sha256/")
    assert [m["name"] for m in hello["app_support_modules"]] == ["helpers"]
    counter = json.loads((published / "__venvstacks__" / "env_metadata" / "app-counter.json").read_text(encoding="utf-8"))
    assert counter["install_target"] == "app-counter@1" and counter["archive_name"] == "app-counter@1.tar.xz"


def test_archive_entries(published: Path) -> None:
    meta = json.loads((published / "__venvstacks__" / "env_metadata" / "app-hello.json").read_text(encoding="utf-8"))
    with tarfile.open(_archive(published, "app-hello")) as archive:
        members = archive.getmembers()
    names = [m.name for m in members]
    assert names[0] == "app-hello" and all(n == "app-hello" or n.startswith("app-hello/") for n in names)
    assert "app-hello/postinstall.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(("sitecustomize.py", "/pyvenv.cfg"))]
    clamp = int(__import__("datetime").datetime.fromisoformat(meta["locked_at"]).timestamp())
    assert {m.mtime for m in members} == {clamp}
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "root", "root")}
    link = next(m for m in members if m.name == "app-hello/bin/python_")
    assert link.issym() and link.linkname == "../../cpython-3.11/bin/python3"


def _unpack_and_install(published: Path, target: Path) -> None:
    target.mkdir(parents=True)
    for layer in LAYERS:
        with tarfile.open(_archive(published, layer)) as archive:
            archive.extractall(target, filter="fully_trusted")  # layers link to their peers
    python = target / "cpython-3.11" / "bin" / "python3"
    for layer in LAYERS:
        result = run([str(python), "-X", "utf8", "-I", str(target / layer / "postinstall.py")])
        assert result.returncode == 0, (layer, result.stderr)


def test_unpacked_archives_run_after_post_install(published: Path, tmp_path: Path) -> None:
    target = tmp_path / "déployé ici"
    _unpack_and_install(published, target)
    result = run([str(target / "app-hello" / "bin" / "python"), "-m", "hello"])
    assert (result.returncode, result.stdout, result.stderr) == (0, "hello xn--bcher-kva.example True 7\n", "")
    result = run([str(target / "app-counter@1" / "bin" / "python"), "-m", "counter"])
    assert (result.returncode, result.stdout) == (0, "counter packaging\n")


def test_publishing_is_byte_reproducible(published: Path, tmp_path: Path, make_stack: StackFactory, pyz: Path, runtime_archive_dir: Path) -> None:
    # The same stack built and published in another folder, later, gives the same bytes.
    spec = make_stack(STACK, LAUNCH, folder=tmp_path / "elsewhere" / "other stack")
    shutil.copytree(published.parent / "requirements", spec.parent / "requirements")
    status, _, err = _vs("build", "--publish", str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 0, err
    again = spec.parent / "_artifacts"
    for layer in LAYERS:
        assert _archive(again, layer).read_bytes() == _archive(published, layer).read_bytes(), layer
    assert (again / "__venvstacks__" / "venvstacks.json").read_bytes() == (published / "__venvstacks__" / "venvstacks.json").read_bytes()


def test_unchanged_layers_are_not_archived_again(published: Path, pyz: Path, runtime_archive_dir: Path) -> None:
    spec = published.parent / "venvstacks.toml"
    before = {p.name: p.stat().st_mtime_ns for p in published.glob("*.tar.xz")}
    status, out, err = _vs("publish", str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 0, err
    assert out.count("[unchanged]") == 4
    assert {p.name: p.stat().st_mtime_ns for p in published.glob("*.tar.xz")} == before
    # A launch module change of an unversioned app archives that app again, with the next build number.
    main = spec.parent / "launch" / "hello" / "__main__.py"
    main.write_text(main.read_text(encoding="utf-8").replace("'hello'", "'hello again'"), encoding="utf-8")
    status, out, err = _vs("build", "--publish", str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 0, err
    assert out.count("[archived]") == 1 and "_artifacts/app-hello.tar.xz [archived]" in out
    meta = json.loads((published / "__venvstacks__" / "env_metadata" / "app-hello.json").read_text(encoding="utf-8"))
    assert meta["archive_build"] == 2


def test_tagged_outputs_and_dry_run(published: Path, pyz: Path, runtime_archive_dir: Path, tmp_path: Path) -> None:
    spec = published.parent / "venvstacks.toml"
    status, out, err = _vs("publish", "--dry-run", "--output-dir", str(tmp_path / "dry"), str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 0, err
    assert not (tmp_path / "dry").exists() or not any((tmp_path / "dry").rglob("*.tar.xz"))
    assert json.loads(out.split("Archive creation skipped")[0])["layers"]["app-counter"]["archive_name"] == "app-counter@1.tar.xz"
    status, out, err = _vs("publish", "--tag-outputs", "--format", "tar.gz", "--output-dir", str(tmp_path / "tagged"), str(spec),
                           pyz=pyz, archive_dir=runtime_archive_dir)  # fmt: skip
    assert status == 0, err
    names = sorted(p.name for p in (tmp_path / "tagged").iterdir())
    assert names == sorted(["__venvstacks__", *(f"{layer}-linux_x86_64-1.tar.gz" for layer in LAYERS)])
    assert (tmp_path / "tagged" / "__venvstacks__" / "venvstacks-linux_x86_64.json").exists()
    assert (tmp_path / "tagged" / "__venvstacks__" / "env_metadata" / "app-counter-linux_x86_64.json").exists()


def test_local_export(published: Path, pyz: Path, runtime_archive_dir: Path, tmp_path: Path) -> None:
    spec = published.parent / "venvstacks.toml"
    export = tmp_path / "export with space"
    status, out, err = _vs("local-export", "--output-dir", str(export), str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 0, err
    assert out.count("[exported]") == 4
    assert sorted(p.name for p in export.iterdir()) == sorted(["__venvstacks__", *LAYERS])
    result = run([str(export / "app-counter@1" / "bin" / "python"), "-m", "counter"])
    assert (result.returncode, result.stdout) == (0, "counter packaging\n")
    meta = json.loads((export / "__venvstacks__" / "env_metadata" / "app-counter.json").read_text(encoding="utf-8"))
    assert "archive_name" not in meta and meta["install_target"] == "app-counter@1"
    # Files are hard links into the build tree where possible.
    built = published.parent / "_build" / "framework-web" / "lib" / "python3.11" / "site-packages"
    idna_init = next(built.glob("idna/__init__.py"))
    exported = export / "framework-web" / "lib" / "python3.11" / "site-packages" / "idna" / "__init__.py"
    assert os.path.samefile(idna_init, exported)
    status, out, _ = _vs("local-export", "--output-dir", str(export), str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert out.count("[unchanged]") == 4


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]


def test_precompiled_layers_ship_bytecode_and_deploying_compiles_nothing(
    published: Path, pyz: Path, runtime_archive_dir: Path, tmp_path: Path
) -> None:
    spec = published.parent / "venvstacks.toml"
    shipped = tmp_path / "shipped"
    status, out, err = _vs("publish", "--precompile", "--output-dir", str(shipped), str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 0, err
    assert out.count("[archived]") == 4
    members = {layer: _members(_archive(shipped, layer)) for layer in LAYERS}
    for layer, files in members.items():
        config = json.loads(files[f"{layer}/share/venv/metadata/venvstacks_layer.json"])
        assert config["precompiled"] is True
        sources = [n for n in files if n.startswith(f"{layer}/lib/") and n.endswith(".py")]
        assert sources, layer
        for source in sources:  # every archived source has its hash-checked bytecode beside it
            folder, name = source.rsplit("/", 1)
            pyc = files[f"{folder}/__pycache__/{name[:-3]}.cpython-311.pyc"]
            assert pyc[4:8] == b"\x03\0\0\0", source
        assert not [n for n in files if n.endswith(".pyc") and ".cpython-311.pyc" not in n]
    # Same inputs, same bytes; and switching the option back archives plain layers again.
    status, out, err = _vs("publish", "--precompile", "--force", "--output-dir", str(tmp_path / "again"), str(spec),
                           pyz=pyz, archive_dir=runtime_archive_dir)  # fmt: skip
    assert status == 0, err
    for layer in LAYERS:
        assert _archive(tmp_path / "again", layer).read_bytes() == _archive(shipped, layer).read_bytes(), layer
    status, out, err = _vs("publish", "--output-dir", str(shipped), str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 0 and out.count("[archived]") == 4, err
    assert not [n for n in _members(_archive(shipped, "cpython-3.11")) if n.endswith(".pyc")]

    # Deploy the precompiled archives: the shipped bytecode is used as it is, nothing else is compiled
    # but the few files relinking writes (sitecustomize.py, the runtime's sysconfig data).
    status, out, err = _vs("publish", "--precompile", "--output-dir", str(shipped), str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 0, err
    target = tmp_path / "deployed"
    status, out, err = _vs("deploy", str(shipped), "--target", str(target), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 0, err
    result = run([str(target / "app-hello" / "bin" / "python"), "-m", "hello"])
    assert result.returncode == 0 and result.stdout.endswith(" xn--bcher-kva.example True 7\n"), result.stderr  # an earlier test changed the greeting
    shipped_pycs = {name: data for files in members.values() for name, data in files.items() if name.endswith(".pyc")}
    deployed_pycs = {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*.pyc")}
    written = {name for name in deployed_pycs if deployed_pycs[name] != shipped_pycs.get(name)}
    assert written and all(name.rsplit("/", 1)[1].startswith(("sitecustomize.", "_sysconfigdata_")) for name in written), written
    assert set(shipped_pycs) <= set(deployed_pycs)
    assert all(data[4:8] == b"\x03\0\0\0" for data in deployed_pycs.values())


def test_local_export_can_ship_bytecode(published: Path, pyz: Path, runtime_archive_dir: Path, tmp_path: Path) -> None:
    spec = published.parent / "venvstacks.toml"
    export = tmp_path / "export"
    status, out, err = _vs("local-export", "--precompile", "--output-dir", str(export), str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 0, err
    cache = export / "framework-web" / "lib" / "python3.11" / "site-packages" / "idna" / "__pycache__"
    assert (cache / "core.cpython-311.pyc").read_bytes()[4:8] == b"\x03\0\0\0"
    result = run([str(export / "app-hello" / "bin" / "python"), "-m", "hello"])
    assert result.returncode == 0 and result.stdout.endswith(" xn--bcher-kva.example True 7\n"), result.stderr  # an earlier test changed the greeting


def test_json_results_have_the_documented_keys(published: Path, pyz: Path, runtime_archive_dir: Path, tmp_path: Path) -> None:
    from support import documented_json_keys

    spec = published.parent / "venvstacks.toml"
    keys = documented_json_keys()
    commands = {
        "lock": ["lock", "--if-needed"],
        "build": ["build", "--publish", "--output-dir", str(tmp_path / "out")],
        "publish": ["publish", "--output-dir", str(tmp_path / "out")],
        "local-export": ["local-export", "--output-dir", str(tmp_path / "export")],
    }
    documents = {}
    for name, argv in commands.items():
        status, out, err = _vs(*argv, "--json", str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
        assert status == 0, err
        documents[name] = json.loads(out)
    status, out, err = _vs("deploy", "--json", str(tmp_path / "out"), "--target", str(tmp_path / "deployed"), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 0, err
    documents["deploy"] = json.loads(out)
    for name, document in documents.items():
        document_keys, layer_keys = keys[name]
        assert set(document) == document_keys and document["command"] == name, name
        assert len(document["layers"]) == 4 and all(set(layer) == layer_keys for layer in document["layers"]), name
    assert {layer["action"] for layer in documents["lock"]["layers"]} == {"skipped"}
    assert {layer["action"] for layer in documents["build"]["layers"]} == {"up to date"}
    assert set(documents["build"]["published"]) == keys["publish"][0]
    assert {layer["action"] for layer in documents["publish"]["layers"]} == {"unchanged"}  # published by build just before
    assert [layer["action"] for layer in documents["deploy"]["layers"]] == ["installed"] * 4
    assert all(Path(layer["path"]).is_dir() for layer in documents["deploy"]["layers"])
    assert Path(documents["publish"]["manifest"]).is_file()
    # --show --json adds the plan to the one document.
    status, out, err = _vs("publish", "--show", "--json", "--output-dir", str(tmp_path / "out"), str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 0, err
    document = json.loads(out)
    assert set(document) == keys["publish"][0] | {"plan"}
    assert document["plan"]["runtimes"][0]["selected_operations"] == ["publish"]


def test_archives_are_identical_whatever_the_jobs(published: Path, pyz: Path, runtime_archive_dir: Path, tmp_path: Path) -> None:
    spec = published.parent / "venvstacks.toml"
    default = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in published.glob("*.tar.xz")}
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}"
        status, _, err = _vs("publish", "--jobs", jobs, "--output-dir", str(out), str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
        assert status == 0, err
        assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.glob("*.tar.xz")} == default


def test_compression_options_are_checked(published: Path, pyz: Path, runtime_archive_dir: Path, tmp_path: Path) -> None:
    spec = published.parent / "venvstacks.toml"
    status, _, err = _vs("publish", "--jobs", "0", str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 2 and "--jobs: expected a whole number of 1 or more, not '0'" in err
    status, _, err = _vs("publish", "--compression-level", "12", "--output-dir", str(tmp_path / "x"), str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 1 and "error: --compression-level 12: tar.xz takes 0 to 9" in err
    out = tmp_path / "fast"
    status, _, err = _vs("publish", "--compression-level", "1", "--output-dir", str(out), str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 0, err
    fast = sum(p.stat().st_size for p in out.glob("*.tar.xz"))
    assert fast > sum(p.stat().st_size for p in published.glob("*.tar.xz"))
