"""``motte verify``: is this artifact intact, published by keys its namespace trusts, and logged?

For a reference (tag resolved once to a digest):

1. The manifest and every blob hash to the digests that name them (a changed layer or
   manifest is named).
2. Each attestation referrer is read (its blobs verified too) and its DSSE envelope checked
   against the policy's keys. Only signatures that verify count. Anything else (a referrer
   that does not parse, a signature by an unknown key, one that merely *names* a trusted
   key, a proof that does not verify) is listed as ignored with the reason, and never
   changes the outcome: anyone with push access can attach a referrer.
3. A trusted statement must be about this digest, and carry an inclusion proof that verifies
   against a trusted log checkpoint, shown consistent with the last checkpoint seen (a fork
   fails, and so does a log that cannot be reached for the consistency proof).
4. Publication statements for this namespace/name by distinct trusted keys must reach the
   policy's threshold.

Sigstore bundles attached as referrers are verified offline against the pinned
``trusted_root.json`` when their certificate names a keyless identity the namespace's root
delegates (:mod:`motte.sign._sigstore_oci`); one counts as that identity's signature. Any
other bundle, and every signature in cosign's ``.sig``/``.att`` tags, is ignored with the
reason.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from motte.errors import MotteError
from motte.oci import LocalStore, Reference, open_repository, parse_reference, verify_workload_blobs
from motte.sign._attach import read_statements
from motte.sign._dsse import INTOTO_PAYLOAD_TYPE, Envelope, verify_envelope
from motte.sign._errors import (
    ArtifactVerificationError,
    EnvelopeFormatError,
    ForkCheckUnavailableError,
    SignatureError,
)
from motte.sign._logging import LogEvidence, check_logged
from motte.sign._predicates import (
    DIGEST_SIGNATURES,
    PREDICATE_NAMES,
    PUBLICATION,
    Publication,
    describe,
)
from motte.sign._release import (
    ReleaseCheck,
    SignedRelease,
    check_release,
    load_release_memory,
    overrides_file,
    record_override,
    releases_in,
    remember_release,
)
from motte.sign._sigstore_oci import (
    SigstoreChecker,
    read_cosign_tags,
    read_sigstore_bundles,
    statement_kind,
)
from motte.sign._statement import Statement
from motte.sign._trustroot import KeylessIdentity
from motte.sign._truststore import PublisherPolicy, policy_for_namespace

#: What the fork check says of a Rekor entry: sigstore-python verified its inclusion proof
#: and signed checkpoint offline, but nothing compares that checkpoint with earlier ones.
REKOR_FORK_CHECK = "none for Rekor (inclusion proof and checkpoint verified offline)"


@dataclass(frozen=True, slots=True)
class CheckedStatement:
    referrer: str
    predicate_type: str
    signers: tuple[str, ...]  # keyids of the policy's keys that signed
    log: LogEvidence
    summary: dict[str, Any]

    @property
    def kind(self) -> str:
        return PREDICATE_NAMES.get(self.predicate_type, self.predicate_type)


@dataclass(frozen=True, slots=True)
class Verification:
    reference: Reference  # pinned
    digest: str
    policy: str
    threshold: int
    publishers: tuple[str, ...]  # distinct keyids with a counted publication statement
    statements: tuple[CheckedStatement, ...]
    #: (referrer digest, why it does not count): unknown signer, no log proof, other name...
    ignored: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    #: Whether the tag is this digest's current release (None when verified by digest).
    release: ReleaseCheck | None = None
    #: Where an ``allow_rollback`` override was recorded, if one was used.
    override_recorded: Path | None = None
    #: Keyless signers among ``publishers`` and statement signers: id -> "identity (issuer)".
    names: dict[str, str] = field(default_factory=dict)

    def name_of(self, signer: str) -> str:
        return self.names.get(signer, signer[:16])


def verify_artifact(
    ref: Reference | str,
    policy: PublisherPolicy | None = None,
    *,
    trust_dir: Path | None = None,
    store: LocalStore | None = None,
    allow_insecure_http: bool = False,
    log_url: str | None = None,
    now: dt.datetime | None = None,
    unsafe_skip_fork_check: bool = False,
    allow_rollback: bool = False,
    trusted_root: Path | None = None,
) -> Verification:
    """Verify ``ref`` (see the module docstring); raise naming the failed check, or return.

    ``trusted_root`` is the Sigstore ``trusted_root.json`` for bundle referrers (default:
    ``MOTTE_HOME/sigstore/trusted_root.json``); read only when a bundle is there and the
    namespace names a keyless identity.

    ``unsafe_skip_fork_check`` accepts a statement whose checkpoint cannot be shown consistent
    with the last one seen because the log cannot be reached (see :mod:`motte.sign._logging`).

    A reference with a tag must be the tag's current release (:mod:`motte.sign._release`);
    ``allow_rollback`` accepts an older, expired or moved one, loudly, and records it.
    """
    from motte.tlog import ForkError

    if isinstance(ref, str):
        ref = parse_reference(ref)
    now = now or dt.datetime.now(dt.UTC)
    if policy is None:
        policy = policy_for_namespace(ref.namespace, trust_dir, now=now)
    with open_repository(ref, store=store, allow_insecure_http=allow_insecure_http) as repo:
        desc, data = repo.resolve(ref)
        label = f"{ref.repository}@{desc.digest}"
        verify_workload_blobs(repo, desc, data, label)
        ignored: list[tuple[str, str]] = []
        stored = read_statements(repo, desc.digest, skipped=ignored)
        bundles = read_sigstore_bundles(repo, desc.digest, skipped=ignored)
        ignored.extend(read_cosign_tags(repo, ref, desc.digest))

    checked: list[CheckedStatement] = []
    log_hint: str | None = None
    found_releases: list[tuple[str, dict[str, Any], tuple[str, ...], str]] = []
    publishers: dict[str, None] = {}
    trusted_ids = {k.keyid for k in policy.keys}
    for s in stored:
        where = f"referrer {s.referrer}"
        try:
            envelope = Envelope.from_bytes(s.envelope, f"{where} envelope")
        except EnvelopeFormatError as e:
            # Nobody's signature can be checked on bytes that do not parse: a stranger's
            # junk, never a reason to refuse the package.
            ignored.append((s.referrer, e.message))
            continue
        if envelope.payload_type != INTOTO_PAYLOAD_TYPE:
            ignored.append((s.referrer, f"payload type {envelope.payload_type} is not in-toto"))
            continue
        try:
            verified = verify_envelope(envelope, policy.keys)
        except SignatureError:
            # A keyid is an unauthenticated hint: anyone can name a trusted key beside
            # random bytes. Only a signature that verifies counts; one that does not is
            # ignored whatever key it names (a tampered genuine statement stops counting,
            # and the threshold below says so).
            named = [sig.keyid for sig in envelope.signatures if sig.keyid in trusted_ids]
            if named:
                why = (
                    f"names trusted key {named[0][:16]} but its signature does not verify "
                    "(the statement or signature was changed, or never made by that key)"
                )
            else:
                hints = ", ".join(sig.keyid[:16] or "(no keyid)" for sig in envelope.signatures)
                why = f"signed by {hints}, not a key of {policy.source}"
            ignored.append((s.referrer, why))
            continue
        try:
            statement = Statement.from_bytes(verified.payload, f"{where} statement")
        except EnvelopeFormatError as e:
            raise ArtifactVerificationError("statement", e.message) from None
        if verified.bad_keyids:
            ignored.append(
                (
                    s.referrer,
                    f"an extra signature naming key {verified.bad_keyids[0][:16]} does not "
                    "verify (not counted; the valid ones are)",
                )
            )
        if not statement.about(desc.digest):
            other = ", ".join(sorted(d for sub in statement.subject for d in sub.digests()))
            ignored.append((s.referrer, f"statement is about {other}, not this artifact"))
            continue
        if s.bundle is None:
            ignored.append((s.referrer, "not in a transparency log (no inclusion proof)"))
            continue
        try:
            evidence = check_logged(
                s.envelope,
                s.bundle,
                now=now,
                log_url=log_url,
                unsafe_skip_fork_check=unsafe_skip_fork_check,
            )
        except (ForkError, ForkCheckUnavailableError) as e:
            # About the log's honesty, not this referrer: only the log key can sign the two
            # checkpoints of a fork, and a log that cannot be reached hides one.
            raise ArtifactVerificationError(
                "log",
                f"{where} ({_kind(statement.predicate_type)}): {e.message}",
                hint=e.hint,
            ) from None
        except MotteError as e:
            # A genuine envelope re-attached with a broken or foreign proof is a stranger's
            # doing: the copy does not count, the original (if any) still does.
            ignored.append((s.referrer, f"{_kind(statement.predicate_type)}: {e.message}"))
            log_hint = e.hint or "trust the publisher's log key (motte log trust VKEY URL)"
            continue
        try:
            summary = describe(statement.predicate_type, statement.predicate)
        except EnvelopeFormatError as e:
            raise ArtifactVerificationError("statement", e.message) from None
        signers = tuple(k.keyid for k in verified.keys)
        checked.append(
            CheckedStatement(s.referrer, statement.predicate_type, signers, evidence, summary)
        )
        found_releases.append((statement.predicate_type, statement.predicate, signers, where))
        if statement.predicate_type == PUBLICATION:
            pub = Publication.from_dict(statement.predicate, where)
            if (pub.namespace, pub.name) != (ref.namespace, ref.name):
                ignored.append(
                    (
                        s.referrer,
                        f"publishes it as {pub.namespace}/{pub.name}, not {ref.repository}",
                    )
                )
                continue
            publishers.update(dict.fromkeys(signers))

    checker = SigstoreChecker(policy.identities, trusted_root)
    for b in bundles:
        where = f"referrer {b.referrer}"
        try:
            v = checker.check(b.data, desc.digest, where)
        except MotteError as e:
            ignored.append((b.referrer, e.message.removeprefix(f"{where}: ")))
            continue
        assert v.identity is not None and v.issuer is not None
        signer = KeylessIdentity(v.identity, v.issuer).id
        ptype, predicate = statement_kind(v)
        try:
            summary = describe(ptype, predicate)
        except EnvelopeFormatError as e:
            ignored.append((b.referrer, f"Sigstore bundle by {v.identity}: {e.message}"))
            continue
        evidence = LogEvidence(
            f"Rekor {v.log_id}", v.log_index, v.tree_size, REKOR_FORK_CHECK, v.log_time
        )
        checked.append(CheckedStatement(b.referrer, ptype, (signer,), evidence, summary))
        found_releases.append((ptype, predicate, (signer,), where))
        if ptype == PUBLICATION:
            pub = Publication.from_dict(predicate, where)
            if (pub.namespace, pub.name) != (ref.namespace, ref.name):
                ignored.append(
                    (
                        b.referrer,
                        f"publishes it as {pub.namespace}/{pub.name}, not {ref.repository}",
                    )
                )
                continue
        if ptype == PUBLICATION or ptype in DIGEST_SIGNATURES:
            publishers[signer] = None

    if len(publishers) < policy.threshold:
        reasons = "; ".join(f"{r[:19]}: {why}" for r, why in ignored)
        raise ArtifactVerificationError(
            "threshold",
            f"{label}: {len(publishers)} of the {policy.threshold} required publisher "
            f"signature(s) from {policy.source}" + (f" ({reasons})" if reasons else ""),
            hint=log_hint or "sign it with a delegated key: motte sign REF --key KEY",
        )
    release, recorded = None, None
    if ref.tag is not None:
        release, recorded = enforce_release(
            ref.repository,
            ref.tag,
            desc.digest,
            releases_in(found_releases, policy.ids),
            threshold=policy.threshold,
            now=now,
            allow_rollback=allow_rollback,
            command="motte verify",
        )
    return Verification(
        ref.with_digest(desc.digest),
        desc.digest,
        policy.source,
        policy.threshold,
        tuple(publishers),
        tuple(checked),
        tuple(ignored),
        release,
        recorded,
        {i.id: i.label for i in policy.identities},
    )


def enforce_release(
    package: str,
    tag: str,
    digest: str,
    found: list[SignedRelease],
    *,
    threshold: int,
    now: dt.datetime,
    allow_rollback: bool,
    command: str,
    remember: bool = True,
) -> tuple[ReleaseCheck, Path | None]:
    """Check freshness against this installation's memory; raise when refused.

    A current release is remembered (``remember``); an overridden refusal is recorded in the
    audit file, whose path is returned, and remembers nothing.
    """
    check = check_release(
        package,
        tag,
        digest,
        found,
        load_release_memory(package),
        threshold=threshold,
        now=now,
        allow_rollback=allow_rollback,
    )
    if check.refused:
        raise ArtifactVerificationError(
            "release",
            check.message,
            hint="if you must run it anyway, --allow-rollback accepts it (recorded in "
            f"{overrides_file()})",
        )
    if check.overridden is not None:
        return check, record_override(
            package, tag, digest, check.overridden, now=now, command=command
        )
    if remember and check.release is not None:
        remember_release(check.release, digest, now=now)
    return check, None


def _kind(predicate_type: str | None) -> str:
    return PREDICATE_NAMES.get(predicate_type or "", predicate_type or "statement")
