"""The Steward's database: single-use nonces, the append-only audit log, the CA it serves.

Through :mod:`motte.store`: the embedded SQLite file ``steward.db`` by default, or a
PostgreSQL database shared by any number of Steward replicas (``--db`` / ``MOTTE_DB``).

Nonces are stored, not derived, so that a used nonce stays used across a restart and across
replicas: after ``GET /nonce`` at any replica a nonce may be consumed once, at any replica,
before it expires. A decision is recorded in ONE transaction: consuming its nonce (a
conditional ``UPDATE ... WHERE used_at IS NULL AND expires_at > now``, which two replicas
racing with the same nonce cannot both pass: the second waits for the first's row lock and
then finds the nonce used) and appending its audit row, which names the nonce it consumed
(unique) and the serial it issued (unique). So a nonce is used if and only if exactly one
audit row consumed it, whatever process dies when; and no serial is recorded twice.

Expired nonces are kept for a day so that a late request is told "expired", not "unknown",
then pruned. Triggers make the audit table append-only (an UPDATE, DELETE or TRUNCATE
aborts). The ``ca`` table holds the one CA this database belongs to: a second
``motte steward init`` against it is refused, and a replica with another CA will not serve.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from motte.store import (
    DatabaseUrl,
    Migration,
    Schema,
    Tx,
    open_database,
)

_AUDIT_COLUMNS = """
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
"""

_SECRET_AUDIT_COLUMNS = """
    time             TEXT NOT NULL,
    actor            TEXT NOT NULL,
    action           TEXT NOT NULL,
    secrets          TEXT NOT NULL,
    decision         TEXT NOT NULL CHECK (decision IN ('done', 'released', 'refused')),
    reason           TEXT,
    workload_digest  TEXT,
    kind             TEXT,
    measurement      TEXT,
    evidence_sha256  TEXT,
    release_key_sha256 TEXT,
    rules            TEXT NOT NULL,
    consumed_nonce   BLOB
