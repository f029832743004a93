"""Command lines in README.md, examples/README.md and docs/ name commands and options that exist."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from support import ROOT
from venvstacks.cli.parser import build_parser

PAGES = [ROOT / "README.md", ROOT / "examples" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TOP_LEVEL = {"-v", "--verbose", "-q", "--quiet", "-h", "--help", "-V", "--version"}


def _commands() -> dict[str, set[str]]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    accepted = {}
    for name, sub in action.choices.items():
        accepted[name] = {option for a in sub._actions for option in a.option_strings} | TOP_LEVEL
    return accepted


def _command_lines(text: str) -> list[str]:
    """Every `venvstacks ...` command line in the page's console blocks (continuation lines joined)."""
    lines = []
    for block in re.findall(r"```console\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split("  #", 1)[0].removeprefix("$ ").strip()
            if re.search(r"(^|\s|/)venvstacks(\.pyz)?\s", line + " ") and "build_zipapp" not in line and "[" not in line:
                lines.append(line)
    return lines


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_documented_command_lines_exist(page: Path) -> None:
    accepted = _commands()
    for line in _command_lines(page.read_text(encoding="utf-8")):
        words = shlex.split(line.split("|", 1)[0])
        start = next(i for i, w in enumerate(words) if re.search(r"(^|/)venvstacks(\.pyz)?$", w))
        rest = [w for w in words[start + 1 :] if not w.startswith(("-V", "--version", "-h", "--help"))]
        command = next((w for w in rest if not w.startswith("-")), None)
        if command is None:
            continue
        assert command in accepted, f"{page.name}: unknown command in {line!r}"
        for word in rest:
            if word.startswith("-"):
                option = word.split("=", 1)[0]
                assert option in accepted[command], f"{page.name}: {command} has no option {option} ({line!r})"
