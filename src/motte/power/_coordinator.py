"""The coordinator: decides when to shut down, in what order, and when to bring hosts back.

A pure state machine, as the protocol core is: no sockets, no processes, no clock. The driver
(:mod:`._watch`) feeds it UPS readings (:meth:`Coordinator.observe`), lost links
(:meth:`Coordinator.comm_lost`), step results (:meth:`Coordinator.completed`) and the time
(:meth:`Coordinator.tick`, at :meth:`Coordinator.next_wakeup`), and carries out the
:class:`~._progress.Action` values it returns. Tests drive it with made-up times.

A plan that watches several UPSes feeds it one combined reading (:mod:`._combine`), and then
announces each UPS's own upsmon events itself (ONBATT, COMMBAD, ... naming the UPS that
changed); with one UPS the coordinator announces them, as upsmon does.

The rules, in the order they are applied:

- A cut starts the ride-through. A return of mains ends the cut only once it has lasted
  ``mains_stable`` seconds, so flapping power does not restart the ride-through.
- Only fresh readings decide. A restarted coordinator holds the reading its last run saved,
  but that reading is stale: it may inform a timer (the ride-through still counts from the
  cut's start; a UPS last seen on battery that stays unreachable is dead after
  ``dead_after``), never trigger an action. Until the UPS has been read again nothing starts,
  pauses, resumes or recovers; a shutdown in flight goes on only if the UPS stays unreachable
  past ``dead_after``. Only the final steps (FSD is latched) run on regardless.
- The plan runs when the UPS says OB+LB or FSD, when it says its output is OFF while hosts are
  up (they have no power from it: an emergency), when charge or runtime falls below the plan's
  thresholds while on battery, when the ride-through is over, or when the UPS has been
  unreachable for ``dead_after`` seconds after being last seen on battery (upsmon's dead-UPS
  rule: a dead UPS that was on battery counts as low battery). A UPS never seen is not
  assumed critical (upsmon's rule too): it raises COMMBAD, and NOCOMM after ``nocomm_after``.
- Stages run in order; a host drains, stops, then confirms. Each step's deadline is the host's
  declared time, shrunk in proportion when the remaining runtime (less ``reserve`` and what
  later stages need) cannot cover it. A host that never confirms is marked failed and the plan
  moves on: the battery does not wait.
- If mains returns mid-shutdown, the stage in flight finishes and no new stage starts; if the
  power fails again, the shutdown continues. Once FSD is set, the shutdown goes all the way
  (NUT's FSD is latched; secondaries are already going): with ``fsd_at = "start"`` that is
  from the start. If FSD could not be set (or the UPS cannot be reached), nobody waits for
  NUT secondaries: none was told.
- **Redundancy** (hosts with ``supplies``, upsmon's MINSUPPLIES with power values): each UPS is
  judged on its own by the rules above (its own ride-through, thresholds, dead-UPS timer) and
  a UPS that meets one is *lost*. A host stops only when the UPSes it has left give less power
  than it needs, and so does every host that depends on it; the others keep running, the
  coordinator too unless it lost its own power. A loss that stops nothing is announced
  (``supply-lost``). A second loss mid-shutdown adds its hosts to the stages not yet run.
  FSD and ``shutdown.return`` go only to the lost UPSes that feed a stopped host, and mains
  must be back on every lost UPS before anything restarts. A plan without ``supplies`` is
  judged on the combined view as above (every UPS a required supply).
- When mains has been back ``mains_stable`` seconds and the charge has reached
  ``restart_charge``, stopped hosts are started in dependency order (dependencies first), each
  then polled with its ``ready`` check. Not while a load cut is pending: once the UPS accepted
  ``shutdown.return``, no host starts until ``ups.delay.shutdown`` (plus
  :data:`LOAD_CUT_MARGIN`) has passed and the UPS does not show its output OFF, so a host is
  never started just before the UPS cuts its power.
"""

from __future__ import annotations

from motte.power._combine import combine
from motte.power._errors import PlanError
from motte.power._plan import Plan
from motte.power._plancheck import affected, check_plan, targets
from motte.power._progress import (
    STEP_STATE,
    STOPPED,
    Action,
    Cancel,
    CutPower,
    Event,
    HostProgress,
    HostState,
    Phase,
    Progress,
    RunStep,
    SetFsd,
    StepResult,
    SupplyProgress,
    Task,
    WaitSecondaries,
)
from motte.power._status import EVENT_TEXT, UpsReading, finite_number, status_events

#: A step whose result has not arrived this long after its deadline is given up on.
RESULT_GRACE = 5.0
#: Seconds added to ``ups.delay.shutdown`` before a load cut that never showed is given up
#: on (a UPS that cancelled it, or one that does not report OFF).
LOAD_CUT_MARGIN = 5.0
#: ``ups.delay.shutdown`` when the UPS does not report it (NUT drivers' usual offdelay).
DEFAULT_DELAY_SHUTDOWN = 20.0
_VERBS = {
    "drain": "draining",
    "stop": "stopping",
    "confirm": "waiting for confirmation from",
    "start": "starting",
    "ready": "waiting until ready:",
}


#: Phases in which our own FSD may not show yet in a reading polled just before it was set.
_FSD_RACES = frozenset({Phase.SHUTTING_DOWN, Phase.PAUSED, Phase.FINAL})


