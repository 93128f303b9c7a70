"""The embedded log: durable appends, append-only storage, honest checkpoints, audits."""

from __future__ import annotations

import base64
import hashlib
import multiprocessing
import os
import sqlite3
import stat

import pytest

from motte.tlog import (
    LocalLog,
    LogNotFoundError,
    TamperError,
    TlogUsageError,
    open_log,
    parse_checkpoint_unverified,
    root_of,
    verify_consistency,
)
from motte.tlog._audit import audit_log


@pytest.fixture
def log(tmp_path):
    with LocalLog(tmp_path / "log", origin="example.com/test") as log:
        yield log


# Every case on the embedded SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("database")


class Raw:
    """SQL that goes around the log and its append-only triggers, as an attacker with access
    to the database would (SQLite: the file; PostgreSQL: a superuser's connection)."""

    def __init__(self, log: LocalLog) -> None:
        db = log.store.db
        if db.dialect == "sqlite":
            self.conn = sqlite3.connect(log.store.path, isolation_level=None)
            for (name,) in self.conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger'"
            ).fetchall():
                self.conn.execute(f"DROP TRIGGER {name}")
            self.pg = False
        else:
            self.conn = db.connect()  # type: ignore[attr-defined]
            self.conn.execute("SET session_replication_role = replica")  # triggers off
            self.pg = True

    def execute(self, sql: str, params: tuple = ()) -> list:
        if self.pg:
            cur = self.conn.execute(sql.replace("?", "%s"), params)
            return cur.fetchall() if cur.description else []
        return self.conn.execute(sql, params).fetchall()


def raw(log: LocalLog) -> Raw:
    return Raw(log)


def set_node(conn: Raw, level: int, index: int, value: bytes) -> None:
    """Overwrite one stored node hash (it lives in the row of the entry that completed it)."""
    row = ((index + 1) << level) - 1
    [(hashes,)] = conn.execute("SELECT hashes FROM entries WHERE idx = ?", (row,))
    hashes = bytes(hashes)
    new = hashes[: 32 * level] + value + hashes[32 * level + 32 :]
    conn.execute("UPDATE entries SET hashes = ? WHERE idx = ?", (new, row))


def test_embedded_log_is_created_on_first_use(motte_home):
    log = open_log()
    try:
        key = motte_home / "tlog" / "log.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
        assert key.read_text().startswith(f"PRIVATE+KEY+{log.origin}+")
        assert log.verifier_key.startswith(log.origin + "+")
        e = log.append(b"first")
        assert (e.index, e.leaf_hash) == (0, hashlib.sha256(b"\0first").digest())
    finally:
        log.close()
    with open_log() as again:  # the same log again
        assert again.origin == log.origin and again.size == 1


def test_appends_are_sequential_and_the_root_is_rfc6962(log):
    entries = [b"e%d" % i for i in range(100)]
    got = log.append_many(entries[:60]) + [log.append(e) for e in entries[60:]]
    assert [g.index for g in got] == list(range(100))
    assert log.store.root() == (100, root_of(entries))
    cp, _ = parse_checkpoint_unverified(log.checkpoint())
    assert (cp.origin, cp.size, cp.root_hash) == ("example.com/test", 100, root_of(entries))


def test_storage_refuses_rewrites(log):
    from motte.store import StoreError

    log.append_many([b"a", b"b"])
    log.checkpoint()
    for sql, params in [
        ("UPDATE entries SET data = ? WHERE idx = 0", (b"\0",)),
        ("DELETE FROM entries WHERE idx = 1", ()),
        ("UPDATE entries SET hashes = ?", (b"\0",)),
        ("INSERT INTO entries (idx, data, hashes) VALUES (0, ?, ?)", (b"\0", b"\0")),
        ("DELETE FROM checkpoints", ()),
    ]:
        # Even SQL that goes around the log's methods, on the log's own connection.
        with (
            pytest.raises(StoreError, match=r"append-only|UNIQUE|duplicate key"),
            log.store.db.write() as tx,
        ):
            tx.execute(sql, params)
    if log.store.db.dialect == "postgresql":
        with pytest.raises(StoreError, match=r"append-only"), log.store.db.write() as tx:
            tx.execute("TRUNCATE entries")
    assert log.size == 2


def test_entry_size_is_bounded(log):
    with pytest.raises(TlogUsageError, match=r"65536 bytes is larger than 65535"):
        log.append(b"x" * 65536)
    assert log.size == 0  # nothing half-written


def test_checkpoint_is_reused_until_the_tree_grows(log):
    log.append(b"a")
    assert log.checkpoint() == log.checkpoint()
    log.append(b"b")
    assert parse_checkpoint_unverified(log.checkpoint())[0].size == 2
    assert [s for s, _ in log.store.checkpoints()] == [1, 2]


def test_two_writers_on_one_database_keep_one_tree(tmp_path):
    a = LocalLog(tmp_path / "log", origin="example.com/shared")
    b = LocalLog(tmp_path / "log")
    try:
        entries = []
        for i in range(50):
            w = a if i % 3 else b
            e = b"w%d" % i
            assert w.append(e).index == i
            entries.append(e)
            w.checkpoint()
        assert a.store.root() == b.store.root() == (50, root_of(entries))
        audit_log(a)
    finally:
        a.close()
        b.close()


def _append_worker(directory: str, n: int, tag: int) -> None:
    with LocalLog(directory) as log:
        for i in range(n):
            log.append(b"p%d-%d" % (tag, i))
            if i % 5 == 0:
                log.checkpoint()


