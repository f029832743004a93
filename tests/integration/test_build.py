"""`build` with real uv, PyPI and runtimes: every import comes from the layer that provides it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from support import EXCLUDE_NEWER, PY311_RUNTIME, StackFactory, run, without_progress

pytestmark = pytest.mark.slow

STACK = PY311_RUNTIME + """\
[[runtimes]]
name = "cpython-3.12"
python_implementation = "cpython@{py312}"
requirements = ["packaging"]

[[frameworks]]
name = "numeric"
runtime = "cpython-3.11"
requirements = ["numpy", "idna"]
platforms = ["linux_x86_64", "linux_aarch64", "macosx_arm64", "win_amd64"]

[[frameworks]]
name = "extra"
frameworks = ["numeric"]
requirements = ["six", "idna"]

[[applications]]
name = "pkgapp"
launch_module = "launch/pkgapp"
support_modules = ["support/helpers.py"]
frameworks = ["extra"]
requirements = ["python-dateutil", "six"]

[[applications]]
name = "direct"
launch_module = "launch/direct.py"
runtime = "cpython-3.12"
versioned = true
requirements = ["attrs"]
""" + EXCLUDE_NEWER

PKGAPP_MAIN = """\
import dateutil.parser, numpy, six, helpers
print("pkgapp", numpy.arange(3).sum(), dateutil.parser.isoparse("2025-01-02").year, helpers.VALUE)
"""

WHERE = """\
import importlib.metadata, importlib.util, json, os, sys
found = {}
for name in sys.argv[1:]:
    spec = importlib.util.find_spec(name)
    found[name] = spec.origin if spec else None
print(json.dumps({"modules": found, "path": sys.path, "prefix": sys.prefix,
                  "ld": os.environ.get("LD_LIBRARY_PATH", ""),
                  "versions": {d.metadata["Name"]: d.version for d in importlib.metadata.distributions()}}))
