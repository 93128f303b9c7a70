"""The Steward's side of sealed volumes: volume keys, the monotonic counter, and releases.

Tables (migration 6 of the Steward's schema, motte.steward._store; SQLite or the
PostgreSQL replicas share)::

    volume   id ("acme/counter:data" or "sha256:...:data"), sealed_to, scope, name,
             the volume key sealed under the master key (motte.steward._masterkey, as
             "volume:<id>" version 1), created/updated times, and the counter: the latest
             snapshot version recorded, its random id, its size and when it was recorded

A volume's row is made by the first release that passes every rule (a fresh random key,
version 0: no snapshot yet). Every counter change is one transaction: a release that finds
the snapshot one version ahead of the record (the Keep stopped after writing it and before
committing it) records it in the transaction that consumes the nonce; a commit moves the
record from ``from`` to ``to`` only if it still is ``from``; an operator's
``accept-rollback`` sets it to any version, with an audit row naming both.

Releases, refusals, refused commits and accepted rollbacks are rows of the secrets' audit
log (``motte secret audit``), never a key. Which TEE kinds and attestation policy may have
volume keys is the **volume policy**, ``volumes.toml`` in the Steward's directory (absent:
the hardware TEEs, any policy, never sim)::

    allowed_kinds = ["snp", "tdx"]
    attestation_policy = "prod-2026"
    allow_insecure_sim = false        # the software keep protects nothing
"""

from __future__ import annotations

import secrets as _random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from motte.attest import RuleResult, Verdict, verify_evidence
from motte.steward._release import ReleaseFormatError, release_report_data, seal
from motte.steward._release_policy import (
    HARDWARE_KINDS,
    KINDS,
    KeepFacts,
    ReleasePolicy,
    _judged_by,
    _kind,
    _signed_as,
)
from motte.steward._releasing import ReleaseDecision, _release_key
from motte.steward._secrets import append_secret_audit
from motte.steward._volume_keys import KEY_NAME as _KEY_NAME
from motte.steward._volume_wire import (
    KEY_BYTES,
    SUITE_NOTE,
    CommitRequest,
    SealedVolumeKey,
    VolumeReleaseRequest,
    WantedVolume,
    counter_key,
    volume_info,
)
from motte.steward.errors import SecretKeyError, SecretNotFoundError, SecretUsageError
from motte.store import Database, Tx

if TYPE_CHECKING:
    from motte.steward._masterkey import MasterKey
    from motte.steward._service import Steward

POLICY_FILE = "volumes.toml"
MAX_POLICY_BYTES = 64 * 1024


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


# -- the volume policy ------------------------------------------------------------------------


def load_volume_policy(directory: Path) -> ReleasePolicy:
    """The Steward's volume policy (``volumes.toml``), or the default: hardware TEEs only.

    Returned as a :class:`ReleasePolicy` without workload entries: the workload rule of a
    volume is its own identity (its ``sealed_to``), judged by :func:`_identity_rule`."""
    from motte._toml import parse_table, read_text
    from motte.steward.errors import ReleasePolicyError

    path = directory / POLICY_FILE
    if not path.exists():
        return ReleasePolicy((), (), HARDWARE_KINDS, None, False, "")
    text = read_text(
        path, what="volume policy", max_bytes=MAX_POLICY_BYTES, error=ReleasePolicyError
    )
    top = parse_table(text, source=str(path), error=ReleasePolicyError)
    allow_sim = top.bool("allow_insecure_sim", False)
    kinds = top.str_list("allowed_kinds") if top.has("allowed_kinds") else HARDWARE_KINDS
    if not kinds:
        raise top.fail("allowed_kinds", "is empty: no Keep could ever open a volume")
    for k in kinds:
        if k not in KINDS:
            raise top.fail("allowed_kinds", f"{k!r} is not one of {', '.join(KINDS)}")
    if "sim" in kinds and not allow_sim:
        raise top.fail(
            "allowed_kinds", "sim protects nothing; list it only with allow_insecure_sim = true"
        )
    if allow_sim and "sim" not in kinds:
        kinds = (*kinds, "sim")
    attestation_policy = top.str("attestation_policy")
    top.done()
    return ReleasePolicy((), (), tuple(kinds), attestation_policy, allow_sim, text)


