"""The Steward's decision: a CSR with evidence in, a certificate or a refusal (and why) out.

:meth:`Steward.attest` is the whole protocol minus HTTP. For a motte CSR it checks, and
records as rules, in this order, without stopping at the first failure (an operator reading
the audit log sees everything that was wrong):

1. ``csr``            the body is a PKCS#10 CSR with exactly one evidence extension
2. ``csr-signature``  the CSR is signed by its own key (the Keep holds the private key)
3. ``csr-key``        the key is ECDSA P-256 or P-384
4. ``san``            at least one name is asked for, and every one is in ``san_allow``
5. ``nonce``          the nonce was issued here, is unexpired and unused (now it is used)
6. the evidence, by :func:`motte.attest.verify_evidence` under the Steward's policy, with
   REPORT_DATA expected to be ``bind_report_data(CSR key, workload digest, nonce)``: the
   verdict's own parse, verify and policy rules

Accepted: a certificate from the CA naming the requested SANs, with the TEE kind,
measurement, workload digest and verdict summary as extensions. Either way, one audit row.

The clock and the vendor trust anchors are parameters of the Python API only: tests use them
to replay real, expired samples and a fake AMD PKI. No flag, file or environment variable
reaches them, so a deployed Steward cannot be told to trust anything but the pinned roots.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from motte.attest import (
    Evidence,
    Policy,
    RuleResult,
    Verdict,
    bind_report_data,
    load_policy,
    verify_evidence,
)
from motte.attest.errors import EvidenceParseError
from motte.errors import MotteError
from motte.steward._asn1 import VerdictSummary, der_octets, der_utf8
from motte.steward._ca import StewardCa
from motte.steward._config import StewardConfig, StewardPaths, load_config, steward_dir
from motte.steward._csr import CsrRequest, parse_csr_request, san_general_name
from motte.steward._oids import OID_MEASUREMENT, OID_TEE_KIND, OID_VERDICT, OID_WORKLOAD_DIGEST
from motte.steward._store import NonceRefused, StewardStore, TooManyNonces
from motte.steward.errors import StewardConfigError, StewardNotInitialisedError
from motte.store import ConstraintError

if TYPE_CHECKING:
    from cryptography import x509

    from motte.attest.snp import AmdRoots
    from motte.steward._releasing import Explanation, ReleaseDecision
    from motte.steward._secrets import SecretStore

NONCE_BYTES = 32
ALLOWED_CURVES = ("secp256r1", "secp384r1")
PROBLEM_TYPES = {
    "attestation-rejected": (
        "attestation rejected",
        "The evidence, the request or the nonce did not satisfy the Steward; the reasons "
        "list every failed rule, and the audit log holds the whole verdict.",
    ),
    "malformed-request": (
        "malformed attestation request",
        "The body is not a PKCS#10 CSR carrying one motte or Enarx evidence extension.",
    ),
    "request-too-large": ("request too large", "CSRs are limited to a little over 2 MiB."),
    "unsupported-media-type": (
        "unsupported media type",
        "POST /attest takes application/pkcs10 (DER) or application/x-pem-file (PEM).",
    ),
    "too-many-nonces": (
        "too many outstanding nonces",
        "The Steward bounds how many unused nonces it remembers; use the ones you have.",
    ),
    "database-unavailable": (
        "the Steward's database is unavailable",
        "The Steward could not reach its database, so it decided nothing and recorded "
        "nothing: no nonce was used. Retry (another replica, or this one once the database "
        "answers again) with a fresh nonce.",
    ),
}


@dataclass(frozen=True, slots=True)
class NonceGrant:
    nonce: bytes
    expires_at: datetime
    lifetime: int


@dataclass(slots=True)
class Decision:
    """The outcome of one ``POST /attest``."""

    accepted: bool
    status: int
    problem: str | None
    rules: list[RuleResult] = field(default_factory=list)
    verdict: Verdict | None = None
    chain_pem: bytes | None = None
    serial: str | None = None
    not_after: datetime | None = None
    audit_id: int | None = None

    @property
    def reasons(self) -> list[str]:
        fails = [r for r in self.rules if r.outcome == "fail"]
        if self.verdict is not None:
            fails += list(self.verdict.failures)
        return [f"{r.rule}: {r.reason}" for r in fails]

    def problem_document(self) -> dict[str, Any]:
        """RFC 9457 problem details (``application/problem+json``) for a refusal."""
        assert self.problem is not None
        title, _ = PROBLEM_TYPES[self.problem]
        reasons = self.reasons
        doc: dict[str, Any] = {
            "type": f"/problems/{self.problem}",
            "title": title,
            "status": self.status,
            "detail": reasons[0] if reasons else title,
            "reasons": reasons,
            "rules": [r.to_dict() for r in self.rules],
        }
        if self.verdict is not None:
            doc["verdict"] = self.verdict.to_dict()
        if self.audit_id is not None:
            doc["audit_id"] = self.audit_id
        return doc


@dataclass(frozen=True)
class Reload:
    """What :meth:`Steward.reload` did: ``reloaded``, or ``error`` says why not."""

    reloaded: bool
    before: Policy
    after: Policy
    error: str | None


def _policy_sha256(policy: Policy) -> str:
    return policy.sha256 or hashlib.sha256(b"").hexdigest()


class Steward:
    """A Steward over its state directory. Thread-safe: the server calls it from a pool."""

    def __init__(
        self,
        root: Any = None,
        *,
        database: str | None = None,
        clock: Callable[[], float] = time.time,
        amd_roots: AmdRoots | None = None,
        intel_root: x509.Certificate | None = None,
    ) -> None:
        from motte.attest.collateral import CollateralCache

        self.paths = StewardPaths(root if root is not None else steward_dir())
        if not self.paths.config.exists():
            raise StewardNotInitialisedError(
                f"{self.paths.root}: no Steward here", hint="create one with `motte steward init`"
            )
        self.ca = StewardCa.load(self.paths)
        #: The config and policy judged with, swapped together by reload(); a request reads
        #: them once (see _one_settings), so it is judged wholly by the old or the new.
        self._settings: tuple[StewardConfig, Policy] = self._load_settings()
        self._pinned = threading.local()
        self.clock = clock
        self._amd_roots = amd_roots
        self._intel_root = intel_root
        self._cache = CollateralCache()
        self._database_flag = database
        self._secrets: SecretStore | None = None
        self.store = StewardStore(self.config.database_url(self.paths, database))
        try:
            claimed = self.store.claim_ca(
                self.ca.fingerprint, self.ca.cert_pem.decode(), now=self.now()
            )
            if claimed != self.ca.fingerprint:
                raise StewardConfigError(
                    f"{self.store.where} belongs to the Steward whose CA is {claimed[:16]}..., "
                    f"not to this one ({self.ca.fingerprint[:16]}..., {self.paths.ca_cert})",
                    hint="a replica uses a copy of that Steward's directory (ca-key.pem, "
                    "ca.pem, config.toml, policy.toml); or give this Steward its own database",
                )
        except BaseException:
            self.store.close()
            raise

    def close(self) -> None:
        self.store.close()

    # -- settings: config.toml and policy.toml, reloaded on SIGHUP -----------------------------

    @property
    def config(self) -> StewardConfig:
        return self._current()[0]

    @property
    def policy(self) -> Policy:
        return self._current()[1]

    def _current(self) -> tuple[StewardConfig, Policy]:
        return getattr(self._pinned, "settings", None) or self._settings

    @contextlib.contextmanager
    def _one_settings(self) -> Iterator[None]:
        """Within, this thread sees one (config, policy) pair, whatever a reload does."""
        self._pinned.settings = self._settings
        try:
            yield
        finally:
            del self._pinned.settings

    def _load_settings(self) -> tuple[StewardConfig, Policy]:
        config = load_config(self.paths.config)
        policy = load_policy(self.paths.policy)
        for pattern in config.san_allow:
            if not self.ca.permits(pattern):
                raise StewardConfigError(
                    f"{self.paths.config}: san_allow {pattern.text!r} is outside the CA's name "
                    "constraints, so clients would refuse its certificates",
                    hint="narrow san_allow, or create a new Steward with "
                    "`motte steward init --san-allow ...`",
                )
        return config, policy

    def record_loaded(self) -> None:
        """Say in the audit log which policy a starting server judges with."""
        policy = self.policy
        self.store.append_policy_event(
            "loaded", policy.name, _policy_sha256(policy), now=self.now(), detail=None
        )

    def reload(self) -> Reload:
        """Read config.toml and policy.toml again and judge every later request by them.

        A file that does not load, or a config naming another database, changes nothing:
        the Steward keeps judging by what it has. Either way the audit log says so."""
        _, old = self._settings
        try:
            config, policy = self._load_settings()
            before = self.config.database_url(self.paths, self._database_flag)
            after = config.database_url(self.paths, self._database_flag)
            if after != before:
                raise StewardConfigError(
                    f"{self.paths.config}: database: a running Steward keeps its database "
                    f"({before}); restart it to use {after}"
                )
        except MotteError as e:
            detail = e.message
            self.store.append_policy_event(
                "reload-refused", old.name, _policy_sha256(old), now=self.now(), detail=detail
            )
            return Reload(False, old, old, detail)
        self._settings = (config, policy)
        detail = f"was {old.name} (sha256 {_policy_sha256(old)[:16]}...)"
        self.store.append_policy_event(
            "reloaded", policy.name, _policy_sha256(policy), now=self.now(), detail=detail
        )
        return Reload(True, old, policy, None)

    # -- secrets ---------------------------------------------------------------------------

    @property
    def secrets(self) -> SecretStore:
        """The secret store in this Steward's database (docs/secrets.md)."""
        if self._secrets is None:
            from motte.steward._secrets import SecretStore

            self._secrets = SecretStore(self.store.db, self.paths.root, clock=self.clock)
        return self._secrets

    def release(self, body: bytes, *, client: str) -> ReleaseDecision:
        """``POST /secrets/release``: see :mod:`motte.steward._releasing`."""
        from motte.steward._releasing import decide_release

        with self._one_settings():  # judged wholly by the old or the new settings
            return decide_release(self, body, client=client)

    def explain(
        self,
        name: str,
        *,
        evidence: Evidence | None,
        workload_digest: str,
        statements: tuple[bytes, ...] = (),
    ) -> Explanation:
        """Why a Keep would or would not get ``name`` (``motte secret explain``)."""
        from motte.steward._releasing import explain_release

        with self._one_settings():
            return explain_release(
                self,
                name,
                evidence=evidence,
                workload_digest=workload_digest,
                statements=statements,
            )

    def __enter__(self) -> Steward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # -- nonces ------------------------------------------------------------------------------

    def new_nonce(self) -> NonceGrant | None:
        """A fresh single-use nonce; None when too many are outstanding."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        lifetime = self.config.nonce_lifetime
        try:
            expires = self.store.issue_nonce(nonce, now=self.clock(), lifetime=lifetime)
        except TooManyNonces:
            return None
        return NonceGrant(nonce, datetime.fromtimestamp(expires, UTC), lifetime)

    # -- attestation -------------------------------------------------------------------------

    def refuse_request(self, problem: str, status: int, reason: str, *, client: str) -> Decision:
        """Record and return a refusal decided before the CSR was read (size, media type)."""
        decision = Decision(
            False, status, problem, [RuleResult("parse", "request", "fail", reason)]
        )
        self._audit(decision, None, client)
        return decision

    def attest(self, body: bytes, *, client: str) -> Decision:
        with self._one_settings():
            return self._attest(body, client=client)

    def _attest(self, body: bytes, *, client: str) -> Decision:
        now = self.now()
        rules: list[RuleResult] = []
        try:
            request = parse_csr_request(body)
        except EvidenceParseError as e:
            rules.append(RuleResult("parse", "csr", "fail", e.message))
            decision = Decision(False, 400, "malformed-request", rules)
            self._audit(decision, None, client)
            return decision
        rules.append(
            RuleResult("parse", "csr", "pass", f"a PKCS#10 CSR with {request.format} evidence")
        )
        self._check_csr(request, rules)
        if request.format == "enarx":
            verdict = self._enarx(request, rules, now)
        else:
            verdict = self._motte(request, rules, now)
        accepted = verdict is not None and verdict.accepted
        accepted = accepted and not any(r.outcome == "fail" for r in rules)
        decision = Decision(
            accepted,
            200 if accepted else 403,
            None if accepted else "attestation-rejected",
            rules,
            verdict,
        )
        if accepted:
            assert verdict is not None
            self._issue(decision, request, verdict, now)
        nonce_ok = any(r.rule == "nonce" and r.outcome == "pass" for r in rules)
        consume = request.keep.nonce if request.keep is not None and nonce_ok else None
        self._audit(decision, request, client, consume=consume, now=now)
        return decision

    def _check_csr(self, request: CsrRequest, rules: list[RuleResult]) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        if request.csr.is_signature_valid:
            rules.append(RuleResult("verify", "csr-signature", "pass", "signed by its own key"))
        else:
            rules.append(
                RuleResult("verify", "csr-signature", "fail", "the CSR's signature does not verify")
            )
        key = request.csr.public_key()
        if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in ALLOWED_CURVES:
            rules.append(RuleResult("policy", "csr-key", "pass", f"ECDSA {key.curve.name}"))
        else:
            what = (
                key.curve.name if isinstance(key, ec.EllipticCurvePublicKey) else type(key).__name__
            )
            rules.append(
                RuleResult(
                    "policy", "csr-key", "fail", f"{what}: a Keep key must be ECDSA P-256 or P-384"
                )
            )
        names = request.names
        if not names and request.format == "enarx":
            return  # handled with the Enarx flow
        if not names:
            rules.append(
                RuleResult("policy", "san", "fail", "the CSR asks for no name (SubjectAltName)")
            )
            return
        refused = [
            str(n)
            for n in names
            if n.normalised is None or not self.config.allowed(n.kind, n.normalised)
        ]
        allowed = ", ".join(p.text for p in self.config.san_allow)
        if refused:
            rules.append(
                RuleResult(
                    "policy",
                    "san",
                    "fail",
                    f"{', '.join(refused)} not in san_allow ({allowed})",
                )
            )
        else:
            shown = ", ".join(str(n) for n in names)
            rules.append(RuleResult("policy", "san", "pass", f"{shown} allowed"))

    def _motte(self, request: CsrRequest, rules: list[RuleResult], now: datetime) -> Verdict:
        keep = request.keep
        assert keep is not None
        # Only a look: the nonce is consumed in the transaction that records the decision,
        # so that it is used if and only if the decision's audit row exists.
        try:
            self.store.check_nonce(keep.nonce, now=now.timestamp())
        except NonceRefused as e:
            rules.append(RuleResult("verify", "nonce", "fail", e.reason))
        else:
            rules.append(RuleResult("verify", "nonce", "pass", "issued here, unexpired, unused"))
        expected = bind_report_data(request.spki, keep.workload_digest, keep.nonce)
        return verify_evidence(
            Evidence(keep.kind, keep.evidence, keep.certs),
            kind=keep.kind,
            policy=self.policy,
            now=now,
            report_data=expected,
            cache=self._cache,
            online=self.config.online_collateral,
            amd_roots=self._amd_roots,
            intel_root=self._intel_root,
        )

    def _enarx(self, request: CsrRequest, rules: list[RuleResult], now: datetime) -> Verdict | None:
        if not self.config.unsafe_allow_unbound_enarx_csrs:
            rules.append(
                RuleResult(
                    "policy",
                    "enarx-csr",
                    "fail",
                    "Enarx CSRs bind neither a workload nor a nonce (they can be replayed); "
                    "the Steward config does not set unsafe_allow_unbound_enarx_csrs",
                )
            )
            return None
        rules.append(
            RuleResult(
                "policy",
                "enarx-csr",
                "pass",
                "UNBOUND: unsafe_allow_unbound_enarx_csrs is set; the certificate will name no "
                "workload",
            )
        )
        if not request.names:
            exact = [p.text for p in self.config.san_allow if p.kind != "wildcard"]
            rules.append(
                RuleResult(
                    "policy",
                    "san",
                    "pass" if exact else "fail",
                    f"no name asked for: issuing for san_allow's exact names ({', '.join(exact)})"
                    if exact
                    else "no name asked for, and san_allow has no exact name to issue for",
                )
            )
        return verify_evidence(
            request.der,
            kind="enarx",
            policy=self.policy,
            now=now,
            cache=self._cache,
            online=self.config.online_collateral,
            amd_roots=self._amd_roots,
            intel_root=self._intel_root,
        )

    def _issue(
        self, decision: Decision, request: CsrRequest, verdict: Verdict, now: datetime
    ) -> None:
        from cryptography.hazmat.primitives import serialization

        if request.names:
            sans = [san_general_name(n.normalised or n.value) for n in request.names]
        else:
            sans = [san_general_name(p.text) for p in self.config.san_allow if p.kind != "wildcard"]
        evidence = request.keep.evidence if request.keep is not None else request.der
        summary = VerdictSummary(
            policy_name=self.policy.name,
            policy_sha256=bytes.fromhex(_policy_sha256(self.policy)),
            verified_at=now,
            evidence_sha256=hashlib.sha256(evidence).digest(),
        )
        extensions: list[tuple[str, bytes]] = [(OID_TEE_KIND, der_utf8(str(verdict.kind)))]
        if verdict.measurement:
            extensions.append((OID_MEASUREMENT, der_octets(bytes.fromhex(verdict.measurement))))
        if request.keep is not None:
            extensions.append((OID_WORKLOAD_DIGEST, der_utf8(request.keep.workload_digest)))
        extensions.append((OID_VERDICT, summary.to_der()))
        cert = self.ca.issue(
            request.csr.public_key(),  # type: ignore[arg-type]
            sans,
            extensions,
            lifetime=self.config.certificate_lifetime,
            now=now,
        )
        decision.chain_pem = cert.public_bytes(serialization.Encoding.PEM) + self.ca.cert_pem
        decision.serial = f"{cert.serial_number:x}"
        decision.not_after = cert.not_valid_after_utc

    def _audit(
        self,
        decision: Decision,
        request: CsrRequest | None,
        client: str,
        *,
        consume: bytes | None = None,
        now: datetime | None = None,
    ) -> None:
        """Record the decision: consume its nonce and append its audit row, in one
        transaction. A nonce another request consumed meanwhile (at this replica or another)
        turns the decision into a refusal, and the certificate made for it is dropped."""
        for attempt in range(3):
            try:
                with self.store.decision() as record:
                    if consume is not None:
                        assert now is not None
                        reason = record.consume_nonce(consume, now=now.timestamp())
                        if reason is not None:
                            self._lost_nonce(decision, reason)
                    decision.audit_id = record.append_audit(
                        self._audit_row(decision, request, client)
                    )
                return
            except ConstraintError:
                # Only an issued serial is unique among rows a decision may add: 159 random
                # bits met an earlier certificate's. Nothing was recorded; issue afresh.
                if decision.serial is None or decision.verdict is None or attempt == 2:
                    raise
                assert request is not None and now is not None
                self._issue(decision, request, decision.verdict, now)

    @staticmethod
    def _lost_nonce(decision: Decision, reason: str) -> None:
        decision.rules = [
            RuleResult("verify", "nonce", "fail", reason) if r.rule == "nonce" else r
            for r in decision.rules
        ]
        if decision.accepted:
            decision.accepted = False
            decision.status = 403
            decision.problem = "attestation-rejected"
            decision.chain_pem = decision.serial = decision.not_after = None

    def _audit_row(
        self, decision: Decision, request: CsrRequest | None, client: str
    ) -> dict[str, Any]:
        verdict = decision.verdict
        keep = request.keep if request is not None else None
        evidence = keep.evidence if keep is not None else (request.der if request else None)
        reasons = decision.reasons
        return {
            "time": self.now().isoformat(timespec="seconds"),
            "client": client,
            "decision": "accepted" if decision.accepted else "rejected",
            "reason": reasons[0] if reasons else None,
            "format": request.format if request is not None else None,
            "kind": verdict.kind if verdict is not None else (keep.kind if keep else None),
            "measurement": verdict.measurement if verdict is not None else None,
            "workload_digest": keep.workload_digest if keep is not None else None,
            "csr_key_sha256": hashlib.sha256(request.spki).hexdigest() if request else None,
            "evidence_sha256": hashlib.sha256(evidence).hexdigest() if evidence else None,
            "sans": [str(n) for n in request.names] if request is not None else [],
            "serial": decision.serial,
            "not_after": decision.not_after.isoformat() if decision.not_after else None,
            "rules": [r.to_dict() for r in decision.rules],
            "verdict": verdict.to_dict() if verdict is not None else None,
        }
