"""The Steward's secret store: named, versioned values sealed under the master key.

Tables (migration 4 of the Steward's schema, on SQLite or the PostgreSQL replicas share):

    secret          name, purpose ("value" or "content-key"), times, latest version,
                    release policy (TOML text) and its sha256; removed_at once removed
    secret_version  (name, version) -> size and the sealed value (motte.steward._masterkey)
    secret_keyring  the id of the master key every value is sealed under (one row)
    secret_audit    append-only: every put, rotate, policy change, removal, rekey, and every
                    release or refusal, with who asked and why; never a value

Every change is one transaction with its audit row: a crash leaves the old state or the new
one. A removed secret keeps its row (a tombstone, so a later ``put`` of the same name goes
on from the old version numbers and a Keep pinned to an old version never gets a new
value under the old number); its values are deleted.

The master key is read when first needed and checked against ``secret_keyring`` in the
same transaction as the values it opens: a wrong key is refused by name before anything is
written. ``rekey`` re-seals every value under a new key in ONE transaction.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from motte.steward._masterkey import (
    KEY_FILE,
    MasterKey,
    create_key_file,
    key_text,
    load_master_key,
    read_key_file,
)
from motte.steward._release_policy import ReleasePolicy, parse_release_policy
from motte.steward.errors import SecretKeyError, SecretNotFoundError, SecretUsageError
from motte.store import Database, Tx

NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]*(?:/[a-z0-9][a-z0-9._-]*)*")
MAX_NAME = 128
MAX_VALUE_BYTES = 1024 * 1024
PURPOSES = ("value", "content-key")
PENDING_SUFFIX = ".new"


def check_name(name: str) -> str:
    if not isinstance(name, str) or len(name) > MAX_NAME or not NAME_RE.fullmatch(name):
        raise SecretUsageError(
            f"secret name {name!r}: lower-case letters, digits, '.', '_', '-' and '/' "
            f"between words, at most {MAX_NAME} characters",
            hint="e.g. db-password or acme/web/api-token",
        )
    return name


def check_value(value: bytes, name: str) -> bytes:
    if not value:
        raise SecretUsageError(f"secret {name}: the value is empty")
    if len(value) > MAX_VALUE_BYTES:
        raise SecretUsageError(f"secret {name}: the value is larger than {MAX_VALUE_BYTES} bytes")
    return value


@dataclass(frozen=True, slots=True)
class SecretVersion:
    version: int
    created_at: str
    size: int


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """A secret's metadata: never its value."""

    name: str
    purpose: str
    created_at: str
    updated_at: str
    latest: int
    versions: tuple[SecretVersion, ...]
    policy: ReleasePolicy | None
    removed_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "purpose": self.purpose,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "latest": self.latest,
            "versions": [
                {"version": v.version, "created_at": v.created_at, "size": v.size}
                for v in self.versions
            ],
            "policy": self.policy.summary() if self.policy else None,
            "policy_text": self.policy.text if self.policy else None,
            "removed_at": self.removed_at,
        }


@dataclass(frozen=True, slots=True)
class SecretAuditRecord:
    id: int
    time: str
    actor: str
    action: str
    secrets: tuple[dict[str, Any], ...]
    decision: str
    reason: str | None
    workload_digest: str | None
    kind: str | None
    measurement: str | None
    evidence_sha256: str | None
    release_key_sha256: str | None
    rules: tuple[dict[str, Any], ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": self.time,
            "actor": self.actor,
            "action": self.action,
            "secrets": list(self.secrets),
            "decision": self.decision,
            "reason": self.reason,
            "workload_digest": self.workload_digest,
            "kind": self.kind,
            "measurement": self.measurement,
            "evidence_sha256": self.evidence_sha256,
            "release_key_sha256": self.release_key_sha256,
            "rules": list(self.rules),
        }

    def failed(self, name: str | None = None) -> list[str]:
        """Why a release was refused (for ``name``: its own failed rules and the request's,
        or that another secret of the same request was refused): :func:`refusal_reasons`."""
        return refusal_reasons(self, name)


