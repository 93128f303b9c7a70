"""The log on a real PostgreSQL: one sequencer, a hot standby, and what faults do.

The crash-test method of test_tlog_crash.py, with two `motte log serve` processes on one
database: writers append through whichever answers, a checkpoint reader records every
checkpoint served, and the sequencer is SIGKILLed with requests in flight. The standby
takes over; every acknowledged entry is at its index and every checkpoint ever served is
consistent with the tree, through several failovers; the store then audits clean. Then the
database itself is stopped and started under appends: 503s meanwhile, the same sequencer
appends again afterwards.
"""

from __future__ import annotations

import base64
import threading
import time

import httpx
import pytest

from motte.tlog import LocalLog, leaf_hash, verify_checkpoint
from motte.tlog._audit import audit_log
from tests.integration._peers import Process, start_motte
from tests.integration.test_tlog_crash import Observed, check_after_restart

pytestmark = pytest.mark.integration

READY = r"serving .* on (http://\S+)"
ROUNDS = 3


def writer(urls: list[str], tag: str, seen: Observed, stop: threading.Event) -> None:
    """Appends through whichever server answers; a refused or lost request moves on to the
    next server with a new entry (a lost one may or may not be in the log: it was never
    acknowledged)."""
    n = turn = 0
    with httpx.Client(timeout=30) as c:
        while not stop.is_set():
            entry = f"{tag}-{n}".encode()
            n += 1
            try:
                r = c.post(urls[turn % len(urls)] + "/add", content=entry)
            except httpx.HTTPError:
                turn += 1
                time.sleep(0.05)
                continue
            if r.status_code != 200:
                assert r.status_code == 503, r.text  # standby, or the database away
                turn += 1
                time.sleep(0.05)
                continue
            got = r.json()
            assert got["leaf_hash"] == base64.b64encode(leaf_hash(entry)).decode()
            with seen.lock:
                assert got["index"] not in seen.acked, "an index was handed out twice"
                seen.acked[got["index"]] = entry


def reader(urls: list[str], vkey: str, seen: Observed, stop: threading.Event) -> None:
    with httpx.Client(timeout=30) as c:
        while not stop.is_set():
            for url in urls:
                try:
                    r = c.get(url + "/checkpoint")
                except httpx.HTTPError:
                    continue
                if r.status_code != 200:
                    continue
                cp = verify_checkpoint(r.content, [vkey])
                with seen.lock:
                    prev = seen.checkpoints.setdefault(cp.size, r.content)
                    assert verify_checkpoint(prev, [vkey]).root_hash == cp.root_hash
            time.sleep(0.02)


def serve(d, home, url: str) -> Process:
    return start_motte(["log", "serve", "--dir", str(d), "--db", url], home=home, ready=READY)


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def acked(seen: Observed) -> int:
    with seen.lock:
        return len(seen.acked)


def test_sigkill_the_sequencer_the_standby_takes_over(tmp_path, pg_database):
    d, home = tmp_path / "log", tmp_path / "home"
    with LocalLog(d, origin="motte.example/failover", database=pg_database) as log:
        vkey = log.verifier_key
    seen = Observed()
    primary = serve(d, home, pg_database)
    primary.wait_for_line(r"sequencer: this process appends")
    standby = serve(d, home, pg_database)
    standby.wait_for_line(r"standby: another process is the sequencer")
    sizes = []
    try:
        for round_ in range(ROUNDS):
            urls = [primary.url, standby.url]
            stop = threading.Event()
            threads = [
                threading.Thread(target=writer, args=(urls, f"r{round_}w{i}", seen, stop))
                for i in range(4)
            ]
            threads.append(threading.Thread(target=reader, args=(urls, vkey, seen, stop)))
            for t in threads:
                t.start()
            at_start = acked(seen)
            wait_for(lambda n=at_start: acked(seen) >= n + 40, 180, "appends to flow")
            primary.kill()  # SIGKILL, requests in flight
            at_kill = acked(seen)
            standby.wait_for_line(r"sequencer: this process appends", timeout=120)
            wait_for(lambda n=at_kill: acked(seen) >= n + 40, 180, "appends after the take-over")
            stop.set()
            for t in threads:
                t.join(120)
            sizes.append(check_after_restart(standby.url, vkey, seen))
            # the killed one comes back as the standby of the new sequencer
            primary, standby = standby, serve(d, home, pg_database)
            standby.wait_for_line(r"standby: another process is the sequencer")
    finally:
        primary.kill()
        standby.kill()
    print(f"acknowledged {len(seen.acked)}, checkpoints {len(seen.checkpoints)}, sizes {sizes}")
    assert sizes == sorted(sizes)
    with LocalLog(d, database=pg_database) as log:  # the store agrees with itself
        report = audit_log(log)
    assert report.size >= len(seen.acked) and report.checkpoints >= len(seen.checkpoints)


