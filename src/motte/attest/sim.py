"""``sim`` evidence: what the software keep offers instead of a TEE report. INSECURE.

A software keep has no hardware root of trust: anyone with the installation key can produce
evidence for any measurement. It exists so the whole path (Keep, Steward, certificate, client)
can run on a laptop. So it says what it is, in-band, in its first bytes, and the default
policy refuses it; only a policy with ``allow_insecure_sim = true`` (the CLI's
``--allow-insecure-sim``) accepts it.

Format (version 1, 232 bytes, integers little-endian)::

    0x00  18  MAGIC        "MOTTE-SIM-INSECURE"
    0x12   2  VERSION      1
    0x14   4  reserved     must be zero
    0x18  64  REPORT_DATA  chosen by the keep (see motte.attest.bind_report_data)
    0x58  48  MEASUREMENT  SHA-384 of what the keep runs (motte runtime and wasmtime)
    0x88  32  SIGNER_KEY   Ed25519 public key of the motte installation
    0xA8  64  SIGNATURE    Ed25519 over bytes 0x00..0xA7

The installation key lives in ``motte_home()/keys/sim-keep.pem`` (PKCS#8, mode 0600); a
policy can pin the public keys it accepts (``[sim] keys``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from motte.attest._evidence import SIM_MAGIC
from motte.attest.errors import AttestError, EvidenceParseError, EvidenceVerificationError
from motte.fsutil import create_exclusive
from motte.home import home_dir

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = [
    "SIM_EVIDENCE_SIZE",
    "SIM_MAGIC",
    "SimEvidence",
    "load_or_create_sim_key",
    "sign_sim_evidence",
    "sim_key_path",
    "verify_sim_evidence",
]

STRUCTURE = "sim evidence"
SIM_VERSION = 1
SIM_EVIDENCE_SIZE = 0xE8
SIGNED_SIZE = 0xA8
_HEADER = struct.Struct("<18sHI")
SIM_KEY_FILE = "sim-keep.pem"


@dataclass(frozen=True, slots=True)
class SimEvidence:
    """Parsed (unverified) sim evidence."""

    version: int
    report_data: bytes
    measurement: bytes
    signer_key: bytes
    signature: bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> SimEvidence:
        if not data.startswith(SIM_MAGIC):
            raise EvidenceParseError(
                STRUCTURE, "MAGIC", f"must be {SIM_MAGIC.decode()!r}", offset=0
            )
        if len(data) != SIM_EVIDENCE_SIZE:
            raise EvidenceParseError(
                STRUCTURE,
                "length",
                f"{len(data)} bytes; version 1 is {SIM_EVIDENCE_SIZE}",
                offset=min(len(data), SIM_EVIDENCE_SIZE),
            )
        _, version, reserved = _HEADER.unpack_from(data, 0)
        if version != SIM_VERSION:
            raise EvidenceParseError(STRUCTURE, "VERSION", f"{version} is not 1", offset=0x12)
        if reserved:
            raise EvidenceParseError(STRUCTURE, "reserved", "must be zero", offset=0x14)
        return cls(
            version=version,
            report_data=data[0x18:0x58],
            measurement=data[0x58:0x88],
            signer_key=data[0x88:0xA8],
            signature=data[0xA8:0xE8],
        )

    def signed_bytes(self) -> bytes:
        return (
            _HEADER.pack(SIM_MAGIC, self.version, 0)
            + self.report_data
            + self.measurement
            + self.signer_key
        )

    def to_bytes(self) -> bytes:
        return self.signed_bytes() + self.signature

    def to_dict(self) -> dict[str, Any]:
        return {
            "insecure": True,
            "warning": "software keep: no hardware protection, anyone with the key can forge this",
            "version": self.version,
            "report_data": self.report_data.hex(),
            "measurement": self.measurement.hex(),
            "signer_key": self.signer_key.hex(),
            "signature": self.signature.hex(),
        }


def sign_sim_evidence(report_data: bytes, measurement: bytes, key: Ed25519PrivateKey) -> bytes:
    """Sim evidence for ``report_data`` (64 bytes) and ``measurement`` (48 bytes)."""
    from cryptography.hazmat.primitives import serialization

    if len(report_data) != 64:
        raise ValueError(f"report_data must be 64 bytes, not {len(report_data)}")
    if len(measurement) != 48:
        raise ValueError(f"measurement must be 48 bytes (SHA-384), not {len(measurement)}")
    pub = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    unsigned = SimEvidence(SIM_VERSION, report_data, measurement, pub, b"")
    signed = unsigned.signed_bytes()
    return signed + key.sign(signed)


def verify_sim_evidence(evidence: SimEvidence) -> SimEvidence:
    """Check the signature by the embedded key; raise EvidenceVerificationError or return it.

    This proves only that someone holding that key made the evidence; whether the key is
    one the relying party knows is the policy's question (``[sim] keys``).
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(evidence.signer_key).verify(
            evidence.signature, evidence.signed_bytes()
        )
    except (InvalidSignature, ValueError):
        raise EvidenceVerificationError(
            "sim-signature", "the Ed25519 signature does not verify with SIGNER_KEY"
        ) from None
    return evidence


def sim_key_path() -> Path:
    return home_dir("keys", private=True) / SIM_KEY_FILE


def load_or_create_sim_key(path: Path | None = None) -> Ed25519PrivateKey:
    """This installation's sim keep key, created (0600, atomically) on first use."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    target = path or sim_key_path()
    if not target.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        create_exclusive(target, pem)
    try:
        data = target.read_bytes()
        key = serialization.load_pem_private_key(data, password=None)
    except (OSError, ValueError, TypeError) as e:
        raise AttestError(
            f"{target}: cannot load the sim keep key: {e}",
            hint="remove the file to create a new key (sim evidence signed by the old one "
            "will no longer match a policy that pins it)",
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AttestError(f"{target}: not an Ed25519 private key")
    return key
