"""The local store: an OCI image layout (image-spec 1.0 ``image-layout.md``) under MOTTE_HOME.

    oci/oci-layout            {"imageLayoutVersion": "1.0.0"}
    oci/index.json            one descriptor per tag (ref.name = "namespace/name:tag"), plus
                              untagged manifests (pulled by digest) and referrers
    oci/blobs/sha256/<hex>    content, named by its digest
    oci/ingest/               staging for writes in progress (not part of the layout)

Writes are staged: every blob of a package or pull is streamed into ``ingest/<id>/`` and
verified against its digest there; only when all have arrived are they moved into ``blobs/``
and ``index.json`` rewritten (atomically, under a lock). An interrupted pull leaves nothing
in the layout. Reads verify digests too, so a file changed on disk is caught and named.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from motte.fsutil import atomic_write_bytes, fsync_dir
from motte.home import motte_home
from motte.oci._digest import DigestVerifier, digest_hex, verify_bytes
from motte.oci._errors import ArtifactNotFoundError, MalformedArtifactError, TooLargeError
from motte.oci._limits import DEFAULT_LIMITS, Limits
from motte.oci._mediatypes import ANN_REF_NAME
from motte.oci._model import Descriptor, Index

LAYOUT_VERSION = b'{"imageLayoutVersion":"1.0.0"}'
#: index.json annotation on a referrer's entry: the digest its manifest's subject names, so
#: listing referrers reads only candidates (the manifest itself is still checked).
ANN_SUBJECT = "dev.motte.subject"
_CHUNK = 1 << 20
_STALE_INGEST_SECONDS = 24 * 3600


def default_store_path() -> Path:
    return motte_home() / "oci"


class LocalStore:
    """An OCI image layout directory; created on first write."""

    def __init__(self, root: Path | None = None, *, limits: Limits = DEFAULT_LIMITS) -> None:
        self.root = Path(root) if root is not None else default_store_path()
        self.limits = limits

    # -- reading ---------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / digest_hex(digest)

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def read_blob(self, desc: Descriptor, what: str, *, limit: int | None = None) -> bytes:
        """The blob's bytes, checked against ``desc`` (size first, then digest)."""
        limit = self.limits.max_small_blob_bytes if limit is None else limit
        if desc.size > limit:
            raise TooLargeError(f"{what}: {desc.size} bytes is over the {limit}-byte limit")
        path = self.blob_path(desc.digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactNotFoundError(
                f"{what}: blob {desc.digest} is not in the local store {self.root}",
                hint="pull the artifact again",
            ) from None
        return verify_bytes(data, desc.digest, desc.size, what)

    def iter_blob(
        self, desc: Descriptor, what: str, *, limit: int, advance: Callable[[int], None]
    ) -> Iterator[bytes]:
        """Stream the blob in chunks; raises after the last chunk if it does not verify."""
        verifier = DigestVerifier(desc.digest, desc.size, what, limit=limit)
        try:
            f = self.blob_path(desc.digest).open("rb")
        except FileNotFoundError:
            raise ArtifactNotFoundError(
                f"{what}: blob {desc.digest} is not in the local store {self.root}"
            ) from None
        with f:
            while chunk := f.read(_CHUNK):
                verifier.update(chunk)
                advance(len(chunk))
                yield chunk
        verifier.finish()

    def index(self) -> Index:
        path = self.root / "index.json"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return Index(())
        return Index.from_bytes(data, str(path))

    def resolve_tag(self, repository: str, tag: str) -> Descriptor:
        ref_name = f"{repository}:{tag}"
        for desc in self.index().manifests:
            if desc.annotations.get(ANN_REF_NAME) == ref_name:
                return desc
        raise ArtifactNotFoundError(
            f"{ref_name}: no such tag in the local store {self.root}",
            hint="motte package DIR --tag ... creates one; motte pull fetches one",
        )

    def find_manifest(self, digest: str) -> Descriptor:
        """The index entry for ``digest`` (any name), or a descriptor built from the blob."""
        for desc in self.index().manifests:
            if desc.digest == digest:
                return desc
        path = self.blob_path(digest)
        if not path.is_file():
            raise ArtifactNotFoundError(f"{digest}: not in the local store {self.root}")
        from motte.oci._mediatypes import OCI_MANIFEST

        return Descriptor(OCI_MANIFEST, digest, path.stat().st_size)

    def referrers(self, digest: str) -> list[Descriptor]:
        found = [d for d in self.index().manifests if d.annotations.get(ANN_SUBJECT) == digest]
        if len(found) > self.limits.max_referrers:
            raise TooLargeError(
                f"{digest}: {len(found)} referrers, over the {self.limits.max_referrers} limit"
            )
        return found

    def tags(self) -> list[tuple[str, Descriptor]]:
        out = []
        for desc in self.index().manifests:
            name = desc.annotations.get(ANN_REF_NAME)
            if name:
                out.append((name, desc))
        return sorted(out, key=lambda item: item[0])

    # -- writing ---------------------------------------------------------------------------

    def _ensure_layout(self) -> None:
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "ingest").mkdir(exist_ok=True)
        marker = self.root / "oci-layout"
        if not marker.exists():
            atomic_write_bytes(marker, LAYOUT_VERSION)
        else:
            try:
                version = json.loads(marker.read_bytes()).get("imageLayoutVersion")
            except (ValueError, AttributeError):
                version = None
            if version != "1.0.0":
                raise MalformedArtifactError(f"{marker}: not an OCI image layout version 1.0.0")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.root / ".lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def staging(self) -> Iterator[Staging]:
        """Stage writes; they reach the layout only if the block completes without error."""
        self._ensure_layout()
        self._sweep_stale_ingest()
        tmp = Path(tempfile.mkdtemp(prefix="stage-", dir=self.root / "ingest"))
        stage = Staging(self, tmp)
        try:
            yield stage
            stage._commit()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _sweep_stale_ingest(self) -> None:
        """Remove staging left by a process killed mid-write (older than a day, so not live)."""
        cutoff = time.time() - _STALE_INGEST_SECONDS
        for entry in (self.root / "ingest").iterdir():
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < cutoff:
                    shutil.rmtree(entry, ignore_errors=True)

    def _update_index(self, additions: list[Descriptor]) -> None:
        with self._locked():
            current = list(self.index().manifests)
            for desc in additions:
                name = desc.annotations.get(ANN_REF_NAME)
                if name is not None:
                    current = [d for d in current if d.annotations.get(ANN_REF_NAME) != name]
                elif any(
                    d.digest == desc.digest and d.annotations.get(ANN_REF_NAME) is None
                    for d in current
                ):
                    continue
                current.append(desc)
            atomic_write_bytes(self.root / "index.json", Index(tuple(current)).to_bytes())


