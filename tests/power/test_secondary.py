"""Secondary mode's decisions: FSD at once, OB LB after HOSTSYNC, the dead-UPS rule."""

from motte.power import SecondaryCore, UpsReading
from motte.power._secondary import ShutdownNow


def r(status):
    return UpsReading(tuple(status.split()), 50, 500)


def verdicts(out):
    return [e for e in out if isinstance(e, ShutdownNow)]


def test_fsd_from_the_primary_means_go_now():
    core = SecondaryCore(hostsync=15)
    assert verdicts(core.observe(r("OB DISCHRG"), 0)) == []
    (v,) = verdicts(core.observe(r("FSD OB DISCHRG"), 1))
    assert v.reason == "the primary set FSD"
    assert verdicts(core.tick(2)) == []  # decided once


def test_ob_lb_without_fsd_waits_hostsync_for_the_primary():
    core = SecondaryCore(hostsync=15)
    core.observe(r("OB LB"), 10)
    assert core.next_wakeup() == 25
    assert verdicts(core.tick(24.9)) == []
    (v,) = verdicts(core.tick(25))
    assert "no FSD from the primary" in v.reason


def test_a_dead_ups_last_seen_on_battery_is_a_reason_to_go():
    core = SecondaryCore(dead_after=15)
    core.observe(r("OB"), 0)
    out = core.comm_lost(1, "refused")
    assert [e.kind for e in out] == ["COMMBAD"]
    assert verdicts(core.tick(15.9)) == []
    assert verdicts(core.tick(16))


def test_on_mains_nothing_makes_it_go():
    core = SecondaryCore(hostsync=1, dead_after=1)
    core.observe(r("OL"), 0)
    core.comm_lost(1, "refused")
    assert verdicts(core.tick(100)) == []
    core.observe(r("OL LB"), 101)
    assert verdicts(core.tick(200)) == []
