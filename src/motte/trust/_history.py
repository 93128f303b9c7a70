"""A package's history, read from the transparency log itself, through an index.

The log holds every statement anyone logged, as DSSE envelopes. Reading it shows what the
package's own referrers may not: advisories attached elsewhere, every earlier publication of
the package and who signed it, and when (the log's time, not the publisher's). "Since when"
and "never seen before" come from here and from the consumer's memory, never from anything
the publisher writes.

Reading a whole log for every judgement would cost time linear in the log. Instead
``MOTTE_HOME/trust/history.db`` (SQLite) keeps, per log, a summary of every entry (its leaf
hash, the package it publishes or advises about, the digests it is about) and the Merkle
frontier of what was indexed; a judgement indexes only the entries appended since, then
fetches the few entries that concern the package.

Nothing in the index is believed blindly. New entries count only once the frontier extended
by their leaf hashes equals the root of a checkpoint verified with the consumer's log keys
(and shown consistent with the last one it saw), or, for the embedded log, the root its own
store computes; otherwise the scan is rolled back. An entry fetched later must hash to the
leaf hash indexed for it. A log whose history no longer extends what was indexed (a rewritten
embedded log) is indexed again from scratch.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import hashlib
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from motte.errors import MotteError, RemoteError
from motte.home import motte_home
from motte.oci import NO_PROGRESS, Progress
from motte.sign import INTOTO_PAYLOAD_TYPE, PUBLICATION, Envelope, EnvelopeFormatError, Statement
from motte.tlog import Checkpoint, Frontier, leaf_hash
from motte.trust._errors import TrustError
from motte.trust._evidence import LogPlace
from motte.trust._predicates import ADVISORY

#: Reads entries ``lo`` to ``hi - 1`` of a log.
ReadEntries = Callable[[int, int], list[bytes]]

#: Entries read and indexed per round trip (one entry bundle tile is 256).
SCAN_CHUNK = 4096
#: Bumped when the layout changes: the index is a cache, rebuilt from the logs when stale.
SCHEMA_VERSION = 2
_SCHEMA = [
    "CREATE TABLE logs (id INTEGER PRIMARY KEY, log_id TEXT NOT NULL UNIQUE, "
    "origin TEXT NOT NULL, size INTEGER NOT NULL, frontier BLOB NOT NULL) STRICT",
    "CREATE TABLE entries (log INTEGER NOT NULL, idx INTEGER NOT NULL, leaf BLOB NOT NULL, "
    "package TEXT, PRIMARY KEY (log, idx)) STRICT, WITHOUT ROWID",
    "CREATE INDEX entries_package ON entries (log, package)",
    "CREATE TABLE subjects (log INTEGER NOT NULL, digest TEXT NOT NULL, idx INTEGER NOT NULL, "
    "PRIMARY KEY (log, digest, idx)) STRICT, WITHOUT ROWID",
]


@dataclass(frozen=True, slots=True)
class LogRecord:
    place: LogPlace
    envelope: bytes
    parsed: Envelope
    statement: Statement  # not yet verified: the caller checks signatures


@dataclass
class History:
    records: list[LogRecord] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)  # "origin at size N", each indexed in full
    problem: str | None = None


def index_path() -> Path:
    return motte_home() / "trust" / "history.db"


def _parse(entry: bytes) -> tuple[Envelope, Statement] | None:
    """A log entry as an in-toto statement in a DSSE envelope, or None (other entries)."""
    try:
        env = Envelope.from_bytes(entry, "log entry")
        if env.payload_type != INTOTO_PAYLOAD_TYPE:
            return None
        return env, Statement.from_bytes(env.payload, "log entry statement")
    except EnvelopeFormatError:
        return None


def _package_of(st: Statement) -> str | None:
    """``namespace/name`` a publication publishes or an advisory is about (unverified)."""
    p = st.predicate
    if st.predicate_type == ADVISORY:
        p = p.get("package") if isinstance(p.get("package"), dict) else {}
    elif st.predicate_type != PUBLICATION:
        return None
    ns, name = p.get("namespace"), p.get("name")
    if isinstance(ns, str) and isinstance(name, str) and ns and name:
        return f"{ns}/{name}"
    return None


class HistoryIndex:
    """The per-log summaries under ``MOTTE_HOME/trust/history.db``."""

    def __init__(self, path: Path | None = None) -> None:
        path = path or index_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA busy_timeout=30000")
        with self._tx():
            if self.db.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                for (table,) in self.db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'"
                ).fetchall():
                    self.db.execute(f'DROP TABLE "{table}"')
                for stmt in _SCHEMA:
                    self.db.execute(stmt)
                self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _log(self, log_id: str, origin: str) -> tuple[int, Frontier]:
        row = self.db.execute(
            "SELECT id, size, frontier FROM logs WHERE log_id = ?", (log_id,)
        ).fetchone()
        if row is None:
            cur = self.db.execute(
                "INSERT INTO logs (log_id, origin, size, frontier) VALUES (?, ?, 0, x'')",
                (log_id, origin),
            )
            return int(cur.lastrowid or 0), Frontier()
        key, size, blob = row
        return key, Frontier(size, [blob[i : i + 32] for i in range(0, len(blob), 32)])

    def scan(
        self,
        log_id: str,
        origin: str,
        size: int,
        root: bytes,
        read: ReadEntries,
        progress: Progress = NO_PROGRESS,
    ) -> None:
        """Index entries up to ``size``, accepted only if they lead to ``root``; else roll back."""
        with self._tx(), contextlib.ExitStack() as stack:
            key, frontier = self._log(log_id, origin)
            if frontier.size > size:
                raise _Rewritten(f"indexed {frontier.size} entries, the log now has {size}")
            pos = frontier.size
            advance = (
                stack.enter_context(progress.task(f"index {origin}", size - pos))
                if size - pos > SCAN_CHUNK
                else (lambda n: None)
            )
            while pos < size:
                hi = min(size, pos + SCAN_CHUNK)
                entries = read(pos, hi)
                if len(entries) != hi - pos:
                    raise LogReadError(f"asked for entries {pos}..{hi}, got {len(entries)}")
                rows, subjects = [], []
                for i, e in enumerate(entries, start=pos):
                    leaf = leaf_hash(e)
                    frontier.append(leaf)
                    parsed = _parse(e)
                    package = _package_of(parsed[1]) if parsed else None
                    rows.append((key, i, leaf, package))
                    if parsed:
                        for subject in parsed[1].subject:
                            subjects += [(key, d, i) for d in subject.digests()]
                self.db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?)", rows)
                self.db.executemany("INSERT OR IGNORE INTO subjects VALUES (?, ?, ?)", subjects)
                advance(hi - pos)
                pos = hi
            if frontier.root() != root:
                raise _Rewritten(
                    f"its entries do not hash to the root of its checkpoint of size {size}"
                )
            self.db.execute(
                "UPDATE logs SET size = ?, frontier = ? WHERE id = ?",
                (frontier.size, b"".join(frontier.hashes), key),
            )

    def forget(self, log_id: str) -> None:
        with self._tx():
            row = self.db.execute("SELECT id FROM logs WHERE log_id = ?", (log_id,)).fetchone()
            if row is None:
                return
            for table in ("entries", "subjects"):
                self.db.execute(f"DELETE FROM {table} WHERE log = ?", row)
            self.db.execute("DELETE FROM logs WHERE id = ?", row)

    def wanted(self, log_id: str, package: str, digest: str) -> list[tuple[int, bytes]]:
        """(index, leaf hash) of entries about ``package`` or ``digest``, in log order."""
        row = self.db.execute("SELECT id FROM logs WHERE log_id = ?", (log_id,)).fetchone()
        if row is None:
            return []
        (key,) = row
        # Two index lookups rather than one UNION: each is a range of a primary key or of
        # entries_package, whatever the planner would make of the combination.
        found = dict(
            self.db.execute(
                "SELECT idx, leaf FROM entries WHERE log = ? AND package = ?", (key, package)
            ).fetchall()
        )
        for (i,) in self.db.execute(
            "SELECT idx FROM subjects WHERE log = ? AND digest = ?", (key, digest)
        ).fetchall():
            if i not in found:
                (leaf,) = self.db.execute(
                    "SELECT leaf FROM entries WHERE log = ? AND idx = ?", (key, i)
                ).fetchone()
                found[i] = leaf
        return [(int(i), bytes(found[i])) for i in sorted(found)]


class LogReadError(TrustError, RemoteError):
    """A log that answered with entries that are not the ones its checkpoint commits to."""


class _Rewritten(LogReadError):
    """What was indexed is not a prefix of the log as it is now."""


def _utc(seconds: int | None) -> dt.datetime | None:
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.UTC)


def read_history(
    checkpoints: Iterable[Checkpoint],
    package: str,
    digest: str,
    *,
    now: dt.datetime,
    progress: Progress = NO_PROGRESS,
) -> History:
    """Every entry about ``package`` or ``digest`` in each log behind ``checkpoints``.

    A log that cannot be read leaves ``problem`` set (naming the log and why); what could be
    read is still returned.
    """
    history = History()
    done: set[str] = set()
    index = HistoryIndex()
    try:
        for cp in checkpoints:
            log_id = hashlib.sha256(f"{cp.origin}\n{cp.log_key}".encode()).hexdigest()
            if log_id in done:
                continue
            done.add(log_id)
            try:
                _read_one(index, log_id, cp, package, digest, now, history, progress)
            except MotteError as e:
                history.problem = f"cannot read the log {cp.origin}: {e.message}"
    finally:
        index.close()
    return history


def _read_one(
    index: HistoryIndex,
    log_id: str,
    cp: Checkpoint,
    package: str,
    digest: str,
    now: dt.datetime,
    out: History,
    progress: Progress,
) -> None:
    from motte.tlog import (
        LocalLog,
        RemoteLog,
        check_and_remember,
        load_trusted,
        resolve_log,
        verify_checkpoint,
    )

    log = resolve_log(cp)
    try:
        if isinstance(log, LocalLog):
            # This installation's own log: its store computes the root to index against.
            size = log.size
            _, root = log.store.root(size)

            def read(lo: int, hi: int) -> list[bytes]:
                return log.read_entries(lo, hi)

            times = log.checkpoint_times()
        else:
            assert isinstance(log, RemoteLog)
            latest = verify_checkpoint(log.checkpoint(), load_trusted(), now=now.timestamp())
            check_and_remember(latest, log)
            size, root = latest.size, latest.root_hash

            def read(lo: int, hi: int) -> list[bytes]:
                return log.read_entries_unverified(lo, hi, size)

            # Entries of a served log carry no time of their own: statements stored beside
            # packages bring theirs (their proof's checkpoint).
            times = []
        try:
            index.scan(log_id, cp.origin, size, root, read, progress)
        except _Rewritten:
            if not isinstance(log, LocalLog):
                raise
            index.forget(log_id)  # the embedded log was replaced: index it again
            index.scan(log_id, cp.origin, size, root, read, progress)
        wanted = index.wanted(log_id, package, digest)
        fetched = _fetch(read, [i for i, _ in wanted])
    finally:
        log.close()
    sizes = [s for s, _ in times]
    for i, leaf in wanted:
        entry = fetched[i]
        if leaf_hash(entry) != leaf:
            raise LogReadError(f"entry {i} is not the entry indexed at that position")
        parsed = _parse(entry)
        if parsed is None:
            continue
        at = bisect.bisect_right(sizes, i)
        when = _utc(times[at][1]) if at < len(times) else None
        out.records.append(LogRecord(LogPlace(cp.origin, i, when), entry, *parsed))
    out.logs.append(f"{cp.origin} at size {size}")


def _fetch(read: ReadEntries, indices: list[int]) -> dict[int, bytes]:
    """The entries at ``indices``, read in runs of neighbours."""
    out: dict[int, bytes] = {}
    run: list[int] = []
    for i in [*indices, None]:
        if run and (i is None or i != run[-1] + 1):
            for j, e in zip(range(run[0], run[-1] + 1), read(run[0], run[-1] + 1), strict=True):
                out[j] = e
            run = []
        if i is not None:
            run.append(i)
    return out
