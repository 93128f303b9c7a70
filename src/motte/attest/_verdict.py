"""The verdict: accepted or rejected, what was judged, by which policy, and every rule.

A verdict is the whole answer to "may I trust this evidence?": the TEE kind, the launch
measurement, the claims the evidence carries (only verified ones when accepted), and each
rule of parsing, verification and policy with its outcome and reason. It is a value; scripts
read :meth:`Verdict.to_dict` (``--json``), people read the CLI's rendering of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from motte.attest._checks import RuleResult

#: Bumped when a field of to_dict() changes meaning or disappears.
VERDICT_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of :func:`motte.attest.verify_evidence`."""

    accepted: bool
    #: The TEE that produced the evidence: "snp", "tdx", "sgx" or "sim"; None if unparsable.
    kind: str | None
    #: How the evidence arrived: "snp-report", "tdx-quote", "sgx-quote", "sim", "tsm",
    #: "enarx-csr"; None if the kind could not be told.
    format: str | None
    #: The launch measurement in hex (SNP MEASUREMENT, TDX MRTD, SGX MRENCLAVE, sim).
    measurement: str | None
    claims: Mapping[str, Any]
    rules: tuple[RuleResult, ...]
    #: Which policy judged: {"name", "source", "sha256"}.
    policy: Mapping[str, Any]
    #: The verification time (ISO 8601, UTC): certificates and collateral were checked at it.
    verified_at: str
    #: Set when the claims did not verify: then they are shown for diagnosis only.
    claims_verified: bool = field(default=False)

    @property
    def failures(self) -> tuple[RuleResult, ...]:
        return tuple(r for r in self.rules if r.outcome == "fail")

    @property
    def reason(self) -> str | None:
        """The first failure as one line ("rule: reason"), None when accepted."""
        f = self.failures
        return f"{f[0].rule}: {f[0].reason}" if f else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": VERDICT_FORMAT_VERSION,
            "accepted": self.accepted,
            "verdict": "accepted" if self.accepted else "rejected",
            "reason": self.reason,
            "kind": self.kind,
            "format": self.format,
            "measurement": self.measurement,
            "claims_verified": self.claims_verified,
            "claims": dict(self.claims),
            "rules": [r.to_dict() for r in self.rules],
            "policy": dict(self.policy),
            "verified_at": self.verified_at,
        }
