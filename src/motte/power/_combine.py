"""Several UPSes, one view: what the coordinator sees when a plan watches more than one.

A plan may name several UPSes (``[[ups]]``). Every one of them is a *required* supply, as in
upsmon with ``MINSUPPLIES`` equal to the number of supplies: the conservative choice, since
the plan cannot tell which host hangs on which UPS. The coordinator is fed one combined
reading (:func:`combine`):

- the status says OB when any UPS is on battery (OL only when none is), LB when any says LB,
  FSD when any says FSD (and every other token any of them reports);
- the charge is the lowest charge, the runtime the lowest runtime of those that report one,
  the load the highest.

:class:`Supplies` keeps each UPS's last reading and link, and says what the coordinator must
hear: the combined reading, once every UPS has been read (or found unreachable) since the
start. An unreachable UPS is judged as upsmon judges a dead one: last seen on line, it is
assumed still on line (its last reading stays in the view, so the others are still acted on:
a cut on another UPS must not wait for a switch to come back); last seen on battery, the
coordinator hears a lost link and its dead-UPS rule applies (on battery and unreachable for
``dead_after`` counts as critical). A UPS never seen is not assumed critical either (upsmon:
"a UPS that isn't critical is supplying power"): it is left out of the view, so a wrong
address or a upsd still starting never shuts the lab down, nor keeps the other UPSes from
being acted on; it raises COMMBAD, then NOCOMM. A reading saved by an earlier run (seeded
after a restart) counts only for that dead-UPS rule: it is not in the view until the UPS is
read again. With one UPS the coordinator hears every lost link, as before. It also names the
upsmon events of each UPS (ONBATT, COMMBAD, NOCOMM, ...) so notifications say which UPS
changed. Pure: no sockets; the time is passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from motte.power._status import EVENT_TEXT, UpsReading, status_events
from motte.power.nut import UpsAddress


def combine(readings: Sequence[UpsReading]) -> UpsReading:
    """One reading for several UPSes, every one of them a required supply."""
    if not readings:
        raise ValueError("combine needs at least one reading")
    if len(readings) == 1:
        return readings[0]
    tokens: list[str] = []
    for r in readings:
        tokens += [t for t in r.status if t not in tokens]
        if r.waiting and "WAIT" not in tokens:
            tokens.append("WAIT")  # one UPS still unknown: the whole view says nothing yet
    if "OB" in tokens and "OL" in tokens:
        tokens.remove("OL")
    if "OB" in tokens and "CHRG" in tokens:
        tokens.remove("CHRG")

    def lowest(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return min(known) if known else None

    loads = [r.load for r in readings if r.load is not None]
    return UpsReading(
        status=tuple(tokens),
        charge=lowest([r.charge for r in readings]),
        runtime=lowest([r.runtime for r in readings]),
        load=max(loads) if loads else None,
    )


@dataclass(slots=True)
class Update:
    """What one UPS's news means: events about it, and what the coordinator must hear."""

    #: upsmon events about this UPS: (kind, message).
    events: list[tuple[str, str]] = field(default_factory=list)
    #: The combined reading to feed the coordinator (None: nothing to feed).
    reading: UpsReading | None = None
    #: Tell the coordinator the link is lost, with this reason (None: it is not).
    lost: str | None = None


class Supplies:
    """Each UPS's last reading and link; keyed by address (``str(UpsAddress)``)."""

    def __init__(self, addresses: Sequence[UpsAddress], *, nocomm_after: float = 300.0) -> None:
        if not addresses:
            raise ValueError("a plan watches at least one UPS")
        self.names = {str(a): a.ups for a in addresses}
        self.nocomm_after = nocomm_after
        self.readings: dict[str, UpsReading | None] = dict.fromkeys(self.names)
        self.read_at: dict[str, float | None] = dict.fromkeys(self.names)
        self.lost: dict[str, str | None] = dict.fromkeys(self.names)
        self.lost_since: dict[str, float | None] = dict.fromkeys(self.names)
        self.nocomm_told: set[str] = set()
        #: Readings an earlier run saved: stale, for the dead-UPS rule only.
        self.stale: set[str] = set()

    def seed(self, address: str, reading: UpsReading, read_at: float | None) -> None:
        """What an earlier run last saw of ``address``: a timer's input, never a decision's."""
        if address in self.names and self.readings[address] is None and not reading.waiting:
            self.readings[address], self.read_at[address] = reading, read_at
            self.stale.add(address)

    def observe(self, address: str, reading: UpsReading, now: float) -> Update:
        out = Update()
        label = self.names[address]
        if self.lost[address] is not None:
            self.lost[address], self.lost_since[address] = None, None
            self.nocomm_told.discard(address)
            out.events.append(("COMMOK", f"{label}: UPS reachable again: {reading.describe()}"))
        if not reading.waiting:
            self.stale.discard(address)
        previous = self.readings[address]
        if not reading.waiting:
            for kind in status_events(previous, reading):
                out.events.append((kind, f"{label}: {EVENT_TEXT[kind]}: {reading.describe()}"))
            self.readings[address], self.read_at[address] = reading, now
        elif previous is None:
            self.readings[address], self.read_at[address] = reading, now
        out.reading = self.combined()
        return out

    def comm_lost(self, address: str, reason: str, now: float = 0.0) -> Update:
        out = Update()
        if self.lost[address] is None:
            self.lost[address], self.lost_since[address] = reason, now
            out.events.append(("COMMBAD", f"{self.names[address]}: UPS unreachable: {reason}"))
        if len(self.names) == 1 or self._dead(address):
            out.lost = reason
        else:
            out.reading = self.combined()  # a UPS never seen leaves the view: decide without it
        return out

    def tick(self, now: float) -> list[tuple[str, str, str]]:
        """NOCOMM for each UPS unreachable ``nocomm_after`` seconds: (address, kind, message)."""
        out = []
        for address, since in self.lost_since.items():
            if since is None or address in self.nocomm_told:
                continue
            if now - since >= self.nocomm_after:
                self.nocomm_told.add(address)
                out.append(
                    (
                        address,
                        "NOCOMM",
                        f"{self.names[address]}: UPS unreachable for {now - since:.0f}s: "
                        f"{self.lost[address]}",
                    )
                )
        return out

    def next_wakeup(self) -> float | None:
        times = [
            since + self.nocomm_after
            for address, since in self.lost_since.items()
            if since is not None and address not in self.nocomm_told
        ]
        return min(times, default=None)

    def _dead(self, address: str) -> bool:
        """Lost, and not to be assumed on line: last seen (by this run or the last) on battery."""
        if self.lost[address] is None:
            return False
        last = self.readings[address]
        return last is not None and last.on_battery

    def combined(self) -> UpsReading | None:
        """The view the coordinator acts on: None until every UPS was read or found
        unreachable, and while a lost UPS cannot be assumed on line (the coordinator then runs
        its dead-UPS rule). A UPS never seen, or seen only by an earlier run, is left out."""
        if any(self._dead(a) for a in self.names):
            return None
        readings = []
        for address, r in self.readings.items():
            if r is None or address in self.stale:
                if self.lost[address] is None:
                    return None  # not read yet: wait for its first answer
                continue  # unreachable and never seen by this run: assumed supplying
            readings.append(r)
        return combine(readings) if readings else None

    def to_list(self) -> list[dict[str, Any]]:
        """What ``motte power status`` shows of each UPS."""
        return [
            {
                "address": address,
                "reading": r.to_dict() if r is not None else None,
                "reading_at": self.read_at[address],
                "comm_ok": self.lost[address] is None,
            }
            for address, r in self.readings.items()
        ]