"""

_KEEPS_INDEX = (
    "CREATE INDEX audit_keeps ON audit "
    "(decision, kind, measurement, workload_digest, sans, time, not_after)"
)

SCHEMA = Schema(
    "steward",
    (
        Migration(
            1,
            "nonces and the audit log",
            sqlite=[
                "CREATE TABLE IF NOT EXISTS nonce (nonce BLOB PRIMARY KEY, issued_at REAL NOT NULL,"
                " expires_at REAL NOT NULL, used_at REAL) STRICT",
                "CREATE INDEX IF NOT EXISTS nonce_expires ON nonce (expires_at)",
                "CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY, "
                f"{_AUDIT_COLUMNS}) STRICT",
                "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit "
                "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
                "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit "
                "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
            ],
            postgresql=[
                "CREATE TABLE nonce (nonce BYTEA PRIMARY KEY, issued_at DOUBLE PRECISION NOT NULL,"
                " expires_at DOUBLE PRECISION NOT NULL, used_at DOUBLE PRECISION)",
                "CREATE INDEX nonce_expires ON nonce (expires_at)",
                "CREATE TABLE audit (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                f"{_AUDIT_COLUMNS})",
                "CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$",
                "CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit "
                "FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
                "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit "
                "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()",
            ],
        ),
        Migration(
            2,
            "replicas: the CA the database belongs to, unique serials, consumed nonces",
            sqlite=[
                "ALTER TABLE audit ADD COLUMN consumed_nonce BLOB",
                "CREATE UNIQUE INDEX audit_serial ON audit (serial)",
                "CREATE UNIQUE INDEX audit_consumed_nonce ON audit (consumed_nonce)",
                "CREATE TABLE ca (id INTEGER PRIMARY KEY CHECK (id = 1), sha256 TEXT NOT NULL, "
                "certificate TEXT NOT NULL, created_at TEXT NOT NULL) STRICT",
            ],
            postgresql=[
                "ALTER TABLE audit ADD COLUMN consumed_nonce BYTEA",
                "CREATE UNIQUE INDEX audit_serial ON audit (serial)",
                "CREATE UNIQUE INDEX audit_consumed_nonce ON audit (consumed_nonce)",
                "CREATE TABLE ca (id INTEGER PRIMARY KEY CHECK (id = 1), sha256 TEXT NOT NULL, "
                "certificate TEXT NOT NULL, created_at TEXT NOT NULL)",
            ],
        ),
        # The Keeps view (StewardStore.attested_keeps) and the counts read only this index:
        # a grouped scan of it costs about a quarter of one of the table at 10^5 rows.
        Migration(
            3,
            "the console's covering index of attested Keeps",
            sqlite=[_KEEPS_INDEX.replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS")],
            postgresql=[_KEEPS_INDEX],
        ),
        # The audit log's other half: which policy judged from when. A reload (SIGHUP) is
        # not a decision on a request, so it has its own append-only table.
        Migration(
            4,
            "policy events: what a running Steward loaded, and reloads it refused",
            sqlite=[
                "CREATE TABLE policy_event (id INTEGER PRIMARY KEY, time TEXT NOT NULL, "
                "event TEXT NOT NULL CHECK (event IN ('loaded', 'reloaded', 'reload-refused')), "
                "policy_name TEXT NOT NULL, policy_sha256 TEXT NOT NULL, detail TEXT) STRICT",
                "CREATE TRIGGER policy_event_append_only BEFORE UPDATE ON policy_event "
                "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
                "CREATE TRIGGER policy_event_no_delete BEFORE DELETE ON policy_event "
                "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
            ],
            postgresql=[
                "CREATE TABLE policy_event (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
                " time TEXT NOT NULL, event TEXT NOT NULL CHECK (event IN ('loaded', "
                "'reloaded', 'reload-refused')), policy_name TEXT NOT NULL, "
                "policy_sha256 TEXT NOT NULL, detail TEXT)",
                "CREATE TRIGGER policy_event_no_change BEFORE UPDATE OR DELETE ON policy_event "
                "FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
                "CREATE TRIGGER policy_event_no_truncate BEFORE TRUNCATE ON policy_event "
                "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()",
            ],
        ),
        # The secret store (motte.steward._secrets): values sealed under the master key,
        # versions, the id of the key they are sealed under, and its own append-only audit
        # of every administrative change and every release or refusal (never a value); the
        # admin API's tokens (only their SHA-256), shared by replicas.
        Migration(
            5,
            "the secret store: secrets, versions, the master key's id, the secrets' audit, "
            "admin tokens",
            sqlite=[
                "CREATE TABLE secret (name TEXT PRIMARY KEY, purpose TEXT NOT NULL, "
                "created_at TEXT NOT NULL, updated_at TEXT NOT NULL, removed_at TEXT, "
                "latest INTEGER NOT NULL, policy TEXT, policy_sha256 TEXT) STRICT",
                "CREATE TABLE secret_version (name TEXT NOT NULL, version INTEGER NOT NULL, "
                "created_at TEXT NOT NULL, size INTEGER NOT NULL, sealed BLOB NOT NULL, "
                "PRIMARY KEY (name, version)) STRICT",
                "CREATE TABLE secret_keyring (id INTEGER PRIMARY KEY CHECK (id = 1), "
                "key_id TEXT NOT NULL, since TEXT NOT NULL) STRICT",
                f"CREATE TABLE secret_audit (id INTEGER PRIMARY KEY, {_SECRET_AUDIT_COLUMNS}) "
                "STRICT",
                "CREATE UNIQUE INDEX secret_audit_nonce ON secret_audit (consumed_nonce)",
                "CREATE TABLE admin_token (name TEXT PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE, "
                "created_at TEXT NOT NULL, revoked_at TEXT) STRICT",
                "CREATE TRIGGER secret_audit_no_update BEFORE UPDATE ON secret_audit "
                "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
                "CREATE TRIGGER secret_audit_no_delete BEFORE DELETE ON secret_audit "
                "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
            ],
            postgresql=[
                "CREATE TABLE secret (name TEXT PRIMARY KEY, purpose TEXT NOT NULL, "
                "created_at TEXT NOT NULL, updated_at TEXT NOT NULL, removed_at TEXT, "
                "latest INTEGER NOT NULL, policy TEXT, policy_sha256 TEXT)",
                "CREATE TABLE secret_version (name TEXT NOT NULL, version INTEGER NOT NULL, "
                "created_at TEXT NOT NULL, size INTEGER NOT NULL, sealed BYTEA NOT NULL, "
                "PRIMARY KEY (name, version))",
                "CREATE TABLE secret_keyring (id INTEGER PRIMARY KEY CHECK (id = 1), "
                "key_id TEXT NOT NULL, since TEXT NOT NULL)",
                "CREATE TABLE secret_audit (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                f"{_SECRET_AUDIT_COLUMNS.replace('BLOB', 'BYTEA')})",
                "CREATE UNIQUE INDEX secret_audit_nonce ON secret_audit (consumed_nonce)",
                "CREATE TABLE admin_token (name TEXT PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE, "
                "created_at TEXT NOT NULL, revoked_at TEXT)",
                "CREATE TRIGGER secret_audit_no_change BEFORE UPDATE OR DELETE ON secret_audit "
                "FOR EACH ROW EXECUTE FUNCTION audit_append_only()",
                "CREATE TRIGGER secret_audit_no_truncate BEFORE TRUNCATE ON secret_audit "
                "FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()",
            ],
        ),
        # Sealed volumes (motte.steward._volumes): each volume's key sealed under the master
        # key, and its monotonic counter (the latest snapshot version recorded, its id, size
        # and time), changed one transaction per bump; refusals and accepted rollbacks are
        # rows of secret_audit.
        Migration(
            6,
            "sealed volumes: volume keys and their monotonic snapshot counters",
            sqlite=[
                "CREATE TABLE volume (id TEXT PRIMARY KEY, sealed_to TEXT NOT NULL CHECK "
                "(sealed_to IN ('namespace', 'digest')), scope TEXT NOT NULL, name TEXT NOT "
                "NULL, sealed_key BLOB NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT "
                "NULL, latest INTEGER NOT NULL DEFAULT 0 CHECK (latest >= 0), snapshot_id TEXT, "
                "size INTEGER, snapshot_at TEXT) STRICT",
            ],
            postgresql=[
                "CREATE TABLE volume (id TEXT PRIMARY KEY, sealed_to TEXT NOT NULL CHECK "
                "(sealed_to IN ('namespace', 'digest')), scope TEXT NOT NULL, name TEXT NOT "
                "NULL, sealed_key BYTEA NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT "
                "NULL, latest BIGINT NOT NULL DEFAULT 0 CHECK (latest >= 0), snapshot_id TEXT, "
                "size BIGINT, snapshot_at TEXT)",
            ],
        ),
    ),
)
#: Expired nonces are remembered this long (seconds) to explain a late request.
KEEP_EXPIRED = 24 * 3600
#: Outstanding (unused, unexpired) nonces beyond this are refused: a bound on the table.
MAX_OUTSTANDING = 100_000
#: Seconds between two prunings of long-expired nonces by one process.
PRUNE_EVERY = 60.0


class NonceRefused(Exception):
    """A nonce that cannot be used: unknown, already used, or expired (``reason`` says)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TooManyNonces(Exception):
    pass


