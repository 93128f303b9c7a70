"""A plan with two UPSes, each a simulator: every supply is required.

One UPS stays on mains while the other goes on battery: a long cut on either is enough to
shut the plan down in order (upsmon's MINSUPPLIES with every supply required); a short one is
ridden out. Events and notifications name the UPS that changed.
"""

import asyncio
import stat
import textwrap
import time

import pytest

from motte.power import PowerError
from tests.power.rig import (
    USERS,
    calls,
    first,
    free_port,
    kinds,
    lab_plan,
    recorder,
    rehearse_many,
    write,
)

pytestmark = pytest.mark.integration


def ups_scenario(folder, name: str, steps: str):
    return write(folder, f"{name}.toml", f'ups = "{name}"\n{textwrap.dedent(steps)}\n{USERS}')


def two_ups_plan(folder, rack_port: int, aux_port: int, rec, *, policy: str, aux_user="motte"):
    """The rig's lab plan, watching rack (on rack_port) and aux (on aux_port)."""
    path = lab_plan(folder, rack_port, rec, policy=policy)
    text = path.read_text()
    one = f'[ups]\naddress = "rack@127.0.0.1:{rack_port}"\n'
    assert one in text
    second = (
        f'[[ups]]\naddress = "aux@127.0.0.1:{aux_port}"\nusername = "{aux_user}"\n'
        'password_file = "nut.pw"\ntls = "off"\n'
    )
    text = text.replace(one, f'[[ups]]\naddress = "rack@127.0.0.1:{rack_port}"\n')
    text = text.replace("[policy]\n", second + "[policy]\n", 1)
    notify = folder / "notify.sh"
    notify.write_text(f'#!/bin/sh\necho "$NOTIFYTYPE $UPSNAME" >> {folder / "notified.log"}\n')
    notify.chmod(notify.stat().st_mode | stat.S_IXUSR)
    text = text.replace("[hosts.switch]", f'[notify]\ncommand = ["{notify}"]\n[hosts.switch]', 1)
    path.write_text(text)
    return path


ON_LINE = """
[[step]]
at = 0
status = "OL"
charge = 100
runtime = 1800
"""


def notified(folder) -> list[str]:
    path = folder / "notified.log"
    return path.read_text().splitlines() if path.exists() else []


def test_one_ups_on_battery_then_low_shuts_the_plan_down_in_order(tmp_path):
    rack_port, aux_port = free_port(), free_port()
    rec, log = recorder(tmp_path)
    rack = ups_scenario(tmp_path, "rack", ON_LINE)
    aux = ups_scenario(
        tmp_path,
        "aux",
        ON_LINE
        + """
        [[step]]
        at = 0.5
        status = "OB DISCHRG"
        charge = 80
        runtime = 900
        [[step]]
        at = 2
        status = "OB DISCHRG LB"
        charge = 20
        runtime = 240
        """,
    )
    plan = two_ups_plan(
        tmp_path, rack_port, aux_port, rec, policy="ride_through = 30\ncut_power = true"
    )
    said: list[tuple[int, str]] = []
    events = asyncio.run(
        rehearse_many(
            plan,
            [(rack, rack_port), (aux, aux_port)],
            lambda ev: "down" in kinds(ev) and len(notified(tmp_path)) >= 3,
            said=said,
        )
    )
    rack_addr, aux_addr = f"rack@127.0.0.1:{rack_port}", f"aux@127.0.0.1:{aux_port}"
    order = [(host, what) for _, host, what in calls(log)]
    assert order == [
        ("app", "drain"),
        ("app", "poweroff"),
        ("nas", "drain"),
        ("nas", "poweroff"),
        ("pi", "poweroff"),
    ]
    # aux went on battery, then low: the plan ran at LB, not after the 30 s ride-through
    onbatt, lowbatt, shutdown = (first(events, k) for k in ("ONBATT", "LOWBATT", "SHUTDOWN"))
    assert onbatt["ups"] == aux_addr and onbatt["message"].startswith("aux: on battery")
    assert lowbatt["ups"] == aux_addr
    assert shutdown["ups"] == f"{rack_addr},{aux_addr}"
    # At LB, not after the ride-through: the reason says so (no bound on a busy box's time).
    assert shutdown["message"].startswith("rack,aux: shutdown started: the UPS reports low")
    assert [e["ups"] for e in events if e["kind"] == "ONBATT"] == [aux_addr]  # rack stayed OL
    # FSD and shutdown.return went to both UPSes, for each one's secondaries and load
    for port in (rack_port, aux_port):
        texts = [t for p, t in said if p == port]
        assert any("FSD" in t for t in texts), texts
        assert any("shutdown.return" in t for t in texts), texts
    # the notify command heard which UPS changed, and every UPS for the plan's own events
    lines = notified(tmp_path)
    assert "ONBATT aux" in lines and "LOWBATT aux" in lines and "SHUTDOWN rack,aux" in lines
    assert "ONBATT rack" not in lines and "LOWBATT rack" not in lines  # rack stayed on mains


