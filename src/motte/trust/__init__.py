"""Do I trust this package? The five-area judgement, made by the consumer under its policy.

    from motte.trust import load_policy, assess, enforce

    policy = load_policy("production.toml")
    verdict = assess("acme/hello:1.0", policy)     # TrustVerdict: five area outcomes
    verdict.accepted, verdict.failing()
    enforce("acme/hello@sha256:...", policy)       # raises TrustRefusedError when refused

Trust is not a property of a package: a verdict names whose policy (by digest) judged which
digest when, and for each area (build, integrity, responsiveness, provenance, expertise)
says satisfied, not satisfied or unknown, with the deciding rule and the evidence (log
entries, statement digests, signer keyids). Gathering evidence (:mod:`._gather`) does the
I/O; deciding (:func:`decide`) is a pure function of evidence, policy and time.

Also here: ``motte rebuild`` (:func:`rebuild`), advisories (:func:`publish_advisory`),
and signing a verdict (:func:`sign_verdict`). ``motte run --trust-policy FILE`` (or this
host's ``MOTTE_HOME/trust/policy.toml``) calls :func:`enforce` before a package runs.
"""

from motte.trust._advise import AdvisoryResult, publish_advisory
from motte.trust._assess import assess, enforce
from motte.trust._decide import decide
from motte.trust._errors import (
    PolicyError,
    RebuildError,
    TrustError,
    TrustRefusedError,
    TrustUsageError,
)
from motte.trust._evidence import Evidence, FoundStatement, LogPlace, PublisherKeys
from motte.trust._gather import gather, reference_for
from motte.trust._policy import AREAS, Party, Policy, load_policy, parse_policy
from motte.trust._predicates import (
    ADVISORY,
    FAILURE_STAGES,
    REBUILD,
    SEVERITIES,
    TRUST_VERDICT,
    Advisory,
    Rebuild,
    RebuildFailure,
    Version,
)
from motte.trust._rebuild import DEFAULT_TIMEOUT, RebuildResult, Recipe, rebuild
from motte.trust._sign_verdict import SignedVerdict, sign_verdict, verdict_statement
from motte.trust._verdict import AreaOutcome, EvidenceRef, RuleResult, Status, TrustVerdict

__all__ = [
    "ADVISORY",
    "AREAS",
    "DEFAULT_TIMEOUT",
    "FAILURE_STAGES",
    "REBUILD",
    "SEVERITIES",
    "TRUST_VERDICT",
    "Advisory",
    "AdvisoryResult",
    "AreaOutcome",
    "Evidence",
    "EvidenceRef",
    "FoundStatement",
    "LogPlace",
    "Party",
    "Policy",
    "PolicyError",
    "PublisherKeys",
    "Rebuild",
    "RebuildError",
    "RebuildFailure",
    "RebuildResult",
    "Recipe",
    "RuleResult",
    "SignedVerdict",
    "Status",
    "TrustError",
    "TrustRefusedError",
    "TrustUsageError",
    "TrustVerdict",
    "Version",
    "assess",
    "decide",
    "enforce",
    "gather",
    "load_policy",
    "parse_policy",
    "publish_advisory",
    "rebuild",
    "reference_for",
    "sign_verdict",
    "verdict_statement",
]
