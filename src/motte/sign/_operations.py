"""Signing a package: make a statement about its digest, sign it, log it, attach it.

Every operation checks the package first (manifest and every blob against their digests): a
signature vouches for what the signer's own machine verified, never for bytes it did not see.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from motte.oci import (
    LocalStore,
    Reference,
    open_repository,
    parse_reference,
    verify_workload_blobs,
)
from motte.sign._attach import attach_statement
from motte.sign._dsse import INTOTO_PAYLOAD_TYPE, sign_envelope
from motte.sign._errors import SigningUsageError
from motte.sign._keys import PrivateKey
from motte.sign._logging import log_envelope
from motte.sign._predicates import (
    PUBLICATION,
    RELEASE,
    REVIEW,
    SLSA_PROVENANCE,
    Provenance,
    Publication,
    Review,
)
from motte.sign._statement import Statement, Subject


@dataclass(frozen=True, slots=True)
class SignResult:
    reference: Reference  # pinned to the digest
    digest: str
    predicate_type: str
    referrer: str  # digest of the referrer manifest holding the envelope
    keyids: tuple[str, ...]
    log_index: int
    log_origin: str


def sign_statement(
    ref: Reference | str,
    keys: Sequence[PrivateKey],
    predicate_type: str,
    predicate: dict[str, Any] | None = None,
    *,
    store: LocalStore | None = None,
    allow_insecure_http: bool = False,
    log_url: str | None = None,
    now: dt.datetime | None = None,
) -> SignResult:
    """Sign any in-toto statement about ``ref``'s digest, log it and attach it as a referrer.

    The statement layer is generic: any predicate type URI and JSON object predicate (the
    trust area adds its own, such as advisories, through this function).
    """
    if isinstance(ref, str):
        ref = parse_reference(ref)
    if not keys:
        raise ValueError("sign_statement needs at least one key")
    now = now or dt.datetime.now(dt.UTC)
    with open_repository(ref, store=store, allow_insecure_http=allow_insecure_http) as repo:
        desc, data = repo.resolve(ref)
        label = f"{ref.repository}@{desc.digest}"
        verify_workload_blobs(repo, desc, data, label)
        statement = Statement(
            (Subject.for_digest(ref.repository, desc.digest),), predicate_type, predicate or {}
        )
        envelope = sign_envelope(INTOTO_PAYLOAD_TYPE, statement.to_bytes(), keys).to_bytes()
        index, bundle, origin = log_envelope(envelope, log_url=log_url)
        keyids = [k.keyid for k in keys]
        referrer = attach_statement(
            repo, desc, envelope, bundle, predicate_type=predicate_type, keyids=keyids, now=now
        )
    return SignResult(
        ref.with_digest(desc.digest),
        desc.digest,
        predicate_type,
        referrer.digest,
        tuple(keyids),
        index,
        origin,
    )


def sign_artifact(ref: Reference | str, keys: Sequence[PrivateKey], **kw: Any) -> SignResult:
    """The publication signature: "these keys publish this digest as namespace/name"."""
    if isinstance(ref, str):
        ref = parse_reference(ref)
    predicate = Publication(ref.namespace, ref.name).to_dict()
    return sign_statement(ref, keys, PUBLICATION, predicate, **kw)


def sign_release(
    ref: Reference | str,
    keys: Sequence[PrivateKey],
    *,
    version: int | None = None,
    expires: dt.datetime | None = None,
    now: dt.datetime | None = None,
    **kw: Any,
) -> SignResult:
    """The release statement: "tag T of namespace/name is this digest, version N, until E".

    ``version`` defaults to one more than the highest this installation has released or
    seen for the package, and must exceed it. The release is remembered here, so the next
    one goes up (and so that this machine, too, refuses a rollback).
    """
    from motte.sign._release import (
        DEFAULT_RELEASE_DAYS,
        Release,
        next_version,
        remember_release,
    )

    if isinstance(ref, str):
        ref = parse_reference(ref)
    if ref.tag is None:
        raise SigningUsageError(
            f"{ref}: a release binds a tag; name one (NAMESPACE/NAME:TAG)",
            hint="e.g. motte release acme/hello:1.0 --key alice",
        )
    now = now or dt.datetime.now(dt.UTC)
    expires = expires or now + dt.timedelta(days=DEFAULT_RELEASE_DAYS)
    if expires <= now:
        raise SigningUsageError("a release must expire in the future")
    release = Release(
        ref.namespace, ref.name, ref.tag, next_version(ref.repository, version), expires
    )
    result = sign_statement(ref, keys, RELEASE, release.to_dict(), now=now, **kw)
    remember_release(release, result.digest, now=now)
    return result


def attest_build(
    ref: Reference | str,
    keys: Sequence[PrivateKey],
    *,
    source: str,
    commit: str,
    command: str | None = None,
    builder: str,
    **kw: Any,
) -> SignResult:
    """SLSA provenance v1: which builder built the package from which source and commit."""
    predicate = Provenance(source, commit, command, builder).to_dict()
    return sign_statement(ref, keys, SLSA_PROVENANCE, predicate, **kw)


def attest_review(
    ref: Reference | str,
    keys: Sequence[PrivateKey],
    *,
    reviewer: str,
    scope: str,
    result: str,
    kind: str = "review",
    link: str | None = None,
    summary: str | None = None,
    now: dt.datetime | None = None,
    **kw: Any,
) -> SignResult:
    """A review or audit statement: who looked at what, and whether it passed."""
    from motte.sign._predicates import rfc3339

    now = now or dt.datetime.now(dt.UTC)
    predicate = Review(reviewer, scope, result, rfc3339(now), kind, link, summary).to_dict()
    return sign_statement(ref, keys, REVIEW, predicate, now=now, **kw)
