"""One way to a component's tables, whichever engine holds them.

A component writes plain SQL with ``?`` placeholders and runs it inside ``db.write()`` (one
transaction, committed when the block ends, rolled back if it raises) or ``db.read()``.
The rare statement that differs between the engines branches on ``tx.dialect``; the DDL
lives in the component's :class:`~motte.store.Schema`, per engine.

- **SQLite** (the embedded default): one connection per thread, WAL, ``synchronous=FULL``;
  a write is ``BEGIN IMMEDIATE``, so writers in every process are serialised by SQLite.
- **PostgreSQL**: a psycopg_pool connection pool whose connections see only the
  component's schema (``search_path``); a write is one transaction; ``tx.lock(name)`` takes
  a transaction-scoped advisory lock where SQLite's write lock already serialises.

Errors come out as the store's: :class:`StoreUnavailableError` when the database cannot be
reached or the connection broke (the transaction was rolled back, unless the break came
with the COMMIT itself), :class:`ConstraintError` when a constraint refused the change.
"""

from __future__ import annotations

from pathlib import Path

from motte.store._protocols import Database
from motte.store._schema import Schema
from motte.store._url import DatabaseUrl


def open_database(
    url: DatabaseUrl, schema: Schema, *, application: str = "motte", pool_size: int = 8
) -> Database:
    """Open ``url`` for ``schema``'s component and migrate it to the newest version.

    Migrations run in one transaction under an exclusive lock (SQLite's write lock, a
    PostgreSQL advisory lock), so replicas starting at once apply each step exactly once.
    """
    if url.kind == "sqlite":
        from motte.store._sqlite import SqliteDatabase

        assert url.path is not None
        return SqliteDatabase(url.path, schema)
    from motte.store._postgres import PostgresDatabase

    return PostgresDatabase(url, schema, application=application, pool_size=pool_size)


def sqlite_path(url: DatabaseUrl) -> Path | None:
    return url.path if url.kind == "sqlite" else None
