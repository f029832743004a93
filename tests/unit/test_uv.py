"""uv's command lines, finding uv, and the process runner's environment."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from venvstacks import _proc
from venvstacks.errors import CommandError, UvError
from venvstacks.uv import MINIMUM_VERSION, UV_HINT, export_argv, find_uv, is_supported, lock_argv, python_install_argv


def test_lock_and_export_command_lines() -> None:
    common = {"project": Path("/b/x_resolve"), "python": Path("/b/rt/bin/python3"), "config_file": Path("/b/uv.toml")}
    assert lock_argv(["uv"], **common) == [
        "uv", "lock", "--project", "/b/x_resolve", "--python", "/b/rt/bin/python3", "--config-file", "/b/uv.toml",
        "--upgrade", "--no-managed-python", "--quiet", "--color", "never", "--no-python-downloads",
    ]  # fmt: skip
    argv = export_argv(["python", "-m", "uv"], output=Path("/b/x_resolve/pylock.toml"), **common)
    assert argv[:4] == ["python", "-m", "uv", "export"]
    assert argv[argv.index("--format") + 1] == "pylock.toml"
    assert {"--locked", "--no-header", "--no-annotate", "--no-emit-project"} <= set(argv)


def test_python_install_is_not_quiet() -> None:
    # --quiet makes uv swallow why a download failed (a DNS error, a missing release).
    argv = python_install_argv(["uv"], version="3.11.7", install_dir=Path("/b/d"), config_file=Path("/b/uv.toml"))
    assert argv[:4] == ["uv", "python", "install", "cpython-3.11.7"]
    assert "--quiet" not in argv and "-q" not in argv and "--no-bin" in argv


class FakeRunner:
    """Answers `--version` for the commands listed as working, as uv `version`."""

    def __init__(self, working: set[tuple[str, ...]], version: str | Mapping[tuple[str, ...], str] = "0.13.9") -> None:
        self.working = working
        self.version = version
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, argv: Sequence[str | os.PathLike[str]], *, description: str,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None) -> _proc.CommandResult:  # fmt: skip
        words = tuple(os.fspath(a) for a in argv)
        self.calls.append(words)
        if words[:-1] in self.working:
            version = self.version if isinstance(self.version, str) else self.version[words[:-1]]
            return _proc.CommandResult(words, 0, f"uv {version} (x86_64-unknown-linux-gnu)\n", "")
        raise CommandError(f"{description} failed")


def test_find_uv_prefers_explicit_then_environment(tmp_path: Path) -> None:
    runner = FakeRunner({("/opt/uv",), ("/env/uv",)})
    assert find_uv("/opt/uv", environ={"VENVSTACKS_UV": "/env/uv"}, runner=runner).command == ("/opt/uv",)
    found = find_uv(None, environ={"VENVSTACKS_UV": "/env/uv"}, runner=runner)
    assert (found.command, found.version) == (("/env/uv",), "0.13.9")


def test_find_uv_explains_a_broken_choice() -> None:
    with pytest.raises(UvError, match=r"^VENVSTACKS_UV names '/nope/uv', which is not a working uv binary$"):
        find_uv(None, environ={"VENVSTACKS_UV": "/nope/uv"}, runner=FakeRunner(set()))


def test_minimum_version() -> None:
    assert MINIMUM_VERSION == "0.8.12"
    assert [is_supported(v) for v in ("0.8.12", "0.8.13", "0.9.0-alpha.1", "0.13.9", "1.0.0")] == [True] * 5
    assert [is_supported(v) for v in ("0.8.11", "0.8.4", "0.7.22", "0.1.0", "nonsense")] == [False] * 5


def test_find_uv_refuses_a_named_uv_that_is_too_old() -> None:
    with pytest.raises(UvError) as caught:
        find_uv("/opt/uv", environ={}, runner=FakeRunner({("/opt/uv",)}, version="0.6.14"))
    assert str(caught.value) == (
        "--uv names '/opt/uv', which is uv 0.6.14, but venvstacks needs uv 0.8.12 or newer: upgrade it, or name a newer one with --uv"
    )


def test_find_uv_passes_over_a_uv_that_is_too_old(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    old = tmp_path / "uv"
    old.write_text("", encoding="utf-8")
    old.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("sys.executable", "/py/python")
    module = ("/py/python", "-m", "uv")
    runner = FakeRunner({(str(old),), module}, version={(str(old),): "0.5.1", module: "0.13.9"})
    found = find_uv(None, environ={}, runner=runner)
    assert (found.command, found.version) == (module, "0.13.9")
    # with nothing new enough, the error names the old one and its version
    runner = FakeRunner({(str(old),)}, version="0.5.1")
    with pytest.raises(UvError) as caught:
        find_uv(None, environ={}, runner=runner)
    assert str(caught.value) == f"{old} is uv 0.5.1, but venvstacks needs uv 0.8.12 or newer: upgrade it, or name a newer one with --uv"


def test_find_uv_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("sys.executable", str(tmp_path / "python"))
    with pytest.raises(UvError) as caught:
        find_uv(None, environ={}, runner=FakeRunner(set()))
    assert str(caught.value) == UV_HINT
    assert "\n" not in UV_HINT


def test_scrubbed_environment() -> None:
    env = _proc.scrubbed_environment(
        {"EXTRA": "1"},
        base={
            "PATH": "/bin", "VIRTUAL_ENV": "/v", "PYTHONPATH": "/p", "UV_INDEX_URL": "https://x", "UV_CACHE_DIR": "/c",
            "UV_INDEX_INTERNAL_PASSWORD": "secret", "UV_EXCLUDE_NEWER": "2020-01-01", "UV_PYTHON_INSTALL_MIRROR": "file:///m",
        },
    )  # fmt: skip
    assert env["PATH"] == "/bin" and env["EXTRA"] == "1"
    assert "VIRTUAL_ENV" not in env and env["PYTHONPATH"] == "" and env["PYTHONNOUSERSITE"] == "1"
    assert "UV_INDEX_URL" not in env and "UV_EXCLUDE_NEWER" not in env
    assert env["UV_CACHE_DIR"] == "/c" and env["UV_INDEX_INTERNAL_PASSWORD"] == "secret"
    assert env["UV_PYTHON_INSTALL_MIRROR"] == "file:///m"


def test_run_failure_carries_the_output(tmp_path: Path) -> None:
    script = tmp_path / "fail.sh"
    script.write_text("#!/bin/sh\necho out; echo err >&2; exit 3\n", encoding="utf-8")
    script.chmod(0o755)
    with pytest.raises(CommandError) as caught:
        _proc.run([script, "a b"], description="doing a thing")
    message = str(caught.value)
    assert message.startswith(f"doing a thing failed (exit status 3)\ncommand: {script} 'a b'\n  out\n  err\nfull output: ")
    log = Path(message.rsplit("full output: ", 1)[1])
    assert "err" in log.read_text(encoding="utf-8") and "out" in log.read_text(encoding="utf-8")
    log.unlink()
    with pytest.raises(CommandError, match=r"^doing a thing: cannot run '/no/such': "):
        _proc.run(["/no/such"], description="doing a thing")
