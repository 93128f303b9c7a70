"""Secret release on the wire: what a Keep sends, what the Steward answers, and the sealing.

A Keep asks with fresh evidence for a key that exists only inside it::

    Keep:    release key = a fresh P-256 key pair, in memory
             GET /nonce
             evidence(REPORT_DATA = release_report_data(release key, workload digest, nonce))
             POST /secrets/release  (application/json, the request below)
    Steward: verify the evidence under its attestation policy with that REPORT_DATA, the
             nonce (issued here, unexpired, unused: now used), each secret's release policy;
             answer with each value sealed to the release key, or refuse with every reason

Request (``version`` 1; binary fields unpadded base64url)::

    {"version": 1,
     "evidence": {"kind": "snp", "raw": "...", "certs": "..."},      # motte.attest.Evidence
     "workload_digest": "sha256:...",     # the package digest the Keep runs
     "nonce": "...",                      # from GET /nonce
     "release_key": "...",                # DER SubjectPublicKeyInfo, P-256
     "secrets": [{"name": "db-password"}, {"name": "api-token", "version": 3}],
     "statements": ["..."]}               # the package's DSSE envelopes (signed rules)

Answer 200 (``application/json``)::

    {"version": 1, "audit_id": 12, "suite": "HPKE base mode, DHKEM(P-256, HKDF-SHA256), ...",
     "secrets": [{"name": "db-password", "version": 2, "sealed": "..."}]}

``sealed`` is RFC 9180 HPKE, base mode, single shot, DHKEM(P-256, HKDF-SHA256), HKDF-SHA256,
AES-256-GCM (``cryptography.hazmat.primitives.hpke``): ``enc`` (65 bytes) then the AEAD
ciphertext, with ``info`` binding the secret's name and version, the workload digest and the
nonce (:func:`release_info`), so a sealed value opens only for this request and this secret.
A refusal is 403 ``application/problem+json`` (RFC 9457) with ``reasons``: every failed rule,
each secret's prefixed with its name. Release is all or nothing.

REPORT_DATA for a release (:func:`release_report_data`) is the attestation binding's
construction under its own label, so evidence made for one can never serve the other::

    SHA-512("motte/release-data/v1" || 0x00 || u32be(len(spki)) || spki
             || u32be(len(digest)) || digest || u32be(len(nonce)) || nonce)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from motte._digest import is_digest

if TYPE_CHECKING:
    from motte.attest import Evidence

RELEASE_DOMAIN = b"motte/release-data/v1\x00"
INFO_DOMAIN = b"motte/secret-release/v1\x00"
SUITE = "HPKE base mode, DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM (RFC 9180)"
MAX_REQUEST_BYTES = 8 * 1024 * 1024
MAX_SECRETS = 64
MAX_STATEMENTS = 32
MAX_STATEMENT_BYTES = 1024 * 1024
MIN_NONCE, MAX_NONCE = 16, 64
_REQUEST_KEYS = frozenset(
    {"version", "evidence", "workload_digest", "nonce", "release_key", "secrets", "statements"}
)


class ReleaseFormatError(ValueError):
    """A release request or answer that does not parse; the message names the field."""


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: Any, what: str, *, limit: int) -> bytes:
    if not isinstance(text, str) or len(text) > limit * 4 // 3 + 4:
        raise ReleaseFormatError(f"{what}: expected base64url text")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ReleaseFormatError(f"{what}: not base64url") from None


def _lp(*parts: bytes) -> bytes:
    return b"".join(len(p).to_bytes(4, "big") + p for p in parts)


def release_report_data(spki: bytes, workload_digest: str, nonce: bytes) -> bytes:
    """The 64-byte REPORT_DATA a Keep's release evidence carries (see the module doc)."""
    if not spki or spki[0] != 0x30:
        raise ValueError("the release key must be a DER SubjectPublicKeyInfo")
    if not is_digest(workload_digest):
        raise ValueError(f"workload_digest must be sha256:<64 hex>, not {workload_digest!r}")
    if not MIN_NONCE <= len(nonce) <= MAX_NONCE:
        raise ValueError(f"nonce must be {MIN_NONCE} to {MAX_NONCE} bytes")
    return hashlib.sha512(
        RELEASE_DOMAIN + _lp(spki, workload_digest.encode("ascii"), nonce)
    ).digest()


def release_info(name: str, version: int, workload_digest: str, nonce: bytes) -> bytes:
    """HPKE ``info`` for one sealed value: which secret, which version, for which release."""
    return INFO_DOMAIN + _lp(
        name.encode(), str(version).encode(), workload_digest.encode("ascii"), nonce
    )


def _suite() -> Any:
    from cryptography.hazmat.primitives import hpke

    return hpke.Suite(hpke.KEM.P256, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)


def seal(public_key: Any, value: bytes, info: bytes) -> bytes:
    """``enc || ciphertext`` (HPKE single shot) for the holder of ``public_key``'s key."""
    return bytes(_suite().encrypt(value, public_key, info=info))


