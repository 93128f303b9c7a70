"""A plan that watches several UPSes: `[[ups]]`, and the one view the coordinator is fed."""

import re

import pytest

from motte.power import Coordinator, PlanError, UpsReading, check_plan
from motte.power._combine import Supplies, combine
from motte.power.nut import UpsAddress
from tests.power.plans import BASE, plan

UPS_TABLE = """[ups]
address = "rack@127.0.0.1:3493"
username = "motte"
password_env = "MOTTE_TEST_NUT_PASSWORD"
"""

TWO = """[[ups]]
address = "rack@127.0.0.1:3493"
username = "motte"
password_env = "MOTTE_TEST_NUT_PASSWORD"

[[ups]]
address = "aux@10.0.0.2"
"""


def two(tmp_path, second: str = 'address = "aux@10.0.0.2"\n', policy: str = ""):
    text = BASE.replace(UPS_TABLE, TWO.replace('address = "aux@10.0.0.2"\n', second))
    return plan(tmp_path, text.replace("[policy]\n", "[policy]\n" + policy))


def r(status: str, charge=None, runtime=None, load=None) -> UpsReading:
    return UpsReading(tuple(status.split()), charge, runtime, load)


# -- the plan ----------------------------------------------------------------------------------


def test_one_ups_table_still_gives_one_ups(tmp_path):
    assert UPS_TABLE in BASE
    p = plan(tmp_path)
    assert [str(u.address) for u in p.upses] == ["rack@127.0.0.1:3493"]


def test_an_array_of_ups_tables_gives_every_ups_in_order(tmp_path):
    p = two(tmp_path)
    assert [str(u.address) for u in p.upses] == ["rack@127.0.0.1:3493", "aux@10.0.0.2:3493"]
    assert p.upses[0].username == "motte" and p.upses[1].username is None
    assert check_plan(p).ok


def test_the_same_address_twice_is_refused_naming_its_line(tmp_path):
    # aux@10.0.0.2 and aux@10.0.0.2:3493 are the same UPS: the default port is 3493
    with pytest.raises(PlanError) as e:
        two(tmp_path, 'address = "rack@127.0.0.1"\n')
    lines = (tmp_path / "plan.toml").read_text().splitlines()
    line = lines.index('address = "rack@127.0.0.1"') + 1
    assert line > 5  # the second [[ups]], not the first
    assert f"plan.toml:{line}: ups[1].address: " in str(e.value)
    assert "rack@127.0.0.1:3493 is already watched by ups[0]" in str(e.value)


@pytest.mark.parametrize(
    ("second", "message"),
    [
        ('username = "x"\n', "ups[1].address: is required"),
        ('address = "aux@10.0.0.2"\nvolts = 230\n', "ups[1].volts: unknown key"),
        ('address = "aux@10.0.0.2"\npassword = "x"\n', "ups[1].password: a password may not"),
        ('address = "aux@"\n', "ups[1].address: "),
        ('address = "aux@10.0.0.2"\nusername = "m"\n', "ups[1].username: needs password_file"),
    ],
)
def test_errors_in_any_ups_table_name_its_index_and_line(tmp_path, second, message):
    with pytest.raises(PlanError, match=r"plan\.toml:\d+: " + re.escape(message)):
        two(tmp_path, second)


def test_an_empty_ups_array_and_a_missing_ups_are_refused(tmp_path):
    with pytest.raises(PlanError, match="ups: lists no UPS"):
        plan(tmp_path, BASE.replace(UPS_TABLE, "ups = []\n"))
    with pytest.raises(PlanError, match="ups: is required"):
        plan(tmp_path, BASE.replace(UPS_TABLE, ""))


def test_cut_power_needs_a_login_on_every_ups(tmp_path):
    result = check_plan(two(tmp_path, policy="cut_power = true\n"))
    assert any("ups[1].username" in e and "aux@10.0.0.2:3493" in e for e in result.errors)
    assert any("ups[1].username: no NUT login" in w for w in result.warnings)


# -- the combination rule ----------------------------------------------------------------------


