"""Secondary mode: follow a primary (a motte coordinator or upsmon) and shut down on FSD.

This is upsmon's secondary role, for a host that runs motte but is not the coordinator. It
logs in to the UPS's server as a secondary (so the primary counts it in NUMLOGINS and waits
for it) and shuts this host down when:

- the UPS shows FSD: the primary has decided, go now;
- the UPS shows OB+LB but no FSD came within ``hostsync`` seconds: the primary may be gone,
  so go anyway (upsmon's HOSTSYNC rule);
- the server has been unreachable for ``dead_after`` seconds after the UPS was last seen on
  battery (upsmon's dead-UPS rule).

Shutting down is: the SHUTDOWN event, the drain command (Keeps stop accepting and finish
in-flight work), the shutdown command, and exiting, which closes the connection and so tells
the primary this host is done.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from motte.power._errors import PowerError
from motte.power._monitor import LoginRefused, Lost, Reading, UpsMonitor
from motte.power._notify import EventLog, Notifier, event_record
from motte.power._plan import UpsConfig
from motte.power._progress import Event
from motte.power._runner import CommandResult, run_command
from motte.power._status import UpsReading, status_events


@dataclass(frozen=True, slots=True)
class ShutdownNow:
    reason: str


class SecondaryCore:
    """The secondary's decisions, pure: fed readings and times, answers events and a verdict."""

    def __init__(self, *, hostsync: float = 15.0, dead_after: float = 15.0) -> None:
        self.hostsync = hostsync
        self.dead_after = dead_after
        self.reading: UpsReading | None = None
        self.comm_ok = True
        self.lost_since: float | None = None
        self.critical_since: float | None = None
        self.done = False

    def observe(self, reading: UpsReading, now: float) -> list[Event | ShutdownNow]:
        out: list[Event | ShutdownNow] = []
        if not self.comm_ok:
            self.comm_ok, self.lost_since = True, None
            out.append(Event("COMMOK", f"UPS reachable again: {reading.describe()}"))
        if reading.waiting:
            return out
        out += [Event(kind, reading.describe()) for kind in status_events(self.reading, reading)]
        self.reading = reading
        if "OB" in reading.status and "LB" in reading.status and "FSD" not in reading.status:
            self.critical_since = self.critical_since or now
        else:
            self.critical_since = None
        return out + self.tick(now)

    def comm_lost(self, now: float, reason: str) -> list[Event | ShutdownNow]:
        out: list[Event | ShutdownNow] = []
        if self.comm_ok:
            self.comm_ok, self.lost_since = False, now
            out.append(Event("COMMBAD", f"UPS unreachable: {reason}"))
        return out + self.tick(now)

    def tick(self, now: float) -> list[Event | ShutdownNow]:
        reason = self._reason(now)
        if reason is None or self.done:
            return []
        self.done = True
        return [ShutdownNow(reason)]

    def _reason(self, now: float) -> str | None:
        r = self.reading
        if r is None:
            return None
        if "FSD" in r.status:
            return "the primary set FSD"
        if self.critical_since is not None and now - self.critical_since >= self.hostsync:
            return f"OB LB for {self.hostsync:g}s and no FSD from the primary"
        if (
            not self.comm_ok
            and r.on_battery
            and self.lost_since is not None
            and now - self.lost_since >= self.dead_after
        ):
            return "UPS unreachable while on battery (a dead UPS counts as low battery)"
        return None

    def next_wakeup(self) -> float | None:
        times = []
        if self.critical_since is not None:
            times.append(self.critical_since + self.hostsync)
        if not self.comm_ok and self.lost_since is not None:
            times.append(self.lost_since + self.dead_after)
        return min(times, default=None)


async def run_secondary(
    config: UpsConfig,
    *,
    shutdown: tuple[str, ...],
    drain: tuple[str, ...] | None = None,
    drain_time: float = 30.0,
    hostsync: float = 15.0,
    dead_after: float = 15.0,
    poll_interval: float = 0.5,
    notify: Notifier | None = None,
    log: EventLog | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> CommandResult:
    """Follow the UPS until it is time to go; then drain, shut down, and return."""
    queue: asyncio.Queue[object] = asyncio.Queue()
    role = "secondary" if config.username else None
    monitor = UpsMonitor(config, queue, role=role, poll_interval=poll_interval)
    core = SecondaryCore(hostsync=hostsync, dead_after=dead_after)
    ups = str(config.address)

    def emit(event: Event) -> None:
        record = event_record(event, plan="secondary", ups=ups, now=clock())
        if log is not None:
            log.write(record)
        if on_event is not None:
            on_event(record)

    async def announce(event: Event) -> None:
        emit(event)
        if notify is not None and notify.wants(event.kind):
            await notify.notify(event.kind, event.message)

    task = asyncio.create_task(monitor.run())
    try:
        verdict: ShutdownNow | None = None
        while verdict is None:
            wake = core.next_wakeup()
            timeout = None if wake is None else max(wake - clock(), 0.01)
            try:
                async with asyncio.timeout(timeout):
                    item = await queue.get()
            except TimeoutError:
                item = None
            if isinstance(item, LoginRefused):
                raise PowerError(
                    f"NUT server {ups} refused the login: {item.error}", hint=item.error.hint
                )
            if isinstance(item, Reading):
                out = core.observe(item.reading, clock())
            elif isinstance(item, Lost):
                out = core.comm_lost(clock(), item.reason)
            else:
                out = core.tick(clock())
            for entry in out:
                if isinstance(entry, ShutdownNow):
                    verdict = entry
                else:
                    await announce(entry)
        await announce(Event("SHUTDOWN", f"shutting this host down: {verdict.reason}"))
        if drain is not None:
            result = await run_command(
                drain,
                timeout=drain_time,
                env={"MOTTE_STEP": "drain", "MOTTE_DEADLINE": str(int(drain_time))},
            )
            emit(Event("step-done", f"drain: {result.describe()}", data={"ok": result.ok}))
        result = await run_command(shutdown, timeout=60.0, env={"MOTTE_STEP": "stop"})
        emit(Event("step-done", f"shutdown command: {result.describe()}", data={"ok": result.ok}))
        return result
    finally:
        task.cancel()  # closing the connection is the logout the primary waits for
        await asyncio.gather(task, return_exceptions=True)
