"""Gather the evidence for a judgement: the package, its statements, the log, the roots.

All the I/O of ``motte trust`` happens here; :mod:`motte.trust._decide` is pure. Problems
met along the way (a layer whose bytes changed, a log that cannot be read, no trust root for
the namespace) are recorded in the :class:`Evidence`, not raised: they are findings the
verdict reports under the area they belong to. Only what makes a judgement impossible (the
package is not there, its manifest is not a motte workload) raises.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from motte.errors import MotteError
from motte.oci import (
    NO_PROGRESS,
    DigestMismatchError,
    LocalStore,
    Manifest,
    Progress,
    Reference,
    Repository,
    VerifiedPackage,
    open_repository,
    parse_reference,
    verify_workload_blobs,
    workload_layers,
)
from motte.sign import (
    INTOTO_PAYLOAD_TYPE,
    PUBLICATION,
    REVIEW,
    SLSA_PROVENANCE,
    Envelope,
    EnvelopeFormatError,
    KeylessIdentity,
    Provenance,
    Publication,
    PublicKey,
    Review,
    SignatureError,
    SigstoreChecker,
    Statement,
    StoredBundle,
    TrustRootError,
    check_logged,
    check_release,
    load_release_memory,
    overrides_file,
    policy_for_namespace,
    read_cosign_tags,
    read_sigstore_bundles,
    read_statements,
    releases_in,
    statement_kind,
    stored_statements,
    verify_envelope,
)
from motte.trust._errors import TrustUsageError
from motte.trust._evidence import Evidence, FoundStatement, LogPlace, PublisherKeys
from motte.trust._git import check_sources
from motte.trust._history import read_history
from motte.trust._memory import load_memory
from motte.trust._policy import Policy
from motte.trust._predicates import ADVISORY, REBUILD, Advisory, Rebuild

#: Earlier versions whose layers are fetched to tell what a new signer changed.
MAX_OTHER_VERSIONS = 16

_PARSERS: dict[str, Any] = {
    PUBLICATION: Publication.from_dict,
    SLSA_PROVENANCE: Provenance.from_dict,
    REVIEW: Review.from_dict,
    ADVISORY: Advisory.from_dict,
    REBUILD: Rebuild.from_dict,
}


def reference_for(target: Reference | str, store: LocalStore | None = None) -> Reference:
    """``target`` as a reference; a bare ``sha256:`` digest is named from the local store."""
    if isinstance(target, Reference):
        return target
    if not target.startswith("sha256:"):
        return parse_reference(target)
    store = store or LocalStore()
    from motte.oci import mediatypes as mt

    names = sorted(
        {
            d.annotations[mt.ANN_REF_NAME].rsplit(":", 1)[0]
            for d in store.index().manifests
            if d.digest == target and mt.ANN_REF_NAME in d.annotations
        }
    )
    if len(names) != 1:
        raise TrustUsageError(
            f"{target}: "
            + ("no package in the local store" if not names else f"named {', '.join(names)}")
            + " : a judgement needs the package's namespace/name",
            hint="give the reference as NAMESPACE/NAME@sha256:...",
        )
    return parse_reference(f"{names[0]}@{target}")


def gather(
    target: Reference | str | VerifiedPackage,
    policy: Policy,
    *,
    now: dt.datetime,
    store: LocalStore | None = None,
    allow_insecure_http: bool = False,
    trust_dir: Path | None = None,
    log_url: str | None = None,
    progress: Progress = NO_PROGRESS,
    allow_rollback: bool = False,
    trusted_root: Path | None = None,
) -> Evidence:
    """Everything :func:`decide` needs about ``target`` (see the module docstring): a
    reference, a ``sha256:`` digest in the local store, or a package already opened and
    verified (:func:`motte.oci.open_package`, with its attachments), which is not read again.

    Sigstore bundles attached to the package are verified offline against ``trusted_root``
    (default ``MOTTE_HOME/sigstore/trusted_root.json``) when their certificate names a
    keyless identity the namespace's root or the policy names; any other, and cosign's
    ``.sig``/``.att`` tags, become notes saying why they do not count.

    Judged by tag, the release check (motte.sign) runs against this installation's memory;
    ``allow_rollback`` turns its refusal into a recorded override.

    ``progress`` shows the indexing of a log's new entries (the first judgement on a
    machine reads the whole log).
    """
    package = target if isinstance(target, VerifiedPackage) else None
    ref = package.reference if package is not None else reference_for(target, store)
    publishers, publisher_problem, publisher_keys, publisher_ids = _publishers(
        ref.namespace, trust_dir, now
    )
    known = {k.keyid: k for k in (*publisher_keys, *policy.keys())}
    identities = list({i.id: i for i in (*publisher_ids, *policy.identities())}.values())
    with open_repository(ref, store=store, allow_insecure_http=allow_insecure_http) as repo:
        found: list[FoundStatement] = []
        skipped: list[tuple[str, str]] = []
        # Unreadable referrers are skipped, not a finding against the package: anyone with
        # push access can attach one. They are kept as notes (integrity.ignored).
        blob_problem = None
        if package is not None and package.attachments is not None:
            # Opened and verified once by the caller (motte run): its layers, its bytes and
            # its motte statements are not read or hashed again here.
            subject, layers = package.digest, _package_layers(package)
            skipped.extend(package.skipped_referrers)
            stored = stored_statements(package.attachments, skipped=skipped)
        else:
            desc, data = repo.resolve(ref)
            subject = desc.digest
            label = f"{ref.repository}@{subject}"
            layers = _layers(data, label)
            try:
                verify_workload_blobs(repo, desc, data, label)
            except DigestMismatchError as e:
                blob_problem = e.message
            stored = read_statements(repo, subject, skipped=skipped)
        bundles = read_sigstore_bundles(repo, subject, skipped=skipped)
        skipped.extend(read_cosign_tags(repo, ref, subject))
        for referrer, why in skipped:
            found.append(
                FoundStatement(referrer, "", {}, frozenset(), referrer=referrer, parse_problem=why)
            )
        for s in stored:
            found.append(
                check_statement(
                    s.envelope, s.bundle, known, referrer=s.referrer, now=now, log_url=log_url
                )
            )
        checker = SigstoreChecker(identities, trusted_root)
        found.extend(check_bundle(b, subject, checker) for b in bundles)
        statements, logs, history_problem = _with_history(
            found, ref, subject, known, now=now, progress=progress
        )
        statements = _dated_from_referrers(repo, ref, subject, statements, now, log_url)
        versions = _other_versions(repo, ref, subject, statements)
    memory = load_memory(ref.repository)
    for digest, entry in memory.versions.items():
        if digest != subject and isinstance(entry.get("layers"), dict):
            versions.setdefault(digest, {str(k): str(v) for k, v in entry["layers"].items()})
    release = None
    if ref.tag is not None and publishers is not None:
        found = releases_in(
            (
                (s.predicate_type, s.predicate, s.signers, s.envelope_digest)
                for s in statements
                if s.usable and s.about(subject)
            ),
            publishers.keyids,
        )
        release = check_release(
            ref.repository,
            ref.tag,
            subject,
            found,
            load_release_memory(ref.repository),
            threshold=publishers.threshold,
            now=now,
            allow_rollback=allow_rollback,
        )
    return Evidence(
        reference=str(ref.with_digest(subject)),
        namespace=ref.namespace,
        name=ref.name,
        digest=subject,
        layers=layers,
        statements=tuple(statements),
        blob_problem=blob_problem,
        publishers=publishers,
        publisher_problem=publisher_problem,
        source_checks=check_sources(statements, subject, now),
        history_logs=tuple(logs),
        history_problem=history_problem,
        seen_signers=dict(memory.signers),
        versions=versions,
        release=release,
        tag=ref.tag,
        release_override_file=str(overrides_file()),
        names={i.id: i.label for i in identities},
    )


def _package_layers(package: VerifiedPackage) -> dict[str, str]:
    wl = package.layers
    return {"Motte.toml": wl.motte_toml.digest, wl.module_name: wl.module.digest}


def _layers(data: bytes, label: str) -> dict[str, str]:
    wl = workload_layers(Manifest.from_bytes(data, f"manifest of {label}"), f"manifest of {label}")
    return {"Motte.toml": wl.motte_toml.digest, wl.module_name: wl.module.digest}


def _publishers(
    namespace: str, trust_dir: Path | None, now: dt.datetime
) -> tuple[PublisherKeys | None, str | None, Sequence[PublicKey], Sequence[KeylessIdentity]]:
    try:
        pp = policy_for_namespace(namespace, trust_dir, now=now)
    except TrustRootError as e:
        return None, e.message, (), ()
    since: dict[str, int] = {}
    if pp.chain_dir is not None:
        from motte.sign import RootDocument, chain_files

        # The chain was verified just now (policy_for_namespace); here only its history
        # is read: which version first delegated the namespace to each key.
        for path in chain_files(pp.chain_dir):
            doc = RootDocument.from_bytes(path.read_bytes(), str(path))
            role = doc.signed.namespaces.get(namespace)
            for keyid in role.keyids if role else ():
                since.setdefault(keyid, doc.signed.version)
    keys = PublisherKeys(pp.ids, pp.threshold, pp.source, since)
    return keys, None, pp.keys, pp.identities


def check_bundle(b: StoredBundle, digest: str, checker: SigstoreChecker) -> FoundStatement:
    """A Sigstore bundle referrer as a statement: verified by sigstore-python for a trusted
    identity, or a note saying why it counts for nothing."""
    where = f"referrer {b.referrer}"
    try:
        v = checker.check(b.data, digest, where)
    except MotteError as e:
        why = e.message.removeprefix(f"{where}: ")
        return FoundStatement(b.digest, "", {}, frozenset(), referrer=b.referrer, parse_problem=why)
    assert v.identity is not None and v.issuer is not None
    ptype, predicate = statement_kind(v)
    subjects = frozenset({digest})
    if v.statement is not None:
        subjects = frozenset(
            f"{algo}:{value}"
            for sub in v.statement.get("subject") or []
            if isinstance(sub, dict) and isinstance(sub.get("digest"), dict)
            for algo, value in sub["digest"].items()
            if isinstance(value, str)
        )
    parse_problem = None
    parser = _PARSERS.get(ptype)
    if parser is not None:
        try:
            parser(predicate, f"{b.digest[:19]} predicate")
        except EnvelopeFormatError as e:
            parse_problem = e.message
    when = None if v.log_time is None else dt.datetime.fromtimestamp(v.log_time, dt.UTC)
    return FoundStatement(
        b.digest,
        ptype,
        predicate,
        subjects,
        signers=(KeylessIdentity(v.identity, v.issuer).id,),
        referrer=b.referrer,
        log=LogPlace(f"Rekor {v.log_id}", v.log_index, when),
        parse_problem=parse_problem,
    )


def check_statement(
    envelope: bytes,
    bundle: bytes | None,
    known: dict[str, PublicKey],
    *,
    referrer: str | None,
    now: dt.datetime,
    log_url: str | None = None,
    place: LogPlace | None = None,
) -> FoundStatement:
    """One statement's signatures (against ``known``), log inclusion and predicate, checked."""
    digest = "sha256:" + hashlib.sha256(envelope).hexdigest()
    try:
        env = Envelope.from_bytes(envelope, f"statement {digest[:19]}")
        if env.payload_type != INTOTO_PAYLOAD_TYPE:
            raise EnvelopeFormatError(f"payload type {env.payload_type} is not in-toto")
        statement = Statement.from_bytes(env.payload, f"statement {digest[:19]}")
    except EnvelopeFormatError as e:
        return FoundStatement(
            digest, "", {}, frozenset(), referrer=referrer, parse_problem=e.message
        )
    hinted = [sig.keyid for sig in env.signatures]
    try:
        verified = verify_envelope(env, known.values())
        signers = tuple(k.keyid for k in verified.keys)
        bad = verified.bad_keyids
    except SignatureError:
        signers, bad = (), tuple(k for k in hinted if k in known)
    unknown = tuple(k for k in hinted if k not in known and k not in signers)
    subjects = frozenset(d for s in statement.subject for d in s.digests())
    log, log_problem, checkpoint = place, None, None
    if log is None:
        if bundle is None:
            log_problem = "not in a transparency log (no inclusion proof)"
        else:
            try:
                ev = check_logged(envelope, bundle, now=now, log_url=log_url)
            except MotteError as e:
                log_problem = e.message
            else:
                when = None if ev.time is None else dt.datetime.fromtimestamp(ev.time, dt.UTC)
                log = LogPlace(ev.origin, ev.index, when)
                checkpoint = ev.checkpoint
    parse_problem = None
    parser = _PARSERS.get(statement.predicate_type)
    if parser is not None and signers:
        try:
            parser(statement.predicate, f"{digest[:19]} predicate")
        except EnvelopeFormatError as e:
            parse_problem = e.message
    return FoundStatement(
        digest,
        statement.predicate_type,
        statement.predicate,
        subjects,
        signers,
        unknown,
        bad,
        referrer,
        log,
        log_problem,
        parse_problem,
        checkpoint,
    )


