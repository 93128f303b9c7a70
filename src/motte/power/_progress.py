"""The coordinator's persisted progress, and the messages between it and its driver.

The coordinator (:mod:`._coordinator`) is a pure state machine: it is fed UPS readings,
step results and the time, and answers with :class:`Action` values for its driver to carry
out. Everything it must remember across a restart is in :class:`Progress`, which the driver
writes atomically after every change (``motte_home()/power/<plan>.state.json``), so a
restarted coordinator resumes where it was instead of repeating or forgetting a step.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from motte.power._errors import PowerError
from motte.power._status import UpsReading

STATE_VERSION = 1


class Phase(enum.StrEnum):
    #: Mains present, every host up.
    ONLINE = "online"
    #: On battery, riding through: the plan has not started.
    ON_BATTERY = "on-battery"
    #: Running the plan's stages.
    SHUTTING_DOWN = "shutting-down"
    #: Mains came back mid-shutdown: the stage in flight finishes, no new stage starts.
    PAUSED = "paused"
    #: Every stage done: FSD for NUT secondaries, cut power, stop the coordinator.
    FINAL = "final"
    #: Everything was asked to stop, the coordinator too.
    DOWN = "down"
    #: Mains is back: once the battery has recharged, stopped hosts are started again.
    RECOVERING = "recovering"


class HostState(enum.StrEnum):
    UP = "up"
    DRAINING = "draining"
    STOPPING = "stopping"
    CONFIRMING = "confirming"
    DOWN = "down"
    #: A stop or start that failed or never confirmed: the host's real state is unknown.
    FAILED = "failed"
    STARTING = "starting"
    READYING = "readying"
    #: Started, with no ready check to say it serves.
    STARTED = "started"
    #: No start or ready command: nothing to do, nothing known.
    UNKNOWN = "unknown"


#: Host states a shutdown left behind, which recovery brings back.
STOPPED = frozenset({HostState.DOWN, HostState.FAILED})
#: The state a host is in while each step runs.
STEP_STATE = {
    "drain": HostState.DRAINING,
    "stop": HostState.STOPPING,
    "confirm": HostState.CONFIRMING,
    "start": HostState.STARTING,
    "ready": HostState.READYING,
}


#: The kinds of the plan's own events (the upsmon ones are :data:`._status.NOTIFY_EVENTS`).
PLAN_EVENTS = (
    "riding-through",
    "ridden-out",
    "supply-lost",
    "stage",
    "step",
    "step-done",
    "step-skipped",
    "deadline-shrunk",
    "shutdown-widened",
    "host-down",
    "host-failed",
    "paused",
    "continued",
    "final",
    "down",
    "recovering",
    "recovery-halted",
    "waiting-load-cut",
    "waiting-charge",
    "host-up",
    "host-started",
    "host-unknown",
    "recovered",
    "resumed",
    "notify-failed",
)


# -- actions: what the coordinator asks its driver to do --------------------------------------


@dataclass(frozen=True, slots=True)
class Action:
    pass


@dataclass(frozen=True, slots=True)
class RunStep(Action):
    """Run ``step`` (drain, stop, confirm, start, ready) for ``host`` until ``deadline``.

    ``confirm`` and ``ready`` are retried until they exit 0 or the deadline passes. The driver
    answers with a :class:`StepResult` carrying the same ``key`` and ``seq``.
    """

    key: str
    seq: int
    host: str
    step: str
    deadline: float


@dataclass(frozen=True, slots=True)
class SetFsd(Action):
    key: str
    seq: int
    #: The UPSes to set it on (addresses); empty: every UPS the plan logs into.
    upses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WaitSecondaries(Action):
    """Poll ``GET NUMLOGINS`` until only the coordinator is logged in, or ``deadline``."""

    key: str
    seq: int
    deadline: float
    #: The UPSes whose logins count (addresses); empty: every UPS FSD was set on.
    upses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CutPower(Action):
    """``INSTCMD shutdown.return``: the UPS cuts the load after its delay, restores it later."""

    key: str
    seq: int
    #: The UPSes to ask (addresses); empty: every UPS.
    upses: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Cancel(Action):
    """Stop a running step whose result no longer matters."""

    key: str


@dataclass(frozen=True, slots=True)
class Event(Action):
    """Something to log; the upper-case kinds (ONBATT, ...) also run the notify command."""

    kind: str
    message: str
    host: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


# -- inputs -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepResult:
    key: str
    seq: int
    ok: bool
    detail: str = ""
    timed_out: bool = False


# -- persisted progress -----------------------------------------------------------------------


@dataclass(slots=True)
class Task:
    """A step in flight: what the driver was asked to do, and until when."""

    seq: int
    kind: str  # "host" or "final"
    step: str
    deadline: float
    host: str | None = None


@dataclass(slots=True)
class HostProgress:
    state: HostState = HostState.UP
    since: float | None = None
    detail: str = ""
    #: Share of its declared times this host got when the battery could not cover them all.
    scale: float = 1.0


@dataclass(slots=True)
class SupplyProgress:
    """One UPS as a plan with redundancy tracks it: each UPS is judged on its own."""

    reading: UpsReading | None = None
    reading_at: float | None = None
    comm_ok: bool = True
    comm_lost_since: float | None = None
    #: When this UPS's current cut began; kept through short returns of mains.
    cut_since: float | None = None
    mains_back_since: float | None = None
    #: Read by this run (a saved reading is stale: a timer's input, never a decision's).
    fresh: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "reading": self.reading.to_dict() if self.reading else None,
            "reading_at": self.reading_at,
            "comm_ok": self.comm_ok,
            "comm_lost_since": self.comm_lost_since,
            "cut_since": self.cut_since,
            "mains_back_since": self.mains_back_since,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SupplyProgress:
        return cls(
            reading=UpsReading.from_dict(data["reading"]) if data["reading"] else None,
            reading_at=data["reading_at"],
            comm_ok=bool(data["comm_ok"]),
            comm_lost_since=data["comm_lost_since"],
            cut_since=data["cut_since"],
            mains_back_since=data["mains_back_since"],
            fresh=False,
        )


@dataclass(slots=True)
class Progress:
    plan: str
    phase: Phase = Phase.ONLINE
    seq: int = 0
    reading: UpsReading | None = None
    reading_at: float | None = None
    comm_ok: bool = True
    comm_lost_since: float | None = None
    #: When the current cut began; kept through short returns of mains (flapping).
    cut_since: float | None = None
    mains_back_since: float | None = None
    reason: str | None = None
    shutdown_started: float | None = None
    stages: list[list[str]] = field(default_factory=list)
    stage: int = -1
    final_steps: list[str] = field(default_factory=list)
    final: int = -1
    recovery: list[list[str]] = field(default_factory=list)
    recovery_stage: int = -1
    waiting_charge_logged: bool = False
    #: We set FSD ourselves: upsd latches it until it restarts, and our own FSD must not
    #: start a second shutdown once the hosts are back.
    fsd_ours: bool = False
    #: Setting FSD failed in this shutdown: no secondary was told, so none is waited for.
    fsd_failed: bool = False
    #: The UPS accepted shutdown.return: no host starts until this time has passed and the
    #: UPS no longer shows its output OFF (the load was cut and has come back).
    load_cut_until: float | None = None
    #: ``reading`` was seen by this run of the coordinator. A reading saved by an earlier
    #: run is not: it may inform a timer (a dead UPS last seen on battery), never trigger an
    #: action. Not saved: every loaded state starts stale.
    fresh: bool = True
    hosts: dict[str, HostProgress] = field(default_factory=dict)
    running: dict[str, Task] = field(default_factory=dict)
    # -- a plan with redundancy (hosts with ``supplies``) only -----------------------------
    #: Each UPS (by address), judged on its own.
    supplies: dict[str, SupplyProgress] = field(default_factory=dict)
    #: The UPSes the shutdown (or the hosts it left stopped) is for: address -> why lost.
    #: Mains must be back on all of them before anything restarts.
    lost: dict[str, str] = field(default_factory=dict)
    #: The coordinator loses power in this shutdown, so it stops last.
    stop_self: bool = False
    #: The UPSes each UPS step goes to ("fsd", "secondaries", "cut-power": addresses).
    step_upses: dict[str, list[str]] = field(default_factory=dict)
    #: UPSes our own FSD is set on (latched in upsd), and those asked for shutdown.return.
    fsd_upses: list[str] = field(default_factory=list)
    cut_upses: list[str] = field(default_factory=list)
    #: UPSes announced lost although their loss stopped nothing (said once per loss).
    lost_told: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "plan": self.plan,
            "phase": self.phase.value,
            "seq": self.seq,
            "reading": self.reading.to_dict() if self.reading else None,
            "reading_at": self.reading_at,
            "comm_ok": self.comm_ok,
            "comm_lost_since": self.comm_lost_since,
            "cut_since": self.cut_since,
            "mains_back_since": self.mains_back_since,
            "reason": self.reason,
            "shutdown_started": self.shutdown_started,
            "stages": self.stages,
            "stage": self.stage,
            "final_steps": self.final_steps,
            "final": self.final,
            "recovery": self.recovery,
            "recovery_stage": self.recovery_stage,
            "waiting_charge_logged": self.waiting_charge_logged,
            "fsd_ours": self.fsd_ours,
            "fsd_failed": self.fsd_failed,
            "load_cut_until": self.load_cut_until,
            "hosts": {
                name: {
                    "state": h.state.value,
                    "since": h.since,
                    "detail": h.detail,
                    "scale": h.scale,
                }
                for name, h in self.hosts.items()
            },
            "running": {
                key: {
                    "seq": t.seq,
                    "kind": t.kind,
                    "step": t.step,
                    "deadline": t.deadline,
                    "host": t.host,
                }
                for key, t in self.running.items()
            },
            "supplies": {a: sp.to_dict() for a, sp in self.supplies.items()},
            "lost": self.lost,
            "stop_self": self.stop_self,
            "step_upses": self.step_upses,
            "fsd_upses": self.fsd_upses,
            "cut_upses": self.cut_upses,
            "lost_told": self.lost_told,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str) -> Progress:
        if data.get("version") != STATE_VERSION:
            raise PowerError(
                f"{where}: state version {data.get('version')!r}, this motte reads {STATE_VERSION}",
                hint="move the file aside to start afresh (no shutdown is in progress?)",
            )
        try:
            return cls(
                plan=str(data["plan"]),
                phase=Phase(data["phase"]),
                seq=int(data["seq"]),
                reading=UpsReading.from_dict(data["reading"]) if data["reading"] else None,
                reading_at=data["reading_at"],
                comm_ok=bool(data["comm_ok"]),
                comm_lost_since=data["comm_lost_since"],
                cut_since=data["cut_since"],
                mains_back_since=data["mains_back_since"],
                reason=data["reason"],
                shutdown_started=data["shutdown_started"],
                stages=[list(map(str, s)) for s in data["stages"]],
                stage=int(data["stage"]),
                final_steps=list(map(str, data["final_steps"])),
                final=int(data["final"]),
                recovery=[list(map(str, s)) for s in data["recovery"]],
                recovery_stage=int(data["recovery_stage"]),
                waiting_charge_logged=bool(data["waiting_charge_logged"]),
                fsd_ours=bool(data["fsd_ours"]),
                # Added later: a state file written before them has neither.
                fsd_failed=bool(data.get("fsd_failed", False)),
                load_cut_until=data.get("load_cut_until"),
                fresh=False,
                hosts={
                    name: HostProgress(
                        HostState(h["state"]), h["since"], str(h["detail"]), float(h["scale"])
                    )
                    for name, h in data["hosts"].items()
                },
                running={
                    key: Task(
                        int(t["seq"]),
                        str(t["kind"]),
                        str(t["step"]),
                        float(t["deadline"]),
                        t["host"],
                    )
                    for key, t in data["running"].items()
                },
                # Redundancy came later: a state file written before it has none of these.
                supplies={
                    str(a): SupplyProgress.from_dict(sp)
                    for a, sp in data.get("supplies", {}).items()
                },
                lost={str(a): str(why) for a, why in data.get("lost", {}).items()},
                stop_self=bool(data.get("stop_self", False)),
                step_upses={
                    str(k): list(map(str, v)) for k, v in data.get("step_upses", {}).items()
                },
                fsd_upses=list(map(str, data.get("fsd_upses", []))),
                cut_upses=list(map(str, data.get("cut_upses", []))),
                lost_told=list(map(str, data.get("lost_told", []))),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise PowerError(
                f"{where}: state file is damaged ({type(e).__name__}: {e})",
                hint="move the file aside to start afresh",
            ) from None
