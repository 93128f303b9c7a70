"""Enarx Keep CSRs: a PKCS#10 request whose extension carries the Keep's evidence.

An Enarx Keep makes a fresh key pair, asks its TEE for evidence with REPORT_DATA = SHA-384
(SNP) or SHA-256 (SGX) of the CSR's SubjectPublicKeyInfo, zero-padded to 64 bytes, and puts
the evidence in one non-critical extension of the CSR's extensionRequest
(enarx/steward crates/attestation):

* 1.3.6.1.4.1.58270.1.1 KVM: empty, no hardware evidence at all;
* 1.3.6.1.4.1.58270.1.2 SGX: SEQUENCE { quote OCTET STRING, CRLs, TCB info };
* 1.3.6.1.4.1.58270.1.3 SNP::

      Evidence     ::= SEQUENCE { crts Certificates, report OCTET STRING }
      Certificates ::= SEQUENCE { vcek Certificate, crl CrlList }
      CrlList      ::= SEQUENCE { crls SEQUENCE OF CrlListEntry }
      CrlListEntry ::= SEQUENCE { url UTF8String, crl CertificateList }

motte reads the SNP form and verifies it like any SNP report, plus the CSR's own signature
and the REPORT_DATA binding to the CSR's key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from motte.attest._evidence import MAX_EVIDENCE_BYTES
from motte.attest._x509 import checked_crl, fingerprint, load_der_certificate, x509_load_errors
from motte.attest.der import (
    OCTET_STRING,
    SEQUENCE,
    UTF8_STRING,
    DerReader,
)
from motte.attest.errors import EvidenceParseError

if TYPE_CHECKING:
    from cryptography import x509

STRUCTURE = "Enarx CSR"
OID_KVM = "1.3.6.1.4.1.58270.1.1"
OID_SGX = "1.3.6.1.4.1.58270.1.2"
OID_SNP = "1.3.6.1.4.1.58270.1.3"
ENARX_TEES = {OID_KVM: "kvm", OID_SGX: "sgx", OID_SNP: "snp"}


@dataclass(frozen=True, slots=True)
class EnarxCsr:
    """A parsed (unverified) Enarx CSR."""

    csr: x509.CertificateSigningRequest
    #: "snp", "sgx" or "kvm".
    tee: str
    #: DER SubjectPublicKeyInfo of the CSR's key: what REPORT_DATA must commit to.
    spki: bytes
    #: The extension's value (the evidence), as sent.
    evidence: bytes
    #: SNP only: the report, the VCEK and the (url, CRL) pairs.
    report: bytes | None = None
    vcek: x509.Certificate | None = None
    crls: tuple[tuple[str, x509.CertificateRevocationList], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        import hashlib

        out: dict[str, Any] = {
            "tee": self.tee,
            "subject": self.csr.subject.rfc4514_string(),
            "public_key_sha256": hashlib.sha256(self.spki).hexdigest(),
            "evidence_bytes": len(self.evidence),
        }
        if self.vcek is not None:
            out["vcek_sha256"] = fingerprint(self.vcek)
        if self.crls:
            out["crls"] = [
                {
                    "url": url,
                    "issuer": crl.issuer.rfc4514_string(),
                    "last_update": crl.last_update_utc.isoformat(),
                    "next_update": crl.next_update_utc.isoformat() if crl.next_update_utc else None,
                    "revoked": len(list(crl)),
                }
                for url, crl in self.crls
            ]
        return out


def parse_enarx_csr(raw: bytes) -> EnarxCsr:
    """Read an Enarx CSR (DER or PEM); raises EvidenceParseError naming what is wrong."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if len(raw) > MAX_EVIDENCE_BYTES:
        raise EvidenceParseError(STRUCTURE, "length", f"{len(raw)} bytes is too large")
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(raw)
        else:
            # The DER reader checks the outer framing first: cryptography's error is vaguer.
            DerReader(raw, STRUCTURE).top("CertificationRequest", SEQUENCE)
            csr = x509.load_der_x509_csr(raw)
        extensions = list(csr.extensions)
    except x509_load_errors() as e:
        raise EvidenceParseError(
            STRUCTURE, "CertificationRequest", f"not a PKCS#10 CSR: {e}"
        ) from None
    ours = [e for e in extensions if e.oid.dotted_string.startswith("1.3.6.1.4.1.58270.1.")]
    if len(ours) != 1:
        raise EvidenceParseError(
            STRUCTURE,
            "extensionRequest",
            f"expected one Enarx attestation extension (1.3.6.1.4.1.58270.1.x), found {len(ours)}",
        )
    ext = ours[0]
    oid = ext.oid.dotted_string
    if oid not in ENARX_TEES:
        raise EvidenceParseError(STRUCTURE, "extension", f"unknown Enarx evidence OID {oid}")
    if ext.critical:
        raise EvidenceParseError(STRUCTURE, oid, "the evidence extension must not be critical")
    value = ext.value.value  # type: ignore[attr-defined]
    try:
        spki = csr.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except x509_load_errors() as e:  # "Invalid key", an unknown key type
        raise EvidenceParseError(STRUCTURE, "subjectPKInfo", f"unusable public key: {e}") from None
    tee = ENARX_TEES[oid]
    if tee != "snp":
        return EnarxCsr(csr, tee, spki, value)
    report, vcek, crls = _parse_snp_evidence(value)
    return EnarxCsr(csr, tee, spki, value, report, vcek, crls)


def _parse_snp_evidence(
    value: bytes,
) -> tuple[bytes, x509.Certificate, tuple[tuple[str, x509.CertificateRevocationList], ...]]:
    from cryptography import x509

    structure = f"{STRUCTURE} SNP evidence"
    r = DerReader(value, structure)
    top = r.top("Evidence", SEQUENCE)
    crts, report = r.sequence(top, "Evidence", 2)
    r.expect(crts, SEQUENCE, "crts")
    r.expect(report, OCTET_STRING, "report")
    vcek_tlv, crl_list = r.sequence(crts, "crts", 2)
    r.expect(vcek_tlv, SEQUENCE, "vcek")
    vcek = load_der_certificate(vcek_tlv.encoded(value), structure)
    r.expect(crl_list, SEQUENCE, "crl")
    (entries,) = r.sequence(crl_list, "crl", 1)
    r.expect(entries, SEQUENCE, "crls")
    crls = []
    for entry in r.children(entries, "CrlListEntry"):
        r.expect(entry, SEQUENCE, "CrlListEntry")
        url_tlv, crl_tlv = r.sequence(entry, "CrlListEntry", 2)
        url = r.string(url_tlv, "url", (UTF8_STRING,))
        r.expect(crl_tlv, SEQUENCE, "crl")
        try:
            crl = x509.load_der_x509_crl(crl_tlv.encoded(value))
        except x509_load_errors() as e:
            raise EvidenceParseError(
                structure, "crl", f"not a CRL: {e}", offset=crl_tlv.offset
            ) from None
        crls.append((url, checked_crl(crl, structure)))
    return report.value(value), vcek, tuple(crls)
