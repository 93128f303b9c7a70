"""The one way motte names a workload by its content: ``sha256:<64 lowercase hex>``.

The same string appears in manifests, OCI references, attestation evidence and the Keep's
certificate, so it is computed in exactly one place (:func:`workload_digest`) and checked in
exactly one place (:func:`check_digest`).
"""

from __future__ import annotations

import hashlib
import os
import re

DIGEST_ALGORITHM = "sha256"
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")


def workload_digest(data: bytes) -> str:
    """The digest of a workload's bytes (a module or component, exactly as stored)."""
    return f"{DIGEST_ALGORITHM}:{hashlib.sha256(data).hexdigest()}"


def file_digest(path: str | os.PathLike[str]) -> str:
    """:func:`workload_digest` of a file's content, read in chunks."""
    with open(path, "rb") as f:
        return f"{DIGEST_ALGORITHM}:{hashlib.file_digest(f, 'sha256').hexdigest()}"


def is_digest(text: str) -> bool:
    """True when ``text`` is exactly ``sha256:`` and 64 lowercase hex digits."""
    return _DIGEST_RE.fullmatch(text) is not None


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