def test_a_short_cut_on_the_second_ups_is_ridden_out(tmp_path):
    rack_port, aux_port = free_port(), free_port()
    rec, log = recorder(tmp_path)
    rack = ups_scenario(tmp_path, "rack", ON_LINE)
    aux = ups_scenario(
        tmp_path,
        "aux",
        ON_LINE
        + """
        [[step]]
        at = 0.5
        status = "OB DISCHRG"
        charge = 90
        [[step]]
        at = 2
        status = "OL CHRG"
        """,
    )
    # A ride-through far longer than the 1.5 s cut, however late the watch sees mains return.
    plan = two_ups_plan(
        tmp_path, rack_port, aux_port, rec, policy="ride_through = 60\nmains_stable = 1"
    )
    events = asyncio.run(
        rehearse_many(
            plan,
            [(rack, rack_port), (aux, aux_port)],
            lambda ev: "ridden-out" in kinds(ev),
            timeout=60,
        )
    )
    aux_addr = f"aux@127.0.0.1:{aux_port}"
    assert [(e["kind"], e["ups"]) for e in events if e["kind"] in ("ONBATT", "ONLINE")] == [
        ("ONBATT", aux_addr),
        ("ONLINE", aux_addr),
    ]
    assert "riding-through" in kinds(events)
    assert "SHUTDOWN" not in kinds(events) and calls(log) == []


def test_a_login_refused_by_either_ups_stops_the_watch_naming_it(tmp_path):
    rack_port, aux_port = free_port(), free_port()
    rec, _ = recorder(tmp_path)
    rack = ups_scenario(tmp_path, "rack", ON_LINE)
    aux = ups_scenario(tmp_path, "aux", ON_LINE)
    plan = two_ups_plan(tmp_path, rack_port, aux_port, rec, policy="", aux_user="intruder")
    with pytest.raises(PowerError, match=f"aux@127.0.0.1:{aux_port} refused the login"):
        asyncio.run(
            rehearse_many(plan, [(rack, rack_port), (aux, aux_port)], lambda ev: False, timeout=60)
        )


def test_ask_ups_reads_every_ups_and_takes_the_shortest_runtime(tmp_path):
    from motte.power import Simulator, load_plan, load_scenario, ups_runtime

    rack_port, aux_port = free_port(), free_port()
    rec, _ = recorder(tmp_path)
    rack = ups_scenario(tmp_path, "rack", ON_LINE)
    aux = ups_scenario(tmp_path, "aux", ON_LINE.replace("runtime = 1800", "runtime = 700"))
    plan = load_plan(two_ups_plan(tmp_path, rack_port, aux_port, rec, policy=""))

    async def main() -> float:
        sims = [
            Simulator(load_scenario(rack), port=rack_port),
            Simulator(load_scenario(aux), port=aux_port),
        ]
        for sim in sims:
            await sim.start()
        tasks = [asyncio.create_task(sim.run()) for sim in sims]
        try:
            return await ups_runtime(plan.upses)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    assert asyncio.run(main()) == 700


def test_the_wait_for_secondaries_counts_logins_on_every_ups(tmp_path):
    from motte.power.nut import NutClient, NutConnectionError

    rack_port, aux_port = free_port(), free_port()
    rec, log = recorder(tmp_path)
    rack = ups_scenario(tmp_path, "rack", ON_LINE + '[[step]]\nat = 1\nstatus = "OB LB"\n')
    aux = ups_scenario(tmp_path, "aux", ON_LINE)
    plan = two_ups_plan(
        tmp_path, rack_port, aux_port, rec, policy="ride_through = 30\nsecondaries_wait = 1.5"
    )

    async def main() -> list[dict]:
        secondary: list[NutClient] = []

        async def follow_aux() -> None:  # a NUT secondary of aux only, never logging out
            deadline = time.monotonic() + 60
            while True:  # as soon as the simulator listens (it starts with the rehearsal)
                try:
                    client = await NutClient.connect("127.0.0.1", aux_port)
                    break
                except NutConnectionError:
                    assert time.monotonic() < deadline, "the aux simulator never listened"
                    await asyncio.sleep(0.01)
            await client.authenticate("observer", "pw")
            await client.login("aux")
            secondary.append(client)

        follower = asyncio.create_task(follow_aux())
        try:
            return await rehearse_many(
                plan, [(rack, rack_port), (aux, aux_port)], lambda ev: "down" in kinds(ev)
            )
        finally:
            await follower
            for client in secondary:
                await client.close()

    events = asyncio.run(main())
    waited = next(
        e for e in events if e["kind"] == "step-done" and e["data"]["step"] == "secondaries"
    )
    assert waited["message"] == "secondaries timed out: 1 secondaries still logged in"
    assert calls(log)[-1][1:] == ("pi", "poweroff")  # the battery does not wait for them


def test_a_cut_is_acted_on_while_a_ups_last_seen_on_mains_is_unreachable(tmp_path):
    """rack's server goes away while on mains (a dead switch, say): it is assumed on mains,
    as upsmon assumes, and aux's cut still shuts the plan down without waiting for rack."""
    rack_port, aux_port = free_port(), free_port()
    rec, log = recorder(tmp_path)
    rack = ups_scenario(tmp_path, "rack", ON_LINE + "\n[[step]]\nat = 0.5\noffline = true\n")
    aux = ups_scenario(
        tmp_path,
        "aux",
        ON_LINE
        + """
        [[step]]
        at = 1.5
        status = "OB DISCHRG LB"
        charge = 20
        runtime = 240
        """,
    )
    plan = two_ups_plan(tmp_path, rack_port, aux_port, rec, policy="ride_through = 30")
    events = asyncio.run(
        rehearse_many(plan, [(rack, rack_port), (aux, aux_port)], lambda ev: "down" in kinds(ev))
    )
    rack_addr = f"rack@127.0.0.1:{rack_port}"
    commbad, shutdown = first(events, "COMMBAD"), first(events, "SHUTDOWN")
    assert commbad["ups"] == rack_addr and commbad["ts"] < shutdown["ts"]
    assert not [e for e in events if e["kind"] == "COMMOK"]  # rack never came back
    assert "low" in shutdown["message"]
    assert [host for _, host, _ in calls(log)] == ["app", "app", "nas", "nas", "pi"]
