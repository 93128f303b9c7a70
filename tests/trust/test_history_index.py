"""The history index: each judgement reads only what the log gained since the last one."""

from __future__ import annotations

import sqlite3

import pytest

from motte.home import motte_home
from motte.sign import sign_artifact
from motte.tlog import LocalLog, open_log
from motte.trust import assess
from motte.trust._history import HistoryIndex, index_path
from tests.trust.test_scenarios import REF, good_release

# Every case on the embedded SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("database")


def index_rows(sql: str) -> list:
    index = HistoryIndex()
    try:
        with index.db.read() as tx:
            return tx.all(sql)
    finally:
        index.close()


def _recording(monkeypatch) -> list[tuple[int, int]]:
    reads: list[tuple[int, int]] = []
    real = LocalLog.read_entries

    def read(self, lo, hi):
        reads.append((lo, hi))
        return real(self, lo, hi)

    monkeypatch.setattr(LocalLog, "read_entries", read)
    return reads


def test_a_second_judgement_reads_only_new_entries(world, monkeypatch):
    good_release(world)
    reads = _recording(monkeypatch)
    assess(REF, world.policy())
    first_size = open_log().size
    assert reads[0] == (0, first_size)  # the whole log, once
    log = open_log()
    for i in range(50):
        log.append(b"unrelated entry %d" % i)
    log.close()
    reads.clear()
    v = assess(REF, world.policy())
    assert v.accepted
    scans = [r for r in reads if r[1] - r[0] > 10]
    assert scans == [(first_size, first_size + 50)]
    # The rest of the reads fetch the package's own entries, nothing else.
    assert all(hi <= first_size for lo, hi in reads if (lo, hi) not in scans)


def test_the_index_holds_summaries_not_statements(world):
    digest = good_release(world)
    assess(REF, world.policy())
    packages = {p for (p,) in index_rows("SELECT package FROM entries")}
    digests = {d for (d,) in index_rows("SELECT digest FROM subjects")}
    assert "acme/hello" in packages and digest in digests


def test_a_rewritten_embedded_log_is_indexed_again(world, database):
    good_release(world)
    assert assess(REF, world.policy()).accepted
    # The log is replaced by another with the same key (its history rewritten).
    if database == "postgresql":
        log = open_log()
        conn = log.store.db.connect()
        conn.execute("DROP SCHEMA tlog CASCADE")
        conn.close()
        log.close()
    for f in (motte_home() / "tlog").glob("log.db*"):
        f.unlink()
    log = open_log()
    for i in range(3):
        log.append(b"new history %d" % i)
    log.close()
    sign_artifact(REF, [world.alice])
    v = assess(REF, world.policy())
    # The earlier statements' proofs now fail the fork check: integrity says so, and the
    # history is read from the log as it is now rather than from a stale index.
    assert v.area("integrity").status.value == "not satisfied"
    assert "at size 4" in v.area("responsiveness").deciding.message


def test_an_index_from_before_the_migrations_is_rebuilt(world, database):
    if database == "postgresql":
        pytest.skip("PostgreSQL indexes were never made without migrations")
    good_release(world)
    # An index.db as motte made it before motte.store: same tables, a stale summary.
    index_path().parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(index_path())
    db.execute(
        "CREATE TABLE logs (id INTEGER PRIMARY KEY, log_id TEXT, origin TEXT, size INT, "
        "frontier BLOB)"
    )
    db.execute("CREATE TABLE entries (log INT, idx INT, leaf BLOB, package TEXT)")
    db.execute("INSERT INTO entries VALUES (1, 0, x'00', 'stale/package')")
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    assert assess(REF, world.policy()).accepted
    assert index_rows("SELECT count(*) FROM entries") == [(open_log().size,)]
    assert ("stale/package",) not in index_rows("SELECT package FROM entries")


def test_indexing_a_long_log_reports_progress(world):
    import contextlib

    good_release(world)
    log = open_log()
    log.append_many([b"filler %d" % i for i in range(5000)])
    log.close()
    seen: list[tuple[str, int, int]] = []

    class Recorder:
        @contextlib.contextmanager
        def task(self, description, total):
            done = [0]
            yield lambda n: done.__setitem__(0, done[0] + n)
            seen.append((description, total, done[0]))

    assert assess(REF, world.policy(), progress=Recorder()).accepted
    ((description, total, done),) = seen
    assert description.startswith("index ") and total == done == open_log().size
