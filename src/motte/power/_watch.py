"""``motte power watch``: the asyncio driver around the coordinator's state machine.

One loop: wait for the next input (a reading or a lost link from a UPS's monitor, a step result
from a runner) or for the coordinator's next timer, hand it to the coordinator, **save its
progress**, then carry out the actions it returned. Saving before acting means a coordinator
killed at any point restarts knowing every step it had started; the steps in flight are
issued again with their original deadlines (so stop commands must be safe to repeat, as
``poweroff`` is).

A plan may watch several UPSes: one monitor runs per UPS, and :class:`~._combine.Supplies`
turns their news into the one view the coordinator acts on (every UPS a required supply).
Actions on the UPS (FSD, ``shutdown.return``) go to every UPS; the wait for NUT secondaries
counts their logins over all of them. With redundancy (hosts with ``supplies``) the
coordinator is fed each UPS's own readings instead, and names the UPSes each action goes to.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from motte.fsutil import atomic_write_text
from motte.home import motte_home
from motte.power._combine import Supplies, Update
from motte.power._coordinator import Coordinator
from motte.power._errors import PowerError
from motte.power._monitor import LoginRefused, Lost, Reading, UpsMonitor
from motte.power._notify import EventLog, Notifier, event_record
from motte.power._plan import Plan, UpsConfig
from motte.power._progress import (
    Action,
    Cancel,
    CutPower,
    Event,
    Progress,
    RunStep,
    SetFsd,
    StepResult,
    WaitSecondaries,
)
from motte.power._runner import HostRunner
from motte.power._status import UpsReading
from motte.power.nut import NutError

EventSink = Callable[[dict[str, Any]], None]

#: A ``reading`` record (status, charge, runtime, load) goes to the event log at least this
#: often per UPS, at once when the status changes, and when the charge has moved by a point
#: (but not more than once a second): the history ``motte console`` charts. A UPS on mains
#: costs a line a minute; a discharging one about a line per percent of charge.
READING_EVERY = 60.0
READING_MIN_GAP = 1.0


def power_dir() -> Path:
    return motte_home() / "power"


def state_path(plan_name: str) -> Path:
    return power_dir() / f"{plan_name}.state.json"


def default_log_path(plan_name: str) -> Path:
    return power_dir() / f"{plan_name}.events.jsonl"


def load_state(path: Path) -> tuple[Progress | None, dict[str, Any]]:
    """The saved progress and the watch's own notes, or (None, {}) when there is none."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, {}
    except (OSError, ValueError) as e:
        raise PowerError(
            f"{path}: cannot read coordinator state: {e}",
            hint="move the file aside to start afresh",
        ) from None
    return Progress.from_dict(data, str(path)), dict(data.get("watch", {}))


