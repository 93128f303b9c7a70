"""Geometry for the Power page's pictures, drawn as inline SVG by the templates.

Only numbers leave this module as coordinates; every label is text the template escapes.
Scales are plain linear maps; the pictures are small (a few hundred points), so they are
computed on each request.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

WIDTH = 900
LEFT = 150  # room for row labels
RIGHT = 20
ROW = 26
CHART_HEIGHT = 220
MAX_POINTS = 600


def _nice_step(span: float, ticks: int = 6) -> float:
    """A round step (1, 2, 5 x 10^n) giving about ``ticks`` ticks over ``span``."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def _thin(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """At most MAX_POINTS points, keeping the first and last."""
    if len(points) <= MAX_POINTS:
        return list(points)
    step = len(points) / MAX_POINTS
    out = [points[int(i * step)] for i in range(MAX_POINTS)]
    out[-1] = points[-1]
    return out


def history_chart(
    samples: Sequence[dict[str, Any]],
    markers: Sequence[dict[str, Any]],
    *,
    start: float,
    end: float,
) -> dict[str, Any]:
    """Charge and load (percent) and runtime (scaled to its largest value) over [start, end].

    ``samples`` are reading records (``ts`` and ``data``: charge, runtime, load); ``markers``
    are events (``ts``, ``kind``) drawn as labelled vertical lines.
    """
    top, bottom = 20, CHART_HEIGHT - 30
    span = max(end - start, 1.0)

    def x(ts: float) -> float:
        return round(LEFT + (ts - start) / span * (WIDTH - LEFT - RIGHT), 1)

    def y(fraction: float) -> float:
        return round(bottom - max(0.0, min(fraction, 1.0)) * (bottom - top), 1)

    runtimes = [s["data"].get("runtime") for s in samples]
    top_runtime = max((r for r in runtimes if isinstance(r, int | float)), default=0) or 1
    lines = {}
    for key, scale in (("charge", 100.0), ("load", 100.0), ("runtime", float(top_runtime))):
        pts = [
            (x(s["ts"]), y(float(v) / scale))
            for s in samples
            if isinstance(v := s["data"].get(key), int | float) and start <= s["ts"] <= end
        ]
        lines[key] = " ".join(f"{a},{b}" for a, b in _thin(pts))
    step = _nice_step(span / 60) * 60
    shown = "%H:%M" if step >= 60 else "%H:%M:%S"
    first = math.ceil(start / step) * step
    xticks = []
    t = first
    while t <= end:
        label = dt.datetime.fromtimestamp(t, dt.UTC).strftime(shown)
        xticks.append({"x": x(t), "label": label})
        t += step
    yticks = [{"y": y(f / 100), "label": f"{f}%"} for f in (0, 25, 50, 75, 100)]
    marks = [
        {"x": x(m["ts"]), "label": str(m.get("kind", ""))}
        for m in markers
        if start <= m["ts"] <= end
    ]
    return {
        "width": WIDTH,
        "height": CHART_HEIGHT,
        "left": LEFT,
        "right": WIDTH - RIGHT,
        "top": top,
        "bottom": bottom,
        "lines": lines,
        "xticks": xticks,
        "yticks": yticks,
        "markers": marks,
        "runtime_max": top_runtime,
        "points": len(samples),
    }


def timeline(
    rows: Sequence[dict[str, Any]],
    *,
    horizon: float,
    lines: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """Rows of bars on a seconds axis from 0 to ``horizon``.

    Each row is ``{"label", "bars": [{"start", "end", "kind", "text"}], "ticks": [s...]}``;
    each line is ``{"at", "label", "kind"}`` (a vertical line, e.g. the battery's runtime).
    """
    horizon = max(horizon, 1.0)
    usable = WIDTH - LEFT - RIGHT
    top = 10

    def x(s: float) -> float:
        return round(LEFT + max(0.0, min(s, horizon)) / horizon * usable, 1)

    out_rows = []
    for i, row in enumerate(rows):
        y = top + i * ROW
        bars = []
        for b in row.get("bars", ()):
            x0, x1 = x(b["start"]), x(b["end"])
            bars.append(
                {
                    "x": x0,
                    "y": y + 4,
                    "w": max(x1 - x0, 2.0),
                    "h": ROW - 8,
                    "kind": b.get("kind", "stop"),
                    "text": b.get("text", ""),
                }
            )
        ticks = [{"x": x(t), "y0": y + 2, "y1": y + ROW - 2} for t in row.get("ticks", ())]
        out_rows.append(
            {"label": row["label"], "y": y, "ty": y + ROW / 2 + 4, "bars": bars, "ticks": ticks}
        )
    height = top + len(rows) * ROW + 30
    axis_y = top + len(rows) * ROW
    step = _nice_step(horizon)
    axis = []
    t = 0.0
    while t <= horizon + 1e-9:
        axis.append({"x": x(t), "label": f"{t:g}s"})
        t += step
    vlines = [
        {
            "x": x(v["at"]),
            "label": v["label"],
            "kind": v.get("kind", "runtime"),
            "beyond": v["at"] > horizon,
        }
        for v in lines
    ]
    return {
        "width": WIDTH,
        "height": height,
        "left": LEFT,
        "right": WIDTH - RIGHT,
        "top": top,
        "axis_y": axis_y,
        "rows": out_rows,
        "axis": axis,
        "lines": vlines,
    }
