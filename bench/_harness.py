"""What every benchmark here shares: cases measured in interleaved rounds, medians with
their spread, and ratios against a baseline measured in the same run.

Run a benchmark as a script (``python bench/startup.py``); its directory is on sys.path,
so ``from _harness import ...`` finds this module.
"""

from __future__ import annotations

import atexit
import json
import shutil
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def scratch_dir(prefix: str) -> Path:
    """A temporary directory removed when the benchmark exits, however it exits short of a
    kill: a benchmark run leaves nothing behind in the temporary directory."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@dataclass
class Case:
    name: str
    run: Callable[[], Any]  # one measurement (seconds), or one call when the caller times
    baseline: str | None = None
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def spread(self) -> float:
        """Interquartile range over the median: this run's noise figure for the case."""
        if len(self.samples) < 4:
            return 0.0
        q = statistics.quantiles(self.samples, n=4)
        return (q[2] - q[0]) / self.median if self.median else 0.0


def interleave(cases: list[Case], rounds: int) -> None:
    """Run every case once per round, round-robin, so drift in the machine's load hits all
    cases alike; ``case.run()`` returns the measurement."""
    for case in cases:
        case.run()  # warm-up, not recorded
    for _ in range(rounds):
        for case in cases:
            case.samples.append(case.run())


def unit(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def table(title: str, cases: list[Case], baseline: Case, notes: dict[str, str]) -> list[dict]:
    """Print one table of medians and ratios to ``baseline``; return its rows for --json."""
    print(f"\n{title}")
    print(f"  {'case':<34} {'median':>10} {'spread':>7} {'ratio':>6}")
    rows = []
    for case in cases:
        ratio = case.median / baseline.median
        note = notes.get(case.name, "")
        print(
            f"  {case.name:<34} {unit(case.median):>10} {case.spread:>6.0%} {ratio:>6.2f}"
            f"  {note}".rstrip()
        )
        rows.append(
            {
                "case": case.name,
                "median_s": case.median,
                "spread": case.spread,
                "ratio": ratio,
                "baseline": baseline.name,
                "samples": len(case.samples),
            }
        )
    return rows


def verdict(name: str, ratio: float, target: float) -> str:
    met = "met" if ratio <= target else "MISSED"
    return f"{name}: {ratio:.2f} (target <= {target}: {met})"


def dump(rows: list[dict], extra: dict) -> None:
    print(json.dumps({"rows": rows, **extra}, indent=2))
