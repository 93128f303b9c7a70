"""What each console page costs to render at 10^5 audit rows and 10^5 log entries.

    .venv/bin/python bench/console.py [--rows 100000] [--rounds 7] [--json]

Setup (not timed): a fresh MOTTE_HOME with

- a Steward audit log of ``--rows`` decisions (four in five accepted, for 500 Keeps each
  renewing its certificate; one in five refused with its reasons), appended through
  ``StewardStore.append_audit``. Each append is its own fsynced transaction (about 2 ms
  here), so the filled database is built once and cached under bench/out/console-<rows>/;
- the embedded transparency log with ``--rows`` signed statements (publications of 1,000
  packages by 20 keys, and reviews), and a package ``acme/hello:1.0`` published, provenanced,
  rebuilt and audited in it (tests/trust/world.py), with the policy that accepts it;
- a power plan whose JSON-lines event log holds ``--rows`` records (a reading a minute: about
  70 days) and five shutdowns, and whose UPS address refuses connections at once (the live
  view then costs nothing: what is measured is reading the log).

The console is served by uvicorn on 127.0.0.1 and fetched with one keep-alive httpx client,
wall time per request (the page is built in the server's thread pool). Baseline: the same
server, behind the same guard, answering a static body of the same size as the page, so a
ratio is what building that page costs over sending it. Cases run round-robin over
``--rounds`` rounds; medians with the spread (IQR / median).

The log search index is built once per console process, on the first search: that is timed
once, on its own, and printed (``search, first``); ``search`` is every later one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import Case, interleave, scratch_dir, unit  # noqa: E402

OUT = REPO / "bench" / "out"


def _audit_row(i: int) -> dict:
    keep = i % 500
    digest = f"sha256:{keep:064x}"
    row = {
        "time": f"2026-01-{1 + i % 28:02d}T{i % 24:02d}:00:00+00:00",
        "client": f"10.0.{keep // 250}.{keep % 250}:{40000 + i % 20000}",
        "format": "motte",
        "kind": ("snp", "tdx", "sgx", "sim")[keep % 4],
        "measurement": f"{keep:096x}",
        "workload_digest": digest,
        "csr_key_sha256": f"{i:064x}",
        "evidence_sha256": f"{i + 7:064x}",
        "sans": [f"keep{keep}.example", "localhost"],
        "rules": [{"rule": r, "outcome": "pass", "reason": "ok"} for r in ("csr", "san", "nonce")],
        "verdict": {"kind": "snp", "rules": [{"rule": "signature", "outcome": "pass"}]},
    }
    if i % 5 == 4:
        row.update(decision="rejected", reason="nonce: the nonce was already used (a replay)")
        row["rules"] = [*row["rules"][:2], {"rule": "nonce", "outcome": "fail", "reason": "replay"}]
    else:
        row.update(
            decision="accepted",
            serial=f"{i:040x}",
            not_after=f"2026-02-{1 + i % 28:02d}T00:00:00+00:00",
        )
    return row


def steward_db(rows: int) -> Path:
    """The cached, filled Steward directory (its database only: the console reads no more)."""
    from motte.steward import StewardStore

    cached = OUT / f"console-{rows}" / "steward"
    if (cached / "done").exists():
        return cached
    shutil.rmtree(cached, ignore_errors=True)
    cached.mkdir(parents=True)
    t0 = time.perf_counter()
    store = StewardStore(cached / "steward.db")
    for i in range(rows):
        store.append_audit(_audit_row(i))
        if i % 10_000 == 9_999:
            print(f"  audit rows: {i + 1:,}", file=sys.stderr)
    store.close()
    (cached / "done").write_text("")
    print(f"built {rows:,} audit rows in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return cached


def fill_log(rows: int, world: Path) -> Path:
    """acme/hello:1.0 with its evidence, and ``rows`` other statements; returns the policy."""
    from tests.trust.world import make_world

    from motte.sign import (
        INTOTO_PAYLOAD_TYPE,
        PUBLICATION,
        REVIEW,
        Statement,
        Subject,
        generate_key,
        sign_envelope,
        sign_statement,
    )
    from motte.tlog import open_log
    from motte.trust import REBUILD

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
    keys = [generate_key() for _ in range(20)]
    log = open_log()
    batch = []
    for i in range(rows):
        pkg = f"pkg{i % 1000}"
        subject = (Subject.for_digest(f"other/{pkg}", f"sha256:{i:064x}"),)
        if i % 10 == 9:
            pred = {"reviewer": {"id": f"mailto:r{i % 7}@example.org"}, "scope": "full",
                    "result": "pass", "date": "2026-01-01"}  # fmt: skip
            st = Statement(subject, REVIEW, pred)
        else:
            st = Statement(subject, PUBLICATION, {"namespace": "other", "name": pkg})
        batch.append(sign_envelope(INTOTO_PAYLOAD_TYPE, st.to_bytes(), [keys[i % 20]]).to_bytes())
        if len(batch) == 1000:
            log.append_many(batch)
            batch = []
    log.append_many(batch)
    log.checkpoint()
    log.close()
    policy = world / "policy.toml"
    policy.write_text(w.policy_text())
    return policy


def power_plan(rows: int, folder: Path) -> Path:
    with socket.socket() as s:  # a port nobody listens on: the live view fails at once
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    events = folder / "lab.events.jsonl"
    now = time.time()
    with events.open("w") as f:
        for i in range(rows):
            ts = now - (rows - i) * 60
            if i % (rows // 5) == rows // 10:
                f.write(json.dumps({"ts": ts, "time": str(ts), "kind": "SHUTDOWN", "ups": "x",
                                    "message": "shutdown started", "data": {}}) + "\n")  # fmt: skip
            rec = {"ts": ts, "kind": "reading", "ups": f"rack@127.0.0.1:{dead}", "message": "",
                   "data": {"status": "OL", "charge": 100 - i % 40, "runtime": 1800 - i % 900,
                            "load": 30 + i % 20}}  # fmt: skip
            f.write(json.dumps(rec, sort_keys=True) + "\n")
    plan = folder / "lab.toml"
    plan.write_text(
        f"""name = "lab"
