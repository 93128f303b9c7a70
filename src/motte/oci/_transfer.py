"""Push and pull: copy a workload and its attestations between the store and a registry.

The source is read and checked first (the manifest by its digest, every referrer's manifest
by its digest and subject); then each blob streams from the source to the destination,
verified as it passes, and the manifests are written last, the workload's before its
referrers'. Pulling writes into a staging area of the local store that is committed only when
everything arrived intact, so an interrupted or tampered pull leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass

from motte.errors import MotteError
from motte.oci._errors import MalformedArtifactError
from motte.oci._layout import LocalStore
from motte.oci._limits import DEFAULT_LIMITS, Limits
from motte.oci._mediatypes import ATTESTATION_ARTIFACT, OCI_MANIFEST, SIGSTORE_BUNDLE_ARTIFACTS
from motte.oci._model import Descriptor, Manifest
from motte.oci._package import workload_layers
from motte.oci._progress import NO_PROGRESS, Progress
from motte.oci._reference import Reference
from motte.oci._repository import LocalRepository, Repository, Sink, open_repository


@dataclass(frozen=True, slots=True)
class TransferResult:
    source: str
    destination: str
    reference: Reference  # the destination reference, pinned to the digest
    digest: str
    blobs_copied: int
    blobs_present: int
    bytes_copied: int
    referrers: tuple[str, ...]  # digests of the attestation manifests copied


@dataclass(frozen=True, slots=True)
class _Referrer:
    desc: Descriptor
    data: bytes
    manifest: Manifest


def read_referrers(
    repo: Repository,
    subject: str,
    *,
    skipped: list[tuple[str, str]] | None = None,
    artifact_types: frozenset[str] = frozenset({ATTESTATION_ARTIFACT}),
) -> list[_Referrer]:
    """The attestation referrers of ``subject``, each manifest verified by digest and subject.

    Anyone who can push to the repository can attach a referrer, so one that cannot be read
    (not JSON, another subject, bytes that do not match its digest) is left out, never an
    error: a stranger's junk must not deny the genuine package. ``skipped`` collects
    (digest, why) for each one left out, for ``-v`` output.
    """
    out = []
    for listed in repo.referrers(subject):
        if listed.artifact_type not in artifact_types:
            continue  # another tool's referrer: not ours to copy or judge
        what = f"referrer {listed.digest} of {subject}"
        try:
            data = repo.manifest(listed, what)
            manifest = Manifest.from_bytes(data, what)
            if manifest.subject is None or manifest.subject.digest != subject:
                got = manifest.subject.digest if manifest.subject else "none"
                raise MalformedArtifactError(f"{what}: its subject is {got}, not {subject}")
        except MotteError as e:
            if skipped is not None:
                skipped.append((listed.digest, e.message))
            continue
        out.append(_Referrer(Descriptor(OCI_MANIFEST, listed.digest, len(data)), data, manifest))
    return out


def copy_artifact(
    src: Repository,
    dst: Repository,
    ref: Reference,
    *,
    tag: str | None,
    progress: Progress = NO_PROGRESS,
    verb: str = "copy",
) -> TransferResult:
    desc, data = src.resolve(ref)
    label = f"{ref.repository}@{desc.digest}"
    layers = workload_layers(
        Manifest.from_bytes(data, f"manifest of {label}"), f"manifest of {label}"
    )
    # Motte's statements and Sigstore bundles travel with the package; unreadable ones stay.
    referrers = read_referrers(
        src,
        desc.digest,
        artifact_types=frozenset({ATTESTATION_ARTIFACT, *SIGSTORE_BUNDLE_ARTIFACTS}),
    )

    copied = present = nbytes = 0
    with dst.session() as sink:

        def copy_blob(blob: Descriptor, what: str, bar: str | None = None) -> None:
            nonlocal copied, present, nbytes
            if sink.has_blob(blob.digest):
                present += 1
                return
            # A bar only for the module: the other blobs are a few hundred bytes.
            with (progress if bar else NO_PROGRESS).task(f"{verb} {bar}", blob.size) as advance:
                sink.put_blob(blob, src.iter_blob(blob, what), what, advance=advance)
            copied += 1
            nbytes += blob.size

        copy_blob(layers.config, f"config of {label}")
        copy_blob(layers.motte_toml, f"Motte.toml of {label}")
        copy_blob(layers.module, f"{layers.module_name} of {label}", layers.module_name)
        sink.put_manifest(desc, data, tag=tag)
        for r in referrers:
            for i, blob in enumerate((r.manifest.config, *r.manifest.layers)):
                copy_blob(blob, f"referrer {r.desc.digest} blob {i}")
            _put_referrer(sink, r, desc.digest)

    dst_ref = Reference(ref.namespace, ref.name, tag, desc.digest, dst.ref.registry, dst.ref.scheme)
    return TransferResult(
        src.location,
        dst.location,
        dst_ref,
        desc.digest,
        copied,
        present,
        nbytes,
        tuple(r.desc.digest for r in referrers),
    )


def _put_referrer(sink: Sink, r: _Referrer, subject: str) -> None:
    sink.put_manifest(r.desc, r.data, subject=subject)


def push(
    ref: Reference,
    *,
    store: LocalStore | None = None,
    allow_insecure_http: bool = False,
    progress: Progress = NO_PROGRESS,
    limits: Limits = DEFAULT_LIMITS,
) -> TransferResult:
    """Push the local artifact named like ``ref`` (registry dropped) to ``ref``'s registry."""
    _need_registry(ref, "push")
    local = LocalRepository(ref, store)
    with open_repository(ref, allow_insecure_http=allow_insecure_http, limits=limits) as remote:
        return copy_artifact(
            local,
            remote,
            ref.local(),
            tag=ref.tag if not ref.digest else None,
            progress=progress,
            verb="push",
        )


def pull(
    ref: Reference,
    *,
    store: LocalStore | None = None,
    allow_insecure_http: bool = False,
    progress: Progress = NO_PROGRESS,
    limits: Limits = DEFAULT_LIMITS,
) -> TransferResult:
    """Pull ``ref`` and its attestations into the local store (tagged there as in ``ref``)."""
    _need_registry(ref, "pull")
    local = LocalRepository(ref, store)
    with open_repository(ref, allow_insecure_http=allow_insecure_http, limits=limits) as remote:
        return copy_artifact(
            remote,
            local,
            ref,
            tag=ref.tag if not ref.digest else None,
            progress=progress,
            verb="pull",
        )


def _need_registry(ref: Reference, verb: str) -> None:
    if ref.is_local:
        from motte.oci._errors import ReferenceSyntaxError

        raise ReferenceSyntaxError(
            f"{verb} {ref}: names no registry",
            hint=f"write REGISTRY/{ref.repository}:TAG, e.g. http://127.0.0.1:5000/{ref.repository}",
        )
