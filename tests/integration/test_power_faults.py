"""Issue 20's faults, each against a real server on 127.0.0.1: the simulator, or a socket
that misbehaves on purpose. (The coordinator's faults, and SIGKILL of the watch at each
phase, are in test_power_restarts.py.)"""

import asyncio
import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys

import pytest

from motte.power import Simulator, load_scenario
from motte.power._monitor import Lost, UpsMonitor
from motte.power.nut import NutClient, NutConnectionError
from tests.integration.test_power_simulator import make_cert, serving
from tests.power.rig import calls, free_port, lab_plan, recorder, scenario, stop_tasks

pytestmark = pytest.mark.integration

STEADY = '[[step]]\nat = 0\nstatus = "OL"\ncharge = 100\nruntime = 900\n'


async def misbehaving(handler):
    """A TCP server on 127.0.0.1 whose connections run ``handler(reader, writer)``."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def dripping(reader, writer):
    """Answer every request one byte at a time, never finishing the line."""
    await reader.readline()
    try:
        while True:
            writer.write(b"V")
            await writer.drain()
            await asyncio.sleep(0.2)
    except (ConnectionError, OSError):
        pass


async def silent(reader, writer):
    await reader.read()  # read until the client gives up; never answer


# -- fault 6: a request has one deadline, and a timeout says what it was --------------------


def test_a_slow_drip_server_misses_its_deadline_instead_of_holding_the_client():
    async def main():
        server, port = await misbehaving(dripping)
        async with server:
            c = await NutClient.connect("127.0.0.1", port, tls="off", timeout=1.0)
            try:
                async with asyncio.timeout(30):  # the test's own guard, not the assertion
                    with pytest.raises(NutConnectionError) as caught:
                        await c.get_var("rack", "ups.status")
            finally:
                await c.close()
        return str(caught.value)

    message = asyncio.run(main())
    assert message.endswith("did not answer GET: no complete answer within 1s")


def test_a_timed_out_starttls_names_its_reason():
    async def main():
        server, port = await misbehaving(silent)
        async with server:
            with pytest.raises(NutConnectionError) as caught:
                await NutClient.connect("127.0.0.1", port, tls="if-offered", timeout=0.5)
        return str(caught.value)

    assert asyncio.run(main()).endswith("did not answer STARTTLS: no complete answer within 0.5s")


def test_a_monitor_of_a_dripping_server_reports_the_link_lost(tmp_path):
    async def main():
        server, port = await misbehaving(dripping)
        async with server:
            rec, _ = recorder(tmp_path)
            from motte.power import load_plan

            ups = load_plan(lab_plan(tmp_path, port, rec)).upses[0]
            queue: asyncio.Queue[object] = asyncio.Queue()
            monitor = UpsMonitor(ups, queue, role=None, timeout=1.0)
            task = asyncio.create_task(monitor.run())
            try:
                async with asyncio.timeout(30):
                    return await queue.get()
            finally:
                await stop_tasks(task)

    item = asyncio.run(main())
    assert isinstance(item, Lost) and "no complete answer within 1s" in item.reason


# -- fault 4: plan check --ask-ups reads the UPS as watch does -------------------------------


def test_plan_check_ask_ups_verifies_tls_with_the_plans_ca_file(tmp_path, cli):
    cert, key = make_cert(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    sc = scenario(tmp_path, STEADY)

    async def body(port, sim):
        rec, _ = recorder(tmp_path)
        plan = lab_plan(tmp_path, port, rec)
        text = plan.read_text().replace('tls = "off"', f'tls = "required"\nca_file = "{cert}"')
        plan.write_text(text)
        return await asyncio.to_thread(cli, "power", "plan", "check", plan, "--ask-ups", "--json")

    r = asyncio.run(serving(sc, body, tls=server_ctx))
    assert r.exit_code == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["runtime"] == 900


@pytest.mark.parametrize("value", ["nan", "inf", "-5", "soon"])
def test_plan_check_ask_ups_refuses_a_runtime_that_is_not_seconds(tmp_path, cli, value):
    sc = scenario(
        tmp_path,
        f'[variables]\n"battery.runtime" = "{value}"\n' + STEADY.replace("runtime = 900\n", ""),
    )

    async def body(port, sim):
        rec, _ = recorder(tmp_path)
        plan = lab_plan(tmp_path, port, rec)
        return await asyncio.to_thread(cli, "power", "plan", "check", plan, "--ask-ups")

    r = asyncio.run(serving(sc, body))
    assert r.exit_code == 1
    assert f"battery.runtime is not a number of seconds: {value!r}" in r.stderr
    assert "Traceback" not in r.stderr


# -- fault 7: the simulator caps its connections and never prints a traceback ----------------


def test_the_simulator_closes_connections_beyond_its_cap_and_keeps_serving(tmp_path):
    said = []

    async def main():
        sim = Simulator(
            load_scenario(scenario(tmp_path, STEADY)),
            port=0,
            max_connections=2,
            on_event=lambda _t, text: said.append(text),
        )
        port = await sim.start()
        task = asyncio.create_task(sim.run())
        try:
            a = await NutClient.connect("127.0.0.1", port, tls="off")
            b = await NutClient.connect("127.0.0.1", port, tls="off")
            assert await a.get_var("rack", "ups.status") == "OL"
            assert await b.get_var("rack", "ups.status") == "OL"
            for _ in range(3):  # beyond the cap: closed at once, politely, no reply
                extra = await NutClient.connect("127.0.0.1", port, tls="off")
                # Closed before or after the request arrived: EOF, or a reset.
                with pytest.raises(NutConnectionError, match=r"closed the connection|reset"):
                    await extra.get_var("rack", "ups.status")
                await extra.close()
            await b.close()
            async with asyncio.timeout(30):  # the session ends once the server sees b go
                while len(sim.sessions) > 1:
                    await asyncio.sleep(0.05)
            again = await NutClient.connect("127.0.0.1", port, tls="off")
            assert await again.get_var("rack", "ups.status") == "OL"
            assert await a.get_var("rack", "ups.status") == "OL"  # never disturbed
            await again.close()
            await a.close()
            return sim.refused
        finally:
            await stop_tasks(task)

    assert asyncio.run(main()) == 3
    assert sum("connections open: closing new ones" in t for t in said) == 1  # once a burst
    assert any("accepting connections again (3 refused so far)" in t for t in said)


def test_motte_power_simulate_under_a_connection_flood_prints_no_traceback(tmp_path):
    port = free_port()
    sc = scenario(tmp_path, STEADY)
    sim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "motte",
            "power",
            "simulate",
            str(sc),
            "--listen",
            f"127.0.0.1:{port}",
            "--max-connections",
            "5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sockets = []
    try:
        for _ in range(300):  # wait for it to listen (a condition, with a generous bound)
            try:
                sockets.append(socket.create_connection(("127.0.0.1", port), timeout=0.2))
                break
            except OSError:
                if sim.poll() is not None:
                    break
                asyncio.run(asyncio.sleep(0.1))
        for _ in range(200):
            with contextlib.suppress(OSError):
                sockets.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        kept = sockets[0]
        kept.sendall(b"GET VAR rack ups.status\n")
        assert kept.recv(200).startswith(b'VAR rack ups.status "OL"')
    finally:
        for s in sockets:
            s.close()
        if sim.poll() is None:
            sim.send_signal(signal.SIGINT)
        try:
            out, err = sim.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            sim.kill()
            out, err = sim.communicate()
    assert "Traceback" not in err and "Traceback" not in out
    assert out.count("connections open: closing new ones") >= 1
    assert len(out.splitlines()) < 100  # one line per burst, not one per connection
    assert os.path.exists(sc)


# -- faults 2, 5 and 8, and OFF, against the simulator in this process ----------------------


def test_hosts_start_only_after_the_ups_has_cut_and_restored_its_load(tmp_path):
    """Fault 2: with mains back after FSD, hosts were started just before the pending
    shutdown.return cut their power. The simulator cuts 3 s after accepting it."""
    from tests.power.rig import first, kinds, rehearse

    port = free_port()
    rec, log = recorder(tmp_path)
    sc = scenario(
        tmp_path,
        '[variables]\n"ups.delay.shutdown" = 3\n"ups.delay.start" = 1\n'
        '[[step]]\nat = 0\nstatus = "OB LB"\ncharge = 90\nruntime = 900\n'
        # Mains is back while the plan is still running: the load cut is still to come.
        '[[step]]\nat = 0.3\nstatus = "OL CHRG"\n',
    )
    # FSD as the shutdown starts: it then goes all the way though mains is back at once.
    policy = 'cut_power = true\nmains_stable = 0.5\nfsd_at = "start"'
    plan = lab_plan(tmp_path, port, rec, policy=policy)
    events = asyncio.run(rehearse(plan, sc, port, lambda ev: "recovered" in kinds(ev), timeout=90))
    accepted = next(e for e in events if e["message"].startswith("cut-power ok"))
    off, back = first(events, "OFF"), first(events, "NOTOFF")
    starts = [e for e in events if e["kind"] == "step" and e["data"]["step"] == "start"]
    assert accepted["ts"] <= off["ts"] <= back["ts"] <= starts[0]["ts"]
    assert "waiting-load-cut" in kinds(events) and "paused" not in kinds(events)
    assert first(events, "step")["data"]["step"] == "fsd"  # fsd_at = "start"
    assert [w for _, _, w in calls(log)].count("wake") == 2


def test_no_wait_for_secondaries_when_the_ups_server_is_gone(tmp_path):
    """Fault 5: the wait burned its whole timeout with FSD unset and the UPS unreachable."""
    from tests.power.rig import kinds, rehearse

    port = free_port()
    rec, _ = recorder(tmp_path)
    sc = scenario(
        tmp_path,
        '[[step]]\nat = 0\nstatus = "OL"\ncharge = 100\n'
        '[[step]]\nat = 0.5\nstatus = "OB DISCHRG"\ncharge = 90\n',
    )
    plan = lab_plan(
        tmp_path, port, rec, policy="ride_through = 60\ndead_after = 2\nsecondaries_wait = 600"
    )
    events = asyncio.run(
        rehearse(
            plan,
            sc,
            port,
            lambda ev: "down" in kinds(ev),
            stop_simulator_when=lambda ev: "ONBATT" in kinds(ev),
        )
    )
    skipped = [e for e in events if e["kind"] == "step-skipped"]
    assert skipped and "FSD could not be set" in skipped[0]["message"]
    assert not any("waiting up to 600s" in e["message"] for e in events)


def test_a_ups_never_reachable_does_not_hold_back_a_cut_on_another(tmp_path):
    """Fault 8: a UPS never seen is assumed supplying (upsmon's rule); the other decides."""
    from tests.integration.test_power_several_upses import ON_LINE, two_ups_plan, ups_scenario
    from tests.power.rig import kinds, rehearse

    rack_port, nowhere = free_port(), free_port()  # nothing listens on the second
    rec, log = recorder(tmp_path)
    rack = ups_scenario(tmp_path, "rack", ON_LINE + '[[step]]\nat = 0.5\nstatus = "OB LB"\n')
    plan = two_ups_plan(tmp_path, rack_port, nowhere, rec, policy="nocomm_after = 1")
    events = asyncio.run(
        rehearse(plan, rack, rack_port, lambda ev: {"down", "NOCOMM"} <= set(kinds(ev)))
    )
    assert [e["kind"] for e in events if e["ups"] == f"aux@127.0.0.1:{nowhere}"][:2] == [
        "COMMBAD",
        "NOCOMM",
    ]
    assert "the UPS reports low battery" in next(
        e["message"] for e in events if e["kind"] == "SHUTDOWN"
    )
    assert [h for _, h, w in calls(log) if w == "poweroff"] == ["app", "nas", "pi"]


def test_output_off_with_hosts_up_shuts_down_at_once(tmp_path):
    from tests.power.rig import first, kinds, rehearse

    port = free_port()
    rec, log = recorder(tmp_path)
    sc = scenario(tmp_path, STEADY)
    plan = lab_plan(tmp_path, port, rec)

    async def main():
        async def switch_off():  # someone runs load.off on the UPS
            await asyncio.sleep(0)
            for _ in range(600):
                try:
                    async with await NutClient.connect("127.0.0.1", port, tls="off") as c:
                        await c.authenticate("motte", "pw")
                        await c.instcmd("rack", "load.off")
                        return
                except Exception:
                    await asyncio.sleep(0.1)

        task = asyncio.create_task(switch_off())
        try:
            return await rehearse(plan, sc, port, lambda ev: "down" in kinds(ev), timeout=60)
        finally:
            await stop_tasks(task)

    events = asyncio.run(main())
    shutdown = first(events, "SHUTDOWN")
    assert first(events, "OFF")["ts"] <= shutdown["ts"]
    assert "output OFF while hosts are up" in shutdown["message"]
    assert [h for _, h, w in calls(log) if w == "poweroff"] == ["app", "nas", "pi"]