[ups]
address = "rack@127.0.0.1:{dead}"
tls = "off"
[notify]
log = "{events}"
[hosts.pi]
coordinator = true
stop = ["true"]
[hosts.app]
drain = ["true"]
stop = ["true"]
[hosts.switch]
never_stop = true
"""
    )
    return plan


class Server:
    """The console (and a static twin for the baselines) under uvicorn in a thread."""

    def __init__(self, app) -> None:
        import uvicorn

        # IPPROTO_TCP, as motte's own listeners do (motte._listen): asyncio then sets
        # TCP_NODELAY on accepted sockets; without it small answers wait ~40 ms on Nagle.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="error", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


def static_twin(sizes: dict[str, int]):
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse

    from motte.console import ConsoleGuard, Token

    app = FastAPI()
    bodies = {name: b"x" * size for name, size in sizes.items()}

    @app.get("/{name}")
    def page(name: str) -> HTMLResponse:
        return HTMLResponse(bodies[name])

    return ConsoleGuard(app, Token("t" * 43))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    home = scratch_dir("motte-bench-console-")
    os.environ["MOTTE_HOME"] = str(home)
    try:
        return run(args, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def run(args: argparse.Namespace, home: Path) -> int:
    import httpx

    from motte.console import ConsoleConfig, create_console_app

    t0 = time.perf_counter()
    steward = steward_db(args.rows)
    world = home / "world"
    world.mkdir()
    policy = fill_log(args.rows, world)
    plan = power_plan(args.rows, world)
    print(f"setup: {time.perf_counter() - t0:.1f} s", file=sys.stderr)

    console = create_console_app(
        ConsoleConfig(token="t" * 43, steward_dir=steward, trust_policies=(policy,), plans=(plan,))
    )
    server = Server(console)
    client = httpx.Client(base_url=server.url, timeout=120)
    digest = f"sha256:{123:064x}"
    pages = {
        "keeps": "/keeps",
        "keeps, refused + text": "/keeps?decision=rejected&q=replay",
        "keeps, older page": "/keeps?before=50000",
        "keeps, one workload": f"/keeps?workload=sha256:{7:064x}",
        "log, latest": "/log",
        "search, a digest": f"/log?q={digest}",
        "search, a package": "/log?q=other/pkg7",
        "entry + verification": f"/log/entry/{args.rows // 2}",
        "trust": "/trust?ref=acme/hello:1.0&policy=policy.toml",
        "power": "/power?hours=6",
        "secrets": "/secrets",
    }

    def get(path: str) -> bytes:
        r = client.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        assert 'class="error"' not in r.text, (path, r.text[r.text.find('class="error"') :][:300])
        return r.content

    t = time.perf_counter()
    get("/log?q=other/pkg1")
    first_search = time.perf_counter() - t
    t = time.perf_counter()
    get(pages["trust"])
    first_trust = time.perf_counter() - t
    sizes = {name: len(get(path)) for name, path in pages.items()}
    twin = Server(static_twin({f"p{i}": s for i, s in enumerate(sizes.values())}))
    twin_client = httpx.Client(base_url=twin.url, timeout=60)

    def timed(fetch):
        def run_once() -> float:
            start = time.perf_counter()
            fetch()
            return time.perf_counter() - start

        return run_once

    cases, notes = [], {}
    for i, (name, path) in enumerate(pages.items()):
        base = Case(f"static {sizes[name] // 1024} KiB ({name})", timed(
            lambda i=i: twin_client.get(f"/p{i}").raise_for_status()))  # fmt: skip
        case = Case(name, timed(lambda path=path: get(path)), baseline=base.name)
        cases += [base, case]
        notes[name] = f"{sizes[name] / 1024:.0f} KiB"
    interleave(cases, args.rounds)
    rows = []
    print(f"\nconsole pages at {args.rows:,} audit rows, log entries and event-log records")
    print(f"  {'page':<24} {'size':>8} {'median':>10} {'spread':>7} {'static':>9} {'ratio':>7}")
    by_name = {c.name: c for c in cases}
    for case in cases:
        if case.baseline is None:
            continue
        base = by_name[case.baseline]
        ratio = case.median / base.median
        print(
            f"  {case.name:<24} {notes[case.name]:>8} {unit(case.median):>10} "
            f"{case.spread:>6.0%} {unit(base.median):>9} {ratio:>7.1f}"
        )
        rows.append(
            {
                "page": case.name,
                "median": case.median,
                "spread": case.spread,
                "static": base.median,
                "ratio": ratio,
            }
        )
    print(f"  search, first (builds the index): {first_search:.2f} s")
    print(f"  trust, first (indexes the log for trust's history): {first_trust:.2f} s")
    twin.stop()
    server.stop()
    console.close()
    if args.json:
        print(json.dumps({"rows": args.rows, "first_search": first_search,
                          "first_trust": first_trust, "cases": rows}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
