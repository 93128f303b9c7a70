"""The coordinator's state machine, driven with made-up times (no sleeping, no sockets)."""

import json

import pytest

from motte.power import Coordinator, HostState, Phase, Progress, UpsReading
from motte.power._progress import (
    STOPPED,
    Cancel,
    CutPower,
    Event,
    RunStep,
    SetFsd,
    StepResult,
    WaitSecondaries,
)
from tests.power.plans import BASE, plan


class Drive:
    """Feeds a coordinator and remembers what it asked for."""

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

    def see(self, status, t, charge=100.0, runtime=1000.0):
        return self._take(self.c.observe(UpsReading(tuple(status.split()), charge, runtime), t))

    def lost(self, t):
        return self._take(self.c.comm_lost(t, "connection refused"))

    def tick(self, t):
        return self._take(self.c.tick(t))

    def resume(self, t):
        return self._take(self.c.resume(t))

    def finish(self, key, t, ok=True, timed_out=False):
        a = self.pending.pop(key)
        return self._take(self.c.completed(StepResult(key, a.seq, ok, "", timed_out), t))

    def finish_all(self, t, ok=True):
        while self.pending:
            self.finish(next(iter(self.pending)), t, ok)

    def kinds(self, actions=None):
        return [
            a.kind for a in (self.actions if actions is None else actions) if isinstance(a, Event)
        ]

    def steps(self, actions=None):
        return [
            (a.host, a.step)
            for a in (self.actions if actions is None else actions)
            if isinstance(a, RunStep)
        ]

    @property
    def phase(self):
        return self.c.p.phase

    def host(self, name):
        return self.c.p.hosts[name].state


@pytest.fixture
def lab(tmp_path):
    return plan(tmp_path)


def test_a_cut_shorter_than_the_ride_through_is_ridden_out(lab):
    d = Drive(lab)
    d.see("OL", 0)
    d.see("OB DISCHRG", 1)
    assert d.phase is Phase.ON_BATTERY
    assert d.c.next_wakeup() == 11  # the ride-through's end: a timer, not a poll
    d.see("OL CHRG", 4)
    assert d.c.next_wakeup() == 9  # mains must hold 5 s
    assert d.tick(8.9) == []
    d.tick(9)
    assert d.kinds() == ["ONBATT", "riding-through", "ONLINE", "ridden-out"]
    assert d.phase is Phase.ONLINE
    assert d.steps() == []


def test_the_plan_runs_exactly_when_the_ride_through_ends(lab):
    d = Drive(lab)
    d.see("OB", 0)
    assert d.tick(9.99) == []
    out = d.tick(10)
    assert d.kinds(out)[:3] == ["SHUTDOWN", "stage", "step"]
    assert d.steps(out) == [("app", "stop")]
    assert "longer than the 10s ride-through" in out[0].message


def test_flapping_power_does_not_restart_the_ride_through(lab):
    d = Drive(lab)
    for t in (0, 3, 6):  # 2 s on battery, 1 s of mains, again and again
        d.see("OB", t)
        d.see("OL", t + 2)
    d.see("OB", 9)
    out = d.tick(10)
    assert d.steps(out) == [("app", "stop")]  # 10 s after the first cut, not after the last
    assert d.kinds().count("ONBATT") == 4 and d.kinds().count("ONLINE") == 3
    assert "ridden-out" not in d.kinds()


def test_mains_that_holds_ends_the_cut_and_the_next_one_starts_afresh(lab):
    d = Drive(lab)
    d.see("OB", 0)
    d.see("OL", 5)
    d.tick(10)
    d.see("OB", 12)
    assert d.tick(21) == []  # 9 s into the new cut
    assert d.steps(d.tick(22)) == [("app", "stop")]


