"""Console scripts: which a layer offers, their launchers and RECORD rows; the spec fields that choose them and a hook."""

from __future__ import annotations

import base64
import csv
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from venvstacks.cli.main import main
from venvstacks.build.scripts import find_entry_point_scripts, record_launchers, select_scripts
from venvstacks.errors import BuildError, SpecError
from venvstacks.postinstall import render_launcher, write_console_scripts
from venvstacks.spec.load import load_spec


def _dist(site: Path, name: str, entry_points: str, record: str = "") -> Path:
    dist_info = site / f"{name}-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "entry_points.txt").write_text(entry_points, encoding="utf-8")
    (dist_info / "RECORD").write_text(record or f"{name}/__init__.py,sha256=abc,3\n{name}-1.0.dist-info/RECORD,,\n", encoding="utf-8")
    return dist_info


def test_entry_point_scripts_are_found_in_distribution_order(tmp_path: Path) -> None:
    _dist(tmp_path, "alpha", "[console_scripts]\nshared = alpha.cli:main\nAlpha-Tool = alpha.cli:run [extra]\n"
                             "[gui_scripts]\nalpha-gui = alpha.gui:App.start\n[other]\nnot-a-script = x:y\n")  # fmt: skip
    _dist(tmp_path, "beta", "[gui_scripts]\nshared = beta.gui:main\n[console_scripts]\nbeta = beta:main\n"
                            "python-beta = beta:main\nbroken = not valid\nmodule-only = beta\n")  # fmt: skip
    found = find_entry_point_scripts(tmp_path)
    assert found == {
        "shared": ("alpha.cli:main", "alpha-1.0.dist-info"),  # the first distribution by name keeps a shared name
        "Alpha-Tool": ("alpha.cli:run", "alpha-1.0.dist-info"),  # extras dropped, case kept
        "alpha-gui": ("alpha.gui:App.start", "alpha-1.0.dist-info"),
        "beta": ("beta:main", "beta-1.0.dist-info"),
    }  # no python*, nothing that is not module:function


def test_a_broken_entry_points_file_is_a_build_error_naming_the_distribution(tmp_path: Path) -> None:
    _dist(tmp_path, "bad", "no section header\n")
    with pytest.raises(BuildError, match="cannot read the entry points of bad-1.0.dist-info"):
        find_entry_point_scripts(tmp_path)


def test_selection(tmp_path: Path) -> None:
    found = {"b": ("m:b", "d"), "a": ("m:a", "d")}
    assert list(select_scripts("app-x", found, True)) == ["a", "b"]
    assert select_scripts("app-x", found, False) == {}
    assert select_scripts("app-x", found, ("b",)) == {"b": ("m:b", "d")}
    with pytest.raises(BuildError) as caught:
        select_scripts("app-x", found, ("b", "jupyter-lab"))
    assert str(caught.value) == "layer 'app-x': console_scripts names 'jupyter-lab', which no package of the layer declares (they declare: a, b)"


def test_record_rows_match_the_launchers_postinstall_writes(tmp_path: Path) -> None:
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    dist_info = _dist(site, "alpha", "[console_scripts]\nalpha = alpha.cli:main\n")
    scripts = find_entry_point_scripts(site)
    record_launchers(site, "../../../bin", scripts, "python")
    record_launchers(site, "../../../bin", scripts, "python")  # again: no duplicate rows
    rows = list(csv.reader((dist_info / "RECORD").read_text(encoding="utf-8").splitlines()))
    assert [row[0] for row in rows] == ["alpha/__init__.py", "alpha-1.0.dist-info/RECORD", "../../../bin/alpha"]
    config = {"python": str(tmp_path / "bin" / "python"), "console_scripts": {"alpha": "alpha.cli:main"}}
    assert write_console_scripts(tmp_path, config) == [str(tmp_path / "bin" / "alpha")]
    assert write_console_scripts(tmp_path, config) == []  # again: a no-op
    data = (tmp_path / "bin" / "alpha").read_bytes()
    assert os.stat(tmp_path / "bin" / "alpha").st_mode & 0o777 == 0o755
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    assert rows[-1] == ["../../../bin/alpha", f"sha256={digest}", str(len(data))]


@pytest.mark.parametrize("entry_point", ["demo_ep:main", "demo_ep:Holder.main"])
def test_a_launcher_runs_the_python_beside_it_wherever_it_is_and_through_links(tmp_path: Path, entry_point: str) -> None:
    layer = tmp_path / "a layer's folder"
    (layer / "bin").mkdir(parents=True)
    (layer / "bin" / "python").symlink_to(sys.executable)
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "demo_ep.py").write_text(
        "import sys\ndef main():\n    print('args', sys.argv[1:])\n    return 3\nclass Holder:\n    main = staticmethod(main)\n", encoding="utf-8"
    )
    launcher = layer / "bin" / "demo"
    launcher.write_text(render_launcher("demo", entry_point, "python"), encoding="utf-8")
    launcher.chmod(0o755)
    elsewhere = tmp_path / "on PATH"
    elsewhere.mkdir()
    (elsewhere / "demo").symlink_to(launcher)
    env = {**os.environ, "PYTHONPATH": str(modules)}
    for command in (launcher, elsewhere / "demo"):
        result = subprocess.run([str(command), "one", "two words"], capture_output=True, text=True, env=env, check=False)
        assert (result.returncode, result.stdout, result.stderr) == (3, "args ['one', 'two words']\n", "")


