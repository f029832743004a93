"""Builds and publishes that are killed, interrupted, run twice at once, or run out of disk.

Each test drives the real zipapp in real processes and stops it at a chosen
point (the `VENVSTACKS_TEST_PAUSE` hook) or while it compresses. Afterwards a
reader of the output folder must see the old publish or the new one, never
metadata describing a file that is not beside it, and the next run must
clean up what was left.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import StackFactory, publish_stack, run

pytestmark = [pytest.mark.slow, pytest.mark.network]

STACK = """\
[[runtimes]]
name = "cpython-3.11"
python_implementation = "cpython@{py311}"
requirements = []

[[applications]]
name = "hello"
launch_module = "hello.py"
runtime = "cpython-3.11"
requirements = ["six"]

[tool.uv]
exclude-newer = "2025-08-27T00:00:00Z"
"""
STAGING = ".venvstacks-staging"


@pytest.fixture(scope="module")
def built_stack(make_stack: StackFactory, pyz: Path, runtime_archive_dir: Path) -> Path:
    """A locked, built and published two-layer stack, to copy for each test."""
    spec = make_stack(STACK, {"hello.py": "import six\nprint('hello', six.PY3)\n"})
    publish_stack(spec, pyz, runtime_archive_dir)
    return spec.parent


@pytest.fixture
def stack(built_stack: Path, tmp_path: Path) -> Path:
    """A private copy of the built stack; returns its spec file."""
    copy = tmp_path / "stack"
    shutil.copytree(built_stack, copy, symlinks=True)
    return copy / "venvstacks.toml"


def _env(archive_dir: Path, pause: str | None = None, flag: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "VENVSTACKS_PYTHON_ARCHIVE_DIR": str(archive_dir)}
    env.pop("PYTHONPATH", None)
    if pause is not None:
        env["VENVSTACKS_TEST_PAUSE"] = f"{pause}:{flag}"
    return env


def _vs(pyz: Path, archive_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, str(pyz), *args], env={"VENVSTACKS_PYTHON_ARCHIVE_DIR": str(archive_dir)})


def _start(pyz: Path, archive_dir: Path, args: list[str], *, pause: str | None = None, flag: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(pyz), *args], env=_env(archive_dir, pause, flag),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
    )  # fmt: skip


def _wait_for(flag: Path, process: subprocess.Popen[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not flag.exists():
        if process.poll() is not None:
            pytest.fail(f"the process ended before reaching the pause point: {process.communicate()[1]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("the process never reached the pause point")
        time.sleep(0.02)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_described(out: Path, entry: dict[str, object], where: Path) -> None:
    archive = out / str(entry["archive_name"])
    assert archive.is_file(), f"{where} lists {archive.name}, which is missing"
    assert archive.stat().st_size == entry["archive_size"], f"{where}: size of {archive.name} differs"
    hashes = entry["archive_hashes"]
    assert isinstance(hashes, dict) and _sha256(archive) == hashes["sha256"], f"{where}: sha256 of {archive.name} differs"


def assert_consistent(out: Path) -> bool:
    """Every metadata file describes the archive beside it; returns whether the stack manifest is there."""
    meta = out / "__venvstacks__"
    for path in sorted((meta / "env_metadata").glob("*.json")):
        _check_described(out, json.loads(path.read_text(encoding="utf-8")), path)
    manifest = meta / "venvstacks.json"
    if not manifest.exists():
        return False
    layers = json.loads(manifest.read_text(encoding="utf-8"))["layers"]
    for entries in layers.values():
        for entry in entries:
            _check_described(out, entry, manifest)
    return True


def _snapshot(folder: Path) -> dict[str, str]:
    """The digest of every file a reader would look at (not the lock file, not leftovers)."""
    files = (p for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".venvstacks.lock")
    return {str(p.relative_to(folder)): _sha256(p) for p in files if not _leftovers_in(p.relative_to(folder))}


def _leftovers_in(relative: Path) -> bool:
    return any(part == STAGING or ".partial" in part for part in relative.parts)


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if _leftovers_in(Path(p.name)))


def _publish_again_and_deploy(pyz: Path, archive_dir: Path, spec: Path, tmp_path: Path) -> None:
    """The next publish cleans up and leaves a consistent, deployable output."""
    result = _vs(pyz, archive_dir, "publish", str(spec))
    assert result.returncode == 0, result.stderr
    out = spec.parent / "_artifacts"
    assert assert_consistent(out)
    assert _leftovers(out) == [] and _leftovers(spec.parent / "_build") == []
    deployed = _vs(pyz, archive_dir, "deploy", str(out), "--target", str(tmp_path / "deployed"))
    assert deployed.returncode == 0, deployed.stderr


@pytest.mark.parametrize("point", ["publish-commit", "publish-moved"])
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=["KILL", "INT", "TERM"])
def test_publish_stopped_at_a_chosen_point_never_lies(
    stack: Path, pyz: Path, runtime_archive_dir: Path, tmp_path: Path, point: str, signum: int
) -> None:
    out = stack.parent / "_artifacts"
    before = _snapshot(out)
    flag = tmp_path / "paused"
    process = _start(pyz, runtime_archive_dir, ["publish", "--force", str(stack)], pause=point, flag=flag)
    _wait_for(flag, process)
    process.send_signal(signum)  # the handler interrupts the pause itself
    _, stderr = process.communicate(timeout=60)
    if signum == signal.SIGKILL:
        assert process.returncode == -signal.SIGKILL
    else:
        assert process.returncode == 130, stderr
        assert "error: interrupted" in stderr and "Traceback" not in stderr
        assert _leftovers(out) == [], "an interrupted publish cleans up after itself"
    has_manifest = assert_consistent(out)
    if point == "publish-commit":
        # Nothing had been moved yet: the old publish is still there, unchanged.
        assert has_manifest and _snapshot(out) == before
    else:
        assert not has_manifest, "a half-replaced publish must not look finished"
    _publish_again_and_deploy(pyz, runtime_archive_dir, stack, tmp_path)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=["KILL", "INT", "TERM"])
def test_publish_stopped_while_compressing_keeps_the_old_publish(
    stack: Path, pyz: Path, runtime_archive_dir: Path, tmp_path: Path, signum: int
) -> None:
    out = stack.parent / "_artifacts"
    before = _snapshot(out)
    process = _start(pyz, runtime_archive_dir, ["publish", "--force", str(stack)])
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith("archiving layer 'cpython-3.11'"):
            break
    else:
        pytest.fail("publish never started archiving the runtime")
    time.sleep(0.3)
    process.send_signal(signum)
    started = time.monotonic()
    process.communicate(timeout=60)
    assert time.monotonic() - started < 10, "an interrupted publish stops promptly"
    if signum != signal.SIGKILL:
        assert process.returncode == 130
        assert _leftovers(out) == []
    assert assert_consistent(out) and _snapshot(out) == before
    _publish_again_and_deploy(pyz, runtime_archive_dir, stack, tmp_path)


def test_build_killed_then_rebuilt_and_leftovers_removed(stack: Path, pyz: Path, runtime_archive_dir: Path, tmp_path: Path) -> None:
    build_dir, out = stack.parent / "_build", stack.parent / "_artifacts"
    flag = tmp_path / "paused"
    process = _start(pyz, runtime_archive_dir, ["build", "--clean", str(stack)], pause="build-layer", flag=flag)
    _wait_for(flag, process)
    process.kill()
    process.communicate()
    # What interrupted runs leave behind, and files of the user's that must stay.
    (build_dir / "cpython-3.11.partial-abcd1234").mkdir()
    (build_dir / "cpython-3.11.partial-abcd1234" / "junk").write_bytes(b"x" * 1000)
    (build_dir / ".app-hello.last-build.json.k2j3h4g5.partial").write_text("{", encoding="utf-8")
    (out / STAGING).mkdir()
    (out / STAGING / "app-hello.tar.xz").write_bytes(b"half an archive")
    (out / ".app-hello.tar.xz.partial-q1w2e3r4").write_bytes(b"half an archive")
    (out / "notes.txt").write_text("mine\n", encoding="utf-8")
    result = _vs(pyz, runtime_archive_dir, "build", "--publish", str(stack))
    assert result.returncode == 0, result.stderr
    assert "[built]" in result.stdout, "a layer whose build was cut short is built again"
    assert _leftovers(build_dir) == [] and _leftovers(out) == []
    assert (out / "notes.txt").read_text(encoding="utf-8") == "mine\n"
    assert assert_consistent(out)


@pytest.mark.parametrize("point", ["runtime-unpacked", "runtime-linked"])
def test_build_killed_while_making_a_runtime_builds_it_whole_next_time(stack: Path, pyz: Path, runtime_archive_dir: Path, tmp_path: Path, point: str) -> None:
    import shutil

    build_dir, flag = stack.parent / "_build", tmp_path / "paused"
    shutil.rmtree(build_dir / "_python-unpacked", ignore_errors=True)  # so the archive is unpacked again
    process = _start(pyz, runtime_archive_dir, ["build", "--clean", str(stack)], pause=point, flag=flag)
    _wait_for(flag, process)
    process.kill()
    process.communicate()
    assert not (build_dir / "cpython-3.11" / "bin" / "python3").exists()  # never half there under its name
    result = _vs(pyz, runtime_archive_dir, "build", str(stack))
    assert result.returncode == 0, result.stderr
    assert _leftovers(build_dir) == [] and _leftovers(build_dir / "_python-unpacked") == []
    assert (build_dir / "_python-unpacked" / "cpython-3.11" / "snapshot.json").is_file()
    version = run([str(build_dir / "cpython-3.11" / "bin" / "python3"), "-c", "import sys; print(sys.version_info[0])"])
    assert version.returncode == 0 and version.stdout == "3\n"


@pytest.mark.parametrize(("command", "point"), [("build", "build-layer"), ("publish", "publish-commit")])
def test_a_second_run_on_the_same_folders_is_refused(
    stack: Path, pyz: Path, runtime_archive_dir: Path, tmp_path: Path, command: str, point: str
) -> None:
    flag = tmp_path / "paused"
    args = [command, "--clean" if command == "build" else "--force", str(stack)]
    first = _start(pyz, runtime_archive_dir, args, pause=point, flag=flag)
    try:
        _wait_for(flag, first)
        second = _vs(pyz, runtime_archive_dir, command, str(stack))
        assert second.returncode == 1
        errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and f"is in use by process {first.pid} ({command})" in errors[0], second.stderr
    finally:
        flag.unlink(missing_ok=True)
    _, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    assert assert_consistent(stack.parent / "_artifacts")


# --- A full disk: a real tmpfs, mounted in a private mount namespace --------------------------------


@pytest.fixture(scope="module")
def namespace() -> list[str]:
    """`unshare -m` (as root) or `unshare -r -m`, whichever can mount a tmpfs here."""
    unshare = shutil.which("unshare") or "/usr/bin/unshare"
    attempts = [[unshare, "-m"]] if os.geteuid() == 0 else [[unshare, "-r", "-m"], [unshare, "-m"]]
    for attempt in attempts:
        probe = subprocess.run([*attempt, "sh", "-c", "mount -t tmpfs -o size=64k none /mnt"], capture_output=True, check=False)
        if probe.returncode == 0:
            return attempt
    pytest.fail("cannot mount a tmpfs in a private mount namespace here (util-linux unshare and mount are needed)")


def _in_tmpfs(namespace: list[str], mount: Path, size_kib: int, script: str) -> subprocess.CompletedProcess[str]:
    """Run the shell `script` with a `size_kib` tmpfs mounted on `mount`, visible only to it."""
    mount.mkdir(exist_ok=True)
    full = f"set -u\nmount -t tmpfs -o size={size_kib}k none {shlex.quote(str(mount))}\n{script}"
    env = {**os.environ}
    env.pop("PYTHONPATH", None)
    return subprocess.run([*namespace, "sh", "-c", full], capture_output=True, text=True, env=env, check=False)


def _size_kib(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) // 1024


def test_full_disk_while_archiving_keeps_the_old_publish(stack: Path, pyz: Path, runtime_archive_dir: Path, tmp_path: Path, namespace: list[str]) -> None:
    out = stack.parent / "_artifacts"
    mount, after = tmp_path / "disk", tmp_path / "after"
    vs = shlex.join([sys.executable, str(pyz)])
    script = f"""
