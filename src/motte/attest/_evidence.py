"""Evidence as it travels: a kind, the raw bytes, and what the host sent alongside.

:class:`Evidence` is what a Keep backend produces (``backend.evidence(report_data)``) and
what the Steward verifies. ``kind`` says how to read ``raw``:

========  ==============================================================================
snp       an SEV-SNP attestation report (1184 bytes); ``certs`` optionally holds the
          host's certificate table (SNP_GET_EXT_REPORT / configfs-tsm ``auxblob``) or a
          PEM/DER VCEK and chain
tdx       an Intel TDX quote (v4 or v5) with its PCK chain inside
sgx       an Intel SGX DCAP quote (v3)
sim       motte's software-keep evidence (insecure, says so in-band)
tsm       a configfs-tsm capture file: JSON {"provider", "outblob", "auxblob"}
enarx     an Enarx Keep's PKCS#10 CSR carrying its evidence extension
========  ==============================================================================

:func:`detect_kind` tells the kind from the bytes; evidence may also arrive hex-encoded
(as some tools print reports), which :func:`decode_evidence_text` undoes.
"""

from __future__ import annotations

import base64
import binascii
import string
import struct
from dataclasses import dataclass
from typing import Any

from motte.attest.errors import EvidenceParseError

KINDS = ("snp", "tdx", "sgx", "sim", "tsm", "enarx")
#: Evidence larger than this is refused before any parsing (the largest real quotes and
#: CSRs are ~15 KiB; a configfs-tsm capture with a certificate table ~20 KiB).
MAX_EVIDENCE_BYTES = 1 << 20

SIM_MAGIC = b"MOTTE-SIM-INSECURE"
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
#: DER of the arc 1.3.6.1.4.1.58270.1 (Enarx/Profian attestation extensions), sans tag/len.
ENARX_ARC_DER = bytes.fromhex("2b0601040183c71e01")
_HEXDIGITS = set(string.hexdigits.encode()) | set(b" \t\r\n")


@dataclass(frozen=True, slots=True)
class Evidence:
    """Attestation evidence and the certificates the host supplied with it.

    ``certs`` is only meaningful for ``snp``: the host's certificate table or a PEM/DER
    bundle; verifiers treat it as untrusted input like everything else.
    """

    kind: str
    raw: bytes
    certs: bytes | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown evidence kind {self.kind!r}; one of {', '.join(KINDS)}")
        if not isinstance(self.raw, bytes):
            raise TypeError("Evidence.raw must be bytes")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: binary fields in unpadded base64url."""
        out: dict[str, Any] = {"kind": self.kind, "raw": _b64(self.raw)}
        if self.certs is not None:
            out["certs"] = _b64(self.certs)
        return out

    @classmethod
    def from_dict(cls, d: Any) -> Evidence:
        """Inverse of :meth:`to_dict`; malformed input raises EvidenceParseError."""
        if not isinstance(d, dict):
            raise EvidenceParseError("evidence JSON", "document", "must be an object")
        unknown = set(d) - {"kind", "raw", "certs"}
        if unknown:
            raise EvidenceParseError("evidence JSON", sorted(unknown)[0], "unknown field")
        kind = d.get("kind")
        if kind not in KINDS:
            raise EvidenceParseError(
                "evidence JSON", "kind", f"{kind!r} is not one of {', '.join(KINDS)}"
            )
        raw = _unb64(d.get("raw"), "raw")
        certs = _unb64(d["certs"], "certs") if d.get("certs") is not None else None
        return cls(kind, raw, certs)


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def _unb64(value: Any, field: str, structure: str = "evidence JSON") -> bytes:
    if not isinstance(value, str):
        raise EvidenceParseError(structure, field, "must be a base64 string")
    text = value.strip()
    try:
        return base64.b64decode(
            text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True
        )
    except (binascii.Error, ValueError):
        raise EvidenceParseError(structure, field, "is not valid base64") from None


def decode_evidence_text(raw: bytes) -> bytes:
    """Undo hex encoding (whitespace allowed) when ``raw`` is entirely hex text."""
    # Binary evidence starts with a non-hex byte (SNP: 0x02-0x05, quotes: 0x03-0x05, ...).
    if len(raw) >= 96 and raw[0] in _HEXDIGITS and set(raw) <= _HEXDIGITS and raw.strip():
        text = b"".join(raw.split())
        if len(text) % 2 == 0:
            return bytes.fromhex(text.decode("ascii"))
    return raw


def detect_kind(raw: bytes) -> str:
    """The evidence kind of ``raw`` (after :func:`decode_evidence_text`).

    Raises EvidenceParseError when the bytes look like none of the formats.
    """
    if not raw:
        raise EvidenceParseError("evidence", "length", "empty input")
    if raw.startswith(SIM_MAGIC):
        return "sim"
    head = raw[:64].lstrip()
    if head.startswith(b"{") and b'"outblob"' in raw:
        return "tsm"
    if raw[0] == 0x30 and ENARX_ARC_DER in raw:
        return "enarx"
    if len(raw) >= 48:
        version, ak_type, tee_type = struct.unpack_from("<HHI", raw, 0)
        if version in (3, 4, 5) and ak_type in (2, 3) and raw[12:28] == INTEL_QE_VENDOR_ID:
            if version == 3 or tee_type == 0x00:
                return "sgx"
            if tee_type == 0x81:
                return "tdx"
    if len(raw) >= 4:
        (version,) = struct.unpack_from("<I", raw, 0)
        if 2 <= version <= 5:
            return "snp"
    raise EvidenceParseError(
        "evidence",
        "kind",
        "not an SNP report, TDX/SGX quote, configfs-tsm capture, Enarx CSR or sim evidence",
        offset=0,
        hint="name the kind with --kind snp|tdx|sgx|tsm|sim|enarx",
    )
