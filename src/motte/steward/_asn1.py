"""The DER values under motte's arc: encoded here, read with motte.attest's strict reader.

::

    KeepEvidence ::= SEQUENCE {                       -- CSR extension id-motte-keepEvidence
        version         INTEGER (1),
        kind            UTF8String,                   -- "snp" | "tdx" | "sgx" | "sim"
        evidence        OCTET STRING,                 -- what the backend produced, unchanged
        workloadDigest  UTF8String,                   -- "sha256:<64 lowercase hex>"
        nonce           OCTET STRING,                 -- the Steward's nonce, 16..64 bytes
        certs           [0] IMPLICIT OCTET STRING OPTIONAL  -- SNP: the host's certificate table
    }

    AttestationVerdict ::= SEQUENCE {                 -- certificate extension id-motte-verdict
        version         INTEGER (1),
        policyName      UTF8String,
        policySha256    OCTET STRING,                 -- SHA-256 of the policy file (32 bytes)
        verifiedAt      GeneralizedTime,
        evidenceSha256  OCTET STRING                  -- SHA-256 of the evidence verified
    }

    TeeKind ::= UTF8String        Measurement ::= OCTET STRING        WorkloadDigest ::= UTF8String

The REPORT_DATA inside ``evidence`` binds the CSR's key, ``workloadDigest`` and ``nonce``
(:func:`motte.attest.bind_report_data`), so none of these fields can be swapped without the
Steward noticing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from motte._digest import is_digest
from motte.attest import MAX_EVIDENCE_BYTES
from motte.attest.der import INTEGER, OCTET_STRING, SEQUENCE, UTF8_STRING, DerReader
from motte.attest.errors import EvidenceParseError

GENERALIZED_TIME = 0x18
CONTEXT_0 = 0x80
VERSION = 1
KEEP_KINDS = ("snp", "tdx", "sgx", "sim")
MIN_NONCE, MAX_NONCE = 16, 64


# -- encoding ------------------------------------------------------------------------------


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def der_integer(n: int) -> bytes:
    if n < 0:
        raise ValueError("only non-negative integers")
    return tlv(INTEGER, n.to_bytes(n.bit_length() // 8 + 1, "big"))


def der_utf8(text: str) -> bytes:
    return tlv(UTF8_STRING, text.encode("utf-8"))


def der_octets(data: bytes) -> bytes:
    return tlv(OCTET_STRING, data)


def der_sequence(*items: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(items))


def der_generalized_time(when: datetime) -> bytes:
    return tlv(GENERALIZED_TIME, when.astimezone(UTC).strftime("%Y%m%d%H%M%SZ").encode("ascii"))


# -- KeepEvidence --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeepEvidence:
    """The value of a Keep's evidence extension (parsed, not verified)."""

    kind: str
    evidence: bytes
    workload_digest: str
    nonce: bytes
    certs: bytes | None = None

    def __post_init__(self) -> None:
        if self.kind not in KEEP_KINDS:
            raise ValueError(f"kind must be one of {', '.join(KEEP_KINDS)}, not {self.kind!r}")
        if not is_digest(self.workload_digest):
            raise ValueError(f"workload_digest {self.workload_digest!r} is not sha256:<hex>")
        if not MIN_NONCE <= len(self.nonce) <= MAX_NONCE:
            raise ValueError(f"nonce must be {MIN_NONCE} to {MAX_NONCE} bytes")

    def to_der(self) -> bytes:
        items = [
            der_integer(VERSION),
            der_utf8(self.kind),
            der_octets(self.evidence),
            der_utf8(self.workload_digest),
            der_octets(self.nonce),
        ]
        if self.certs is not None:
            items.append(tlv(CONTEXT_0, self.certs))
        return der_sequence(*items)

    @classmethod
    def from_der(cls, data: bytes) -> KeepEvidence:
        """Parse strictly; EvidenceParseError names the field and offset."""
        structure = "motte KeepEvidence extension"
        if len(data) > 2 * MAX_EVIDENCE_BYTES:
            raise EvidenceParseError(structure, "length", f"{len(data)} bytes is too large")
        r = DerReader(data, structure)
        top = r.top("KeepEvidence", SEQUENCE)
        items = r.sequence(top, "KeepEvidence")
        if len(items) not in (5, 6):
            raise r.error("KeepEvidence", f"expected 5 or 6 elements, found {len(items)}", 0)
        version = r.integer(items[0], "version")
        if version != VERSION:
            raise r.error("version", f"{version} is not {VERSION}", items[0].offset)
        kind = r.string(items[1], "kind", (UTF8_STRING,))
        if kind not in KEEP_KINDS:
            raise r.error(
                "kind", f"{kind!r} is not one of {', '.join(KEEP_KINDS)}", items[1].offset
            )
        evidence = r.expect(items[2], OCTET_STRING, "evidence").value(data)
        if not evidence or len(evidence) > MAX_EVIDENCE_BYTES:
            raise r.error("evidence", f"{len(evidence)} bytes", items[2].offset)
        digest = r.string(items[3], "workloadDigest", (UTF8_STRING,))
        if not is_digest(digest):
            raise r.error(
                "workloadDigest", f"{digest[:80]!r} is not sha256:<64 hex>", items[3].offset
            )
        nonce = r.expect(items[4], OCTET_STRING, "nonce").value(data)
        if not MIN_NONCE <= len(nonce) <= MAX_NONCE:
            raise r.error("nonce", f"{len(nonce)} bytes; must be 16 to 64", items[4].offset)
        certs = None
        if len(items) == 6:
            certs = r.expect(items[5], CONTEXT_0, "certs").value(data)
        return cls(kind, evidence, digest, nonce, certs)


