"""The Steward's SQLite database: single-use nonces and the append-only audit log.

Nonces are stored, not derived, so that a used nonce stays used across a restart: after
``GET /nonce`` a nonce may be consumed once, before it expires. Consuming is one atomic
``UPDATE ... WHERE used_at IS NULL AND expires_at > now``: two requests racing with the
same nonce cannot both win. Expired rows are kept for a day so that a late request is told
"expired", not "unknown", then pruned.

Every attestation decision is one audit row, written in its own transaction; triggers make
the table append-only (an UPDATE or DELETE aborts).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS nonce (
    nonce       BLOB PRIMARY KEY,
    issued_at   REAL NOT NULL,
    expires_at  REAL NOT NULL,
    used_at     REAL
) STRICT;
CREATE INDEX IF NOT EXISTS nonce_expires ON nonce (expires_at);
CREATE TABLE IF NOT EXISTS audit (
    id               INTEGER PRIMARY KEY,
    time             TEXT NOT NULL,
    client           TEXT NOT NULL,
    decision         TEXT NOT NULL CHECK (decision IN ('accepted', 'rejected')),
    reason           TEXT,
    format           TEXT,
    kind             TEXT,
    measurement      TEXT,
    workload_digest  TEXT,
    csr_key_sha256   TEXT,
    evidence_sha256  TEXT,
    sans             TEXT NOT NULL,
    serial           TEXT,
    not_after        TEXT,
    rules            TEXT NOT NULL,
    verdict          TEXT
) STRICT;
-- The Keeps view (StewardStore.attested_keeps) and the counts read only this index: a
-- grouped scan of it costs about a quarter of one of the table at 10^5 rows.
CREATE INDEX IF NOT EXISTS audit_keeps
    ON audit (decision, kind, measurement, workload_digest, sans, time, not_after);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""
#: Expired nonces are remembered this long (seconds) to explain a late request.
KEEP_EXPIRED = 24 * 3600
#: Outstanding (unused, unexpired) nonces beyond this are refused: a bound on the table.
MAX_OUTSTANDING = 100_000


class NonceRefused(Exception):
    """A nonce that cannot be used: unknown, already used, or expired (``reason`` says)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TooManyNonces(Exception):
    pass


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One decision, as stored."""

    id: int
    time: str
    client: str
    decision: str
    reason: str | None
    format: str | None
    kind: str | None
    measurement: str | None
    workload_digest: str | None
    csr_key_sha256: str | None
    evidence_sha256: str | None
    sans: tuple[str, ...]
    serial: str | None
    not_after: str | None
    rules: tuple[dict[str, Any], ...]
    verdict: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": self.time,
            "client": self.client,
            "decision": self.decision,
            "reason": self.reason,
            "format": self.format,
            "kind": self.kind,
            "measurement": self.measurement,
            "workload_digest": self.workload_digest,
            "csr_key_sha256": self.csr_key_sha256,
            "evidence_sha256": self.evidence_sha256,
            "sans": list(self.sans),
            "serial": self.serial,
            "not_after": self.not_after,
            "rules": list(self.rules),
            "verdict": self.verdict,
        }


@dataclass(frozen=True, slots=True)
class KeepSummary:
    """The certificates issued to one Keep, as the audit log knows it.

    A Keep attests with a new key every time (renewals included), so the log cannot follow
    a key: a Keep here is *what* was attested, the TEE kind, measurement, workload digest
    and names asked for. ``certificates - 1`` of its certificates were renewals.
    """

    kind: str | None
    measurement: str | None
    workload_digest: str | None
    sans: tuple[str, ...]
    certificates: int
    first_time: str
    last_time: str
    not_after: str | None
    last_id: int
    last_client: str

    @property
    def renewals(self) -> int:
        return self.certificates - 1


def _like(text: str) -> str:
    """``text`` as a LIKE pattern matching it anywhere, wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