@dataclass(frozen=True, slots=True)
class PolicyEvent:
    """What policy a running Steward judged with from ``time`` on (``loaded`` at start,
    ``reloaded`` on SIGHUP), or a reload it refused (``detail`` says why; the policy named is
    the one it kept)."""

    id: int
    time: str
    event: str
    policy_name: str
    policy_sha256: str
    detail: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": self.time,
            "event": self.event,
            "policy_name": self.policy_name,
            "policy_sha256": self.policy_sha256,
            "detail": self.detail,
        }


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


_COLUMNS = (
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
)


def _nonce_refusal(tx: Tx, nonce: bytes, now: float) -> str | None:
    """Why ``nonce`` cannot be used at ``now``, or None if it can."""
    row = tx.one("SELECT issued_at, expires_at, used_at FROM nonce WHERE nonce = ?", (nonce,))
    if row is None:
        return "the nonce is unknown to this Steward (never issued, or long gone)"
    issued, expires, used = row
    if used is not None:
        return f"the nonce was already used at {_iso(used)} (a replay)"
    if expires <= now:
        return (
            f"the nonce expired at {_iso(expires)}, {now - expires:.0f} s before this request "
            f"(issued at {_iso(issued)})"
        )
    return None


class DecisionRecord:
    """One decision's transaction: consume its nonce, append its audit row; both or neither."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx
        self._consumed: bytes | None = None

    def consume_nonce(self, nonce: bytes, *, now: float) -> str | None:
        """Mark ``nonce`` used; None if that happened, else why it could not be."""
        cur = self._tx.execute(
            "UPDATE nonce SET used_at = ? WHERE nonce = ? AND used_at IS NULL AND expires_at > ?",
            (now, nonce, now),
        )
        if cur.rowcount == 1:
            self._consumed = nonce
            return None
        return _nonce_refusal(self._tx, nonce, now) or "the nonce could not be used"

    @property
    def tx(self) -> Tx:
        """The transaction, for rows other tables add to the same decision."""
        return self._tx

    @property
    def consumed(self) -> bytes | None:
        """The nonce this decision consumed, if any."""
        return self._consumed

    def append_audit(self, row: dict[str, Any]) -> int:
        values = dict(row)
        values["sans"] = json.dumps(list(values.get("sans") or ()))
        values["rules"] = json.dumps(list(values.get("rules") or ()))
        values["verdict"] = (
            json.dumps(values["verdict"]) if values.get("verdict") is not None else None
        )
        cols = (*_COLUMNS, "consumed_nonce")
        values["consumed_nonce"] = self._consumed
        got = self._tx.one(
            f"INSERT INTO audit ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
            "RETURNING id",
            [values.get(c) for c in cols],
        )
        assert got is not None
        return int(got[0])


class StewardStore:
    """The Steward's tables in its database (``steward.db``, or a shared PostgreSQL)."""

    def __init__(self, database: Path | DatabaseUrl) -> None:
        url = database if isinstance(database, DatabaseUrl) else DatabaseUrl.sqlite(database)
        self.url = url
        self.db = open_database(url, SCHEMA, application="motte-steward")
        self._pruned_at = float("-inf")

    @property
    def where(self) -> str:
        return getattr(self.db, "where", str(self.url))

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> StewardStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ping(self) -> None:
        """One round trip (StoreUnavailableError if the database does not answer)."""
        with self.db.read() as tx:
            tx.one("SELECT 1")

    # -- the CA ------------------------------------------------------------------------------

    def ca(self) -> tuple[str, str] | None:
        """(SHA-256 fingerprint, PEM) of the CA this database belongs to, if claimed."""
        with self.db.read() as tx:
            row = tx.one("SELECT sha256, certificate FROM ca WHERE id = 1")
        return (row[0], row[1]) if row else None

    def claim_ca(self, fingerprint: str, certificate_pem: str, *, now: datetime) -> str:
        """Record the CA unless one is recorded; return the fingerprint that is."""
        with self.db.write() as tx:
            tx.execute(
                "INSERT INTO ca (id, sha256, certificate, created_at) VALUES (1, ?, ?, ?) "
                "ON CONFLICT (id) DO NOTHING",
                (fingerprint, certificate_pem, now.isoformat(timespec="seconds")),
            )
            row = tx.one("SELECT sha256 FROM ca WHERE id = 1")
        assert row is not None
        return str(row[0])

    # -- nonces ------------------------------------------------------------------------------

    def issue_nonce(self, nonce: bytes, *, now: float, lifetime: float) -> float:
        """Remember ``nonce`` as usable until ``now + lifetime``; returns the expiry.

        One statement (one round trip on PostgreSQL): the insert happens only while fewer
        than MAX_OUTSTANDING nonces are outstanding. Replicas each check the bound in their
        own statement, so together they may pass it by a few: it bounds the table, it is
        not an exact quota. Expired rows are pruned at most once a minute per process.
        """
        expires = now + lifetime
        if not self._pruned_at <= now < self._pruned_at + PRUNE_EVERY:
            self.db.write_one("DELETE FROM nonce WHERE expires_at < ?", (now - KEEP_EXPIRED,))
            self._pruned_at = now
        inserted = self.db.write_one(
            "INSERT INTO nonce (nonce, issued_at, expires_at) SELECT ?, ?, ? "
            "WHERE (SELECT count(*) FROM nonce WHERE used_at IS NULL AND expires_at > ?) < ?",
            (nonce, now, expires, now, MAX_OUTSTANDING),
        )
        if inserted != 1:
            raise TooManyNonces()
        return expires

    def check_nonce(self, nonce: bytes, *, now: float) -> None:
        """Raise NonceRefused if ``nonce`` cannot be used now (nothing is changed)."""
        with self.db.read() as tx:
            reason = _nonce_refusal(tx, nonce, now)
        if reason is not None:
            raise NonceRefused(reason)

    def consume_nonce(self, nonce: bytes, *, now: float) -> None:
        """Mark ``nonce`` used; raise NonceRefused saying why it cannot be."""
        with self.decision() as record:
            reason = record.consume_nonce(nonce, now=now)
        if reason is not None:
            raise NonceRefused(reason)

    # -- decisions and the audit log --------------------------------------------------------

    @contextlib.contextmanager
    def decision(self) -> Iterator[DecisionRecord]:
        """One transaction for a decision: its nonce and its audit row (ConstraintError if
        its serial was ever issued before: then nothing was recorded)."""
        with self.db.write() as tx:
            yield DecisionRecord(tx)

    def append_audit(self, row: dict[str, Any]) -> int:
        with self.decision() as record:
            return record.append_audit(row)

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
        sql = f"SELECT id, {', '.join(_COLUMNS)} FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return self._records(sql, args)

    def audit_counts(self) -> dict[str, int]:
        """How many decisions of each kind (``accepted``, ``rejected``) are recorded."""
        with self.db.read() as tx:
            rows = tx.all("SELECT decision, count(*) FROM audit GROUP BY decision")
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
        with self.db.read() as tx:
            rows = tx.all(sql, args)
            clients = (
                dict(
                    tx.all(
                        f"SELECT id, client FROM audit WHERE id IN ({','.join('?' * len(rows))})",
                        [r[8] for r in rows],
                    )
                )
                if rows
                else {}
            )
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
        """Rows of ``SELECT id, <_COLUMNS>`` as records, in the order the query gave."""
        with self.db.read() as tx:
            rows = tx.all(sql, args)
        out = []
        for values in rows:
            r = dict(zip(("id", *_COLUMNS), values, strict=True))
            r["sans"] = tuple(json.loads(r["sans"]))
            r["rules"] = tuple(json.loads(r["rules"]))
            r["verdict"] = json.loads(r["verdict"]) if r["verdict"] is not None else None
            out.append(AuditRecord(**r))
        return out

    def audit(self, *, limit: int | None = None, decision: str | None = None) -> list[AuditRecord]:
        """The newest ``limit`` rows (all when None), oldest first."""
        sql = f"SELECT id, {', '.join(_COLUMNS)} FROM audit"
        args: list[Any] = []
        if decision is not None:
            sql += " WHERE decision = ?"
            args.append(decision)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return list(reversed(self._records(sql, args)))

    def append_policy_event(
        self, event: str, policy_name: str, policy_sha256: str, *, now: datetime, detail: str | None
    ) -> int:
        with self.db.write() as tx:
            got = tx.one(
                "INSERT INTO policy_event (time, event, policy_name, policy_sha256, detail) "
                "VALUES (?, ?, ?, ?, ?) RETURNING id",
                (now.isoformat(timespec="seconds"), event, policy_name, policy_sha256, detail),
            )
        assert got is not None
        return int(got[0])

    def policy_events(self, *, limit: int | None = None) -> list[PolicyEvent]:
        """The newest ``limit`` policy events (all when None), oldest first."""
        sql = "SELECT id, time, event, policy_name, policy_sha256, detail FROM policy_event"
        sql += " ORDER BY id DESC" + (" LIMIT ?" if limit is not None else "")
        with self.db.read() as tx:
            rows = tx.all(sql, [limit] if limit is not None else [])
        return [PolicyEvent(*row) for row in reversed(rows)]

    def counts(self) -> dict[str, int]:
        """How many nonces are used and how many audit rows (of attestations and of secret
        releases) consumed one: they are equal."""
        with self.db.read() as tx:
            (used,) = tx.one("SELECT count(*) FROM nonce WHERE used_at IS NOT NULL")  # type: ignore[misc]
            # A nonce is consumed by an attestation or by a secret release, never both.
            (consumed,) = tx.one(  # type: ignore[misc]
                "SELECT (SELECT count(*) FROM audit WHERE consumed_nonce IS NOT NULL) + "
                "(SELECT count(*) FROM secret_audit WHERE consumed_nonce IS NOT NULL)"
            )
            (rows,) = tx.one("SELECT count(*) FROM audit")  # type: ignore[misc]
        return {"used_nonces": int(used), "consuming_rows": int(consumed), "audit_rows": int(rows)}
