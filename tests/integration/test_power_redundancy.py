"""Redundancy against real NUT servers: two simulators (and the real upsd with two dummy-ups
UPSes), hosts that name the UPSes feeding them, and a watch that stops only the hosts left
without enough power.

The test drives each UPS by hand (``SET VAR ups.status``, or rewriting a dummy-ups file) once
it has seen the watch react to the step before: phases follow observed state (events, the
lines host commands write), never sleeps.
"""

import asyncio
import os
import shutil
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from motte.power import Simulator, Watch, load_plan, load_scenario
from motte.power.nut import NutClient
from tests.conftest import require
from tests.power.rig import (
    USERS,
    as_root,
    calls,
    free_port,
    kinds,
    recorder,
    stop_tasks,
    write,
)

pytestmark = pytest.mark.integration

STEADY = """
writable = ["ups.status"]
[variables]
"ups.delay.shutdown" = 30
[[step]]
at = 0
status = "OL"
charge = 100
runtime = 1800
"""


def plan_text(folder: Path, rack: str, aux: str, rec: Path, hosts: str) -> Path:
    (folder / "nut.pw").write_text("pw\n")
    (folder / "nut.pw").chmod(0o600)
    text = f"""
        name = "redundant"
        [[ups]]
        address = "{rack}"
        username = "motte"
        password_file = "nut.pw"
        tls = "off"
        [[ups]]
        address = "{aux}"
        username = "motte"
        password_file = "nut.pw"
        tls = "off"
        [policy]
        poll_interval = 0.1
        ride_through = 600
        secondaries_wait = 1
        reserve = 0
        cut_power = true
        [hosts.switch]
        never_stop = true
        """ + textwrap.indent(textwrap.dedent(hosts).format(rec=rec), "        ")
    return write(folder, "plan.toml", text)


#: nas and the coordinator each have a power supply on each UPS; one is enough.
DUAL = """
[hosts.pi]
coordinator = true
depends_on = ["switch"]
stop = ["{rec}", "poweroff"]
stop_time = 5
supplies = ["rack", "aux"]
min_supplies = 1
[hosts.nas]
depends_on = ["switch"]
stop = ["{rec}", "poweroff"]
stop_time = 5
supplies = ["rack", "aux"]
min_supplies = 1
"""

#: app has its one power supply on aux, web depends on app, nas is dual-fed, pi on rack.
MIXED = """
[hosts.pi]
coordinator = true
stop = ["{rec}", "poweroff"]
stop_time = 5
supplies = ["rack"]
[hosts.nas]
stop = ["{rec}", "poweroff"]
stop_time = 5
supplies = {{ rack = 1, aux = 1 }}
min_supplies = 1
[hosts.app]
depends_on = ["nas"]
stop = ["{rec}", "poweroff"]
stop_time = 5
supplies = ["aux"]
[hosts.web]
depends_on = ["app"]
stop = ["{rec}", "poweroff"]
stop_time = 5
supplies = ["rack"]
"""


class Lab:
    """Two simulators (rack, aux) and a watch, in this event loop."""

    def __init__(self, folder: Path, hosts: str) -> None:
        self.folder = folder
        self.rec, self.log = recorder(folder)
        self.ports = {"rack": free_port(), "aux": free_port()}
        self.address = {n: f"{n}@127.0.0.1:{p}" for n, p in self.ports.items()}
        self.plan = plan_text(folder, self.address["rack"], self.address["aux"], self.rec, hosts)
        self.events: list[dict] = []
        self.said: dict[str, list[str]] = {"rack": [], "aux": []}

    async def __aenter__(self) -> "Lab":
        self.tasks = []
        for name, port in self.ports.items():
            path = write(self.folder, f"{name}.toml", f'ups = "{name}"\n{STEADY}\n{USERS}')
            sim = Simulator(
                load_scenario(path),
                port=port,
                on_event=lambda _t, text, n=name: self.said[n].append(text),
            )
            await sim.start()
            self.tasks.append(asyncio.create_task(sim.run()))
        self.watch = asyncio.create_task(
            Watch(load_plan(self.plan), on_event=self.events.append).run()
        )
        self.tasks.append(self.watch)
        return self

    async def __aexit__(self, *exc) -> None:
        await stop_tasks(*self.tasks)

    async def until(self, predicate, what: str, timeout: float = 30.0) -> None:
        start = time.monotonic()
        while not predicate():
            if self.watch.done():
                self.watch.result()
                raise AssertionError("the watch stopped")
            if time.monotonic() - start > timeout:
                raise AssertionError(f"{what}: not seen; events: {kinds(self.events)}")
            await asyncio.sleep(0.05)

    async def set_status(self, name: str, status: str) -> None:
        async with await NutClient.connect("127.0.0.1", self.ports[name], tls="off") as c:
            await c.authenticate("motte", "pw")
            await c.set_var(name, "ups.status", status)

    def seen(self, kind: str, ups: str | None = None) -> list[dict]:
        return [
            e
            for e in self.events
            if e["kind"] == kind and (ups is None or e["ups"] == self.address[ups])
        ]

    def stopped(self) -> list[str]:
        return [host for _, host, what in calls(self.log) if what == "poweroff"]

    def watch_ready(self) -> bool:
        """The watch has logged in to both UPSes (it reads them from then on)."""
        return all(self.told(name, "logged in to") for name in self.said)

    def told(self, name: str, what: str) -> bool:
        return any(what in text for text in self.said[name])


