"""The Steward's release decision: a release request in, sealed values or every reason out.

:func:`decide_release` is ``POST /secrets/release`` minus HTTP. It records, as rules, in this
order and without stopping at the first failure:

1. ``request``            the body is a release request (motte.steward._release)
2. ``release-key``        the release key is an EC P-256 SubjectPublicKeyInfo
3. ``nonce``              issued here, unexpired, unused (it is consumed with the audit row)
4. the evidence, by :func:`motte.attest.verify_evidence` under the Steward's attestation
   policy with REPORT_DATA = ``release_report_data(release key, workload digest, nonce)``:
   evidence bound to another key, another workload or another nonce fails here
5. per secret: ``secret`` (it exists, the version asked for exists) and its release policy's
   rules (motte.steward._release_policy), each reason prefixed with the secret's name

Released only if every rule passed; then each value is sealed to the release key (HPKE).
One row of the secrets' audit log either way, in the transaction that consumes the nonce.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from motte.attest import RuleResult, Verdict, verify_evidence
from motte.steward._release import (
    ReleaseFormatError,
    ReleaseRequest,
    SealedSecret,
    answer_document,
    release_info,
    release_report_data,
    seal,
)
from motte.steward._release_policy import KeepFacts, evaluate
from motte.steward._secrets import append_secret_audit
from motte.steward._store import NonceRefused

if TYPE_CHECKING:
    from motte.steward._service import Steward

RELEASE_PROBLEMS = {
    "release-refused": (
        "secret release refused",
        "The evidence, the nonce or a secret's release policy did not allow this release; "
        "the reasons list every failed rule, and the Steward's secret audit log holds them.",
    ),
    "malformed-release-request": (
        "malformed release request",
        "The body is not a version 1 release request (docs/secrets.md).",
    ),
}


@dataclass(slots=True)
class ReleaseDecision:
    released: bool
    status: int
    problem: str | None
    rules: list[RuleResult] = field(default_factory=list)
    verdict: Verdict | None = None
    #: (secret name, its rules)
    secrets: list[tuple[str, list[RuleResult]]] = field(default_factory=list)
    sealed: list[SealedSecret] = field(default_factory=list, repr=False)
    audit_id: int | None = None

    @property
    def reasons(self) -> list[str]:
        out = [f"{r.rule}: {r.reason}" for r in self.rules if r.outcome == "fail"]
        if self.verdict is not None:
            out += [f"{r.rule}: {r.reason}" for r in self.verdict.failures]
        for name, rules in self.secrets:
            out += [f"{name}: {r.rule}: {r.reason}" for r in rules if r.outcome == "fail"]
        return out

    def all_rules(self) -> list[dict[str, Any]]:
        out = [r.to_dict() for r in self.rules]
        if self.verdict is not None:
            out += [r.to_dict() for r in self.verdict.rules]
        for name, rules in self.secrets:
            out += [{**r.to_dict(), "secret": name} for r in rules]
        return out

    def problem_document(self) -> dict[str, Any]:
        assert self.problem is not None
        title, _ = RELEASE_PROBLEMS[self.problem]
        reasons = self.reasons
        doc: dict[str, Any] = {
            "type": f"/problems/{self.problem}",
            "title": title,
            "status": self.status,
            "detail": reasons[0] if reasons else title,
            "reasons": reasons,
            "rules": self.all_rules(),
        }
        if self.audit_id is not None:
            doc["audit_id"] = self.audit_id
        return doc

    def answer(self) -> dict[str, Any]:
        return answer_document(self.sealed, self.audit_id)


def _release_key(spki: bytes) -> tuple[Any, RuleResult]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        key = serialization.load_der_public_key(spki)
    except (ValueError, TypeError):
        key = None
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1":
        return key, RuleResult("parse", "release-key", "pass", "EC P-256")
    return None, RuleResult(
        "parse", "release-key", "fail", "not an EC P-256 SubjectPublicKeyInfo (HPKE DHKEM P-256)"
    )


def decide_release(steward: Steward, body: bytes, *, client: str) -> ReleaseDecision:
    now = steward.now()
    try:
        request = ReleaseRequest.from_bytes(body)
    except ReleaseFormatError as e:
        decision = ReleaseDecision(
            False,
            400,
            "malformed-release-request",
            [RuleResult("parse", "request", "fail", str(e))],
        )
        _record(steward, decision, None, client, now, nonce_ok=False)
        return decision
    rules = [RuleResult("parse", "request", "pass", "a version 1 release request")]
    public_key, key_rule = _release_key(request.release_key)
    rules.append(key_rule)
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
    so_far = (
        verdict is not None and verdict.accepted and not any(r.outcome == "fail" for r in rules)
    )
    found = steward.secrets.for_release(
        [(w.name, w.version) for w in request.secrets], open_values=so_far
    )
    facts = KeepFacts(
        verdict.kind if verdict is not None else request.evidence.kind,
        request.workload_digest,
        steward.policy.ref(),
        request.statements,
    )
    per_secret: list[tuple[str, list[RuleResult]]] = []
    for item in found:
        if item.missing is not None:
            per_secret.append((item.name, [RuleResult("policy", "secret", "fail", item.missing)]))
            continue
        shown = f"version {item.version}" + (" (latest)" if item.requested is None else "")
        per_secret.append(
            (
                item.name,
                [
                    RuleResult("policy", "secret", "pass", shown),
                    *evaluate(item.policy, facts, now=now),
                ],
            )
        )
    ok = so_far and not any(r.outcome == "fail" for _, rs in per_secret for r in rs)
    decision = ReleaseDecision(
        ok, 200 if ok else 403, None if ok else "release-refused", rules, verdict, per_secret
    )
    if ok:
        for item in found:
            assert item.value is not None and item.version is not None
            info = release_info(item.name, item.version, request.workload_digest, request.nonce)
            decision.sealed.append(
                SealedSecret(item.name, item.version, seal(public_key, item.value, info))
            )
    nonce_ok = any(r.rule == "nonce" and r.outcome == "pass" for r in rules)
    _record(steward, decision, request, client, now, nonce_ok=nonce_ok)
    return decision


def _record(
    steward: Steward,
    decision: ReleaseDecision,
    request: ReleaseRequest | None,
    client: str,
    now: datetime,
    *,
    nonce_ok: bool,
) -> None:
    """Consume the nonce and append the audit row in one transaction; a nonce another
    request consumed meanwhile turns a release into a refusal (nothing sealed leaves)."""
    with steward.store.decision() as record:
        if nonce_ok and request is not None:
            reason = record.consume_nonce(request.nonce, now=now.timestamp())
            if reason is not None:
                decision.rules = [
                    RuleResult("verify", "nonce", "fail", reason) if r.rule == "nonce" else r
                    for r in decision.rules
                ]
                decision.released = False
                decision.status = 403
                decision.problem = "release-refused"
                decision.sealed = []
        verdict = decision.verdict
        reasons = decision.reasons
        versions = {s.name: s.version for s in decision.sealed}
        decision.audit_id = append_secret_audit(
            record.tx,
            {
                "time": now.isoformat(timespec="seconds"),
                "actor": client,
                "action": "release",
                "secrets": [
                    {"name": w.name, "version": w.version, "released": versions.get(w.name)}
                    for w in (request.secrets if request is not None else ())
                ],
                "decision": "released" if decision.released else "refused",
                "reason": reasons[0] if reasons else None,
                "workload_digest": request.workload_digest if request else None,
                "kind": verdict.kind if verdict is not None else None,
                "measurement": verdict.measurement if verdict is not None else None,
                "evidence_sha256": hashlib.sha256(request.evidence.raw).hexdigest()
                if request
                else None,
                "release_key_sha256": hashlib.sha256(request.release_key).hexdigest()
                if request
                else None,
                "rules": decision.all_rules(),
            },
            consumed=record.consumed,
        )


@dataclass(slots=True)
class Explanation:
    """Why a Keep with this evidence and workload would or would not get a secret."""

    name: str
    would_release: bool
    verdict: Verdict | None
    rules: list[RuleResult]

    def to_dict(self) -> dict[str, Any]:
        return {
            "secret": self.name,
            "would_release": self.would_release,
            "evidence": self.verdict.to_dict() if self.verdict is not None else None,
            "rules": [r.to_dict() for r in self.rules],
        }


def explain_release(
    steward: Steward,
    name: str,
    *,
    evidence: Any,
    workload_digest: str,
    statements: tuple[bytes, ...] = (),
) -> Explanation:
    """Judge ``evidence`` (a :class:`motte.attest.Evidence`, or None) and ``name``'s policy
    for a Keep running ``workload_digest``, rule by rule. Offline and read-only: no nonce
    is used or checked, so the binding to a release key is not judged (a real release also
    needs fresh evidence bound to its key and a nonce)."""
    from motte.steward._secrets import check_name

    check_name(name)
    now = steward.now()
    rules: list[RuleResult] = [
        RuleResult(
            "verify",
            "binding",
            "skip",
            "not judged here: a release also needs fresh evidence binding its release key, "
            "the workload digest and a Steward nonce",
        )
    ]
    verdict = None
    if evidence is not None:
        verdict = verify_evidence(
            evidence,
            kind=evidence.kind,
            policy=steward.policy,
            now=now,
            cache=steward._cache,
            online=steward.config.online_collateral,
            amd_roots=steward._amd_roots,
            intel_root=steward._intel_root,
        )
        rules += [r for r in verdict.rules if r.rule != "report-data"]
    else:
        rules.append(RuleResult("verify", "evidence", "fail", "no evidence given"))
    (item,) = steward.secrets.for_release([(name, None)], open_values=False)
    if item.missing is not None:
        rules.append(RuleResult("policy", "secret", "fail", item.missing))
    else:
        rules.append(RuleResult("policy", "secret", "pass", f"version {item.version} (latest)"))
        facts = KeepFacts(
            verdict.kind if verdict is not None else None,
            workload_digest,
            steward.policy.ref(),
            statements,
        )
        rules += evaluate(item.policy, facts, now=now)
    ok = not any(r.outcome == "fail" for r in rules)
    return Explanation(name, ok, verdict, rules)