_AUDIT_COLUMNS = (
    "time",
    "actor",
    "action",
    "secrets",
    "decision",
    "reason",
    "workload_digest",
    "kind",
    "measurement",
    "evidence_sha256",
    "release_key_sha256",
    "rules",
)


@dataclass(frozen=True, slots=True)
class SecretReleases:
    """How a secret fared with Keeps, from the secrets' audit log: how many releases gave
    it and how many refused it, and the latest of each (never a value)."""

    name: str
    released: int = 0
    refused: int = 0
    last_released: str | None = None
    last_refused: str | None = None
    #: The reasons of the latest refusal that concern this secret (its own rules, and the
    #: request's own: nonce, evidence).
    last_refusal: tuple[str, ...] = ()
    #: Whether the store holds it now (False: removed, or never put but asked for).
    stored: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "released": self.released,
            "refused": self.refused,
            "last_released": self.last_released,
            "last_refused": self.last_refused,
            "last_refusal": list(self.last_refusal),
            "stored": self.stored,
        }


def refusal_reasons(record: SecretAuditRecord, name: str | None = None) -> list[str]:
    """The failed rules of an audit row, each once; with ``name``, only those about that
    secret and those about the whole request (nonce, evidence), not other secrets'."""
    out: list[str] = []
    others: list[str] = []
    for r in record.rules:
        if r.get("outcome") != "fail":
            continue
        secret = r.get("secret")
        if name is not None and secret not in (None, name):
            if secret not in others:
                others.append(secret)
            continue
        rule = f"{r.get('rule')}: {r.get('reason')}"
        line = f"{secret}: {rule}" if secret else rule
        if line not in out:
            out.append(line)
    if out or record.decision != "refused":
        return out
    if others:
        # This secret passed its own rules; release is all or nothing.
        return [f"all or nothing: {', '.join(others)} refused in the same request"]
    return [record.reason] if record.reason and name is None else []


def append_secret_audit(tx: Tx, row: dict[str, Any], *, consumed: bytes | None = None) -> int:
    """One row of the secrets' audit log, in the caller's transaction; its id."""
    values = dict(row)
    values["secrets"] = json.dumps(list(values.get("secrets") or ()))
    values["rules"] = json.dumps(list(values.get("rules") or ()))
    cols = (*_AUDIT_COLUMNS, "consumed_nonce")
    values["consumed_nonce"] = consumed
    got = tx.one(
        f"INSERT INTO secret_audit ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))}) "
        "RETURNING id",
        [values.get(c) for c in cols],
    )
    assert got is not None
    return int(got[0])


@dataclass(frozen=True, slots=True)
class Released:
    """One requested secret as found for a release: its value, or why there is none."""

    name: str
    requested: int | None
    version: int | None
    value: bytes | None
    policy: ReleasePolicy | None
    missing: str | None = None  # why there is nothing to release

    def __repr__(self) -> str:  # never a value, even in a traceback
        return f"Released({self.name!r}, version={self.version}, missing={self.missing!r})"


