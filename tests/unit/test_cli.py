"""The command line, run in-process: exit codes, streams and messages."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from support import COMPAT, SPECS
from venvstacks import __version__
from venvstacks.cli.main import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, "--version") == (0, f"venvstacks: {__version__}\n", "")
    assert _run(capsys, "-V") == (0, f"venvstacks: {__version__}\n", "")


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _run(capsys, "--help")
    assert status == 0 and err == ""
    assert out.startswith("usage: venvstacks ")
    assert "show" in out and "-v, --verbose" in out and "-q, --quiet" in out


def test_show_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _run(capsys, "show", "--help")
    assert status == 0
    for option in ("--include PATTERN", "--allow-missing", "--json", "--build-dir DIR"):
        assert option in out
    assert "venvstacks show venvstacks.toml" in out


def test_no_arguments_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _run(capsys)
    assert status == 2 and out == ""
    assert err.startswith("usage: venvstacks ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["show"], "the following arguments are required: SPEC_PATH", id="missing-spec"),
        pytest.param(["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'", id="unknown-command"),
        pytest.param(["show", "--frob", "x.toml"], "unrecognized arguments: --frob", id="unknown-option"),
        pytest.param(["-v"], "a command is required", id="no-command"),
        pytest.param(["deploy", "artifacts"], "the following arguments are required: --target", id="deploy-needs-target"),
    ],
)
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    status, out, err = _run(capsys, *argv)
    assert status == 2 and out == ""
    assert message in err
    assert "Traceback" not in err


def test_show_reads_upstream_locks_as_valid(capsys: pytest.CaptureFixture[str]) -> None:
    # tests/data/compat/requirements was written by upstream venvstacks 0.8:
    # no layer may be marked '*', exactly as upstream's own `show` printed it.
    status, out, err = _run(capsys, "show", str(COMPAT / "venvstacks.toml"))
    assert status == 0 and err == ""
    upstream = (COMPAT / "upstream-show.txt").read_text(encoding="utf-8")
    assert out == upstream.replace("<spec dir>", str(COMPAT))


def test_show_json_matches_upstream(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _run(capsys, "show", "--json", str(COMPAT / "venvstacks.toml"))
    upstream = (COMPAT / "upstream-show.json").read_text(encoding="utf-8")
    assert status == 0
    assert out == upstream.replace("<spec dir>", str(COMPAT))


def test_show_json(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _run(capsys, "show", "--json", str(COMPAT / "venvstacks.toml"))
    assert status == 0 and err == ""
    data = json.loads(out)
    assert sorted(data) == ["applications", "frameworks", "runtimes", "spec_name"]
    assert [layer["name"] for layer in data["frameworks"]] == ["framework-web", "framework-web-extra"]
    assert out == json.dumps(data, indent=2, sort_keys=True) + "\n"


def test_options_after_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _run(capsys, "show", str(SPECS / "error_unknown_key.toml"), "-q")
    assert status == 1 and out == ""
    assert err.startswith("error: ")


def test_include_without_match_fails(capsys: pytest.CaptureFixture[str]) -> None:
    spec = str(COMPAT / "venvstacks.toml")
    status, out, err = _run(capsys, "show", "--include", "app-nothing", spec)
    assert (status, out) == (1, "")
    assert err == "error: no layers match --include 'app-nothing' (pass --allow-missing to continue without them)\n"
    status, out, err = _run(capsys, "show", "--include", "app-nothing", "--include", "app-dates", "--allow-missing", spec)
    assert status == 0
    assert err == "warning: no layers match --include 'app-nothing'\n"
    assert "app-dates" in out and "app-records" not in out
    status, out, err = _run(capsys, "-q", "show", "--include", "app-nothing", "--allow-missing", spec)
    assert status == 0 and err == ""


def test_invalid_spec_exits_1_with_one_line_per_problem(capsys: pytest.CaptureFixture[str]) -> None:
    path = SPECS / "error_many_at_once.toml"
    status, out, err = _run(capsys, "show", str(path))
    assert status == 1 and out == ""
    lines = err.splitlines()
    assert len(lines) == 6
    assert all(line.startswith(f"error: {path}: ") for line in lines)
    assert "Traceback" not in err


def test_verbose_error_shows_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = _run(capsys, "-v", "show", str(SPECS / "error_unknown_key.toml"))
    assert status == 1
    assert "Traceback (most recent call last)" in err
    assert err.rstrip().splitlines()[-1].startswith("error: ")


def test_missing_spec_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, out, err = _run(capsys, "show", str(tmp_path / "absent.toml"))
    assert (status, out) == (1, "")
    assert err == f"error: {tmp_path / 'absent.toml'}: no such file\n"


def test_warnings_go_to_stderr_unless_quiet(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "venvstacks.toml"
    spec.write_text('[[runtimes]]\nname = "rt"\nfully_versioned_name = "cpython@3.12.1"\nrequirements = []\n', encoding="utf-8")
    status, out, err = _run(capsys, "show", str(spec))
    assert status == 0 and "*rt" in out
    assert err == (
        f"warning: {spec}: runtime 'rt': field 'fully_versioned_name' is deprecated; rename it to 'python_implementation'\n"
    )
    assert _run(capsys, "-q", "show", str(spec))[2] == ""


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    ("argv", "operations"),
    [
        (["lock"], "lock"),
        (["lock", "--if-needed", "--reset-lock", "app-*"], None),
        (["build", "--lock-if-needed", "--publish"], "lock-if-needed, build-if-needed, publish"),
        (["build", "--clean"], "build"),
        (["publish"], "publish"),
        (["local-export"], "export"),
    ],
)
def test_show_only_shows_the_plan_and_changes_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], operations: str | None
) -> None:
    import shutil

    stack = tmp_path / "stack"
    shutil.copytree(COMPAT, stack)
    before = _files(stack)
    status, out, err = _run(capsys, *argv, "--show-only", str(stack / "venvstacks.toml"))
    assert (status, err) == (0, "")
    assert out.startswith(f"{stack / 'venvstacks.toml'}\n├── Runtimes\n")
    if operations is not None:
        assert f"│   └── cpython-3.11 ({operations})\n" in out
        assert f"    └── app-records -> app-records@1 ({operations})\n" in out
    else:  # locking only what needs it, the apps' locks discarded first
        assert "│   └── cpython-3.11 (lock-if-needed)\n" in out
        assert "    └── app-records -> app-records@1 (reset-lock, lock-if-needed)\n" in out
    assert _files(stack) == before


def test_show_only_json_is_the_plan(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = COMPAT / "venvstacks.toml"
    status, out, err = _run(capsys, "build", "--show-only", "--json", "--include", "app-dates", str(spec))
    assert (status, err) == (0, "")
    plan = json.loads(out)
    assert plan["spec_name"] == str(spec)
    assert [entry["name"] for entry in plan["applications"]] == ["app-dates"]
    assert plan["applications"][0]["selected_operations"] == ["build-if-needed"]
    assert [dep["selected_operations"] for dep in plan["applications"][0]["dependencies"]] == [["build-if-needed"]] * 3
    assert [entry["name"] for entry in plan["frameworks"]] == ["framework-web", "framework-web-extra"]


class _Terminal:
    """A stream that says it is a terminal and keeps what is written."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


