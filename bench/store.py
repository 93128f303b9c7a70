"""The store at scale: Steward replicas on PostgreSQL, and log appends, against SQLite.

    .venv/bin/python bench/store.py [--part steward|log|all] [--attestations 200]
                                    [--clients 8] [--entries 1000000] [--rounds 3] [--json]

Everything runs on this machine, started by the script and stopped at the end: a
PostgreSQL (Debian's, initdb'd in a temporary directory, fsync ON as in a deployment),
HAProxy, and ``motte steward serve`` / the log as real processes and stores.

Steward (wall time per attestation, interleaved rounds of ``--attestations`` each, from
``--clients`` concurrent Keeps: GET /nonce, sim evidence, CSR, POST /attest):

- ``1 replica, SQLite``            the embedded default: the baseline.
- ``1 replica, PostgreSQL``        the same process on PostgreSQL: what the database costs.
- ``2 replicas, PostgreSQL, HAProxy``  the deployment of docs/scale.md.

Where the time goes: the CPU seconds each party spent per attestation during the rounds
(the Steward processes, PostgreSQL's processes, HAProxy, the clients in this process),
read from /proc: on 2 cores, throughput is bounded by the sum.

Log (``LocalLog.append_many`` in batches of 1000, one durable transaction each, with the
content-dedup lookup of the batch's leaf hashes it starts with):

- the build from 0 to ``--entries`` on each store (appends/s over the whole build);
- then interleaved rounds of 10 batches at that size: appends/s, PostgreSQL / SQLite.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from _harness import Case, interleave, table  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def cpu_of(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` (those still alive)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK


def children_of(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(p.name))
    return out


def postgres_pids(server) -> list[int]:  # type: ignore[no-untyped-def]
    master = int((server.data / "postmaster.pid").read_text().split()[0])
    return [master, *children_of(master)]


# -- Steward -----------------------------------------------------------------------------------


def run_steward(args: argparse.Namespace, server, rows: list, extra: dict) -> None:  # type: ignore[no-untyped-def]
    import http.client

    from tests.integration._peers import haproxy, start_motte
    from tests.steward.helpers import keep_csr

    from motte.steward import init_steward

    work = Path(tempfile.mkdtemp(prefix="motte-bench-steward-"))
    procs = []
    try:
        # One sim key (this MOTTE_HOME's) made the clients' evidence and is pinned by both
        # Stewards' policies.
        os.environ["MOTTE_HOME"] = str(work / "client")
        homes = {name: work / name for name in ("sqlite", "pg-a", "pg-b")}
        for home in homes.values():
            home.mkdir()
        _, url = server.create_database()
        init_steward(root=homes["sqlite"] / "steward", allow_insecure_sim=True)
        init_steward(root=homes["pg-a"] / "steward", allow_insecure_sim=True, database=url)
        shutil.copytree(homes["pg-a"] / "steward", homes["pg-b"] / "steward")
        ready = r"serving on (http://\S+)"
        sq = start_motte(["steward", "serve"], home=homes["sqlite"], ready=ready)
        pa = start_motte(["steward", "serve"], home=homes["pg-a"], ready=ready)
        pb = start_motte(["steward", "serve"], home=homes["pg-b"], ready=ready)
        procs = [sq, pa, pb]
        lb, lb_url = haproxy(work, [p.url.removeprefix("http://") for p in (pa, pb)])
        procs.append(lb)
        # the SQLite Steward was initialised with the same sim key as the clients use
        targets = {
            "1 replica, SQLite": (sq.url, [sq.proc.pid]),
            "1 replica, PostgreSQL": (pa.url, [pa.proc.pid]),
            "2 replicas, PostgreSQL, HAProxy": (lb_url, [pa.proc.pid, pb.proc.pid]),
        }
        cpu: dict[str, dict[str, float]] = {name: {} for name in targets}
        pg_pids = postgres_pids(server)

        def attest_many(url: str, n: int) -> None:
            left = [n]
            lock = threading.Lock()
            host, port = url.removeprefix("http://").split(":")

            def client() -> None:
                # http.client, not httpx: the load generator shares the two cores with what
                # it measures, and the stdlib client costs several times less CPU a request.
                c = http.client.HTTPConnection(host, int(port), timeout=60)
                try:
                    while True:
                        with lock:
                            if left[0] <= 0:
                                return
                            left[0] -= 1
                        for _attempt in range(3):
                            try:
                                attest_once(c)
                                break
                            except (http.client.RemoteDisconnected, ConnectionError):
                                # A keep-alive connection the server had closed: HTTP
                                # clients reconnect and repeat (a fresh nonce each time).
                                c.close()
                                with lock:
                                    reconnects[0] += 1
                        else:
                            raise RuntimeError("three connections in a row were closed")
                finally:
                    c.close()

            def attest_once(c: http.client.HTTPConnection) -> None:
                c.request("GET", "/nonce")
                nonce = json.loads(c.getresponse().read())["nonce"]
                raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
                c.request(
                    "POST",
                    "/attest",
                    body=keep_csr(raw),
                    headers={"Content-Type": "application/pkcs10"},
                )
                r = c.getresponse()
                body = r.read()
                assert r.status == 200, body[:500]

            threads = [threading.Thread(target=client) for _ in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()

        def case(name: str) -> Case:
            url, stewards = targets[name]

            def run() -> float:
                pg = postgres_pids(server)
                before = (cpu_of(stewards), cpu_of(pg), cpu_of([lb.proc.pid]), time.process_time())
                t0 = time.perf_counter()
                attest_many(url, args.attestations)
                wall = time.perf_counter() - t0
                after = (cpu_of(stewards), cpu_of(pg), cpu_of([lb.proc.pid]), time.process_time())
                spent = [b - a for a, b in zip(before, after, strict=True)]
                for part, s in zip(
                    ("steward", "postgresql", "haproxy", "clients"), spent, strict=True
                ):
                    cpu[name].setdefault(part, 0.0)
                    cpu[name][part] += s / args.attestations
                cpu[name].setdefault("wall", 0.0)
                cpu[name]["wall"] += wall / args.attestations
                return wall / args.attestations

            return Case(
                name, run, None if name.startswith("1 replica, SQLite") else "1 replica, SQLite"
            )

        cases = [case(n) for n in targets]
        del pg_pids
        reconnects = [0]
        interleave(cases, args.rounds)
        extra["client_reconnects"] = reconnects[0]
        rows += table(
            f"Steward: wall time per attestation, {args.clients} concurrent clients, "
            f"{args.attestations} per round, {args.rounds} rounds (lower is better)",
            cases,
            cases[0],
            {},
        )
        print("\n  throughput (attestations/s) and CPU seconds per attestation, by party:")
        base = 1 / cases[0].median
        rounds = args.rounds + 1  # the warm-up round is counted in the CPU sums
        for c in cases:
            parts = {k: v / rounds for k, v in cpu[c.name].items()}
            tput = 1 / c.median
            print(
                f"  {c.name:<34} {tput:7.1f}/s  x{tput / base:4.2f}  "
                + "  ".join(f"{k} {v * 1e3:6.1f} ms" for k, v in parts.items() if k != "wall")
            )
            extra.setdefault("steward", {})[c.name] = {
                "attestations_per_s": tput,
                "ratio_to_sqlite": tput / base,
                "cpu_ms_per_attestation": {k: v * 1e3 for k, v in parts.items() if k != "wall"},
            }
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(work, ignore_errors=True)


# -- the log -----------------------------------------------------------------------------------


def entry(i: int) -> bytes:
    """A record the size of what motte logs (~220 bytes), as bench/tlog.py makes them."""
    digest = hashlib.sha256(i.to_bytes(8, "big")).hexdigest()
    return (
        f'{{"digest":"sha256:{digest}","name":"registry.example/pkg-{i}","predicateType":'
        f'"https://slsa.dev/provenance/v1","signer":"key:ed25519:{digest[:16]}"}}'
    ).encode()


def run_log(args: argparse.Namespace, server, rows: list, extra: dict) -> None:  # type: ignore[no-untyped-def]
    from motte.tlog import LocalLog

    work = Path(tempfile.mkdtemp(prefix="motte-bench-log-", dir=REPO / "bench"))
    try:
        _, url = server.create_database()
        logs = {
            "SQLite": LocalLog(work / "sqlite", origin="bench.example/sqlite"),
            "PostgreSQL": LocalLog(work / "pg", origin="bench.example/pg", database=url),
        }
        batch = 1000
        builds = {}
        for name, log in logs.items():
            t0 = time.perf_counter()
            for lo in range(0, args.entries, batch):
                log.append_many([entry(i) for i in range(lo, min(lo + batch, args.entries))])
            builds[name] = args.entries / (time.perf_counter() - t0)
            print(f"  built {args.entries} entries on {name}: {builds[name]:,.0f} appends/s")
        next_i = {name: args.entries for name in logs}

        def case(name: str) -> Case:
            log = logs[name]

            def run() -> float:
                t0 = time.perf_counter()
                for _ in range(10):
                    lo = next_i[name]
                    log.append_many([entry(i) for i in range(lo, lo + batch)])
                    next_i[name] = lo + batch
                return (time.perf_counter() - t0) / (10 * batch)

            return Case(f"append batch=1000, {name}", run, None if name == "SQLite" else "SQLite")

        cases = [case("SQLite"), case("PostgreSQL")]
        interleave(cases, args.rounds)
        rows += table(
            f"log: wall time per append at {args.entries:,} entries, batches of 1000 "
            f"(durable commit each), {args.rounds} rounds (lower is better)",
            cases,
            cases[0],
            {},
        )
        sq, pg = (1 / c.median for c in cases)
        print(
            f"  appends/s: SQLite {sq:,.0f}, PostgreSQL {pg:,.0f}, PostgreSQL/SQLite {pg / sq:.2f}"
        )
        extra["log"] = {
            "entries": args.entries,
            "build_appends_per_s": builds,
            "appends_per_s": {"SQLite": sq, "PostgreSQL": pg},
            "ratio_pg_to_sqlite": pg / sq,
        }
        for log in logs.values():
            log.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=["steward", "log", "all"], default="all")
    ap.add_argument("--attestations", type=int, default=200)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from tests.integration._postgres import PostgresServer, find_bindir

    bindir = find_bindir()
    if bindir is None:
        sys.exit("bench/store.py needs PostgreSQL (scripts/system-deps.sh test)")
    server = PostgresServer(bindir, durable=True)
    os.environ["PGPASSFILE"] = str(server.passfile)
    rows: list = []
    extra: dict = {"cpus": os.cpu_count(), "load_at_start": os.getloadavg()[0]}
    try:
        server.start()
        if args.part in ("steward", "all"):
            run_steward(args, server, rows, extra)
        if args.part in ("log", "all"):
            run_log(args, server, rows, extra)
    finally:
        server.cleanup()
    extra["load_at_end"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps({"rows": rows, **extra}, indent=2))


if __name__ == "__main__":
    main()