def test_one_ups_of_dual_fed_hosts_lost_stops_nothing(tmp_path):
    async def main():
        async with Lab(tmp_path, DUAL) as lab:
            await lab.until(lambda: lab.watch_ready(), "both UPSes read")
            await lab.set_status("aux", "OB DISCHRG LB")
            await lab.until(lambda: lab.seen("supply-lost", "aux"), "aux lost")
            lost = lab.seen("supply-lost", "aux")[0]
            assert "nas, pi keep running" in lost["message"]
            # aux comes back: the watch sees it (ONLINE) and nothing was ever stopped
            await lab.set_status("aux", "OL")
            await lab.until(lambda: lab.seen("ONLINE", "aux"), "aux back")
            assert lab.stopped() == []
            assert not lab.seen("SHUTDOWN")
            assert not lab.told("aux", "FSD set") and not lab.told("aux", "shutdown.return")

    asyncio.run(main())


def test_both_upses_of_dual_fed_hosts_lost_stop_them_coordinator_last(tmp_path):
    async def main():
        async with Lab(tmp_path, DUAL) as lab:
            await lab.until(lambda: lab.watch_ready(), "both UPSes read")
            await lab.set_status("aux", "OB DISCHRG LB")
            await lab.until(lambda: lab.seen("supply-lost", "aux"), "aux lost")
            assert lab.stopped() == []
            await lab.set_status("rack", "OB DISCHRG LB")
            await lab.until(lambda: lab.seen("down"), "the shutdown's end")
            assert [(h, w) for _, h, w in calls(lab.log)] == [
                ("nas", "poweroff"),
                ("pi", "poweroff"),
            ]
            for name in ("rack", "aux"):  # both fed the stopped hosts: both are told
                assert lab.told(name, "FSD set by motte")
                assert lab.told(name, "shutdown.return")

    asyncio.run(main())


def test_a_host_on_the_lost_ups_stops_while_the_others_keep_running(tmp_path):
    async def main():
        async with Lab(tmp_path, MIXED) as lab:
            await lab.until(lambda: lab.watch_ready(), "both UPSes read")
            await lab.set_status("aux", "OB DISCHRG LB")
            await lab.until(lambda: lab.seen("down"), "the partial shutdown's end")
            # web depends on app, which aux alone fed: web first, then app; nothing else
            assert lab.stopped() == ["web", "app"]
            (shutdown,) = lab.seen("SHUTDOWN")
            assert shutdown["ups"] == lab.address["aux"]
            assert "keeps running: nas" in shutdown["message"]
            assert lab.seen("down")[0]["message"].endswith("pi keeps watching")
            # FSD and shutdown.return went to aux only: rack still feeds nas and pi
            assert lab.told("aux", "FSD set by motte") and lab.told("aux", "shutdown.return")
            assert not lab.told("rack", "FSD set") and not lab.told("rack", "shutdown.return")
            # the watch keeps watching: a later loss of rack stops the rest, pi last
            await lab.set_status("rack", "OB DISCHRG LB")
            await lab.until(lambda: len(lab.seen("down")) == 2, "the second shutdown's end")
            assert lab.stopped() == ["web", "app", "nas", "pi"]
            assert lab.told("rack", "shutdown.return")

    asyncio.run(main())


# -- the real upsd, with two dummy-ups UPSes ---------------------------------------------------