class Coordinator:
    def __init__(self, plan: Plan, progress: Progress | None = None) -> None:
        check = check_plan(plan)
        if check.errors:
            raise PlanError(check.errors[0], hint="run `motte power plan check` on the plan")
        self.plan = plan
        self.stages = [list(s) for s in check.stages]
        assert check.coordinator is not None
        self.me = check.coordinator
        #: With redundancy each UPS is judged on its own (fed by :meth:`observe_ups`).
        self.redundant = plan.redundant
        #: With several UPSes the driver announces each one's events; the combined view's
        #: changes would name no UPS, so the coordinator stays quiet about them.
        self.ups_events = len(plan.upses) == 1 and not self.redundant
        self.p = progress if progress is not None else Progress(plan=plan.name)
        # The plan may have changed since the state was written: new hosts start as up.
        self.p.hosts = {n: self.p.hosts.get(n, HostProgress()) for n in plan.hosts}
        self.addresses = [str(u.address) for u in plan.upses]
        if self.redundant:
            self.p.supplies = {a: self.p.supplies.get(a, SupplyProgress()) for a in self.addresses}
            self.p.lost = {a: why for a, why in self.p.lost.items() if a in self.p.supplies}
        #: The time of the last evaluation: a timer at or before it is spent.
        self._last = float("-inf")

    # -- inputs ----------------------------------------------------------------------------

    def resume(self, now: float) -> list[Action]:
        """After a (re)start: re-issue the steps that were in flight, keeping their deadlines.

        What the last run knew of the UPS is stale: its reading stays for the timers (the
        ride-through's start, a dead UPS last seen on battery) but decides nothing until the
        UPS is read again; the link's state and when mains came back are learned afresh.
        """
        p = self.p
        p.comm_ok, p.comm_lost_since, p.mains_back_since = True, None, None
        for sp in p.supplies.values():
            sp.comm_ok, sp.comm_lost_since, sp.mains_back_since = True, None, None
        if self.redundant and not all(sp.fresh for sp in p.supplies.values()):
            p.fresh = False
        out: list[Action] = []
        if self.p.phase is not Phase.ONLINE or self.p.running:
            stale = (
                f"; the saved reading ({now - p.reading_at:.0f}s old) decides nothing until "
                "the UPS is read again"
                if p.reading is not None and p.reading_at is not None and not p.fresh
                else ""
            )
            out.append(
                Event(
                    "resumed",
                    f"resuming in phase {self.p.phase.value}{stale}",
                    data={"running": sorted(self.p.running)},
                )
            )
        for key, task in sorted(self.p.running.items()):
            self.p.seq += 1
            task.seq = self.p.seq
            if task.deadline <= now:
                out += self._finished(
                    key,
                    task,
                    StepResult(
                        key, task.seq, False, "deadline passed while the coordinator was down", True
                    ),
                    now,
                )
            else:
                out.append(self._action(key, task))
        return out + self._evaluate(now)

    def observe(self, reading: UpsReading, now: float) -> list[Action]:
        """A fresh reading of the UPS."""
        p, out = self.p, []
        if not p.comm_ok:
            p.comm_ok, p.comm_lost_since = True, None
            if self.ups_events:
                out.append(self._notify("COMMOK", f"UPS reachable again: {reading.describe()}"))
        if reading.waiting:  # upsd is (re)connecting to its driver: learn nothing from it
            return out + self._evaluate(now)
        for kind in status_events(p.reading, reading) if self.ups_events else []:
            out.append(self._notify(kind, f"{EVENT_TEXT[kind]}: {reading.describe()}"))
        p.reading, p.reading_at, p.fresh = reading, now, True
        if "FSD" not in reading.status and p.phase not in _FSD_RACES:
            p.fsd_ours = False  # upsd restarted, or the UPS power-cycled: the latch is gone
        if reading.on_battery:
            p.mains_back_since = None
            if p.cut_since is None:
                p.cut_since = now
        elif reading.on_line and p.mains_back_since is None:
            p.mains_back_since = now
        return out + self._evaluate(now)

    def comm_lost(self, now: float, reason: str) -> list[Action]:
        """The UPS (or its server) cannot be read: connection lost, DATA-STALE, ..."""
        out: list[Action] = []
        if self.p.comm_ok:
            self.p.comm_ok, self.p.comm_lost_since = False, now
            on_batt = self.p.reading is not None and self.p.reading.on_battery
            tail = (
                (
                    f"; last seen on battery: counts as low battery after "
                    f"{self.plan.policy.dead_after:g}s"
                )
                if on_batt
                else ""
            )
            if self.ups_events:
                out.append(self._notify("COMMBAD", f"UPS unreachable: {reason}{tail}"))
        return out + self._evaluate(now)

    def observe_ups(self, address: str, reading: UpsReading, now: float) -> list[Action]:
        """A fresh reading of one UPS (a plan with redundancy: each UPS is judged alone)."""
        p, sp = self.p, self.p.supplies[address]
        if not sp.comm_ok:
            sp.comm_ok, sp.comm_lost_since = True, None
        if not reading.waiting:
            sp.reading, sp.reading_at, sp.fresh = reading, now, True
            gone = "FSD" not in reading.status and p.phase not in _FSD_RACES
            if gone and address in p.fsd_upses:  # upsd restarted or the UPS power-cycled
                p.fsd_upses.remove(address)
            if reading.on_battery:
                sp.mains_back_since = None
                if sp.cut_since is None:
                    sp.cut_since = now
            elif reading.on_line and sp.mains_back_since is None:
                sp.mains_back_since = now
        self._refresh_view(now)
        return self._evaluate(now)

    def ups_lost(self, address: str, reason: str, now: float) -> list[Action]:
        """One UPS (or its server) cannot be read (a plan with redundancy)."""
        sp = self.p.supplies[address]
        if sp.comm_ok:
            sp.comm_ok, sp.comm_lost_since = False, now
        self._refresh_view(now)
        return self._evaluate(now)

    def _refresh_view(self, now: float) -> None:
        """The combined view, for status and the budget: every UPS read by this run."""
        p = self.p
        # Decided only once every UPS was read by this run or found unreachable (as the
        # combined view of a plan without redundancy).
        p.fresh = all(sp.fresh or not sp.comm_ok for sp in p.supplies.values())
        p.comm_ok = all(sp.comm_ok for sp in p.supplies.values())
        readings = [sp.reading for sp in p.supplies.values() if sp.fresh and sp.reading]
        if readings:
            p.reading, p.reading_at = combine(readings), now

    def completed(self, result: StepResult, now: float) -> list[Action]:
        task = self.p.running.get(result.key)
        if task is None or task.seq != result.seq:
            return []  # a result from before a restart, or of a cancelled step
        return self._finished(result.key, task, result, now) + self._evaluate(now)

    def tick(self, now: float) -> list[Action]:
        """Time passed: run whatever timer is due (ride-through, dead UPS, mains stable)."""
        return self._evaluate(now)

    def _expire(self, now: float) -> list[Action]:
        """Give up on steps whose result is overdue: the runner lost them; kill and move on."""
        out: list[Action] = []
        for key, task in sorted(self.p.running.items()):
            if now >= task.deadline + RESULT_GRACE:
                out.append(Cancel(key))
                late = StepResult(key, task.seq, False, "no result from the runner", True)
                out += self._finished(key, task, late, now)
        return out

    def next_wakeup(self) -> float | None:
        """The earliest time :meth:`tick` must run even if nothing else happens.

        Only timers whose firing would change something are listed, so after ``tick(now)``
        the answer is always later than ``now`` (a driver never spins on a spent timer).
        """
        p, pol = self.p, self.plan.policy
        times = [t.deadline + RESULT_GRACE for t in p.running.values()]
        if self.redundant:
            return self._next_wakeup_redundant(times)
        if p.phase in (Phase.ONLINE, Phase.ON_BATTERY) and self._on_battery():
            if p.cut_since is not None:
                times.append(p.cut_since + pol.ride_through)
            if not p.comm_ok and p.comm_lost_since is not None:
                times.append(p.comm_lost_since + pol.dead_after)
        waits_for_mains = p.phase in (Phase.ON_BATTERY, Phase.DOWN) or (
            p.phase is Phase.PAUSED and self._stage_done(p.stages, p.stage)
        )
        if waits_for_mains and self._mains_back() and p.mains_back_since is not None:
            times.append(p.mains_back_since + pol.mains_stable)
        if p.phase is Phase.RECOVERING and p.load_cut_until is not None:
            times.append(p.load_cut_until)
        return min(times, default=None)

    def _next_wakeup_redundant(self, times: list[float]) -> float | None:
        p, pol = self.p, self.plan.policy
        for address, sp in p.supplies.items():
            r = sp.reading
            if r is not None and self._ups_loss(address, self._last) is None:
                if not sp.comm_ok and sp.comm_lost_since is not None and r.on_battery:
                    times.append(sp.comm_lost_since + pol.dead_after)
                if sp.fresh and r.on_battery and sp.cut_since is not None:
                    times.append(sp.cut_since + pol.ride_through)
            if sp.cut_since is not None and sp.mains_back_since is not None:
                times.append(sp.mains_back_since + pol.mains_stable)  # the cut is over
        if p.phase is Phase.RECOVERING and p.load_cut_until is not None:
            times.append(p.load_cut_until)
        return min((t for t in times if t > self._last), default=None)

    # -- decisions -------------------------------------------------------------------------

    def _evaluate(self, now: float) -> list[Action]:
        self._last = now
        if self.redundant:
            self._end_cuts(now)
        out: list[Action] = self._expire(now)
        for _ in range(16):  # each pass may change phase; a handful always suffices
            before = (self.p.phase, self.p.stage, self.p.final, self.p.recovery_stage)
            out += self._step(now)
            if before == (self.p.phase, self.p.stage, self.p.final, self.p.recovery_stage):
                break
        return out

    def _step(self, now: float) -> list[Action]:
        p = self.p
        out: list[Action] = []
        if self.redundant and p.phase is not Phase.FINAL:
            started, out = self._losses_act(now)
            if started:
                return out
        if not p.fresh and p.phase in (Phase.PAUSED, Phase.DOWN, Phase.RECOVERING):
            return out  # a restarted coordinator: nothing moves until the UPS is read again
        return out + self._step_phase(now)

    def _step_phase(self, now: float) -> list[Action]:
        p = self.p
        if p.phase in (Phase.ONLINE, Phase.ON_BATTERY):
            reason = self._trigger(now)
            if reason:
                return self._start_shutdown(now, reason)
            if p.phase is Phase.ONLINE and self._on_battery():
                p.phase = Phase.ON_BATTERY
                return [
                    Event(
                        "riding-through",
                        f"on battery: the plan runs in "
                        f"{self.plan.policy.ride_through:g}s unless mains returns",
                    )
                ]
            if p.phase is Phase.ON_BATTERY and self._mains_stable(now):
                lasted = (p.mains_back_since or now) - (p.cut_since or now)
                p.cut_since = None
                if any(h.state in STOPPED for h in p.hosts.values()):
                    return self._begin_recovery(now)
                p.phase = Phase.ONLINE
                return [Event("ridden-out", f"cut of {lasted:.1f}s ridden out: nothing stopped")]
            return []
        if p.phase is Phase.SHUTTING_DOWN:
            if not p.fresh and (self._dead(now) or 0.0) < self.plan.policy.dead_after:
                return []  # restarted mid-shutdown: the next stage waits for a fresh reading
            if self._mains_back() and not self._fsd_committed():
                p.phase = Phase.PAUSED
                return [
                    Event(
                        "paused",
                        f"mains is back: finishing stage {p.stage + 1}, starting no new stage",
                    )
                ]
            return self._next_stage(now) if self._stage_done(p.stages, p.stage) else []
        if p.phase is Phase.PAUSED:
            if self._on_battery():
                p.phase = Phase.SHUTTING_DOWN
                return [Event("continued", "on battery again: continuing the shutdown")]
            if self._stage_done(p.stages, p.stage) and self._mains_stable(now):
                return self._begin_recovery(now)
            return []
        if p.phase is Phase.FINAL:
            return self._next_final(now) if not self._final_running() else []
        if p.phase is Phase.DOWN:
            return self._begin_recovery(now) if self._mains_stable(now) else []
        if p.phase is Phase.RECOVERING:
            if self._on_battery():
                p.phase, p.cut_since = Phase.ON_BATTERY, p.cut_since or now
                return [Event("recovery-halted", "on battery again: no more hosts are started")]
            return self._advance_recovery(now)
        return []

    def _on_battery(self) -> bool:
        p = self.p
        if self.redundant:
            return any(self._ups_on_battery(a) for a in self._scope(battery=True))
        return p.fresh and p.reading is not None and p.reading.on_battery

    def _mains_back(self) -> bool:
        """Power is back for the hosts: mains, and the UPS's output on (OFF feeds nothing, so
        an OFF UPS neither pauses a shutdown nor lets hosts start)."""
        p, r = self.p, self.p.reading
        if self.redundant:
            return all(self._ups_back(a) for a in self._scope())
        return p.fresh and p.comm_ok and r is not None and r.on_line and not r.output_off

    # -- redundancy: each UPS judged on its own ----------------------------------------------

    def _scope(self, *, battery: bool = False) -> list[str]:
        """The UPSes the phase rules look at: those the shutdown is for (whose return the
        stopped hosts wait for) or, with none lost, every UPS (riding through)."""
        p = self.p
        if battery and p.phase in (Phase.ONLINE, Phase.ON_BATTERY):
            return list(p.supplies)  # any UPS on battery is a cut being ridden through
        return list(p.lost) if p.lost else list(p.supplies)

    def _ups_on_battery(self, address: str) -> bool:
        sp = self.p.supplies[address]
        return sp.fresh and sp.reading is not None and sp.reading.on_battery

    def _ups_back(self, address: str) -> bool:
        sp = self.p.supplies[address]
        r = sp.reading
        return sp.fresh and sp.comm_ok and r is not None and r.on_line and not r.output_off

    def _ups_stable(self, address: str, now: float) -> bool:
        sp = self.p.supplies[address]
        return (
            self._ups_back(address)
            and sp.mains_back_since is not None
            and now - sp.mains_back_since >= self.plan.policy.mains_stable
        )

    def _ups_dead(self, address: str, now: float) -> float | None:
        """Seconds ``address``, last seen on battery, has been unreachable (None: it is not)."""
        sp = self.p.supplies[address]
        r = sp.reading
        if sp.comm_ok or sp.comm_lost_since is None or r is None or not r.on_battery:
            return None
        return now - sp.comm_lost_since

    def _end_cuts(self, now: float) -> None:
        """A UPS's cut is over once its mains has held ``mains_stable`` seconds."""
        for address, sp in self.p.supplies.items():
            if sp.cut_since is not None and self._ups_stable(address, now):
                sp.cut_since = None

    def _ups_loss(self, address: str, now: float) -> str | None:
        """Why UPS ``address`` no longer counts as a supply (upsmon: it is critical, dead or
        off; and this plan's own thresholds and ride-through), or None while it does."""
        p, pol, sp = self.p, self.plan.policy, self.p.supplies[address]
        r = sp.reading
        if r is None:
            return None  # never seen: assumed supplying (upsmon's rule)
        lost_for = self._ups_dead(address, now)
        if lost_for is not None and lost_for >= pol.dead_after:
            return f"unreachable for {lost_for:.0f}s after it was last seen on battery"
        if not sp.fresh:
            return None  # a reading from before a restart decides nothing
        if "OB" in r.status and "LB" in r.status:
            return "low battery (OB LB)"
        if "FSD" in r.status and address not in p.fsd_upses:
            return "FSD (another primary forced a shutdown)"
        if r.output_off:
            return "output OFF: it feeds nothing"
        if not r.on_battery:
            return None
        if pol.charge_below is not None and r.charge is not None and r.charge < pol.charge_below:
            return f"battery charge {r.charge:g}% is below {pol.charge_below:g}%"
        if (
            pol.runtime_below is not None
            and r.runtime is not None
            and r.runtime < pol.runtime_below
        ):
            return f"battery runtime {r.runtime:g}s is below {pol.runtime_below:g}s"
        if sp.cut_since is not None and now - sp.cut_since >= pol.ride_through:
            return (
                f"on battery for {now - sp.cut_since:.1f}s, longer than the "
                f"{pol.ride_through:g}s ride-through"
            )
        return None

    def _name(self, address: str) -> str:
        names = [u.address.ups for u in self.plan.upses]
        ups = address.partition("@")[0]
        return ups if names.count(ups) == 1 else address

    def _planned(self) -> set[str]:
        """Hosts the shutdown in flight will stop (or is stopping), the coordinator included."""
        p = self.p
        out: set[str] = set()
        if p.phase in (Phase.SHUTTING_DOWN, Phase.PAUSED):
            out = {n for stage in p.stages[max(p.stage, 0) :] for n in stage}
        if p.stop_self and p.phase in (Phase.SHUTTING_DOWN, Phase.PAUSED, Phase.FINAL):
            out.add(self.me)
        return out | {
            t.host for t in p.running.values() if t.step in ("drain", "stop", "confirm") and t.host
        }

    def _losses_act(self, now: float) -> tuple[bool, list[Action]]:
        """Judge every UPS; start or widen a shutdown when a host has too little power left.

        Returns (a shutdown started or widened, actions)."""
        p = self.p
        losses = {a: why for a in p.supplies if (why := self._ups_loss(a, now)) is not None}
        for address in [a for a in p.lost_told if a not in losses]:
            p.lost_told.remove(address)  # back: a later loss is told again
        hit = affected(self.plan, set(losses))
        planned = self._planned()
        new = sorted(n for n in hit if p.hosts[n].state not in STOPPED and n not in planned)
        if new:
            if p.phase in (Phase.SHUTTING_DOWN, Phase.PAUSED):
                return True, self._widen(now, losses, set(new))
            return True, self._start_shutdown(now, self._loss_reason(losses), losses, set(new))
        out: list[Action] = []
        if p.phase in (Phase.ONLINE, Phase.ON_BATTERY):
            for address, why in losses.items():
                if address in p.lost_told:
                    continue
                p.lost_told.append(address)
                running = sorted(
                    n
                    for n in self.plan.hosts
                    if address in self.plan.feeds(n)[0]
                    and n not in hit
                    and not self.plan.hosts[n].never_stop
                )
                out.append(
                    Event(
                        "supply-lost",
                        f"{self._name(address)}: lost ({why}); every host it feeds keeps "
                        f"enough supplies: {', '.join(running) or 'nothing'} keep running",
                        data={"upses": [address], "running": running},
                    )
                )
        return False, out

    def _loss_reason(self, losses: dict[str, str]) -> str:
        return "; ".join(f"{self._name(a)}: {why}" for a, why in losses.items())

    def _widen(self, now: float, losses: dict[str, str], new: set[str]) -> list[Action]:
        """A second loss mid-shutdown: its hosts join the stages not yet run, in order."""
        p = self.p
        fresh_losses = {a: w for a, w in losses.items() if a not in p.lost}
        p.lost.update(losses)
        if self.me in new:
            p.stop_self = True
        begun = {n for stage in p.stages[: p.stage + 1] for n in stage}
        later = {n for stage in p.stages[p.stage + 1 :] for n in stage} | (new - {self.me})
        rest = [[n for n in stage if n in later and n not in begun] for stage in self.stages]
        p.stages = p.stages[: p.stage + 1] + [s for s in rest if s]
        out: list[Action] = [
            Event(
                "shutdown-widened",
                f"{self._loss_reason(fresh_losses or losses)}: also stopping "
                f"{', '.join(sorted(new))}",
                data={"hosts": sorted(new), "stages": p.stages, "upses": list(p.lost)},
            )
        ]
        if p.phase is Phase.PAUSED:
            p.phase = Phase.SHUTTING_DOWN
        return out + (self._next_stage(now) if self._stage_done(p.stages, p.stage) else [])

    def _dead(self, now: float) -> float | None:
        """Seconds the UPS, last seen on battery, has been unreachable (None: it is not).

        The one rule a stale reading may feed: it only starts a timer, and the unreachability
        it times is this run's own observation."""
        if self.redundant:
            dead = [d for a in self._scope() if (d := self._ups_dead(a, now)) is not None]
            return max(dead, default=None)
        p, r = self.p, self.p.reading
        if p.comm_ok or p.comm_lost_since is None or r is None or not r.on_battery:
            return None
        return now - p.comm_lost_since

    def _mains_stable(self, now: float) -> bool:
        p = self.p
        if self.redundant:
            return all(self._ups_stable(a, now) for a in self._scope())
        return (
            self._mains_back()
            and p.mains_back_since is not None
            and now - p.mains_back_since >= self.plan.policy.mains_stable
        )

    def _trigger(self, now: float) -> str | None:
        p, pol, r = self.p, self.plan.policy, self.p.reading
        if r is None or self.redundant:  # with redundancy: _losses_act, UPS by UPS
            return None
        lost_for = self._dead(now)
        if lost_for is not None and lost_for >= pol.dead_after:
            return (
                f"UPS unreachable for {lost_for:.0f}s after it was last seen on battery "
                "(a dead UPS counts as low battery)"
            )
        if not p.fresh:
            return None  # a reading from before a restart triggers nothing
        if "OB" in r.status and "LB" in r.status:
            return "the UPS reports low battery (OB LB)"
        if "FSD" in r.status and not p.fsd_ours:  # our own FSD stays latched in upsd
            return "the UPS reports FSD (another primary forced a shutdown)"
        if r.output_off:
            return (
                "the UPS reports its output OFF while hosts are up: an emergency, they have "
                "no power from it"
            )
        if not r.on_battery:
            return None
        if pol.charge_below is not None and r.charge is not None and r.charge < pol.charge_below:
            return f"battery charge {r.charge:g}% is below {pol.charge_below:g}%"
        if (
            pol.runtime_below is not None
            and r.runtime is not None
            and r.runtime < pol.runtime_below
        ):
            return f"battery runtime {r.runtime:g}s is below {pol.runtime_below:g}s"
        if p.cut_since is not None and now - p.cut_since >= pol.ride_through:
            return (
                f"on battery for {now - p.cut_since:.1f}s, longer than the "
                f"{pol.ride_through:g}s ride-through"
            )
        return None

    # -- shutdown --------------------------------------------------------------------------

    def _start_shutdown(
        self,
        now: float,
        reason: str,
        losses: dict[str, str] | None = None,
        hosts: set[str] | None = None,
    ) -> list[Action]:
        """Stop ``hosts`` (None: every host) because of ``losses`` (with redundancy)."""
        p = self.p
        out: list[Action] = []
        for key, task in list(p.running.items()):  # a recovery in flight is overtaken
            if task.step in ("start", "ready") and (hosts is None or task.host in hosts):
                del p.running[key]
                out.append(Cancel(key))
        p.phase, p.reason, p.shutdown_started = Phase.SHUTTING_DOWN, reason, now
        p.stages = [
            s
            for s in (
                [
                    n
                    for n in stage
                    if p.hosts[n].state not in STOPPED and (hosts is None or n in hosts)
                ]
                for stage in self.stages
            )
            if s
        ]
        p.stage, p.final, p.final_steps, p.fsd_failed = -1, -1, [], False
        data: dict[str, object] = {"stages": p.stages}
        if hosts is not None and losses is not None:
            p.lost.update(losses)
            p.stop_self = self.me in hosts
            p.step_upses = {}
            running = sorted(
                n
                for n, h in self.plan.hosts.items()
                if n not in hosts and not h.never_stop and p.hosts[n].state not in STOPPED
            )
            data.update(upses=list(losses), stops=sorted(hosts), running=running)
            keep = f"; keeps running: {', '.join(running)}" if running else ""
            message = f"shutdown started: {reason}{keep}"
            names = ",".join(self._name(a) for a in losses)
            out.append(Event("SHUTDOWN", f"{names}: {message}", data=data))
        else:
            out.append(self._notify("SHUTDOWN", f"shutdown started: {reason}", data=data))
        if self._fsd_enabled() and self.plan.policy.fsd_at == "start" and not p.fsd_ours:
            if hosts is None:
                out += self._final_task("fsd", now)
            elif aim := self._logins(targets(self.plan, set(p.lost), hosts)):
                p.step_upses["fsd"] = aim
                out += self._final_task("fsd", now)
        return out + self._next_stage(now)

    def _logins(self, addresses: list[str]) -> list[str]:
        """Those of ``addresses`` the plan logs into (FSD needs a login)."""
        return [
            str(u.address) for u in self.plan.upses if u.username and str(u.address) in addresses
        ]

    def _fsd_committed(self) -> bool:
        """FSD is set (or on its way): the shutdown goes all the way, as in NUT."""
        if self.redundant:
            return "fsd" in self.p.running or any(a in self.p.fsd_upses for a in self.p.lost)
        return self.p.fsd_ours or "fsd" in self.p.running

    def _next_stage(self, now: float) -> list[Action]:
        p = self.p
        p.stage += 1
        if p.stage >= len(p.stages):
            return self._begin_final(now)
        names = p.stages[p.stage]
        out: list[Action] = [
            Event(
                "stage",
                f"stage {p.stage + 1}/{len(p.stages)}: {', '.join(names)}",
                data={"hosts": names},
            )
        ]
        budget = self._budget(now, p.stage)
        for name in names:
            host = self.plan.hosts[name]
            scale = 1.0 if budget is None or budget >= host.needs else budget / host.needs
            p.hosts[name].scale = scale
            if scale < 1.0:
                out.append(
                    Event(
                        "deadline-shrunk",
                        f"{name}: the battery covers only {scale:.0%} of its declared time",
                        host=name,
                    )
                )
            out += self._host_step(name, "drain" if host.drains else "stop", now)
        return out

    def _budget(self, now: float, stage: int) -> float | None:
        """Seconds of runtime left for ``stage``, after the reserve and what follows it."""
        p, r = self.p, self._view()
        if r is None or r.runtime is None or p.reading_at is None:
            return None
        later = sum(max(self.plan.hosts[n].needs for n in s) for s in p.stages[stage + 1 :])
        later += self._final_needs()
        left = r.runtime - (now - p.reading_at) - self.plan.policy.reserve - later
        return max(left, 0.0)

    def _view(self) -> UpsReading | None:
        """The reading the battery budget and restart charge come from: with redundancy, the
        UPSes the shutdown is for (a UPS still on mains does not shorten its deadlines)."""
        p = self.p
        if not self.redundant or not p.lost:
            return p.reading
        readings = [sp.reading for a, sp in p.supplies.items() if a in p.lost and sp.reading]
        return combine(readings) if readings else p.reading

    def _final_needs(self) -> float:
        pol, me = self.plan.policy, self.plan.hosts[self.me]
        secondaries = pol.secondaries_wait if self._fsd_enabled() else 0.0
        return secondaries + me.needs

    def _fsd_enabled(self) -> bool:
        return self.plan.policy.fsd and any(u.username for u in self.plan.upses)

    def _host_step(
        self, name: str, step: str, now: float, deadline: float | None = None
    ) -> list[Action]:
        host, hp = self.plan.hosts[name], self.p.hosts[name]
        if deadline is None:
            span = {"drain": host.drain_time, "stop": host.stop_time}.get(step, host.start_time)
            deadline = now + max(1.0, span * (hp.scale if step in ("drain", "stop") else 1.0))
        self.p.seq += 1
        key = f"{name}:{step}"
        task = Task(self.p.seq, "host", step, deadline, name)
        self.p.running[key] = task
        hp.state, hp.since, hp.detail = STEP_STATE[step], now, ""
        return [
            Event(
                "step",
                f"{_VERBS[step]} {name} (up to {deadline - now:.0f}s)",
                host=name,
                data={"step": step, "deadline": deadline},
            ),
            self._action(key, task),
        ]

    def _action(self, key: str, task: Task) -> Action:
        if task.kind == "host" or task.step in ("self-drain", "self-stop"):
            host = task.host or self.me
            return RunStep(key, task.seq, host, task.step.removeprefix("self-"), task.deadline)
        upses = tuple(self.p.step_upses.get(task.step, ()))
        if task.step == "fsd":
            return SetFsd(key, task.seq, upses)
        if task.step == "secondaries":
            return WaitSecondaries(key, task.seq, task.deadline, upses)
        return CutPower(key, task.seq, upses)

    def _finished(self, key: str, task: Task, result: StepResult, now: float) -> list[Action]:
        del self.p.running[key]
        outcome = "ok" if result.ok else ("timed out" if result.timed_out else "failed")
        detail = f": {result.detail}" if result.detail else ""
        if task.kind == "final":
            return self._final_done(task, result, f"{task.step} {outcome}{detail}", now)
        name = task.host
        assert name is not None
        host = self.plan.hosts[name]
        out: list[Action] = [
            Event(
                "step-done",
                f"{task.step} {name}: {outcome}{detail}",
                host=name,
                data={"step": task.step, "ok": result.ok},
            )
        ]
        if task.step == "drain":
            out += self._host_step(name, "stop", now)
        elif task.step == "stop":
            if host.confirm is not None:
                out += self._host_step(name, "confirm", now, max(task.deadline, now + 1.0))
            else:
                out += self._settle(
                    name,
                    HostState.DOWN if result.ok else HostState.FAILED,
                    now,
                    f"stop {outcome}{detail}",
                )
        elif task.step == "confirm":
            out += self._settle(
                name,
                HostState.DOWN if result.ok else HostState.FAILED,
                now,
                "confirmed down" if result.ok else "never confirmed it was down",
            )
        elif task.step == "start":
            if host.ready is not None:  # even a failed start: the host may be up anyway
                out += self._host_step(name, "ready", now, max(task.deadline, now + 1.0))
            else:
                out += self._settle(
                    name,
                    HostState.STARTED if result.ok else HostState.FAILED,
                    now,
                    f"start {outcome}{detail}",
                )
        elif task.step == "ready":
            out += self._settle(
                name,
                HostState.UP if result.ok else HostState.FAILED,
                now,
                "ready" if result.ok else "not ready in time",
            )
        return out

    def _settle(self, name: str, state: HostState, now: float, detail: str) -> list[Action]:
        hp = self.p.hosts[name]
        hp.state, hp.since, hp.detail = state, now, detail
        return [Event(f"host-{state.value}", f"{name} is {state.value}: {detail}", host=name)]

    def _stage_done(self, stages: list[list[str]], index: int) -> bool:
        if not 0 <= index < len(stages):
            return True
        names = set(stages[index])
        return not any(t.host in names for t in self.p.running.values())

    # -- the end: FSD, cutting power, the coordinator itself -------------------------------

    def _begin_final(self, now: float) -> list[Action]:
        p, pol, me = self.p, self.plan.policy, self.plan.hosts[self.me]
        p.phase = Phase.FINAL
        if self.redundant:
            return self._begin_final_redundant(now)
        steps = []
        if self._fsd_enabled():
            early = pol.fsd_at == "start"
            steps = ["secondaries"] if early else ["fsd", "secondaries"]
        if me.drains:
            steps.append("self-drain")
        if pol.cut_power:
            steps.append("cut-power")
        if me.stop is not None:
            steps.append("self-stop")
        p.final_steps, p.final = steps, -1
        return [Event("final", "every stage done: " + (", ".join(steps) or "nothing left"))]

    def _begin_final_redundant(self, now: float) -> list[Action]:
        """FSD, the wait and shutdown.return for the lost UPSes that feed a stopped host;
        the coordinator's own steps only if it lost its power too."""
        p, pol, me = self.p, self.plan.policy, self.plan.hosts[self.me]
        stopped = {n for n, h in p.hosts.items() if h.state in STOPPED}
        if p.stop_self:
            stopped.add(self.me)
        aim = targets(self.plan, set(p.lost), stopped)
        logins = self._logins(aim)
        steps: list[str] = []
        if pol.fsd and logins:
            told = [a for a in logins if a not in p.fsd_upses]
            if told and not (pol.fsd_at == "start" and "fsd" in p.step_upses):
                steps.append("fsd")
            steps.append("secondaries")
            p.step_upses["fsd"] = told
            p.step_upses["secondaries"] = logins
        if p.stop_self and me.drains:
            steps.append("self-drain")
        uncut = [a for a in aim if a not in p.cut_upses]  # an earlier shutdown asked those
        if pol.cut_power and uncut:
            steps.append("cut-power")
            p.step_upses["cut-power"] = uncut
        if p.stop_self and me.stop is not None:
            steps.append("self-stop")
        p.final_steps, p.final = steps, -1
        return [
            Event(
                "final",
                "every stage done: " + (", ".join(steps) or "nothing left"),
                data={"upses": aim},
            )
        ]

    @property
    def _the_ups(self) -> str:
        return "the UPS" if len(self.plan.upses) == 1 else "every UPS"

    def _ups_words(self, step: str) -> str:
        if not self.redundant:
            return self._the_ups
        return ", ".join(self._name(a) for a in self.p.step_upses.get(step, ())) or "no UPS"

    def _final_running(self) -> bool:
        return any(t.kind == "final" for t in self.p.running.values())

    def _next_final(self, now: float) -> list[Action]:
        p = self.p
        p.final += 1
        if p.final >= len(p.final_steps):
            p.phase = Phase.DOWN
            if self.redundant and not p.stop_self:
                stopped = sorted(n for n, h in p.hosts.items() if h.state in STOPPED)
                return [
                    Event(
                        "down",
                        f"shutdown complete: {', '.join(stopped) or 'nothing'} asked to stop; "
                        f"{self.me} keeps watching",
                    )
                ]
            p.hosts[self.me].state = HostState.DOWN
            return [Event("down", "shutdown complete: everything was asked to stop")]
        step = p.final_steps[p.final]
        skip = None
        if step == "secondaries" and p.fsd_failed:
            skip = "FSD could not be set, so no NUT secondary was told to go"
        elif step == "secondaries" and not self._countable():
            skip = "the UPS server cannot be reached, so its logins cannot be counted"
        if skip is not None:
            event = Event("step-skipped", f"not waiting for NUT secondaries: {skip}")
            return [event, *self._next_final(now)]
        return self._final_task(step, now)

    def _countable(self) -> bool:
        """Some UPS whose secondaries are waited for can be reached."""
        p = self.p
        if not self.redundant:
            return p.comm_ok
        return any(p.supplies[a].comm_ok for a in p.step_upses.get("secondaries", ()))

    def _final_task(self, step: str, now: float) -> list[Action]:
        p = self.p
        me = self.plan.hosts[self.me]
        span = {
            "secondaries": self.plan.policy.secondaries_wait,
            "self-drain": me.drain_time,
            "self-stop": me.stop_time,
        }.get(step, 10.0)
        p.seq += 1
        task = Task(p.seq, "final", step, now + max(span, 1.0), self.me)
        p.running[step] = task
        if step in ("self-drain", "self-stop"):
            p.hosts[self.me].state = STEP_STATE[step.removeprefix("self-")]
        text = {
            "fsd": f"setting FSD on {self._ups_words('fsd')} for NUT secondaries",
            "secondaries": f"waiting up to {span:g}s for NUT secondaries to log out",
            "self-drain": f"draining the coordinator {self.me}",
            "cut-power": (
                f"asking {self._ups_words('cut-power')} to cut power and restore it "
                "(shutdown.return)"
            ),
            "self-stop": f"stopping the coordinator {self.me}",
        }[step]
        return [
            Event(
                "step", text, host=self.me if step.startswith("self") else None, data={"step": step}
            ),
            self._action(step, task),
        ]

    def _final_done(self, task: Task, result: StepResult, text: str, now: float) -> list[Action]:
        p = self.p
        if task.step == "fsd":
            p.fsd_ours, p.fsd_failed = result.ok, not result.ok
            if self.redundant and result.ok:
                p.fsd_upses += [a for a in p.step_upses.get("fsd", ()) if a not in p.fsd_upses]
        if task.step == "cut-power" and result.ok:
            if self.redundant:
                asked = list(p.step_upses.get("cut-power", ()))
                p.cut_upses += [a for a in asked if a not in p.cut_upses]
                cut = [p.supplies[a].reading for a in asked]
                delays = [
                    finite_number(r.variables.get("ups.delay.shutdown")) if r else None for r in cut
                ]
            else:
                variables = p.reading.variables if p.reading is not None else {}
                delays = [finite_number(variables.get("ups.delay.shutdown"))]
            delay = max(
                (DEFAULT_DELAY_SHUTDOWN if d is None else max(d, 0.0) for d in delays),
                default=DEFAULT_DELAY_SHUTDOWN,
            )
            until = now + delay + LOAD_CUT_MARGIN
            if self.redundant and p.load_cut_until is not None:  # an earlier cut still pending
                until = max(until, p.load_cut_until)
            p.load_cut_until = until
        return [Event("step-done", text, data={"step": task.step, "ok": result.ok})]

    def _load_cut_pending(self, now: float) -> bool:
        """The UPS accepted shutdown.return and has not yet cut and restored its load."""
        p = self.p
        if p.load_cut_until is None:
            return False
        if self.redundant:
            cut = [p.supplies[a].reading for a in p.cut_upses if a in p.supplies]
        else:
            cut = [p.reading]
        for r in cut:
            timer = finite_number(r.variables.get("ups.timer.shutdown")) if r is not None else None
            if r is not None and (r.output_off or (timer is not None and timer > 0)):
                return True  # off, or counting down to it: wait for the load to come back
        if now < p.load_cut_until:
            return True
        p.load_cut_until, p.waiting_charge_logged = None, False
        return False

    # -- recovery --------------------------------------------------------------------------

    def _begin_recovery(self, now: float) -> list[Action]:
        p = self.p
        p.phase, p.cut_since = Phase.RECOVERING, None
        order = [
            [n for n in stage if p.hosts[n].state in STOPPED] for stage in reversed(self.stages)
        ]
        p.recovery, p.recovery_stage, p.waiting_charge_logged = [s for s in order if s], -1, False
        if p.hosts[self.me].state in STOPPED:  # we are running, so we are up
            p.hosts[self.me].state = HostState.UP
        return [
            Event(
                "recovering",
                "mains is back: hosts start again once the battery "
                f"holds {self.plan.policy.restart_charge:g}%",
                data={"order": p.recovery},
            )
        ]

    def _advance_recovery(self, now: float) -> list[Action]:
        p = self.p
        if not self._stage_done(p.recovery, p.recovery_stage):
            return []
        if p.recovery_stage < 0 and self._load_cut_pending(now):
            if p.waiting_charge_logged:
                return []
            p.waiting_charge_logged = True
            return [
                Event(
                    "waiting-load-cut",
                    "the UPS accepted shutdown.return: no host starts until it has cut and "
                    "restored its load (its output shows OFF, then on) or "
                    f"{p.load_cut_until - now:.0f}s have passed without a cut",
                )
            ]
        if p.recovery_stage < 0:
            view = self._view()
            charge = view.charge if view else None
            if charge is not None and charge < self.plan.policy.restart_charge:
                if p.waiting_charge_logged:
                    return []
                p.waiting_charge_logged = True
                return [
                    Event(
                        "waiting-charge",
                        f"battery at {charge:g}%: waiting for "
                        f"{self.plan.policy.restart_charge:g}% before starting hosts",
                    )
                ]
        p.recovery_stage += 1
        if p.recovery_stage >= len(p.recovery):
            p.phase, p.reason, p.shutdown_started = Phase.ONLINE, None, None
            p.stages, p.stage, p.recovery, p.recovery_stage = [], -1, [], -1
            p.final_steps, p.final = [], -1
            p.lost, p.stop_self, p.step_upses, p.cut_upses = {}, False, {}, []
            return [
                Event(
                    "recovered",
                    "recovery complete: "
                    + ", ".join(f"{n} {h.state.value}" for n, h in sorted(p.hosts.items())),
                )
            ]
        out: list[Action] = []
        for name in p.recovery[p.recovery_stage]:
            host = self.plan.hosts[name]
            if host.start is not None:
                out += self._host_step(name, "start", now)
            elif host.ready is not None:
                out += self._host_step(name, "ready", now)
            else:
                out += self._settle(name, HostState.UNKNOWN, now, "no start or ready command")
        return out

    def _notify(self, kind: str, message: str, data: dict[str, object] | None = None) -> Event:
        names = ",".join(u.address.ups for u in self.plan.upses)
        return Event(kind, f"{names}: {message}", data=dict(data or {}))