def test_a_second_writer_is_refused_while_a_sequencer_runs(tmp_path, pg_database, cli):
    d, home = tmp_path / "log", tmp_path / "home"
    LocalLog(d, origin="motte.example/one-writer", database=pg_database).close()
    server = serve(d, home, pg_database)
    try:
        (tmp_path / "e").write_bytes(b"entry")
        r = cli("log", "append", tmp_path / "e", "--dir", d, "--db", pg_database)
        assert r.exit_code == 1 and "another process is this log's sequencer" in r.stderr
        assert "--log URL" in r.stderr
        r = cli("log", "append", tmp_path / "e", "--log", server.url)  # through it: fine
        assert r.exit_code == 0, r.stderr
    finally:
        server.stop()
    r = cli("log", "append", tmp_path / "e", "--dir", d, "--db", pg_database)
    assert r.exit_code == 0, r.stderr  # no sequencer now: a one-off writer may append


def test_postgresql_stopped_and_started_under_appends(tmp_path):
    from tests.integration._postgres import private_server

    d, home = tmp_path / "log", tmp_path / "home"
    with private_server() as (server, url):
        with LocalLog(d, origin="motte.example/restart", database=url) as log:
            vkey = log.verifier_key
        seen = Observed()
        seq = serve(d, home, url)
        try:
            run_through_a_restart(server, seq, vkey, seen)
        finally:
            seq.stop()  # whatever failed: no server outlives the test
        assert "Traceback" not in "\n".join(seq.lines)
        with LocalLog(d, database=url) as log:
            assert audit_log(log).size >= len(seen.acked)


def run_through_a_restart(server, seq: Process, vkey: str, seen: Observed) -> None:  # type: ignore[no-untyped-def]
    """Appends flow; the database stops (503s), starts (the same sequencer appends again)."""
    stop = threading.Event()
    threads = [
        threading.Thread(target=writer, args=([seq.url], f"w{i}", seen, stop)) for i in range(3)
    ]
    threads.append(threading.Thread(target=reader, args=([seq.url], vkey, seen, stop)))
    try:
        for t in threads:
            t.start()
        wait_for(lambda: acked(seen) >= 30, 180, "appends")
        server.stop()
        with httpx.Client(timeout=60) as c:
            r = c.post(seq.url + "/add", content=b"while the database is away")
            assert r.status_code == 503 and "unavailable" in r.text, r.text
            r = c.get(seq.url + "/checkpoint")
            assert r.status_code == 503 and "unavailable" in r.text, r.text
        at_stop = acked(seen)
        server.start()
        seq.wait_for_line(r"sequencer: this process appends now", timeout=120)
        wait_for(lambda: acked(seen) >= at_stop + 30, 180, "appends after the restart")
        assert seq.proc.poll() is None  # the same process, never restarted
    finally:
        stop.set()
        for t in threads:
            t.join(120)
    check_after_restart(seq.url, vkey, seen)