def _with_history(
    found: list[FoundStatement],
    ref: Reference,
    digest: str,
    known: dict[str, PublicKey],
    *,
    now: dt.datetime,
    progress: Progress = NO_PROGRESS,
) -> tuple[list[FoundStatement], list[str], str | None]:
    """``found`` plus what the logs hold about the package; the logs read; why incomplete."""
    checkpoints = [s.checkpoint for s in found if s.checkpoint is not None]
    if not checkpoints:
        return found, [], "no statement about this package is in a log the policy trusts"
    history = read_history(checkpoints, ref.repository, digest, now=now, progress=progress)
    by_digest = {s.envelope_digest: i for i, s in enumerate(found)}
    out = list(found)
    for rec in history.records:
        env_digest = "sha256:" + hashlib.sha256(rec.envelope).hexdigest()
        if env_digest in by_digest:
            i = by_digest[env_digest]
            out[i] = _earlier(out[i], rec.place)
            continue
        by_digest[env_digest] = len(out)
        out.append(
            check_statement(rec.envelope, None, known, referrer=None, now=now, place=rec.place)
        )
    return out, history.logs, history.problem


def _earlier(s: FoundStatement, place: LogPlace) -> FoundStatement:
    """The statement with the earliest time known for it (a proof may be from a later tree)."""
    if s.log is None or place.time is None:
        return s
    if s.log.time is None or place.time < s.log.time:
        return replace(s, log=LogPlace(s.log.origin, s.log.index, place.time))
    return s


