"""Benchmarks for motte.power: python bench/power.py

1. Parsing: the sans-IO core reading a 120-variable ``LIST VAR`` reply, against a baseline
   measured in the same run (splitting the same bytes into lines and words with
   ``bytes.split``, the least any parser must do).
2. Reaction: the seconds from the simulator switching to ``OB LB`` to the coordinator's
   ``SHUTDOWN`` event, over real sockets, against the poll interval as the baseline (the
   issue asks for action within 1 s of a status change, not on upsmon's 5 s poll).

Prints medians and ratios; on a shared 2-core machine expect noise of tens of percent.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _harness import ROOT
from motte.power.nut import ListVar, NutConnection

sys.path.insert(0, str(ROOT))  # for tests.power.rig (the rehearsal lab the tests use)


def _list_var_reply(n: int = 120) -> bytes:
    # As upsd writes them: every value quoted, one in ten with an escaped quote in it.
    rows = "".join(
        f'VAR ups var.{i:03d} "{i}"\n' if i % 10 else f'VAR ups var.{i:03d} "a \\"b\\" c"\n'
        for i in range(n)
    )
    return f"BEGIN LIST VAR ups\n{rows}END LIST VAR ups\n".encode()


def bench_parse(rounds: int = 300) -> tuple[float, float]:
    data = _list_var_reply()

    def core() -> None:
        conn = NutConnection()
        conn.send(ListVar("ups"))
        conn.receive_data(data)
        conn.next_event()

    def baseline() -> None:
        [line.split(b" ") for line in data.split(b"\n")]

    def median(fn) -> float:
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    median(core), median(baseline)  # warm up
    return median(core), median(baseline)


async def _one_reaction(folder: Path, poll: float) -> float:
    from tests.power.rig import free_port, lab_plan, recorder, scenario

    from motte.power import Simulator, Watch, load_plan, load_scenario

    port = free_port()
    rec, _ = recorder(folder)
    # A random phase against the polls, so the median is honest (not a lucky alignment).
    at = 1.0 + random.uniform(0, poll)
    sc = scenario(
        folder,
        f'[[step]]\nat = 0\nstatus = "OL"\n[[step]]\nat = {at}\n'
        'status = "OB LB"\ncharge = 10\nruntime = 300\n',
    )
    plan = lab_plan(folder, port, rec, policy=f"poll_interval = {poll}")
    sim = Simulator(load_scenario(sc), port=port)
    await sim.start()
    assert sim.ups is not None
    sim_task = asyncio.create_task(sim.run())
    events: list[dict] = []
    watch = asyncio.create_task(Watch(load_plan(plan), on_event=events.append).run())
    try:
        while not any(e["kind"] == "SHUTDOWN" for e in events):
            await asyncio.sleep(0.01)
        changed_at = time.time() - (asyncio.get_running_loop().time() - sim.ups.start) + at
        shutdown = next(e for e in events if e["kind"] == "SHUTDOWN")
        return shutdown["ts"] - changed_at
    finally:
        for task in (watch, sim_task):
            task.cancel()
        await asyncio.gather(watch, sim_task, return_exceptions=True)


def bench_reaction(poll: float = 0.5, rounds: int = 9) -> float:
    latencies = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as folder:
            os.environ["MOTTE_HOME"] = folder
            latencies.append(asyncio.run(_one_reaction(Path(folder), poll)))
    return statistics.median(latencies)


def main() -> None:
    core, base = bench_parse()
    print(
        f"parse LIST VAR (120 rows): core {core * 1e6:.0f} us, bytes.split baseline "
        f"{base * 1e6:.0f} us, ratio {core / base:.1f}x"
    )
    for poll in (0.5, 0.1):
        latency = bench_reaction(poll)
        print(
            f"reaction to OB LB with poll_interval {poll}s: median {latency:.2f}s "
            f"({latency / poll:.2f}x the poll interval; upsmon's default poll is 5s)"
        )


if __name__ == "__main__":
    main()
