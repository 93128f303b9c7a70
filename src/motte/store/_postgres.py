"""PostgreSQL through psycopg 3 and psycopg_pool: what replicas share.

Each component lives in its own PostgreSQL schema (``steward``, ``tlog``, ...); the pool's
connections have their ``search_path`` set to it, so the component's SQL is the same as on
SQLite. Connections are in autocommit mode: a read is one round trip, a write an explicit
transaction.

When the server goes away (restart, failover, network) a request fails with
:class:`StoreUnavailableError` and the pool is asked to check its idle connections, so the
next requests get fresh ones once the server is back: nothing needs restarting.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from motte.store._errors import (
    ConstraintError,
    LockHeldError,
    SchemaError,
    StoreError,
    StoreUnavailableError,
)
from motte.store._protocols import Tx
from motte.store._schema import BOOKKEEPING, Schema, lock_key
from motte.store._url import DatabaseUrl

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("motte.store")

#: Seconds to wait for a connection (from the pool, or a new one) before saying so.
CONNECT_TIMEOUT = 10
POOL_TIMEOUT = 5.0
#: The pool's background reconnection backs off exponentially; it gives up after this many
#: seconds, and the next request starts a fresh attempt at once. A short span bounds how
#: long after the server's return a request can still be refused.
RECONNECT_TIMEOUT = 10.0


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError as e:
        raise StoreError(
            f"PostgreSQL support is not installed ({e})",
            hint="pip install 'motte[postgresql]' (psycopg needs libpq: Debian's libpq5, or "
            "pip install 'psycopg[binary]')",
        ) from None
    return psycopg


@functools.lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    """``?`` placeholders (the store's, as SQLite's) as psycopg's ``%s``."""
    return sql.replace("%", "%%").replace("?", "%s")


def describe(url: DatabaseUrl) -> str:
    """Where, for messages: host, port and database, never credentials."""
    psycopg = _psycopg()
    try:
        info = psycopg.conninfo.conninfo_to_dict(url.conninfo)
    except psycopg.ProgrammingError:
        return "PostgreSQL"
    host = info.get("host") or "(default host)"
    port = info.get("port")
    where = f"{host}:{port}" if port else host
    return f"PostgreSQL {where}/{info.get('dbname') or '(default database)'}"


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


class PostgresTx:
    dialect = "postgresql"

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(_pg_sql(sql), params)  # type: ignore[arg-type]

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self.conn.cursor() as cur:
            cur.executemany(_pg_sql(sql), rows)  # type: ignore[arg-type]

    def insert_many(
        self,
        table: str,
        columns: Sequence[str],
        types: Sequence[str],
        rows: Sequence[Sequence[Any]],
    ) -> None:
        """Bulk insert with binary COPY: one round trip, no per-row statement (constraints
        and triggers hold as for INSERT)."""
        from psycopg import sql

        query = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        with self.conn.cursor() as cur, cur.copy(query) as copy:
            copy.set_types(list(types))
            for row in rows:
                copy.write_row(row)

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        return self.execute(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self.execute(sql, params).fetchall()

    def lock(self, name: str, *, timeout: float | None = None) -> bool:
        """An advisory lock held until this transaction ends (other writers wait): False
        if ``timeout`` seconds pass first (the transaction goes on, without the lock)."""
        if timeout is None:
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(name),))
            return True
        psycopg = _psycopg()
        try:
            with self.conn.transaction():  # a savepoint: a timeout must not end ours
                self.conn.execute(f"SET LOCAL lock_timeout = {int(timeout * 1000)}")
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(name),))
                self.conn.execute("SET LOCAL lock_timeout = 0")
        except psycopg.errors.LockNotAvailable:
            return False
        return True


