"""Shared fixtures: the built zipapp, a writer of stack folders, and the runtime archives from `runtimes.py`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from support import ROOT, StackFactory

sys.path.insert(0, str(ROOT))

# Importing the fixtures registers them for every test.
from runtimes import (  # noqa: E402,F401
    patchelf,
    pyenv_prefixes,
    pyenv_root,
    runtime_archive_dir,
    runtime_archive_tool,
    runtime_archives,
    runtime_archives_built_locally,
    runtime_versions,
    strip_tool,
)


@pytest.fixture(scope="session")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zipapp, built once per test session from the working tree."""
    import build_zipapp

    return build_zipapp.build(tmp_path_factory.mktemp("pyz") / "venvstacks.pyz")


@pytest.fixture(scope="session")
def make_stack(tmp_path_factory: pytest.TempPathFactory, runtime_versions: dict[str, str]) -> StackFactory:  # noqa: F811  (the fixture)
    """Writes a stack folder (a spec for the runtime versions in use, and its launch modules and other files); see `StackFactory`."""
    return StackFactory(tmp_path_factory, runtime_versions)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs the package index is slow too, so that `-m "not slow"` never goes online."""
    for item in items:
        if item.get_closest_marker("network") is not None and item.get_closest_marker("slow") is None:
            raise pytest.UsageError(f"{item.nodeid} is marked network but not slow")
