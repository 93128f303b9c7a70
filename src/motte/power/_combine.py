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
hear: the combined reading, once every UPS has been read since the start. An unreachable UPS
is judged as upsmon judges a dead one: last seen on line, it is assumed still on line (its
last reading stays in the view, so the others are still acted on: a cut on another UPS must
not wait for a switch to come back); last seen on battery (or never seen), the coordinator
hears a lost link and its dead-UPS rule applies (on battery and unreachable for
``dead_after`` counts as critical). With one UPS the coordinator hears every lost link, as
before. It also names the upsmon events of each UPS (ONBATT, COMMBAD, ...) so notifications
say which UPS changed. Pure: no sockets, no clock.
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

    def __init__(self, addresses: Sequence[UpsAddress]) -> None:
        if not addresses:
            raise ValueError("a plan watches at least one UPS")
        self.names = {str(a): a.ups for a in addresses}
        self.readings: dict[str, UpsReading | None] = dict.fromkeys(self.names)
        self.read_at: dict[str, float | None] = dict.fromkeys(self.names)
        self.lost: dict[str, str | None] = dict.fromkeys(self.names)

    def observe(self, address: str, reading: UpsReading, now: float) -> Update:
        out = Update()
        label = self.names[address]
        if self.lost[address] is not None:
            self.lost[address] = None
            out.events.append(("COMMOK", f"{label}: UPS reachable again: {reading.describe()}"))
        previous = self.readings[address]
        if not reading.waiting:
            for kind in status_events(previous, reading):
                out.events.append((kind, f"{label}: {EVENT_TEXT[kind]}: {reading.describe()}"))
            self.readings[address], self.read_at[address] = reading, now
        elif previous is None:
            self.readings[address], self.read_at[address] = reading, now
        out.reading = self.combined()
        return out

    def comm_lost(self, address: str, reason: str) -> Update:
        out = Update()
        if self.lost[address] is None:
            self.lost[address] = reason
            out.events.append(("COMMBAD", f"{self.names[address]}: UPS unreachable: {reason}"))
        if len(self.names) == 1 or self._dead(address):
            out.lost = reason
        return out

    def _dead(self, address: str) -> bool:
        """Lost, and not to be assumed on line: last seen on battery, or never seen."""
        if self.lost[address] is None:
            return False
        last = self.readings[address]
        return last is None or last.waiting or last.on_battery

    def combined(self) -> UpsReading | None:
        """The view the coordinator acts on: None until every UPS was read, and while a lost
        UPS cannot be assumed on line (the coordinator then runs its dead-UPS rule)."""
        if any(self._dead(a) for a in self.names):
            return None
        readings = [r for r in self.readings.values() if r is not None]
        if len(readings) < len(self.readings):
            return None
        return combine(readings)

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
