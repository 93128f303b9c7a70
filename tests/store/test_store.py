"""The persistence layer itself: URLs, migrations, transactions, locks, on both engines."""

from __future__ import annotations

import threading

import pytest

from motte.store import (
    ConstraintError,
    DatabaseUrl,
    DatabaseUrlError,
    Migration,
    Schema,
    SchemaError,
    open_database,
    parse_database_url,
    resolve_database,
)

pytestmark = pytest.mark.usefixtures("database")

WIDGETS = Schema(
    "widgets",
    (
        Migration(
            1,
            "widgets",
            sqlite=["CREATE TABLE IF NOT EXISTS widget (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"],
            postgresql=["CREATE TABLE widget (id BIGINT PRIMARY KEY, name TEXT UNIQUE)"],
        ),
    ),
)
WIDGETS_2 = Schema(
    "widgets",
    (
        *WIDGETS.migrations,
        Migration(
            2,
            "colours",
            sqlite=["ALTER TABLE widget ADD COLUMN colour TEXT"],
            postgresql=["ALTER TABLE widget ADD COLUMN colour TEXT"],
        ),
    ),
)


def url_for(tmp_path) -> DatabaseUrl:
    return resolve_database(None, default=tmp_path / "widgets.db")


# -- URLs -------------------------------------------------------------------------------------


def test_no_url_means_the_components_sqlite_file(tmp_path, monkeypatch):
    monkeypatch.delenv("MOTTE_DB", raising=False)
    assert resolve_database(None, default=tmp_path / "x.db") == DatabaseUrl.sqlite(
        tmp_path / "x.db"
    )
    got = resolve_database(None, default=tmp_path / "x.db", recorded="postgresql://h/db")
    assert got.is_postgresql and got.conninfo == "postgresql://h/db"


def test_the_flag_beats_the_environment_which_beats_the_record(tmp_path, monkeypatch):
    monkeypatch.setenv("MOTTE_DB", "postgresql://env/db")
    got = resolve_database(
        "postgresql://flag/db", default=tmp_path / "x", recorded="postgresql://r/d"
    )
    assert got.conninfo == "postgresql://flag/db"
    got = resolve_database(None, default=tmp_path / "x", recorded="postgresql://r/d")
    assert got.conninfo == "postgresql://env/db"


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://motte:s3cret@db.example/motte",
        "postgres://:s3cret@db.example/motte",
        "postgresql://db.example/motte?password=s3cret",
    ],
)
def test_a_password_in_the_url_is_refused_without_repeating_it(url):
    with pytest.raises(DatabaseUrlError, match="holds a password") as e:
        parse_database_url(url)
    assert "s3cret" not in e.value.message and "s3cret" not in (e.value.hint or "")
    assert "PGPASSWORD" in (e.value.hint or "")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("mysql://db/x", "not a database motte uses"),
        ("/var/lib/motte.db", "not a database motte uses"),
        ("postgresql://db.example:99999/x", "not a URL"),
    ],
)
def test_other_urls_are_refused(url, why, monkeypatch):
    with pytest.raises(DatabaseUrlError, match=why):
        parse_database_url(url)


def test_a_url_without_a_database_is_refused(monkeypatch):
    monkeypatch.delenv("PGDATABASE", raising=False)
    with pytest.raises(DatabaseUrlError, match="names no database"):
        parse_database_url("postgresql://db.example")


# -- migrations -------------------------------------------------------------------------------


def test_migrations_run_once_and_in_order(tmp_path):
    url = url_for(tmp_path)
    db = open_database(url, WIDGETS)
    assert db.version() == 1
    with db.write() as tx:
        tx.execute("INSERT INTO widget (id, name) VALUES (?, ?)", (1, "a"))
    db.close()
    db = open_database(url, WIDGETS_2)  # a newer motte: only step 2 runs
    assert db.version() == 2
    with db.write() as tx:
        tx.execute("UPDATE widget SET colour = ? WHERE id = ?", ("red", 1))
    with db.read() as tx:
        assert tx.all("SELECT name, colour FROM widget") == [("a", "red")]
        names = [r[0] for r in tx.all("SELECT name FROM motte_schema ORDER BY version")]
    assert names == ["widgets", "colours"]
    db.close()


