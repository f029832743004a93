"""docs/commands.md documents every command and option there is, and nothing that is not."""

from __future__ import annotations

import argparse
import re

import pytest

from support import ROOT, documented_json_keys
from venvstacks.cli.parser import build_parser

DOC = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
COMMON = {"-h", "--help", "-v", "--verbose", "-q", "--quiet"}


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _sections() -> dict[str, str]:
    parts = re.split(r"^## `([a-z-]+)`\n", DOC, flags=re.M)
    return {name: body.split("\n## ", 1)[0] for name, body in zip(parts[1::2], parts[2::2])}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    """Each option's main spelling (`--x` for a `--x`/`--no-x` pair)."""
    return {action.option_strings[0] for action in parser._actions if action.option_strings} - COMMON


def test_every_command_has_a_section() -> None:
    assert set(_sections()) == set(_subparsers())


@pytest.mark.parametrize("command", sorted(_subparsers()))
def test_every_option_is_documented_and_exists(command: str) -> None:
    section = _sections()[command]
    documented = set(re.findall(r"`(--?[a-z][a-z-]*)", section))
    actual = _options(_subparsers()[command])
    # Options named in the section are the command's own, those of every command, or --no- forms.
    strays = {o for o in documented - actual - COMMON if not (o.startswith("--no-") and "--" + o[5:] in actual)}
    assert strays == set(), f"documented for {command} but not accepted: {sorted(strays)}"
    assert actual - documented == set(), f"accepted by {command} but not documented: {sorted(actual - documented)}"


def test_common_options_and_environment_are_documented() -> None:
    for option in COMMON - {"-h"}:
        assert f"`{option}`" in DOC
    for variable in ("VENVSTACKS_PYTHON_ARCHIVE_DIR", "VENVSTACKS_UV", "NO_COLOR"):
        assert f"`{variable}`" in DOC


def test_json_results_are_documented_for_the_commands_that_have_them() -> None:
    keys = documented_json_keys()
    with_json = {name for name, parser in _subparsers().items() if "--json" in _options(parser)} - {"show"}
    assert set(keys) == with_json
    assert all(document and layers for document, layers in keys.values())