cp -a {shlex.quote(str(out))}/. {mount}/
VENVSTACKS_PYTHON_ARCHIVE_DIR={shlex.quote(str(runtime_archive_dir))} {vs} publish --force --output-dir {mount} {stack} 2>{tmp_path}/stderr
echo "status=$?"
cp -a {mount}/. {after}/
"""
    result = _in_tmpfs(namespace, mount, _size_kib(out) + 256, script)
    assert "status=1" in result.stdout, result.stdout + result.stderr
    stderr = (tmp_path / "stderr").read_text(encoding="utf-8")
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert errors and "No space left on device" in stderr and str(mount) in errors[-1], stderr
    assert "internal error" not in stderr and "Traceback" not in stderr
    assert assert_consistent(after) and _snapshot(after) == _snapshot(out)
    assert _leftovers(after) == []


def test_full_disk_while_writing_metadata_never_lies(stack: Path, pyz: Path, runtime_archive_dir: Path, tmp_path: Path, namespace: list[str]) -> None:
    out = stack.parent / "_artifacts"
    mount, after, flag = tmp_path / "disk", tmp_path / "after", tmp_path / "paused"
    vs = shlex.join([sys.executable, str(pyz)])
    # Room for the old publish and a new one; once the first new archive has replaced the old
    # one, fill the disk to the last byte, so that its metadata cannot be written.
    script = f"""
