#!/usr/bin/env python3
"""CLI start-up: ``motte --help``, ``motte attest verify --help`` and three commands that run
(a TDX verification, an SNP measurement, a small workload) as whole processes, against
baselines measured in the same run.

    .venv/bin/python bench/cli.py [--rounds 21] [--mib 50] [--json]

Each case is a fresh process, output to /dev/null; cases run interleaved round-robin after
one unrecorded warm-up each, and each figure is the median over the rounds with its
spread (IQR / median). Bytecode is cached for every case alike (PYTHONPYCACHEPREFIX in a
temporary directory).

- ``python -c pass``              baseline: the same venv's interpreter alone.
- ``motte --help``                the console script. Target <= 5 x ``python -c pass``.
- ``python -c import dcap_qvl``   baseline: a Python process that imports Phala's verifier.
- ``motte attest verify --help``  Target <= 2 x ``python -c import dcap_qvl``.
- ``dcap_qvl verify process``     baseline: a Python process that reads the TDX v5 quote
                                  and collateral (bench/attest.py's) and verifies it with
                                  dcap_qvl.
- ``motte attest verify (TDX v5)`` the same quote, collateral and time through the
                                  console script. Target <= 2 x the dcap_qvl process.
- ``sev-snp-measure process``     baseline: ``python -m sevsnpmeasure.cli`` on
                                  bench/measure.py's inputs (4 MiB OVMF, kernel + initrd of
                                  ``--mib`` MiB, 4 vCPUs EPYC-Milan, a command line).
- ``motte measure snp``           the same inputs. Target <= 1.2 x sev-snp-measure.
- ``minimal wasmtime``            baseline: bench/startup.py's script running
                                  examples/hello/hello.wasm with wasmtime-py.
- ``motte run examples/hello``    warm cache; reported (bench/startup.py holds the goal).
- ``... through Typer``           context: the same command line run through Typer, as
                                  every command ran before (help: before the pre-rendered
                                  screens; commands: before motte.cli._direct).
- ``... alone (floor)``           context: the library call the command makes (verify_evidence,
                                  measure_snp) in a Python process of its own, no CLI: the
                                  floor of the command's process.
- ``motte --version``             context: answered without Typer as well.
- ``import typer + adapters``     context: what a command line Typer runs pays before its
                                  own work (Typer, Rich's parts it loads, pydantic).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from _harness import ROOT, Case, dump, interleave, scratch_dir, table, verdict

TARGETS = {
    "motte --help": 5.0,
    "motte attest verify --help": 2.0,
    "motte attest verify (TDX v5)": 2.0,
    "motte measure snp": 1.2,
}
TESTDATA = ROOT.parent / "shared" / "testdata"

TYPER = "import sys\nfrom motte.cli import _main_typer\nsys.exit(_main_typer(sys.argv[1:]))\n"


def process_case(
    name: str, cmd: list[str], env: dict[str, str], cpu: dict, baseline: str, status: int = 0
) -> Case:
    def run() -> float:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != status:
            sys.exit(f"bench/cli.py: {name}: exit {proc.returncode}: {proc.stderr.decode()}")
        cpu.setdefault(name, []).append(
            (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        )
        return wall

    return Case(name, run, baseline)


def motte_command() -> list[str]:
    script = Path(sys.executable).parent / "motte"
    return [str(script)] if script.exists() else [sys.executable, "-m", "motte"]


def _verify_inputs() -> tuple[list[str], str]:
    """motte's arguments and dcap_qvl's script for bench/attest.py's TDX v5 quote (exit 1:
    its TCB is out of date at that time, for both)."""
    quote = TESTDATA / "attestation" / "dcap-qvl" / "tdx_quote_outdated"
    coll = quote.with_name("tdx_quote_outdated_collateral.json")
    if not quote.exists():
        sys.exit(f"bench/cli.py: sample missing: {quote} (the shared test data folder)")
    args = [str(quote), "--collateral", str(coll), "--at", "2026-02-19T00:00:00+00:00"]
    script = (
        "import sys, dcap_qvl\n"
        f"raw = open({str(quote)!r}, 'rb').read()\n"
        f"c = dcap_qvl.QuoteCollateralV3.from_json(open({str(coll)!r}).read())\n"
        "try:\n    dcap_qvl.verify(raw, c, 1771459200)\nexcept Exception:\n    sys.exit(1)\n"
    )
    return args, script


def _verify_floor(args: list[str]) -> str:
    """motte's library doing the verification alone in a process: the CLI's floor."""
    quote, _, coll, _, at = args
    return (
        "import sys\nfrom datetime import datetime\nfrom pathlib import Path\n"
        "from motte.attest import verify_evidence\n"
        "from motte.attest.collateral import CollateralCache\n"
        f"v = verify_evidence(Path({quote!r}).read_bytes(), "
        f"collateral=Path({coll!r}).read_bytes(), now=datetime.fromisoformat({at!r}), "
        "cache=CollateralCache())\n"
        "sys.exit(0 if v.accepted else 1)\n"
    )


def _measure_floor(args: list[str]) -> str:
    """motte's library computing the measurement alone in a process: the CLI's floor."""
    opts = dict(zip(args[::2], args[1::2], strict=True))
    return (
        "from pathlib import Path\n"
        "from motte.measure import VCPU_SIGNATURES, measure_snp\n"
        f"r = measure_snp(Path({opts['--ovmf']!r}), vcpus=4, "
        "vcpu_sig=VCPU_SIGNATURES['EPYC-Milan'], "
        f"kernel=Path({opts['--kernel']!r}), initrd=Path({opts['--initrd']!r}), "
        f"append={opts['--append']!r})\n"
        "print(r.measurement.hex())\n"
    )


def _measure_inputs(tmp: Path, mib: int) -> list[str]:
    """bench/measure.py's inputs: 4 MiB OVMF (AmdSev's tail), kernel + initrd of MIB."""
    from measure import APPEND, TAIL

    if not TAIL.exists():
        sys.exit(f"bench/cli.py: {TAIL} absent (shared test data)")
    ovmf, kernel, initrd = tmp / "OVMF.fd", tmp / "vmlinuz", tmp / "initrd.img"
    tail = TAIL.read_bytes()
    ovmf.write_bytes(os.urandom((4 << 20) - len(tail)) + tail)
    half = (mib << 20) // 2
    kernel.write_bytes(os.urandom(half))
    initrd.write_bytes(os.urandom((mib << 20) - half))
    return [
        "--vcpus",
        "4",
        "--vcpu-type",
        "EPYC-Milan",
        "--ovmf",
        str(ovmf),
        "--kernel",
        str(kernel),
        "--initrd",
        str(initrd),
        "--append",
        APPEND,
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--mib", type=int, default=50, help="motte measure snp: kernel + initrd")
    parser.add_argument("--json", action="store_true")
    ns = parser.parse_args()

    tmp = scratch_dir("motte-bench-cli-")
    env = {**os.environ, "MOTTE_HOME": str(tmp / "home"), "PYTHONPYCACHEPREFIX": str(tmp / "pyc")}
    for name in ("PYTHONDONTWRITEBYTECODE", "COLUMNS", "TERMINAL_WIDTH", "NO_COLOR"):
        env.pop(name, None)
    py = sys.executable
    motte = motte_command()
    typer = [py, "-c", TYPER]
    check = subprocess.run([*motte, "--help"], capture_output=True, text=True, env=env)
    typer_check = subprocess.run([*typer, "--help"], capture_output=True, text=True, env=env)
    if check.stdout != typer_check.stdout or "Usage: motte" not in check.stdout:
        sys.exit("bench/cli.py: motte --help differs from Typer's (stale help screens?)")

    from startup import MINIMAL

    verify_args, dcap_verify = _verify_inputs()
    measure_args = _measure_inputs(tmp, ns.mib)
    minimal = tmp / "minimal.py"
    minimal.write_text(MINIMAL)
    hello = ROOT / "examples" / "hello"
    # The same outcome each way, and the direct path really taken (no Typer imported).
    probe = (
        "import sys\nfrom motte.cli import main\nmain(sys.argv[1:])\nprint('typer' in sys.modules)"
    )
    for args in (["attest", "verify", *verify_args], ["measure", "snp", *measure_args]):
        direct = subprocess.run([py, "-c", probe, *args], capture_output=True, text=True, env=env)
        if not direct.stdout.endswith("False\n"):
            sys.exit(f"bench/cli.py: motte {args[0]} imported Typer (stale _commands.json?)")
        slow = subprocess.run([*typer, *args], capture_output=True, text=True, env=env)
        if direct.stdout.rsplit("\n", 2)[0] != slow.stdout.rstrip("\n"):
            sys.exit(f"bench/cli.py: motte {args[0]} prints otherwise through Typer")
    theirs = subprocess.run(
        [py, "-m", "sevsnpmeasure.cli", "--mode", "snp", *measure_args],
        capture_output=True,
        text=True,
        env=env,
    )
    ours = subprocess.run([*motte, "measure", "snp", *measure_args], capture_output=True, text=True)
    if theirs.returncode != 0 or theirs.stdout.split() != ours.stdout.split()[:1]:
        sys.exit(f"bench/cli.py: motte and sev-snp-measure disagree: {theirs.stderr}")
    warm = subprocess.run([*motte, "run", str(hello)], capture_output=True, text=True, env=env)
    if warm.returncode != 0:  # (and fills the compiled-artifact cache)
        sys.exit(f"bench/cli.py: motte run: {warm.stderr}")

    cpu: dict[str, list[float]] = {}
    plain, dcap = "python -c pass", "python -c import dcap_qvl"
    dcap_proc, sev, wasm = "dcap_qvl verify process", "sev-snp-measure process", "minimal wasmtime"
    hello_wasm = str(hello / "hello.wasm")
    specs = [
        (plain, [py, "-c", "pass"], plain, 0),
        ("motte --help", [*motte, "--help"], plain, 0),
        ("motte --help through Typer", [*typer, "--help"], plain, 0),
        ("motte --version", [*motte, "--version"], plain, 0),
        ("import typer + adapters", [py, "-c", "import typer, typer._adapters"], plain, 0),
        (dcap, [py, "-c", "import dcap_qvl"], dcap, 0),
        ("motte attest verify --help", [*motte, "attest", "verify", "--help"], dcap, 0),
        ("  ... through Typer", [*typer, "attest", "verify", "--help"], dcap, 0),
        (dcap_proc, [py, "-c", dcap_verify], dcap_proc, 1),
        ("motte attest verify (TDX v5)", [*motte, "attest", "verify", *verify_args], dcap_proc, 1),
        ("  ... verify through Typer", [*typer, "attest", "verify", *verify_args], dcap_proc, 1),
        ("  motte.attest alone (floor)", [py, "-c", _verify_floor(verify_args)], dcap_proc, 1),
        (sev, [py, "-m", "sevsnpmeasure.cli", "--mode", "snp", *measure_args], sev, 0),
        ("motte measure snp", [*motte, "measure", "snp", *measure_args], sev, 0),
        ("  ... measure through Typer", [*typer, "measure", "snp", *measure_args], sev, 0),
        ("  motte.measure alone (floor)", [py, "-c", _measure_floor(measure_args)], sev, 0),
        (wasm, [py, str(minimal), hello_wasm], wasm, 0),
        ("motte run examples/hello", [*motte, "run", str(hello)], wasm, 0),
        ("  ... run through Typer", [*typer, "run", str(hello)], wasm, 0),
    ]
    cases = [process_case(name, cmd, env, cpu, base, st) for name, cmd, base, st in specs]
    interleave(cases, ns.rounds)
    rows: list[dict] = []
    for base in (plain, dcap, dcap_proc, sev, wasm):
        group = [c for c in cases if c.baseline == base]
        notes = {c.name: f"(target <= {TARGETS[c.name]:g})" for c in group if c.name in TARGETS}
        rows += table(
            f"CLI start-up, {ns.rounds} rounds, wall clock per process, vs {base}",
            group,
            group[0],
            notes,
        )
    by_name = {c.name: c for c in cases}
    print("\nCPU time per process (user+sys, median), and its ratio to the group's baseline:")
    cpu_medians = {}
    for case in cases:
        samples = sorted(cpu[case.name][1:])  # the first is the warm-up
        cpu_medians[case.name] = samples[len(samples) // 2]
    for case in cases:
        ratio = cpu_medians[case.name] / cpu_medians[case.baseline]  # type: ignore[index]
        print(f"  {case.name:<34} {cpu_medians[case.name] * 1e3:8.1f} ms  {ratio:6.2f}")
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
