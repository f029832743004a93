"""Every command's --help: each option explained on one line, and an example."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from support import ROOT

COMMANDS = ["show", "lock", "build", "publish", "local-export", "fetch", "deploy", "verify"]


def _help(*command: str) -> str:
    env = {**os.environ, "COLUMNS": "100", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "venvstacks", *command, "--help"], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_each_option_is_explained_on_one_line_with_an_example(command: str) -> None:
    text = _help(*filter(None, [command]))
    options = text.split("\noptions:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    entries: list[list[str]] = []
    for line in options:
        if re.match(r"  -", line):
            entries.append([line])
        else:
            entries[-1].append(line)
    for entry in entries:
        inline_help = re.match(r"  \S.*?\s{2,}\S", entry[0]) is not None
        assert len(entry) == (1 if inline_help else 2), "\n".join(entry)
    assert re.search(r"\n(example|examples):\n  venvstacks ", text), text


def _option_help(command: str) -> dict[str, str]:
    """Each option of a command (long spelling, `--[no-]` dropped) and its help line."""
    options = _help(command).split("\noptions:\n", 1)[1].split("\n\n", 1)[0]
    found: dict[str, str] = {}
    for match in re.finditer(r"^  (-\S+(?: \S+)*?)(?:\s{2,}|\n\s+)(\S.*)$", options, re.MULTILINE):
        for spelling in match[1].split(", "):
            found[spelling.split()[0].replace("--[no-]", "--")] = match[2]
    return found


@pytest.mark.parametrize("command", COMMANDS)
def test_option_help_names_only_options_the_command_has(command: str) -> None:
    # As '--allow-missing' once named '--reset-lock' on every command, though only 'lock' has it.
    helps = _option_help(command)
    for option, text in helps.items():
        named = {re.sub(r"^--no-", "--", name) for name in re.findall(r"(?<![\w-])--[a-z][a-z-]*", text)}
        assert named <= set(helps), f"{command} {option}: {text!r} names {sorted(named - set(helps))}"


def test_uv_help_gives_the_whole_lookup_order() -> None:
    for command in ("lock", "build"):
        text = _option_help(command)["--uv"]
        places = ["$VENVSTACKS_UV", "PATH", "beside python3", "python3 -m uv"]
        assert [text.index(place) for place in places] == sorted(text.index(place) for place in places), text


def test_bundle_help_says_what_it_does_per_command() -> None:
    assert "no downloads" in _option_help("lock")["--bundle"] and "no downloads" in _option_help("build")["--bundle"]
    assert _option_help("publish")["--bundle"] == "accepted and ignored: publishing downloads nothing"
