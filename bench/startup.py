"""Start-up: ``motte run examples/hello`` with a warm cache, against the least a Python
program must do to run the same module with wasmtime.

    .venv/bin/python bench/startup.py [--rounds 25] [--json]

Each case is a fresh process running examples/hello/hello.wasm (output to /dev/null);
cases run interleaved round-robin, and the median is reported with its spread.

- ``python -c pass``          context: the interpreter alone.
- ``minimal wasmtime``        the baseline: a script that imports wasmtime, compiles
                              hello.wasm, links WASI and runs it, nothing else (no limits, no
                              manifest, no cache, no checks).
- ``minimal, precompiled``    context: the same script deserializing an artifact compiled
                              beforehand (unchecked): the floor for any Python runner.
- ``motte run (warm cache)``  the ``motte`` console script: argument parsing, the manifest,
                              the workload digest, the HMAC-checked cached artifact, limits,
                              the epoch ticker and the supervising thread. Target: <= 1.3 x
                              ``minimal wasmtime``.

Bytecode is cached for every case alike (PYTHONPYCACHEPREFIX in a temporary directory;
the warm-up run fills it). Wall-clock time of each process (what a user waits for), and
its CPU time (user+sys from rusage) beside it, which the other load on a shared machine
inflates less.
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

HELLO = ROOT / "examples" / "hello"
TARGET = 1.3

MINIMAL = """\
import sys
import wasmtime

engine = wasmtime.Engine()
linker = wasmtime.Linker(engine)
linker.define_wasi()
if sys.argv[1].endswith(".cwasm"):
    module = wasmtime.Module.deserialize_file(engine, sys.argv[1])
else:
    module = wasmtime.Module.from_file(engine, sys.argv[1])
store = wasmtime.Store(engine)
wasi = wasmtime.WasiConfig()
wasi.argv = ["hello.wasm", "world"]
wasi.env = [("GREETING", "Hello")]
wasi.inherit_stdout()
store.set_wasi(wasi)
try:
    linker.instantiate(store, module).exports(store)["_start"](store)
except wasmtime.ExitTrap as e:
    sys.exit(e.code)
"""


def process_case(name: str, cmd: list[str], env: dict[str, str], cpu: dict) -> Case:
    def run() -> float:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True, env=env)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.setdefault(name, []).append(
            (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        )
        return wall

    return Case(name, run)


def motte_command() -> list[str]:
    script = Path(sys.executable).parent / "motte"
    return [str(script)] if script.exists() else [sys.executable, "-m", "motte"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--json", action="store_true")
    ns = parser.parse_args()

    import wasmtime

    tmp = scratch_dir("motte-bench-startup-")
    # Every process may cache its bytecode (into a private prefix, not the checkout), as an
    # installed motte does: PYTHONDONTWRITEBYTECODE would recompile motte's modules on every
    # run while wasmtime's came precompiled from its wheel.
    env = {**os.environ, "MOTTE_HOME": str(tmp / "home"), "PYTHONPYCACHEPREFIX": str(tmp / "pyc")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    minimal = tmp / "minimal.py"
    minimal.write_text(MINIMAL)
    wasm = HELLO / "hello.wasm"
    cwasm = tmp / "hello.cwasm"
    cwasm.write_bytes(wasmtime.Module.from_file(wasmtime.Engine(), wasm).serialize())

    motte = [*motte_command(), "run", str(HELLO)]
    warm = subprocess.run(motte, capture_output=True, text=True, env=env)  # fills the cache
    assert warm.returncode == 0 and warm.stdout.startswith("Hello, world!"), warm.stderr
    out = subprocess.run(
        [sys.executable, str(minimal), str(wasm)], capture_output=True, text=True, env=env
    )
    assert out.stdout == warm.stdout, (out.stdout, warm.stdout)

    cpu: dict[str, list[float]] = {}
    cases = [
        process_case("python -c pass", [sys.executable, "-c", "pass"], env, cpu),
        process_case("minimal wasmtime", [sys.executable, str(minimal), str(wasm)], env, cpu),
        process_case("minimal, precompiled", [sys.executable, str(minimal), str(cwasm)], env, cpu),
        process_case("motte run (warm cache)", motte, env, cpu),
    ]
    interleave(cases, ns.rounds)
    rows = table(
        f"start-up, {ns.rounds} rounds (wall clock per process)",
        cases,
        cases[1],
        {"motte run (warm cache)": f"(target <= {TARGET})"},
    )
    print("\nCPU time per process (user+sys, median):")
    medians = {}
    for case in cases:
        samples = sorted(cpu[case.name][1:])  # the warm-up run is the first
        medians[case.name] = samples[len(samples) // 2]
        print(f"  {case.name:<34} {medians[case.name] * 1e3:8.1f} ms")
    wall_ratio = cases[3].median / cases[1].median
    cpu_ratio = medians["motte run (warm cache)"] / medians["minimal wasmtime"]
    print()
    print(verdict("motte run / minimal wasmtime, wall clock", wall_ratio, TARGET))
    print(verdict("motte run / minimal wasmtime, CPU time", cpu_ratio, TARGET))
    if ns.json:
        dump(rows, {"wall_ratio": wall_ratio, "cpu_ratio": cpu_ratio, "cpu_medians": medians})
    return 0


if __name__ == "__main__":
    sys.exit(main())