def test_one_reading_is_passed_through_unchanged():
    one = r("OL CHRG", 90, 1200, 30)
    assert combine([one]) is one


@pytest.mark.parametrize(
    ("a", "b", "status"),
    [
        ("OL", "OL", ("OL",)),
        ("OL CHRG", "OB DISCHRG", ("OB", "DISCHRG")),
        ("OB DISCHRG", "OL", ("OB", "DISCHRG")),
        ("OL", "OB LB", ("OB", "LB")),
        ("OL LB", "OB", ("LB", "OB")),
        ("OL", "FSD OL", ("OL", "FSD")),
        ("OL", "WAIT", ("OL", "WAIT")),
        ("OL", "", ("OL", "WAIT")),
    ],
)
def test_status_is_on_battery_low_or_forced_when_any_ups_is(a, b, status):
    combined = combine([r(a), r(b)])
    assert combined.status == status
    assert combined.on_battery == ("OB" in (a + b))
    assert combined.critical == (("OB" in a + b and "LB" in a + b) or "FSD" in a + b)


def test_numbers_are_the_worst_of_those_that_report_one():
    combined = combine([r("OL", 90, None, 20), r("OB", 60, 700, 45), r("OL", None, 1500, None)])
    assert (combined.charge, combined.runtime, combined.load) == (60, 700, 45)
    assert combine([r("OL"), r("OL")]).runtime is None


A, B = UpsAddress("rack", "h1"), UpsAddress("aux", "h2")
SA, SB = str(A), str(B)


def test_nothing_is_fed_until_every_ups_was_read():
    s = Supplies([A, B])
    first = s.observe(SA, r("OB", 80, 900), 1.0)
    assert first.reading is None and first.lost is None
    assert first.events == [("ONBATT", "rack: on battery: OB, charge 80%, runtime 900s")]
    second = s.observe(SB, r("OL", 100, 2000), 2.0)
    assert second.reading == r("OB", 80, 900)
    assert second.events == []


def test_a_ups_lost_on_line_is_assumed_on_line_and_the_others_still_count():
    """upsmon's rule for a dead UPS last seen on line: a cut on another UPS must be acted on
    while the lost one (behind a dead switch, say) is away."""
    s = Supplies([A, B])
    s.observe(SA, r("OL", 100), 1.0)
    s.observe(SB, r("OL", 100), 1.0)
    lost = s.comm_lost(SB, "connection refused")
    assert lost.lost is None  # the coordinator keeps its view
    assert lost.events == [("COMMBAD", "aux: UPS unreachable: connection refused")]
    again = s.comm_lost(SB, "connection refused")
    assert again.lost is None and again.events == []  # one COMMBAD per loss
    meanwhile = s.observe(SA, r("OB", 90), 2.0)
    assert meanwhile.reading == r("OB", 90) and [k for k, _ in meanwhile.events] == ["ONBATT"]
    assert [u["comm_ok"] for u in s.to_list()] == [True, False]
    back = s.observe(SB, r("OL", 100), 3.0)
    assert back.events == [("COMMOK", "aux: UPS reachable again: OL, charge 100%")]
    assert back.reading == r("OB", 90)
    assert [u["comm_ok"] for u in s.to_list()] == [True, True]


def test_a_ups_lost_on_battery_is_a_lost_link_until_it_answers_again():
    """Last seen on battery: the coordinator hears the loss, and its dead-UPS rule runs."""
    s = Supplies([A, B])
    s.observe(SA, r("OL", 100), 1.0)
    s.observe(SB, r("OB", 80), 1.0)
    lost = s.comm_lost(SB, "connection refused")
    assert lost.lost == "connection refused" and lost.reading is None
    assert s.comm_lost(SB, "connection refused").lost == "connection refused"
    meanwhile = s.observe(SA, r("OL", 100), 2.0)
    assert meanwhile.reading is None  # the view waits for the dead one
    back = s.observe(SB, r("OL", 100), 3.0)
    assert back.reading == r("OL", 100)


