"""Package transfer throughput: MB/s through the local store and a registry, against copying.

    .venv/bin/python bench/oci.py [--size-mib 32] [--rounds 7] [--no-registry] [--json]

What is timed, each round on the same module (random bytes behind a Wasm header):

- ``copy``                the baseline: ``shutil.copyfile`` of the module into a fresh
                          directory, then fsync (the store fsyncs what it writes, so the
                          baseline does too).
- ``copy+sha256``         read, hash and write in 1 MiB chunks, then fsync: the floor for any
                          verified copy (context for the two store cases).
- ``package (store in)``  ``build_package`` into a fresh local store: hash the module, stage
                          it while re-verifying, fsync, rename, write index.json.
- ``load (store out)``    ``load_workload`` by tag: resolve, read and verify manifest,
                          Motte.toml and module (into memory, as a Keep loads it).
- ``push (registry)``     ``push`` to Debian's docker-registry on 127.0.0.1 (a new
                          repository each round, so every blob is uploaded), in 8 MiB chunks.
- ``pull (registry)``     ``pull`` into a fresh local store: streamed, verified, staged, fsynced.

Wall-clock time (``time.perf_counter``): these are I/O paths, and the registry is another
process. Cases run interleaved round-robin; the median round is reported with its spread
(IQR / median). Ratios are against ``copy`` measured in the same run. The registry runs on
the same two cores as the client, so its numbers include the server's own hashing and disk.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for tests.oci.registry_server (the registry harness)


@dataclass
class Case:
    name: str
    run: Callable[[int], None]
    samples: list[float] = field(default_factory=list)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--no-registry", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="motte-bench-oci-"))
    os.environ["MOTTE_HOME"] = str(work / "home")
    from motte.oci import LocalStore, build_package, load_workload, parse_reference, pull, push

    size = args.size_mib << 20
    src = work / "pkg"
    src.mkdir()
    (src / "Motte.toml").write_text('workload = "bench.wasm"\n')
    module = src / "bench.wasm"
    module.write_bytes(b"\0asm\x01\0\0\0" + random.Random(7).randbytes(size - 8))

    def copy(i: int) -> None:
        dst = work / f"copy-{i}"
        dst.mkdir()
        shutil.copyfile(module, dst / "bench.wasm")
        _fsync(dst / "bench.wasm")

    def copy_hash(i: int) -> None:
        dst = work / f"copyh-{i}"
        dst.mkdir()
        h = hashlib.sha256()
        with module.open("rb") as fin, (dst / "bench.wasm").open("wb") as fout:
            while chunk := fin.read(1 << 20):
                h.update(chunk)
                fout.write(chunk)
            fout.flush()
            os.fsync(fout.fileno())

    stores: dict[int, LocalStore] = {}

    def package(i: int) -> None:
        stores[i] = LocalStore(work / f"store-{i}")
        build_package(src, parse_reference("acme/bench:1"), store=stores[i])

    def load(i: int) -> None:
        w = load_workload("acme/bench:1", store=stores[i])
        assert len(w.module) == size

    cases = [
        Case("copy", copy),
        Case("copy+sha256", copy_hash),
        Case("package (store in)", package),
        Case("load (store out)", load),
    ]

    registry_ctx = None
    if not args.no_registry and Path("/usr/bin/docker-registry").exists():
        from tests.oci.registry_server import run_registry

        registry_ctx = run_registry(work / "registry")
        reg = registry_ctx.__enter__()

        def do_push(i: int) -> None:
            os.environ["MOTTE_HOME"] = str(work / "home")
            build_package(src, parse_reference(f"acme/bench{i}:1"))
            t0 = time.perf_counter()
            push(parse_reference(f"{reg.url}/acme/bench{i}:1"))
            timings["push (registry)"] = time.perf_counter() - t0

        def do_pull(i: int) -> None:
            os.environ["MOTTE_HOME"] = str(work / f"pull-home-{i}")
            t0 = time.perf_counter()
            pull(parse_reference(f"{reg.url}/acme/bench{i}:1"))
            timings["pull (registry)"] = time.perf_counter() - t0
            os.environ["MOTTE_HOME"] = str(work / "home")

        cases += [Case("push (registry)", do_push), Case("pull (registry)", do_pull)]

    timings: dict[str, float] = {}
    try:
        for i in range(args.rounds):
            for case in cases:
                t0 = time.perf_counter()
                case.run(i)
                # push/pull time only the transfer (not the packaging that sets each round up)
                case.samples.append(timings.pop(case.name, time.perf_counter() - t0))
            # keep disk use bounded: drop this round's copies and stores
            for p in work.glob(f"*-{i}"):
                shutil.rmtree(p, ignore_errors=True)
    finally:
        if registry_ctx is not None:
            registry_ctx.__exit__(None, None, None)
        shutil.rmtree(work, ignore_errors=True)

    mb = size / 1e6
    base = statistics.median(cases[0].samples)
    rows = []
    for case in cases:
        med = statistics.median(case.samples)
        q = statistics.quantiles(case.samples, n=4) if len(case.samples) >= 2 else [med, med, med]
        rows.append(
            {
                "case": case.name,
                "median_s": med,
                "mb_per_s": mb / med,
                "spread": (q[2] - q[0]) / med,
                "vs_copy": base / med,
            }
        )
    if args.json:
        print(
            json.dumps({"size_mib": args.size_mib, "rounds": args.rounds, "cases": rows}, indent=2)
        )
        return 0
    print(
        f"module {args.size_mib} MiB, {args.rounds} rounds, median wall time (spread = IQR/median)"
    )
    print(f"{'case':<20} {'MB/s':>8} {'spread':>7} {'vs copy':>8}")
    for r in rows:
        print(f"{r['case']:<20} {r['mb_per_s']:>8.0f} {r['spread']:>6.0%} {r['vs_copy']:>7.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
