"""``motte trust --sign KEY``: the verdict itself as a signed, logged, attachable statement.

"Party X judged digest Y at time T under policy P, and decided D": an in-toto statement
whose subject is the package digest and whose predicate is :meth:`TrustVerdict.predicate`
(predicate type :data:`TRUST_VERDICT`). It is appended to the transparency log and attached
to the package as a referrer, so others can find and check whose judgement it was. A
refused verdict is signed as readily as an accepted one: both are findings worth sharing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from motte.errors import MotteError
from motte.oci import LocalStore, open_repository, parse_reference
from motte.sign import (
    INTOTO_PAYLOAD_TYPE,
    PrivateKey,
    Statement,
    Subject,
    attach_statement,
    log_envelope,
    sign_envelope,
)
from motte.trust._predicates import TRUST_VERDICT
from motte.trust._verdict import TrustVerdict


@dataclass(frozen=True, slots=True)
class SignedVerdict:
    statement: str  # sha256 of the envelope: the log entry
    keyids: tuple[str, ...]
    log_origin: str
    log_index: int
    referrer: str | None  # None when the package could not be read to attach to


def verdict_statement(verdict: TrustVerdict) -> Statement:
    ref = parse_reference(verdict.reference)
    return Statement(
        (Subject.for_digest(ref.repository, verdict.digest),), TRUST_VERDICT, verdict.predicate()
    )


def sign_verdict(
    verdict: TrustVerdict,
    keys: Sequence[PrivateKey],
    *,
    store: LocalStore | None = None,
    allow_insecure_http: bool = False,
    log_url: str | None = None,
) -> SignedVerdict:
    """Sign ``verdict``, log it, and attach it to the package when the package can be read."""
    envelope = sign_envelope(
        INTOTO_PAYLOAD_TYPE, verdict_statement(verdict).to_bytes(), keys
    ).to_bytes()
    index, bundle, origin = log_envelope(envelope, log_url=log_url)
    keyids = [k.keyid for k in keys]
    referrer = None
    ref = parse_reference(verdict.reference)
    try:
        with open_repository(ref, store=store, allow_insecure_http=allow_insecure_http) as repo:
            desc, _ = repo.resolve(ref)
            referrer = attach_statement(
                repo,
                desc,
                envelope,
                bundle,
                predicate_type=TRUST_VERDICT,
                keyids=keyids,
                now=verdict.time,
            ).digest
    except MotteError:
        referrer = None  # logged all the same: the log entry is the verdict's home
    return SignedVerdict(
        "sha256:" + hashlib.sha256(envelope).hexdigest(), tuple(keyids), origin, index, referrer
    )
