"""A secret's release policy: which attested Keeps may have it. Deny by default.

A TOML document, one per secret (``motte secret put NAME --policy FILE``)::

    # Who: at least one entry. A Keep's workload digest is the package digest it attested.
    digests = ["sha256:..."]      # exactly these packages
    signed = ["acme/web"]         # any package published as acme/web by the keys the
                                  # Steward's trust roots delegate the namespace to (a
                                  # signed upgrade keeps access; an unsigned one does not)
    # Where: the TEE kinds (default: snp, tdx, sgx).
    allowed_kinds = ["snp", "tdx"]
    # Judged by: the Steward's attestation policy that must have accepted the evidence,
    # by name or as sha256:<hex> of its text (default: whichever the Steward has).
    attestation_policy = "prod-2026"
    # The software keep protects nothing: it may have the secret only with this set.
    allow_insecure_sim = false

A secret without a policy is released to nobody. Unknown keys, wrong types, a policy that
names no workload, and ``sim`` in ``allowed_kinds`` without ``allow_insecure_sim`` are
errors naming the line.

:func:`evaluate` judges one Keep, rule by rule, without stopping at the first failure (an
operator reading the audit log or ``motte secret explain`` sees everything that was wrong):

``workload``            the digest is listed, or a signed entry's publishers signed it
``tee-kind``            the evidence's TEE kind is allowed (sim only with consent)
``attestation-policy``  the Steward's policy that judged the evidence is the one named

The signed rule counts DSSE publication statements (``motte sign``) the Keep sends with its
request, about exactly its digest and naming exactly that namespace/name, by distinct keys
of the namespace's trust root, up to the root's threshold. Sigstore keyless signatures and
transparency-log inclusion are not checked here (the Keep's own trust policy checks them).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from motte._digest import is_digest
from motte._toml import parse_table
from motte.attest import RuleResult
from motte.steward.errors import ReleasePolicyError

HARDWARE_KINDS = ("snp", "tdx", "sgx")
KINDS = (*HARDWARE_KINDS, "sim")
MAX_POLICY_BYTES = 64 * 1024
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*")
_POLICY_REF = re.compile(r"sha256:[0-9a-f]{64}|[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True, slots=True)
class ReleasePolicy:
    digests: tuple[str, ...]
    signed: tuple[str, ...]
    allowed_kinds: tuple[str, ...]
    attestation_policy: str | None
    allow_insecure_sim: bool
    #: The document as given: stored, shown by ``motte secret show``.
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def summary(self) -> dict[str, Any]:
        return {
            "digests": list(self.digests),
            "signed": list(self.signed),
            "allowed_kinds": list(self.allowed_kinds),
            "attestation_policy": self.attestation_policy,
            "allow_insecure_sim": self.allow_insecure_sim,
            "sha256": self.sha256,
        }


def parse_release_policy(text: str, *, source: str) -> ReleasePolicy:
    """Parse and validate; ReleasePolicyError names the source, line and key."""
    if len(text.encode("utf-8")) > MAX_POLICY_BYTES:
        raise ReleasePolicyError(f"{source}: larger than {MAX_POLICY_BYTES} bytes")
    top = parse_table(text, source=source, error=ReleasePolicyError)
    digests = top.str_list("digests")
    for i, d in enumerate(digests):
        if not is_digest(d):
            raise top.fail("digests", f"[{i}] {d!r} is not sha256:<64 hex>")
    signed = top.str_list("signed")
    for i, s in enumerate(signed):
        if not _NAME.fullmatch(s):
            raise top.fail(
                "signed", f"[{i}] {s!r} is not namespace/name (lower-case letters, digits, . _ -)"
            )
    allow_sim = top.bool("allow_insecure_sim", False)
    if top.has("allowed_kinds"):
        kinds = top.str_list("allowed_kinds")
        if not kinds:
            raise top.fail("allowed_kinds", "is empty: no TEE could ever have the secret")
        for k in kinds:
            if k not in KINDS:
                raise top.fail("allowed_kinds", f"{k!r} is not one of {', '.join(KINDS)}")
    else:
        kinds = HARDWARE_KINDS
    if "sim" in kinds and not allow_sim:
        raise top.fail(
            "allowed_kinds",
            "sim protects nothing; it may be listed only with allow_insecure_sim = true",
        )
    if allow_sim and "sim" not in kinds:
        kinds = (*kinds, "sim")
    attestation_policy = top.str("attestation_policy")
    if attestation_policy is not None and not _POLICY_REF.fullmatch(attestation_policy):
        raise top.fail("attestation_policy", "must be a policy name or sha256:<64 hex> of its text")
    top.done()
    if not digests and not signed:
        raise ReleasePolicyError(
            f"{source}: names no workload: nobody could ever have the secret",
            hint='add digests = ["sha256:..."] or signed = ["namespace/name"]',
        )
    return ReleasePolicy(
        tuple(dict.fromkeys(digests)),
        tuple(dict.fromkeys(signed)),
        tuple(dict.fromkeys(kinds)),
        attestation_policy,
        allow_sim,
        text,
    )


def load_release_policy(path: Path) -> ReleasePolicy:
    from motte._toml import read_text

    text = read_text(
        path, what="release policy", max_bytes=MAX_POLICY_BYTES, error=ReleasePolicyError
    )
    return parse_release_policy(text, source=str(path))


# -- judging one Keep -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeepFacts:
    """What the Steward verified of a Keep, as the policy needs it."""

    kind: str | None
    workload_digest: str
    #: The attestation policy that judged the evidence: {"name", "sha256", ...}.
    judged_by: Mapping[str, Any]
    #: DSSE envelopes (bytes) the Keep sent: its package's signed statements.
    statements: Sequence[bytes] = ()


def evaluate(
    policy: ReleasePolicy | None,
    facts: KeepFacts,
    *,
    now: datetime,
    trust_dir: Path | None = None,
) -> list[RuleResult]:
    """Every rule of ``policy`` for the Keep ``facts`` describes (none passing: refused)."""
    if policy is None:
        return [
            RuleResult(
                "policy",
                "release-policy",
                "fail",
                "the secret has no release policy: it is released to nobody "
                "(motte secret policy NAME FILE)",
            )
        ]
    return [
        _workload(policy, facts, now, trust_dir),
        _kind(policy, facts),
        _judged_by(policy, facts),
    ]


def _workload(
    policy: ReleasePolicy, facts: KeepFacts, now: datetime, trust_dir: Path | None
) -> RuleResult:
    digest = facts.workload_digest
    if digest in policy.digests:
        return RuleResult("policy", "workload", "pass", f"{digest} is listed in digests")
    why: list[str] = []
    if policy.digests:
        why.append(f"{digest} is not among digests ({', '.join(policy.digests)})")
    for entry in policy.signed:
        ok, reason = _signed_as(entry, digest, facts.statements, now, trust_dir)
        if ok:
            return RuleResult("policy", "workload", "pass", reason)
        why.append(reason)
    return RuleResult("policy", "workload", "fail", "; ".join(why))


def _signed_as(
    entry: str, digest: str, statements: Sequence[bytes], now: datetime, trust_dir: Path | None
) -> tuple[bool, str]:
    from motte.errors import MotteError
    from motte.sign import (
        INTOTO_PAYLOAD_TYPE,
        PUBLICATION,
        Envelope,
        Publication,
        Statement,
        policy_for_namespace,
        verify_envelope,
    )

    namespace, _, name = entry.partition("/")
    try:
        publishers = policy_for_namespace(namespace, trust_dir, now=now)
    except MotteError as e:
        return False, f"signed {entry}: {e.message}"
    signers: dict[str, None] = {}
    notes: list[str] = []
    for i, raw in enumerate(statements):
        where = f"statement {i + 1}"
        try:
            envelope = Envelope.from_bytes(raw, where)
            if envelope.payload_type != INTOTO_PAYLOAD_TYPE:
                continue
            verified = verify_envelope(envelope, publishers.keys)
            statement = Statement.from_bytes(verified.payload, where)
            if statement.predicate_type != PUBLICATION:
                continue
            publication = Publication.from_dict(statement.predicate, where)
        except MotteError:
            continue  # not a statement by a key of this namespace: it does not count
        if not statement.about(digest):
            notes.append("a publication of another digest")
            continue
        if (publication.namespace, publication.name) != (namespace, name):
            notes.append(f"published as {publication.namespace}/{publication.name}")
            continue
        signers.update(dict.fromkeys(k.keyid for k in verified.keys))
    if len(signers) >= publishers.threshold:
        keys = ", ".join(k[:16] for k in signers)
        return True, (
            f"published as {entry} by {len(signers)} of the {publishers.threshold} required "
            f"key(s) of {publishers.source} ({keys})"
        )
    seen = f" ({'; '.join(dict.fromkeys(notes))})" if notes else ""
    return False, (
        f"signed {entry}: {len(signers)} of the {publishers.threshold} required publisher "
        f"signature(s) from {publishers.source} for {digest}{seen}"
    )


def _kind(policy: ReleasePolicy, facts: KeepFacts) -> RuleResult:
    kind = facts.kind
    if kind in policy.allowed_kinds:
        insecure = " (INSECURE: allow_insecure_sim is set)" if kind == "sim" else ""
        return RuleResult("policy", "tee-kind", "pass", f"{kind} is allowed{insecure}")
    if kind == "sim":
        return RuleResult(
            "policy",
            "tee-kind",
            "fail",
            "sim keeps protect nothing; the release policy does not set allow_insecure_sim",
        )
    return RuleResult(
        "policy",
        "tee-kind",
        "fail",
        f"{kind or 'unknown'} is not in allowed_kinds ({', '.join(policy.allowed_kinds)})",
    )


def _judged_by(policy: ReleasePolicy, facts: KeepFacts) -> RuleResult:
    name = facts.judged_by.get("name")
    sha = facts.judged_by.get("sha256")
    shown = f"{name} (sha256:{sha})" if sha else str(name)
    want = policy.attestation_policy
    if want is None:
        return RuleResult(
            "policy", "attestation-policy", "pass", f"any: the evidence was judged by {shown}"
        )
    if want == name or want == f"sha256:{sha}":
        return RuleResult("policy", "attestation-policy", "pass", f"judged by {shown}")
    return RuleResult(
        "policy",
        "attestation-policy",
        "fail",
        f"the evidence was judged by {shown}, not by {want}",
    )
