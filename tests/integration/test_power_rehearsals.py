"""The coordinator against the simulator: the hard cases of a power cut, in real time.

Each test plays a scenario in ``motte power simulate``'s server and runs the coordinator
(in this process, or as ``motte power watch`` where a process must die). Host commands are
scripts that record when they ran; tests assert order, and times only relative to each
other with generous bounds.
"""

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import require
from tests.power.rig import calls, first, free_port, kinds, lab_plan, recorder, rehearse, scenario

pytestmark = pytest.mark.integration

MOTTE = [sys.executable, "-m", "motte"]


def test_flapping_power_counts_as_one_long_cut(tmp_path):
    port = free_port()
    rec, _ = recorder(tmp_path)
    # 1 s on battery, 0.5 s of mains, over and over: no single cut reaches the 3 s ride-through,
    # but mains never holds the 2 s it must, so the ride-through runs from the first cut.
    steps = "".join(
        f'[[step]]\nat = {t}\nstatus = "OB DISCHRG"\n[[step]]\nat = {t + 1}\nstatus = "OL CHRG"\n'
        for t in (1, 2.5, 4, 5.5, 7)
    )
    sc = scenario(
        tmp_path, '[[step]]\nat = 0\nstatus = "OL"\ncharge = 100\nruntime = 900\n' + steps
    )
    plan = lab_plan(tmp_path, port, rec, policy="ride_through = 3\nmains_stable = 2")
    events = asyncio.run(rehearse(plan, sc, port, lambda ev: "SHUTDOWN" in kinds(ev)))
    shutdown = first(events, "SHUTDOWN")
    # The ride-through ran out (never before its 3 s: a busy machine only makes it later);
    # that it counts from the first cut to the moment is tests/power/test_coordinator.py's
    # test_flapping_power_does_not_restart_the_ride_through, on a fake clock.
    assert shutdown["ts"] - first(events, "ONBATT")["ts"] >= 2.5
    assert "longer than the 3s ride-through" in shutdown["message"]
    assert kinds(events).count("ONBATT") >= 2 and "ridden-out" not in kinds(events)


def test_power_returning_mid_shutdown_stops_new_stages_and_brings_hosts_back(tmp_path):
    port = free_port()
    rec, log = recorder(tmp_path)
    sc = scenario(
        tmp_path,
        """
        [[step]]
        at = 0
        status = "OL"
        charge = 100
        runtime = 900
        [[step]]
        at = 0.5
        status = "OB DISCHRG LB"
        charge = 30
        [[step]]
        at = 1.5
        status = "OL CHRG"
        charge = 35
        [[step]]
        at = 4
        charge = 70
        ramp = true
        """,
    )
    plan = lab_plan(
        tmp_path,
        port,
        rec,
        policy="ride_through = 30\nmains_stable = 1\nrestart_charge = 60",
        hosts=f"""
        [hosts.app]
        depends_on = ["nas", "switch"]
        drain = ["{rec}", "drain", "2"]
        drain_time = 5
        stop = ["{rec}", "poweroff"]
        stop_time = 3
        start = ["{rec}", "wake"]
        ready = ["{rec}", "ready"]
        """,
    )
    events = asyncio.run(rehearse(plan, sc, port, lambda ev: "recovered" in kinds(ev)))
    order = [(host, what) for _, host, what in calls(log)]
    # LB started the plan; mains came back while app drained: app finished its stage,
    # nas (the next stage) was never touched, and app came back once the charge held 60%.
    assert order == [("app", "drain"), ("app", "poweroff"), ("app", "wake"), ("app", "ready")]
    assert kinds(events).index("paused") < kinds(events).index("host-down")
    waited = first(events, "waiting-charge")
    charge = float(waited["message"].split("battery at ")[1].split("%")[0])
    assert charge < 60  # mains held, but the battery had not recharged yet
    wake = calls(log)[2][0]
    assert wake >= waited["ts"]  # hosts started only once the charge reached 60%