def test_a_database_newer_than_the_code_is_refused(tmp_path):
    url = url_for(tmp_path)
    open_database(url, WIDGETS_2).close()
    with pytest.raises(SchemaError, match="at version 2; this motte knows versions up to 1"):
        open_database(url, WIDGETS)


def test_replicas_starting_together_migrate_once(tmp_path):
    url = url_for(tmp_path)
    barrier = threading.Barrier(6)
    opened, errors = [], []

    def start() -> None:
        barrier.wait()
        try:
            opened.append(open_database(url, WIDGETS_2))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    with opened[0].read() as tx:
        assert tx.all("SELECT version FROM motte_schema ORDER BY version") == [(1,), (2,)]
    for db in opened:
        db.close()


BROKEN = "ALTER TABLE nope ADD COLUMN x TEXT"


def test_a_failed_migration_leaves_the_old_version(tmp_path):
    url = url_for(tmp_path)
    open_database(url, WIDGETS).close()
    broken = Schema(
        "widgets",
        (*WIDGETS.migrations, Migration(2, "broken", [BROKEN], [BROKEN])),
    )
    with pytest.raises(SchemaError, match=r"migration 2 \(broken\) of the widgets schema: .*nope"):
        open_database(url, broken)
    db = open_database(url, WIDGETS)
    assert db.version() == 1
    db.close()


# -- transactions -----------------------------------------------------------------------------


def test_a_write_is_all_or_nothing(tmp_path):
    db = open_database(url_for(tmp_path), WIDGETS)
    with pytest.raises(RuntimeError), db.write() as tx:
        tx.execute("INSERT INTO widget (id, name) VALUES (?, ?)", (1, "a"))
        raise RuntimeError("half way")
    with db.read() as tx:
        assert tx.all("SELECT * FROM widget") == []
    with db.write() as tx:
        tx.execute("INSERT INTO widget (id, name) VALUES (?, ?)", (1, "a"))
    with pytest.raises(ConstraintError), db.write() as tx:
        tx.execute("INSERT INTO widget (id, name) VALUES (?, ?)", (2, "b"))
        tx.execute("INSERT INTO widget (id, name) VALUES (?, ?)", (3, "a"))  # name taken
    with db.read() as tx:
        assert tx.all("SELECT id FROM widget") == [(1,)]
    db.close()


def test_a_counter_under_concurrent_writers_loses_no_increment(tmp_path):
    """Two databases (two pools: as two processes would) increment one row; the lock each
    write takes makes read-modify-write safe on both engines."""
    url = url_for(tmp_path)
    dbs = [open_database(url, WIDGETS), open_database(url, WIDGETS)]
    with dbs[0].write() as tx:
        tx.execute("INSERT INTO widget (id, name) VALUES (?, ?)", (1, "0"))
    per_thread = 25

    def bump(db) -> None:
        for _ in range(per_thread):
            with db.write() as tx:
                tx.lock("widget-counter")
                (n,) = tx.one("SELECT name FROM widget WHERE id = 1")
                tx.execute("UPDATE widget SET name = ? WHERE id = 1", (str(int(n) + 1),))

    threads = [threading.Thread(target=bump, args=(dbs[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    with dbs[1].read() as tx:
        assert tx.one("SELECT name FROM widget WHERE id = 1") == (str(4 * per_thread),)
    for db in dbs:
        db.close()


# -- credentials: from libpq's environment, never the URL -------------------------------------


def test_the_password_comes_from_pgpassword_and_a_wrong_one_is_named_not_shown(
    postgresql, pg_database, monkeypatch, database
):
    from motte.store import StoreUnavailableError

    if database != "postgresql":
        pytest.skip("PostgreSQL only")
    url = parse_database_url(pg_database)
    monkeypatch.delenv("PGPASSFILE")
    monkeypatch.setenv("PGPASSWORD", postgresql.password)
    open_database(url, WIDGETS).close()
    monkeypatch.setenv("PGPASSWORD", "not-the-password")
    with pytest.raises(StoreUnavailableError, match="password authentication failed") as e:
        open_database(url, WIDGETS)
    assert "not-the-password" not in e.value.message + (e.value.hint or "")
    assert "PGPASSWORD or a passfile" in (e.value.hint or "")
