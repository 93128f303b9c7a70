"""The one way motte names bytes by their content: ``sha256:<64 lowercase hex>``.

The same string names a workload in manifests, an OCI blob or manifest in a registry, the
subject of a signed statement, and the workload in attestation evidence and a Keep's
certificate, so it is computed in exactly one place (:func:`sha256_digest`, also called
:func:`workload_digest` where it names a workload) and checked in exactly one place
(:func:`check_digest`). Only SHA-256 is offered: it is what every registry and tool must
support, and a second algorithm would be a second way to get verification wrong.

This is the base layer: it imports no motte package, and each package raises its own error
kind around :func:`check_digest`'s ``ValueError``.
"""

from __future__ import annotations

import hashlib
import os
import re

DIGEST_ALGORITHM = "sha256"
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


def sha256_digest(data: bytes | memoryview) -> str:
    """The digest of ``data``, exactly as given."""
    return f"{DIGEST_ALGORITHM}:{hashlib.sha256(data).hexdigest()}"


#: A workload (a module or component, exactly as stored) is named by :func:`sha256_digest`.
workload_digest = sha256_digest


def file_digest(path: str | os.PathLike[str]) -> str:
    """:func:`sha256_digest` of a file's content, read in chunks."""
    with open(path, "rb") as f:
        return f"{DIGEST_ALGORITHM}:{hashlib.file_digest(f, 'sha256').hexdigest()}"


def is_digest(text: object) -> bool:
    """True when ``text`` is exactly ``sha256:`` and 64 lowercase hex digits."""
    return isinstance(text, str) and _DIGEST_RE.fullmatch(text) is not None


def check_digest(text: str) -> str:
    """Return ``text`` if it is a well-formed digest, else raise ``ValueError`` saying why."""
    if is_digest(text):
        return text
    algorithm, sep, hexpart = text.partition(":")
    if not sep:
        raise ValueError(f"{text!r} is not a digest: expected sha256:<64 hex digits>")
    if algorithm != DIGEST_ALGORITHM:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}: only sha256 is accepted")
    if len(hexpart) != 64:
        raise ValueError(f"a sha256 digest has 64 hex digits, {text!r} has {len(hexpart)}")
    raise ValueError(f"{text!r} is not a digest: use lowercase hex digits 0-9a-f")


def digest_hex(digest: str) -> str:
    """``sha256:abc...`` -> ``abc...``."""
    return digest.split(":", 1)[1]