def test_a_ups_never_read_is_assumed_supplying_and_the_others_are_still_acted_on():
    """upsmon's rule: a UPS that is not critical supplies power. A wrong address or a upsd
    still starting never shuts the lab down, and never blocks a cut on another UPS."""
    s = Supplies([A, B])
    assert s.observe(SA, r("OL", 100), 1.0).reading is None  # aux not heard from yet: wait
    lost = s.comm_lost(SB, "connection refused", 1.5)
    assert lost.lost is None and lost.reading == r("OL", 100)
    assert s.observe(SA, r("OB LB", 30), 2.0).reading == r("OB LB", 30)  # acted on at once


def test_nocomm_once_a_ups_has_been_unreachable_nocomm_after_seconds():
    s = Supplies([A, B], nocomm_after=300)
    s.observe(SA, r("OL", 100), 0.0)
    s.comm_lost(SB, "connection refused", 10.0)
    assert s.next_wakeup() == 310
    assert s.tick(309.9) == []
    [(address, kind, message)] = s.tick(310)
    assert (address, kind) == (SB, "NOCOMM") and "unreachable for 300s" in message
    assert s.tick(400) == [] and s.next_wakeup() is None  # once per outage
    assert [k for k, _ in s.observe(SB, r("OL"), 401).events] == ["COMMOK"]


def test_a_reading_from_an_earlier_run_feeds_only_the_dead_ups_rule():
    s = Supplies([A, B])
    s.seed(SB, r("OB", 60), 5.0)  # what the watch saved before it was killed
    assert s.observe(SA, r("OL", 100), 10.0).reading is None  # stale: not in the view
    lost = s.comm_lost(SB, "connection refused", 11.0)
    assert lost.lost == "connection refused"  # last seen on battery: the dead-UPS rule runs
    s2 = Supplies([A, B])
    s2.seed(SB, r("OL", 100), 5.0)
    s2.observe(SA, r("OB", 90), 10.0)
    assert s2.comm_lost(SB, "refused", 11.0).reading == r("OB", 90)  # assumed supplying


def test_one_ups_lost_on_line_is_still_a_lost_link():
    s = Supplies([A])
    s.observe(SA, r("OL", 100), 1.0)
    assert s.comm_lost(SA, "gone").lost == "gone"  # one UPS: as before the several-UPS change


def test_each_ups_raises_its_own_events_and_a_waiting_one_says_nothing():
    s = Supplies([A, B])
    s.observe(SA, r("OB"), 1.0)
    s.observe(SB, r("OB"), 1.0)
    assert s.observe(SB, r("WAIT"), 2.0).reading == r("OB")  # last known reading kept
    assert [k for k, _ in s.observe(SB, r("OB LB"), 3.0).events] == ["LOWBATT"]
    assert [k for k, _ in s.observe(SA, r("OL"), 4.0).events] == ["ONLINE"]
    assert s.combined() == r("OB LB")


# -- the coordinator, fed the combined view ----------------------------------------------------


def test_with_several_upses_the_coordinator_names_them_all_and_leaves_ups_events_to_the_watch(
    tmp_path,
):
    p = two(tmp_path, policy="cut_power = false\n")
    c = Coordinator(p)
    assert c.ups_events is False
    s = Supplies([u.address for u in p.upses])
    s.observe(str(p.upses[0].address), r("OL", 100, 1800), 0.0)
    actions = c.observe(s.observe(str(p.upses[1].address), r("OB LB", 30, 200), 0.0).reading, 0.0)
    kinds = [a.kind for a in actions if hasattr(a, "kind")]
    assert "ONBATT" not in kinds and "LOWBATT" not in kinds  # the watch says which UPS
    shutdown = next(a for a in actions if getattr(a, "kind", None) == "SHUTDOWN")
    assert shutdown.message.startswith("rack,aux: shutdown started: the UPS reports low battery")


def test_with_one_ups_the_coordinator_still_announces_its_events(tmp_path):
    c = Coordinator(plan(tmp_path))
    assert c.ups_events is True
    kinds = [getattr(a, "kind", None) for a in c.observe(r("OB", 100, 1800), 0.0)]
    assert "ONBATT" in kinds
