"""A component's schema: numbered migrations, each with its SQLite and its PostgreSQL text.

A component (the Steward, the log, a witness, trust's history index) declares its
:class:`Schema` once; :func:`motte.store.open_database` brings a database up to date before
handing it out. Applied versions are rows of the component's ``motte_schema`` table (in the
component's SQLite file, or in its PostgreSQL schema of the same name), so each component
moves on its own.

Adding a table later (the secrets feature's, in the Steward's schema) is one more
:class:`Migration` at the end of the list: never edit one that has shipped. A database
whose version is newer than the code knows is refused rather than guessed at.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

_NAME = re.compile(r"[a-z][a-z0-9_]{0,40}")


@dataclass(frozen=True, slots=True)
class Migration:
    """One step: statements run in one transaction with the version's bookkeeping row.

    ``sqlite`` and ``postgresql`` are lists of single statements (a trigger body may hold
    semicolons, so nothing is split). Write SQLite's version-1 tables with ``IF NOT
    EXISTS`` where databases from before the migrations may already hold them.
    """

    version: int
    name: str
    sqlite: Sequence[str]
    postgresql: Sequence[str]

    def statements(self, dialect: str) -> Sequence[str]:
        return self.sqlite if dialect == "sqlite" else self.postgresql


@dataclass(frozen=True, slots=True)
class Schema:
    """The tables of one component: ``name`` is its PostgreSQL schema."""

    name: str
    migrations: tuple[Migration, ...]

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"schema name {self.name!r}: lower-case letters, digits and _")
        versions = [m.version for m in self.migrations]
        if versions != list(range(1, len(versions) + 1)):
            raise ValueError(f"schema {self.name}: migrations must be numbered 1, 2, 3 ...")

    @property
    def latest(self) -> int:
        return len(self.migrations)

    def pending(self, current: int) -> tuple[Migration, ...]:
        return self.migrations[current:]


def lock_key(name: str) -> int:
    """A PostgreSQL advisory-lock key (signed 64 bits) for a name, the same in every process."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


BOOKKEEPING = {
    "sqlite": (
        "CREATE TABLE IF NOT EXISTS motte_schema (version INTEGER PRIMARY KEY, "
        "name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    ),
    "postgresql": (
        "CREATE TABLE IF NOT EXISTS motte_schema (version INTEGER PRIMARY KEY, "
        "name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    ),
}
