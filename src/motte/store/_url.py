"""Which database a component uses: the embedded SQLite file, or PostgreSQL named by a URL.

``--db URL`` wins, then ``MOTTE_DB``, then what the component recorded when it was created
(``database`` in the Steward's config.toml, the log directory's ``database`` file), then the
component's own SQLite file. Only ``postgresql://`` (or ``postgres://``) URLs are accepted:
SQLite is what you get by naming nothing.

A URL never carries a password: it would show in process lists, shell history, service
files and logs. libpq reads it from ``PGPASSWORD`` or a passfile (``~/.pgpass``,
``PGPASSFILE``, or ``passfile=`` in the URL), and every other ``PG*`` variable as usual.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from motte.store._errors import DatabaseUrlError

ENV = "MOTTE_DB"
SCHEMES = ("postgresql", "postgres")


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    """A SQLite file (``path``) or a PostgreSQL database (``conninfo``, a URL without a
    password)."""

    kind: str  # "sqlite" or "postgresql"
    path: Path | None = None
    conninfo: str | None = None

    @classmethod
    def sqlite(cls, path: Path) -> DatabaseUrl:
        return cls("sqlite", path=Path(path))

    @property
    def is_postgresql(self) -> bool:
        return self.kind == "postgresql"

    def __str__(self) -> str:
        return str(self.path) if self.kind == "sqlite" else str(self.conninfo)


def parse_database_url(text: str, *, where: str = "--db") -> DatabaseUrl:
    """A ``postgresql://`` URL checked for what motte refuses; never echoes a password."""
    text = text.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise DatabaseUrlError(
            f"{where}: not a URL; expected postgresql://[user@]host[:port]/database"
        ) from None
    if parts.scheme not in SCHEMES:
        scheme = f"{parts.scheme}://" if parts.scheme else "a path"
        raise DatabaseUrlError(
            f"{where}: {scheme} is not a database motte uses; expected "
            "postgresql://[user@]host[:port]/database",
            hint="SQLite is the default: leave --db and MOTTE_DB unset to use it",
        )
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if parts.password is not None or "password" in query:
        raise DatabaseUrlError(
            f"{where}: the URL holds a password, which would show in process lists, shell "
            "history and logs",
            hint="remove it from the URL; give it in PGPASSWORD or a passfile (~/.pgpass, "
            "PGPASSFILE)",
        )
    if not parts.path.strip("/") and "dbname" not in query and not os.environ.get("PGDATABASE"):
        raise DatabaseUrlError(
            f"{where}: the URL names no database; expected postgresql://host/database"
        )
    return DatabaseUrl("postgresql", conninfo=text)


def resolve_database(
    flag: str | None,
    *,
    default: Path,
    recorded: str | None = None,
    where: str = "--db",
    recorded_where: str = "the recorded database",
) -> DatabaseUrl:
    """The database a command uses: ``flag``, else ``MOTTE_DB``, else ``recorded`` (read from
    ``recorded_where``), else the SQLite file ``default``."""
    if flag:
        return parse_database_url(flag, where=where)
    env = os.environ.get(ENV)
    if env:
        return parse_database_url(env, where=ENV)
    if recorded:
        return parse_database_url(recorded, where=recorded_where)
    return DatabaseUrl.sqlite(default)