@pytest.mark.parametrize(
    ("status", "charge", "runtime", "reason"),
    [
        ("OB LB", 90, 900, "low battery (OB LB)"),
        ("FSD OL", 90, 900, "reports FSD"),
        ("OB", 20, 900, None),  # no charge_below in the base plan
        ("OB", 90, 250, "runtime 250s is below 300s"),
    ],
)
def test_critical_states_and_thresholds_act_at_once(lab, status, charge, runtime, reason):
    d = Drive(lab)
    out = d.see(status, 0, charge, runtime)
    if reason is None:
        assert d.steps(out) == []
    else:
        assert d.steps(out) == [("app", "stop")]
        assert reason in next(a.message for a in out if a.kind == "SHUTDOWN")


def test_charge_threshold(tmp_path):
    d = Drive(plan(tmp_path, **{"ride_through = 10": "ride_through = 10\ncharge_below = 40"}))
    assert d.steps(d.see("OB", 0, charge=45)) == []
    assert d.steps(d.see("OB", 1, charge=39)) == [("app", "stop")]
    assert d.steps(d.see("OL LB", 0, charge=5)) == []  # LB while charging is not critical


def test_a_ups_that_dies_while_on_battery_counts_as_low_battery(lab):
    d = Drive(lab, None)
    lab_dead = d.c.plan.policy.dead_after
    d.see("OB", 0)
    d.lost(1)
    assert d.kinds()[-1] == "COMMBAD"
    assert d.c.next_wakeup() == min(10, 1 + lab_dead)
    d2 = Drive(plan_with(lab, ride_through=100))
    d2.see("OB", 0)
    d2.lost(1)
    assert d2.tick(15.9) == []
    out = d2.tick(16)  # dead_after defaults to 15 s, as NUT's DEADTIME
    assert d2.steps(out) == [("app", "stop")]
    assert "dead UPS counts as low battery" in out[0].message


def test_losing_the_ups_while_on_mains_only_notifies(lab):
    d = Drive(lab)
    d.see("OL", 0)
    d.lost(1)
    d.tick(100)
    d.see("OL", 101)
    assert d.kinds() == ["COMMBAD", "COMMOK"]
    assert d.steps() == []


def test_wait_status_decides_nothing(lab):
    d = Drive(lab)
    assert d.see("WAIT", 0) == []
    assert d.see("", 1) == []
    assert d.phase is Phase.ONLINE


def test_ordered_shutdown_drain_stop_confirm_then_fsd_and_the_coordinator(lab):
    d = Drive(lab)
    d.see("OB LB", 0)
    assert d.steps() == [("app", "stop")]  # app has no drain
    d.finish("app:stop", 1)
    assert d.steps()[-1] == ("app", "confirm")
    assert d.host("app") is HostState.CONFIRMING
    d.finish("app:confirm", 2)
    assert d.host("app") is HostState.DOWN
    assert d.steps()[-1] == ("nas", "drain")  # stage 2 only after stage 1 is down
    d.finish("nas:drain", 3)
    d.finish("nas:stop", 4)
    assert d.host("nas") is HostState.DOWN
    assert isinstance(d.pending["fsd"], SetFsd)
    d.finish("fsd", 5)
    assert isinstance(d.pending["secondaries"], WaitSecondaries)
    assert d.pending["secondaries"].deadline == 9  # secondaries_wait = 4
    d.finish("secondaries", 6)
    assert d.steps()[-1] == ("pi", "stop")
    d.finish("self-stop", 7)
    assert d.phase is Phase.DOWN
    assert d.steps() == [
        ("app", "stop"),
        ("app", "confirm"),
        ("nas", "drain"),
        ("nas", "stop"),
        ("pi", "stop"),
    ]
    assert d.host("switch") is HostState.UP


def test_cut_power_comes_after_fsd_and_before_the_coordinator_stops(tmp_path):
    d = Drive(plan(tmp_path, **{"secondaries_wait = 4": "secondaries_wait = 4\ncut_power = true"}))
    d.see("OB LB", 0)
    order = []
    while d.pending:
        key = next(iter(d.pending))
        order.append(key)
        d.finish(key, 1)
    assert order[-4:] == ["fsd", "secondaries", "cut-power", "self-stop"]
    assert any(isinstance(a, CutPower) for a in d.actions)