# -- the certificate's extensions ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerdictSummary:
    """Which policy judged which evidence, and when (the id-motte-verdict extension)."""

    policy_name: str
    policy_sha256: bytes
    verified_at: datetime
    evidence_sha256: bytes

    def to_der(self) -> bytes:
        return der_sequence(
            der_integer(VERSION),
            der_utf8(self.policy_name),
            der_octets(self.policy_sha256),
            der_generalized_time(self.verified_at),
            der_octets(self.evidence_sha256),
        )

    @classmethod
    def from_der(cls, data: bytes) -> VerdictSummary:
        structure = "motte AttestationVerdict extension"
        r = DerReader(data, structure)
        top = r.top("AttestationVerdict", SEQUENCE)
        items = r.sequence(top, "AttestationVerdict", 5)
        if r.integer(items[0], "version") != VERSION:
            raise r.error("version", "unknown version", items[0].offset)
        name = r.string(items[1], "policyName", (UTF8_STRING,))
        policy = r.expect(items[2], OCTET_STRING, "policySha256").value(data)
        when_text = r.string(items[3], "verifiedAt", (GENERALIZED_TIME,))
        try:
            when = datetime.strptime(when_text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            raise r.error(
                "verifiedAt", f"{when_text!r} is not YYYYMMDDHHMMSSZ", items[3].offset
            ) from None
        evidence = r.expect(items[4], OCTET_STRING, "evidenceSha256").value(data)
        if len(policy) != 32 or len(evidence) != 32:
            raise r.error("AttestationVerdict", "digests must be 32 bytes", top.offset)
        return cls(name, policy, when, evidence)

    def to_dict(self) -> dict[str, str]:
        return {
            "policy_name": self.policy_name,
            "policy_sha256": self.policy_sha256.hex(),
            "verified_at": self.verified_at.isoformat(),
            "evidence_sha256": self.evidence_sha256.hex(),
        }


def read_utf8(data: bytes, structure: str) -> str:
    r = DerReader(data, structure)
    return r.string(r.top(structure, UTF8_STRING), structure, (UTF8_STRING,))


def read_octets(data: bytes, structure: str) -> bytes:
    r = DerReader(data, structure)
    return r.top(structure, OCTET_STRING).value(data)
