"""The verdict: accepted or rejected, what was judged, by which policy, and every rule.

A verdict is the whole answer to "may I trust this evidence?": the TEE kind, the launch
measurement, the claims the evidence carries (only verified ones when accepted), and each
rule of parsing, verification and policy with its outcome and reason. It is a value; scripts
read :meth:`Verdict.to_dict` (``--json``), people read the CLI's rendering of it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from motte.attest._checks import RuleResult

#: Bumped when a field of to_dict() changes meaning or disappears.
VERDICT_FORMAT_VERSION = 1


class LazyClaims(Mapping[str, Any]):
    """Claims rendered on first read: hex strings, decoded TCBs, certificate names and dates
    cost more than the verification's Python work, and a caller that only asks
    ``verdict.accepted`` (a Steward's hot path) never reads them. Built from values that
    were fully parsed and checked already, so rendering cannot fail later."""

    __slots__ = ("_build", "_lock", "_value")

    def __init__(self, build: Callable[[], dict[str, Any]]) -> None:
        self._build: Callable[[], dict[str, Any]] | None = build
        self._value: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def _claims(self) -> dict[str, Any]:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    assert self._build is not None
                    self._value = self._build()
                    self._build = None
        return self._value

    def __getitem__(self, key: str) -> Any:
        return self._claims()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._claims())

    def __len__(self) -> int:
        return len(self._claims())

    def __repr__(self) -> str:
        return repr(self._claims())


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
