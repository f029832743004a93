"""`deploy` interrupted by real signals at chosen points, on a really built and published stack.

The deployment runs as a separate process (the built zipapp) with the test hook
`VENVSTACKS_TEST_PAUSE=<point>:<flag file>` set: reaching the point, it creates
the flag file and waits while it exists, and the test sends the signal then.
Points: `deploy-unpacked` (a layer unpacked into its temporary folder) and
`deploy-swapped` (every new layer moved into place, none relinked).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import run
from test_deploy import _snapshot, published  # noqa: F401  (the module's fixture: the stack, built and published)
from venvstacks.deploy.deployer import RECORD_DIR, deploy
from venvstacks.deploy.verify import verify

pytestmark = [pytest.mark.slow, pytest.mark.network]

RUNTIME = "cpython-3.11"
UPPER = ["framework-web", "app-hello", "app-counter@1"]
MARKER = ".venvstacks-partial"
USERS_OWN = [f".{RUNTIME}.partial-abc123", ".app-hello.old-keepme", ".notes.failed-x"]
"""Hidden folders of the user's whose names look like deploy's temporary folders."""


class Paused:
    """A `deploy` process held at a pause point."""

    def __init__(self, pyz: Path, artifacts: Path, target: Path, point: str, flag: Path) -> None:
        env = {**os.environ, "VENVSTACKS_TEST_PAUSE": f"{point}:{flag}"}
        env.pop("PYTHONPATH", None)
        command = [sys.executable, str(pyz), "deploy", str(artifacts), "--target", str(target)]
        self.flag = flag
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while not flag.exists() and self.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        if not flag.exists():
            self.process.kill()
            pytest.fail(f"the deployment never paused at {point!r}: {self.process.communicate()[1]}")

    def signal(self, signum: int, timeout: float = 30) -> tuple[int, str]:
        """Send `signum`, let the paused step go on, and return the exit status and stderr."""
        self.process.send_signal(signum)
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            self.flag.unlink(missing_ok=True)
            time.sleep(0.02)
        if self.process.poll() is None:
            self.process.kill()
            pytest.fail(f"the deployment did not stop within {timeout} seconds of signal {signum}")
        return self.process.returncode, self.process.communicate()[1]


def _temporary(target: Path) -> list[str]:
    """The hidden entries of `target` that deploy made: neither its records nor the user's own."""
    return sorted(p.name for p in target.iterdir() if p.name.startswith(".") and p.name not in (RECORD_DIR, *USERS_OWN))


@pytest.fixture
def runtime_only(published: Path, tmp_path: Path) -> Path:  # noqa: F811
    """A target holding the deployed runtime."""
    target = tmp_path / "target"
    deploy(published, target, include=[RUNTIME])
    return target


@pytest.mark.parametrize("point", ["deploy-unpacked", "deploy-swapped"])
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_deployment_leaves_the_target_as_it_was(
    pyz: Path, published: Path, runtime_only: Path, tmp_path: Path, point: str, signum: int  # noqa: F811
) -> None:
    before = _snapshot(runtime_only)
    paused = Paused(pyz, published, runtime_only, point, tmp_path / "flag")
    if point == "deploy-unpacked":
        assert any(".partial-" in name for name in _temporary(runtime_only))
    else:
        assert set(UPPER) <= {p.name for p in runtime_only.iterdir()}
    status, err = paused.signal(signum)
    assert status == 130 and "error: interrupted" in err, err
    assert _temporary(runtime_only) == [] and _snapshot(runtime_only) == before
    assert verify(runtime_only) == []


def test_an_interrupted_first_deployment_leaves_nothing(pyz: Path, published: Path, tmp_path: Path) -> None:  # noqa: F811
    target = tmp_path / "new target"
    paused = Paused(pyz, published, target, "deploy-unpacked", tmp_path / "flag")
    assert paused.signal(signal.SIGINT)[0] == 130
    assert not target.exists()


@pytest.mark.parametrize("point", ["deploy-unpacked", "deploy-swapped"])
def test_the_next_deployment_clears_what_a_killed_one_left(
    pyz: Path, published: Path, runtime_only: Path, tmp_path: Path, point: str  # noqa: F811
) -> None:
    for name in USERS_OWN:
        (runtime_only / name).mkdir()
        (runtime_only / name / "mine.txt").write_text("the user's\n", encoding="utf-8")
    before = _snapshot(runtime_only)
    paused = Paused(pyz, published, runtime_only, point, tmp_path / "flag")
    assert paused.signal(signal.SIGKILL)[0] == -signal.SIGKILL
    left = _temporary(runtime_only)
    # Each is marked as deploy's own, or empty (killed between creating and marking it).
    assert left and all(
        (runtime_only / name / MARKER).is_file() or not any((runtime_only / name).iterdir()) for name in left
    )
    if point == "deploy-swapped":  # the new layers are in place, unrelinked: the deployment is unfinished
        result = run([sys.executable, str(pyz), "verify", str(runtime_only)])
        assert result.returncode == 1 and "a deployment was interrupted" in result.stderr, result.stderr
    # The next deployment first puts everything back as it was, keeping the user's folders.
    layers = deploy(published, runtime_only, include=[RUNTIME])
    assert [layer.action for layer in layers] == ["unchanged"]
    assert _temporary(runtime_only) == [] and _snapshot(runtime_only) == before
    assert verify(runtime_only) == []
    assert {layer.action for layer in deploy(published, runtime_only)} == {"unchanged", "installed"}
    assert verify(runtime_only) == []


def test_an_unmarked_temporary_folder_is_removed_only_when_empty(published: Path, runtime_only: Path) -> None:  # noqa: F811
    """A deployment killed between creating a temporary folder and marking it leaves an empty one behind."""
    empty, kept = runtime_only / ".app-hello.partial-k1lled", runtime_only / ".app-hello.old-mine"
    empty.mkdir()
    kept.mkdir()
    (kept / "notes.txt").write_text("the user's\n", encoding="utf-8")
    deploy(published, runtime_only, include=[RUNTIME])
    assert not empty.exists()
    assert (kept / "notes.txt").read_text(encoding="utf-8") == "the user's\n"
