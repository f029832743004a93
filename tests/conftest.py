"""Shared fixtures: the built zipapp."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from support import ROOT

sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zipapp, built once per test session from the working tree."""
    import build_zipapp

    return build_zipapp.build(tmp_path_factory.mktemp("pyz") / "venvstacks.pyz")
