"""What a UPS reports, and the upsmon notification events its changes raise.

``ups.status`` is a list of tokens (OL, OB, LB, RB, FSD, CHRG, ...); clients must accept
tokens they do not know. upsmon turns changes between two readings into named events, and so
do we: ONBATT, ONLINE, LOWBATT, FSD, REPLBATT from the status; OFF/NOTOFF (the UPS's output
is off), BYPASS/NOTBYPASS (the load is fed straight from mains, unprotected), OVER/NOTOVER
(overload) and ALARM/NOTALARM (``ups.alarm``) as upsmon 2.8.1 and later name them;
COMMBAD/COMMOK/NOCOMM from the link, SHUTDOWN when a shutdown begins
(networkupstools/nut docs/man/upsmon.txt, NOTIFY EVENTS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: The events that run the notify command, as upsmon names them.
NOTIFY_EVENTS = (
    "ONLINE",
    "ONBATT",
    "LOWBATT",
    "FSD",
    "COMMOK",
    "COMMBAD",
    "NOCOMM",
    "SHUTDOWN",
    "REPLBATT",
    "OFF",
    "NOTOFF",
    "BYPASS",
    "NOTBYPASS",
    "OVER",
    "NOTOVER",
    "ALARM",
    "NOTALARM",
)


def finite_number(value: str | None) -> float | None:
    """``value`` as a finite float, or None (NaN and infinities are not readings)."""
    if value is None:
        return None
    try:
        n = float(value)
    except ValueError:
        return None
    return n if math.isfinite(n) else None


@dataclass(frozen=True, slots=True)
class UpsReading:
    """One snapshot of a UPS: its status tokens and the numbers a shutdown decision uses."""

    status: tuple[str, ...]
    charge: float | None = None
    runtime: float | None = None
    load: float | None = None
    variables: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_variables(cls, variables: dict[str, str]) -> UpsReading:
        return cls(
            status=tuple(variables.get("ups.status", "").split()),
            charge=finite_number(variables.get("battery.charge")),
            runtime=finite_number(variables.get("battery.runtime")),
            load=finite_number(variables.get("ups.load")),
            variables=dict(variables),
        )

    @property
    def on_battery(self) -> bool:
        return "OB" in self.status

    @property
    def on_line(self) -> bool:
        return "OL" in self.status and "OB" not in self.status

    @property
    def critical(self) -> bool:
        """OB and LB, or FSD: what upsmon shuts down for at once (FSD counts as OB LB)."""
        return ("OB" in self.status and "LB" in self.status) or "FSD" in self.status

    @property
    def waiting(self) -> bool:
        """upsd is still connecting to its driver (``WAIT``, or no status): decide nothing."""
        return not self.status or "WAIT" in self.status

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": " ".join(self.status),
            "charge": self.charge,
            "runtime": self.runtime,
            "load": self.load,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UpsReading:
        return cls(
            status=tuple(str(data.get("status", "")).split()),
            charge=data.get("charge"),
            runtime=data.get("runtime"),
            load=data.get("load"),
        )

    @property
    def output_off(self) -> bool:
        """The UPS's output is off: nothing it feeds has power from it."""
        return "OFF" in self.status

    def describe(self) -> str:
        parts = [" ".join(self.status) or "(no status)"]
        if self.charge is not None:
            parts.append(f"charge {self.charge:g}%")
        if self.runtime is not None:
            parts.append(f"runtime {self.runtime:g}s")
        if self.load is not None:
            parts.append(f"load {self.load:g}%")
        if "ALARM" in self.status and self.variables.get("ups.alarm"):
            parts.append(f"alarm: {self.variables['ups.alarm']}")
        return ", ".join(parts)


#: What each event of :func:`status_events` means, for notifications and the event log.
EVENT_TEXT = {
    "ONBATT": "on battery",
    "ONLINE": "back on mains",
    "LOWBATT": "battery low",
    "FSD": "forced shutdown set",
    "REPLBATT": "battery needs replacing",
    "OFF": "output OFF: the UPS feeds nothing",
    "NOTOFF": "output on again",
    "BYPASS": "on bypass: the load is fed from mains unprotected",
    "NOTBYPASS": "off bypass: the load is protected again",
    "OVER": "overloaded",
    "NOTOVER": "no longer overloaded",
    "ALARM": "alarm",
    "NOTALARM": "alarm cleared",
}

#: Status tokens that raise an event when they appear and another when they go.
_TOGGLES = (
    ("LB", "LOWBATT", None),
    ("FSD", "FSD", None),
    ("RB", "REPLBATT", None),
    ("OFF", "OFF", "NOTOFF"),
    ("BYPASS", "BYPASS", "NOTBYPASS"),
    ("OVER", "OVER", "NOTOVER"),
    ("ALARM", "ALARM", "NOTALARM"),
)


def status_events(previous: UpsReading | None, current: UpsReading) -> list[str]:
    """The upsmon events raised by going from ``previous`` to ``current`` (None: first look)."""
    if current.waiting:
        return []
    before = set(previous.status) if previous is not None and not previous.waiting else set()
    now = set(current.status)
    events: list[str] = []
    if "OB" in now and "OB" not in before:
        events.append("ONBATT")
    if "OL" in now and "OB" not in now and "OB" in before:
        events.append("ONLINE")
    for token, on, off in _TOGGLES:
        if token in now and token not in before:
            events.append(on)
        elif off is not None and token in before and token not in now:
            events.append(off)
    return events
