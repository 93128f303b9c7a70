"""REPORT_DATA binding: the one definition Keep and Steward share.

A Keep asks its TEE for evidence whose 64-byte REPORT_DATA is :func:`bind_report_data` of
its fresh public key, the digest of the workload it will run, and the verifier's nonce. The
Steward recomputes the value from the CSR's key, the workload digest it was asked to certify
and the nonce it issued, and passes it as ``report_data=`` to
:func:`motte.attest.verify_evidence`. So the evidence proves three things at once: this key
lives in this TEE, it was made to run this workload, and it is fresh.

Encoding (version 1), hashed with SHA-512 (64 bytes, exactly REPORT_DATA's size)::

    "motte/report-data/v1" || 0x00
    || u32be(len(spki))   || spki     (DER SubjectPublicKeyInfo)
    || u32be(len(digest)) || digest   (ASCII "sha256:<64 hex>", the OCI digest string)
    || u32be(len(nonce))  || nonce    (16 to 64 bytes)

Length prefixes make the encoding injective (no two inputs share bytes), and the domain tag
keeps the hash from meaning anything in another protocol.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

REPORT_DATA_DOMAIN = b"motte/report-data/v1\x00"
MIN_NONCE = 16
MAX_NONCE = 64
_DIGEST_RE = re.compile(r"^(sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128})$")


def bind_report_data(
    public_key: bytes | PublicKeyTypes, workload_digest: str, nonce: bytes
) -> bytes:
    """The 64-byte REPORT_DATA binding a key, a workload digest and a nonce.

    ``public_key`` is DER SubjectPublicKeyInfo bytes or a `cryptography` public key;
    ``workload_digest`` an OCI digest string ("sha256:..."); ``nonce`` 16-64 random bytes
    from the verifier. Raises ValueError on malformed arguments (a caller bug).
    """
    if isinstance(public_key, bytes | bytearray):
        spki = bytes(public_key)
    else:
        from cryptography.hazmat.primitives import serialization

        spki = public_key.public_bytes(  # type: ignore[union-attr]
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    if not spki or spki[0] != 0x30:
        raise ValueError("public_key must be a DER SubjectPublicKeyInfo")
    if not isinstance(workload_digest, str) or not _DIGEST_RE.match(workload_digest):
        raise ValueError(f"workload_digest must be 'sha256:<64 hex>', not {workload_digest!r}")
    if not isinstance(nonce, bytes) or not MIN_NONCE <= len(nonce) <= MAX_NONCE:
        raise ValueError(f"nonce must be {MIN_NONCE} to {MAX_NONCE} bytes")
    h = hashlib.sha512(REPORT_DATA_DOMAIN)
    for part in (spki, workload_digest.encode("ascii"), nonce):
        h.update(len(part).to_bytes(4, "big"))
        h.update(part)
    return h.digest()


def expected_report_data(value: bytes) -> bytes:
    """``value`` zero-padded to 64 bytes (Enarx puts a 32/48-byte hash first, zeros after)."""
    if len(value) > 64:
        raise ValueError(f"REPORT_DATA is 64 bytes; {len(value)} given")
    return value + bytes(64 - len(value))