# -- the counters, for operators --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VolumeRecord:
    """What the Steward records of a volume: never its key."""

    id: str
    sealed_to: str
    scope: str
    name: str
    created_at: str
    updated_at: str
    latest: int
    snapshot_id: str | None
    size: int | None
    snapshot_at: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "volume": self.id,
            "sealed_to": self.sealed_to,
            "scope": self.scope,
            "name": self.name,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "latest": self.latest,
            "snapshot_id": self.snapshot_id,
            "size": self.size,
            "snapshot_at": self.snapshot_at,
        }


_RECORD_COLUMNS = (
    "id, sealed_to, scope, name, created_at, updated_at, latest, snapshot_id, size, snapshot_at"
)


def _record(row: Any) -> VolumeRecord:
    (vid, sealed_to, scope, name, created, updated, latest, sid, size, at) = row
    return VolumeRecord(
        vid,
        sealed_to,
        scope,
        name,
        created,
        updated,
        int(latest),
        sid,
        None if size is None else int(size),
        at,
    )


class VolumeCounters:
    """The ``volume`` table: list, show, and the operator's accepted rollback."""

    def __init__(self, db: Database, *, clock: Callable[[], float] | None = None) -> None:
        import time

        self.db = db
        self._clock = clock or time.time

    def list(self) -> list[VolumeRecord]:
        with self.db.read() as tx:
            rows = tx.all(f"SELECT {_RECORD_COLUMNS} FROM volume ORDER BY id")
        return [_record(r) for r in rows]

    def show(self, volume: str) -> VolumeRecord:
        with self.db.read() as tx:
            row = tx.one(f"SELECT {_RECORD_COLUMNS} FROM volume WHERE id = ?", (volume,))
        if row is None:
            raise SecretNotFoundError(
                f"the Steward knows no volume {volume}",
                hint="motte volume list --counters lists the volumes it knows",
            )
        return _record(row)

    def accept_rollback(
        self, volume: str, version: int, *, actor: str, reason: str
    ) -> VolumeRecord:
        """Record ``version`` as the latest snapshot of ``volume`` (disaster recovery: an
        older snapshot restored on purpose), any snapshot id of that version; audited."""
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise SecretUsageError(f"--version {version!r}: a whole number from 0")
        if not reason.strip():
            raise SecretUsageError("say why (--reason TEXT): the audit log keeps it")
        now = _iso(self._clock())
        with self.db.write() as tx:
            row = tx.one("SELECT latest, snapshot_id FROM volume WHERE id = ?", (volume,))
            if row is None:
                raise SecretNotFoundError(
                    f"the Steward knows no volume {volume}",
                    hint="motte volume list --counters lists the volumes it knows",
                )
            old = int(row[0])
            tx.execute(
                "UPDATE volume SET latest = ?, snapshot_id = NULL, size = NULL, snapshot_at = ?, "
                "updated_at = ? WHERE id = ?",
                (version, now, now, volume),
            )
            append_secret_audit(
                tx,
                {
                    "time": now,
                    "actor": actor,
                    "action": "volume-accept-rollback",
                    "secrets": [{"name": _KEY_NAME + volume, "version": version}],
                    "decision": "done",
                    "reason": f"version {old} -> {version} accepted: {reason.strip()}",
                },
            )
        return self.show(volume)


# -- release ---------------------------------------------------------------------------------


@dataclass(slots=True)
class VolumeReleaseDecision(ReleaseDecision):
    keys: list[SealedVolumeKey] = field(default_factory=list, repr=False)

    def answer(self) -> dict[str, Any]:
        return {
            "version": 1,
            "audit_id": self.audit_id,
            "suite": SUITE_NOTE,
            "volumes": [k.to_dict() for k in self.keys],
        }


