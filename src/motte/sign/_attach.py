"""Signed statements stored beside the artifact, as OCI referrers.

Each statement is one referrer: an image manifest with ``artifactType``
``application/vnd.in-toto+json``, the empty config, the DSSE envelope as layer 0 and its
transparency-log inclusion bundle as layer 1, and ``subject`` = the workload manifest. Its
annotations repeat the predicate type and signing keyids so listings can be filtered without
downloading (they are hints; the envelope is what is verified).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from motte.errors import MotteError
from motte.oci import (
    Attachment,
    Descriptor,
    MalformedArtifactError,
    Manifest,
    Repository,
    read_attachments,
)
from motte.oci import mediatypes as mt
from motte.sign._predicates import rfc3339


@dataclass(frozen=True, slots=True)
class StoredStatement:
    """A referrer's envelope and proof, each checked against the digest that names it."""

    referrer: str  # digest of the referrer manifest
    envelope: bytes
    bundle: bytes | None
    predicate_type_hint: str | None


def referrer_manifest(
    subject: Descriptor,
    envelope: bytes,
    bundle: bytes | None,
    *,
    predicate_type: str,
    keyids: list[str],
    now: dt.datetime,
) -> tuple[Manifest, list[tuple[Descriptor, bytes]]]:
    blobs = [(Descriptor.of(mt.OCI_EMPTY, mt.OCI_EMPTY_BYTES), mt.OCI_EMPTY_BYTES)]
    layers = [Descriptor.of(mt.DSSE_ENVELOPE_LAYER, envelope)]
    blobs.append((layers[0], envelope))
    if bundle is not None:
        layers.append(Descriptor.of(mt.TLOG_PROOF_LAYER, bundle))
        blobs.append((layers[1], bundle))
    manifest = Manifest(
        config=blobs[0][0],
        layers=tuple(layers),
        artifact_type=mt.ATTESTATION_ARTIFACT,
        subject=Descriptor(subject.media_type, subject.digest, subject.size),
        annotations={
            mt.ANN_PREDICATE_TYPE: predicate_type,
            mt.ANN_KEYIDS: ",".join(keyids),
            mt.ANN_CREATED: rfc3339(now),
        },
    )
    return manifest, blobs


def attach_statement(
    repo: Repository,
    subject: Descriptor,
    envelope: bytes,
    bundle: bytes | None,
    *,
    predicate_type: str,
    keyids: list[str],
    now: dt.datetime,
) -> Descriptor:
    """Store the envelope (and proof) as a referrer of ``subject``; return its descriptor."""
    manifest, blobs = referrer_manifest(
        subject, envelope, bundle, predicate_type=predicate_type, keyids=keyids, now=now
    )
    data = manifest.to_bytes()
    desc = Descriptor.of(mt.OCI_MANIFEST, data)
    with repo.session() as sink:
        for blob_desc, blob in blobs:
            if not sink.has_blob(blob_desc.digest):
                sink.put_blob(
                    blob_desc,
                    iter([blob]),
                    f"referrer blob {blob_desc.digest}",
                    advance=lambda n: None,
                )
        sink.put_manifest(desc, data, subject=subject.digest)
    return desc


def read_statements(
    repo: Repository, subject: str, *, skipped: list[tuple[str, str]] | None = None
) -> list[StoredStatement]:
    """Every readable motte attestation referrer of ``subject``, its blobs verified by digest.

    A referrer that cannot be read (layers that are not an envelope and a proof, a blob that
    does not match its digest) is left out and, with ``skipped``, reported as (digest, why):
    anyone with push access can attach one, and only statements that verify may decide.
    """
    return stored_statements(read_attachments(repo, subject, skipped=skipped), skipped=skipped)


def stored_statements(
    attachments: Iterable[Attachment], *, skipped: list[tuple[str, str]] | None = None
) -> list[StoredStatement]:
    """The statements among a package's verified referrers (``VerifiedPackage.attachments``),
    without I/O: their bytes were checked when they were read. One that is not an envelope
    (and a proof) is left out and, with ``skipped``, reported as (digest, why)."""
    out = []
    for a in attachments:
        what = f"referrer {a.descriptor.digest}"
        layers = a.manifest.layers
        try:
            if not layers or layers[0].media_type != mt.DSSE_ENVELOPE_LAYER:
                raise MalformedArtifactError(f"{what}: layer 0 is not a DSSE envelope")
            if len(layers) > 2 or (
                len(layers) == 2 and layers[1].media_type != mt.TLOG_PROOF_LAYER
            ):
                raise MalformedArtifactError(f"{what}: unexpected layers after the envelope")
        except MotteError as e:
            if skipped is not None:
                skipped.append((a.descriptor.digest, e.message))
            continue
        bundle = a.layers[1] if len(layers) == 2 else None
        out.append(
            StoredStatement(
                a.descriptor.digest,
                a.layers[0],
                bundle,
                a.manifest.annotations.get(mt.ANN_PREDICATE_TYPE),
            )
        )
    return out
