"""The record every verifier and validator keeps: which check ran, its outcome, and why.

Verifiers raise at the first failure (a forged report must not be read further), but the
verdict still lists what passed before it: :class:`CheckLog` collects results, and
:meth:`CheckLog.fail` raises an :class:`EvidenceVerificationError` that carries them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from motte.attest.errors import EvidenceVerificationError

Outcome = Literal["pass", "fail", "skip"]
Stage = Literal["parse", "verify", "policy"]


@dataclass(frozen=True, slots=True)
class RuleResult:
    """One rule: ``stage`` (parse, verify, policy), a stable ``rule`` name, outcome, reason."""

    stage: Stage
    rule: str
    outcome: Outcome
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "rule": self.rule,
            "outcome": self.outcome,
            "reason": self.reason,
        }


class CheckLog:
    """An append-only list of results for one stage."""

    def __init__(self, stage: Stage = "verify") -> None:
        self.stage: Stage = stage
        self.results: list[RuleResult] = []

    def ok(self, rule: str, reason: str) -> None:
        self.results.append(RuleResult(self.stage, rule, "pass", reason))

    def skip(self, rule: str, reason: str) -> None:
        self.results.append(RuleResult(self.stage, rule, "skip", reason))

    def bad(self, rule: str, reason: str) -> None:
        """Record a failure and carry on (validation reports every mismatch)."""
        self.results.append(RuleResult(self.stage, rule, "fail", reason))

    def fail(self, rule: str, reason: str, *, hint: str | None = None) -> NoReturn:
        """Record a failure and stop: raises EvidenceVerificationError(check=rule)."""
        self.results.append(RuleResult(self.stage, rule, "fail", reason))
        err = EvidenceVerificationError(rule, reason, hint=hint)
        err.results = tuple(self.results)
        raise err

    @property
    def failed(self) -> bool:
        return any(r.outcome == "fail" for r in self.results)
