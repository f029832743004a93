"""The command runner: bounded errors, full logs, and children that never outlive the tool."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import ROOT
from venvstacks import _proc, cancel
from venvstacks.errors import CommandError


def test_huge_output_of_a_failure_is_cut_to_its_last_lines_and_logged(tmp_path: Path) -> None:
    # About 50 MB on stdout, then the error on stderr.
    script = "import sys\nline = 'x' * 999\nfor _ in range(50_000): print(line)\nprint('the real reason', file=sys.stderr)\nsys.exit(2)\n"
    with pytest.raises(CommandError) as caught:
        _proc.run([sys.executable, "-c", script], description="printing a lot")
    message = str(caught.value)
    assert len(message) < 20_000
    lines = message.splitlines()
    assert lines[0] == "printing a lot failed (exit status 2)"
    assert lines[-2] == "  the real reason", "stderr comes last, so the reason is shown"
    assert all(len(line) < 450 for line in lines[2:-1])
    log = Path(lines[-1].removeprefix("full output: "))
    try:
        assert log.stat().st_size > 50_000_000
        with log.open(encoding="utf-8") as stream:
            assert stream.readline().startswith("$ ")
    finally:
        log.unlink()


def test_a_quiet_failure_names_no_log() -> None:
    with pytest.raises(CommandError) as caught:
        _proc.run([sys.executable, "-c", "raise SystemExit(4)"], description="failing quietly")
    assert "full output" not in str(caught.value)
    assert caught.value.log is None


def test_a_failure_carries_the_result_as_data() -> None:
    script = "import sys\nprint('out')\nprint('err', file=sys.stderr)\nsys.exit(3)\n"
    with pytest.raises(CommandError) as caught:
        _proc.run([sys.executable, "-c", script], description="failing")
    error = caught.value
    assert error.description == "failing"
    assert error.result is not None
    assert error.result.argv == (sys.executable, "-c", script)
    assert error.result.returncode == 3
    assert (error.result.stdout, error.result.stderr) == ("out\n", "err\n")
    assert error.log is not None and error.log.read_text(encoding="utf-8").startswith("$ ")
    error.log.unlink()


def test_a_command_that_cannot_start_says_why() -> None:
    with pytest.raises(CommandError) as caught:
        _proc.run(["/nonexistent/tool"], description="starting nothing")
    assert caught.value.result is None
    assert str(caught.value) == "starting nothing: cannot run '/nonexistent/tool': No such file or directory"
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def _wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A zombie whose parent is gone is reaped by init; treat it as gone.
        with open(f"/proc/{pid}/stat", encoding="utf-8") as stat:
            if stat.read().split(")")[-1].split()[0] == "Z":
                return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux only")
def test_children_die_with_a_killed_parent(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    child = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    parent = f"from venvstacks import _proc; _proc.run([{sys.executable!r}, '-c', {child!r}], description='sleeping')"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-c", parent], env=env)
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.monotonic() < deadline and process.poll() is None, "the child never started"
        time.sleep(0.05)
    child_pid = int(pid_file.read_text())
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert _wait_gone(child_pid), "the child outlived its SIGKILLed parent"


@pytest.mark.slow  # starts and kills real processes, and waits for them
def test_a_stop_request_kills_running_commands() -> None:
    import threading

    errors: list[BaseException] = []

    def sleeper() -> None:
        try:
            _proc.run([sys.executable, "-c", "import time; time.sleep(60)"], description="sleeping")
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            errors.append(exc)

    thread = threading.Thread(target=sleeper)
    started = time.monotonic()
    thread.start()
    time.sleep(0.5)
    try:
        cancel.request()
        thread.join(timeout=10)
    finally:
        cancel.reset()
    assert not thread.is_alive() and time.monotonic() - started < 10
    assert len(errors) == 1 and isinstance(errors[0], cancel.Interrupted)
    with pytest.raises(CommandError):  # the flag is clear again: commands run (and fail) normally
        _proc.run([sys.executable, "-c", "raise SystemExit(1)"], description="after the stop")


def test_a_fed_command_gets_its_input_and_fails_when_aborted_while_another_thread_waits() -> None:
    import threading

    echo = _proc.FedCommand([sys.executable, "-c", "import sys; sys.stdout.write(sys.stdin.read().upper())"], description="shouting")
    echo.send(b"hello", flush=True)
    assert echo.finish().stdout == "HELLO"
    sleeper = _proc.FedCommand([sys.executable, "-c", "import sys, time; sys.stdin.read(); time.sleep(60)"], description="sleeping")
    outcome: list[BaseException | None] = []

    def wait() -> None:
        try:
            sleeper.finish()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)
        else:
            outcome.append(None)

    waiting = threading.Thread(target=wait)
    waiting.start()
    time.sleep(0.2)  # let it wait
    started = time.monotonic()
    sleeper.abort()
    waiting.join(30)
    assert time.monotonic() - started < 10
    assert len(outcome) == 1 and isinstance(outcome[0], CommandError) and "sleeping" in str(outcome[0])


def test_a_fed_command_replies_through_a_pipe_until_it_ends() -> None:
    doubler = _proc.FedCommand(
        [sys.executable, "-c", "import os\nwhile data := os.read(0, 100):\n    os.write(1, data * 2)\n"], description="doubling", replies=True
    )
    doubler.send(b"ab", flush=True)
    received = b""
    while len(received) < 4:
        received += doubler.receive()
    assert received == b"abab"
    doubler.finish()
    assert doubler.receive() == doubler.receive() == b""  # ended: the pipe is closed, and stays so