class SecretStore:
    """The secret tables in the Steward's database, and the master key that opens them."""

    def __init__(
        self, db: Database, directory: Path, *, clock: Callable[[], float] | None = None
    ) -> None:
        import time

        self.db = db
        self.key_path = directory / KEY_FILE
        self._clock = clock or time.time
        self._key: MasterKey | None = None

    def _now(self) -> str:
        return datetime.fromtimestamp(self._clock(), UTC).isoformat(timespec="seconds")

    # -- the master key ---------------------------------------------------------------------

    def master_key(self, *, create: bool = False) -> MasterKey:
        if self._key is None:
            key = load_master_key(self.key_path)
            if key is None and create:
                key = create_key_file(self.key_path)
            if key is None:
                raise SecretKeyError(
                    f"{self.key_path}: no master key (and MOTTE_STEWARD_SECRETS_KEY is not set)",
                    hint="copy secrets.key from the Steward that sealed the secrets (mode 0600)",
                )
            self._key = key
        return self._key

    def _checked_key(self, tx: Tx, *, create: bool = False) -> MasterKey:
        """The master key, after checking it is the one the store's values are sealed under
        (recording it when the store has none yet and ``create``)."""
        key = self.master_key(create=create)
        row = tx.one("SELECT key_id FROM secret_keyring WHERE id = 1")
        if row is None:
            if create:
                tx.execute(
                    "INSERT INTO secret_keyring (id, key_id, since) VALUES (1, ?, ?)",
                    (key.key_id, self._now()),
                )
            return key
        if row[0] == key.key_id:
            return key
        # Another replica (or an interrupted rekey) may have moved the key on: read again.
        fresh = self._pending_or_fresh(str(row[0]))
        if fresh is not None:
            self._key = fresh
            return fresh
        raise SecretKeyError(
            f"the master key from {key.source} ({key.key_id}) is not the one this Steward's "
            f"secrets are sealed under ({row[0]})",
            hint="give it the key it was given (secrets.key of the Steward that sealed them, "
            "or MOTTE_STEWARD_SECRETS_KEY); nothing was changed",
        )

    def _pending_or_fresh(self, key_id: str) -> MasterKey | None:
        """A key with ``key_id`` on disk: the key file read again (a replica given the new
        key), or the pending file an interrupted ``rekey`` left (then moved into place)."""
        if os.environ.get("MOTTE_STEWARD_SECRETS_KEY"):
            return None
        again = read_key_file(self.key_path)
        if again is not None and again.key_id == key_id:
            return again
        pending_path = self.key_path.with_name(KEY_FILE + PENDING_SUFFIX)
        pending = read_key_file(pending_path)
        if pending is not None and pending.key_id == key_id:
            os.replace(pending_path, self.key_path)
            return MasterKey(pending.key, str(self.key_path))
        return None

    # -- administration ---------------------------------------------------------------------

    def put(
        self,
        name: str,
        value: bytes,
        *,
        policy: ReleasePolicy | None,
        actor: str,
        purpose: str = "value",
    ) -> SecretInfo:
        """Create ``name`` at version 1 (or the next version, if it was removed before)."""
        check_name(name)
        check_value(value, name)
        if purpose not in PURPOSES:
            raise SecretUsageError(f"secret {name}: purpose {purpose!r}")
        now = self._now()
        with self.db.write() as tx:
            key = self._checked_key(tx, create=True)
            row = tx.one("SELECT latest, removed_at FROM secret WHERE name = ?", (name,))
            if row is not None and row[1] is None:
                raise SecretUsageError(
                    f"secret {name} exists (version {row[0]})",
                    hint=f"a new value is a new version: motte secret rotate {name}",
                )
            version = 1 if row is None else int(row[0]) + 1
            policy_text = policy.text if policy else None
            policy_sha = policy.sha256 if policy else None
            if row is None:
                tx.execute(
                    "INSERT INTO secret (name, purpose, created_at, updated_at, latest, policy, "
                    "policy_sha256) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (name, purpose, now, now, version, policy_text, policy_sha),
                )
            else:
                tx.execute(
                    "UPDATE secret SET purpose = ?, created_at = ?, updated_at = ?, "
                    "removed_at = NULL, latest = ?, policy = ?, policy_sha256 = ? WHERE name = ?",
                    (purpose, now, now, version, policy_text, policy_sha, name),
                )
            self._insert_version(tx, key, name, version, value, now)
            append_secret_audit(
                tx,
                {
                    "time": now,
                    "actor": actor,
                    "action": "put",
                    "secrets": [{"name": name, "version": version}],
                    "decision": "done",
                    "reason": f"{purpose}, {len(value)} bytes; policy "
                    + (f"sha256:{policy_sha}" if policy_sha else "none (released to nobody)"),
                },
            )
        return self.show(name)

    def rotate(self, name: str, value: bytes, *, actor: str) -> SecretInfo:
        """A new version of ``name`` holding ``value``; earlier versions stay (pinned Keeps)."""
        check_name(name)
        check_value(value, name)
        now = self._now()
        with self.db.write() as tx:
            key = self._checked_key(tx, create=True)
            row = self._live(tx, name)
            version = int(row[0]) + 1
            tx.execute(
                "UPDATE secret SET latest = ?, updated_at = ? WHERE name = ?", (version, now, name)
            )
            self._insert_version(tx, key, name, version, value, now)
            append_secret_audit(
                tx,
                {
                    "time": now,
                    "actor": actor,
                    "action": "rotate",
                    "secrets": [{"name": name, "version": version}],
                    "decision": "done",
                    "reason": f"version {version}, {len(value)} bytes",
                },
            )
        return self.show(name)

    def set_policy(self, name: str, policy: ReleasePolicy | None, *, actor: str) -> SecretInfo:
        check_name(name)
        now = self._now()
        with self.db.write() as tx:
            self._live(tx, name)
            tx.execute(
                "UPDATE secret SET policy = ?, policy_sha256 = ?, updated_at = ? WHERE name = ?",
                (policy.text if policy else None, policy.sha256 if policy else None, now, name),
            )
            append_secret_audit(
                tx,
                {
                    "time": now,
                    "actor": actor,
                    "action": "policy",
                    "secrets": [{"name": name}],
                    "decision": "done",
                    "reason": f"policy sha256:{policy.sha256}"
                    if policy
                    else "policy removed: released to nobody",
                },
            )
        return self.show(name)

    def remove(self, name: str, *, version: int | None = None, actor: str) -> int:
        """Remove ``name`` (every version: nobody gets it any more) or one version of it;
        returns how many versions were deleted."""
        check_name(name)
        now = self._now()
        with self.db.write() as tx:
            row = self._live(tx, name)
            if version is None:
                cur = tx.execute("DELETE FROM secret_version WHERE name = ?", (name,))
                tx.execute(
                    "UPDATE secret SET removed_at = ?, updated_at = ? WHERE name = ?",
                    (now, now, name),
                )
                what = "removed with every version"
            else:
                cur = tx.execute(
                    "DELETE FROM secret_version WHERE name = ? AND version = ?", (name, version)
                )
                if cur.rowcount != 1:
                    raise SecretNotFoundError(
                        f"secret {name} has no version {version} (latest {row[0]})"
                    )
                left = tx.one("SELECT count(*) FROM secret_version WHERE name = ?", (name,))
                what = f"version {version} removed"
                if left is not None and int(left[0]) == 0:
                    tx.execute(
                        "UPDATE secret SET removed_at = ?, updated_at = ? WHERE name = ?",
                        (now, now, name),
                    )
                    what += "; it was the last, so the secret is removed"
                else:
                    tx.execute("UPDATE secret SET updated_at = ? WHERE name = ?", (now, name))
            count = int(cur.rowcount)
            append_secret_audit(
                tx,
                {
                    "time": now,
                    "actor": actor,
                    "action": "rm",
                    "secrets": [{"name": name, "version": version}],
                    "decision": "done",
                    "reason": what,
                },
            )
        return count

    def rekey(self, new: MasterKey, *, actor: str) -> int:
        """Re-seal every value under ``new`` in one transaction and record it as the
        store's key; returns how many values. The caller puts ``new`` where the Steward
        reads its key (:func:`rekey_files` does it for the key file)."""
        now = self._now()
        with self.db.write() as tx:
            old = self._checked_key(tx, create=True)
            if new.key_id == old.key_id:
                raise SecretUsageError("the new master key is the current one")
            rows = tx.all("SELECT name, version, sealed FROM secret_version")
            for name, version, sealed in rows:
                value = old.open(name, int(version), bytes(sealed))
                if value is None:
                    raise SecretKeyError(
                        f"secret {name} version {version} does not open under the current "
                        "master key: the store is damaged; nothing was changed"
                    )
                tx.execute(
                    "UPDATE secret_version SET sealed = ? WHERE name = ? AND version = ?",
                    (new.seal(name, int(version), value), name, version),
                )
            # Sealed volumes' keys are sealed under the same key: re-sealed in this one
            # transaction too (motte.steward._volumes).
            from motte.steward._volume_keys import reseal_volume_keys

            volumes = reseal_volume_keys(tx, old, new)
            tx.execute(
                "UPDATE secret_keyring SET key_id = ?, since = ? WHERE id = 1", (new.key_id, now)
            )
            append_secret_audit(
                tx,
                {
                    "time": now,
                    "actor": actor,
                    "action": "rekey",
                    "secrets": [],
                    "decision": "done",
                    "reason": f"{len(rows)} value(s) and {volumes} volume key(s) re-sealed: "
                    f"{old.key_id} -> {new.key_id}",
                },
            )
        self._key = new
        return len(rows)

    def recorded_key_id(self) -> str | None:
        """The id of the key the store's values are sealed under (None: no value yet, or
        the store cannot be read now)."""
        from motte.store import StoreError

        try:
            with self.db.read() as tx:
                row = tx.one("SELECT key_id FROM secret_keyring WHERE id = 1")
        except StoreError:
            return None
        return str(row[0]) if row else None

    @staticmethod
    def _live(tx: Tx, name: str) -> tuple[Any, ...]:
        row = tx.one("SELECT latest, removed_at FROM secret WHERE name = ?", (name,))
        if row is None:
            raise SecretNotFoundError(f"no secret {name}", hint="motte secret list")
        if row[1] is not None:
            raise SecretNotFoundError(f"secret {name} was removed at {row[1]}")
        return row

    @staticmethod
    def _insert_version(
        tx: Tx, key: MasterKey, name: str, version: int, value: bytes, now: str
    ) -> None:
        tx.execute(
            "INSERT INTO secret_version (name, version, created_at, size, sealed) "
            "VALUES (?, ?, ?, ?, ?)",
            (name, version, now, len(value), key.seal(name, version, value)),
        )

    # -- reading ----------------------------------------------------------------------------

    def list(self) -> list[SecretInfo]:
        with self.db.read() as tx:
            rows = tx.all(
                "SELECT name, purpose, created_at, updated_at, latest, policy, removed_at "
                "FROM secret WHERE removed_at IS NULL ORDER BY name"
            )
            versions = tx.all(
                "SELECT name, version, created_at, size FROM secret_version ORDER BY name, version"
            )
        by_name: dict[str, list[SecretVersion]] = {}
        for n, v, c, s in versions:
            by_name.setdefault(n, []).append(SecretVersion(int(v), c, int(s)))
        return [self._info(r, by_name.get(r[0], [])) for r in rows]

    def show(self, name: str) -> SecretInfo:
        check_name(name)
        with self.db.read() as tx:
            row = tx.one(
                "SELECT name, purpose, created_at, updated_at, latest, policy, removed_at "
                "FROM secret WHERE name = ?",
                (name,),
            )
            if row is None:
                raise SecretNotFoundError(f"no secret {name}", hint="motte secret list")
            versions = tx.all(
                "SELECT version, created_at, size FROM secret_version WHERE name = ? "
                "ORDER BY version",
                (name,),
            )
        return self._info(row, [SecretVersion(int(v), c, int(s)) for v, c, s in versions])

    @staticmethod
    def _info(row: Sequence[Any], versions: list[SecretVersion]) -> SecretInfo:
        name, purpose, created, updated, latest, policy_text, removed = row
        policy = (
            parse_release_policy(policy_text, source=f"secret {name}: policy")
            if policy_text
            else None
        )
        return SecretInfo(
            name, purpose, created, updated, int(latest), tuple(versions), policy, removed
        )

    def for_release(
        self, wanted: Sequence[tuple[str, int | None]], *, open_values: bool = True
    ) -> list[Released]:
        """Each requested (name, version or None for the latest): its value and policy, or
        why there is nothing to release. Values open under the checked master key, and only
        when ``open_values`` (a request already refused needs the policies alone)."""
        out: list[Released] = []
        with self.db.read() as tx:
            key: MasterKey | None = None
            for name, version in wanted:
                row = tx.one(
                    "SELECT latest, removed_at, policy FROM secret WHERE name = ?", (name,)
                )
                if row is None:
                    out.append(Released(name, version, None, None, None, "no such secret"))
                    continue
                latest, removed, policy_text = row
                if removed is not None:
                    out.append(Released(name, version, None, None, None, f"removed at {removed}"))
                    continue
                policy = (
                    parse_release_policy(policy_text, source=f"secret {name}: policy")
                    if policy_text
                    else None
                )
                chosen = int(latest) if version is None else version
                got = tx.one(
                    "SELECT sealed FROM secret_version WHERE name = ? AND version = ?",
                    (name, chosen),
                )
                if got is None:
                    out.append(
                        Released(
                            name,
                            version,
                            chosen,
                            None,
                            policy,
                            f"no version {chosen} (removed, or never made; latest {latest})",
                        )
                    )
                    continue
                if not open_values:
                    out.append(Released(name, version, chosen, None, policy))
                    continue
                if key is None:
                    key = self._checked_key(tx)
                value = key.open(name, chosen, bytes(got[0]))
                if value is None:
                    raise SecretKeyError(
                        f"secret {name} version {chosen} does not open under the master key "
                        f"({key.key_id}): the store is damaged"
                    )
                out.append(Released(name, version, chosen, value, policy))
        return out

    def releases(
        self,
        *,
        name: str | None = None,
        decision: str | None = None,
        limit: int = 50,
        before: int | None = None,
    ) -> list[SecretAuditRecord]:
        """Release decisions (released or refused), newest first: at most ``limit`` rows with
        ``id < before``, about ``name`` if given, of ``decision`` if given. Paged by id."""
        sql = f"SELECT id, {', '.join(_AUDIT_COLUMNS)} FROM secret_audit WHERE action = ?"
        args: list[Any] = ["release"]
        if name is not None:
            sql += " AND secrets LIKE ? ESCAPE '\\'"
            args.append(_name_pattern(name))
        if decision is not None:
            sql += " AND decision = ?"
            args.append(decision)
        if before is not None:
            sql += " AND id < ?"
            args.append(before)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        with self.db.read() as tx:
            rows = tx.all(sql, args)
        return [_audit_record(values) for values in rows]

    def release_summary(self) -> list[SecretReleases]:
        """Per secret, by name: every secret the store holds and every one a Keep asked
        for, with its releases and refusals (:class:`SecretReleases`). One pass over the
        release rows' names and decisions (the values were never in the log)."""
        with self.db.read() as tx:
            stored = {r[0] for r in tx.all("SELECT name FROM secret WHERE removed_at IS NULL")}
            rows = tx.all(
                "SELECT id, time, decision, secrets FROM secret_audit WHERE action = ? ORDER BY id",
                ["release"],
            )
        acc: dict[str, dict[str, Any]] = {n: {} for n in stored}
        latest_refusal: dict[str, int] = {}
        for row_id, time, decision, secrets in rows:
            for item in json.loads(secrets):
                entry = acc.setdefault(item["name"], {})
                if decision == "released":
                    entry["released"] = entry.get("released", 0) + 1
                    entry["last_released"] = time
                else:
                    entry["refused"] = entry.get("refused", 0) + 1
                    entry["last_refused"] = time
                    latest_refusal[item["name"]] = int(row_id)
        reasons: dict[str, tuple[str, ...]] = {}
        if latest_refusal:
            ids = sorted(set(latest_refusal.values()))
            with self.db.read() as tx:
                found = tx.all(
                    f"SELECT id, {', '.join(_AUDIT_COLUMNS)} FROM secret_audit "
                    f"WHERE id IN ({', '.join('?' * len(ids))})",
                    ids,
                )
            by_id = {int(r[0]): _audit_record(r) for r in found}
            reasons = {n: tuple(refusal_reasons(by_id[i], n)) for n, i in latest_refusal.items()}
        return [
            SecretReleases(
                name,
                released=e.get("released", 0),
                refused=e.get("refused", 0),
                last_released=e.get("last_released"),
                last_refused=e.get("last_refused"),
                last_refusal=reasons.get(name, ()),
                stored=name in stored,
            )
            for name, e in sorted(acc.items())
        ]

    def audit(
        self, *, name: str | None = None, limit: int | None = None
    ) -> list[SecretAuditRecord]:
        """The newest ``limit`` rows (all when None), oldest first; about ``name`` if given."""
        sql = f"SELECT id, {', '.join(_AUDIT_COLUMNS)} FROM secret_audit"
        args: list[Any] = []
        if name is not None:
            sql += " WHERE secrets LIKE ? ESCAPE '\\'"
            args.append(_name_pattern(name))
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        with self.db.read() as tx:
            rows = tx.all(sql, args)
        return [_audit_record(values) for values in reversed(rows)]


