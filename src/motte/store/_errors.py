"""The store's errors: a bad database URL, an unreachable database, a schema from the future,
a lock another process holds."""

from __future__ import annotations

from motte.errors import ConfigError, MotteError, RemoteError, UsageError


class StoreError(MotteError):
    """Base of every error of motte.store."""


class DatabaseUrlError(StoreError, UsageError):
    """``--db`` / ``MOTTE_DB`` is not a URL motte accepts (or carries a password)."""


class StoreUnavailableError(StoreError, RemoteError):
    """The database cannot be reached, or the connection broke in the middle of a change
    (which was then rolled back, unless the break came with the commit itself)."""


class SchemaError(StoreError, ConfigError):
    """The database's schema is not one this motte can use (newer, or damaged)."""


class LockHeldError(StoreError):
    """An exclusive role (the log's sequencer) is held by another process."""


class ConstraintError(StoreError):
    """A constraint refused the change (a unique key taken, an append-only table)."""
