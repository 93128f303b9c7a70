"""Redundancy: hosts say which UPSes feed them and how much power they need (upsmon's
MINSUPPLIES with power values). The plan, `plan check`'s view of each UPS's loss, and the
coordinator judging each UPS on its own, driven with made-up times."""

import json

import pytest

from motte.power import Coordinator, Phase, PlanError, Progress, UpsReading, check_plan
from motte.power._progress import Cancel, CutPower, Event, RunStep, SetFsd, StepResult
from tests.power.plans import plan

RACK, AUX = "rack@127.0.0.1:3493", "aux@127.0.0.1:3494"

UPSES = """
name = "lab"
[[ups]]
address = "rack@127.0.0.1:3493"
username = "motte"
password_env = "MOTTE_TEST_NUT_PASSWORD"
[[ups]]
address = "aux@127.0.0.1:3494"
username = "motte"
password_env = "MOTTE_TEST_NUT_PASSWORD"
[policy]
ride_through = 10
mains_stable = 5
reserve = 0
restart_charge = 50
secondaries_wait = 4
cut_power = true
[hosts.switch]
never_stop = true
"""

#: nas and the coordinator have two power supplies each, one on each UPS; one is enough.
DUAL = (
    UPSES
    + """
[hosts.pi]
coordinator = true
depends_on = ["switch"]
stop = "true"
stop_time = 5
supplies = ["rack", "aux"]
min_supplies = 1
[hosts.nas]
depends_on = ["switch"]
stop = "true"
stop_time = 20
start = "true"
supplies = ["rack", "aux"]
min_supplies = 1
"""
)

#: app has one power supply, on aux; web depends on app (rack feeds it); nas is dual-fed;
#: the coordinator hangs on rack alone.
MIXED = (
    UPSES
    + """
[hosts.pi]
coordinator = true
stop = "true"
stop_time = 5
supplies = ["rack"]
[hosts.nas]
stop = "true"
stop_time = 20
start = "true"
supplies = { rack = 1, aux = 1 }
min_supplies = 1
[hosts.app]
depends_on = ["nas"]
stop = "true"
stop_time = 10
start = "true"
supplies = ["aux"]
[hosts.web]
depends_on = ["app"]
stop = "true"
stop_time = 10
start = "true"
supplies = ["rack"]
[hosts.db]
stop = "true"
stop_time = 10
start = "true"
supplies = ["rack"]
"""
)


class Drive:
    """Feeds a coordinator each UPS's readings and remembers what it asked for."""

    def __init__(self, p, progress=None):
        self.c = Coordinator(p, progress)
        self.actions = []
        self.pending = {}

    def _take(self, actions):
        self.actions += actions
        for a in actions:
            if isinstance(a, Cancel):
                self.pending.pop(a.key, None)
            elif not isinstance(a, Event):
                self.pending[a.key] = a
        return actions

    def see(self, ups, status, t, charge=100.0, runtime=1000.0):
        reading = UpsReading(tuple(status.split()), charge, runtime)
        return self._take(self.c.observe_ups(ups, reading, t))

    def both(self, status, t, **kw):
        return self.see(RACK, status, t, **kw) + self.see(AUX, status, t, **kw)

    def lost(self, ups, t):
        return self._take(self.c.ups_lost(ups, "connection refused", t))

    def tick(self, t):
        return self._take(self.c.tick(t))

    def finish_all(self, t):
        """Every pending step succeeds, and whatever follows it, until nothing is pending."""
        while self.pending:
            key = next(iter(self.pending))
            a = self.pending.pop(key)
            self._take(self.c.completed(StepResult(key, a.seq, True, ""), t))

    def events(self, kind):
        return [a for a in self.actions if isinstance(a, Event) and a.kind == kind]

    def kinds(self):
        return [a.kind for a in self.actions if isinstance(a, Event)]

    def stopped(self):
        """Hosts asked to stop, in order."""
        return [a.host for a in self.actions if isinstance(a, RunStep) and a.step == "stop"]

    def of(self, kind):
        return [a for a in self.actions if isinstance(a, kind)]

    @property
    def phase(self):
        return self.c.p.phase

    def state(self, name):
        return self.c.p.hosts[name].state.value


# -- the plan --------------------------------------------------------------------------------


