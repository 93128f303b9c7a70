"""Simulator scenarios: loading, and what the UPS says at each moment."""

import pytest

from motte.power import ScenarioError, load_scenario
from motte.power._scenario import script_at
from motte.power._simulator import SimulatedUps
from tests.power.rig import scenario, write


def test_steps_carry_over_and_ramps_move_linearly(tmp_path):
    sc = load_scenario(
        scenario(
            tmp_path,
            """
        [variables]
        "ups.load" = 35
        [[step]]
        at = 0
        status = "OL"
        charge = 100
        runtime = 1000
        [[step]]
        at = 10
        status = "OB DISCHRG"
        variables = { "input.voltage" = 0 }
        [[step]]
        at = 20
        charge = 50
        runtime = 400
        ramp = true
        [[step]]
        at = 30
        stale = true
        """,
        )
    )
    assert sc.ups == "rack" and sc.length == 30
    assert set(sc.users) == {"motte", "observer"}
    assert sc.users["motte"].may("FSD") and not sc.users["observer"].may("FSD")
    assert sc.users["observer"].may("LOGIN") and not sc.users["observer"].may("MASTER")
    early = script_at(sc, 5)
    assert (early.status, early.numbers, early.step) == ("OL", {"charge": 100, "runtime": 1000}, 0)
    mid = script_at(sc, 15)  # halfway through the ramp from step 1 to step 2
    assert mid.status == "OB DISCHRG"
    assert mid.numbers == {"charge": 75, "runtime": 700}
    assert mid.variables == {"input.voltage": "0"}
    assert script_at(sc, 25).numbers == {"charge": 50, "runtime": 400}
    assert script_at(sc, 31).stale and not script_at(sc, 29).stale


def test_the_simulated_ups_shows_fsd_and_writes_on_top_of_the_script(tmp_path):
    sc = load_scenario(
        scenario(
            tmp_path,
            """
        writable = ["battery.charge.low"]
        [[step]]
        at = 0
        status = "OB"
        charge = 80
        [[step]]
        at = 10
        variables = { "battery.charge.low" = 30 }
        """,
        )
    )
    ups = SimulatedUps(sc, start=100.0)
    assert ups.variables(101)["ups.status"] == "OB"
    ups.fsd = True
    assert ups.variables(101)["ups.status"] == "FSD OB"
    ups.set_var("battery.charge.low", "25", 102)
    assert ups.variables(103)["battery.charge.low"] == "25"  # a client's SET holds ...
    assert ups.variables(111)["battery.charge.low"] == "30"  # ... until a later step sets it


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[step]]\nat = 0\n", "step\\[0\\].status: the first step must set a status"),
        ('[[step]]\nat = 5\nstatus = "OL"\n[[step]]\nat = 1\n', "goes back in time"),
        ('[[step]]\nat = 0\nstatus = "OL"\nbogus = 1\n', "step\\[0\\].bogus: unknown key"),
        ('[[step]]\nstatus = "OL"\n', "step\\[0\\].at: is required"),
        ('[[step]]\nat = 0\nstatus = "OL"\ncharge = 101\n', "between 0 and 100"),
        ('[variables]\n"a b" = 1\n[[step]]\nat = 0\nstatus = "OL"\n', "not a NUT name"),
        ('ups = "two words"\n', "ups: UPS name"),
        (
            '[users.x]\nupsmon = "primary"\n[[step]]\nat = 0\nstatus = "OL"\n',
            "users.x.password: is required",
        ),
    ],
)
def test_scenario_errors_name_the_key(tmp_path, text, message):
    with pytest.raises(ScenarioError, match=message):
        load_scenario(write(tmp_path, "s.toml", text))


def test_the_example_scenarios_load():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "examples" / "power"
    for name in ("short-blip.toml", "long-cut.toml"):
        sc = load_scenario(folder / name)
        assert sc.steps[0].status == "OL"
