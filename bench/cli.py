#!/usr/bin/env python3
"""CLI start-up: ``motte --help`` and ``motte attest verify --help`` as whole processes,
against baselines measured in the same run.

    .venv/bin/python bench/cli.py [--rounds 21] [--json]

Each case is a fresh process, output to /dev/null; cases run interleaved round-robin after
one unrecorded warm-up each, and each figure is the median over the rounds with its
spread (IQR / median). Bytecode is cached for every case alike (PYTHONPYCACHEPREFIX in a
temporary directory).

- ``python -c pass``              baseline: the same venv's interpreter alone.
- ``motte --help``                the console script. Target <= 5 x ``python -c pass``.
- ``python -c import dcap_qvl``   baseline: a Python process that imports Phala's verifier.
- ``motte attest verify --help``  Target <= 2 x ``python -c import dcap_qvl``.
- ``... through Typer``           context: the same help rendered by Typer (what every
                                  ``--help`` cost before the pre-rendered screens).
- ``motte --version``             context: answered without Typer as well.
- ``import typer + adapters``     context: what any command that runs through Typer pays
                                  before its own work (Typer, Rich's parts it loads, and
                                  the pydantic adapters Typer builds parameters with).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from _harness import Case, dump, interleave, scratch_dir, table, verdict

TARGETS = {"motte --help": 5.0, "motte attest verify --help": 2.0}

TYPER = "import sys\nfrom motte.cli import _main_typer\nsys.exit(_main_typer(sys.argv[1:]))\n"


def process_case(name: str, cmd: list[str], env: dict[str, str], cpu: dict, baseline: str) -> Case:
    def run() -> float:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            sys.exit(f"bench/cli.py: {name}: exit {proc.returncode}: {proc.stderr.decode()}")
        cpu.setdefault(name, []).append(
            (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        )
        return wall

    return Case(name, run, baseline)


def motte_command() -> list[str]:
    script = Path(sys.executable).parent / "motte"
    return [str(script)] if script.exists() else [sys.executable, "-m", "motte"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--json", action="store_true")
    ns = parser.parse_args()

    tmp = scratch_dir("motte-bench-cli-")
    env = {**os.environ, "MOTTE_HOME": str(tmp / "home"), "PYTHONPYCACHEPREFIX": str(tmp / "pyc")}
    for name in ("PYTHONDONTWRITEBYTECODE", "COLUMNS", "TERMINAL_WIDTH", "NO_COLOR"):
        env.pop(name, None)
    py = sys.executable
    motte = motte_command()
    typer_help = [py, "-c", TYPER]
    check = subprocess.run([*motte, "--help"], capture_output=True, text=True, env=env)
    typer_check = subprocess.run([*typer_help, "--help"], capture_output=True, text=True, env=env)
    if check.stdout != typer_check.stdout or "Usage: motte" not in check.stdout:
        sys.exit("bench/cli.py: motte --help differs from Typer's (stale help screens?)")

    cpu: dict[str, list[float]] = {}
    plain, dcap = "python -c pass", "python -c import dcap_qvl"
    specs = [
        (plain, [py, "-c", "pass"], plain),
        ("motte --help", [*motte, "--help"], plain),
        ("motte --help through Typer", [*typer_help, "--help"], plain),
        ("motte --version", [*motte, "--version"], plain),
        ("import typer + adapters", [py, "-c", "import typer, typer._adapters"], plain),
        (dcap, [py, "-c", "import dcap_qvl"], dcap),
        ("motte attest verify --help", [*motte, "attest", "verify", "--help"], dcap),
        ("  ... through Typer", [*typer_help, "attest", "verify", "--help"], dcap),
    ]
    cases = [process_case(name, cmd, env, cpu, base) for name, cmd, base in specs]
    interleave(cases, ns.rounds)
    rows: list[dict] = []
    for base in (plain, dcap):
        group = [c for c in cases if c.baseline == base]
        notes = {c.name: f"(target <= {TARGETS[c.name]:g})" for c in group if c.name in TARGETS}
        rows += table(
            f"CLI start-up, {ns.rounds} rounds, wall clock per process, vs {base}",
            group,
            group[0],
            notes,
        )
    by_name = {c.name: c for c in cases}
    print("\nCPU time per process (user+sys, median):")
    cpu_medians = {}
    for case in cases:
        samples = sorted(cpu[case.name][1:])  # the first is the warm-up
        cpu_medians[case.name] = samples[len(samples) // 2]
        print(f"  {case.name:<34} {cpu_medians[case.name] * 1e3:8.1f} ms")
    print()
    ratios = {}
    for name, target in TARGETS.items():
        case = by_name[name]
        ratios[name] = case.median / by_name[case.baseline].median  # type: ignore[index]
        print(verdict(f"{name} / {case.baseline}, wall clock", ratios[name], target))
    if ns.json:
        dump(rows, {"ratios": ratios, "cpu_medians": cpu_medians, "targets": TARGETS})
    return 0


if __name__ == "__main__":
    sys.exit(main())
