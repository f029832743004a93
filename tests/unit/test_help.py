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