class TwoDummies:
    """upsd serving two dummy-ups UPSes, rack and aux, each driven by its own ``.dev`` file
    (dummy-once: re-read whenever its mtime changes), unprivileged, on 127.0.0.1."""

    DEV = "ups.status: OL\nbattery.charge: 100\nbattery.runtime: 1800\nups.load: 30\n"

    def __init__(self) -> None:

        # Not under pytest's tmp_path: the daemons run as nobody, who cannot enter it.
        self.dir = Path(tempfile.mkdtemp(prefix="motte-upsd2-", dir="/tmp"))
        state = self.dir / "state"
        state.mkdir(parents=True)
        self.port = free_port()
        conf = "".join(
            f'[{n}]\n  driver = dummy-ups\n  port = {n}.dev\n  desc = "{n}"\n'
            for n in ("rack", "aux")
        )
        files = {
            "ups.conf": conf,
            "upsd.conf": f"LISTEN 127.0.0.1 {self.port}\nSTATEPATH {state}\nMAXAGE 15\n",
            "upsd.users": "[motte]\n  password = pw\n  actions = SET FSD\n  instcmds = ALL\n"
            "  upsmon primary\n",
            "rack.dev": self.DEV,
            "aux.dev": self.DEV,
        }
        for name, text in files.items():
            (self.dir / name).write_text(text)
        os.chmod(self.dir, 0o755)
        prefix: list[str] = []
        if as_root():  # the daemons refuse to run as root without a user: use nobody
            shutil.chown(state, "nobody", "nogroup")
            shutil.chown(self.dir / "upsd.users", "nobody", "nogroup")
            prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        os.chmod(self.dir / "upsd.users", 0o600)
        env = {**os.environ, "NUT_CONFPATH": str(self.dir), "NUT_STATEPATH": str(state)}
        self.procs = [
            subprocess.Popen(
                [*prefix, *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            for argv in (
                ["/lib/nut/dummy-ups", "-a", "rack", "-F"],
                ["/lib/nut/dummy-ups", "-a", "aux", "-F"],
                ["/lib/nut/upsd", "-F"],
            )
        ]

    async def status(self, name: str) -> str | None:
        try:
            async with await NutClient.connect("127.0.0.1", self.port, tls="off", timeout=1) as c:
                return await c.get_var(name, "ups.status")
        except Exception:
            return None  # not up yet, or the driver not connected yet

    async def ready(self) -> None:
        """Both UPSes answer with a status (upsd may start before its drivers)."""
        start = time.monotonic()
        while not all([await self.status("rack"), await self.status("aux")]):
            assert time.monotonic() - start < 30, "upsd with two dummy-ups did not come up"
            for proc in self.procs:
                assert proc.poll() is None, f"{proc.args} exited {proc.returncode}"
            await asyncio.sleep(0.2)

    def set(self, name: str, text: str) -> None:
        """Replace what ``name.dev`` says; its mtime moves on, so the driver reads it again."""

        path = self.dir / f"{name}.dev"
        stamp = max(time.time(), path.stat().st_mtime + 1)  # never the same second
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        os.utime(tmp, (stamp, stamp))
        os.replace(tmp, path)

    def stop(self) -> None:

        for proc in self.procs:  # by PID, as started
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_real_upsd_two_dummy_upses_only_the_lost_ups_hosts_stop(tmp_path):

    require(Path("/lib/nut/upsd").exists(), "upsd and dummy-ups (apt-get install nut-server)")
    nut = TwoDummies()
    rec, log = recorder(tmp_path)
    rack, aux = f"rack@127.0.0.1:{nut.port}", f"aux@127.0.0.1:{nut.port}"
    plan = plan_text(tmp_path, rack, aux, rec, MIXED)

    async def main():
        await nut.ready()
        events: list[dict] = []
        watch = asyncio.create_task(Watch(load_plan(plan), on_event=events.append).run())

        async def until(predicate, what):
            start = time.monotonic()
            while not predicate():
                if watch.done():
                    watch.result()
                assert time.monotonic() - start < 60, f"{what}: not seen; {kinds(events)}"
                await asyncio.sleep(0.05)

        try:
            nut.set("aux", TwoDummies.DEV.replace("OL", "OB DISCHRG LB"))
            await until(lambda: "down" in kinds(events), "the partial shutdown's end")
            assert [h for _, h, w in calls(log) if w == "poweroff"] == ["web", "app"]
            shutdown = next(e for e in events if e["kind"] == "SHUTDOWN")
            assert shutdown["ups"] == aux
            # FSD went to aux alone (upsd latches it); rack still feeds nas and pi
            assert "FSD" in (await nut.status("aux") or "").split()
            assert "FSD" not in (await nut.status("rack") or "FSD").split()
            # dummy-ups has no shutdown.return: aux refuses it, and the plan still ends
            cut = next(
                e for e in events if e["kind"] == "step-done" and "cut-power" in e["message"]
            )
            assert "failed" in cut["message"]
        finally:
            await stop_tasks(watch)

    try:
        asyncio.run(main())
    finally:
        nut.stop()