def _name_pattern(name: str) -> str:
    """A LIKE pattern for audit rows whose ``secrets`` JSON names ``name``."""
    escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f'%"name": "{escaped}"%'


def _audit_record(values: Sequence[Any]) -> SecretAuditRecord:
    r = dict(zip(("id", *_AUDIT_COLUMNS), values, strict=True))
    r["id"] = int(r["id"])
    r["secrets"] = tuple(json.loads(r["secrets"]))
    r["rules"] = tuple(json.loads(r["rules"]))
    return SecretAuditRecord(**r)


def rekey_files(store: SecretStore, *, actor: str, new_key_file: Path | None = None) -> int:
    """Rotate the master key, crash-safe around the one transaction that re-seals:

    1. a new key is written to ``secrets.key.new`` (0600, fsynced), or to ``new_key_file``
       when the key comes from the environment;
    2. every value is re-sealed under it and the store records its id (one transaction);
    3. ``secrets.key.new`` replaces ``secrets.key``.

    A crash between 2 and 3 leaves the new key in ``secrets.key.new``; the next use of the
    store finds the store's key there and finishes step 3 itself.
    """
    from motte.fsutil import create_exclusive, fsync_dir
    from motte.steward._masterkey import new_master_key

    from_env = store.master_key().source == "MOTTE_STEWARD_SECRETS_KEY"
    if from_env and new_key_file is None:
        raise SecretUsageError(
            "the master key comes from MOTTE_STEWARD_SECRETS_KEY: say where to write the new "
            "one with --new-key-file FILE",
        )
    pending = new_key_file or store.key_path.with_name(KEY_FILE + PENDING_SUFFIX)
    new = new_master_key(str(store.key_path if new_key_file is None else new_key_file))
    if not create_exclusive(pending, key_text(new), mode=0o600):
        raise SecretUsageError(
            f"{pending} exists: a rekey was interrupted, or the file is someone else's",
            hint="run any secret command to let the Steward finish it, or remove the file if "
            "the store does not use it (motte secret list says which key it uses)",
        )
    try:
        count = store.rekey(new, actor=actor)
    except (SecretUsageError, SecretKeyError):
        os.unlink(pending)  # refused before anything was written
        raise
    except BaseException:
        # The commit may have happened (a connection lost with it): never delete a key the
        # store may now use; the next use finds it if so.
        if store.recorded_key_id() not in (new.key_id, None):
            os.unlink(pending)
        raise
    if new_key_file is None:
        os.replace(pending, store.key_path)
        fsync_dir(store.key_path.parent)
    return count
