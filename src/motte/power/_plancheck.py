"""Checking a plan as a whole, and the order and timeline it would follow. Pure.

Order: a host stops before everything it depends on, so dependents go first; hosts with no
order between them form one *stage* and stop in parallel. ``never_stop`` hosts (switches) are
kept up, and the coordinator stops last, after FSD has told NUT secondaries to go.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from motte.power._errors import PlanError
from motte.power._plan import Plan


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    """One step, at seconds counted from the moment mains was lost."""

    start: float
    end: float
    what: str
    host: str | None = None


@dataclass(frozen=True, slots=True)
class Loss:
    """What losing some UPSes (and nothing else) does, in a plan with redundancy."""

    #: The UPSes lost (addresses).
    upses: tuple[str, ...]
    #: The hosts that stop, in stages (the coordinator, if it stops, is not in them).
    stages: tuple[tuple[str, ...], ...]
    #: The coordinator loses power too: it stops last.
    coordinator_stops: bool
    #: Hosts that keep running (enough supplies left, nothing they need stops).
    running: tuple[str, ...]
    #: The UPSes FSD and shutdown.return go to: the lost ones that feed a stopped host.
    targets: tuple[str, ...]
    timeline: tuple[TimelineEntry, ...] = ()
    shutdown_time: float = 0.0

    @property
    def stops(self) -> tuple[str, ...]:
        return tuple(n for s in self.stages for n in s)


@dataclass(frozen=True, slots=True)
class PlanCheck:
    stages: tuple[tuple[str, ...], ...]
    kept_up: tuple[str, ...]
    coordinator: str | None
    timeline: tuple[TimelineEntry, ...]
    #: Seconds from the start of the plan until the coordinator's own stop is due to finish.
    shutdown_time: float
    runtime: float | None
    errors: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    #: With redundancy (hosts with ``supplies``): what losing each UPS alone does.
    losses: tuple[Loss, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors


def stoppable(plan: Plan) -> list[str]:
    return [h.name for h in plan.hosts.values() if not h.never_stop and not h.coordinator]


def shutdown_stages(plan: Plan) -> list[list[str]]:
    """Stages of the shutdown: each host after every host that depends on it.

    Assumes no cycles (check first). A stage's hosts are sorted by name so the order is stable.
    """
    names = set(stoppable(plan))
    dependents: dict[str, set[str]] = {n: set() for n in names}
    for host in plan.hosts.values():
        if host.name in names:
            for dep in host.depends_on:
                if dep in names:
                    dependents[dep].add(host.name)
    level: dict[str, int] = {}

    def depth(name: str) -> int:
        if name not in level:
            level[name] = 1 + max((depth(d) for d in dependents[name]), default=-1)
        return level[name]

    for name in names:
        depth(name)
    stages: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for name, lvl in level.items():
        stages[lvl].append(name)
    return [sorted(stage) for stage in stages]


def affected(plan: Plan, lost: set[str] | frozenset[str]) -> set[str]:
    """The hosts that must stop when the UPSes in ``lost`` are gone: those left with less
    power than they need (upsmon's MINSUPPLIES), and every host that depends on one of them.
    ``never_stop`` hosts are never among them. Assumes a checked plan (no cycles)."""
    if not lost:
        return set()
    hit = {n for n, h in plan.hosts.items() if not h.never_stop and not plan.powered(n, lost)}
    grew = True
    while grew:  # a host that depends on a stopping host stops first, so it stops too
        grew = False
        for name, host in plan.hosts.items():
            if name not in hit and not host.never_stop and hit & set(host.depends_on):
                hit.add(name)
                grew = True
    return hit


def targets(plan: Plan, lost: set[str] | frozenset[str], stopped: set[str]) -> list[str]:
    """The UPSes in ``lost`` that feed a host in ``stopped``, in the plan's order: those FSD
    and shutdown.return go to (a UPS that still feeds running hosts is never cut)."""
    out = []
    for ups in plan.upses:
        address = str(ups.address)
        if address in lost and any(address in plan.feeds(n)[0] for n in stopped):
            out.append(address)
    return out


def loss(plan: Plan, lost: set[str] | frozenset[str], coordinator: str | None) -> Loss:
    """What losing exactly the UPSes in ``lost`` does (a checked plan)."""
    hit = affected(plan, lost)
    stages = [[n for n in stage if n in hit] for stage in shutdown_stages(plan)]
    stages = [s for s in stages if s]
    me_stops = coordinator is not None and coordinator in hit
    running = sorted(
        n for n, h in plan.hosts.items() if n not in hit and not h.never_stop and n != coordinator
    )
    if coordinator is not None and not me_stops:
        running.append(coordinator)
    aim = targets(plan, lost, hit)
    timeline, total = _timeline(plan, stages, coordinator if me_stops else None, aim)
    return Loss(
        upses=tuple(str(u.address) for u in plan.upses if str(u.address) in lost),
        stages=tuple(tuple(s) for s in stages),
        coordinator_stops=me_stops,
        running=tuple(running),
        targets=tuple(aim),
        timeline=tuple(timeline),
        shutdown_time=total,
    )


def _cycle(plan: Plan) -> list[str] | None:
    """A dependency cycle as a path (first name repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = 1
        path.append(name)
        for dep in plan.hosts[name].depends_on:
            if dep not in plan.hosts:
                continue
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[name] = 2
        return None

    for name in sorted(plan.hosts):
        if name not in state and (found := visit(name)):
            return found
    return None


def _requires(plan: Plan, name: str) -> set[str]:
    """Every host ``name`` depends on, directly or through others."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        for dep in plan.hosts[todo.pop()].depends_on:
            if dep in plan.hosts and dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def check_plan(plan: Plan, *, runtime: float | None = None) -> PlanCheck:
    """Every problem with the plan as a whole, the order, and the timeline.

    ``runtime`` is the battery's runtime at the current load (seconds), when known: the plan
    is refused if riding through and then shutting down would take longer.
    """
    src = plan.source
    errors: list[str] = []
    warnings: list[str] = []
    for host in plan.hosts.values():
        for dep in host.depends_on:
            if dep not in plan.hosts:
                errors.append(f"{src}: hosts.{host.name}.depends_on: unknown host {dep!r}")
    cycle = _cycle(plan)
    if cycle:
        errors.append(f"{src}: hosts: dependency cycle {' -> '.join(cycle)}")
    coordinators = [h.name for h in plan.hosts.values() if h.coordinator]
    if len(coordinators) != 1:
        errors.append(
            f"{src}: hosts: exactly one host must be the coordinator, found "
            f"{len(coordinators)}{': ' + ', '.join(coordinators) if coordinators else ''}"
        )
    coordinator = coordinators[0] if len(coordinators) == 1 else None
    stops = set(stoppable(plan))
    if coordinator and not cycle:
        needed = sorted(_requires(plan, coordinator) & stops)
        if needed:
            errors.append(
                f"{src}: hosts.{coordinator}.depends_on: the coordinator stops last but needs "
                f"{', '.join(needed)}, which would stop before it (make it never_stop?)"
            )
    if not cycle:
        for host in plan.hosts.values():
            if host.never_stop:
                gone = sorted(_requires(plan, host.name) & stops)
                if gone:
                    warnings.append(
                        f"hosts.{host.name}: kept up, but depends on {', '.join(gone)}, "
                        "which will be stopped"
                    )
    for name in sorted(stops):
        host = plan.hosts[name]
        if host.start is None and host.ready is None:
            warnings.append(
                f"hosts.{name}: no start or ready command: after power returns it stays off "
                "unless its firmware powers on after AC loss"
            )
    if coordinator and plan.hosts[coordinator].stop is None:
        warnings.append(f"hosts.{coordinator}: the coordinator has no stop command")
    for i, ups in enumerate(plan.upses):
        if ups.username is not None:
            continue
        key = "ups" if len(plan.upses) == 1 else f"ups[{i}]"
        if plan.policy.cut_power:
            errors.append(
                f"{src}: policy.cut_power: needs a NUT login ({key}.username) with instcmds"
                + ("" if len(plan.upses) == 1 else f" on every UPS ({ups.address} has none)")
            )
        if plan.policy.fsd:
            warnings.append(
                f"{key}.username: no NUT login, so FSD cannot be set"
                + ("" if len(plan.upses) == 1 else f" on {ups.address}")
                + ": NUT secondaries are not told"
            )

    if plan.redundant:
        fed = {a for n in plan.hosts if not plan.hosts[n].never_stop for a in plan.feeds(n)[0]}
        for i, ups in enumerate(plan.upses):
            if str(ups.address) not in fed:
                warnings.append(
                    f"ups[{i}]: {ups.address} feeds no host (no host's supplies name it): "
                    "losing it stops nothing"
                )
        if coordinator and not plan.hosts[coordinator].supplies:
            warnings.append(
                f"hosts.{coordinator}: the coordinator has no supplies, so every UPS feeds it "
                "and losing any one stops it (name the UPS it hangs on in supplies)"
            )

    stages = [] if (cycle or errors) else shutdown_stages(plan)
    timeline, total = _timeline(plan, stages, coordinator)
    losses = (
        tuple(loss(plan, {str(u.address)}, coordinator) for u in plan.upses)
        if plan.redundant and not (cycle or errors)
        else ()
    )
    pol = plan.policy
    if pol.runtime_below is not None and total > pol.runtime_below:
        errors.append(
            f"{src}: policy.runtime_below: the shutdown takes {total:g}s but starts with only "
            f"{pol.runtime_below:g}s of runtime left; raise runtime_below or shorten stop times"
        )
    if runtime is not None and pol.ride_through + total > runtime:
        errors.append(
            f"{src}: the battery lasts {runtime:g}s at the current load, but riding through "
            f"({pol.ride_through:g}s) and shutting down ({total:g}s) take "
            f"{pol.ride_through + total:g}s; shorten policy.ride_through or the stop times"
        )
    return PlanCheck(
        stages=tuple(tuple(s) for s in stages),
        kept_up=tuple(sorted(h.name for h in plan.hosts.values() if h.never_stop)),
        coordinator=coordinator,
        timeline=tuple(timeline),
        shutdown_time=total,
        runtime=runtime,
        errors=tuple(errors),
        warnings=tuple(warnings),
        losses=losses,
    )


def _timeline(
    plan: Plan,
    stages: list[list[str]],
    coordinator: str | None,
    aim: list[str] | None = None,
) -> tuple[list[TimelineEntry], float]:
    """The longest timeline: a cut that lasts, with no threshold firing before ride-through."""
    pol = plan.policy
    t0 = pol.ride_through
    entries = [
        TimelineEntry(0.0, 0.0, "mains lost (ONBATT): riding through"),
        TimelineEntry(t0, t0, "plan starts (SHUTDOWN) unless LB or a threshold came first"),
    ]
    t = t0
    for i, stage in enumerate(stages, 1):
        length = 0.0
        for name in stage:
            host = plan.hosts[name]
            if host.drains:
                entries.append(TimelineEntry(t, t + host.drain_time, f"stage {i}: drain", name))
            begin = t + (host.drain_time if host.drains else 0.0)
            entries.append(TimelineEntry(begin, begin + host.stop_time, f"stage {i}: stop", name))
            length = max(length, host.needs)
        t += length
    # aim: the UPSes FSD and shutdown.return go to (None: every UPS, as without redundancy)
    logins = {str(u.address) for u in plan.upses if u.username}
    fsd_on = sorted(logins) if aim is None else [a for a in aim if a in logins]
    if plan.policy.fsd and fsd_on:
        on = "" if aim is None else f" on {_names(plan, fsd_on)}"
        entries.append(TimelineEntry(t, t, f"set FSD{on}: NUT secondaries shut down"))
        entries.append(TimelineEntry(t, t + pol.secondaries_wait, "wait for secondaries"))
        t += pol.secondaries_wait
    host = plan.hosts[coordinator] if coordinator else None
    if host is not None and host.drains:
        entries.append(TimelineEntry(t, t + host.drain_time, "drain", coordinator))
        t += host.drain_time
    if pol.cut_power and ((aim is None and host is not None) or aim):
        if aim is None:
            which = "the UPS" if len(plan.upses) == 1 else "every UPS"
        else:
            which = _names(plan, aim)
        entries.append(TimelineEntry(t, t, f"ask {which} for shutdown.return"))
    if host is not None:
        entries.append(TimelineEntry(t, t + host.stop_time, "stop the coordinator", coordinator))
        t += host.stop_time
    return entries, t - t0


def _names(plan: Plan, addresses: list[str]) -> str:
    """UPSes by their UPS names where that is unambiguous, else by address."""
    names = [u.address.ups for u in plan.upses]
    by_address = {str(u.address): u.address.ups for u in plan.upses}
    return ", ".join(by_address[a] if names.count(by_address[a]) == 1 else a for a in addresses)


#: Steps that run on the coordinator itself, whatever the host's transport.
_LOCAL_ALWAYS = ("confirm", "start", "ready")


def program_problem(program: str) -> str | None:
    """Why ``program`` (argv[0] of a command run here) cannot run, or None when it can."""
    if "/" not in program:
        return None if shutil.which(program) else f"{program}: not found on PATH"
    path = Path(program)
    if not path.exists():
        return f"{program}: no such file"
    if path.is_dir() or not os.access(path, os.X_OK):
        return f"{program}: not executable (chmod +x?)"
    return None


def check_local(plan: Plan) -> tuple[str, ...]:
    """What this machine (the coordinator) must have to run ``plan``, as one line per problem.

    Every command that runs here exists and is executable (found on PATH, or a file taken
    from the plan's folder); every password file is readable by this user and by no other
    (mode 0600), every password variable set, every CA file loads. ``watch`` would refuse
    the password and CA problems; missing commands would make every host "fail" at the
    worst moment. Nothing is contacted and no secret is shown.
    """
    src = plan.source
    problems: list[str] = []
    for i, ups in enumerate(plan.upses):
        key = "ups" if len(plan.upses) == 1 else f"ups[{i}]"
        try:
            ups.password()
            ups.ssl_context()
        except PlanError as e:
            problems.append(f"{src}: {key}{e.message.removeprefix('ups')}")
    for name, host in plan.hosts.items():
        steps = list(_LOCAL_ALWAYS)
        if host.transport == "local":
            steps += ["drain", "stop"]
        elif (problem := program_problem("ssh")) is not None and host.transport == "ssh":
            problems.append(f"{src}: hosts.{name}.ssh: {problem}")
        for step in steps:
            argv = getattr(host, step)
            if argv is not None and (problem := program_problem(argv[0])) is not None:
                problems.append(f"{src}: hosts.{name}.{step}: {problem}")
        if host.agent is not None:
            secret = host.agent.secret_file
            if not os.access(secret, os.R_OK):
                problems.append(f"{src}: hosts.{name}.agent.secret_file: cannot read {secret}")
    notify = plan.notify.command
    if notify is not None and (problem := program_problem(notify[0])) is not None:
        problems.append(f"{src}: notify.command: {problem}")
    return tuple(problems)