def _identity_rule(wanted: WantedVolume, facts: KeepFacts, now: datetime) -> RuleResult:
    ident = wanted.identity
    if ident.sealed_to == "digest":
        if ident.scope == facts.workload_digest:
            return RuleResult("policy", "volume-identity", "pass", f"sealed to {ident.scope}")
        return RuleResult(
            "policy",
            "volume-identity",
            "fail",
            f"sealed to {ident.scope}; this Keep runs {facts.workload_digest}",
        )
    ok, reason = _signed_as(ident.scope, facts.workload_digest, facts.statements, now, None)
    return RuleResult("policy", "volume-identity", "pass" if ok else "fail", reason)


def _counter_rule(wanted: WantedVolume, row: Any) -> RuleResult:
    """The snapshot offered against the version recorded (the rollback check)."""
    latest, recorded_id = (0, None) if row is None else (int(row[0]), row[1])
    snap = wanted.snapshot
    if snap is None:
        if latest == 0:
            return RuleResult("policy", "counter", "pass", "no snapshot yet: a new volume")
        return RuleResult(
            "policy",
            "counter",
            "fail",
            f"the host offers no snapshot, and the Steward recorded version {latest}: the "
            "snapshot was deleted or withheld (motte volume accept-rollback to start afresh)",
        )
    v = snap.version
    if v == latest:
        if recorded_id is None or recorded_id == snap.id:
            return RuleResult("policy", "counter", "pass", f"version {v}, the latest recorded")
        return RuleResult(
            "policy",
            "counter",
            "fail",
            f"snapshot version {v} (id {snap.id[:12]}) is not the version {latest} the "
            f"Steward recorded (id {recorded_id[:12]}): another snapshot of the same version",
        )
    if v == latest + 1:
        return RuleResult(
            "policy",
            "counter",
            "pass",
            f"version {v}, one after the recorded {latest}: written, not yet committed "
            "(recorded now)",
        )
    if v < latest:
        return RuleResult(
            "policy",
            "counter",
            "fail",
            f"snapshot version {v} is older than version {latest}, the latest the Steward "
            "recorded: a rolled-back snapshot",
        )
    return RuleResult(
        "policy",
        "counter",
        "fail",
        f"snapshot version {v} is newer than any the Steward recorded ({latest}): not "
        "written by a Keep this Steward knows, or the Steward's database was restored",
    )


def _refuse_all(decision: ReleaseDecision) -> None:
    decision.released = False
    decision.status = 403
    decision.problem = "release-refused"


