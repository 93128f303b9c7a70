"""The embedded engine: one SQLite file per component, WAL, fsync on every commit."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from motte.store._errors import ConstraintError, SchemaError, StoreUnavailableError
from motte.store._protocols import Tx
from motte.store._schema import BOOKKEEPING, Schema
from motte.store._url import DatabaseUrl

BUSY_TIMEOUT_MS = 30_000


class SqliteTx:
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    def insert_many(
        self,
        table: str,
        columns: Sequence[str],
        types: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        """Bulk insert (``types``, PostgreSQL's names for the columns, serve COPY there)."""
        marks = ", ".join("?" * len(columns))
        self.conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        return self.conn.execute(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def lock(self, name: str, *, timeout: float | None = None) -> bool:
        """Nothing to do: a write transaction already holds SQLite's one write lock."""
        return True


def _translate(e: sqlite3.Error, where: Path) -> Exception:
    if isinstance(e, sqlite3.IntegrityError):
        return ConstraintError(f"{where}: {e}")
    text = str(e)
    if isinstance(e, sqlite3.OperationalError) and (
        "locked" in text or "disk I/O" in text or "unable to open" in text
    ):
        return StoreUnavailableError(f"{where}: {text}")
    if "malformed" in text or "not a database" in text:
        # A truncated or overwritten file: name it, never as a bug of motte's.
        return SchemaError(
            f"{where}: the database is damaged ({text})",
            hint="restore it from a backup; nothing was changed",
        )
    return e


class SqliteLease:
    """SQLite has one writer at a time already (its write lock); every process may write."""

    def __init__(self, db: SqliteDatabase) -> None:
        self.db = db

    @property
    def held(self) -> bool:
        return True

    def try_acquire(self) -> bool:
        return True

    def acquire(self, *, timeout: float | None = None, stop: object = None) -> bool:
        return True

    def write(self, *, durable: bool = True) -> contextlib.AbstractContextManager[Tx]:
        return self.db.write(durable=durable)

    def release(self) -> None:
        pass


class SqliteDatabase:
    """Per-thread connections to one file; writes serialised in-process by a lock (so our
    own threads never spin in SQLite's busy handler) and across processes by SQLite."""

    dialect = "sqlite"

    def __init__(self, path: Path, schema: Schema) -> None:
        self.path = Path(path)
        self.url = DatabaseUrl.sqlite(self.path)
        self.schema = schema
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._write_lock = threading.Lock()
        try:
            conn = self._conn()
            conn.execute("PRAGMA journal_mode=WAL")
            self._migrate(conn)
        except sqlite3.Error as e:
            self.close()
            raise _translate(e, self.path) from None

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=BUSY_TIMEOUT_MS / 1000,
            )
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(BOOKKEEPING["sqlite"])
                (current,) = conn.execute(
                    "SELECT coalesce(max(version), 0) FROM motte_schema"
                ).fetchone()
                if current > self.schema.latest:
                    raise SchemaError(
                        f"{self.path}: the {self.schema.name} schema is at version {current}; "
                        f"this motte knows versions up to {self.schema.latest}",
                        hint="upgrade motte (a database is never migrated backwards)",
                    )
                for m in self.schema.pending(current):
                    try:
                        for statement in m.statements("sqlite"):
                            conn.execute(statement)
                    except sqlite3.Error as e:
                        raise SchemaError(
                            f"{self.path}: cannot apply migration {m.version} ({m.name}) of "
                            f"the {self.schema.name} schema: {e}"
                        ) from None
                    conn.execute(
                        "INSERT INTO motte_schema (version, name, applied_at) VALUES (?, ?, ?)",
                        (m.version, m.name, datetime.now(UTC).isoformat(timespec="seconds")),
                    )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def version(self) -> int:
        (v,) = self._conn().execute("SELECT coalesce(max(version), 0) FROM motte_schema").fetchone()
        return int(v)

    @contextlib.contextmanager
    def write(self, *, durable: bool = True) -> Iterator[Tx]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``. ``durable=False`` commits with
        ``synchronous=NORMAL``: never corrupt, but the commit may be lost in a power cut
        until the next durable one (for rows that can be made again identically)."""
        conn = self._conn()
        with self._write_lock:
            try:
                if not durable:
                    conn.execute("PRAGMA synchronous=NORMAL")
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        yield SqliteTx(conn)
                    except BaseException:
                        conn.execute("ROLLBACK")
                        raise
                    conn.execute("COMMIT")
                finally:
                    if not durable:
                        conn.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as e:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise _translate(e, self.path) from None

    def write_one(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement as its own durable transaction; returns how many rows it changed."""
        conn = self._conn()
        with self._write_lock:
            try:
                return conn.execute(sql, params).rowcount
            except sqlite3.Error as e:
                raise _translate(e, self.path) from None

    @contextlib.contextmanager
    def read(self) -> Iterator[Tx]:
        try:
            yield SqliteTx(self._conn())
        except sqlite3.Error as e:
            raise _translate(e, self.path) from None

    def lease(self, name: str) -> SqliteLease:
        return SqliteLease(self)

    def close(self) -> None:
        with self._all_lock:
            for c in self._all:
                c.close()
            self._all.clear()
        self._local = threading.local()