def test_a_host_that_never_confirms_is_marked_failed_and_the_plan_moves_on(lab):
    d = Drive(lab)
    d.see("OB LB", 0)
    d.finish("app:stop", 1)
    d.finish("app:confirm", 31, ok=False, timed_out=True)
    assert d.host("app") is HostState.FAILED
    assert "never confirmed" in d.c.p.hosts["app"].detail
    assert "host-failed" in d.kinds()
    assert d.steps()[-1] == ("nas", "drain")


def test_a_failed_stop_without_confirm_is_failed_and_a_failed_drain_still_stops(lab):
    d = Drive(lab)
    d.see("OB LB", 0)
    d.finish("app:stop", 1)
    d.finish("app:confirm", 2)
    d.finish("nas:drain", 3, ok=False)
    assert d.steps()[-1] == ("nas", "stop")
    d.finish("nas:stop", 4, ok=False)
    assert d.host("nas") is HostState.FAILED


def test_deadlines_come_from_the_remaining_runtime(lab):
    d = Drive(lab)
    out = d.see("OB LB", 0, runtime=1000)
    assert [a.deadline for a in out if isinstance(a, RunStep)] == [30]  # app's declared 30 s
    d = Drive(lab)
    # 90 s left: less the 10 s reserve, nas's 60 s and the end's 9 s leaves 11 s of app's 30.
    out = d.see("OB LB", 0, runtime=90)
    (step,) = [a for a in out if isinstance(a, RunStep)]
    assert step.deadline == pytest.approx(11)
    assert "deadline-shrunk" in d.kinds(out)
    d.finish("app:stop", 5)
    assert d.pending["app:confirm"].deadline == pytest.approx(11)


def test_mains_returning_mid_shutdown_finishes_the_stage_and_starts_no_new_one(lab):
    d = Drive(lab)
    d.see("OB LB", 0)
    d.see("OL CHRG", 1, charge=30)
    assert d.phase is Phase.PAUSED
    d.finish("app:stop", 2)
    d.finish("app:confirm", 3)
    assert d.host("app") is HostState.DOWN
    assert ("nas", "drain") not in d.steps()  # no new stage
    d.tick(6)
    assert "waiting-charge" in d.kinds()  # mains held 5 s, but the battery is at 30%
    assert d.steps()[-1] == ("app", "confirm")
    out = d.see("OL CHRG", 7, charge=55)
    assert d.steps(out) == [("app", "start")]
    d.finish("app:start", 8)
    d.finish("app:ready", 9)
    assert d.host("app") is HostState.UP
    assert d.host("nas") is HostState.UP  # never stopped, never started
    assert d.phase is Phase.ONLINE
    assert d.kinds()[-1] == "recovered"


def test_power_failing_again_while_paused_continues_the_shutdown(lab):
    d = Drive(lab)
    d.see("OB LB", 0)
    d.see("OL", 1)
    d.finish("app:stop", 2)
    d.finish("app:confirm", 3)
    d.see("OB", 4)
    assert "continued" in d.kinds()
    assert d.steps()[-1] == ("nas", "drain")


def test_recovery_starts_dependencies_first_and_waits_for_ready(lab):
    d = Drive(lab)
    d.see("OB LB", 0)
    d.finish_all(1)
    assert d.phase is Phase.DOWN
    d.see("OL", 10, charge=80)
    d.tick(15)
    assert d.phase is Phase.RECOVERING
    assert d.steps()[-1] == ("nas", "start")
    d.finish("nas:start", 16)  # nas has no ready check: started, not verified
    assert d.host("nas") is HostState.STARTED
    assert d.steps()[-1] == ("app", "start")
    d.finish("app:start", 17)
    assert d.steps()[-1] == ("app", "ready")
    d.finish("app:ready", 40, ok=False, timed_out=True)
    assert d.host("app") is HostState.FAILED
    assert d.phase is Phase.ONLINE


def test_a_new_cut_during_recovery_cancels_the_starts_and_stops_again(lab):
    d = Drive(lab)
    d.see("OB LB", 0)
    d.finish_all(1)
    d.see("OL", 10)
    d.tick(15)
    assert "nas:start" in d.pending
    d.see("OB", 20)
    assert d.phase is Phase.ON_BATTERY
    out = d.see("OB LB", 21)
    assert Cancel("nas:start") in out
    # nas was being started, so it may come up: stop it again; app never left "down".
    assert d.steps(out) == [("nas", "drain")]
    assert d.c.p.stages == [["nas"]]