def open_sealed(private_key: Any, sealed: bytes, info: bytes) -> bytes | None:
    """The value, or None when it was not sealed to this key for this ``info``."""
    from cryptography.exceptions import InvalidTag

    try:
        return bytes(_suite().decrypt(sealed, private_key, info=info))
    except (InvalidTag, ValueError):
        return None


def new_release_key() -> Any:
    """A fresh P-256 key pair for one release: generated in memory, never written."""
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def spki_of(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# -- the request ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Wanted:
    name: str
    version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return (
            {"name": self.name}
            if self.version is None
            else {
                "name": self.name,
                "version": self.version,
            }
        )


@dataclass(frozen=True, slots=True)
class ReleaseRequest:
    evidence: Evidence
    workload_digest: str
    nonce: bytes
    release_key: bytes  # DER SubjectPublicKeyInfo
    secrets: tuple[Wanted, ...]
    statements: tuple[bytes, ...] = field(default=(), repr=False)

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "version": 1,
                "evidence": self.evidence.to_dict(),
                "workload_digest": self.workload_digest,
                "nonce": b64(self.nonce),
                "release_key": b64(self.release_key),
                "secrets": [w.to_dict() for w in self.secrets],
                "statements": [b64(s) for s in self.statements],
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> ReleaseRequest:
        """Parse strictly; ReleaseFormatError names the field."""
        from motte.attest import Evidence

        if len(data) > MAX_REQUEST_BYTES:
            raise ReleaseFormatError(f"larger than {MAX_REQUEST_BYTES} bytes")
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ReleaseFormatError(f"not JSON: {e}") from None
        if not isinstance(doc, dict):
            raise ReleaseFormatError("not a JSON object")
        unknown = sorted(set(doc) - _REQUEST_KEYS)
        if unknown:
            raise ReleaseFormatError(f"unknown field {unknown[0]!r}")
        if doc.get("version") != 1:
            raise ReleaseFormatError(f"version {doc.get('version')!r}; this Steward speaks 1")
        try:
            evidence = Evidence.from_dict(doc.get("evidence"))
        except Exception as e:  # its own parser's message names the field
            raise ReleaseFormatError(f"evidence: {e}") from None
        digest = doc.get("workload_digest")
        if not is_digest(digest):
            raise ReleaseFormatError("workload_digest: expected sha256:<64 hex>")
        nonce = unb64(doc.get("nonce"), "nonce", limit=MAX_NONCE)
        if not MIN_NONCE <= len(nonce) <= MAX_NONCE:
            raise ReleaseFormatError(f"nonce: {len(nonce)} bytes")
        key = unb64(doc.get("release_key"), "release_key", limit=1024)
        wanted_doc = doc.get("secrets")
        if not isinstance(wanted_doc, list) or not 1 <= len(wanted_doc) <= MAX_SECRETS:
            raise ReleaseFormatError(f"secrets: expected a list of 1 to {MAX_SECRETS}")
        wanted = []
        for i, w in enumerate(wanted_doc):
            if not isinstance(w, dict) or set(w) - {"name", "version"}:
                raise ReleaseFormatError(f"secrets[{i}]: expected {{name, version?}}")
            name, version = w.get("name"), w.get("version")
            if not isinstance(name, str) or not name or len(name) > 256:
                raise ReleaseFormatError(f"secrets[{i}].name")
            if version is not None and (
                isinstance(version, bool) or not isinstance(version, int) or version < 1
            ):
                raise ReleaseFormatError(f"secrets[{i}].version: a whole number from 1")
            wanted.append(Wanted(name, version))
        if len({w.name for w in wanted}) != len(wanted):
            raise ReleaseFormatError("secrets: a name is asked for twice")
        statements_doc = doc.get("statements", [])
        if not isinstance(statements_doc, list) or len(statements_doc) > MAX_STATEMENTS:
            raise ReleaseFormatError(f"statements: expected a list of at most {MAX_STATEMENTS}")
        statements = tuple(
            unb64(s, f"statements[{i}]", limit=MAX_STATEMENT_BYTES)
            for i, s in enumerate(statements_doc)
        )
        return cls(evidence, digest, nonce, key, tuple(wanted), statements)


# -- the answer -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SealedSecret:
    name: str
    version: int
    sealed: bytes = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "sealed": b64(self.sealed)}


def answer_document(items: list[SealedSecret], audit_id: int | None) -> dict[str, Any]:
    return {
        "version": 1,
        "audit_id": audit_id,
        "suite": SUITE,
        "secrets": [s.to_dict() for s in items],
    }


def parse_answer(data: bytes) -> list[SealedSecret]:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReleaseFormatError(f"not JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("version") != 1:
        raise ReleaseFormatError("not a version 1 release answer")
    items = doc.get("secrets")
    if not isinstance(items, list):
        raise ReleaseFormatError("secrets: expected a list")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ReleaseFormatError(f"secrets[{i}]: expected an object")
        name, version = item.get("name"), item.get("version")
        if not isinstance(name, str) or isinstance(version, bool) or not isinstance(version, int):
            raise ReleaseFormatError(f"secrets[{i}]: name and version")
        out.append(
            SealedSecret(name, version, unb64(item.get("sealed"), f"secrets[{i}]", limit=2**21))
        )
    return out
