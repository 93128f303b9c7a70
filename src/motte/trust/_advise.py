"""``motte advise``: publish a signed advisory about affected versions of a package.

One statement, whose subjects are the affected digests, is signed, appended to the
transparency log once, and attached as a referrer to every affected version, so whoever
looks at an affected version finds it. Its published time is the log's, not the signer's.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from motte.oci import LocalStore, Reference, open_repository, parse_reference, verify_workload_blobs
from motte.sign import (
    INTOTO_PAYLOAD_TYPE,
    PrivateKey,
    Statement,
    Subject,
    attach_statement,
    log_envelope,
    sign_envelope,
)
from motte.trust._errors import TrustUsageError
from motte.trust._predicates import ADVISORY, Advisory, Version


@dataclass(frozen=True, slots=True)
class AdvisoryResult:
    advisory: Advisory
    statement: str  # sha256 of the envelope: the log entry
    keyids: tuple[str, ...]
    log_origin: str
    log_index: int
    referrers: tuple[str, ...]  # one per affected version


def _same_repository(a: Reference, b: Reference) -> bool:
    return (a.registry, a.scheme, a.repository) == (b.registry, b.scheme, b.repository)


def publish_advisory(
    affected: Sequence[Reference | str],
    keys: Sequence[PrivateKey],
    *,
    id: str,
    fixed: Reference | str | None = None,
    severity: str | None = None,
    summary: str | None = None,
    aliases: Sequence[str] = (),
    withdrawn: bool = False,
    store: LocalStore | None = None,
    allow_insecure_http: bool = False,
    log_url: str | None = None,
    now: dt.datetime | None = None,
) -> AdvisoryResult:
    """Sign, log and attach an advisory that ``affected`` versions have problem ``id``.

    Every version (and the fix) must be of one package in one place, and is checked against
    its digest before anything is signed: an advisory vouches only for bytes the signer saw.
    """
    if not keys:
        raise TrustUsageError("an advisory needs a signing key")
    refs = [parse_reference(r) if isinstance(r, str) else r for r in affected]
    if not refs:
        raise TrustUsageError("name at least one affected version")
    fixed_ref = parse_reference(fixed) if isinstance(fixed, str) else fixed
    for r in [*refs[1:], *([fixed_ref] if fixed_ref else [])]:
        if not _same_repository(refs[0], r):
            raise TrustUsageError(
                f"{r}: an advisory is about one package; {refs[0].repository} was named first",
                hint="publish one advisory per package",
            )
    now = now or dt.datetime.now(dt.UTC)
    with open_repository(refs[0], store=store, allow_insecure_http=allow_insecure_http) as repo:
        descs, versions = [], []
        for r in refs:
            desc, data = repo.resolve(r)
            verify_workload_blobs(repo, desc, data, f"{r.repository}@{desc.digest}")
            if desc.digest not in {v.digest for v in versions}:
                descs.append(desc)
                versions.append(Version(desc.digest, r.tag))
        fixed_version = None
        if fixed_ref is not None:
            desc, data = repo.resolve(fixed_ref)
            verify_workload_blobs(repo, desc, data, f"{fixed_ref.repository}@{desc.digest}")
            fixed_version = Version(desc.digest, fixed_ref.tag)
        advisory = Advisory(
            id,
            refs[0].namespace,
            refs[0].name,
            tuple(versions),
            fixed_version,
            severity,
            summary,
            tuple(aliases),
            withdrawn,
        )
        statement = Statement(
            tuple(Subject.for_digest(refs[0].repository, v.digest) for v in versions),
            ADVISORY,
            advisory.to_dict(),
        )
        envelope = sign_envelope(INTOTO_PAYLOAD_TYPE, statement.to_bytes(), keys).to_bytes()
        index, bundle, origin = log_envelope(envelope, log_url=log_url)
        keyids = [k.keyid for k in keys]
        referrers = [
            attach_statement(
                repo, desc, envelope, bundle, predicate_type=ADVISORY, keyids=keyids, now=now
            ).digest
            for desc in descs
        ]
    return AdvisoryResult(
        advisory,
        "sha256:" + hashlib.sha256(envelope).hexdigest(),
        tuple(keyids),
        origin,
        index,
        tuple(referrers),
    )
