"""Carrying out a host step: a local command, a command over SSH, or a request to an agent.

Every command runs without a shell, in its own process group, with a deadline: at the
deadline the group gets SIGTERM, then SIGKILL two seconds later, so a hung ``ssh`` cannot
hold the shutdown. Commands see ``MOTTE_HOST``, ``MOTTE_STEP`` and ``MOTTE_DEADLINE``
(seconds left) in their environment.

Where each step runs:

- ``drain`` and ``stop`` run over the host's transport: locally on the coordinator, through
  ``ssh`` (``BatchMode``: a key, never a password prompt), or through the host's agent;
- ``confirm``, ``start`` and ``ready`` always run on the coordinator (they are about reaching
  the host from outside: a ping, wake-on-LAN, IPMI, an HTTPS health check) and ``confirm`` and
  ``ready`` are retried every second until they exit 0 or the deadline passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from motte.power._plan import Host, Plan
from motte.power._progress import RunStep, StepResult

#: Seconds between tries of a confirm or ready check.
RETRY_INTERVAL = 1.0
#: Bytes of a command's output kept for the log.
OUTPUT_TAIL = 400
#: After a command exits, how long its output may still be read if a process it left
#: running holds the pipe open (what it wrote before exiting is already in the pipe).
_AFTER_EXIT = 0.5


@dataclass(frozen=True, slots=True)
class CommandResult:
    exit_code: int | None
    timed_out: bool
    output: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out

    def describe(self) -> str:
        if self.timed_out:
            what = "timed out"
        elif self.exit_code is None:
            what = "could not start"
        else:
            what = f"exit {self.exit_code}"
        return f"{what}: {self.output}" if self.output else what


async def run_command(
    argv: tuple[str, ...] | list[str], *, timeout: float, env: Mapping[str, str] | None = None
) -> CommandResult:
    """Run ``argv`` (no shell) for at most ``timeout`` seconds; never raises for the command.

    The result is the command's own exit: its output is read only until it exits, then the
    pipe is closed. A ``start`` command that leaves a process running (``daemon &``) is done
    when it exits, even if that process kept the output open; such a process must write its
    output elsewhere (``>log 2>&1``, ``setsid``, ``systemd-run``): after the command exits,
    a write to the pipe fails (EPIPE, SIGPIPE by default).
    """
    full_env = {**os.environ, **(env or {})}
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=write_fd,
            stderr=write_fd,
            env=full_env,
            start_new_session=True,  # its own process group: a timeout kills its children too
        )
    except OSError as e:
        os.close(read_fd)
        return CommandResult(None, False, f"{argv[0]}: {e.strerror or e}")
    finally:
        os.close(write_fd)  # only the child (and what it leaves behind) holds the write end
    tail = bytearray()
    transport: asyncio.BaseTransport | None = None
    pumping: asyncio.Task[None] | None = None
    try:
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", 0)
        )

        async def pump() -> None:
            while chunk := await reader.read(65536):
                tail.extend(chunk)
                del tail[: max(len(tail) - 4 * OUTPUT_TAIL, 0)]

        pumping = asyncio.create_task(pump())
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                await proc.wait()
        except TimeoutError:
            await _kill_group(proc)
            return CommandResult(proc.returncode, True, f"no exit within {timeout:.0f}s")
        # It exited: take what it wrote (already in the pipe), then stop listening. EOF comes
        # at once unless something it started still holds the pipe; that is not waited for.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_AFTER_EXIT):
                await asyncio.shield(pumping)
    except asyncio.CancelledError:  # the watch is stopping: the command goes with it
        await asyncio.shield(_kill_group(proc))
        raise
    finally:
        if pumping is not None:
            pumping.cancel()
        if transport is not None:
            transport.close()
        else:
            with contextlib.suppress(OSError):
                os.close(read_fd)
    text = tail.decode("utf-8", errors="replace").strip()
    return CommandResult(proc.returncode, False, text[-OUTPUT_TAIL:])


async def _kill_group(proc: asyncio.subprocess.Process) -> None:
    for sig, wait in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await proc.wait()


def ssh_argv(target: str, argv: tuple[str, ...]) -> list[str]:
    """``argv`` to run on ``target`` over SSH: key-based only, bounded connection time."""
    return [
        "ssh",
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=10",
        "-o", "ServerAliveInterval=5",
        "-o", "ServerAliveCountMax=2",
        "--", target, shlex.join(argv),
    ]  # fmt: skip


class HostRunner:
    """Runs the coordinator's :class:`RunStep` actions for the hosts of one plan."""

    def __init__(self, plan: Plan, *, clock: Callable[[], float] = time.time) -> None:
        self.plan = plan
        self.clock = clock

    async def run(self, action: RunStep) -> StepResult:
        host = self.plan.hosts[action.host]
        try:
            ok, detail, timed_out = await self._run(host, action)
        except Exception as e:  # a runner bug must not stall the plan
            ok, detail, timed_out = False, f"{type(e).__name__}: {e}", False
        return StepResult(action.key, action.seq, ok, detail, timed_out)

    async def _run(self, host: Host, action: RunStep) -> tuple[bool, str, bool]:
        step = action.step
        if host.agent is not None and step in ("drain", "stop"):
            from motte.power._agent import AgentClient

            client = AgentClient(host.agent.url, host.agent.secret_file)
            return await client.run(step, deadline=action.deadline, clock=self.clock)
        argv = getattr(host, step)
        if argv is None:  # e.g. the coordinator without a drain command
            return True, "nothing to run", False
        if step in ("drain", "stop") and host.ssh:
            argv = tuple(ssh_argv(host.ssh, argv))
        if step in ("confirm", "ready"):
            return await self._until_ok(host, step, argv, action.deadline)
        result = await run_command(
            argv, timeout=self._left(action.deadline), env=self._env(host, step, action.deadline)
        )
        return result.ok, result.describe(), result.timed_out

    async def _until_ok(
        self, host: Host, step: str, argv: tuple[str, ...], deadline: float
    ) -> tuple[bool, str, bool]:
        tries = 0
        while True:
            tries += 1
            result = await run_command(
                argv, timeout=max(self._left(deadline), 1.0), env=self._env(host, step, deadline)
            )
            if result.ok:
                return True, f"after {tries} tr{'y' if tries == 1 else 'ies'}", False
            if self._left(deadline) <= RETRY_INTERVAL:
                return False, f"{tries} tries, last {result.describe()}", True
            await asyncio.sleep(RETRY_INTERVAL)

    def _left(self, deadline: float) -> float:
        return max(deadline - self.clock(), 0.0)

    def _env(self, host: Host, step: str, deadline: float) -> dict[str, str]:
        return {
            "MOTTE_PLAN": self.plan.name,
            "MOTTE_HOST": host.name,
            "MOTTE_STEP": step,
            "MOTTE_DEADLINE": str(int(self._left(deadline))),
        }