def test_progress_survives_a_restart_without_repeating_or_forgetting(lab):
    d = Drive(lab)
    d.see("OB LB", 0)
    d.finish("app:stop", 1)
    d.finish("app:confirm", 2)
    d.finish("nas:drain", 3)
    stop = d.pending["nas:stop"]
    saved = json.loads(json.dumps(d.c.p.to_dict()))  # what the watch writes to disk

    again = Drive(lab, Progress.from_dict(saved, "state.json"))
    out = again.resume(10)
    assert again.kinds(out)[0] == "resumed"
    # Only the step in flight is issued again, with its original deadline; app is not touched.
    assert again.steps(out) == [("nas", "stop")]
    assert again.pending["nas:stop"].deadline == stop.deadline
    assert again.pending["nas:stop"].seq != stop.seq
    # A late answer to the old request is ignored.
    assert again.c.completed(StepResult("nas:stop", stop.seq, True), 11) == []
    again.finish("nas:stop", 12)
    assert again.host("app") is HostState.DOWN
    assert again.steps() == [("nas", "stop")]  # nothing else was run again
    assert "fsd" not in again.pending  # the next step waits for a fresh reading ...
    again.see("OB LB", 13)
    assert "fsd" in again.pending  # ... and the shutdown goes on once the UPS says so


def test_a_step_whose_deadline_passed_while_down_counts_as_timed_out(lab):
    d = Drive(lab)
    d.see("OB LB", 0)
    d.finish("app:stop", 1)
    d.finish("app:confirm", 2)
    d.finish("nas:drain", 3)
    saved = json.loads(json.dumps(d.c.p.to_dict()))
    again = Drive(lab, Progress.from_dict(saved, "state.json"))
    again.resume(500)
    assert again.host("nas") is HostState.FAILED
    again.see("OB LB", 501)
    assert "fsd" in again.pending


def test_once_fsd_is_set_mains_returning_does_not_stop_the_shutdown(lab):
    d = Drive(lab)
    d.see("OB LB", 0)
    for key in ("app:stop", "app:confirm", "nas:drain", "nas:stop", "fsd"):
        d.finish(key, 1)
    d.see("FSD OL", 2)
    assert d.phase is Phase.FINAL
    d.finish("secondaries", 3)
    d.finish("self-stop", 4)
    assert d.phase is Phase.DOWN


def test_a_restart_after_the_power_cycle_brings_the_hosts_back(lab):
    d = Drive(lab)
    d.see("OB LB", 0)
    d.finish_all(1)
    saved = json.loads(json.dumps(d.c.p.to_dict()))
    booted = Drive(lab, Progress.from_dict(saved, "state.json"))  # the coordinator rebooted
    booted.resume(100)
    booted.see("OL CHRG", 101, charge=70)
    booted.tick(106)
    assert booted.steps() == [("nas", "start")]


def test_a_lost_runner_result_is_given_up_after_its_deadline(lab):
    d = Drive(lab)
    d.see("OB LB", 0)
    assert d.c.next_wakeup() == 30 + 5
    d.tick(35)
    done = next(a for a in d.actions if isinstance(a, Event) and a.kind == "step-done")
    assert "no result from the runner" in done.message
    assert Cancel("app:stop") in d.actions  # and the runner is told to kill it


def test_a_damaged_state_file_is_a_clear_error():
    from motte.power import PowerError

    with pytest.raises(PowerError, match="state version"):
        Progress.from_dict({"version": 99}, "s.json")
    with pytest.raises(PowerError, match="damaged"):
        Progress.from_dict({"version": 1, "plan": "x"}, "s.json")


def plan_with(p, **policy):
    import dataclasses

    return dataclasses.replace(p, policy=dataclasses.replace(p.policy, **policy))


def test_base_plan_is_what_these_tests_assume():
    assert "ride_through = 10" in BASE and "mains_stable = 5" in BASE