def test_a_host_that_never_confirms_is_given_up_on_and_the_plan_continues(tmp_path):
    port = free_port()
    rec, log = recorder(tmp_path)
    sc = scenario(
        tmp_path,
        '[[step]]\nat = 0\nstatus = "OL"\n[[step]]\nat = 0.5\n'
        'status = "OB LB"\ncharge = 10\nruntime = 600\n',
    )
    plan = lab_plan(
        tmp_path,
        port,
        rec,
        policy="ride_through = 30",
        hosts=f"""
        [hosts.app]
        depends_on = ["nas", "switch"]
        stop = ["{rec}", "poweroff"]
        stop_time = 2
        confirm = ["{rec}", "still-up?", "0", "1"]
        """,
    )
    events = asyncio.run(rehearse(plan, sc, port, lambda ev: "down" in kinds(ev)))
    recorded = calls(log)
    order = [(h, w) for _, h, w in recorded if w != "still-up?"]
    assert order == [("app", "poweroff"), ("nas", "drain"), ("nas", "poweroff"), ("pi", "poweroff")]
    tries = [t for t, h, w in recorded if w == "still-up?"]
    assert len(tries) >= 2  # retried once a second until the deadline
    failed = first(events, "host-failed", "app")
    assert "never confirmed" in failed["message"]
    nas_drain = next(t for t, h, w in recorded if (h, w) == ("nas", "drain"))
    assert nas_drain >= tries[-1]  # the next stage waited for the deadline, then went on


def test_the_ups_server_disappearing_on_battery_counts_as_low_battery(tmp_path):
    port = free_port()
    rec, log = recorder(tmp_path)
    sc = scenario(
        tmp_path,
        '[[step]]\nat = 0\nstatus = "OL"\ncharge = 100\n'
        '[[step]]\nat = 0.5\nstatus = "OB DISCHRG"\ncharge = 90\n',
    )
    plan = lab_plan(tmp_path, port, rec, policy="ride_through = 60\ndead_after = 2")
    events = asyncio.run(
        rehearse(
            plan,
            sc,
            port,
            lambda ev: "down" in kinds(ev),
            stop_simulator_when=lambda ev: "ONBATT" in kinds(ev),  # gone while on battery
        )
    )
    lost = first(events, "COMMBAD")["ts"]
    shutdown = first(events, "SHUTDOWN")
    # dead_after, not the 60 s ride_through: the reason says so; 2 s is only a lower bound.
    assert "dead UPS counts as low battery" in shutdown["message"]
    assert shutdown["ts"] - lost >= 1.5
    # Without the UPS server, FSD cannot be set; the hosts still go down in order.
    assert [(h, w) for _, h, w in calls(log)] == [
        ("app", "drain"),
        ("app", "poweroff"),
        ("nas", "drain"),
        ("nas", "poweroff"),
        ("pi", "poweroff"),
    ]
    assert any(e["message"].startswith("fsd failed") for e in events)


# -- as processes: the coordinator killed, real upsmon, motte secondary, the CLI rehearsal --


