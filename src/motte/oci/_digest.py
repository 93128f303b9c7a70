"""Digests as the OCI code checks them: each failure an :class:`OciError` naming what.

The digest itself (``sha256:<64 lowercase hex>``, computed and recognised) is the base
layer's, :mod:`motte._digest`; this module adds what a registry client needs on top: a
digest field checked where it was read, and bytes or a stream checked against the size and
digest that named them.
"""

from __future__ import annotations

import hashlib

from motte._digest import digest_hex, is_digest, sha256_digest
from motte.oci._errors import DigestMismatchError, MalformedArtifactError, TooLargeError

__all__ = [
    "DigestVerifier",
    "check_digest",
    "digest_hex",
    "is_digest",
    "sha256_digest",
    "verify_bytes",
]


def check_digest(text: object, where: str) -> str:
    """``text`` if it is a well-formed sha256 digest, else a MalformedArtifactError naming where."""
    if not isinstance(text, str) or not is_digest(text):
        algo = text.split(":", 1)[0] if isinstance(text, str) and ":" in text else None
        reason = (
            f"digest algorithm {algo!r} is not supported (only sha256)"
            if algo and algo != "sha256"
            else f"not a sha256 digest: {text!r}"
        )
        raise MalformedArtifactError(f"{where}: {reason}")
    return text


def verify_bytes(data: bytes, digest: str, size: int | None, what: str) -> bytes:
    """``data`` when it has ``size`` bytes and hashes to ``digest``; raises naming ``what``."""
    if size is not None and len(data) != size:
        raise DigestMismatchError(what, f"{size} bytes", f"{len(data)} bytes")
    actual = sha256_digest(data)
    if actual != digest:
        raise DigestMismatchError(what, digest, actual)
    return data


class DigestVerifier:
    """Hash a stream as it passes; :meth:`finish` raises unless size and digest match.

    The size bound is checked on every chunk, so a peer that sends more than it announced (or
    more than ``limit``) is cut off as soon as it overruns, not after filling the disk.
    """

    def __init__(self, digest: str, size: int | None, what: str, *, limit: int) -> None:
        self.digest = digest
        self.size = size
        self.what = what
        self.limit = limit if size is None else min(limit, size)
        self._hash = hashlib.sha256()
        self.received = 0

    def update(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.limit:
            if self.size is not None and self.received > self.size:
                raise DigestMismatchError(
                    self.what, f"{self.size} bytes", f"more than {self.size} bytes"
                )
            raise TooLargeError(f"{self.what}: larger than the {self.limit}-byte limit")
        self._hash.update(chunk)

    def finish(self) -> None:
        if self.size is not None and self.received != self.size:
            raise DigestMismatchError(self.what, f"{self.size} bytes", f"{self.received} bytes")
        actual = "sha256:" + self._hash.hexdigest()
        if actual != self.digest:
            raise DigestMismatchError(self.what, self.digest, actual)
