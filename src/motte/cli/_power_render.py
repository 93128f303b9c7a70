"""How ``motte power`` shows things: Rich text for people, JSON for scripts.

Kept apart from the commands (which only parse and call) and from the library (which returns
values), and imported only by the CLI, so Rich is loaded only when something is printed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from motte.power import (
    NOTIFY_EVENTS,
    Loss,
    Plan,
    PlanCheck,
    Scenario,
    load_state,
    read_events,
)

_STYLE = {
    "SHUTDOWN": "bold red",
    "LOWBATT": "bold red",
    "FSD": "bold red",
    "ONBATT": "bold yellow",
    "COMMBAD": "bold yellow",
    "ONLINE": "bold green",
    "COMMOK": "green",
    "REPLBATT": "yellow",
    "host-down": "green",
    "host-up": "green",
    "host-started": "green",
    "host-failed": "red",
    "stage": "bold",
    "ridden-out": "green",
    "recovered": "bold green",
    "down": "bold",
    "paused": "yellow",
}


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _json_line(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def event_line(json_out: bool) -> Callable[[dict[str, Any]], None]:
    """A sink for event records: a JSON line each, or ``+12.3s KIND message`` for people."""
    if json_out:
        return _json_line
    console = _console()
    start = time.time()

    def show(record: dict[str, Any]) -> None:
        kind = record["kind"]
        style = _STYLE.get(kind, "" if kind in NOTIFY_EVENTS else "dim")
        offset = record.get("ts", time.time()) - start
        console.print(
            f"[dim]{offset:+8.1f}s[/dim]  [{style}]{kind:<14}[/{style}] "
            f"{_escape(record['message'])}"
            if style
            else f"[dim]{offset:+8.1f}s[/dim]  {kind:<14} {_escape(record['message'])}"
        )

    return show


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def simulator_line(ups: str, json_out: bool) -> Callable[[float, str], None]:
    if json_out:
        return lambda t, text: _json_line({"t": round(t, 3), "ups": ups, "message": text})
    console = _console()
    return lambda t, text: console.print(f"[dim]{t:+8.1f}s[/dim]  {ups}: {_escape(text)}")


def simulator_banner(scenario: Scenario, host: str, port: int, json_out: bool) -> None:
    if json_out:
        return
    shown = f"[{host}]" if ":" in host else host
    users = (
        ", ".join(f"{u.name} ({u.upsmon or 'no upsmon role'})" for u in scenario.users.values())
        or "none (read-only)"
    )
    _console().print(
        f"[bold]Simulating UPS {scenario.ups}[/bold] from {scenario.source} on "
        f"{shown}:{port}: {len(scenario.steps)} steps over {scenario.length:g}s\n"
        f"  try: upsc {scenario.ups}@{shown}:{port}    users: {users}\n"
    )


def plan_check(plan: Plan, result: PlanCheck, json_out: bool) -> None:
    if json_out:
        from motte.cli._output import emit_json

        emit_json(_check_dict(plan, result))
        return
    c = _console()
    verdict = "[green]OK[/green]" if result.ok else f"[red]{len(result.errors)} error(s)[/red]"
    c.print(f"[bold]Plan {plan.name}[/bold] ({plan.source}): {verdict}")
    for ups in plan.upses:
        role = f" as {ups.username} (primary)" if ups.username else " (read-only)"
        c.print(f"UPS {ups.address}{role}")
    if plan.redundant:
        c.print("Redundancy: each host's supplies decide whether it must stop")
        for name, host in plan.hosts.items():
            if host.never_stop:
                continue
            fed, needed = plan.feeds(name)
            given = ", ".join(f"{_ups_name(plan, a)}={v}" for a, v in fed.items())
            c.print(f"  {name}: needs {needed} of {given}")
    elif len(plan.upses) > 1:
        c.print(
            f"Every UPS is a required supply: the plan runs when any of the "
            f"{len(plan.upses)} is critical"
        )
    c.print(f"Runs when: {_triggers(plan)}")
    if result.stages or result.coordinator:
        c.print("Order:")
        for i, stage in enumerate(result.stages, 1):
            c.print(f"  stage {i}: {', '.join(stage)}")
        tail = []
        if plan.policy.fsd and any(u.username for u in plan.upses):
            tail.append(f"FSD, wait up to {plan.policy.secondaries_wait:g}s for NUT secondaries")
        if plan.policy.cut_power:
            which = "the UPS" if len(plan.upses) == 1 else "every UPS"
            tail.append(f"ask {which} for shutdown.return")
        if result.coordinator:
            tail.append(f"{result.coordinator} (the coordinator)")
        c.print("  then: " + " -> ".join(tail))
        c.print(f"  kept up: {', '.join(result.kept_up) or 'nothing'}")
    if result.timeline and not result.errors:
        from rich.table import Table

        table = Table(
            title="Timeline of a cut that lasts (seconds from mains lost)"
            + (" on every UPS" if plan.redundant else ""),
            title_justify="left",
            show_edge=False,
            pad_edge=False,
        )
        table.add_column("from", justify="right")
        table.add_column("to", justify="right")
        table.add_column("step")
        table.add_column("host")
        for e in result.timeline:
            table.add_row(
                f"{e.start:g}", "" if e.end == e.start else f"{e.end:g}", e.what, e.host or ""
            )
        c.print(table)
    if result.losses and not result.errors:
        c.print("If one UPS alone is lost:")
        for loss in result.losses:
            c.print(f"  {_escape(_loss_line(plan, result, loss))}")
    runtime = (
        f"the battery lasts {result.runtime:g}s at the current load"
        if result.runtime is not None
        else "battery runtime not checked (give --runtime SECONDS or --ask-ups)"
    )
    c.print(f"The shutdown takes up to {result.shutdown_time:g}s after the plan starts; {runtime}.")
    for w in result.warnings:
        c.print(f"[yellow]warning:[/yellow] {_escape(w)}")
    for e in result.errors:
        c.print(f"[red]error:[/red] {_escape(e)}")


def plan_problems(source: Path, problems: tuple[str, ...], json_out: bool) -> None:
    """A plan that did not load: every problem, one line each."""
    if json_out:
        from motte.cli._output import emit_json

        emit_json({"source": str(source), "ok": False, "errors": list(problems)})
        return
    for problem in problems:
        print(f"motte: error: {problem}", file=sys.stderr)
    print(f"  {len(problems)} problems in {source}", file=sys.stderr)


def _triggers(plan: Plan) -> str:
    pol = plan.policy
    parts = ["OB LB, FSD, or output OFF with hosts up, at once"]
    if pol.charge_below is not None:
        parts.append(f"charge < {pol.charge_below:g}%")
    if pol.runtime_below is not None:
        parts.append(f"runtime < {pol.runtime_below:g}s")
    parts.append(f"{pol.ride_through:g}s on battery")
    parts.append(f"UPS unreachable {pol.dead_after:g}s while on battery")
    return "; ".join(parts)


def _ups_name(plan: Plan, address: str) -> str:
    names = [u.address.ups for u in plan.upses]
    ups = address.partition("@")[0]
    return ups if names.count(ups) == 1 else address


def _loss_line(plan: Plan, result: PlanCheck, loss: Loss) -> str:
    """What losing one UPS does, on one line: who stops, in order, and who keeps running."""
    lost = ", ".join(_ups_name(plan, a) for a in loss.upses)
    if not loss.stops and not loss.coordinator_stops:
        return f"{lost}: nothing stops (every host keeps enough supplies)"
    steps = [f"stop {', '.join(s)}" for s in loss.stages]
    aim = ", ".join(_ups_name(plan, a) for a in loss.targets)
    if aim and plan.policy.fsd and any(u.username for u in plan.upses):
        steps.append(f"FSD on {aim}")
    if aim and plan.policy.cut_power:
        steps.append(f"shutdown.return on {aim}")
    if loss.coordinator_stops:
        steps.append(f"stop {result.coordinator} (the coordinator)")
    running = ", ".join(loss.running) or "nothing"
    return f"{lost}: {' -> '.join(steps)} (up to {loss.shutdown_time:g}s); keeps running: {running}"


def _check_dict(plan: Plan, result: PlanCheck) -> dict[str, Any]:
    return {
        "plan": plan.name,
        "source": str(plan.source),
        "ok": result.ok,
        # "ups": the one UPS (several: their addresses joined with commas); "upses": each.
        "ups": ",".join(str(u.address) for u in plan.upses),
        "upses": [
            {"address": str(u.address), "username": u.username, "tls": u.tls} for u in plan.upses
        ],
        "stages": [list(s) for s in result.stages],
        "kept_up": list(result.kept_up),
        "coordinator": result.coordinator,
        "shutdown_time": result.shutdown_time,
        "runtime": result.runtime,
        "timeline": [
            {"start": e.start, "end": e.end, "what": e.what, "host": e.host}
            for e in result.timeline
        ],
        "errors": list(result.errors),
        "warnings": list(result.warnings),
        # With redundancy: each host's supplies, and what losing each UPS alone does.
        "supplies": {
            name: {"upses": fed, "needed": needed}
            for name in plan.hosts
            if plan.redundant and not plan.hosts[name].never_stop
            for fed, needed in [plan.feeds(name)]
        },
        "losses": [
            {
                "upses": list(loss.upses),
                "stages": [list(s) for s in loss.stages],
                "coordinator_stops": loss.coordinator_stops,
                "running": list(loss.running),
                "targets": list(loss.targets),
                "shutdown_time": loss.shutdown_time,
                "timeline": [
                    {"start": e.start, "end": e.end, "what": e.what, "host": e.host}
                    for e in loss.timeline
                ],
            }
            for loss in result.losses
        ],
    }


def watch_banner(
    plan: Plan, result: PlanCheck, state_file: Path, log_path: Path, json_out: bool
) -> None:
    if json_out:
        return
    order = " -> ".join(", ".join(s) for s in result.stages) or "(no hosts to stop)"
    if plan.redundant:
        order += " (with every UPS lost; each host's supplies decide)"
    watched = ", ".join(str(u.address) for u in plan.upses)
    _console().print(
        f"[bold]Watching {watched}[/bold] for plan {plan.name}: stop order {order}, "
        f"then {result.coordinator}; kept up: {', '.join(result.kept_up) or 'nothing'}\n"
        f"  progress: {state_file}\n  events:   {log_path}\n"
    )


def _ups_line(u: dict[str, Any], now: float) -> str:
    r = u.get("reading")
    if not r:
        text = "not read yet"
    else:
        nums = ", ".join(
            f"{k} {r[k]:g}{unit}"
            for k, unit in (("charge", "%"), ("runtime", "s"), ("load", "%"))
            if r.get(k) is not None
        )
        at = u.get("reading_at")
        seen = f" (changed {now - at:.0f}s ago)" if at else ""
        text = f"{r['status']}{', ' + nums if nums else ''}{seen}"
    return text + ("" if u.get("comm_ok", True) else " [red](unreachable)[/red]")


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def status_dict(path: Path, events: int) -> dict[str, Any]:
    progress, meta = load_state(path)
    assert progress is not None
    data = progress.to_dict()
    data["watch"] = {**meta, "running": _alive(meta.get("pid"))}
    # Each UPS as the watch last saw it (older state files: none, the combined reading only).
    data["upses"] = data["watch"].pop("upses", [])
    log = meta.get("log")
    data["events"] = read_events(Path(log), events) if log else []
    return data


def status(files: list[Path], events: int, json_out: bool) -> None:
    docs = [status_dict(f, events) for f in files]
    if json_out:
        from motte.cli._output import emit_json

        emit_json({"plans": docs})
        return
    c = _console()
    now = time.time()
    for doc in docs:
        w = doc["watch"]
        running = (
            f"[green]running[/green] (pid {w.get('pid')})"
            if w["running"]
            else "[yellow]not running[/yellow]"
        )
        c.print(
            f"[bold]Plan {doc['plan']}[/bold]: phase [bold]{doc['phase']}[/bold]; watch {running}"
        )
        if doc.get("reason"):
            c.print(f"  shutdown reason: {_escape(doc['reason'])}")
        r = doc.get("reading")
        if r:
            age = now - doc["reading_at"] if doc.get("reading_at") else None
            link = "" if doc["comm_ok"] else " [red](UPS unreachable)[/red]"
            nums = ", ".join(
                f"{k} {r[k]:g}{u}"
                for k, u in (("charge", "%"), ("runtime", "s"), ("load", "%"))
                if r.get(k) is not None
            )
            seen = f" (changed {age:.0f}s ago)" if age is not None else ""
            label = "UPS" if len(doc["upses"]) < 2 else "UPSes (combined)"
            c.print(f"  {label}: {r['status']}{', ' + nums if nums else ''}{seen}{link}")
        if len(doc["upses"]) > 1:
            for u in doc["upses"]:
                c.print(f"    {u['address']}: {_ups_line(u, now)}")
        if doc["stages"]:
            c.print(
                "  stages: "
                + " -> ".join(
                    f"[bold]{', '.join(s)}[/bold]" if i == doc["stage"] else ", ".join(s)
                    for i, s in enumerate(doc["stages"])
                )
            )
        from rich.table import Table

        table = Table(show_edge=False, pad_edge=False, box=None)
        for col in ("host", "state", "since", "detail"):
            table.add_column(col)
        for name, h in sorted(doc["hosts"].items()):
            since = time.strftime("%H:%M:%S", time.localtime(h["since"])) if h["since"] else ""
            table.add_row(name, h["state"], since, _escape(h["detail"]))
        c.print(table)
        for key, t in sorted(doc["running"].items()):
            c.print(f"  running: {key} (deadline in {t['deadline'] - now:.0f}s)")
        if doc["events"]:
            c.print("  recent events:")
            for e in doc["events"]:
                c.print(f"    {e.get('time', '')[11:19]}  {e['kind']:<14} {_escape(e['message'])}")
        c.print()
