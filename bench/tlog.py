"""Transparency-log throughput at 1M entries, against SHA-256 on the same data.

    .venv/bin/python bench/tlog.py [--entries 1000000] [--rounds 5] [--json]

What is measured, in this order, round-robin over ``--rounds`` rounds (medians reported with
their spread, IQR / median, as the noise figure of this run):

- ``sha256 floor``       hashlib (OpenSSL) SHA-256 over the very entries appended below: one
                         leaf hash per entry and one interior hash per entry, the hashing an
                         RFC 6962 tree cannot avoid. The physical floor; ratio 1.00.
- ``append batch=B``     LocalLog.append_many on the 1M-entry log, B entries per durable
                         transaction (SQLite WAL, synchronous=FULL: one fsync per batch), the
                         way ``motte log serve`` group-commits. Wall time: the fsync is the
                         point. Ratio: appends/s over floor entries/s.
- ``proof verify``       verify_inclusion of a proof at 1M (20 SHA-256 and nothing else): the
                         floor of any work on a proof of that size; ratio 1.00 for proofs.
- ``inclusion proof``    LocalLog.inclusion_proof(i, 1M) for random i: plan, one SQLite read
                         of the O(log n) stored nodes, fold. Ratio over ``proof verify``.
- ``inclusion bundle``   LocalLog.inclusion_bundle(i): the proof plus the stored checkpoint,
                         formatted as a tlog-proof (what ``motte sign`` asks for).

Clocks: appends are timed in wall time (the fsync is what a writer waits for); the others
are CPU-bound and timed in CPU seconds of this process (``time.process_time``), so other work
on a shared machine inflates them less.

The 1M-entry log is built once and cached under bench/out/tlog-<n>/ (the build rate is
printed when it happens); every run appends to a fresh copy of it, so each run starts at
exactly n entries.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from motte.tlog import LocalLog, leaf_hash  # noqa: E402
from motte.tlog._merkle import verify_inclusion  # noqa: E402

OUT = REPO / "bench" / "out"
CACHE_FORMAT = "2"  # bump when the store's schema or the entry generator changes


def entry(i: int) -> bytes:
    """A record the size of what motte logs: a digest, a name, a signer, a type (~220 bytes)."""
    digest = hashlib.sha256(i.to_bytes(8, "big")).hexdigest()
    return (
        f'{{"digest":"sha256:{digest}","name":"registry.example/pkg-{i}","predicateType":'
        f'"https://slsa.dev/provenance/v1","signer":"key:ed25519:{digest[:16]}"}}'
    ).encode()


def build_cache(n: int) -> Path:
    cache = OUT / f"tlog-{n}"
    marker = cache / "complete"
    if marker.exists() and marker.read_text() == CACHE_FORMAT:
        return cache
    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    print(f"building the {n:,}-entry log in {cache} (once) ...", file=sys.stderr)
    t0 = time.perf_counter()
    with LocalLog(cache, origin="bench.motte.example/tlog") as log:
        step = 10_000
        for lo in range(0, n, step):
            log.append_many([entry(i) for i in range(lo, min(n, lo + step))])
            if lo % 200_000 == 0:
                print(f"  {lo:,}", file=sys.stderr)
        log.checkpoint()
    dt = time.perf_counter() - t0
    print(f"built in {dt:.1f} s: {n / dt:,.0f} appends/s (batches of 10,000, entries "
          "generated in the loop)", file=sys.stderr)  # fmt: skip
    marker.write_text(CACHE_FORMAT)
    return cache


def fresh_copy(cache: Path) -> Path:
    work = OUT / "tlog-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(mode=0o700)
    for name in ("log.key", "log.db"):
        shutil.copy2(cache / name, work / name)
    return work


def floor_hashes(entries: list[bytes]) -> None:
    leaves = [hashlib.sha256(b"\x00" + e).digest() for e in entries]
    for i in range(len(leaves) - 1):  # one interior hash per entry, as the tree does
        hashlib.sha256(b"\x01" + leaves[i] + leaves[i + 1]).digest()


def rate(samples: list[float]) -> tuple[float, float]:
    med = statistics.median(samples)
    if len(samples) < 4:
        return med, 0.0
    q = statistics.quantiles(samples, n=4)
    return med, (q[2] - q[0]) / med


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--per-round", type=int, default=20_000, help="appends per case per round")
    ap.add_argument("--proofs", type=int, default=5_000, help="proofs per round")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    cache = build_cache(args.entries)
    work = fresh_copy(cache)
    log = LocalLog(work)
    n = log.size
    assert n == args.entries, f"cached log holds {n} entries"
    rng = random.Random(1)
    samples: dict[str, list[float]] = {}
    next_i = n

    def add(case: str, ops: int, seconds: float) -> None:
        samples.setdefault(case, []).append(ops / seconds)

    # checked once, so nothing fast-but-wrong is timed
    idx = rng.randrange(n)
    verify_inclusion(
        leaf_hash(entry(idx)), idx, n, log.inclusion_proof(idx, n), log.store.root(n)[1]
    )

    for _ in range(args.rounds):
        for batch in (1000, 100):
            entries = [entry(i) for i in range(next_i, next_i + args.per_round)]
            next_i += len(entries)
            t0 = time.process_time()
            floor_hashes(entries)
            add("sha256 floor", len(entries), time.process_time() - t0)
            t0 = time.perf_counter()
            for lo in range(0, len(entries), batch):
                log.append_many(entries[lo : lo + batch])
            add(f"append batch={batch}", len(entries), time.perf_counter() - t0)
        size = log.size
        root = log.store.root(size)[1]
        picks = [rng.randrange(n) for _ in range(args.proofs)]
        t0 = time.process_time()
        proofs = [log.inclusion_proof(i, n) for i in picks]
        add("inclusion proof", len(picks), time.process_time() - t0)
        leaves = [leaf_hash(entry(i)) for i in picks]
        root_n = log.store.root(n)[1]
        t0 = time.process_time()
        for i, leaf, p in zip(picks, leaves, proofs, strict=True):
            verify_inclusion(leaf, i, n, p, root_n)
        add("proof verify", len(picks), time.process_time() - t0)
        log.checkpoint()
        k = args.proofs // 5
        t0 = time.process_time()
        for i in picks[:k]:
            log.inclusion_bundle(i)
        add("inclusion bundle", k, time.process_time() - t0)
        assert root  # the tree kept growing consistently

    log.close()
    shutil.rmtree(work, ignore_errors=True)
    results = {case: rate(s) for case, s in samples.items()}
    floor = results["sha256 floor"][0]
    verify = results["proof verify"][0]
    ratio = {c: (m / floor if c.startswith(("sha", "append")) else m / verify)
             for c, (m, _) in results.items()}  # fmt: skip
    if args.json:
        print(json.dumps({c: {"per_second": m, "spread": s, "ratio": ratio[c]}
                          for c, (m, s) in results.items()}, indent=2))  # fmt: skip
        return 0
    print(f"tlog at {n:,} entries, {args.rounds} rounds (median ops/s; spread = IQR/median)")
    print(f"{'case':<22}{'ops/s':>14}{'spread':>9}{'ratio':>9}  {'clock':<6}baseline")
    order = ["sha256 floor", "append batch=1000", "append batch=100",
             "proof verify", "inclusion proof", "inclusion bundle"]  # fmt: skip
    for c in order:
        m, s = results[c]
        base = "sha256 floor" if c.startswith(("sha", "append")) else "proof verify"
        clock = "wall" if c.startswith("append") else "cpu"
        print(f"{c:<22}{m:>14,.0f}{s:>8.0%}{ratio[c]:>9.3f}  {clock:<6}{base}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
