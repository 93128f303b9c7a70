"""Steward replicas sharing one real PostgreSQL, behind a real HAProxy, and what faults do.

- A nonce issued by one replica is good exactly once at any replica: the same CSR sent to
  both at the same instant is accepted by exactly one.
- A replica killed with SIGKILL in the middle of a load: clients retry through HAProxy to
  the other and succeed; no nonce is honoured twice, every used nonce has exactly one audit
  row that consumed it, and every certificate a client holds has its audit row.
- PostgreSQL stopped and started under load: clear 503 problems meanwhile, then the same
  Steward processes serve again, nothing restarted.

What is counted is what the test caused (requests it sent, answers it got), never how fast
anything went; every wait is on a condition, with a generous timeout.
"""

from __future__ import annotations

import base64
import shutil
import threading
import time
from dataclasses import dataclass, field

import httpx
import pytest

from motte.steward import init_steward
from motte.steward._store import StewardStore
from motte.store import parse_database_url
from tests.conftest import require
from tests.integration._peers import Process, haproxy, start_motte
from tests.steward.helpers import keep_csr

pytestmark = pytest.mark.integration

READY = r"serving on (http://\S+)"
CSR = {"Content-Type": "application/pkcs10"}


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def store_at(url: str) -> StewardStore:
    return StewardStore(parse_database_url(url))


def start_replicas(tmp_path, motte_home, url: str, n: int = 2) -> list[Process]:
    """``steward init --db`` here, then replicas: the first in this MOTTE_HOME with --db,
    the others in homes holding a copy of the Steward directory (the documented way to
    share the CA key: a 0600 file each replica reads), finding the database in its
    config.toml."""
    init_steward(database=url, allow_insecure_sim=True)
    procs = [start_motte(["steward", "serve", "--db", url], home=motte_home, ready=READY)]
    try:
        for i in range(1, n):
            home = tmp_path / f"replica-{i}"
            home.mkdir()
            shutil.copytree(motte_home / "steward", home / "steward")  # modes kept (copy2)
            assert (home / "steward" / "ca-key.pem").stat().st_mode & 0o777 == 0o600
            procs.append(start_motte(["steward", "serve"], home=home, ready=READY))
    except BaseException:
        for p in procs:
            p.stop()
        raise
    return procs


def nonce_from(client: httpx.Client, url: str) -> bytes:
    r = client.get(url + "/nonce")
    assert r.status_code == 200, r.text
    return b64url(r.json()["nonce"])


@pytest.fixture
def replicas(tmp_path, motte_home, pg_database):
    procs = start_replicas(tmp_path, motte_home, pg_database)
    try:
        yield procs, pg_database
    finally:
        for p in procs:
            p.stop()