def decide_volume_release(steward: Steward, body: bytes, *, client: str) -> VolumeReleaseDecision:
    """``POST /volumes/release`` minus HTTP: every rule, and the keys if all pass."""
    now = steward.now()
    try:
        request = VolumeReleaseRequest.from_bytes(body)
    except ReleaseFormatError as e:
        decision = VolumeReleaseDecision(
            False,
            400,
            "malformed-release-request",
            [RuleResult("parse", "request", "fail", str(e))],
        )
        _audit_only(steward, decision, client, now)
        return decision
    rules = [RuleResult("parse", "request", "pass", "a version 1 volume release request")]
    public_key, key_rule = _release_key(request.release_key)
    rules.append(key_rule)
    from motte.steward._store import NonceRefused

    try:
        steward.store.check_nonce(request.nonce, now=now.timestamp())
    except NonceRefused as e:
        rules.append(RuleResult("verify", "nonce", "fail", e.reason))
    else:
        rules.append(RuleResult("verify", "nonce", "pass", "issued here, unexpired, unused"))
    verdict: Verdict | None = None
    if public_key is not None:
        verdict = verify_evidence(
            request.evidence,
            kind=request.evidence.kind,
            policy=steward.policy,
            now=now,
            report_data=release_report_data(
                request.release_key, request.workload_digest, request.nonce
            ),
            cache=steward._cache,
            online=steward.config.online_collateral,
            amd_roots=steward._amd_roots,
            intel_root=steward._intel_root,
        )
    try:
        policy: ReleasePolicy | None = load_volume_policy(steward.paths.root)
        policy_rule = None
    except Exception as e:  # a MotteError naming the file and line
        policy = None
        policy_rule = RuleResult("policy", "volume-policy", "fail", str(e))
    facts = KeepFacts(
        verdict.kind if verdict is not None else request.evidence.kind,
        request.workload_digest,
        steward.policy.ref(),
        request.statements,
    )
    per_volume: list[tuple[str, list[RuleResult]]] = []
    for wanted in request.volumes:
        vrules = [_identity_rule(wanted, facts, now)]
        if policy is not None:
            vrules += [_kind(policy, facts), _judged_by(policy, facts)]
        else:
            assert policy_rule is not None
            vrules.append(policy_rule)
        per_volume.append((str(wanted.identity), vrules))
    decision = VolumeReleaseDecision(False, 403, "release-refused", rules, verdict, per_volume)
    nonce_ok = any(r.rule == "nonce" and r.outcome == "pass" for r in rules)
    with steward.store.decision() as record:
        tx = record.tx
        rows = {
            str(w.identity): tx.one(
                "SELECT latest, snapshot_id, sealed_key FROM volume WHERE id = ?",
                (str(w.identity),),
            )
            for w in request.volumes
        }
        for (vid, vrules), wanted in zip(decision.secrets, request.volumes, strict=True):
            vrules.append(_counter_rule(wanted, rows[vid]))
        so_far = (
            verdict is not None
            and verdict.accepted
            and not any(r.outcome == "fail" for r in decision.rules)
            and not any(r.outcome == "fail" for _, rs in decision.secrets for r in rs)
        )
        if nonce_ok:
            reason = record.consume_nonce(request.nonce, now=now.timestamp())
            if reason is not None:
                decision.rules = [
                    RuleResult("verify", "nonce", "fail", reason) if r.rule == "nonce" else r
                    for r in decision.rules
                ]
                so_far = False
        if so_far:
            master = steward.secrets._checked_key(tx, create=True)
            stamp = now.isoformat(timespec="seconds")
            for wanted in request.volumes:
                vid = str(wanted.identity)
                key, latest = _key_and_version(tx, master, wanted, rows[vid], stamp)
                info = volume_info(vid, latest, request.workload_digest, request.nonce)
                decision.keys.append(SealedVolumeKey(vid, latest, seal(public_key, key, info)))
            decision.released, decision.status, decision.problem = True, 200, None
        else:
            _refuse_all(decision)
        reasons = decision.reasons
        decision.audit_id = append_secret_audit(
            tx,
            {
                "time": now.isoformat(timespec="seconds"),
                "actor": client,
                "action": "volume-release",
                "secrets": [
                    {
                        "name": _KEY_NAME + str(w.identity),
                        "version": w.snapshot.version if w.snapshot else 0,
                        "released": decision.released,
                    }
                    for w in request.volumes
                ],
                "decision": "released" if decision.released else "refused",
                "reason": reasons[0] if reasons else None,
                "workload_digest": request.workload_digest,
                "kind": verdict.kind if verdict is not None else None,
                "measurement": verdict.measurement if verdict is not None else None,
                "evidence_sha256": _sha256(request.evidence.raw),
                "release_key_sha256": _sha256(request.release_key),
                "rules": decision.all_rules(),
            },
            consumed=record.consumed,
        )
    return decision


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _key_and_version(
    tx: Tx, master: MasterKey, wanted: WantedVolume, row: Any, stamp: str
) -> tuple[bytes, int]:
    """The volume's key (made now for a new volume) and its recorded version, moved one
    ahead when the snapshot offered is the one after the record."""
    vid = str(wanted.identity)
    if row is None:
        key = _random.token_bytes(KEY_BYTES)
        ident = wanted.identity
        tx.execute(
            "INSERT INTO volume (id, sealed_to, scope, name, sealed_key, created_at, "
            "updated_at, latest) VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
            (
                vid,
                ident.sealed_to,
                ident.scope,
                ident.name,
                master.seal(_KEY_NAME + vid, 1, key),
                stamp,
                stamp,
            ),
        )
        latest = 0
    else:
        opened = master.open(_KEY_NAME + vid, 1, bytes(row[2]))
        if opened is None:
            raise SecretKeyError(
                f"the key of volume {vid} does not open under the master key: the store is damaged"
            )
        key, latest = opened, int(row[0])
    snap = wanted.snapshot
    if snap is not None and snap.version == latest + 1:
        tx.execute(
            "UPDATE volume SET latest = ?, snapshot_id = ?, snapshot_at = ?, updated_at = ? "
            "WHERE id = ?",
            (snap.version, snap.id, stamp, stamp, vid),
        )
        latest = snap.version
    return key, latest