def test_an_invalid_entry_point_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid entry point"):
        render_launcher("x", "os; rm -rf /:main", "python")


# --- spec fields ---------------------------------------------------------------------------------

HEAD = '[[runtimes]]\nname = "rt"\npython_implementation = "cpython@3.12.1"\nrequirements = []\n'
APP = '[[applications]]\nname = "demo"\nruntime = "rt"\nrequirements = []\nlaunch_module = "app.py"\n'


def _spec(tmp_path: Path, extra: str, *, runtime_extra: str = "") -> Path:
    folder = tmp_path / "stack"
    folder.mkdir(exist_ok=True)
    (folder / "app.py").write_text("print('hi')\n", encoding="utf-8")
    (tmp_path / "outside.py").write_text("print('out')\n", encoding="utf-8")
    spec = folder / "venvstacks.toml"
    spec.write_text(HEAD + runtime_extra + APP + extra, encoding="utf-8")
    return spec


def test_console_scripts_default_to_on_for_applications_only(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path, ""))
    assert spec.runtimes[0].console_scripts is False and spec.applications[0].console_scripts is True
    spec = load_spec(_spec(tmp_path, 'console_scripts = ["jupyter-lab", "f2py"]\n', runtime_extra="console_scripts = true\n"))
    assert spec.runtimes[0].console_scripts is True and spec.applications[0].console_scripts == ("jupyter-lab", "f2py")


def test_a_hook_is_read_as_an_absolute_path(tmp_path: Path) -> None:
    spec_path = _spec(tmp_path, 'postinstall_hook = "hooks/configure.py"\n')
    (spec_path.parent / "hooks").mkdir()
    (spec_path.parent / "hooks" / "configure.py").write_text("print('configured')\n", encoding="utf-8")
    assert load_spec(spec_path).applications[0].postinstall_hook == spec_path.parent / "hooks" / "configure.py"


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("console_scripts = 3", "field 'console_scripts': expected true, false or an array of script names, got an integer"),
        ('console_scripts = ["ok", 1]', "field 'console_scripts[1]': expected a string, got an integer (1)"),
        ('console_scripts = ["a/b"]', "field 'console_scripts[0]': 'a/b' is not a script name"),
        ('console_scripts = ["a", "a"]', "field 'console_scripts[1]': script 'a' is listed more than once"),
        ('postinstall_hook = "hooks/missing.py"', "field 'postinstall_hook': post-install hook 'hooks/missing.py' does not exist or is not a file"),
        ('postinstall_hook = "../outside.py"', "field 'postinstall_hook': '../outside.py' is outside the spec's folder"),
        ('postinstall_hook = "/etc/hostname.py"', "field 'postinstall_hook': '/etc/hostname.py' is an absolute path"),
        ('postinstall_hook = "app.txt"', "field 'postinstall_hook': post-install hook 'app.txt' must be a .py file"),
        ('postinstall_hook = "linked.py"', "field 'postinstall_hook': 'linked.py' is a symbolic link (to "),
        ("postinstall_hook = true", "field 'postinstall_hook': expected a string, got a boolean (True)"),
    ],
)
def test_bad_fields_are_one_line_errors_naming_the_layer_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, message: str
) -> None:
    spec = _spec(tmp_path, field + "\n")
    (spec.parent / "app.txt").write_text("", encoding="utf-8")
    (spec.parent / "linked.py").symlink_to(tmp_path / "outside.py")
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    (line,) = str(caught.value).splitlines()
    assert line.startswith(f"{spec}: application 'demo': {message}"), line
    assert main(["show", str(spec)]) == 1
    assert capsys.readouterr().err.startswith(f"error: {spec}: application 'demo': {message}")


def test_a_hook_moves_the_version_inputs_and_no_hook_leaves_them_as_upstream_has_them(tmp_path: Path) -> None:
    from venvstacks.lock.files import version_inputs_hash

    spec_path = _spec(tmp_path, "versioned = true\n")
    plain = version_inputs_hash(load_spec(spec_path).applications[0])
    (spec_path.parent / "hook.py").write_text("print(1)\n", encoding="utf-8")
    spec_path.write_text(spec_path.read_text(encoding="utf-8") + 'postinstall_hook = "hook.py"\n', encoding="utf-8")
    hooked = version_inputs_hash(load_spec(spec_path).applications[0])
    (spec_path.parent / "hook.py").write_text("print(2)\n", encoding="utf-8")
    changed = version_inputs_hash(load_spec(spec_path).applications[0])
    assert len({plain, hooked, changed}) == 3
    spec_path.write_text(spec_path.read_text(encoding="utf-8").replace('postinstall_hook = "hook.py"\n', ""), encoding="utf-8")
    assert version_inputs_hash(load_spec(spec_path).applications[0]) == plain