class StewardStore:
    """One connection, shared by the server's threads under a lock (SQLite serialises
    writers anyway; the lock keeps the connection's state consistent)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.execute("PRAGMA busy_timeout = 5000")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> StewardStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- nonces ------------------------------------------------------------------------------

    def issue_nonce(self, nonce: bytes, *, now: float, lifetime: float) -> float:
        """Remember ``nonce`` as usable until ``now + lifetime``; returns the expiry."""
        expires = now + lifetime
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM nonce WHERE expires_at < ?", (now - KEEP_EXPIRED,))
                (outstanding,) = self._db.execute(
                    "SELECT count(*) FROM nonce WHERE used_at IS NULL AND expires_at > ?", (now,)
                ).fetchone()
                if outstanding >= MAX_OUTSTANDING:
                    raise TooManyNonces()
                self._db.execute(
                    "INSERT INTO nonce (nonce, issued_at, expires_at) VALUES (?, ?, ?)",
                    (nonce, now, expires),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return expires

    def consume_nonce(self, nonce: bytes, *, now: float) -> None:
        """Mark ``nonce`` used; raise NonceRefused saying why it cannot be."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE nonce SET used_at = ? "
                "WHERE nonce = ? AND used_at IS NULL AND expires_at > ?",
                (now, nonce, now),
            )
            if cur.rowcount == 1:
                return
            row = self._db.execute(
                "SELECT issued_at, expires_at, used_at FROM nonce WHERE nonce = ?", (nonce,)
            ).fetchone()
        if row is None:
            raise NonceRefused("the nonce is unknown to this Steward (never issued, or long gone)")
        issued, expires, used = row
        if used is not None:
            raise NonceRefused(f"the nonce was already used at {_iso(used)} (a replay)")
        raise NonceRefused(
            f"the nonce expired at {_iso(expires)}, {now - expires:.0f} s before this request "
            f"(issued at {_iso(issued)})"
        )

    # -- audit -------------------------------------------------------------------------------

    def append_audit(self, row: dict[str, Any]) -> int:
        cols = [
            "time",
            "client",
            "decision",
            "reason",
            "format",
            "kind",
            "measurement",
            "workload_digest",
            "csr_key_sha256",
            "evidence_sha256",
            "sans",
            "serial",
            "not_after",
            "rules",
            "verdict",
        ]
        values = dict(row)
        values["sans"] = json.dumps(list(values.get("sans") or ()))
        values["rules"] = json.dumps(list(values.get("rules") or ()))
        values["verdict"] = (
            json.dumps(values["verdict"]) if values.get("verdict") is not None else None
        )
        with self._lock:
            cur = self._db.execute(
                f"INSERT INTO audit ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [values.get(c) for c in cols],
            )
            assert cur.lastrowid is not None
            return cur.lastrowid

    def audit_page(
        self,
        *,
        limit: int = 50,
        before: int | None = None,
        decision: str | None = None,
        kind: str | None = None,
        workload: str | None = None,
        text: str | None = None,
    ) -> list[AuditRecord]:
        """Newest first: at most ``limit`` rows with ``id < before``, matching every filter.

        ``text`` matches anywhere in the client, the reason, the names or the workload digest.
        Paging by id (not OFFSET) keeps every page as cheap as the first at any log size.
        """
        where, args = self._filters(decision=decision, kind=kind, workload=workload, text=text)
        if before is not None:
            where.append("id < ?")
            args.append(before)
        sql = "SELECT * FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return self._records(sql, args)

    def audit_counts(self) -> dict[str, int]:
        """How many decisions of each kind (``accepted``, ``rejected``) are recorded."""
        with self._lock:
            rows = self._db.execute(
                "SELECT decision, count(*) FROM audit GROUP BY decision"
            ).fetchall()
        counts = {"accepted": 0, "rejected": 0}
        counts.update({d: int(n) for d, n in rows})
        return counts

    def attested_keeps(
        self, *, limit: int = 100, kind: str | None = None, workload: str | None = None
    ) -> list[KeepSummary]:
        """The Keeps certificates were issued to (see :class:`KeepSummary`), latest first."""
        where, args = self._filters(decision="accepted", kind=kind, workload=workload)
        sql = (
            "SELECT kind, measurement, workload_digest, sans, count(*), min(time), max(time), "
            "max(not_after), max(id) FROM audit WHERE " + " AND ".join(where) + " "
            "GROUP BY kind, measurement, workload_digest, sans ORDER BY max(id) DESC LIMIT ?"
        )
        args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
            clients = {
                i: c
                for i, c in self._db.execute(
                    f"SELECT id, client FROM audit WHERE id IN ({','.join('?' * len(rows))})",
                    [r[8] for r in rows],
                ).fetchall()
            }
        return [
            KeepSummary(
                kind=r[0],
                measurement=r[1],
                workload_digest=r[2],
                sans=tuple(json.loads(r[3])),
                certificates=int(r[4]),
                first_time=r[5],
                last_time=r[6],
                not_after=r[7],
                last_id=int(r[8]),
                last_client=clients.get(r[8], ""),
            )
            for r in rows
        ]

    @staticmethod
    def _filters(
        *,
        decision: str | None = None,
        kind: str | None = None,
        workload: str | None = None,
        text: str | None = None,
    ) -> tuple[list[str], list[Any]]:
        where: list[str] = []
        args: list[Any] = []
        pairs = (("decision", decision), ("kind", kind), ("workload_digest", workload))
        for column, value in pairs:
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if text:
            pattern = _like(text)
            where.append(
                "(client LIKE ? ESCAPE '\\' OR reason LIKE ? ESCAPE '\\' "
                "OR sans LIKE ? ESCAPE '\\' OR workload_digest LIKE ? ESCAPE '\\')"
            )
            args += [pattern] * 4
        return where, args

    def _records(self, sql: str, args: list[Any]) -> list[AuditRecord]:
        with self._lock:
            cur = self._db.execute(sql, args)
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        out = []
        for r in rows:
            r["sans"] = tuple(json.loads(r["sans"]))
            r["rules"] = tuple(json.loads(r["rules"]))
            r["verdict"] = json.loads(r["verdict"]) if r["verdict"] is not None else None
            out.append(AuditRecord(**r))
        return out

    def audit(self, *, limit: int | None = None, decision: str | None = None) -> list[AuditRecord]:
        """The newest ``limit`` rows (all when None), oldest first."""
        sql = "SELECT * FROM audit"
        args: list[Any] = []
        if decision is not None:
            sql += " WHERE decision = ?"
            args.append(decision)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self._lock:
            cur = self._db.execute(sql, args)
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        out = []
        for r in reversed(rows):
            r["sans"] = tuple(json.loads(r["sans"]))
            r["rules"] = tuple(json.loads(r["rules"]))
            r["verdict"] = json.loads(r["verdict"]) if r["verdict"] is not None else None
            out.append(AuditRecord(**r))
        return out