cp -a {shlex.quote(str(out))}/. {mount}/
VENVSTACKS_TEST_PAUSE=publish-moved:{flag} VENVSTACKS_PYTHON_ARCHIVE_DIR={shlex.quote(str(runtime_archive_dir))} \\
  {vs} publish --force --output-dir {mount} {stack} 2>{tmp_path}/stderr &
while [ ! -e {flag} ] && kill -0 $! 2>/dev/null; do sleep 0.05; done
dd if=/dev/zero of={mount}/filler bs=4k 2>/dev/null
rm {flag}
wait $!
echo "status=$?"
rm {mount}/filler
cp -a {mount}/. {after}/
VENVSTACKS_PYTHON_ARCHIVE_DIR={shlex.quote(str(runtime_archive_dir))} {vs} publish --output-dir {mount} {stack} >/dev/null 2>&1
echo "again=$?"
cp -a {mount}/. {tmp_path}/again/
"""
    result = _in_tmpfs(namespace, mount, 2 * _size_kib(out) + 512, script)
    assert "status=1" in result.stdout, result.stdout + result.stderr
    stderr = (tmp_path / "stderr").read_text(encoding="utf-8")
    assert "No space left on device" in stderr and "internal error" not in stderr and "Traceback" not in stderr, stderr
    assert f"{mount}/__venvstacks__/" in stderr, "the error names the file that could not be written"
    assert not assert_consistent(after), "a publish that could not write its metadata must not look finished"
    assert "again=0" in result.stdout
    assert assert_consistent(tmp_path / "again") and _leftovers(tmp_path / "again") == []


def test_full_disk_while_building_is_a_clear_error(stack: Path, pyz: Path, runtime_archive_dir: Path, tmp_path: Path, namespace: list[str]) -> None:
    mount = tmp_path / "disk"
    vs = shlex.join([sys.executable, str(pyz)])
    script = f"""