def _audit_only(steward: Steward, decision: ReleaseDecision, client: str, now: datetime) -> None:
    with steward.store.decision() as record:
        decision.audit_id = append_secret_audit(
            record.tx,
            {
                "time": now.isoformat(timespec="seconds"),
                "actor": client,
                "action": "volume-release",
                "secrets": [],
                "decision": "refused",
                "reason": decision.reasons[0] if decision.reasons else None,
                "rules": decision.all_rules(),
            },
        )


# -- commit ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommitOutcome:
    ok: bool
    status: int
    detail: str
    latest: int | None = None


def decide_volume_commit(steward: Steward, body: bytes, *, client: str) -> CommitOutcome:
    """``POST /volumes/commit`` minus HTTP: record snapshot ``to`` if the record is still
    ``from`` and the MAC proves the Keep holds the volume key. One transaction."""
    try:
        request = CommitRequest.from_bytes(body)
    except ReleaseFormatError as e:
        return CommitOutcome(False, 400, f"malformed commit: {e}")
    vid = str(request.volume)
    now = steward.now().isoformat(timespec="seconds")
    with steward.store.db.write() as tx:
        row = tx.one("SELECT latest, snapshot_id, sealed_key FROM volume WHERE id = ?", (vid,))
        if row is None:
            return CommitOutcome(False, 404, f"the Steward knows no volume {vid}")
        master = steward.secrets._checked_key(tx, create=False)
        key = master.open(_KEY_NAME + vid, 1, bytes(row[2]))
        if key is None:
            raise SecretKeyError(f"the key of volume {vid} does not open under the master key")
        latest, recorded = int(row[0]), row[1]
        if not request.verify(counter_key(key)):
            outcome = CommitOutcome(
                False,
                403,
                f"{vid}: the commit's MAC does not verify: not from a Keep holding the volume key",
                latest,
            )
        elif latest == request.old:
            tx.execute(
                "UPDATE volume SET latest = ?, snapshot_id = ?, size = ?, snapshot_at = ?, "
                "updated_at = ? WHERE id = ? AND latest = ?",
                (request.new, request.snapshot_id, request.size, now, now, vid, request.old),
            )
            return CommitOutcome(True, 200, f"{vid}: version {request.new} recorded", request.new)
        elif latest == request.new and recorded == request.snapshot_id:
            return CommitOutcome(True, 200, f"{vid}: version {request.new} was recorded", latest)
        else:
            outcome = CommitOutcome(
                False,
                409,
                f"{vid}: the Steward recorded version {latest}, not {request.old}: another "
                "Keep writes this volume, or an operator accepted a rollback",
                latest,
            )
        append_secret_audit(
            tx,
            {
                "time": now,
                "actor": client,
                "action": "volume-commit",
                "secrets": [{"name": _KEY_NAME + vid, "version": request.new}],
                "decision": "refused",
                "reason": outcome.detail,
            },
        )
    return outcome
