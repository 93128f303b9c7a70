"""What a trust judgement returns: per area a status, the deciding rule, and its evidence.

There is no score. A :class:`TrustVerdict` is the list of area outcomes and the decision the
policy makes from them (accepted only when every required area is satisfied), and it names
whose policy judged which digest when, so it can be signed and handed to others.

Statuses keep "unknown" (no evidence either way: no rebuild yet, the log unreachable, no audit
by anyone the policy names) apart from "not satisfied" (the evidence says no: a mismatching
rebuild, a digest mismatch, an open advisory, a stale audit). A required area must be
satisfied either way; the message says which of the two stopped it. Rules whose status is
``note`` are recorded (a first-seen signer that touched nothing sensitive, an ignored
statement) but never decide anything.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any


class Status(StrEnum):
    SATISFIED = "satisfied"
    NOT_SATISFIED = "not satisfied"
    UNKNOWN = "unknown"
    #: A rule's outcome that informs but never decides (areas are never "note").
    NOTE = "note"


def rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class EvidenceRef:
    """A pointer to one piece of evidence: a statement, its log entry, its signer."""

    what: str  # publication, provenance, rebuild, advisory, review, layer, checkpoint, root
    statement: str | None = None  # sha256 of the DSSE envelope: the log entry's bytes
    log_origin: str | None = None
    log_index: int | None = None
    signer: str | None = None  # keyid
    time: str | None = None  # RFC 3339: when the log first vouched for it
    detail: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"what": self.what}
        for key in ("statement", "log_origin", "log_index", "signer", "time", "detail"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out

    def short(self) -> str:
        """``review by 6863c0d7 (log entry 4, 2026-11-26)``: for one-line output."""
        parts = [self.what]
        if self.signer:
            parts.append(f"by {self.signer[:8]}")
        where = []
        if self.log_index is not None:
            where.append(f"log entry {self.log_index}")
        if self.time:
            where.append(self.time[:10])
        if where:
            parts.append(f"({', '.join(where)})")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class RuleResult:
    """One rule the policy checked: its outcome, a one-line reason, and the evidence."""

    rule: str  # "build.provenance", "integrity.digest", ...
    status: Status
    message: str
    evidence: tuple[EvidenceRef, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "status": self.status.value,
            "message": self.message,
            "evidence": [e.to_dict() for e in self.evidence],
        }


@dataclass(frozen=True, slots=True)
class AreaOutcome:
    area: str
    status: Status
    required: bool
    rules: tuple[RuleResult, ...]

    @property
    def deciding(self) -> RuleResult:
        """The rule that gave the area its status (rules are listed most decisive first)."""
        for r in self.rules:
            if r.status == self.status:
                return r
        return RuleResult(f"{self.area}.none", self.status, "no evidence was examined")

    @property
    def notes(self) -> tuple[RuleResult, ...]:
        return tuple(r for r in self.rules if r.status == Status.NOTE)

    def to_dict(self) -> dict[str, Any]:
        d = self.deciding
        return {
            "area": self.area,
            "status": self.status.value,
            "required": self.required,
            "rule": d.rule,
            "message": d.message,
            "evidence": [e.to_dict() for e in d.evidence],
            "rules": [r.to_dict() for r in self.rules],
        }


def area_status(rules: tuple[RuleResult, ...]) -> Status:
    """Not satisfied if any rule says so, else unknown if any is, else satisfied."""
    statuses = {r.status for r in rules}
    if Status.NOT_SATISFIED in statuses:
        return Status.NOT_SATISFIED
    if Status.UNKNOWN in statuses or Status.SATISFIED not in statuses:
        return Status.UNKNOWN
    return Status.SATISFIED


@dataclass(frozen=True, slots=True)
class TrustVerdict:
    """A consumer's judgement of one package digest under one policy at one time."""

    reference: str  # pinned: [registry/]namespace/name[:tag]@digest
    digest: str
    policy_name: str
    policy_digest: str
    time: dt.datetime
    areas: tuple[AreaOutcome, ...]
    policy_path: Path | None = field(default=None, compare=False)

    @property
    def accepted(self) -> bool:
        return all(a.status == Status.SATISFIED for a in self.areas if a.required)

    @property
    def decision(self) -> str:
        return "accepted" if self.accepted else "refused"

    def area(self, name: str) -> AreaOutcome:
        for a in self.areas:
            if a.area == name:
                return a
        raise KeyError(name)

    def failing(self) -> tuple[AreaOutcome, ...]:
        """Required areas that are not satisfied, in the order of :data:`AREAS`."""
        return tuple(a for a in self.areas if a.required and a.status != Status.SATISFIED)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "digest": self.digest,
            "policy": {"name": self.policy_name, "digest": self.policy_digest},
            "time": rfc3339(self.time),
            "decision": self.decision,
            "areas": [a.to_dict() for a in self.areas],
        }

    def predicate(self) -> dict[str, Any]:
        """The trust-verdict predicate: the judgement without the subject (the digest)."""
        areas = {}
        for a in self.areas:
            d = a.deciding
            areas[a.area] = {
                "status": a.status.value,
                "required": a.required,
                "rule": d.rule,
                "message": d.message,
                "evidence": [e.to_dict() for e in d.evidence],
            }
        return {
            "policy": {"name": Path(self.policy_name).name, "digest": self.policy_digest},
            "timeVerified": rfc3339(self.time),
            "decision": self.decision,
            "areas": areas,
        }
