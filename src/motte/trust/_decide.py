"""decide(evidence, policy, now) -> TrustVerdict: the judgement, as a pure function.

Each area is a list of rules (``_area_artifact``: build, integrity; ``_area_people``:
responsiveness, provenance, expertise). An area is not satisfied if any rule says so,
unknown if any rule is unknown (or none could say yes), and satisfied otherwise; the verdict
accepts the package when every area the policy requires is satisfied. Time is a parameter:
the same evidence and policy judged at another ``now`` can differ (an audit goes stale, an
advisory grows old), and nothing else.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from motte.trust._area_artifact import build, integrity
from motte.trust._area_people import expertise, provenance, responsiveness
from motte.trust._context import Context
from motte.trust._evidence import Evidence
from motte.trust._policy import AREAS, Policy
from motte.trust._verdict import AreaOutcome, RuleResult, TrustVerdict, area_status

_AREA_RULES: dict[str, Callable[[Context], list[RuleResult]]] = {
    "build": build,
    "integrity": integrity,
    "responsiveness": responsiveness,
    "provenance": provenance,
    "expertise": expertise,
}


def decide(evidence: Evidence, policy: Policy, now: dt.datetime) -> TrustVerdict:
    """Judge ``evidence`` under ``policy`` at ``now`` (timezone-aware)."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    ctx = Context(evidence, policy, now)
    areas = []
    for name in AREAS:
        rules = tuple(_AREA_RULES[name](ctx))
        areas.append(AreaOutcome(name, area_status(rules), name in policy.require, rules))
    return TrustVerdict(
        reference=evidence.reference,
        digest=evidence.digest,
        policy_name=policy.name,
        policy_digest=policy.digest,
        time=now,
        areas=tuple(areas),
        policy_path=policy.path,
    )
