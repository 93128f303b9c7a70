"""Persistence: SQLite by default, PostgreSQL when one machine is outgrown.

Every stateful component (the Steward, the transparency log, a witness, trust's history
index) keeps its tables through this package::

    url = resolve_database(flag, default=home / "steward.db")   # --db, MOTTE_DB, or SQLite
    db = open_database(url, STEWARD_SCHEMA)                      # migrated on open
    with db.write() as tx:                                       # one transaction
        tx.execute("INSERT INTO nonce (nonce, issued_at, expires_at) VALUES (?, ?, ?)", ...)

SQL uses ``?`` placeholders on both engines. A component's :class:`Schema` is a list of
:class:`Migration` steps, each with its SQLite and PostgreSQL DDL; steps run once, in one
transaction, under a lock, so replicas starting together are safe. PostgreSQL is named by
a ``postgresql://`` URL whose password comes from the environment or a passfile, never the
URL. See docs/scale.md.
"""

from motte.store._database import open_database, sqlite_path
from motte.store._errors import (
    ConstraintError,
    DatabaseUrlError,
    LockHeldError,
    SchemaError,
    StoreError,
    StoreUnavailableError,
)
from motte.store._protocols import Cursor, Database, Lease, Tx
from motte.store._schema import Migration, Schema, lock_key
from motte.store._url import ENV, DatabaseUrl, parse_database_url, resolve_database

__all__ = [
    "ENV",
    "ConstraintError",
    "Cursor",
    "Database",
    "DatabaseUrl",
    "DatabaseUrlError",
    "Lease",
    "LockHeldError",
    "Migration",
    "Schema",
    "SchemaError",
    "StoreError",
    "StoreUnavailableError",
    "Tx",
    "lock_key",
    "open_database",
    "parse_database_url",
    "resolve_database",
    "sqlite_path",
]