def _output(*, quiet: bool = False, verbose: int = 0, environ: dict[str, str] | None = None, terminal: bool = True) -> Any:
    import io

    from venvstacks.cli.output import Output
    from venvstacks.cli.args import Args

    args = Args(quiet=quiet, verbose=verbose)
    stderr = _Terminal() if terminal else io.StringIO()
    return Output(args, io.StringIO(), stderr, environ={"TERM": "xterm"} if environ is None else environ), stderr


def test_progress_is_a_status_line_on_a_terminal() -> None:
    out, stderr = _output()
    out.progress("locking layer 'a'")
    out.progress("locking layer 'b'")
    out.warning("careful")
    out.result("done\n")
    out.finish()
    assert stderr.text == (
        "\r\x1b[Klocking layer 'a'" "\r\x1b[Klocking layer 'b'" "\r\x1b[K"  # the status line, cleared before other output
        "\x1b[1;33mwarning:\x1b[0m careful\n"
    )
    assert out.stdout.getvalue() == "done\n"


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"terminal": False}, "locking layer 'a'\nwarning: careful\nerror: broken\n"),  # plain lines
        ({"quiet": True}, "\x1b[1;31merror:\x1b[0m broken\n"),  # nothing but errors
        ({"environ": {"TERM": "xterm", "NO_COLOR": "1"}}, "\r\x1b[Klocking layer 'a'\r\x1b[Kwarning: careful\nerror: broken\n"),
        ({"environ": {"TERM": "dumb"}}, "locking layer 'a'\nwarning: careful\nerror: broken\n"),
        ({"verbose": 1, "environ": {"TERM": "xterm", "NO_COLOR": ""}}, "locking layer 'a'\n\x1b[1;33mwarning:\x1b[0m careful\n\x1b[1;31merror:\x1b[0m broken\n"),
    ],
)
def test_progress_and_colour_elsewhere(options: dict[str, Any], expected: str) -> None:
    out, stderr = _output(**options)
    out.progress("locking layer 'a'")
    out.warning("careful")
    out.error("broken")
    out.finish()
    assert (stderr.text if isinstance(stderr, _Terminal) else stderr.getvalue()) == expected