"""


def _venvstacks(*args: str, pyz: Path, archive_dir: Path) -> tuple[int, str, str]:
    result = run([sys.executable, str(pyz), *args], env={"VENVSTACKS_PYTHON_ARCHIVE_DIR": str(archive_dir)})
    return result.returncode, result.stdout, result.stderr


@pytest.fixture(scope="module")
def built(make_stack: StackFactory, pyz: Path, runtime_archive_dir: Path) -> Path:
    files = {
        "launch/pkgapp/__init__.py": "",
        "launch/pkgapp/__main__.py": PKGAPP_MAIN,
        "launch/direct.py": "import attrs, packaging\nprint('direct', attrs.__name__)\n",
        "support/helpers.py": "VALUE = 42\n",
    }
    spec = make_stack(STACK, files)
    status, out, err = _venvstacks("build", "--lock-if-needed", str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 0, err
    assert out.count("[built]") == 6
    return spec.parent / "_build"


def _where(python: Path, *modules: str) -> dict:
    result = run([str(python), "-c", WHERE, *modules])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


EXPECTED = {
    # layer: {module: layer that must provide it}
    "cpython-3.11": {"packaging": "cpython-3.11", "numpy": None},
    "framework-numeric": {"numpy": "framework-numeric", "idna": "framework-numeric", "packaging": "cpython-3.11", "six": None},
    "framework-extra": {"six": "framework-extra", "idna": "framework-numeric", "numpy": "framework-numeric", "dateutil": None},
    "app-pkgapp": {
        "dateutil": "app-pkgapp", "pkgapp": "app-pkgapp", "helpers": "app-pkgapp", "six": "framework-extra",
        "idna": "framework-numeric", "numpy": "framework-numeric", "packaging": "cpython-3.11", "attrs": None,
    },
    "app-direct": {"attrs": "app-direct", "direct": "app-direct", "packaging": "cpython-3.12", "numpy": None},
}  # fmt: skip


@pytest.mark.network
@pytest.mark.parametrize("layer", sorted(EXPECTED))
def test_imports_come_from_the_right_layer(built: Path, layer: str) -> None:
    python = built / layer / ("bin/python3" if layer.startswith("cpython") else "bin/python")
    report = _where(python, *EXPECTED[layer])
    for module, provider in EXPECTED[layer].items():
        location = report["modules"][module]
        if provider is None:
            assert location is None, f"{module} should not be importable in {layer}"
        else:
            assert location is not None and Path(location).is_relative_to(built / provider), (module, location)
    assert Path(report["prefix"]) == built / layer


@pytest.mark.network
def test_sys_path_order_is_the_layer_then_frameworks_then_runtime(built: Path) -> None:
    path = _where(built / "app-pkgapp" / "bin" / "python")["path"]
    sites = [p for p in path if p.endswith("site-packages")]
    assert sites == [
        str(built / "app-pkgapp" / "lib/python3.11/site-packages"),
        str(built / "framework-extra" / "lib/python3.11/site-packages"),
        str(built / "framework-numeric" / "lib/python3.11/site-packages"),
        str(built / "cpython-3.11" / "lib/python3.11/site-packages"),
    ]


def _dists(site: Path) -> set[str]:
    return {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}


@pytest.mark.network
def test_nothing_a_lower_layer_provides_is_installed_again(built: Path) -> None:
    runtime = _dists(built / "cpython-3.11/lib/python3.11/site-packages")
    numeric = _dists(built / "framework-numeric/lib/python3.11/site-packages")
    extra = _dists(built / "framework-extra/lib/python3.11/site-packages")
    app = _dists(built / "app-pkgapp/lib/python3.11/site-packages")
    assert runtime == {"packaging"}
    assert numeric == {"numpy", "idna"}
    assert extra == {"six"}
    assert app == {"python_dateutil"}
    assert not ({"pip", "setuptools", "wheel"} & runtime)


@pytest.mark.network
def test_apps_run(built: Path) -> None:
    result = run([str(built / "app-pkgapp" / "bin" / "python"), "-m", "pkgapp"])
    assert (result.returncode, result.stdout, result.stderr) == (0, "pkgapp 3 2025 42\n", "")
    result = run([str(built / "app-direct" / "bin" / "python"), "-m", "direct"])
    assert (result.returncode, result.stdout, result.stderr) == (0, "direct attrs\n", "")


@pytest.mark.network
def test_shared_libraries_are_linked_and_on_the_loader_path(built: Path) -> None:
    dynlib = built / "framework-numeric" / "share/venv/dynlib"
    links = sorted(dynlib.iterdir())
    assert links and all(link.is_symlink() and not Path(link.readlink()).is_absolute() for link in links)
    assert any("openblas" in link.name for link in links)
    assert all(link.resolve().is_file() and link.resolve().is_relative_to(built / "framework-numeric") for link in links)
    ld = _where(built / "app-pkgapp" / "bin" / "python")["ld"].split(":")
    assert [Path(p).resolve() for p in ld] == [
        (built / name / "share/venv/dynlib").resolve() for name in ("framework-extra", "framework-numeric", "cpython-3.11")
    ]


@pytest.mark.network
def test_layers_are_relocatable_except_the_regenerated_files(built: Path) -> None:
    from venvstacks.build.portability import find_absolute_references

    for layer in EXPECTED:
        bins = sorted(p.name for p in (built / layer / "bin").iterdir())
        assert all(name.startswith("python") for name in bins), bins
        found = find_absolute_references(built / layer, str(built), skip={"pyvenv.cfg"})
        assert found == [], (layer, found)
        for record in (built / layer).rglob("RECORD"):
            assert "/bin/" not in record.read_text(encoding="utf-8")


@pytest.mark.network
def test_layer_config(built: Path) -> None:
    config = json.loads((built / "app-pkgapp" / "share/venv/metadata/venvstacks_layer.json").read_text(encoding="utf-8"))
    assert config == {
        "python": "bin/python",
        "py_version": config["py_version"],
        "base_python": "../cpython-3.11/bin/python3",
        "site_dir": "lib/python3.11/site-packages",
        "pylib_dirs": [
            "../framework-extra/lib/python3.11/site-packages",
            "../framework-numeric/lib/python3.11/site-packages",
            "../cpython-3.11/lib/python3.11/site-packages",
        ],
        "dynlib_dirs": ["../framework-extra/share/venv/dynlib", "../framework-numeric/share/venv/dynlib", "../cpython-3.11/share/venv/dynlib"],
        "launch_module": "pkgapp",
    }
    runtime = json.loads((built / "cpython-3.12" / "share/venv/metadata/venvstacks_layer.json").read_text(encoding="utf-8"))
    assert runtime["python"] == runtime["base_python"] == "bin/python3" and runtime["pylib_dirs"] == []
    direct = json.loads((built / "app-direct" / "share/venv/metadata/venvstacks_layer.json").read_text(encoding="utf-8"))
    assert direct["launch_module"] == "direct" and direct["base_python"] == "../cpython-3.12/bin/python3"


@pytest.mark.network
def test_rebuild_is_incremental(built: Path, pyz: Path, runtime_archive_dir: Path) -> None:
    spec = built.parent / "venvstacks.toml"
    status, out, err = _venvstacks("build", str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 0, err
    assert out.count("[up to date]") == 6
    # a changed launch module rebuilds just that app; a missing build record means a half-built layer
    main = built.parent / "launch" / "pkgapp" / "__main__.py"
    main.write_text(PKGAPP_MAIN.replace('"pkgapp"', '"pkgapp v2"'), encoding="utf-8")
    (built / "framework-extra.last-build.json").unlink()
    status, out, err = _venvstacks("build", str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 0, err
    assert "_build/framework-extra [built]" in out and "_build/app-pkgapp [built]" in out
    assert out.count("[built]") == 2
    result = run([str(built / "app-pkgapp" / "bin" / "python"), "-m", "pkgapp"])
    assert result.stdout == "pkgapp v2 3 2025 42\n"


@pytest.mark.network
def test_build_refuses_invalid_locks(built: Path, pyz: Path, runtime_archive_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(built.parent, copy, symlinks=True, ignore=shutil.ignore_patterns("_build"))
    spec = copy / "venvstacks.toml"
    spec.write_text(spec.read_text(encoding="utf-8").replace('requirements = ["six", "idna"]', 'requirements = ["six", "idna", "certifi"]'), encoding="utf-8")
    status, out, err = _venvstacks("build", str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 1 and out == ""
    assert err.startswith("error: these layers must be locked before building")
    assert "framework-extra (the declared requirements changed)" in err
    assert "app-pkgapp (layers underneath need locking: framework-extra)" in err


@pytest.mark.network
def test_include_builds_the_layers_underneath_and_derived_ones_on_request(built: Path, pyz: Path, runtime_archive_dir: Path) -> None:
    spec = built.parent / "venvstacks.toml"
    status, out, err = _venvstacks("build", "--include", "app-direct", str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 0, err
    assert [line.split()[0] for line in out.splitlines()[1:-1]] == ["_build/cpython-3.12", "_build/app-direct"]
    status, out, _ = _venvstacks("build", "--include", "framework-numeric", str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert [line.split()[0] for line in out.splitlines()[1:-1]] == ["_build/cpython-3.11", "_build/framework-numeric"]
    status, out, _ = _venvstacks("build", "--include", "framework-numeric", "--build-derived", str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert [line.split()[0] for line in out.splitlines()[1:-1]] == [
        "_build/cpython-3.11", "_build/framework-numeric", "_build/framework-extra", "_build/app-pkgapp",
    ]  # fmt: skip


@pytest.mark.network
def test_failed_install_names_the_layer_and_leaves_it_unbuilt(built: Path, pyz: Path, runtime_archive_dir: Path, tmp_path: Path) -> None:
    import re
    import shutil
    import tomllib

    from venvstacks.lock.files import pylock_hash

    copy = tmp_path / "copy"
    shutil.copytree(built.parent, copy, symlinks=True, ignore=shutil.ignore_patterns("_build"))
    spec = copy / "venvstacks.toml"
    # A lock that is valid (its metadata matches) but names a wheel by a wrong digest.
    folder = copy / "requirements" / "app-direct"
    pylock = folder / "pylock.app-direct.toml"
    text = re.sub(r'sha256 = "[0-9a-f]{64}"', 'sha256 = "' + "0" * 64 + '"', pylock.read_text(encoding="utf-8"), count=1)
    pylock.write_text(text, encoding="utf-8")
    meta_path = folder / "pylock.app-direct.meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["requirements_hash"] = pylock_hash(tomllib.loads(text))
    meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    status, out, err = _venvstacks("build", "--include", "app-direct", str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 1 and out == ""
    assert without_progress(err).startswith("error: failed to install into layer 'app-direct':\n")
    assert "hash" in err.lower() and "Traceback" not in err
    assert (copy / "_build" / "cpython-3.12.last-build.json").exists()
    assert not (copy / "_build" / "app-direct.last-build.json").exists()


@pytest.mark.network
def test_clean_rebuilds_from_scratch(built: Path, pyz: Path, runtime_archive_dir: Path) -> None:
    spec = built.parent / "venvstacks.toml"
    stray = built / "app-direct" / "lib" / "python3.12" / "site-packages" / "stray.py"
    stray.write_text("", encoding="utf-8")
    status, out, err = _venvstacks("build", "--clean", "--include", "app-direct", str(spec), pyz=pyz, archive_dir=runtime_archive_dir)
    assert status == 0, err
    assert out.count("[built]") == 2
    assert not stray.exists()
    result = run([str(built / "app-direct" / "bin" / "python"), "-m", "direct"])
    assert result.stdout == "direct attrs\n"


def test_a_new_runtime_version_rebuilds_the_layers_above(
    tmp_path: Path, make_stack: StackFactory, pyz: Path, runtime_archives: dict[str, Path], runtime_versions: dict[str, str]
) -> None:
    import shutil

    # One archive under two patch versions: enough to tell whether a changed version reaches every layer.
    archives = tmp_path / "archives"
    archives.mkdir()
    original = runtime_archives["3.11"]
    old, new = runtime_versions["py311"], runtime_versions["py311"] + "0"
    shutil.copy(original, archives / original.name)
    shutil.copy(original, archives / original.name.replace(f"cpython-{old}+", f"cpython-{new}+"))
    text = '[[runtimes]]\nname = "rt"\npython_implementation = "cpython@{}"\nrequirements = []\n[[frameworks]]\nname = "fw"\nruntime = "rt"\nrequirements = []\n'
    spec = make_stack(text.format(old))
    stack = spec.parent
    status, out, err = _venvstacks("build", "--lock-if-needed", str(spec), pyz=pyz, archive_dir=archives)
    assert status == 0 and out.count("[built]") == 2, err
    spec.write_text(text.format(new), encoding="utf-8")
    status, out, err = _venvstacks("build", "--lock-if-needed", str(spec), pyz=pyz, archive_dir=archives)
    assert status == 0 and out.count("[built]") == 2, (out, err)
    config = json.loads((stack / "_build" / "framework-fw" / "share" / "venv" / "metadata" / "venvstacks_layer.json").read_text(encoding="utf-8"))
    assert config["py_version"] == new
    record = json.loads((stack / "_build" / "rt.runtime.json").read_text(encoding="utf-8"))
    assert record["python_implementation"] == f"cpython@{new}" and new in record["archive"]
