"""Simulator scenarios: a scripted power cut, as a TOML file.

A scenario names the UPS, its users (as upsd.users would), fixed variables, and a list of
steps at times in seconds from the start. Each step changes only what it names and the rest
carries over; with ``ramp = true`` a step's charge and runtime are approached linearly from
the step before, so the battery visibly drains. Example (see examples/power/):

    ups = "rack"
    [variables]
    "ups.delay.shutdown" = 5
    [users.admin]
    password = "rehearsal"
    upsmon = "primary"
    actions = ["SET", "FSD"]
    instcmds = ["ALL"]
    [[step]]
    at = 0
    status = "OL"
    charge = 100
    runtime = 1800
    [[step]]
    at = 5
    status = "OB DISCHRG"

Step keys: ``at``, ``status``, ``charge``, ``runtime``, ``ramp``, ``variables`` (a table),
``stale`` (the driver stops updating: the server answers DATA-STALE) and ``offline`` (the
whole server goes away: connections are closed and new ones refused).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from motte._toml import Table, load_table
from motte.power._errors import ScenarioError
from motte.power.nut import check_name, check_sendable

DEFAULT_COMMANDS = ("shutdown.return", "shutdown.stayoff", "load.off", "load.on")


@dataclass(frozen=True, slots=True)
class User:
    name: str
    password: str
    upsmon: str | None = None  # "primary" or "secondary"
    actions: frozenset[str] = frozenset()
    instcmds: frozenset[str] = frozenset()

    def may(self, action: str) -> bool:
        """upsd's rights: ``upsmon primary`` grants LOGIN, MASTER and FSD; secondary LOGIN."""
        granted = set(self.actions)
        if self.upsmon is not None:
            granted.add("LOGIN")
        if self.upsmon == "primary":
            granted |= {"MASTER", "FSD"}
        return action in granted

    def may_run(self, cmd: str) -> bool:
        return "ALL" in self.instcmds or cmd in self.instcmds


@dataclass(frozen=True, slots=True)
class Step:
    at: float
    status: str | None = None
    charge: float | None = None
    runtime: float | None = None
    ramp: bool = False
    variables: dict[str, str] = field(default_factory=dict)
    stale: bool | None = None
    offline: bool | None = None


@dataclass(frozen=True, slots=True)
class Scenario:
    source: Path
    ups: str
    description: str
    variables: dict[str, str]
    writable: frozenset[str]
    commands: tuple[str, ...]
    users: dict[str, User]
    steps: tuple[Step, ...]

    @property
    def length(self) -> float:
        return self.steps[-1].at if self.steps else 0.0


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _vars(t: Table, name: str) -> dict[str, str]:
    sub = t.table(name)
    if sub is None:
        return {}
    out = {}
    for key, value in sub.data.items():
        sub.raw(key)
        if not isinstance(value, str | int | float | bool):
            raise sub.fail(key, "must be a string or a number")
        try:
            check_name(key, "variable name")
            check_sendable(_text(value))
        except ValueError as e:
            raise sub.fail(key, str(e)) from None
        out[key] = _text(value)
    sub.done()
    return out


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    source = Path(path)
    top = load_table(source, ScenarioError, what="scenario")
    ups = top.str("ups", "ups")
    try:
        check_name(ups, "UPS name")
    except ValueError as e:
        raise top.fail("ups", str(e)) from None
    description = top.str("description", "motte power simulator")
    variables = _vars(top, "variables")
    writable = frozenset(top.str_list("writable"))
    commands = top.str_list("commands") or DEFAULT_COMMANDS
    users = {}
    users_table = top.table("users")
    if users_table is not None:
        for name in users_table.data:
            ut = users_table.table(name)
            assert ut is not None
            password = ut.str("password")
            if password is None:
                raise ut.fail("password", "is required")
            users[name] = User(
                name=name,
                password=password,
                upsmon=ut.str("upsmon", None, choices=("primary", "secondary")),
                actions=frozenset(a.upper() for a in ut.str_list("actions")),
                instcmds=frozenset(ut.str_list("instcmds")),
            )
            ut.done()
        users_table.done()
    raw_steps = top.raw("step")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise top.fail("step", "is required: a list of [[step]] tables")
    steps = []
    for i, raw in enumerate(raw_steps):
        st = Table(raw, ("step", i), source, ScenarioError, top.lines)
        at = st.num("at")
        if at is None:
            raise st.fail("at", "is required (seconds from the start)")
        if steps and at < steps[-1].at:
            raise st.fail("at", f"goes back in time ({at:g} < {steps[-1].at:g})")
        status = st.str("status")
        step = Step(
            at=at,
            status=" ".join(status.split()) if status else None,
            charge=st.num("charge", None, high=100),
            runtime=st.num("runtime", None),
            ramp=st.bool("ramp", False),
            variables=_vars(st, "variables"),
            stale=st.bool("stale", False) if st.has("stale") else None,
            offline=st.bool("offline", False) if st.has("offline") else None,
        )
        st.done()
        steps.append(step)
    if steps[0].status is None:
        raise ScenarioError(f"{source}: step[0].status: the first step must set a status")
    top.done()
    return Scenario(source, ups, description, variables, writable, commands, users, tuple(steps))


@dataclass(slots=True)
class Script:
    """What the scenario says at a moment: the merged steps, with ramps applied."""

    status: str
    numbers: dict[str, float]
    variables: dict[str, str]
    stale: bool
    offline: bool
    #: Index of the last step in force; changes when a step is passed.
    step: int


def script_at(scenario: Scenario, elapsed: float) -> Script:
    status, numbers, variables = "", {}, {}  # type: dict[str, float]
    stale = offline = False
    index = -1
    for i, step in enumerate(scenario.steps):
        if step.at > elapsed:
            break
        index = i
        status = step.status or status
        for key in ("charge", "runtime"):
            value = getattr(step, key)
            if value is not None:
                numbers[key] = value
        variables.update(step.variables)
        stale = step.stale if step.stale is not None else stale
        offline = step.offline if step.offline is not None else offline
    following = scenario.steps[index + 1] if index + 1 < len(scenario.steps) else None
    if following is not None and following.ramp and index >= 0:
        begin = scenario.steps[index].at
        share = (elapsed - begin) / (following.at - begin) if following.at > begin else 1.0
        for key in ("charge", "runtime"):
            target = getattr(following, key)
            if target is not None and key in numbers:
                numbers[key] += (target - numbers[key]) * share
    return Script(status, numbers, variables, stale, offline, index)