VENVSTACKS_PYTHON_ARCHIVE_DIR={shlex.quote(str(runtime_archive_dir))} {vs} build --build-dir {mount} {stack} 2>{tmp_path}/stderr
echo "status=$?"
"""
    result = _in_tmpfs(namespace, mount, 4096, script)
    assert "status=1" in result.stdout, result.stdout + result.stderr
    stderr = (tmp_path / "stderr").read_text(encoding="utf-8")
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert errors and "No space left on device" in stderr and str(mount) in errors[-1], stderr
    assert "internal error" not in stderr and "Traceback" not in stderr


def test_full_disk_while_deploying_is_a_clear_error_and_leaves_nothing(
    stack: Path, pyz: Path, runtime_archive_dir: Path, tmp_path: Path, namespace: list[str]
) -> None:
    out = stack.parent / "_artifacts"
    mount = tmp_path / "disk"
    vs = shlex.join([sys.executable, str(pyz)])
    script = f"""
{vs} deploy {out} --target {mount}/deployed 2>{tmp_path}/stderr
echo "status=$?"
ls -A {mount}/deployed 2>/dev/null | sed 's/^/left: /'
"""
    result = _in_tmpfs(namespace, mount, 4096, script)
    assert "status=1" in result.stdout, result.stdout + result.stderr
    stderr = (tmp_path / "stderr").read_text(encoding="utf-8")
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert errors and "No space left on device" in errors[-1] and f"{mount}/deployed/" in errors[-1], stderr
    assert "internal error" not in stderr and "Traceback" not in stderr
    assert "left: " not in result.stdout, "a failed first deployment leaves nothing in the target"


def test_lock_removes_what_a_killed_lock_left_in_the_lock_folders(stack: Path, pyz: Path, runtime_archive_dir: Path) -> None:
    folder = stack.parent / "requirements" / "app-hello"
    leftover = folder / ".pylock.app-hello.toml.a1b2c3d4.partial"
    leftover.write_text("half a lock", encoding="utf-8")
    before = _snapshot(stack.parent / "requirements")
    result = _vs(pyz, runtime_archive_dir, "lock", "--if-needed", str(stack))
    assert result.returncode == 0, result.stderr
    assert not leftover.exists()
    assert _snapshot(stack.parent / "requirements") == {k: v for k, v in before.items() if "partial" not in k}
