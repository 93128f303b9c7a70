"""Against a real NUT upsd + dummy-ups (Debian nut-server), started here on 127.0.0.1.

The client reads and sets variables and logs in as primary; the coordinator reacts to a
brief cut the test drives (ridden out) and a sequence file's long one (ordered shutdown).
Host commands are scripts that record when they ran, so order is asserted, and times only
as lower bounds (a busy machine makes waits longer, never shorter).
"""

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from motte.power import UpsReading, Watch, load_plan
from motte.power.nut import AccessDeniedError, NutClient, UnknownUpsError, UsernameRequiredError
from tests.conftest import require
from tests.power.rig import (
    as_root,
    calls,
    first,
    free_port,
    kinds,
    lab_plan,
    recorder,
    stop_tasks,
)

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _needs_upsd() -> None:
    require(Path("/lib/nut/upsd").exists(), "upsd and dummy-ups (apt-get install nut-server)")


class Upsd:
    """upsd and one dummy-ups driver playing ``seq``, unprivileged, on 127.0.0.1.

    ``dummy.seq`` loops over its TIMERs; ``dummy.dev`` (dummy-once) is re-read whenever its
    mtime changes, so a test drives the UPS by rewriting it (:meth:`set`)."""

    def __init__(self, seq: str, file: str = "dummy.seq") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="motte-upsd-", dir="/tmp"))
        self.port = free_port()
        state = self.dir / "state"
        state.mkdir()
        files = {
            "ups.conf": f'[dummy]\n  driver = dummy-ups\n  port = {file}\n  desc = "Test UPS"\n',
            "upsd.conf": f"LISTEN 127.0.0.1 {self.port}\nSTATEPATH {state}\nMAXAGE 15\n",
            "upsd.users": textwrap.dedent("""\
                [admin]
                  password = adminpass
                  actions = SET FSD
                  instcmds = ALL
                  upsmon primary
                [observer]
                  password = obspass
                  upsmon secondary
                """),
            file: textwrap.dedent(seq),
        }
        self.file = self.dir / file
        for name, text in files.items():
            (self.dir / name).write_text(text)
        os.chmod(self.dir, 0o755)
        prefix: list[str] = []
        if as_root():  # the daemons refuse to run as root without a user; use nobody
            shutil.chown(state, "nobody", "nogroup")
            shutil.chown(self.dir / "upsd.users", "nobody", "nogroup")
            prefix = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        os.chmod(self.dir / "upsd.users", 0o600)
        env = {**os.environ, "NUT_CONFPATH": str(self.dir), "NUT_STATEPATH": str(state)}
        self.procs = []
        for argv in (["/lib/nut/dummy-ups", "-a", "dummy", "-F"], ["/lib/nut/upsd", "-F"]):
            self.procs.append(
                subprocess.Popen(
                    [*prefix, *argv], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
            if argv[0].endswith("dummy-ups"):
                # upsd finds the driver by its socket: start it once the socket is there.
                self._wait(lambda: (state / "dummy-ups-dummy").exists(), "the driver's socket")
        self.ready_at = self._wait_ready()

    def _wait(self, predicate, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                self.stop()
                raise AssertionError(f"upsd with dummy-ups: no {what}")
            time.sleep(0.05)

    def _wait_ready(self) -> float:
        async def status():
            async with await NutClient.connect("127.0.0.1", self.port, tls="off", timeout=1) as c:
                return UpsReading.from_variables(await c.list_var("dummy"))

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if not asyncio.run(status()).waiting:
                    return time.time()
            except Exception:
                pass
            time.sleep(0.2)
        self.stop()
        raise AssertionError("upsd with dummy-ups did not come up")

    def set(self, text: str) -> None:
        """Replace what a ``dummy.dev`` says; its mtime moves on, so the driver reads it."""
        stamp = max(time.time(), self.file.stat().st_mtime + 1)  # never the same second
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(textwrap.dedent(text))
        os.chmod(tmp, 0o644)
        os.utime(tmp, (stamp, stamp))
        os.replace(tmp, self.file)

    def stop(self) -> None:
        for proc in self.procs:  # by PID, as started
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def upsd_factory():
    started = []

    def start(seq, file="dummy.seq"):
        started.append(Upsd(seq, file))
        return started[-1]

    yield start
    for server in started:
        server.stop()


STEADY = """\
    ups.status: OL
    battery.charge: 100
    battery.runtime: 1800
    ups.load: 30
    TIMER 600
    """


def test_client_reads_sets_and_logs_in_as_primary(upsd_factory):
    server = upsd_factory(STEADY)

    async def main():
        async with await NutClient.connect("127.0.0.1", server.port) as c:  # if-offered: plain
            assert not c.tls
            assert await c.list_ups() == {"dummy": "Test UPS"}
            variables = await c.list_var("dummy")
            assert variables["ups.status"] == "OL" and variables["battery.charge"] == "100"
            assert await c.get_type("dummy", "battery.charge") == ("RW", "NUMBER")
            assert await c.get_desc("dummy", "battery.charge") == "Battery charge (percent of full)"
            assert await c.protver() == "1.3"
            assert "upsd" in await c.ver()
            with pytest.raises(UnknownUpsError):
                await c.get_var("nope", "ups.status")
            with pytest.raises(UsernameRequiredError):
                await c.login("dummy")
            await c.authenticate("admin", "adminpass")
            await c.set_var("dummy", "battery.charge", "42")
            for _ in range(600):  # upsd hands SET to the driver, which answers a moment later
                if await c.get_var("dummy", "battery.charge") == "42":
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("SET VAR never took effect")
            await c.login("dummy")
            assert await c.primary("dummy") == "PRIMARY-GRANTED"
            assert await c.get_num_logins("dummy") == 1
            assert await c.list_client("dummy") == ["127.0.0.1"]
            await c.fsd("dummy")
            assert (await c.get_var("dummy", "ups.status")).startswith("FSD")
        async with await NutClient.connect("127.0.0.1", server.port, tls="off") as bad:
            await bad.authenticate("admin", "wrong")
            with pytest.raises(AccessDeniedError):
                await bad.login("dummy")  # upsd checks the password at LOGIN

    asyncio.run(main())


def run_watch(tmp_path, server, until, *, policy, timeout=60, steps=()):
    """Run the plan's watch until ``until(events)``; each of ``steps`` (predicate, action)
    acts once, in order, when its predicate first holds: the test drives the UPS by what
    the watch has seen, not by the clock."""
    rec, log = recorder(tmp_path)
    plan_path = lab_plan(tmp_path, server.port, rec, policy=policy)
    text = (
        plan_path.read_text()
        .replace('"rack@', '"dummy@')
        .replace('username = "motte"', 'username = "admin"')
    )
    plan_path.write_text(text)
    (tmp_path / "nut.pw").write_text("adminpass\n")
    (tmp_path / "nut.pw").chmod(0o600)

    async def main():
        events = []
        task = asyncio.create_task(Watch(load_plan(plan_path), on_event=events.append).run())
        start = time.monotonic()
        pending = list(steps)
        try:
            while not until(events):
                if pending and pending[0][0](events):
                    pending.pop(0)[1]()
                if task.done():
                    task.result()
                assert time.monotonic() - start < timeout, kinds(events)
                await asyncio.sleep(0.05)
            return events
        finally:
            await stop_tasks(task)

    return asyncio.run(main()), calls(log)


def test_a_brief_cut_is_ridden_out(tmp_path, upsd_factory):
    # dummy.dev: the test cuts the power as the watch starts, and restores it once the
    # watch rides through (the 60 s ride-through never runs out however slow the box).
    server = upsd_factory(
        "ups.status: OL\nbattery.charge: 100\nbattery.runtime: 1800\n", file="dummy.dev"
    )
    events, recorded = run_watch(
        tmp_path,
        server,
        lambda ev: "ridden-out" in kinds(ev),
        policy="ride_through = 60\nmains_stable = 1.5",
        steps=[
            (
                lambda ev: True,  # at once: a first reading on battery is an ONBATT too
                lambda: server.set(
                    "ups.status: OB DISCHRG\nbattery.charge: 97\nbattery.runtime: 1800\n"
                ),
            ),
            (
                lambda ev: "riding-through" in kinds(ev),
                lambda: server.set(
                    "ups.status: OL CHRG\nbattery.charge: 97\nbattery.runtime: 1800\n"
                ),
            ),
        ],
    )
    assert kinds(events)[:4] == ["ONBATT", "riding-through", "ONLINE", "ridden-out"]
    assert recorded == []  # nothing was drained or stopped


def test_a_long_cut_shuts_down_in_dependency_order(tmp_path, upsd_factory):
    server = upsd_factory("""\
        ups.status: OL
        battery.charge: 100
        battery.runtime: 1800
        TIMER 2
        ups.status: OB DISCHRG
        battery.charge: 80
        battery.runtime: 1200
        TIMER 600
        """)
    events, recorded = run_watch(
        tmp_path,
        server,
        lambda ev: {"down", "FSD"} <= set(kinds(ev)),  # FSD: upsd shows it in ups.status
        policy="ride_through = 3\nmains_stable = 1.5\ncut_power = true",
    )
    order = [(host, what) for _, host, what in recorded]
    assert order == [
        ("app", "drain"),
        ("app", "poweroff"),
        ("nas", "drain"),
        ("nas", "poweroff"),
        ("pi", "poweroff"),
    ]
    times = [t for t, _, _ in recorded]
    assert times == sorted(times)
    onbatt = first(events, "ONBATT")["ts"]
    # The plan started once the 3 s ride-through was over, because it was over (a busy box
    # only makes the wait longer; the exact moment is tests/power/test_coordinator.py's).
    assert times[0] - onbatt >= 2.5
    assert "longer than the 3s ride-through" in first(events, "SHUTDOWN")["message"]
    assert any(e["message"] == "fsd ok: FSD set" for e in events)
    # dummy-ups has no shutdown.return: the failure is recorded and the plan goes on.
    assert any(
        e["message"].startswith("cut-power failed") and "CMD-NOT-SUPPORTED" in e["message"]
        for e in events
    )
    assert first(events, "FSD")  # upsd latched FSD and showed it in ups.status


def test_motte_secondary_follows_upsd_and_goes_on_fsd(tmp_path, upsd_factory):
    import sys

    server = upsd_factory(STEADY)
    rec, log = recorder(tmp_path)
    pw = tmp_path / "observer.pw"
    pw.write_text("obspass\n")
    pw.chmod(0o600)
    follower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "motte",
            "power",
            "secondary",
            f"dummy@127.0.0.1:{server.port}",
            "--username",
            "observer",
            "--password-file",
            str(pw),
            "--shutdown",
            f"{rec} shutdown",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "MOTTE_HOST": "follower"},
    )

    async def primary():
        async with await NutClient.connect("127.0.0.1", server.port, tls="off") as c:
            await c.authenticate("admin", "adminpass")
            await c.login("dummy")
            await c.primary("dummy")
            for _ in range(600):  # until the follower (a new process) has logged in as a secondary
                if await c.get_num_logins("dummy") == 2:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the secondary never logged in")
            await c.fsd("dummy")
            for _ in range(600):  # the primary waits for it to leave, as upsmon does
                if await c.get_num_logins("dummy") == 1:
                    return
                await asyncio.sleep(0.1)
            raise AssertionError("the secondary never logged out")

    try:
        asyncio.run(primary())
        out, err = follower.communicate(timeout=60)
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
    assert follower.returncode == 0, err
    assert [(h, w) for _, h, w in calls(log)] == [("follower", "shutdown")]
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["kind"] for e in events][-2:] == ["SHUTDOWN", "step-done"]
    assert "the primary set FSD" in events[-2]["message"]
