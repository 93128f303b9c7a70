"""Keep CSRs: a PKCS#10 request carrying the Keep's evidence (motte's format or Enarx's).

A motte Keep's CSR has an empty subject, the names it asks for in a SubjectAlternativeName
extension, and one non-critical id-motte-keepEvidence extension (:class:`KeepEvidence`),
both in the PKCS#9 extensionRequest attribute; it is signed by the Keep's fresh key. The
REPORT_DATA inside the evidence is ``bind_report_data(csr key, workload digest, nonce)``.

An Enarx Keep's CSR instead carries one extension under 1.3.6.1.4.1.58270.1, whose
REPORT_DATA binds only the CSR's key (motte.attest._enarx).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from motte.attest.errors import EvidenceParseError
from motte.steward._asn1 import KeepEvidence
from motte.steward._config import normalise_san
from motte.steward._oids import ENARX_ARC, OID_KEEP_EVIDENCE

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    from motte.attest import Evidence

STRUCTURE = "CSR"
#: A CSR carries evidence of up to 1 MiB (MAX_EVIDENCE_BYTES) and a little more.
MAX_CSR_BYTES = 2 * 1024 * 1024 + 64 * 1024


def san_general_name(name: str) -> x509.GeneralName:
    """``127.0.0.1`` -> an IP address SAN; anything else a DNS name."""
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def build_keep_csr(
    key: ec.EllipticCurvePrivateKey,
    evidence: Evidence,
    *,
    workload_digest: str,
    nonce: bytes,
    sans: Sequence[str],
) -> bytes:
    """The DER CSR a Keep sends to ``POST /attest``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    if not sans:
        raise ValueError("a Keep CSR asks for at least one name")
    value = KeepEvidence(evidence.kind, evidence.raw, workload_digest, nonce, evidence.certs)
    curve_hash = hashes.SHA384() if key.curve.key_size >= 384 else hashes.SHA256()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([san_general_name(s) for s in sans]), critical=False
        )
        .add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(OID_KEEP_EVIDENCE), value.to_der()),
            critical=False,
        )
        .sign(key, curve_hash)
    )
    return csr.public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True, slots=True)
class RequestedName:
    """A name a CSR asks for: ``kind`` "dns", "ip" or the unsupported type's name."""

    kind: str
    value: str
    #: The form san_allow patterns compare with; None when malformed or unsupported.
    normalised: str | None

    def __str__(self) -> str:
        return self.value if self.kind in ("dns", "ip") else f"{self.kind}:{self.value}"


@dataclass(frozen=True, slots=True)
class CsrRequest:
    """A parsed (not yet verified) attestation request."""

    csr: x509.CertificateSigningRequest
    der: bytes
    spki: bytes
    #: "motte" or "enarx"
    format: str
    keep: KeepEvidence | None
    names: tuple[RequestedName, ...]


def parse_csr_request(body: bytes) -> CsrRequest:
    """A CSR from DER or PEM bytes; EvidenceParseError names what is wrong."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from motte.attest import x509_load_errors

    if len(body) > MAX_CSR_BYTES:
        raise EvidenceParseError(STRUCTURE, "length", f"{len(body)} bytes is too large")
    if not body:
        raise EvidenceParseError(STRUCTURE, "body", "empty request")
    try:
        if body.lstrip().startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(body)
        else:
            csr = x509.load_der_x509_csr(body)
        der = csr.public_bytes(serialization.Encoding.DER)
        extensions = list(csr.extensions)
        spki = csr.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except x509_load_errors() as e:
        raise EvidenceParseError(
            STRUCTURE, "CertificationRequest", f"not a PKCS#10 CSR: {e}"
        ) from None
    ours = [e for e in extensions if e.oid.dotted_string == OID_KEEP_EVIDENCE]
    enarx = [e for e in extensions if e.oid.dotted_string.startswith(ENARX_ARC + ".")]
    if ours and enarx:
        raise EvidenceParseError(STRUCTURE, "extensionRequest", "both motte and Enarx evidence")
    names = _requested_names(csr, extensions)
    if enarx:
        return CsrRequest(csr, der, spki, "enarx", None, names)
    if not ours:
        raise EvidenceParseError(
            STRUCTURE,
            "extensionRequest",
            f"no evidence extension (motte {OID_KEEP_EVIDENCE} or Enarx {ENARX_ARC}.x)",
        )
    ext = ours[0]
    if ext.critical:
        raise EvidenceParseError(STRUCTURE, OID_KEEP_EVIDENCE, "must not be critical")
    keep = KeepEvidence.from_der(ext.value.value)  # type: ignore[attr-defined]
    return CsrRequest(csr, der, spki, "motte", keep, names)


def _requested_names(
    csr: x509.CertificateSigningRequest, extensions: list
) -> tuple[RequestedName, ...]:
    from cryptography import x509

    sans = [e for e in extensions if isinstance(e.value, x509.SubjectAlternativeName)]
    if not sans:
        return ()
    out = []
    for name in sans[0].value:
        if isinstance(name, x509.DNSName):
            out.append(RequestedName("dns", name.value, normalise_san("dns", name.value)))
        elif isinstance(name, x509.IPAddress):
            text = str(name.value)
            out.append(RequestedName("ip", text, normalise_san("ip", text)))
        else:
            out.append(RequestedName(type(name).__name__, str(name.value), None))
    return tuple(out)