class Watch:
    def __init__(
        self,
        plan: Plan,
        *,
        on_event: EventSink | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.plan = plan
        self.clock = clock
        self.on_event = on_event
        self.state_file = state_path(plan.name)
        self.log_path = plan.notify.log or default_log_path(plan.name)
        progress, meta = load_state(self.state_file)
        self.coordinator = Coordinator(plan, progress)
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.monitors = {
            str(ups.address): UpsMonitor(
                ups,
                self.queue,
                role="primary" if ups.username else None,
                poll_interval=plan.policy.poll_interval,
            )
            for ups in plan.upses
        }
        self.upses = {str(ups.address): ups for ups in plan.upses}
        self.supplies = Supplies(
            [ups.address for ups in plan.upses], nocomm_after=plan.policy.nocomm_after
        )
        for saved in meta.get("upses", []):  # stale: for the dead-UPS rule only
            if isinstance(saved, dict) and saved.get("reading"):
                self.supplies.seed(
                    str(saved.get("address")),
                    UpsReading.from_dict(saved["reading"]),
                    saved.get("reading_at"),
                )
        self.runner = HostRunner(plan, clock=clock)
        #: Plan-level events (SHUTDOWN, steps) name every UPS, joined with commas.
        self.all_names = ",".join(ups.address.ups for ups in plan.upses)
        self.all_addresses = ",".join(self.upses)
        self.notifier = Notifier(plan.notify.command, plan.notify.events, self.all_names)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._saved: str | None = None
        self._log: EventLog | None = None
        self._monitor_tasks: list[asyncio.Task[None]] = []
        self._sampled: dict[str, tuple[float, UpsReading]] = {}
        #: The reading each reachable UPS last gave (an unreachable one is absent).
        self._reachable: dict[str, UpsReading] = {}
        #: UPSes FSD was set on; after a restart, every UPS (the latch is upsd's, not ours).
        self._fsd_set: set[str] = (
            set(self.coordinator.p.fsd_upses)
            if self.coordinator.redundant
            else set(self.upses)
            if self.coordinator.p.fsd_ours
            else set()
        )

    async def run(self) -> None:
        """Run until cancelled, or until the UPS server refuses our login."""
        lock = _lock_plan(self.plan.name)
        try:
            await self._run()
        finally:
            os.close(lock)

    async def _run(self) -> None:
        self._log = EventLog(self.log_path)
        for address, m in self.monitors.items():
            task = asyncio.create_task(m.run(), name=f"ups-monitor {address}")
            task.add_done_callback(lambda t: self.queue.put_nowait(_MonitorEnded(t)))
            self._monitor_tasks.append(task)
        try:
            await self._act(self.coordinator.resume(self.clock()))
            while True:
                wake = self._next_wakeup()
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that races with the result, and the watch would never stop.
                timeout = None if wake is None else max(wake - self.clock(), 0.01)
                try:
                    async with asyncio.timeout(timeout):
                        item = await self.queue.get()
                except TimeoutError:
                    item = None
                await self._act(self._feed(item))
        finally:
            for task in [*self._monitor_tasks, *self._tasks.values(), *self._background]:
                task.cancel()
            await asyncio.gather(
                *self._monitor_tasks,
                *self._tasks.values(),
                *self._background,
                return_exceptions=True,
            )
            self._log.close()

    def _feed(self, item: object) -> list[Action]:
        now, c = self.clock(), self.coordinator
        if isinstance(item, Reading):
            self._sample(item.ups, item.reading, now)
            self._reachable[item.ups] = item.reading
            actions = self._supply(item.ups, self.supplies.observe(item.ups, item.reading, now))
        elif isinstance(item, Lost):
            self._reachable.pop(item.ups, None)
            actions = self._supply(item.ups, self.supplies.comm_lost(item.ups, item.reason, now))
        elif isinstance(item, StepResult):
            self._tasks.pop(item.key, None)
            actions = c.completed(item, now)
        elif isinstance(item, _MonitorEnded):
            if not item.task.cancelled():
                item.task.result()  # re-raise its crash, if it crashed
            return []  # it ended after reporting LoginRefused, which is handled below
        elif isinstance(item, LoginRefused):
            raise PowerError(
                f"NUT server {item.ups} refused the login: {item.error}",
                hint=item.error.hint or "check ups.username and its password, and upsd.users",
            )
        else:
            actions = c.tick(now)
        for address, kind, message in self.supplies.tick(now):
            self._emit(Event(kind, message), ups=self.upses[address])
        wake = c.next_wakeup()
        if item is not None and wake is not None and wake <= now:
            actions += c.tick(now)  # a busy queue must not starve the timers
        return actions

    def _sample(self, address: str, reading: UpsReading, now: float) -> None:
        """Log ``reading`` as a ``reading`` record when one is due (not shown, not notified)."""
        last = self._sampled.get(address)
        if last is not None and last[1].status == reading.status:
            at, before = last
            moved = (
                reading.charge is not None
                and before.charge is not None
                and abs(reading.charge - before.charge) >= 1.0
            )
            if now - at < READING_MIN_GAP or (now - at < READING_EVERY and not moved):
                return
        self._sampled[address] = (now, reading)
        event = Event("reading", reading.describe(), data=reading.to_dict())
        assert self._log is not None
        self._log.write(event_record(event, plan=self.plan.name, ups=address, now=now))

    def _next_wakeup(self) -> float | None:
        times = [self.coordinator.next_wakeup(), self.supplies.next_wakeup()]
        return min((t for t in times if t is not None), default=None)

    def _supply(self, address: str, update: Update) -> list[Action]:
        """One UPS's news: its own events (several UPSes), then what the coordinator hears."""
        now, c = self.clock(), self.coordinator
        if not c.ups_events:  # several UPSes: name the one that changed
            for kind, message in update.events:
                self._emit(Event(kind, message), ups=self.upses[address])
        if c.redundant:  # each UPS judged on its own: the combined view is not fed
            if address in self._reachable:
                return c.observe_ups(address, self._reachable[address], now)
            return c.ups_lost(address, self.supplies.lost[address] or "unreachable", now)
        if update.lost is not None:
            return c.comm_lost(now, update.lost)
        if update.reading is not None:
            return c.observe(update.reading, now)
        return []

    async def _act(self, actions: list[Action]) -> None:
        self._save()
        for action in actions:
            if isinstance(action, Event):
                self._emit(action)
            elif isinstance(action, Cancel):
                task = self._tasks.pop(action.key, None)
                if task is not None:
                    task.cancel()
            else:
                key = getattr(action, "key")  # noqa: B009 - every other action carries one
                old = self._tasks.pop(key, None)
                if old is not None:
                    old.cancel()
                self._tasks[key] = asyncio.create_task(self._carry_out(action), name=key)

    async def _carry_out(self, action: Action) -> None:
        assert isinstance(action, RunStep | SetFsd | WaitSecondaries | CutPower)
        if isinstance(action, RunStep):
            result = await self.runner.run(action)
        else:
            try:
                detail = await self._ups_step(action)
                result = StepResult(action.key, action.seq, True, detail)
            except (PowerError, NutError) as e:
                result = StepResult(
                    action.key, action.seq, False, str(e), timed_out=isinstance(e, _Timeout)
                )
        await self.queue.put(result)

    async def _ups_step(self, action: SetFsd | WaitSecondaries | CutPower) -> str:
        if isinstance(action, SetFsd | CutPower):
            # Every UPS the plan logs into: each one's secondaries must hear FSD, and each
            # one's load is cut. One UPS refusing does not spare the others.
            many = len(self.monitors) > 1
            done, failed = [], []
            aim = action.upses or tuple(self.monitors)  # with redundancy: only those named
            for address, m in self.monitors.items():
                if address not in aim:
                    continue
                if isinstance(action, SetFsd) and self.upses[address].username is None:
                    continue  # no login: FSD cannot be set there (plan check warned)
                try:
                    if isinstance(action, SetFsd):
                        await m.fsd()
                        self._fsd_set.add(address)
                    else:
                        await m.instcmd("shutdown.return")
                    done.append(address)
                except (PowerError, NutError) as e:
                    failed.append(f"{address}: {e}" if many else str(e))
            if failed and not done:
                raise PowerError("; ".join(failed))
            # Done on some: the step counts as done (their secondaries are going, their load
            # cut is pending, and both must be waited for), and the detail names the others.
            refused = f"; not on {'; '.join(failed)}" if failed else ""
            if isinstance(action, SetFsd):
                return (f"FSD set on {', '.join(done)}" if many else "FSD set") + refused
            if many:
                return f"{', '.join(done)} accepted shutdown.return{refused}"
            return "the UPS accepted shutdown.return"
        # Only UPSes we set FSD on have secondaries told to go, and only a reachable one can
        # count them: waiting on any other would burn the whole timeout for nothing.
        aim = action.upses or tuple(self.monitors)
        counted = {a: m for a, m in self.monitors.items() if a in self._fsd_set and a in aim}
        skipped = sorted(set(aim) - set(counted))
        while True:
            waiting = 0
            for address, m in list(counted.items()):
                ours = 1 if self.upses[address].username else 0
                try:
                    waiting += max(await m.num_logins() - ours, 0)
                except (PowerError, NutError):
                    del counted[address]  # unreachable now: its secondaries cannot be counted
                    skipped.append(address)
            note = f" (not counted: {', '.join(skipped)})" if skipped else ""
            if not counted:
                return f"no UPS to count secondaries on{note}"
            if waiting == 0:
                return f"every secondary logged out{note}"
            if self.clock() >= action.deadline:
                raise _Timeout(f"{waiting} secondaries still logged in{note}")
            await asyncio.sleep(0.5)

    def _emit(self, event: Event, ups: UpsConfig | None = None) -> None:
        """Log and show ``event``, naming ``ups`` (the UPS it is about) or every UPS."""
        named = event.data.get("upses") if ups is None else None
        if ups is not None:
            address = str(ups.address)
        elif named:  # with redundancy: the UPSes a shutdown is for
            address = ",".join(named)
        else:
            address = self.all_addresses
        record = event_record(event, plan=self.plan.name, ups=address, now=self.clock())
        assert self._log is not None
        self._log.write(record)
        if self.on_event is not None:
            self.on_event(record)
        if self.notifier.wants(event.kind):
            task = asyncio.create_task(self._notify(event, ups))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _notify(self, event: Event, ups: UpsConfig | None) -> None:
        name = ups.address.ups if ups is not None else None
        if name is None and event.data.get("upses"):
            name = ",".join(self.upses[a].address.ups for a in event.data["upses"])
        result = await self.notifier.notify(event.kind, event.message, name)
        if not result.ok:
            self._emit(
                Event("notify-failed", f"notify command for {event.kind}: {result.describe()}")
            )

    def _save(self) -> None:
        data = self.coordinator.p.to_dict()
        upses = self.supplies.to_list()
        text = json.dumps([data, upses], sort_keys=True)
        if text == self._saved:
            return
        data["watch"] = {
            "pid": os.getpid(),
            "plan": str(self.plan.source),
            "log": str(self.log_path),
            "saved": self.clock(),
            "upses": upses,
        }
        atomic_write_text(
            self.state_file, json.dumps(data, indent=1, sort_keys=True) + "\n", mode=0o640
        )
        self._saved = text


def _lock_plan(name: str) -> int:
    """One watch per plan: two would both act on the same hosts and fight over the state."""
    path = power_dir() / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise PowerError(
            f"another motte power watch is running plan {name!r} (pid {holder})",
            hint="stop it first; `motte power status` shows what it is doing",
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


class _Timeout(PowerError):
    pass


class _MonitorEnded:
    """A UPS monitor's task ended (after a refused login, or a crash to re-raise)."""

    def __init__(self, task: asyncio.Task[None]) -> None:
        self.task = task