class PostgresDatabase:
    dialect = "postgresql"

    def __init__(
        self, url: DatabaseUrl, schema: Schema, *, application: str, pool_size: int = 8
    ) -> None:
        psycopg = _psycopg()
        from psycopg import sql
        from psycopg_pool import ConnectionPool

        self.url = url
        self.schema = schema
        self.where = describe(url)
        self._kwargs: dict[str, Any] = {
            "application_name": application,
            "connect_timeout": CONNECT_TIMEOUT,
            # Notice a dead peer on an idle connection (the lease's above all).
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
        }
        self._set_path = sql.SQL("SET search_path TO {}").format(sql.Identifier(schema.name))
        try:
            with psycopg.connect(url.conninfo, **self._kwargs) as conn:
                self._migrate(conn)
        except psycopg.OperationalError as e:
            raise StoreUnavailableError(
                f"{self.where}: cannot connect: {_reason(e)}",
                hint="is the server running, and are the user and password right? "
                "(PGPASSWORD or a passfile; never in the URL)",
            ) from None
        except psycopg.Error as e:
            raise StoreError(
                f"{self.where}: cannot set up the {schema.name} schema: {_reason(e)}"
            ) from None

        def configure(conn: psycopg.Connection[Any]) -> None:
            conn.execute(self._set_path)

        self._pool = ConnectionPool(
            url.conninfo,
            min_size=1,
            max_size=pool_size,
            kwargs={**self._kwargs, "autocommit": True},
            configure=configure,
            timeout=POOL_TIMEOUT,
            reconnect_timeout=RECONNECT_TIMEOUT,
            name=f"motte-{schema.name}",
            open=True,
        )
        self._checking = threading.Lock()

    # -- migrations --------------------------------------------------------------------------

    def _migrate(self, conn: psycopg.Connection[Any]) -> None:
        psycopg = _psycopg()
        from psycopg import sql

        name = self.schema.name
        with conn.transaction():
            # Two replicas starting at once: the second waits here, then finds nothing to do.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(f"motte.migrate.{name}"),))
            exists = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (name,))
            if exists.fetchone() is None:
                conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(name)))
            conn.execute(BOOKKEEPING["postgresql"])
            row = conn.execute("SELECT coalesce(max(version), 0) FROM motte_schema").fetchone()
            current = int(row[0]) if row else 0
            if current > self.schema.latest:
                raise SchemaError(
                    f"{self.where}: the {name} schema is at version {current}; this motte "
                    f"knows versions up to {self.schema.latest}",
                    hint="upgrade motte (a database is never migrated backwards)",
                )
            for m in self.schema.pending(current):
                try:
                    for statement in m.statements("postgresql"):
                        conn.execute(statement)  # type: ignore[arg-type]
                except psycopg.errors.ProgrammingError as e:  # the DDL itself (a bug)
                    raise SchemaError(
                        f"{self.where}: cannot apply migration {m.version} ({m.name}) of the "
                        f"{name} schema: {_reason(e)}"
                    ) from None
                conn.execute(
                    "INSERT INTO motte_schema (version, name) VALUES (%s, %s)", (m.version, m.name)
                )
                log.info(
                    "%s: %s schema migrated to version %d (%s)", self.where, name, m.version, m.name
                )

    def version(self) -> int:
        with self.read() as tx:
            row = tx.one("SELECT coalesce(max(version), 0) FROM motte_schema")
        return int(row[0]) if row else 0

    # -- transactions ------------------------------------------------------------------------

    def _failed(self, e: BaseException) -> StoreError:
        """The store's error for a psycopg one; a lost server also has the pool checked."""
        psycopg = _psycopg()
        from psycopg_pool import PoolTimeout

        if isinstance(e, psycopg.errors.IntegrityError):
            return ConstraintError(f"{self.where}: {_reason(e)}")
        if isinstance(e, PoolTimeout | psycopg.OperationalError):
            self._check_pool_soon()
            return StoreUnavailableError(
                f"{self.where}: the database is unavailable: {_reason(e)}",
                hint="motte reconnects by itself once the server answers again",
            )
        return StoreError(f"{self.where}: {_reason(e)}")

    def _check_pool_soon(self) -> None:
        """Have the pool test its idle connections (a restart breaks them all at once)."""
        if not self._checking.acquire(blocking=False):
            return

        def check() -> None:
            try:
                self._pool.check()
            except Exception as e:  # the server may still be down: the pool retries itself
                log.debug("pool check: %s", e)
            finally:
                self._checking.release()

        threading.Thread(target=check, name="motte-pool-check", daemon=True).start()

    @contextlib.contextmanager
    def write(self, *, durable: bool = True) -> Iterator[Tx]:
        psycopg = _psycopg()
        from psycopg_pool import PoolTimeout

        try:
            with self._pool.connection() as conn, conn.transaction():
                if not durable:
                    conn.execute("SET LOCAL synchronous_commit = off")
                yield PostgresTx(conn)
        except (psycopg.Error, PoolTimeout) as e:
            raise self._failed(e) from None

    def write_one(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement as its own transaction (autocommit: one round trip, no BEGIN and
        COMMIT); returns how many rows it changed."""
        psycopg = _psycopg()
        from psycopg_pool import PoolTimeout

        try:
            with self._pool.connection() as conn:
                return int(conn.execute(_pg_sql(sql), params).rowcount)  # type: ignore[arg-type]
        except (psycopg.Error, PoolTimeout) as e:
            raise self._failed(e) from None

    @contextlib.contextmanager
    def read(self) -> Iterator[Tx]:
        psycopg = _psycopg()
        from psycopg_pool import PoolTimeout

        try:
            with self._pool.connection() as conn:
                yield PostgresTx(conn)
        except (psycopg.Error, PoolTimeout) as e:
            raise self._failed(e) from None

    def lease(self, name: str) -> PostgresLease:
        return PostgresLease(self, name)

    def connect(self) -> psycopg.Connection[Any]:
        """A connection of its own (not from the pool), autocommit, in the schema."""
        psycopg = _psycopg()
        try:
            conn = psycopg.connect(self.url.conninfo, autocommit=True, **self._kwargs)
            conn.execute(self._set_path)
        except psycopg.Error as e:
            raise self._failed(e) from None
        return conn

    def close(self) -> None:
        self._pool.close()


def lease_lock_name(schema: str, name: str) -> str:
    """The advisory lock a lease holds: a one-off writer takes it for a transaction."""
    return f"motte.lease.{schema}.{name}"


class PostgresLease:
    """A session advisory lock on a connection of its own.

    The lock lives exactly as long as the connection: if the holder dies (even by SIGKILL)
    its connection closes and the server releases the lock; a waiting process then takes
    it. Writes go through this connection, so a holder that lost it cannot write on.
    """

    POLL = 0.5

    def __init__(self, db: PostgresDatabase, name: str) -> None:
        self.db = db
        self.name = name
        self.key = lock_key(lease_lock_name(db.schema.name, name))
        self._conn: psycopg.Connection[Any] | None = None
        self._held = False
        self._lock = threading.Lock()

    @property
    def held(self) -> bool:
        return self._held and self._conn is not None and not self._conn.closed

    def try_acquire(self) -> bool:
        """One attempt; False if another process holds it (or the server is away)."""
        psycopg = _psycopg()
        with self._lock:
            if self.held:
                return True
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self.db.connect()
                row = self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
            except (psycopg.Error, StoreError) as e:
                log.debug("lease %s: %s", self.name, e)
                self._drop()
                return False
            self._held = bool(row and row[0])
            return self._held

    def acquire(self, *, timeout: float | None = None, stop: threading.Event | None = None) -> bool:
        """Wait (as a standby) until this process holds the lease; False on timeout/stop."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.try_acquire():
                return True
            if stop is not None and stop.is_set():
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(self.POLL)

    def _drop(self) -> None:
        self._held = False
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None

    @contextlib.contextmanager
    def write(self, *, durable: bool = True) -> Iterator[Tx]:
        psycopg = _psycopg()
        with self._lock:
            if not self.held:
                raise LockHeldError(
                    f"{self.db.where}: this process does not hold the {self.name} lease"
                )
            conn = self._conn
            assert conn is not None
            try:
                with conn.transaction():
                    if not durable:
                        conn.execute("SET LOCAL synchronous_commit = off")
                    yield PostgresTx(conn)
            except psycopg.OperationalError as e:
                self._drop()  # the lock went with the connection
                raise self.db._failed(e) from None
            except psycopg.Error as e:
                raise self.db._failed(e) from None

    def release(self) -> None:
        with self._lock:
            self._drop()
