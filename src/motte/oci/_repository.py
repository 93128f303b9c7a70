"""One interface over the local store and a registry, so push, pull, sign and verify are
written once: resolve a reference, read verified manifests and blobs, list referrers, write.

A tag is resolved once, here, to a digest; everything after uses the digest. Every read is
checked against the digest that named it, whichever side it came from.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

from motte.oci._digest import DigestVerifier, sha256_digest, verify_bytes
from motte.oci._errors import DigestMismatchError, MalformedArtifactError
from motte.oci._layout import ANN_SUBJECT, LocalStore, Staging
from motte.oci._limits import DEFAULT_LIMITS, Limits
from motte.oci._mediatypes import ANN_REF_NAME, OCI_INDEX, OCI_MANIFEST
from motte.oci._model import Descriptor, Manifest, referrer_descriptor
from motte.oci._reference import Reference

if TYPE_CHECKING:
    from motte.oci._registry import RegistryClient

Advance = Callable[[int], None]


def _nothing(n: int) -> None:
    return None


class Sink(Protocol):
    """The write side of a repository, open for one batch of writes."""

    def has_blob(self, digest: str) -> bool: ...

    def put_blob(
        self, desc: Descriptor, chunks: Iterator[bytes], what: str, *, advance: Advance
    ) -> None: ...

    def put_manifest(
        self, desc: Descriptor, data: bytes, *, tag: str | None = None, subject: str | None = None
    ) -> None: ...


class Repository:
    """``namespace/name`` in the local store or in a registry."""

    ref: Reference
    limits: Limits

    @property
    def location(self) -> str:
        return str(
            Reference(
                self.ref.namespace, self.ref.name, None, None, self.ref.registry, self.ref.scheme
            )
        )

    def resolve(self, ref: Reference) -> tuple[Descriptor, bytes]:
        """The manifest's descriptor (digest computed from the bytes) and its verified bytes."""
        raise NotImplementedError

    def manifest(self, desc: Descriptor, what: str) -> bytes:
        raise NotImplementedError

    def blob(self, desc: Descriptor, what: str) -> bytes:
        """A blob's bytes in memory, verified (bounded by the limit for its media type)."""
        raise NotImplementedError

    def iter_blob(
        self, desc: Descriptor, what: str, *, advance: Advance = _nothing
    ) -> Iterator[bytes]:
        """A blob in chunks; the iterator raises after the last chunk unless it verified."""
        raise NotImplementedError

    def referrers(self, digest: str) -> list[Descriptor]:
        raise NotImplementedError

    def session(self) -> contextlib.AbstractContextManager[Sink]:
        raise NotImplementedError

    def close(self) -> None:
        return None

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalRepository(Repository):
    def __init__(self, ref: Reference, store: LocalStore | None = None) -> None:
        self.ref = ref.local()
        self.store = store or LocalStore()
        self.limits = self.store.limits

    @property
    def location(self) -> str:
        return f"{self.ref.repository} (local store {self.store.root})"

    def resolve(self, ref: Reference) -> tuple[Descriptor, bytes]:
        if ref.digest is not None:
            desc = self.store.find_manifest(ref.digest)
            what = f"manifest {ref.digest}"
        else:
            assert ref.tag is not None
            desc = self.store.resolve_tag(ref.repository, ref.tag)
            what = f"manifest of {ref.repository}:{ref.tag}"
        data = self.store.read_blob(desc, what, limit=self.limits.max_manifest_bytes)
        return Descriptor(desc.media_type, desc.digest, len(data)), data

    def manifest(self, desc: Descriptor, what: str) -> bytes:
        return self.store.read_blob(desc, what, limit=self.limits.max_manifest_bytes)

    def blob(self, desc: Descriptor, what: str) -> bytes:
        # One read and one hash of the whole file: the module is loaded whole anyway.
        return self.store.read_blob(desc, what, limit=self.limits.blob_limit(desc.media_type))

    def iter_blob(
        self, desc: Descriptor, what: str, *, advance: Advance = _nothing
    ) -> Iterator[bytes]:
        return self.store.iter_blob(
            desc, what, limit=self.limits.blob_limit(desc.media_type), advance=advance
        )

    def referrers(self, digest: str) -> list[Descriptor]:
        return self.store.referrers(digest)

    @contextlib.contextmanager
    def session(self) -> Iterator[Sink]:
        with self.store.staging() as staging:
            yield _LocalSink(staging, self.ref)


