"""What a trust judgement costs, against the floors measured in the same run.

    .venv/bin/python bench/trust.py [--entries 10000] [--rounds 7] [--json]

Setup (not timed): a fresh MOTTE_HOME with a root delegating ``acme``, one package
``acme/hello:1.0`` with its publication, SLSA provenance, a rebuild statement and an audit,
and ``--entries`` other statements in the embedded log (signed publications of other
packages, the size of real ones), so the judgement has a log of that size to read.

Cases, round-robin over ``--rounds`` rounds, CPU seconds of this process (medians, with the
spread IQR / median as this run's noise figure):

- ``parse floor``     read every entry of the log and parse it as a DSSE envelope holding an
                      in-toto statement: the least any reader of the whole history must do.
- ``assess, cold``    motte.trust.assess with no history index yet: verify the package's blobs
                      and statements (Ed25519, inclusion proofs, fork check), index the whole
                      log for its history, decide. What the first judgement on a machine costs.
                      Ratio over ``parse floor``.
- ``assess``          the same with the index up to date (every later judgement: only entries
                      appended since are read). Ratio over ``parse floor``.
- ``ed25519 verify``  one signature verification through ``cryptography`` (OpenSSL).
- ``decide``          the pure judgement on evidence gathered once. Ratio over one verify.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))


def setup(n: int) -> tuple:
    os.environ["MOTTE_HOME"] = tempfile.mkdtemp(prefix="motte-bench-trust-")
    world = Path(os.environ["MOTTE_HOME"]) / "world"
    world.mkdir()
    from tests.trust.world import make_world

    from motte.sign import (
        INTOTO_PAYLOAD_TYPE,
        PUBLICATION,
        Statement,
        Subject,
        generate_key,
        sign_envelope,
        sign_statement,
    )
    from motte.tlog import open_log
    from motte.trust import REBUILD, gather

    w = make_world(world)
    digest = w.release("1.0", b"bench")
    rebuild = {
        "result": "match",
        "source": "file:///src",
        "commit": "a" * 40,
        "command": "sh build.sh",
        "package": {"expected": digest, "rebuilt": digest},
        "module": {"expected": "sha256:" + "b" * 64, "rebuilt": "sha256:" + "b" * 64},
        "provenance": "sha256:" + "c" * 64,
        "finishedOn": "2026-01-01T00:00:00Z",
    }
    sign_statement("acme/hello:1.0", [w.rebuilder], REBUILD, rebuild)
    w.audit("1.0")
    others = generate_key()
    log = open_log()
    batch = []
    for i in range(n):
        st = Statement(
            (Subject.for_digest(f"other/pkg{i}", f"sha256:{i:064x}"),),
            PUBLICATION,
            {"namespace": "other", "name": f"pkg{i}"},
        )
        batch.append(sign_envelope(INTOTO_PAYLOAD_TYPE, st.to_bytes(), [others]).to_bytes())
        if len(batch) == 1000:
            log.append_many(batch)
            batch = []
    log.append_many(batch)
    log.checkpoint()
    log.close()
    policy = w.policy()
    evidence = gather("acme/hello:1.0", policy, now=dt.datetime.now(dt.UTC))
    return w, policy, evidence


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entries", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    t0 = time.perf_counter()
    try:
        w, policy, evidence = setup(args.entries)
        return _run(args, w, policy, evidence, t0)
    finally:
        import shutil

        shutil.rmtree(os.environ["MOTTE_HOME"], ignore_errors=True)


def _run(args: argparse.Namespace, w, policy, evidence, t0: float) -> int:
    from motte.sign import Envelope, Statement
    from motte.tlog import open_log
    from motte.trust import assess, decide

    print(
        f"setup: {args.entries:,} log entries in {time.perf_counter() - t0:.1f} s", file=sys.stderr
    )
    assert decide(evidence, policy, dt.datetime.now(dt.UTC)).accepted

    def parse_floor() -> None:
        log = open_log()
        entries = log.read_entries(0, log.size)
        log.close()
        for e in entries:
            Statement.from_bytes(Envelope.from_bytes(e).payload)

    def judge() -> None:
        assert assess("acme/hello:1.0", policy, remember=False).accepted

    from motte.trust._history import index_path

    judge_cold = judge  # the same call; the index is removed before it (below)

    sig = w.alice.sign(b"message")
    pub = w.alice.public

    def verify_many() -> None:
        for _ in range(200):
            pub.verify(sig, b"message")

    now = dt.datetime.now(dt.UTC)

    def decide_many() -> None:
        for _ in range(200):
            decide(evidence, policy, now)

    cases = {
        "parse floor": (parse_floor, 1),
        "assess, cold": (judge_cold, 1),
        "assess": (judge, 1),
        "ed25519 verify": (verify_many, 200),
        "decide": (decide_many, 200),
    }
    times: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(args.rounds):
        for name, (fn, per) in cases.items():
            if name == "assess, cold":
                for f in index_path().parent.glob(index_path().name + "*"):
                    f.unlink()
            c0 = time.process_time()
            fn()
            times[name].append((time.process_time() - c0) / per)

    def med(name: str) -> float:
        return statistics.median(times[name])

    def spread(name: str) -> float:
        q = statistics.quantiles(times[name], n=4) if len(times[name]) > 1 else [0, 0, 0]
        return (q[2] - q[0]) / med(name)

    rows = [
        ("parse floor", 1.0, ""),
        ("assess, cold", med("assess, cold") / med("parse floor"), "parse floor"),
        ("assess", med("assess") / med("parse floor"), "parse floor"),
        ("ed25519 verify", 1.0, ""),
        ("decide", med("decide") / med("ed25519 verify"), "ed25519 verify"),
    ]
    out = [
        {
            "case": name,
            "ms": round(med(name) * 1000, 3),
            "spread": round(spread(name), 2),
            "ratio": round(ratio, 2),
            "baseline": base,
        }
        for name, ratio, base in rows
    ]
    if args.json:
        print(json.dumps({"entries": args.entries, "rounds": args.rounds, "cases": out}, indent=2))
        return 0
    print(f"trust judgement, log of {args.entries:,} entries, {args.rounds} rounds, CPU time")
    print(f"{'case':<16} {'ms':>10} {'spread':>7} {'ratio':>7}  baseline")
    for r in out:
        print(
            f"{r['case']:<16} {r['ms']:>10.3f} {r['spread']:>6.0%} {r['ratio']:>7.2f}  "
            f"{r['baseline']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
