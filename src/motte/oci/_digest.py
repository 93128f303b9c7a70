"""Content digests, written ``sha256:<64 lowercase hex>`` everywhere.

Only SHA-256 is offered: it is what every registry and tool must support, and a second
algorithm would be a second way to get verification wrong.
"""

from __future__ import annotations

import hashlib
import re

from motte.oci._errors import DigestMismatchError, MalformedArtifactError, TooLargeError

_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_digest(text: str) -> bool:
    return _DIGEST_RE.fullmatch(text) is not None


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


def digest_hex(digest: str) -> str:
    return digest.split(":", 1)[1]


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