def start(argv, **kw):
    return subprocess.Popen(
        [*MOTTE, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
    )


def stop(proc, sig=signal.SIGTERM):
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()


def wait_until(predicate, timeout, what, *watched):
    """Poll ``predicate``; fail with the output of any watched process that died meanwhile."""
    deadline = time.monotonic() + timeout
    while not predicate():
        for proc in watched:
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"{proc.args[3:5]} exited {proc.returncode}: {err}{out}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def wait_logins(port, count, timeout=60):
    """Until ``count`` NUT clients are logged in to the simulator's UPS (NUMLOGINS)."""
    from motte.power.nut import NutClient

    async def logins():
        async with await NutClient.connect("127.0.0.1", port, tls="off", timeout=1) as c:
            return await c.get_num_logins("rack")

    deadline = time.monotonic() + timeout
    while True:
        try:
            if asyncio.run(logins()) >= count:
                return
        except Exception:
            pass
        assert time.monotonic() < deadline, f"{count} login(s) never came"
        time.sleep(0.1)


def event_log(home: Path, name="rig"):
    path = home / "power" / f"{name}.events.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_coordinator_killed_mid_shutdown_resumes_without_repeating(tmp_path, motte_home):
    port = free_port()
    rec, log = recorder(tmp_path)
    sc = scenario(
        tmp_path,
        '[[step]]\nat = 0\nstatus = "OL"\n[[step]]\nat = 0.5\n'
        'status = "OB LB"\ncharge = 15\nruntime = 900\n',
    )
    plan = lab_plan(
        tmp_path,
        port,
        rec,
        policy="ride_through = 30",
        hosts=f"""
        [hosts.nas]
        depends_on = ["switch"]
        drain = ["{rec}", "drain", "3"]
        drain_time = 8
        stop = ["{rec}", "poweroff"]
        stop_time = 3
        start = ["{rec}", "wake"]
        """,
    )
    sim = start(["power", "simulate", str(sc), "--listen", f"127.0.0.1:{port}"])
    try:
        watch = start(["power", "watch", "--plan", str(plan), "--json"])
        # Kill it hard (a crash, a power blip on the coordinator) while nas is draining.
        wait_until(
            lambda: ("nas", "drain") in [(h, w) for _, h, w in calls(log)],
            60,
            "nas drain",
            watch,
            sim,
        )
        watch.send_signal(signal.SIGKILL)
        stop(watch)
        state = json.loads((motte_home / "power" / "rig.state.json").read_text())
        assert state["phase"] == "shutting-down"
        assert state["hosts"]["app"]["state"] == "down"
        assert "nas:drain" in state["running"]
        again = start(["power", "watch", "--plan", str(plan), "--json"])
        wait_until(
            lambda: "down" in kinds(event_log(motte_home)), 90, "the shutdown's end", again, sim
        )
        out, _ = stop(again)
    finally:
        stop(sim)
    order = [(h, w) for _, h, w in calls(log)]
    # app was stopped once, before the crash; nas's drain was in flight, so it ran again;
    # everything after ran once.
    assert order == [
        ("app", "drain"),
        ("app", "poweroff"),
        ("nas", "drain"),
        ("nas", "drain"),
        ("nas", "poweroff"),
        ("pi", "poweroff"),
    ]
    resumed = [json.loads(line) for line in out.splitlines()]
    assert resumed[0]["kind"] == "resumed"
    assert "nas:drain" in resumed[0]["data"]["running"]


def test_a_real_upsmon_secondary_goes_on_our_fsd_and_is_waited_for(tmp_path, motte_home):
    require(Path("/lib/nut/upsmon").exists(), "upsmon (apt-get install nut-client)")
    port = free_port()
    rec, log = recorder(tmp_path)
    sc = scenario(
        tmp_path,
        '[[step]]\nat = 0\nstatus = "OL"\n[[step]]\nat = 1\n'
        'status = "OB DISCHRG"\ncharge = 90\nruntime = 900\n',
    )
    # secondaries_wait: far longer than upsmon takes to log out on FSD (it polls every 1 s).
    plan = lab_plan(tmp_path, port, rec, policy="ride_through = 2\nsecondaries_wait = 60")
    mon = tmp_path / "upsmon"
    mon.mkdir()
    (mon / "upsmon.conf").write_text(
        textwrap.dedent(f"""\
        MONITOR rack@127.0.0.1:{port} 1 observer pw secondary
        MINSUPPLIES 1
        SHUTDOWNCMD "{rec} upsmon-shutdown"
        POLLFREQ 1
        POLLFREQALERT 1
        HOSTSYNC 15
        DEADTIME 15
        FINALDELAY 0
        RUN_AS_USER {"root" if os.geteuid() == 0 else os.environ.get("USER", "nobody")}
        POWERDOWNFLAG {mon}/killpower
        """)
    )
    os.chmod(mon / "upsmon.conf", 0o600)
    sim = start(["power", "simulate", str(sc), "--listen", f"127.0.0.1:{port}", "--json"])
    upsmon = None
    try:
        wait_logins(port, 0)  # the simulator listens
        # Its own session: upsmon forks, and both halves must go at the end (by group).
        upsmon = subprocess.Popen(
            ["/lib/nut/upsmon", "-F"],
            env={**os.environ, "NUT_CONFPATH": str(mon), "MOTTE_HOST": "upsmon"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_logins(port, 1)  # upsmon is logged in as a secondary before the cut
        watch = start(["power", "watch", "--plan", str(plan), "--json"])
        wait_until(
            lambda: "down" in kinds(event_log(motte_home)), 120, "the shutdown's end", watch, sim
        )
        stop(watch)
        # upsmon logs out first ("Auto logout and shutdown proceeding"), then runs its command.
        wait_until(
            lambda: ("upsmon", "upsmon-shutdown") in [(h, w) for _, h, w in calls(log)],
            60,
            "upsmon's SHUTDOWNCMD",
        )
    finally:
        if upsmon is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(upsmon.pid, signal.SIGTERM)
            stop(upsmon)
        sim_out, _ = stop(sim)
    recorded = [(h, w) for _, h, w in calls(log)]
    # upsmon went on our FSD, which came after every host of the plan.
    assert recorded.index(("upsmon", "upsmon-shutdown")) > recorded.index(("nas", "poweroff"))
    events = event_log(motte_home)
    fsd = next(e for e in events if e["message"] == "fsd ok: FSD set")
    waited = next(
        e
        for e in events
        if e["kind"] == "step-done" and e.get("data", {}).get("step") == "secondaries"
    )
    # The coordinator waited for upsmon's logout (counted in NUMLOGINS), not for its 60 s.
    assert waited["message"] == "secondaries ok: every secondary logged out"
    assert waited["ts"] >= fsd["ts"]
    stopped_self = next(
        e for e in events if e["kind"] == "step" and e.get("data", {}).get("step") == "self-stop"
    )
    assert stopped_self["ts"] >= waited["ts"]
    # The simulator saw upsmon log in before the FSD and leave after it.
    said = [json.loads(line)["message"] for line in sim_out.splitlines()]
    assert (
        said.index("observer@127.0.0.1 logged in to rack")
        < said.index("FSD set by motte@127.0.0.1")
        < said.index("observer@127.0.0.1 logged out of rack")
    )


def test_motte_secondary_follows_the_primary_and_shuts_down_on_fsd(tmp_path, motte_home):
    port = free_port()
    rec, log = recorder(tmp_path)
    sc = scenario(
        tmp_path,
        '[[step]]\nat = 0\nstatus = "OL"\n[[step]]\nat = 1\n'
        'status = "OB LB"\ncharge = 10\nruntime = 300\n',
    )
    plan = lab_plan(tmp_path, port, rec, policy="ride_through = 30\nsecondaries_wait = 10")
    pw = tmp_path / "observer.pw"
    pw.write_text("pw\n")
    pw.chmod(0o600)
    sim = start(["power", "simulate", str(sc), "--listen", f"127.0.0.1:{port}"])
    try:
        wait_logins(port, 0)  # the simulator listens
        follower = start(
            [
                "power",
                "secondary",
                f"rack@127.0.0.1:{port}",
                "--username",
                "observer",
                "--password-file",
                str(pw),
                "--hostsync",
                "20",
                "--drain",
                f"{rec} follower-drain",
                "--shutdown",
                f"{rec} follower-shutdown",
                "--json",
            ],
            env={**os.environ, "MOTTE_HOST": "follower"},
        )
        wait_logins(port, 1)
        watch = start(["power", "watch", "--plan", str(plan), "--json"])
        f_out, f_err = follower.communicate(timeout=90)
        wait_until(
            lambda: "down" in kinds(event_log(motte_home)), 90, "the shutdown's end", watch, sim
        )
        stop(watch)
    finally:
        stop(sim)
    assert follower.returncode == 0, f_err
    follower_events = [json.loads(line) for line in f_out.splitlines()]
    shutdown = next(e for e in follower_events if e["kind"] == "SHUTDOWN")
    assert "the primary set FSD" in shutdown["message"]  # not HOSTSYNC: it waited for FSD
    recorded = [(h, w) for _, h, w in calls(log)]
    assert (
        recorded.index(("follower", "follower-drain"))
        < recorded.index(("follower", "follower-shutdown"))
        < recorded.index(("pi", "poweroff"))
    )


def test_a_login_the_ups_server_refuses_stops_the_watch_with_one_line(tmp_path):
    port = free_port()
    rec, _ = recorder(tmp_path)
    sc = scenario(tmp_path, '[[step]]\nat = 0\nstatus = "OL"\n')
    plan = lab_plan(tmp_path, port, rec)
    (tmp_path / "nut.pw").write_text("wrong\n")
    sim = start(["power", "simulate", str(sc), "--listen", f"127.0.0.1:{port}"])
    try:
        wait_logins(port, 0)  # listening
        watch = start(["power", "watch", "--plan", str(plan)])
        _, err = watch.communicate(timeout=60)
    finally:
        stop(sim)
    assert watch.returncode == 1
    assert err.startswith(f"motte: error: NUT server rack@127.0.0.1:{port} refused the login")
    assert "ACCESS-DENIED" in err and "Traceback" not in err


def test_the_cli_rehearses_a_whole_power_cut_with_the_examples(tmp_path, motte_home):
    """Done-when: `simulate` and `watch` rehearse a whole cut, order and timing shown."""
    examples = Path(__file__).resolve().parents[2] / "examples" / "power"
    work = tmp_path / "power"
    shutil.copytree(examples, work)
    port = free_port()
    plan = work / "rehearsal.toml"
    plan.write_text(plan.read_text().replace("127.0.0.1:13490", f"127.0.0.1:{port}"))
    log = tmp_path / "rehearsal.log"
    env = {**os.environ, "MOTTE_REHEARSAL_LOG": str(log), "MOTTE_REHEARSAL_PASSWORD": "rehearsal"}
    check = subprocess.run(
        [*MOTTE, "power", "plan", "check", str(plan)], capture_output=True, text=True, env=env
    )
    assert check.returncode == 0, check.stderr
    assert "stage 1: app" in check.stdout and "stage 2: nas" in check.stdout
    sim = start(
        [
            "power",
            "simulate",
            str(work / "long-cut.toml"),
            "--listen",
            f"127.0.0.1:{port}",
        ],  # no --stop-after: a watch that starts late on a busy machine still sees it all
        env=env,
    )
    try:
        wait_logins(port, 0)  # the simulator listens
        watch = start(["power", "watch", "--plan", str(plan)], env=env)
        wait_until(
            lambda: "recovered" in kinds(event_log(motte_home, "rehearsal")),
            120,
            "the rehearsal to recover",
            watch,
            sim,
        )
        status = subprocess.run(
            [*MOTTE, "power", "status", "--json"], capture_output=True, text=True, env=env
        )
        out, err = stop(watch)
    finally:
        sim_out, _ = stop(sim)
    assert watch.returncode == 0, err  # SIGTERM ends a watch cleanly
    assert "Traceback" not in err
    # The order and the timing are shown: each line carries seconds since the watch started.
    lines = [line for line in out.splitlines() if "s  " in line]
    shown = [line.split()[1] for line in lines]
    for kind in (
        "ONBATT",
        "SHUTDOWN",
        "stage",
        "host-down",
        "FSD",
        "down",
        "ONLINE",
        "recovering",
        "host-up",
        "recovered",
    ):
        assert kind in shown, (kind, out)
    assert "load OFF (shutdown.return)" in sim_out and "load back ON" in sim_out
    recorded = [line.split(" ", 1)[1] for line in log.read_text().splitlines()]
    hosts_only = [r for r in recorded if not r.startswith("notify")]
    assert hosts_only == [
        "app drain Keeps",
        "app poweroff",
        "nas drain",
        "nas poweroff",
        "pi poweroff (the coordinator, last)",
        "nas wake-on-LAN",
        "nas ready (Keeps re-attested and serving)",
        "app IPMI power on",
        "app ready (Keeps re-attested and serving)",
    ]
    assert any(r.startswith("notify ONBATT") for r in recorded)
    doc = json.loads(status.stdout)["plans"][0]
    assert doc["phase"] == "online" and doc["watch"]["running"]
    assert {h: v["state"] for h, v in doc["hosts"].items()} == {
        "switch": "up",
        "pi": "up",
        "nas": "up",
        "app": "up",
    }


def test_a_second_watch_for_the_same_plan_is_refused(tmp_path):
    from motte.power import PowerError, Watch, load_plan

    port = free_port()
    rec, _ = recorder(tmp_path)
    plan = load_plan(lab_plan(tmp_path, port, rec))

    async def main():
        first_watch = asyncio.create_task(Watch(plan).run())
        await asyncio.sleep(0.3)  # it holds the plan's lock (the UPS need not be up)
        try:
            with pytest.raises(PowerError, match=f"running plan 'rig' \\(pid {os.getpid()}\\)"):
                await Watch(plan).run()
        finally:
            first_watch.cancel()
            await asyncio.gather(first_watch, return_exceptions=True)
        again = asyncio.create_task(Watch(plan).run())  # released: a new watch may start
        await asyncio.sleep(0.3)
        assert not again.done()
        again.cancel()
        await asyncio.gather(again, return_exceptions=True)

    asyncio.run(main())