def _other_versions(
    repo: Repository, ref: Reference, digest: str, statements: list[FoundStatement]
) -> dict[str, dict[str, str]]:
    """Layers of the latest earlier publications of this package the repository still has."""
    pubs = sorted(
        (s for s in statements if s.predicate_type == PUBLICATION and s.log is not None),
        key=lambda s: s.log.index if s.log else 0,
        reverse=True,
    )
    out: dict[str, dict[str, str]] = {}
    for s in pubs:
        for d in sorted(s.subjects - {digest}):
            if d in out or len(out) >= MAX_OTHER_VERSIONS:
                continue
            try:
                _, data = repo.resolve(ref.with_digest(d))
                out[d] = _layers(data, f"{ref.repository}@{d}")
            except MotteError:
                continue  # gone from this repository: the consumer's memory may still know it
    return out


def _dated_from_referrers(
    repo: Repository,
    ref: Reference,
    digest: str,
    statements: list[FoundStatement],
    now: dt.datetime,
    log_url: str | None,
) -> list[FoundStatement]:
    """Times for statements read from a served log, from the proofs stored beside them.

    A served log's entries carry no time of their own; the same envelope stored as a
    referrer of its subject (another version of the package) carries its inclusion proof,
    whose checkpoint does. Bounded to :data:`MAX_OTHER_VERSIONS` subjects.
    """
    undated = {
        s.envelope_digest: i
        for i, s in enumerate(statements)
        if s.log is not None and s.log.time is None and s.usable
    }
    subjects = sorted({d for i in undated.values() for d in statements[i].subjects} - {digest})
    out = list(statements)
    for subject in subjects[:MAX_OTHER_VERSIONS]:
        try:
            stored = read_statements(repo, subject)
        except MotteError:
            continue
        for st in stored:
            i = undated.get("sha256:" + hashlib.sha256(st.envelope).hexdigest())
            place = out[i].log if i is not None else None
            if i is None or place is None or st.bundle is None:
                continue
            try:
                ev = check_logged(st.envelope, st.bundle, now=now, log_url=log_url)
            except MotteError:
                continue  # no better date; the statement itself was read from the log
            if ev.time is not None:
                when = dt.datetime.fromtimestamp(ev.time, dt.UTC)
                out[i] = replace(out[i], log=LogPlace(place.origin, place.index, when))
    return out
