"""The Power page: the UPS now (over NUT), its last hours, the plan's timeline, past shutdowns.

- **Now**: every UPS of the plan is asked ``LIST VAR`` (no login: reading needs none), with
  the plan's own TLS settings, under a short deadline; an unreachable UPS is shown as such.
- **The last hours**: the ``reading`` records ``motte power watch`` writes to the plan's
  JSON-lines event log (one a minute per UPS, and at each status change), read backwards from
  the end of the file only as far as the window reaches, so the cost does not grow with the
  log's age. Events (ONBATT, SHUTDOWN, ...) are drawn as markers.
- **The plan**: :func:`motte.power.check_plan`'s order and timeline, against the battery's
  runtime as the UPS reports it now.
- **A past shutdown, replayed**: from a ``SHUTDOWN`` record to the next one (or the end of
  the recovery): each step as a bar from when it began to when it finished, its deadline, and
  the battery's runtime when the shutdown began.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path
from typing import Any

from motte.console import _svg
from motte.errors import MotteError

#: Bytes read backwards at a time when looking for the start of the chart's window.
BLOCK = 256 * 1024
#: The chart's window is read from at most this many bytes at the end of the log.
MAX_TAIL = 64 * 1024 * 1024
#: Records of one shutdown shown at most.
MAX_REPLAY = 5000
NUT_TIMEOUT = 3.0
#: Event kinds drawn as markers on the chart.
MARKED = {"ONBATT", "ONLINE", "LOWBATT", "FSD", "COMMBAD", "COMMOK", "SHUTDOWN", "down"}


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("ts"), int | float):
        return None
    return record


def tail_since(path: Path, since: float) -> list[dict[str, Any]]:
    """Records of ``path`` with ``ts >= since``, oldest first (the log is in time order)."""
    try:
        f = path.open("rb")
    except OSError:
        return []
    with f:
        f.seek(0, 2)
        end = pos = f.tell()
        buf = b""
        while pos > 0 and end - pos < MAX_TAIL:
            n = min(BLOCK, pos)
            pos -= n
            f.seek(pos)
            buf = f.read(n) + buf
            lines = buf.split(b"\n")
            first = next((r for r in map(_parse, lines[1:]) if r is not None), None)
            if first is not None and first["ts"] < since:
                break
    lines = buf.split(b"\n")
    if pos > 0:
        lines = lines[1:]  # it began mid-line
    return [r for r in map(_parse, lines) if r is not None and r["ts"] >= since]


def shutdowns(path: Path) -> list[dict[str, Any]]:
    """Every SHUTDOWN record of the log, with its byte offset, newest first."""
    out: list[dict[str, Any]] = []
    try:
        f = path.open("rb")
    except OSError:
        return out
    with f:
        offset = 0
        for line in f:
            if b'"SHUTDOWN"' in line and (r := _parse(line)) and r.get("kind") == "SHUTDOWN":
                out.append({"ts": r["ts"], "time": r.get("time", ""), "offset": offset, **r})
            offset += len(line)
    return out[::-1]


def _records_from(path: Path, offset: int) -> list[dict[str, Any]]:
    """One shutdown's records: from ``offset`` to the next SHUTDOWN or the recovery's end."""
    out: list[dict[str, Any]] = []
    with path.open("rb") as f:
        f.seek(offset)
        for line in f:
            r = _parse(line)
            if r is None:
                continue
            if out and r.get("kind") == "SHUTDOWN":
                break
            out.append(r)
            if r.get("kind") == "recovered" or len(out) >= MAX_REPLAY:
                break
    return out


def _reading_before(path: Path, offset: int) -> dict[str, Any] | None:
    """The last reading record before ``offset`` (within the block before it)."""
    with path.open("rb") as f:
        start = max(0, offset - BLOCK)
        f.seek(start)
        lines = f.read(offset - start).split(b"\n")
    for line in reversed(lines[1:] if start else lines):
        r = _parse(line)
        if r is not None and r.get("kind") == "reading":
            return r
    return None


def replay(path: Path, shutdown: dict[str, Any]) -> dict[str, Any]:
    records = _records_from(path, shutdown["offset"])
    t0 = shutdown["ts"]
    before = _reading_before(path, shutdown["offset"])
    runtime = (before or {}).get("data", {}).get("runtime")
    open_steps: dict[str, dict[str, Any]] = {}
    rows: dict[str, dict[str, Any]] = {}
    final_rows: dict[str, str] = {}
    events = []
    last = t0
    for r in records:
        last = max(last, r["ts"])
        data = r.get("data") if isinstance(r.get("data"), dict) else {}
        if r.get("kind") == "reading":
            if runtime is None:
                runtime = data.get("runtime")
            continue
        events.append(
            {
                "offset": round(r["ts"] - t0, 1),
                "kind": str(r.get("kind", "")),
                "host": r.get("host"),
                "message": str(r.get("message", "")),
            }
        )
        step = data.get("step")
        if r.get("kind") not in ("step", "step-done") or not isinstance(step, str):
            continue
        if step in ("drain", "stop", "start", "ready"):
            label = str(r.get("host"))
        elif r.get("kind") == "step":  # a final step: its "step-done" names no host
            label = {"fsd": "FSD", "secondaries": "NUT secondaries"}.get(
                step, str(r.get("host") or step)
            )
            final_rows[step] = label
        else:
            label = final_rows.get(step, step)
        key = f"{label}\0{step}"
        row = rows.setdefault(label, {"label": label, "bars": [], "ticks": []})
        if r.get("kind") == "step":
            bar = {"start": r["ts"] - t0, "end": None, "kind": step.removeprefix("self-")}
            open_steps[key] = bar
            row["bars"].append(bar)
            if isinstance(data.get("deadline"), int | float):
                row["ticks"].append(data["deadline"] - t0)
        elif key in open_steps:
            bar = open_steps.pop(key)
            bar["end"] = r["ts"] - t0
            if not data.get("ok", True):
                bar["kind"] = "failed"
    for row in rows.values():
        for bar in row["bars"]:
            if bar["end"] is None:
                bar["end"], bar["kind"] = last - t0, "unfinished"
            bar["text"] = f"{bar['kind']} {bar['end'] - bar['start']:.1f}s"
    horizon = max([last - t0, *(t for row in rows.values() for t in row["ticks"])], default=1.0)
    lines = []
    if isinstance(runtime, int | float):
        lines.append({"at": float(runtime), "label": f"battery runtime {runtime:g}s"})
        horizon = max(horizon, float(runtime))
    return {
        "time": shutdown.get("time", ""),
        "message": str(shutdown.get("message", "")),
        "events": events,
        "picture": _svg.timeline(list(rows.values()), horizon=horizon * 1.05, lines=lines),
        "runtime": runtime,
        "lasted": round(last - t0, 1),
    }


def plan_timeline(plan: Any, runtime: float | None) -> dict[str, Any]:
    from motte.power import check_plan

    check = check_plan(plan, runtime=runtime)
    rows: dict[str, dict[str, Any]] = {}
    for e in check.timeline:
        label = e.host or "plan"
        kind = "drain" if "drain" in e.what else "stop" if "stop" in e.what else "mark"
        rows.setdefault(label, {"label": label, "bars": [], "ticks": []})["bars"].append(
            {"start": e.start, "end": e.end, "kind": kind, "text": e.what}
        )
    ordered = [r for name, r in rows.items() if name not in ("plan", check.coordinator)]
    if check.coordinator in rows:
        ordered.append(rows[check.coordinator])  # the coordinator stops last
    if "plan" in rows:
        ordered.insert(0, rows["plan"])
    end = max((e.end for e in check.timeline), default=1.0)
    for name in check.kept_up:
        ordered.append(
            {
                "label": name,
                "bars": [{"start": 0, "end": end, "kind": "kept", "text": "kept up"}],
                "ticks": [],
            }
        )
    lines = []
    if runtime is not None:
        lines.append({"at": runtime, "label": f"battery runtime now {runtime:g}s"})
    pol = plan.policy
    if pol.runtime_below is not None:
        lines.append({"at": pol.runtime_below, "label": "runtime_below", "kind": "threshold"})
    horizon = max(end, runtime or 0.0, pol.runtime_below or 0.0) * 1.05
    return {
        "stages": [list(s) for s in check.stages],
        "kept_up": list(check.kept_up),
        "coordinator": check.coordinator,
        "shutdown_time": check.shutdown_time,
        "ride_through": pol.ride_through,
        "errors": list(check.errors),
        "warnings": list(check.warnings),
        "entries": [
            {"start": e.start, "end": e.end, "what": e.what, "host": e.host} for e in check.timeline
        ],
        "picture": _svg.timeline(ordered, horizon=horizon, lines=lines),
    }


async def read_ups(ups: Any, timeout: float = NUT_TIMEOUT) -> dict[str, Any]:
    """One UPS now: its reading and every variable, or why it could not be read."""
    from motte.power import UpsReading
    from motte.power.nut import NutClient

    address = ups.address
    out: dict[str, Any] = {"address": str(address), "error": None, "reading": None, "vars": []}
    try:
        ctx = ssl.create_default_context(cafile=str(ups.ca_file)) if ups.ca_file else None
        async with asyncio.timeout(timeout):
            client = await NutClient.connect(
                address.host, address.port, timeout=timeout, tls=ups.tls, ssl_context=ctx
            )
            async with client:
                variables = await client.list_var(address.ups)
    except MotteError as e:
        out["error"] = e.message
        return out
    except (TimeoutError, OSError, ssl.SSLError) as e:
        out["error"] = f"{address}: {e or 'no answer in time'}"
        return out
    out["reading"] = UpsReading.from_variables(variables).to_dict()
    out["vars"] = sorted(variables.items())
    return out


async def power_view(
    plans: dict[str, Path], params: dict[str, str], *, now: float
) -> dict[str, Any]:
    from motte.power import default_log_path, load_plan

    out: dict[str, Any] = {"plans": list(plans), "plan": None, "error": None}
    if not plans:
        out["error"] = "no plan was given to the console (motte console --plan FILE)"
        return out
    name = params.get("plan") if params.get("plan") in plans else next(iter(plans))
    out["plan"] = name
    try:
        plan = load_plan(plans[name])
    except MotteError as e:
        out["error"] = e.message
        return out
    try:
        hours = min(max(float(params.get("hours", "6")), 0.01), 48.0)
    except ValueError:
        hours = 6.0
    upses = await asyncio.gather(*(read_ups(u) for u in plan.upses))
    runtimes = [
        u["reading"]["runtime"]
        for u in upses
        if u["reading"] and isinstance(u["reading"]["runtime"], int | float)
    ]
    runtime = min(runtimes) if runtimes else None
    log = Path(plan.notify.log or default_log_path(plan.name))
    start = now - hours * 3600
    recent = tail_since(log, start)
    charts = []
    for ups in plan.upses:
        address = str(ups.address)
        samples = [r for r in recent if r.get("kind") == "reading" and r.get("ups") == address]
        marks = [
            r
            for r in recent
            if r.get("kind") in MARKED and address in str(r.get("ups", "")).split(",")
        ]
        charts.append(
            {
                "address": address,
                "chart": _svg.history_chart(samples, marks, start=start, end=now),
                "samples": len(samples),
            }
        )
    past = shutdowns(log)
    replayed = None
    wanted = params.get("replay")
    if wanted:
        match = next((s for s in past if f"{s['ts']:.3f}" == wanted), None)
        if match is not None:
            replayed = replay(log, match)
        else:
            out["error"] = "no shutdown at that time in the event log"
    out.update(
        {
            "source": str(plan.source),
            "log": str(log),
            "hours": hours,
            "upses": upses,
            "charts": charts,
            "timeline": plan_timeline(plan, runtime),
            "shutdowns": [
                {
                    "key": f"{s['ts']:.3f}",
                    "time": s["time"],
                    "message": str(s.get("message", "")),
                }
                for s in past[:20]
            ],
            "replay": replayed,
            "replay_key": wanted or "",
        }
    )
    return out
