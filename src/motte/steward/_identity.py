"""What a Keep certificate says: motte's extensions read back, for Keeps and clients."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from motte.attest.errors import EvidenceParseError
from motte.steward._asn1 import VerdictSummary, read_octets, read_utf8
from motte.steward._oids import OID_MEASUREMENT, OID_TEE_KIND, OID_VERDICT, OID_WORKLOAD_DIGEST
from motte.steward.errors import KeepIdentityError

if TYPE_CHECKING:
    from cryptography import x509


@dataclass(frozen=True, slots=True)
class KeepCertificate:
    """The claims of a Steward-issued Keep certificate (read, not yet judged)."""

    #: "snp", "tdx", "sgx" or "sim"; None if the certificate has no motte extensions.
    kind: str | None
    measurement: bytes | None
    #: None for certificates issued to (unbound) Enarx CSRs.
    workload_digest: str | None
    verdict: VerdictSummary | None
    serial: str
    not_before: datetime
    not_after: datetime
    names: tuple[str, ...]
    issuer: str
    fingerprint: str

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> KeepCertificate:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        values: dict[str, bytes] = {}
        for ext in cert.extensions:
            oid = ext.oid.dotted_string
            if oid in (OID_TEE_KIND, OID_MEASUREMENT, OID_WORKLOAD_DIGEST, OID_VERDICT):
                values[oid] = ext.value.value  # type: ignore[attr-defined]
        try:
            kind = read_utf8(values[OID_TEE_KIND], "teeKind") if OID_TEE_KIND in values else None
            measurement = (
                read_octets(values[OID_MEASUREMENT], "measurement")
                if OID_MEASUREMENT in values
                else None
            )
            digest = (
                read_utf8(values[OID_WORKLOAD_DIGEST], "workloadDigest")
                if OID_WORKLOAD_DIGEST in values
                else None
            )
            verdict = (
                VerdictSummary.from_der(values[OID_VERDICT]) if OID_VERDICT in values else None
            )
        except EvidenceParseError as e:
            raise KeepIdentityError(f"the Keep certificate's extension {e.message}") from None
        names: list[str] = []
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = [str(n.value) for n in san]
        except x509.ExtensionNotFound:
            pass
        return cls(
            kind=kind,
            measurement=measurement,
            workload_digest=digest,
            verdict=verdict,
            serial=f"{cert.serial_number:x}",
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            names=tuple(names),
            issuer=cert.issuer.rfc4514_string(),
            fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
        )

    @property
    def insecure(self) -> bool:
        return self.kind == "sim"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "insecure": self.insecure,
            "measurement": self.measurement.hex() if self.measurement is not None else None,
            "workload_digest": self.workload_digest,
            "verdict": self.verdict.to_dict() if self.verdict is not None else None,
            "serial": self.serial,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "names": list(self.names),
            "issuer": self.issuer,
            "sha256": self.fingerprint,
        }