class _LocalSink:
    def __init__(self, staging: Staging, ref: Reference) -> None:
        self._staging = staging
        self._ref = ref

    def has_blob(self, digest: str) -> bool:
        return self._staging.has_blob(digest)

    def put_blob(
        self, desc: Descriptor, chunks: Iterator[bytes], what: str, *, advance: Advance
    ) -> None:
        limit = self._staging.store.limits.blob_limit(desc.media_type)
        self._staging.write_blob(desc, chunks, what, limit=limit, advance=advance)

    def put_manifest(
        self, desc: Descriptor, data: bytes, *, tag: str | None = None, subject: str | None = None
    ) -> None:
        self._staging.write_blob(
            desc, iter([data]), f"manifest {desc.digest}", limit=len(data) or 1
        )
        if subject is not None:
            manifest = Manifest.from_bytes(data, f"referrer {desc.digest}")
            entry = referrer_descriptor(data, manifest)
            entry.annotations[ANN_SUBJECT] = subject
            self._staging.add_entry(entry)
        elif tag is not None:
            annotations = {ANN_REF_NAME: f"{self._ref.repository}:{tag}"}
            self._staging.add_entry(
                Descriptor(desc.media_type, desc.digest, desc.size, desc.artifact_type, annotations)
            )
        else:
            self._staging.add_entry(Descriptor(desc.media_type, desc.digest, desc.size))


class RemoteRepository(Repository):
    def __init__(self, client: RegistryClient) -> None:
        self.client = client
        self.ref = client.ref
        self.limits = client.limits

    def close(self) -> None:
        self.client.close()

    def resolve(self, ref: Reference) -> tuple[Descriptor, bytes]:
        reference = ref.digest or ref.tag
        assert reference is not None
        data, media_type = self.client.get_manifest(reference, f"manifest of {self.location}")
        digest = sha256_digest(data)
        if ref.digest is not None and digest != ref.digest:
            raise DigestMismatchError(f"manifest {ref.repository}@{ref.digest}", ref.digest, digest)
        if media_type == OCI_INDEX:
            raise MalformedArtifactError(f"{ref}: is an image index, not a motte workload manifest")
        return Descriptor(OCI_MANIFEST, digest, len(data)), data

    def manifest(self, desc: Descriptor, what: str) -> bytes:
        data, _ = self.client.get_manifest(desc.digest, what)
        return verify_bytes(data, desc.digest, desc.size, what)

    def blob(self, desc: Descriptor, what: str) -> bytes:
        return b"".join(self.iter_blob(desc, what))

    def iter_blob(
        self, desc: Descriptor, what: str, *, advance: Advance = _nothing
    ) -> Iterator[bytes]:
        verifier = DigestVerifier(
            desc.digest, desc.size, what, limit=self.limits.blob_limit(desc.media_type)
        )
        for chunk in self.client.iter_blob(desc, what):
            verifier.update(chunk)
            advance(len(chunk))
            yield chunk
        verifier.finish()

    def referrers(self, digest: str) -> list[Descriptor]:
        return self.client.referrers(digest)

    @contextlib.contextmanager
    def session(self) -> Iterator[Sink]:
        yield _RemoteSink(self.client)


class _RemoteSink:
    def __init__(self, client: RegistryClient) -> None:
        self._client = client
        self._known: set[str] = set()

    def has_blob(self, digest: str) -> bool:
        if digest in self._known:
            return True
        found = self._client.has_blob(digest)
        if found:
            self._known.add(digest)
        return found

    def put_blob(
        self, desc: Descriptor, chunks: Iterator[bytes], what: str, *, advance: Advance
    ) -> None:
        self._client.upload_blob(desc, chunks, what, advance=advance)
        self._known.add(desc.digest)

    def put_manifest(
        self, desc: Descriptor, data: bytes, *, tag: str | None = None, subject: str | None = None
    ) -> None:
        response = self._client.put_manifest(data, desc.media_type, tag or desc.digest)
        if subject is not None and response.headers.get("oci-subject") != subject:
            # No OCI-Subject header: the registry keeps no referrers list, so the client
            # maintains the referrers tag schema index (distribution-spec, "Pushing Manifests
            # with Subject").
            manifest = Manifest.from_bytes(data, f"referrer {desc.digest}")
            self._client.add_referrer_to_tag_schema(subject, referrer_descriptor(data, manifest))


def open_repository(
    ref: Reference,
    *,
    store: LocalStore | None = None,
    allow_insecure_http: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> Repository:
    """The repository ``ref`` names: the local store, or a registry (HTTP client opened)."""
    if ref.is_local:
        return LocalRepository(ref, store)
    from motte.oci._registry import RegistryClient

    client = RegistryClient(ref, allow_insecure_http=allow_insecure_http, limits=limits)
    return RemoteRepository(client)