def test_supplies_name_upses_by_name_or_address_with_power_values(tmp_path):
    p = plan(tmp_path, MIXED)
    assert p.redundant
    assert p.feeds("nas") == ({RACK: 1, AUX: 1}, 1)
    assert p.feeds("app") == ({AUX: 1}, 1)
    assert p.powered("nas", {AUX}) and not p.powered("app", {AUX})
    assert p.feeds("switch") == ({RACK: 1, AUX: 1}, 2)  # no supplies: every UPS, all needed
    by_address = MIXED.replace('supplies = ["aux"]', 'supplies = ["aux@127.0.0.1:3494"]')
    assert plan(tmp_path, by_address).feeds("app") == ({AUX: 1}, 1)


def test_without_min_supplies_every_supply_is_needed(tmp_path):
    p = plan(tmp_path, MIXED.replace("min_supplies = 1\n", ""))
    assert p.feeds("nas") == ({RACK: 1, AUX: 1}, 2)
    assert not p.powered("nas", {AUX})


def test_a_plan_without_supplies_is_not_redundant(tmp_path):
    assert not plan(tmp_path, UPSES + '[hosts.pi]\ncoordinator = true\nstop = "true"\n').redundant


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('supplies = ["aux"]', 'supplies = ["nope"]', "hosts.app.supplies: nope: not a UPS"),
        ('supplies = ["aux"]', 'supplies = ["aux@10.9.9.9"]', "aux@10.9.9.9: not a UPS"),
        ('supplies = ["aux"]', "supplies = []", "hosts.app.supplies: names no UPS"),
        ('supplies = ["aux"]', "supplies = 3", "must be a list of UPS names"),
        ('supplies = ["aux"]', 'supplies = ["aux", "aux@127.0.0.1:3494"]', "the same UPS as aux"),
        ("rack = 1, aux = 1", "rack = 1, aux = 0", "aux: the power value must be a whole"),
        ("rack = 1, aux = 1", "rack = 1, aux = 1.5", "aux: the power value must be a whole"),
        ("rack = 1, aux = 1", 'rack = 1, aux = "1"', "aux: the power value must be a whole"),
        ("min_supplies = 1", "min_supplies = 3", "needs 3 but its supplies give at most 2"),
        ("min_supplies = 1", "min_supplies = 0", "min_supplies: must be a whole number"),
        ('supplies = ["aux"]', "min_supplies = 1", "min_supplies: needs supplies"),
        (
            "[hosts.switch]\nnever_stop = true",
            '[hosts.switch]\nnever_stop = true\nsupplies = ["rack"]',
            "hosts.switch.supplies: a never_stop host is never stopped",
        ),
    ],
)
def test_bad_supplies_are_refused_naming_host_and_line(tmp_path, old, new, message):
    with pytest.raises(PlanError) as e:
        plan(tmp_path, MIXED, **{old: new})
    assert message in " ".join(e.value.problems or (e.value.message,))
    assert "plan.toml:" in str(e.value)


def test_an_ambiguous_ups_name_must_be_given_as_an_address(tmp_path):
    text = MIXED.replace('address = "aux@127.0.0.1:3494"', 'address = "rack@127.0.0.1:3494"')
    text = text.replace('supplies = ["aux"]', 'supplies = ["rack"]')
    with pytest.raises(PlanError, match="several watched UPSes are named rack"):
        plan(tmp_path, text)


def test_every_supply_problem_is_listed_at_once(tmp_path):
    text = MIXED.replace('supplies = ["aux"]', 'supplies = ["nope"]').replace(
        "min_supplies = 1", "min_supplies = 5"
    )
    with pytest.raises(PlanError) as e:
        plan(tmp_path, text)
    assert len(e.value.problems) == 2


def test_plan_check_shows_what_losing_each_ups_does(tmp_path):
    check = check_plan(plan(tmp_path, MIXED))
    assert check.ok, check.errors
    by_ups = {loss.upses: loss for loss in check.losses}
    aux = by_ups[(AUX,)]
    # app loses its only supply; web depends on app, so it stops first; the rest run on
    assert aux.stages == (("web",), ("app",))
    assert not aux.coordinator_stops
    assert aux.running == ("db", "nas", "pi")
    assert aux.targets == (AUX,)  # FSD and shutdown.return: aux only
    whats = [e.what for e in aux.timeline]
    assert "set FSD on aux: NUT secondaries shut down" in whats
    assert "ask aux for shutdown.return" in whats
    assert "stop the coordinator" not in whats
    rack = by_ups[(RACK,)]
    assert rack.stages == (("db", "web"),)
    assert rack.coordinator_stops and rack.targets == (RACK,)
    assert rack.running == ("app", "nas")
    assert "stop the coordinator" in [e.what for e in rack.timeline]
    # the full timeline (every UPS lost) is still there, for the battery checks
    assert check.stages == (("db", "web"), ("app",), ("nas",))


