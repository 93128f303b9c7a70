"""Running host steps: deadlines kill whole process groups, checks retry until they pass."""

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from motte.power._progress import RunStep
from motte.power._runner import HostRunner, run_command, ssh_argv
from tests.power.plans import plan


def test_a_command_runs_without_a_shell_and_sees_its_environment():
    result = asyncio.run(
        run_command(
            ["sh", "-c", 'echo "$MOTTE_HOST $0"', "x;y"], timeout=5, env={"MOTTE_HOST": "nas"}
        )
    )
    assert result.ok
    assert result.output == "nas x;y"


def _gone(pid: int) -> bool:
    """The process has exited (a zombie not yet reaped by whoever inherited it counts)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_a_command_past_its_deadline_is_killed_with_its_children(tmp_path):
    pidfile, marker = tmp_path / "child.pid", tmp_path / "child-ran"
    # The child says who it is, then would outlive the command by minutes; the command waits
    # until the child has said so, then hangs past its deadline.
    child = f"echo $$ > {pidfile}.tmp && mv {pidfile}.tmp {pidfile}; sleep 300; touch {marker}"
    script = f"sh -c '{child}' & while [ ! -s {pidfile} ]; do sleep 0.01; done; sleep 300"
    # 5 s: far longer than two shells take to start on a busy machine.
    result = asyncio.run(run_command(["sh", "-c", script], timeout=5))
    assert result.timed_out and not result.ok  # killed at its deadline, not waited for
    assert pidfile.exists(), "the child did not start within the command's 5 s"
    pid = int(pidfile.read_text())
    try:
        # Killed with the group: it goes at once (a survivor would sleep for minutes).
        deadline = time.monotonic() + 60
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(pid), f"child {pid} outlived the command"
    finally:
        if not _gone(pid):
            os.kill(pid, signal.SIGKILL)  # the one this test started, by its pid
    assert not marker.exists()


def test_a_missing_program_is_a_result_not_an_exception():
    result = asyncio.run(run_command(["/nonexistent/motte-test"], timeout=1))
    assert result.exit_code is None and "could not start" in result.describe()


def test_ssh_is_key_only_and_bounded():
    argv = ssh_argv("root@nas.lan", ("systemctl", "poweroff", "--message=a b"))
    assert argv[:2] == ["ssh", "-o"]
    assert "BatchMode=yes" in argv and "ConnectTimeout=10" in argv
    assert argv[-3:] == ["--", "root@nas.lan", "systemctl poweroff '--message=a b'"]


def test_confirm_retries_until_it_passes(tmp_path):
    flag, tried = tmp_path / "down", tmp_path / "tried"
    # Each failed try leaves a line in `tried`; the host is down once the test says so.
    check = f"test -e {flag} || {{ echo >> {tried}; exit 1; }}"
    p = plan(tmp_path, **{'confirm = "true"': f'confirm = ["sh", "-c", "{check}"]'})
    runner = HostRunner(p)

    async def go():
        task = asyncio.create_task(
            runner.run(RunStep("app:confirm", 1, "app", "confirm", time.time() + 120))
        )
        deadline = time.monotonic() + 60
        while not tried.exists():  # until the first try has failed: then the host goes down
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.01)
        flag.touch()
        return await task

    result = asyncio.run(go())
    assert result.ok
    assert "tries" in result.detail  # more than one: the first one failed


def test_confirm_that_never_passes_times_out(tmp_path):
    p = plan(tmp_path, **{'confirm = "true"': 'confirm = "false"'})
    result = asyncio.run(
        HostRunner(p).run(RunStep("app:confirm", 1, "app", "confirm", time.time() + 1.5))
    )
    assert not result.ok and result.timed_out


@pytest.mark.parametrize("step", ["drain", "stop"])
def test_steps_run_locally_with_the_remaining_time(tmp_path, step):
    out = tmp_path / "out"
    command = f'["sh", "-c", "echo $MOTTE_STEP $MOTTE_DEADLINE > {out}"]'
    p = plan(
        tmp_path,
        **{
            'drain = "true"': f"drain = {command}",
            'stop = "true"\nstop_time = 40': f"stop = {command}\nstop_time = 40",
        },
    )
    result = asyncio.run(
        HostRunner(p).run(RunStep(f"nas:{step}", 3, "nas", step, time.time() + 42))
    )
    assert result.ok and result.key == f"nas:{step}" and result.seq == 3
    name, left = out.read_text().split()
    assert name == step and 38 <= int(left) <= 42


def test_a_start_command_that_leaves_a_process_holding_its_output_is_done_when_it_exits(
    tmp_path,
):
    """Issue 23: ``daemon &`` kept the runner's pipe open, and the step was reported as timed
    out although the command had exited 0. The runner reads only until the command exits."""
    pidfile = tmp_path / "daemon.pid"
    script = f"sleep 120 & echo $! > {pidfile}; echo started"
    try:
        result = asyncio.run(run_command(["sh", "-c", script], timeout=60))
        assert result.ok and not result.timed_out
        assert result.output == "started"
    finally:
        if pidfile.exists():  # the process it left behind lives on (as it should): end it
            import os
            import signal

            os.kill(int(pidfile.read_text()), signal.SIGTERM)


def test_a_start_step_with_a_background_process_is_reported_ok(tmp_path):
    pidfile = tmp_path / "daemon.pid"
    p = plan(
        tmp_path,
        **{
            'start = "true"\nready = "true"': (
                f'start = ["sh", "-c", "sleep 120 & echo $! > {pidfile}"]\nready = "true"'
            )
        },
    )
    try:
        result = asyncio.run(
            HostRunner(p).run(RunStep("app:start", 1, "app", "start", time.time() + 60))
        )
        assert result.ok and not result.timed_out, result.detail
    finally:
        if pidfile.exists():
            import os
            import signal

            os.kill(int(pidfile.read_text()), signal.SIGTERM)


@pytest.mark.parametrize("yields", [0, 1, 2, 3, 5, 8])
def test_a_cancelled_command_is_killed_wherever_the_cancellation_lands(tmp_path, yields):
    """The watch stopping cancels its steps; the command must not outlive it (a stray
    recorder wrote into a folder already removed), wherever the runner was waiting."""
    import os

    pidfile = tmp_path / "pid"

    async def main():
        task = asyncio.create_task(
            run_command(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"], timeout=60)
        )
        for _ in range(yields):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    if pidfile.exists() and pidfile.read_text().strip():
        with pytest.raises(ProcessLookupError):
            os.kill(int(pidfile.read_text()), 0)
