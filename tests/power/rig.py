"""Helpers for power tests that run real things: ports, recording scripts, rehearsals."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from motte.power import Simulator, Watch, load_plan, load_scenario

USERS = """
[users.motte]
password = "pw"
upsmon = "primary"
actions = ["SET", "FSD"]
instcmds = ["ALL"]
[users.observer]
password = "pw"
upsmon = "secondary"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def recorder(folder: Path) -> tuple[Path, Path]:
    """A host-command stand-in: ``rec.sh WHAT [SECONDS] [EXIT]`` logs '<time> <host> <what>'."""
    log = folder / "calls.log"
    script = folder / "rec.sh"
    script.write_text(
        textwrap.dedent(f"""\
        #!/bin/sh
        printf '%s %s %s\\n' "$(date +%s.%N)" "${{MOTTE_HOST:-?}}" "$1" >> {log}
        [ -n "${{2:-}}" ] && sleep "$2"
        exit "${{3:-0}}"
        """)
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script, log


def calls(log: Path) -> list[tuple[float, str, str]]:
    """Recorded calls as (time, host, what), in order."""
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        t, host, what = line.split(" ", 2)
        out.append((float(t), host, what))
    return out


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def scenario(folder: Path, steps: str, *, extra: str = "") -> Path:
    # Top-level keys first, then the steps' tables, then the users' tables.
    text = f'ups = "rack"\n{extra}\n{textwrap.dedent(steps)}\n{USERS}'
    return write(folder, "scenario.toml", text)


def lab_plan(folder: Path, port: int, rec: Path, *, policy: str = "", hosts: str = "") -> Path:
    """Coordinator pi, app depends on nas, a switch; every command is the recorder."""
    (folder / "nut.pw").write_text("pw\n")
    (folder / "nut.pw").chmod(0o600)
    settings = {"poll_interval": "0.1", "secondaries_wait": "2", "reserve": "0"}
    for line in policy.splitlines():  # the caller's settings win over these defaults
        if line.strip():
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    policy_lines = "\n        ".join(f"{k} = {v}" for k, v in settings.items())
    text = f"""
        name = "rig"
        [ups]
        address = "rack@127.0.0.1:{port}"
        username = "motte"
        password_file = "nut.pw"
        tls = "off"
        [policy]
        {policy_lines}
        [hosts.switch]
        never_stop = true
        [hosts.pi]
        coordinator = true
        depends_on = ["switch"]
        stop = ["{rec}", "poweroff"]
        stop_time = 5
        {hosts}
        """
    if "[hosts.nas]" not in hosts:
        text += f"""
        [hosts.nas]
        depends_on = ["switch"]
        drain = ["{rec}", "drain", "0.3"]
        drain_time = 3
        stop = ["{rec}", "poweroff"]
        stop_time = 3
        start = ["{rec}", "wake"]
        ready = ["{rec}", "ready"]
        start_time = 5
        """
    if "[hosts.app]" not in hosts:
        text += f"""
        [hosts.app]
        depends_on = ["nas", "switch"]
        drain = ["{rec}", "drain", "0.3"]
        drain_time = 3
        stop = ["{rec}", "poweroff"]
        stop_time = 3
        start = ["{rec}", "wake"]
        ready = ["{rec}", "ready"]
        start_time = 5
        """
    return write(folder, "plan.toml", text)


async def rehearse(
    plan_path: Path,
    scenario_path: Path,
    port: int,
    until: Callable[[list[dict[str, Any]]], bool],
    *,
    timeout: float = 60.0,
    stop_simulator_when: Callable[[list[dict[str, Any]]], bool] | None = None,
) -> list[dict[str, Any]]:
    """Play the scenario and run the watch in this loop until ``until(events)`` or timeout.

    ``stop_simulator_when(events)``: the UPS server disappears once the watch has seen what
    the test needs (a condition, not a moment: a busy machine sees it later)."""
    sim = Simulator(load_scenario(scenario_path), port=port)
    await sim.start()
    sim_task = asyncio.create_task(sim.run())
    events: list[dict[str, Any]] = []
    watch = Watch(load_plan(plan_path), on_event=events.append)
    watch_task = asyncio.create_task(watch.run())
    start = time.monotonic()
    try:
        while not until(events):
            if watch_task.done():
                watch_task.result()
                raise AssertionError("the watch stopped")
            if stop_simulator_when is not None and stop_simulator_when(events):
                sim_task.cancel()  # the UPS server disappears
                stop_simulator_when = None
            if time.monotonic() - start > timeout:
                raise AssertionError(f"timed out; events: {[e['kind'] for e in events]}")
            await asyncio.sleep(0.05)
        return events
    finally:
        await stop_tasks(watch_task, sim_task)


async def stop_tasks(*tasks: asyncio.Task[Any], within: float = 20.0) -> None:
    """Cancel and wait; a task that ignores its cancellation fails the test, never hangs it."""
    for task in tasks:
        task.cancel()
    _, pending = await asyncio.wait(tasks, timeout=within)
    assert not pending, f"tasks ignored their cancellation: {pending}"


def kinds(events: list[dict[str, Any]]) -> list[str]:
    return [e["kind"] for e in events]


def first(events: list[dict[str, Any]], kind: str, host: str | None = None) -> dict[str, Any]:
    for e in events:
        if e["kind"] == kind and (host is None or e.get("host") == host):
            return e
    raise AssertionError(f"no {kind} event{' for ' + host if host else ''}: {kinds(events)}")


def as_root() -> bool:
    return os.geteuid() == 0


async def rehearse_many(
    plan_path: Path,
    simulators: list[tuple[Path, int]],
    until: Callable[[list[dict[str, Any]]], bool],
    *,
    timeout: float = 60.0,
    said: list[tuple[int, str]] | None = None,
) -> list[dict[str, Any]]:
    """As :func:`rehearse`, with one simulator per (scenario, port): a plan with several UPSes.

    What each simulator says (FSD set, shutdown.return, ...) goes to ``said`` as (port, text).
    """
    sims = []
    for path, port in simulators:
        on_event = None
        if said is not None:
            on_event = (lambda p: lambda _t, text: said.append((p, text)))(port)
        sim = Simulator(load_scenario(path), port=port, on_event=on_event)
        await sim.start()
        sims.append(sim)
    sim_tasks = [asyncio.create_task(sim.run()) for sim in sims]
    events: list[dict[str, Any]] = []
    watch = Watch(load_plan(plan_path), on_event=events.append)
    watch_task = asyncio.create_task(watch.run())
    start = time.monotonic()
    try:
        while not until(events):
            if watch_task.done():
                watch_task.result()
                raise AssertionError("the watch stopped")
            if time.monotonic() - start > timeout:
                raise AssertionError(f"timed out; events: {[e['kind'] for e in events]}")
            await asyncio.sleep(0.05)
        return events
    finally:
        await stop_tasks(watch_task, *sim_tasks)