def test_plan_check_warns_about_a_ups_that_feeds_nothing(tmp_path):
    text = MIXED.replace('supplies = ["aux"]', 'supplies = ["rack"]').replace(
        "supplies = { rack = 1, aux = 1 }\nmin_supplies = 1", 'supplies = ["rack"]'
    )
    check = check_plan(plan(tmp_path, text))
    assert any("aux@127.0.0.1:3494 feeds no host" in w for w in check.warnings)
    lost_aux = next(loss for loss in check.losses if loss.upses == (AUX,))
    assert lost_aux.stops == () and lost_aux.targets == ()


# -- the coordinator -------------------------------------------------------------------------


def test_one_ups_of_a_dual_fed_host_lost_stops_nothing(tmp_path):
    d = Drive(plan(tmp_path, DUAL))
    d.both("OL", 0)
    d.see(AUX, "OB DISCHRG LB", 1, charge=10)
    assert d.stopped() == [] and d.of(SetFsd) == [] and d.of(CutPower) == []
    assert "SHUTDOWN" not in d.kinds()
    (told,) = d.events("supply-lost")
    assert told.message.startswith("aux: lost (low battery (OB LB))")
    assert "nas, pi keep running" in told.message
    d.see(AUX, "OB DISCHRG LB", 2, charge=9)  # said once, not at every reading
    assert len(d.events("supply-lost")) == 1
    # aux comes back and holds: the cut was ridden out, nothing was ever stopped
    d.see(AUX, "OL CHRG", 3)
    d.tick(8)
    assert d.phase is Phase.ONLINE
    assert d.stopped() == []


def test_both_upses_of_a_dual_fed_host_lost_stop_it_and_the_coordinator_last(tmp_path):
    d = Drive(plan(tmp_path, DUAL))
    d.both("OL", 0)
    d.see(AUX, "OB DISCHRG LB", 1, charge=10)
    assert d.stopped() == []
    d.see(RACK, "OB DISCHRG", 2)  # on battery, riding through: rack still counts
    assert d.stopped() == []
    d.tick(12)  # rack's own ride-through is over: nas and pi have no supply left
    assert d.stopped() == ["nas"]
    (shutdown,) = d.events("SHUTDOWN")
    assert shutdown.data["upses"] == [RACK, AUX] or shutdown.data["upses"] == [AUX, RACK]
    assert sorted(shutdown.data["stops"]) == ["nas", "pi"]
    d.finish_all(13)
    assert d.stopped() == ["nas", "pi"]
    (fsd,) = d.of(SetFsd)
    (cut,) = d.of(CutPower)
    assert set(fsd.upses) == {RACK, AUX} and set(cut.upses) == {RACK, AUX}
    assert d.phase is Phase.DOWN and d.state("pi") == "down"


def test_a_host_on_the_lost_ups_stops_while_the_others_keep_running(tmp_path):
    d = Drive(plan(tmp_path, MIXED))
    d.both("OL", 0)
    d.see(AUX, "OB DISCHRG", 1)
    assert d.phase is Phase.ON_BATTERY
    assert d.c.next_wakeup() == 11  # aux's ride-through
    d.tick(11)
    (shutdown,) = d.events("SHUTDOWN")
    assert shutdown.message.startswith("aux: shutdown started: aux: on battery for 10.0s")
    assert "keeps running: db, nas" in shutdown.message
    d.finish_all(12)
    # web depends on app, so it stops first although rack still feeds it
    assert d.stopped() == ["web", "app"]
    assert [a.upses for a in d.of(SetFsd)] == [(AUX,)]
    assert [a.upses for a in d.of(CutPower)] == [(AUX,)]
    assert [(a.host, a.step) for a in d.of(RunStep) if a.host == "pi"] == []  # pi stays up
    assert d.phase is Phase.DOWN
    assert {n: d.state(n) for n in ("pi", "nas", "db", "app", "web")} == {
        "pi": "up",
        "nas": "up",
        "db": "up",
        "app": "down",
        "web": "down",
    }
    assert d.events("down")[0].message.endswith("pi keeps watching")