# -- invariants over random histories ------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

STATUSES = ["OL", "OL CHRG", "OB DISCHRG", "OB LB", "FSD OB LB", "OL LB", "WAIT", "OFF OL"]
moves = st.lists(
    st.tuples(
        st.sampled_from(["see", "lost", "tick", "finish", "finish-fail", "restart"]),
        st.floats(min_value=0.05, max_value=8),
        st.sampled_from(STATUSES),
        st.floats(min_value=0, max_value=100),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(history=moves)
def test_no_history_makes_a_spent_timer_or_a_crash(tmp_path_factory, history):
    """Whatever happens, the next timer is in the future, and hosts are never stopped twice."""
    p = plan(tmp_path_factory.mktemp("p"))
    d, now = Drive(p), 0.0
    for move, dt, status, charge in history:
        now += dt
        if move == "see":
            d.see(status, now, charge=charge, runtime=charge * 10)
        elif move == "lost":
            d.lost(now)
        elif move == "tick" or (move.startswith("finish") and not d.pending):
            d.tick(now)
        elif move.startswith("finish"):
            d.finish(next(iter(d.pending)), now, ok=move == "finish")
        elif move == "restart":
            saved = json.loads(json.dumps(d.c.p.to_dict()))
            settled = {n for n, h in d.c.p.hosts.items() if h.state in STOPPED}
            d = Drive(p, Progress.from_dict(saved, "state.json"))
            d.resume(now)
            # A host that was already down or given up on is never drained or stopped again.
            again = {
                a.host
                for a in d.pending.values()
                if isinstance(a, RunStep) and a.step in ("drain", "stop", "confirm")
            }
            assert not again & settled
        wake = d.c.next_wakeup()
        assert wake is None or wake > now, (d.phase, wake, now)
        # Only one step per host is ever in flight.
        hosts = [a.host for a in d.pending.values() if isinstance(a, RunStep)]
        assert len(hosts) == len(set(hosts))


def test_our_own_latched_fsd_does_not_start_a_second_shutdown(lab):
    d = Drive(lab)
    d.see("OB LB", 0)
    d.finish_all(1)  # ... FSD set by us, the coordinator asked to stop
    assert d.c.p.fsd_ours
    d.see("FSD OL CHRG", 10, charge=80)  # upsd keeps FSD until it restarts
    d.tick(15)
    d.finish_all(16)
    assert d.phase is Phase.ONLINE and d.host("app") is HostState.UP
    before = len(d.actions)
    d.see("FSD OL", 20, charge=90)
    assert d.steps(d.actions[before:]) == []  # no second shutdown
    d.see("OL", 30)  # the latch is gone (upsd restarted)
    assert not d.c.p.fsd_ours
    out = d.see("FSD OL", 40)  # now FSD is someone else's decision
    assert "another primary forced a shutdown" in out[1].message
    assert d.steps(out) == [("app", "stop")]


# -- issue 20: a restarted coordinator decides only from fresh readings -----------------------


def restarted(lab, d, **changes):
    """A coordinator started on what ``d``'s watch saved (as after a SIGKILL)."""
    saved = json.loads(json.dumps(d.c.p.to_dict()))
    saved.update(changes)
    return Drive(lab, Progress.from_dict(saved, "state.json"))


def test_a_restart_during_the_ride_through_with_mains_back_stops_nothing(lab):
    d = Drive(lab)
    d.see("OL", 0)
    d.see("OB DISCHRG", 1)  # killed here, during a 10 s ride-through
    again = restarted(lab, d)
    out = again.resume(30)  # the saved OB reading is 29 s old: it triggers nothing
    assert again.kinds(out) == ["resumed"] and "29s old) decides nothing" in out[0].message
    assert again.tick(31) == [] and again.phase is Phase.ON_BATTERY
    again.see("OL CHRG", 32)  # the first fresh reading: mains is back
    again.tick(37)
    assert again.kinds()[-1] == "ridden-out"
    assert again.steps() == [] and again.phase is Phase.ONLINE


def test_a_restart_during_the_ride_through_with_mains_still_out_keeps_the_cut_start(lab):
    d = Drive(lab)
    d.see("OB DISCHRG", 0)
    again = restarted(lab, d)
    assert again.kinds(again.resume(5)) == ["resumed"]
    again.see("OB DISCHRG", 6)  # still out: the ride-through counts from the cut's start
    assert again.c.next_wakeup() == 10
    again.tick(10)
    assert again.steps() == [("app", "stop")]


def test_a_restart_with_the_ups_unreachable_uses_the_saved_reading_only_as_a_timer(lab):
    d = Drive(lab)
    d.see("OB DISCHRG", 0)
    again = restarted(lab, d)
    again.resume(100)
    again.lost(101)  # this run's own observation: the UPS does not answer
    assert again.tick(115.9) == []
    out = again.tick(116)  # dead_after (15 s) after the loss this run saw, last seen on battery
    assert again.kinds(out)[0] == "SHUTDOWN"
    assert "dead UPS counts as low battery" in out[0].message


def test_a_restart_mid_shutdown_with_mains_back_finishes_the_stage_and_recovers(lab):
    d = Drive(lab)
    d.see("OB LB", 0)
    d.finish("app:stop", 1)  # app confirming; killed here
    again = restarted(lab, d)
    again.resume(3)
    again.finish("app:confirm", 4)
    assert "nas:drain" not in again.pending  # no new stage before a fresh reading
    again.see("OL CHRG", 5, charge=90)
    assert again.phase is Phase.PAUSED
    again.tick(10)
    assert again.phase is Phase.RECOVERING
    again.finish_all(11)
    assert again.steps() == [("app", "confirm"), ("app", "start"), ("app", "ready")]
    assert again.host("nas") is HostState.UP


def test_a_restarted_coordinator_in_down_does_not_recover_on_a_saved_online_reading(lab):
    d = Drive(lab)
    d.see("OB LB", 0)
    d.finish_all(1)
    d.finish_all(2)
    d.finish_all(3)
    d.finish_all(4)
    d.see("OL CHRG", 5, charge=90)  # killed right after this
    assert d.phase is Phase.DOWN
    again = restarted(lab, d)
    again.resume(60)
    assert again.tick(61) == [] and again.steps() == []
    again.see("OL CHRG", 62, charge=90)
    assert again.c.next_wakeup() == 67  # mains must be seen holding by this run
    again.tick(67)
    assert again.phase is Phase.RECOVERING and ("nas", "start") in again.steps()


def test_an_old_state_file_without_the_new_keys_still_loads(lab):
    d = Drive(lab)
    d.see("OB", 0)
    saved = json.loads(json.dumps(d.c.p.to_dict()))
    for key in ("fsd_failed", "load_cut_until"):
        del saved[key]
    assert Progress.from_dict(saved, "state.json").load_cut_until is None


# -- issue 20: no host starts while the UPS's load cut is pending -----------------------------


def shut_down_with_cut(tmp_path, delay="30"):
    p = plan(
        tmp_path, BASE.replace("secondaries_wait = 4", "secondaries_wait = 4\ncut_power = true")
    )
    d = Drive(p)
    lb = UpsReading(("OB", "LB"), 20.0, 100.0, variables={"ups.delay.shutdown": delay})
    d._take(d.c.observe(lb, 0))
    for t in range(1, 8):
        d.finish_all(t)
    assert d.phase is Phase.DOWN
    return d


def test_hosts_are_not_started_before_the_ups_has_cut_and_restored_its_load(tmp_path):
    d = shut_down_with_cut(tmp_path)
    cut = next(a for a in d.actions if isinstance(a, CutPower))
    assert cut and d.c.p.load_cut_until == pytest.approx(1 + 30 + 5)  # accepted at 1
    d.see("OL CHRG", 10, charge=90)  # mains is back before the UPS cut its load
    d.tick(15)
    assert d.phase is Phase.RECOVERING
    assert d.kinds()[-1] == "waiting-load-cut" and not any(s == "start" for _, s in d.steps())
    d.see("OFF OL", 31, charge=90)  # the cut
    d.tick(40)  # past the bound, but the output is still OFF
    assert not any(step == "start" for _, step in d.steps())
    d.see("OL CHRG", 50, charge=90)  # the load came back
    assert ("nas", "start") in d.steps()


def test_a_load_cut_that_never_shows_is_given_up_on_at_its_bound(tmp_path):
    d = shut_down_with_cut(tmp_path, delay="3")
    until = d.c.p.load_cut_until
    assert until == pytest.approx(1 + 3 + 5)
    d.see("OL CHRG", 2, charge=90)
    d.tick(7)
    assert not any(step == "start" for _, step in d.steps())
    assert d.c.next_wakeup() == pytest.approx(until)
    d.tick(until)
    assert ("nas", "start") in d.steps()


def test_a_ups_counting_down_to_its_cut_holds_the_start(tmp_path):
    d = shut_down_with_cut(tmp_path, delay="3")
    counting = UpsReading(("OL",), 90.0, 1000.0, variables={"ups.timer.shutdown": "4"})
    d._take(d.c.observe(counting, 20))
    d.tick(26)
    assert not any(step == "start" for _, step in d.steps())


# -- issue 20: the wait for secondaries is skipped when nobody was told -----------------------


def until_pending(d, key, t=1):
    """Finish every other step until ``key`` is asked for."""
    while key not in d.pending:
        d.finish(next(iter(d.pending)), t)


def test_no_wait_for_secondaries_when_fsd_could_not_be_set(lab):
    d = Drive(lab)
    d.see("OB LB", 0)
    until_pending(d, "fsd")
    out = d.finish("fsd", 6, ok=False)
    assert "secondaries" not in d.pending
    skipped = [a for a in out if isinstance(a, Event) and a.kind == "step-skipped"]
    assert skipped and "FSD could not be set" in skipped[0].message


def test_no_wait_for_secondaries_when_the_ups_cannot_be_reached(lab):
    d = Drive(lab)
    d.see("OB LB", 0)
    until_pending(d, "fsd")
    d.lost(5)
    d.finish("fsd", 6)
    assert "secondaries" not in d.pending
    assert "cannot be reached" in [a for a in d.actions if isinstance(a, Event)][-2].message


# -- issue 20: OFF with hosts up, and FSD as the shutdown starts ------------------------------


def test_output_off_while_hosts_are_up_is_an_emergency(lab):
    d = Drive(lab)
    d.see("OL", 0)
    out = d.see("OFF OL", 1)
    assert d.kinds(out)[:2] == ["OFF", "SHUTDOWN"]
    assert "output OFF while hosts are up" in out[1].message
    assert d.steps(out) == [("app", "stop")]


def test_bypass_overload_and_alarm_notify_but_do_not_act(lab):
    d = Drive(lab)
    d.see("OL", 0)
    d.see("OL BYPASS OVER ALARM", 1)
    d.see("OL", 2)
    assert d.kinds() == ["BYPASS", "OVER", "ALARM", "NOTBYPASS", "NOTOVER", "NOTALARM"]
    assert d.steps() == [] and d.phase is Phase.ONLINE


def test_fsd_at_start_sets_fsd_with_the_first_stage_and_goes_all_the_way(tmp_path):
    p = plan(
        tmp_path, BASE.replace("secondaries_wait = 4", 'secondaries_wait = 4\nfsd_at = "start"')
    )
    d = Drive(p)
    out = d.see("OB LB", 0)
    assert "fsd" in d.pending and ("app", "stop") in d.steps(out)
    d.finish("fsd", 1)
    d.see("FSD OL", 2)  # mains back: with FSD latched the shutdown does not pause
    assert d.phase is Phase.SHUTTING_DOWN
    for t in range(3, 9):
        d.finish_all(t)
    assert d.phase is Phase.DOWN
    # FSD was set once, at the start; the secondaries were waited for at the end.
    assert [type(a).__name__ for a in d.actions if isinstance(a, SetFsd)] == ["SetFsd"]
    assert any(isinstance(a, WaitSecondaries) for a in d.actions)