def test_concurrent_processes_append_without_losing_entries(tmp_path):
    d = tmp_path / "log"
    LocalLog(d, origin="example.com/procs").close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_worker, args=(str(d), 30, t)) for t in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with LocalLog(d) as log:
        assert log.size == 90
        assert sorted(log.store.read_entries(0, 90)) == sorted(
            b"p%d-%d" % (t, i) for t in range(3) for i in range(30)
        )
        report = audit_log(log)
        assert report.checkpoints >= 3


def test_proofs_between_all_checkpoints(log):
    sizes = []
    for i in range(1, 40):
        log.append(b"%d" % i)
        if i % 7 == 0:
            sizes.append(log.sign_checkpoint()[0])
    roots = {s: log.store.root(s)[1] for s in sizes}
    for old in sizes:
        for new in sizes:
            if old <= new:
                verify_consistency(
                    old, new, log.consistency_proof(old, new), roots[old], roots[new]
                )
    with pytest.raises(LogNotFoundError, match=r"smaller than 100"):
        log.consistency_proof(1, 100)
    with pytest.raises(LogNotFoundError, match=r"no entry 39"):
        log.inclusion_bundle(39)


def test_key_readable_by_others_is_refused(tmp_path):
    LocalLog(tmp_path / "log").close()
    os.chmod(tmp_path / "log" / "log.key", 0o644)
    with pytest.raises(TlogUsageError, match=r"readable by others"):
        LocalLog(tmp_path / "log")


def test_key_and_database_must_belong_together(tmp_path, database):
    LocalLog(tmp_path / "a", origin="example.com/a").close()
    if database == "postgresql":  # one log per database: another key is refused
        with pytest.raises(TamperError, match=r"log.key is for example.com/b but PostgreSQL"):
            LocalLog(tmp_path / "b", origin="example.com/b")
        return
    LocalLog(tmp_path / "b", origin="example.com/b").close()
    os.replace(tmp_path / "b" / "log.db", tmp_path / "a" / "log.db")
    with pytest.raises(TamperError, match=r"log.key is for example.com/a but log.db holds"):
        LocalLog(tmp_path / "a")
    with pytest.raises(TlogUsageError, match=r"already holds the log example.com/b"):
        LocalLog(tmp_path / "b", origin="example.com/other")


def test_missing_log_is_reported(tmp_path):
    with pytest.raises(LogNotFoundError, match=r"no log at .*nothing") as e:
        LocalLog(tmp_path / "nothing", create=False)
    assert "motte log init" in e.value.hint


# -- tampering ---------------------------------------------------------------------------------


@pytest.fixture
def logged(log):
    log.append_many([b"entry %d" % i for i in range(40)])
    log.checkpoint()
    log.append_many([b"entry %d" % i for i in range(40, 50)])
    log.checkpoint()
    return log


def test_audit_passes_on_an_honest_log(logged):
    r = audit_log(logged)
    assert (r.size, r.checkpoints, r.root_hash) == (
        50,
        2,
        root_of([b"entry %d" % i for i in range(50)]),
    )


def test_audit_names_a_changed_entry(logged):
    raw(logged).execute("UPDATE entries SET data = ? WHERE idx = 17", (b"entry X",))
    with pytest.raises(TamperError, match=r"entry 17 hashes to .* the entry was changed"):
        audit_log(logged)


def test_audit_names_a_changed_node_hash(logged):
    set_node(raw(logged), 2, 3, bytes(32))
    with pytest.raises(TamperError, match=r"node \(level 2, index 3\) is AAAA"):
        audit_log(logged)


def test_audit_names_a_changed_checkpoint(logged):
    conn = raw(logged)
    [(note,)] = conn.execute("SELECT note FROM checkpoints WHERE size = 40")
    note = bytes(note).replace(b"40", b"41")
    conn.execute("UPDATE checkpoints SET note = ? WHERE size = 40", (note,))
    with pytest.raises(TamperError, match=r"checkpoint of size 40: .*does not verify"):
        audit_log(logged)


def test_audit_notices_an_added_hash(logged):
    conn = raw(logged)
    [(hashes,)] = conn.execute("SELECT hashes FROM entries WHERE idx = 4")
    conn.execute("UPDATE entries SET hashes = ? WHERE idx = 4", (bytes(hashes) + bytes(32),))
    with pytest.raises(TamperError, match=r"entry 4 stores 2 hashes, .* completes 1"):
        audit_log(logged)


def test_audit_notices_lost_entries(logged):
    raw(logged).execute("DELETE FROM entries WHERE idx >= 45")
    with pytest.raises(
        TamperError, match=r"checkpoint of size 50 was signed but the log holds only"
    ):
        audit_log(logged)


def test_log_refuses_to_sign_a_tree_that_does_not_extend_its_checkpoint(logged):
    # A node of the old tree is changed behind the log's back: signing the next checkpoint
    # would sign a fork, so the log stops.
    set_node(raw(logged), 5, 0, bytes(32))
    logged.append(b"more")
    with pytest.raises(TamperError, match=r"does not extend the signed checkpoint of size 50"):
        logged.checkpoint()


def test_log_refuses_to_sign_when_entries_were_lost(logged):
    raw(logged).execute("DELETE FROM entries WHERE idx >= 45")
    with logged.store.db.read() as tx:
        logged.store._load_frontier(tx)
    with pytest.raises(TamperError, match=r"entries were lost; refusing to sign"):
        logged.sign_checkpoint()


def test_leaf_hash_in_checkpoint_is_base64(logged):
    cp, _ = parse_checkpoint_unverified(logged.checkpoint())
    assert base64.b64encode(cp.root_hash).decode() in logged.checkpoint().decode()