def test_deeply_nested_toml_is_a_one_line_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "venvstacks.toml"
    spec.write_text("a = " + "[" * 100000, encoding="utf-8")
    status, out, err = _run(capsys, "show", str(spec))
    assert (status, out) == (1, "")
    assert err == f"error: {spec}: invalid TOML: arrays or inline tables are nested too deeply to read\n"


@pytest.mark.parametrize("command", ["show", "lock", "build", "publish"])
def test_a_name_too_long_for_file_names_is_a_spec_error(capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str) -> None:
    # 240 characters: 'show' used to accept it, and 'lock' failed writing 'pylock.framework-<name>.meta.json'.
    spec = tmp_path / "venvstacks.toml"
    name = "f" * 240
    runtime = '[[runtimes]]\nname = "rt"\npython_implementation = "cpython@3.12.1"\nrequirements = []\n'
    spec.write_text(runtime + f'[[frameworks]]\nname = "{name}"\nruntime = "rt"\nrequirements = []\n', encoding="utf-8")
    status, out, err = _run(capsys, command, str(spec))
    assert (status, out) == (1, "")
    (line,) = err.splitlines()
    assert line.startswith(f"error: {spec}: framework '{name}': field 'name': framework name is 240 characters long: ")
    limit = min(os.pathconf(tmp_path, "PC_NAME_MAX"), 255)
    assert line.endswith(f"so it can have at most {limit - 70}") and "internal error" not in line
    assert not (tmp_path / "requirements").exists() and not (tmp_path / "_build").exists()


def test_publish_accepts_bundle_and_ignores_it(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # As its --help says: publishing downloads nothing, so --bundle (even a folder that is not there) changes nothing.
    spec = str(COMPAT / "venvstacks.toml")
    plain = _run(capsys, "publish", "--show-only", spec)
    assert plain[0] == 0
    assert _run(capsys, "publish", "--bundle", str(tmp_path / "absent"), "--show-only", spec) == plain


def test_build_checks_the_publish_options_before_building(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # A level the format does not take fails at once: nothing is locked or built first.
    spec = tmp_path / "venvstacks.toml"
    spec.write_text('[[runtimes]]\nname = "rt"\npython_implementation = "cpython@3.11.7"\nrequirements = []\n', encoding="utf-8")
    status, out, err = _run(capsys, "build", "--lock-if-needed", "--publish", "--compression-level", "12", str(spec))
    assert (status, out, err) == (1, "", "error: --compression-level 12: tar.xz takes 0 to 9\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["venvstacks.toml"]


def test_a_stale_lock_names_each_layer_and_why(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    spec = tmp_path / "venvstacks.toml"
    spec.write_text('[[runtimes]]\nname = "rt"\npython_implementation = "cpython@3.11.7"\nrequirements = []\n', encoding="utf-8")
    status, out, err = _run(capsys, "publish", str(spec))
    assert (status, out) == (1, "")
    assert err == "error: these layers have no valid lock (lock and build them first):\nerror:   rt (no lock metadata)\n"
