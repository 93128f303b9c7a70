"""Issue 20's fault matrix: ``motte power watch`` killed (SIGKILL) at each phase of a power
cut, then restarted with mains back or still out, against the simulator and against the real
upsd + dummy-ups. Each run must end with the right hosts stopped, in the plan's order.

Phases are driven by observed state, never by sleeps: the test sets the UPS's status (SET VAR
on the simulator, a rewritten ``dummy.dev`` for dummy-ups), and waits for what the watch wrote
(its event log) or what the host commands wrote (the calls log). A step the kill must land in
is held open by a gate script that waits for a file the test creates once the watch is dead.
"""

import asyncio
import json
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from motte.power.nut import NutClient
from tests.conftest import require
from tests.power.rig import USERS, calls, free_port, recorder, write

pytestmark = pytest.mark.integration

MOTTE = [sys.executable, "-m", "motte"]
#: Generous: a condition a healthy run meets in a second or two, on a loaded 2-core machine.
WAIT = 90.0
#: Long enough that the kill, right after the watch says it is riding through, lands inside.
RIDE_THROUGH = 10


class SimulatedUps:
    """``motte power simulate`` as a process; the test sets ``ups.status`` by hand."""

    ups, user, password = "rack", "motte", "pw"

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        sc = write(
            folder,
            "scenario.toml",
            'ups = "rack"\nwritable = ["ups.status"]\n[[step]]\nat = 0\nstatus = "OL"\n'
            f"charge = 100\nruntime = 1800\n{USERS}",
        )
        self.proc = subprocess.Popen(
            [*MOTTE, "power", "simulate", str(sc), "--listen", f"127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def set(self, status: str) -> None:
        async def main() -> None:
            async with await NutClient.connect("127.0.0.1", self.port, tls="off") as c:
                await c.authenticate(self.user, self.password)
                await c.set_var(self.ups, "ups.status", status)

        until(lambda: _try(lambda: asyncio.run(main())), "the simulator to take a status")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=30)


class RealUpsd:
    """upsd + dummy-ups reading a ``dummy.dev`` the test rewrites."""

    ups, user, password = "dummy", "admin", "adminpass"

    def __init__(self, folder: Path) -> None:
        require(Path("/lib/nut/upsd").exists(), "upsd and dummy-ups (apt-get install nut-server)")
        from tests.integration.test_power_upsd import Upsd

        self.server = Upsd(self._dev("OL"), file="dummy.dev")
        self.port = self.server.port

    @staticmethod
    def _dev(status: str) -> str:
        return f"ups.status: {status}\nbattery.charge: 100\nbattery.runtime: 1800\n"

    def set(self, status: str) -> None:
        self.server.set(self._dev(status))

    def stop(self) -> None:
        self.server.stop()


def _try(fn) -> bool:
    try:
        fn()
    except Exception:
        return False
    return True


def until(predicate, what: str, *watched: subprocess.Popen, timeout: float = WAIT) -> None:
    """Wait for ``predicate`` (polled); fail naming ``what``, or a watched process that died."""
    deadline = time.monotonic() + timeout
    while not predicate():
        for proc in watched:
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"{proc.args[3:5]} exited {proc.returncode}: {err}{out}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def gate(folder: Path, log: Path, release: Path) -> Path:
    """``gate.sh WHAT``: records the call as the recorder does, then waits for ``release``."""
    script = folder / "gate.sh"
    script.write_text(
        textwrap.dedent(f"""\
        #!/bin/sh
        printf '%s %s %s\\n' "$(date +%s.%N)" "${{MOTTE_HOST:-?}}" "$1" >> {log}
        i=0
        while [ ! -e {release} ] && [ $i -lt 6000 ]; do sleep 0.05; i=$((i+1)); done
        """)
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def plan_for(folder: Path, ups, gated: str | None) -> Path:
    """pi coordinates (and drains), app depends on nas; ``gated``'s drain waits for the gate."""
    rec, log = recorder(folder)
    held = gate(folder, log, folder / "release")
    (folder / "nut.pw").write_text(f"{ups.password}\n")
    (folder / "nut.pw").chmod(0o600)

    def drain(host: str) -> str:
        return f'["{held if host == gated else rec}", "drain"]'

    return write(
        folder,
        "plan.toml",
        f"""
        name = "rig"
        [ups]
        address = "{ups.ups}@127.0.0.1:{ups.port}"
        username = "{ups.user}"
        password_file = "nut.pw"
        tls = "off"
        [policy]
        ride_through = {RIDE_THROUGH}
        mains_stable = 1
        dead_after = 15
        restart_charge = 50
        secondaries_wait = 2
        reserve = 0
        poll_interval = 0.1
        [hosts.switch]
        never_stop = true
        [hosts.pi]
        coordinator = true
        depends_on = ["switch"]
        drain = {drain("pi")}
        drain_time = 120
        stop = ["{rec}", "poweroff"]
        stop_time = 10
        [hosts.nas]
        depends_on = ["switch"]
        drain = {drain("nas")}
        drain_time = 120
        stop = ["{rec}", "poweroff"]
        stop_time = 10
        start = ["{rec}", "wake"]
        ready = ["{rec}", "ready"]
        start_time = 10
        [hosts.app]
        depends_on = ["nas", "switch"]
        drain = {drain("app")}
        drain_time = 120
        stop = ["{rec}", "poweroff"]
        stop_time = 10
        start = ["{rec}", "wake"]
        ready = ["{rec}", "ready"]
        start_time = 10
        """,
    )


def events(home: Path) -> list[dict]:
    path = home / "power" / "rig.events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def kinds_since(home: Path, start: int) -> list[str]:
    return [e["kind"] for e in events(home)[start:]]


def collapsed(log: Path) -> list[tuple[str, str]]:
    """Host calls in order; a step issued again after the restart counts once."""
    out: list[tuple[str, str]] = []
    for _, host, what in calls(log):
        if not out or out[-1] != (host, what):
            out.append((host, what))
    return out


FULL = [
    ("app", "drain"),
    ("app", "poweroff"),
    ("nas", "drain"),
    ("nas", "poweroff"),
    ("pi", "drain"),
    ("pi", "poweroff"),
]
BACK = {
    "ride-through": [],
    "stage-1": [("app", "drain"), ("app", "poweroff"), ("app", "wake"), ("app", "ready")],
    "stage-2": [
        *FULL[:4],
        ("nas", "wake"),
        ("nas", "ready"),
        ("app", "wake"),
        ("app", "ready"),
    ],
    "after-fsd": [*FULL, ("nas", "wake"), ("nas", "ready"), ("app", "wake"), ("app", "ready")],
}
#: Which host's drain the kill lands in, and what the watch must have done by then.
GATED = {"ride-through": None, "stage-1": "app", "stage-2": "nas", "after-fsd": "pi"}
SERVERS = {"simulator": SimulatedUps, "upsd": RealUpsd}


@pytest.mark.parametrize("server", sorted(SERVERS))
@pytest.mark.parametrize("mains", ["back", "out"])
@pytest.mark.parametrize("phase", list(GATED))
def test_a_watch_killed_mid_cut_and_restarted_ends_right(
    tmp_path, motte_home, server, mains, phase
):
    ups = SERVERS[server](tmp_path)
    log = tmp_path / "calls.log"
    plan = plan_for(tmp_path, ups, GATED[phase])
    watch = again = None
    try:
        watch = subprocess.Popen(
            [*MOTTE, "power", "watch", "--plan", str(plan), "--json"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        until(lambda: _logged_in(ups), "the watch to log in", watch)
        cut = "OB DISCHRG" if phase == "ride-through" else "OB DISCHRG LB"
        ups.set(cut)
        if phase == "ride-through":
            until(lambda: "riding-through" in kinds_since(motte_home, 0), "the ride", watch)
        else:
            host = GATED[phase]
            until(lambda: (host, "drain") in collapsed(log), f"{host}'s drain", watch)
        if phase == "after-fsd":
            assert any(e["message"] == "fsd ok: FSD set" for e in events(motte_home))
        watch.send_signal(signal.SIGKILL)
        watch.communicate(timeout=30)
        seen = len(events(motte_home))
        if phase == "ride-through":
            # Restart only once the ride-through would have run out (issue 20's fault 1: the
            # restarted watch shut the lab down from the OB reading it had saved).
            riding = next(e for e in events(motte_home) if e["kind"] == "riding-through")
            until(lambda: time.time() > riding["ts"] + RIDE_THROUGH + 1, "the ride's end")

        status = "OL CHRG" if mains == "back" else cut
        ups.set(status)
        # The restarted watch's first reading must be the new one (dummy-ups rereads its
        # file within a couple of seconds): wait until the server says so.
        until(lambda: _shows(ups, status), f"the UPS server to show {status}")
        (tmp_path / "release").touch()
        again = subprocess.Popen(
            [*MOTTE, "power", "watch", "--plan", str(plan), "--json"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        end = {"back": "recovered", "out": "down"}[mains]
        if (phase, mains) == ("ride-through", "back"):
            end = "ridden-out"
        until(lambda: end in kinds_since(motte_home, seen), f"'{end}' after the restart", again)
        after = kinds_since(motte_home, seen)
    finally:
        for proc in (watch, again):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.communicate(timeout=30)
        (tmp_path / "release").touch()  # let any gated step left behind finish
        ups.stop()
    assert after[0] == "resumed"
    expected = FULL if mains == "out" else BACK[phase]
    assert collapsed(log) == expected
    if mains == "back" and phase == "ride-through":
        assert "SHUTDOWN" not in after  # the saved OB reading triggered nothing


def _shows(ups, status: str) -> bool:
    async def read() -> str:
        async with await NutClient.connect("127.0.0.1", ups.port, tls="off", timeout=2) as c:
            return await c.get_var(ups.ups, "ups.status")

    try:
        shown = asyncio.run(read()).split()
    except Exception:
        return False
    return [t for t in shown if t != "FSD"] == status.split()  # upsd keeps FSD latched


def _logged_in(ups) -> bool:
    async def count() -> int:
        async with await NutClient.connect("127.0.0.1", ups.port, tls="off", timeout=2) as c:
            return await c.get_num_logins(ups.ups)

    try:
        return asyncio.run(count()) >= 1
    except Exception:
        return False