def test_a_nonce_from_one_replica_is_good_exactly_once_at_any(replicas):
    (a, b), url = replicas
    with httpx.Client(timeout=30) as client:
        # issued by one, redeemed at the other
        nonce = nonce_from(client, b.url)
        assert client.post(a.url + "/attest", content=keep_csr(nonce), headers=CSR).is_success
        # the same CSR at both replicas at the same instant, many times over
        outcomes = []
        for i in range(12):
            csr = keep_csr(nonce_from(client, (a, b)[i % 2].url))
            barrier = threading.Barrier(2)
            got: list[httpx.Response] = []

            def send(
                target: str,
                csr: bytes = csr,
                barrier: threading.Barrier = barrier,
                got: list[httpx.Response] = got,
            ) -> None:
                with httpx.Client(timeout=30) as c:
                    barrier.wait()
                    got.append(c.post(target + "/attest", content=csr, headers=CSR))

            threads = [threading.Thread(target=send, args=(p.url,)) for p in (a, b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            outcomes.append(sorted(r.status_code for r in got))
            refused = next(r for r in got if r.status_code == 403)
            assert "already used" in refused.json()["detail"]
    assert outcomes == [[200, 403]] * 12
    with store_at(url) as store:
        counts = store.counts()
        assert counts == {"used_nonces": 13, "consuming_rows": 13, "audit_rows": 25}
        accepted = [r for r in store.audit() if r.decision == "accepted"]
        assert len(accepted) == 13 and len({r.serial for r in accepted}) == 13


def test_init_refuses_a_second_ca_for_the_shared_database(replicas, tmp_path, monkeypatch, cli):
    _, url = replicas
    monkeypatch.setenv("MOTTE_HOME", str(tmp_path / "elsewhere"))
    r = cli("steward", "init", "--db", url, "--allow-insecure-sim")
    assert r.exit_code == 1 and "already belongs to a Steward" in r.stderr
    assert not (tmp_path / "elsewhere" / "steward").exists()


@dataclass
class Load:
    """What the clients saw: only answers they were given are counted."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    accepted: list[tuple[bytes, str, int]] = field(default_factory=list)  # nonce, chain, audit
    replays_after_retry: int = 0  # a retried CSR whose first attempt had been recorded
    unknown: int = 0  # POSTs whose answer never came (connection lost, 502/503)
    unexpected: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.accepted)


def attest_through(url: str, load: Load, stop: threading.Event) -> None:
    """A Keep that retries: a fresh nonce each time, the same CSR again after an answer
    that never came (it may or may not have been recorded)."""
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            try:
                nonce = nonce_from(client, url)
            except (httpx.HTTPError, AssertionError):
                time.sleep(0.05)
                continue
            csr = keep_csr(nonce)
            for attempt in range(6):
                try:
                    r = client.post(url + "/attest", content=csr, headers=CSR)
                except httpx.HTTPError:
                    with load.lock:
                        load.unknown += 1
                    continue
                if r.status_code == 200:
                    with load.lock:
                        load.accepted.append((nonce, r.text, int(r.headers["X-Motte-Audit-Id"])))
                    break
                if r.status_code in (502, 503, 504):
                    with load.lock:
                        load.unknown += 1
                    continue
                detail = r.json().get("detail", "") if r.status_code == 403 else r.text
                with load.lock:
                    if r.status_code == 403 and attempt > 0 and "already used" in detail:
                        load.replays_after_retry += 1
                    else:
                        load.unexpected.append(f"{r.status_code}: {detail[:200]}")
                break


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_sigkill_a_replica_mid_load_through_haproxy(replicas, tmp_path):
    require(shutil.which("haproxy") is not None, "haproxy (scripts/system-deps.sh test)")
    (a, b), url = replicas
    lb, lb_url = haproxy(tmp_path, [p.url.removeprefix("http://") for p in (a, b)])
    load, stop = Load(), threading.Event()
    clients = [threading.Thread(target=attest_through, args=(lb_url, load, stop)) for _ in range(4)]
    try:
        wait_for(lambda: httpx.get(lb_url + "/health").is_success, 60, "HAProxy to see a replica")
        for t in clients:
            t.start()
        wait_for(lambda: load.count >= 20, 180, "20 attestations through HAProxy")
        a.kill()  # requests in flight at it get no answer
        at_kill = load.count
        wait_for(lambda: load.count >= at_kill + 20, 180, "20 more after the kill")
    finally:
        stop.set()
        for t in clients:
            t.join(120)
        lb.stop()
    assert not load.unexpected, load.unexpected
    nonces = [n for n, _, _ in load.accepted]
    assert len(set(nonces)) == len(nonces), "a nonce was honoured twice"
    with store_at(url) as store:
        counts = store.counts()
        rows = {r.id: r for r in store.audit()}
    # every used nonce was consumed by exactly one audit row (the database enforces the
    # uniqueness; equal counts show none is used without its row)
    assert counts["used_nonces"] == counts["consuming_rows"]
    # every certificate a client holds has its accepted audit row, and no serial repeats
    for _, chain, audit_id in load.accepted:
        row = rows[audit_id]
        assert row.decision == "accepted" and row.serial is not None
        assert chain.count("BEGIN CERTIFICATE") == 2
    serials = [r.serial for r in rows.values() if r.serial is not None]
    assert len(serials) == len(set(serials))
    # rows no client heard of are decisions whose answers were lost with the kill: never
    # more than the requests that got no answer
    known = len(load.accepted) + load.replays_after_retry
    assert known <= len(rows) <= known + load.unknown
    accepted_rows = sum(r.decision == "accepted" for r in rows.values())
    assert len(load.accepted) <= accepted_rows <= len(load.accepted) + load.unknown
    print(
        f"accepted {len(load.accepted)}, replays refused after retry "
        f"{load.replays_after_retry}, unanswered {load.unknown}, audit rows {len(rows)}"
    )


def test_postgresql_stopped_and_started_under_load(tmp_path, motte_home):
    """The database goes away under load: clear 503 problems (never a 500 or a traceback),
    nothing decided or recorded meanwhile; it comes back: the same processes serve again."""
    from tests.integration._postgres import private_server

    with private_server() as (server, url):
        (a, b) = start_replicas(tmp_path, motte_home, url)
        load, stop = Load(), threading.Event()
        clients = [
            threading.Thread(target=attest_through, args=(p.url, load, stop)) for p in (a, b)
        ]
        try:  # the replicas are stopped whatever happens
            for t in clients:
                t.start()
            wait_for(lambda: load.count >= 10, 180, "10 attestations")
            server.stop()
            stopped = time.monotonic()
            with httpx.Client(timeout=30) as client:
                for p in (a, b):
                    r = client.get(p.url + "/nonce")
                    assert r.status_code == 503, r.text
                    assert r.json()["type"] == "/problems/database-unavailable"
                    assert r.headers["Retry-After"] == "1"
                    r = client.post(p.url + "/attest", content=keep_csr(b"\1" * 32), headers=CSR)
                    assert r.status_code == 503
                    assert r.json()["title"] == "the Steward's database is unavailable"
                    r = client.get(p.url + "/health")
                    assert r.status_code == 503 and r.json()["status"] == "database unavailable"
                before = load.count
                server.start()
                started = time.monotonic()
                wait_for(lambda: load.count >= before + 10, 180, "10 attestations after")
                print(
                    f"down {started - stopped:.1f} s; 10 attestations "
                    f"{time.monotonic() - started:.1f} s after the start"
                )
                for p in (a, b):  # both replicas recovered, by themselves
                    assert client.get(p.url + "/health").is_success
                    assert p.proc.poll() is None
        finally:
            stop.set()
            for t in clients:
                t.join(120)
            for p in (a, b):
                p.stop()
        assert not load.unexpected, load.unexpected
        for p in (a, b):
            text = "\n".join(p.lines)
            assert "Traceback" not in text
            assert "the database is unavailable" in text
        with store_at(url) as store:
            counts = store.counts()
        assert counts["used_nonces"] == counts["consuming_rows"]