def test_stopped_hosts_start_again_once_their_ups_is_back_and_others_are_left_alone(tmp_path):
    d = Drive(plan(tmp_path, MIXED))
    d.both("OL", 0)
    d.see(AUX, "OB DISCHRG LB", 1, charge=10)
    d.finish_all(2)
    assert d.stopped() == ["web", "app"]
    d.see(RACK, "OL", 3)  # rack was never the problem: nothing restarts for it
    assert not d.events("recovering")
    d.see(AUX, "OL CHRG", 30, charge=80)
    assert d.c.next_wakeup() == 35
    d.tick(35)
    assert d.events("recovering")
    d.finish_all(36)
    starts = [a.host for a in d.of(RunStep) if a.step == "start"]
    assert starts == ["app", "web"]  # dependencies first
    assert d.phase is Phase.ONLINE and d.c.p.lost == {}


def test_a_second_loss_mid_shutdown_adds_its_hosts_and_then_the_coordinator(tmp_path):
    d = Drive(plan(tmp_path, MIXED))
    d.both("OL", 0)
    d.see(AUX, "OB DISCHRG LB", 1, charge=10)
    assert d.stopped() == ["web"]  # stage 1 of aux's shutdown is in flight
    d.see(RACK, "OB DISCHRG LB", 2, charge=10)
    (widened,) = d.events("shutdown-widened")
    assert widened.data["hosts"] == ["db", "nas", "pi"]
    d.finish_all(3)
    # db joins the first stage not yet run (it needs nothing), nas goes after app, pi last
    assert d.stopped() == ["web", "db", "app", "nas", "pi"]
    (cut,) = d.of(CutPower)
    assert set(cut.upses) == {RACK, AUX}
    assert d.state("pi") == "down"


def test_a_later_loss_after_a_partial_shutdown_starts_another(tmp_path):
    d = Drive(plan(tmp_path, MIXED))
    d.both("OL", 0)
    d.see(AUX, "OB DISCHRG LB", 1, charge=10)
    d.finish_all(2)
    assert d.phase is Phase.DOWN
    d.see(RACK, "OB DISCHRG", 3)
    d.tick(13)  # rack's ride-through
    assert len(d.events("SHUTDOWN")) == 2
    d.finish_all(14)
    assert d.stopped() == ["web", "app", "db", "nas", "pi"]
    # aux was asked already: only rack now (aux is still lost, so still waited for)
    assert [a.upses for a in d.of(CutPower)] == [(AUX,), (RACK,)]
    assert d.c.p.cut_upses == [AUX, RACK] and set(d.c.p.lost) == {AUX, RACK}


def test_a_restarted_coordinator_decides_nothing_from_saved_readings(tmp_path):
    p = plan(tmp_path, MIXED)
    d = Drive(p)
    d.both("OL", 0)
    d.see(AUX, "OB DISCHRG", 1)
    saved = json.loads(json.dumps(d.c.p.to_dict()))
    d2 = Drive(p, Progress.from_dict(saved, "state"))
    d2._take(d2.c.resume(100))  # far past aux's ride-through, by the saved reading
    assert d2.stopped() == []
    d2.see(RACK, "OL", 101)
    assert d2.stopped() == []  # aux not read again yet
    d2.see(AUX, "OL", 102)  # mains came back while the watch was down
    assert d2.stopped() == []
    d2.tick(107)
    assert d2.phase is Phase.ONLINE


def test_an_unreachable_ups_last_seen_on_battery_is_lost_after_dead_after(tmp_path):
    d = Drive(plan(tmp_path, MIXED))
    d.both("OL", 0)
    d.see(AUX, "OB DISCHRG", 1)
    d.lost(AUX, 2)
    assert d.c.next_wakeup() == 11  # ride-through (11) before dead_after (2 + 15)
    d.tick(10.9)
    assert d.stopped() == []
    d.tick(17)
    assert d.stopped() == ["web"]
    assert "unreachable for 15s" in d.events("SHUTDOWN")[0].message


def test_a_ups_never_seen_is_assumed_to_supply_power(tmp_path):
    d = Drive(plan(tmp_path, MIXED))
    d.see(RACK, "OL", 0)
    d.lost(AUX, 0)
    d.tick(1000)
    assert d.stopped() == [] and d.c.p.fresh


def test_a_plan_without_supplies_still_shuts_everything_down_for_one_ups(tmp_path):
    text = MIXED.replace('supplies = ["aux"]\n', "").replace('supplies = ["rack"]\n', "")
    text = text.replace("supplies = { rack = 1, aux = 1 }\nmin_supplies = 1\n", "")
    p = plan(tmp_path, text)
    assert not p.redundant
    c = Coordinator(p)
    c.observe(UpsReading(("OB", "LB"), 10, 100), 0)
    assert c.p.phase is Phase.SHUTTING_DOWN
    assert c.p.stages == [["db", "web"], ["app"], ["nas"]]