class Staging:
    """Blobs and index entries waiting to be committed to a :class:`LocalStore`."""

    def __init__(self, store: LocalStore, tmp: Path) -> None:
        self.store = store
        self._tmp = tmp
        self._blobs: dict[str, Path] = {}
        self._entries: list[Descriptor] = []

    def has_blob(self, digest: str) -> bool:
        return digest in self._blobs or self.store.has_blob(digest)

    def write_blob(
        self,
        desc: Descriptor,
        chunks: Iterable[bytes],
        what: str,
        *,
        limit: int,
        advance: Callable[[int], None] = lambda n: None,
    ) -> None:
        """Stream ``chunks`` to a staging file, verifying size and digest as they arrive."""
        if desc.size > limit:
            raise TooLargeError(f"{what}: {desc.size} bytes is over the {limit}-byte limit")
        if self.has_blob(desc.digest):
            return
        verifier = DigestVerifier(desc.digest, desc.size, what, limit=limit)
        path = self._tmp / digest_hex(desc.digest)
        with path.open("wb") as f:
            for chunk in chunks:
                verifier.update(chunk)
                f.write(chunk)
                advance(len(chunk))
            verifier.finish()
            f.flush()
            os.fsync(f.fileno())
        self._blobs[desc.digest] = path

    def ingest(
        self,
        media_type: str,
        chunks: Iterable[bytes],
        what: str,
        *,
        limit: int,
        advance: Callable[[int], None] = lambda n: None,
    ) -> Descriptor:
        """Stage content whose digest is not known yet (local input being packaged).

        One pass: the bytes are hashed as they are written, so the digest names exactly the
        bytes staged, however the source changes meanwhile.
        """
        import hashlib

        h = hashlib.sha256()
        size = 0
        fd, name = tempfile.mkstemp(prefix="ingest-", dir=self._tmp)
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise TooLargeError(f"{what}: larger than the {limit}-byte limit")
                h.update(chunk)
                f.write(chunk)
                advance(len(chunk))
            f.flush()
            os.fsync(f.fileno())
        desc = Descriptor(media_type, "sha256:" + h.hexdigest(), size)
        if self.has_blob(desc.digest):
            os.unlink(name)
        else:
            final = self._tmp / digest_hex(desc.digest)
            os.replace(name, final)
            self._blobs[desc.digest] = final
        return desc

    def write_bytes(self, desc: Descriptor, data: bytes, what: str) -> None:
        self.write_blob(desc, [data], what, limit=max(desc.size, 0) or 1)

    def add_entry(self, desc: Descriptor) -> None:
        """Record ``desc`` in index.json at commit (tagged by its ref.name annotation or not)."""
        self._entries.append(desc)

    def _commit(self) -> None:
        blob_dir = self.store.root / "blobs" / "sha256"
        for digest, path in self._blobs.items():
            os.chmod(path, 0o644)
            os.replace(path, blob_dir / digest_hex(digest))
        if self._blobs:
            fsync_dir(blob_dir)
        if self._entries:
            self.store._update_index(self._entries)
