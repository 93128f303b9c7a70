"""Loading certificates and CRLs from whatever shape a user or a Keep hands over.

A certificate file may be one DER certificate, a PEM bundle, a DER CRL, a PkiPath (a DER
SEQUENCE OF Certificate, as Enarx ships its AMD chains), or an SNP certificate table (the GHCB
extended-report table that configfs-tsm returns as ``auxblob``). :func:`load_bundle` sorts any
of them into certificates and CRLs; the verifiers pick what they need by subject.

Every AMD VCEK and VLEK has serial number 0, which RFC 5280 forbids; `cryptography` >= 45 warns
("serial number which wasn't positive") and plans to refuse. The warning is silenced here and
only here, and tests/attest/test_x509.py fails loudly if a release starts raising.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from motte.attest._memo import CERT_FACTS, CHECKED
from motte.attest.der import SEQUENCE, DerReader
from motte.attest.errors import EvidenceParseError

if TYPE_CHECKING:
    from cryptography import x509

#: Upper bound on one certificate file: AMD and Intel chains are a few KiB.
MAX_BUNDLE_BYTES = 1 << 20


def x509_load_errors() -> tuple[type[Exception], ...]:
    """What `cryptography` raises for malformed certificates, CRLs and CSRs, at load or when
    a lazily parsed field is first read: ValueError and its own types that are not
    ValueErrors. A function so that cryptography is imported only when used."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.x509 import DuplicateExtension, InvalidVersion, UnsupportedGeneralNameType

    return (
        ValueError,
        TypeError,
        InvalidVersion,
        DuplicateExtension,
        UnsupportedGeneralNameType,
        UnsupportedAlgorithm,
    )


@contextmanager
def _serial_zero_allowed() -> Iterator[None]:
    from cryptography.utils import CryptographyDeprecationWarning

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r".*serial number which wasn't positive.*",
            category=CryptographyDeprecationWarning,
        )
        yield


def _checked_certificate(cert: x509.Certificate, structure: str) -> x509.Certificate:
    """Parse now what `cryptography` parses lazily (names, dates, extensions, key), so a
    malformed certificate is a parse error here and not an exception deep in a verifier.
    (The certificate object keeps what it parsed: the verifiers' later reads are free.)"""

    def touch() -> bool:
        try:
            _ = (cert.subject, cert.issuer, cert.not_valid_before_utc, cert.not_valid_after_utc)
            _ = (cert.extensions, cert.signature_hash_algorithm, cert.public_key())
        except x509_load_errors() as e:
            raise EvidenceParseError(structure, "certificate", f"malformed: {e}") from None
        return True

    CHECKED.get_or_compute(fingerprint(cert), touch)
    return cert


def checked_crl(
    crl: x509.CertificateRevocationList, structure: str
) -> x509.CertificateRevocationList:
    try:
        _ = (crl.issuer, crl.last_update_utc, crl.next_update_utc, crl.signature_hash_algorithm)
        _ = (crl.extensions, [(r.serial_number, r.revocation_date_utc) for r in crl])
    except x509_load_errors() as e:
        raise EvidenceParseError(structure, "CRL", f"malformed: {e}") from None
    return crl


def load_der_certificate(data: bytes, structure: str) -> x509.Certificate:
    from cryptography import x509

    with _serial_zero_allowed():
        try:
            cert = x509.load_der_x509_certificate(data)
        except x509_load_errors() as e:
            raise EvidenceParseError(
                structure, "certificate", f"not a DER certificate: {e}"
            ) from None
        remember_der(cert, data)
        return _checked_certificate(cert, structure)


def load_pem_certificates(data: bytes, structure: str) -> list[x509.Certificate]:
    from cryptography import x509

    with _serial_zero_allowed():
        try:
            certs = x509.load_pem_x509_certificates(data)
        except x509_load_errors() as e:
            raise EvidenceParseError(structure, "certificate", f"bad PEM: {e}") from None
        return [_checked_certificate(c, structure) for c in certs]


@dataclass
class Bundle:
    """Certificates and CRLs gathered from one or more inputs, in the order seen."""

    certificates: list[x509.Certificate] = field(default_factory=list)
    crls: list[x509.CertificateRevocationList] = field(default_factory=list)

    def extend(self, other: Bundle) -> None:
        self.certificates.extend(other.certificates)
        self.crls.extend(other.crls)


def load_bundle(data: bytes, source: str = "certificates") -> Bundle:
    """Sort ``data`` (PEM, DER certificate or CRL, PkiPath, SNP cert table) into a Bundle.

    ``source`` names the input in errors (a file name, "auxblob").
    """
    from cryptography import x509

    if len(data) > MAX_BUNDLE_BYTES:
        raise EvidenceParseError(source, "length", f"{len(data)} bytes is more than 1 MiB")
    stripped = data.strip(b"\x00 \t\r\n")
    if not stripped:
        raise EvidenceParseError(source, "contents", "empty")
    bundle = Bundle()
    if stripped.startswith(b"-----BEGIN"):
        return _load_pem(stripped, source)
    from motte.attest.snp._certtable import looks_like_cert_table, parse_cert_table

    if looks_like_cert_table(data):
        for entry in parse_cert_table(data, structure=source):
            bundle.extend(load_bundle(entry.data, f"{source} entry {entry.guid}"))
        return bundle
    if data[:1] != bytes([SEQUENCE]):
        raise EvidenceParseError(
            source, "contents", "neither PEM, DER, a PkiPath nor an SNP certificate table"
        )
    with _serial_zero_allowed():
        try:
            cert = x509.load_der_x509_certificate(data)
        except x509_load_errors():
            pass
        else:
            remember_der(cert, data)
            bundle.certificates.append(_checked_certificate(cert, source))
            return bundle
    try:
        crl = x509.load_der_x509_crl(data)
    except x509_load_errors():
        pass
    else:
        bundle.crls.append(checked_crl(crl, source))
        return bundle
    bundle.certificates.extend(_load_pkipath(data, source))
    return bundle


def _load_pem(data: bytes, source: str) -> Bundle:
    from cryptography import x509

    bundle = Bundle()
    for block in _pem_blocks(data, source):
        if block.startswith(b"-----BEGIN CERTIFICATE-----"):
            bundle.certificates.extend(load_pem_certificates(block, source))
        elif block.startswith(b"-----BEGIN X509 CRL-----"):
            try:
                crl = x509.load_pem_x509_crl(block)
            except x509_load_errors() as e:
                raise EvidenceParseError(source, "CRL", f"bad PEM CRL: {e}") from None
            bundle.crls.append(checked_crl(crl, source))
        else:
            label = block.split(b"\n", 1)[0].decode("ascii", "replace")
            raise EvidenceParseError(source, "PEM", f"unexpected block {label!r}")
    return bundle


def _pem_blocks(data: bytes, source: str) -> Iterator[bytes]:
    pos = 0
    while True:
        start = data.find(b"-----BEGIN ", pos)
        if start < 0:
            return
        end_marker = data.find(b"-----END ", start)
        if end_marker < 0:
            raise EvidenceParseError(source, "PEM", "BEGIN without END", offset=start)
        end = data.find(b"-----", end_marker + 9)
        if end < 0:
            raise EvidenceParseError(source, "PEM", "unterminated END line", offset=end_marker)
        yield data[start : end + 5]
        pos = end + 5


def _load_pkipath(data: bytes, source: str) -> list[x509.Certificate]:
    """A PkiPath: DER ``SEQUENCE OF Certificate`` (RFC 4366), root first."""
    r = DerReader(data, source)
    outer = r.top("PkiPath", SEQUENCE)
    certs = []
    for item in r.children(outer, "PkiPath"):
        r.expect(item, SEQUENCE, "PkiPath certificate")
        certs.append(load_der_certificate(item.encoded(data), source))
    if not certs:
        raise EvidenceParseError(source, "PkiPath", "holds no certificate")
    return certs


# Facts about a certificate object, remembered by identity. A cryptography Certificate is
# hashable, but its hash costs ~8 us (the whole DER), and SHA-256 through cert.fingerprint
# ~18 us; a verification asks for the names and fingerprints of the same few certificates
# a dozen times. Each entry holds the certificate itself, so its id cannot be reused while
# the entry lives; CERT_FACTS is bounded and cleared by clear_caches.


#: The pinned vendor roots' facts, computed when they are loaded and checked, kept for the
#: process like the roots themselves (clear_caches does not forget them).
_PINNED: dict[int, list[Any]] = {}


def pin_facts(cert: x509.Certificate) -> None:
    """Keep ``cert``'s facts for the life of the process (a pinned root)."""
    fingerprint(cert)
    common_name(cert)
    _PINNED[id(cert)] = _facts(cert)


def _facts(cert: x509.Certificate) -> list[Any]:
    pinned = _PINNED.get(id(cert))
    if pinned is not None and pinned[0] is cert:
        return pinned
    entry = CERT_FACTS.get_or_compute(id(cert), lambda: [cert, None, None])
    if entry[0] is not cert:  # pragma: no cover - ids are unique while the entry holds cert
        entry = [cert, None, None]
        CERT_FACTS.put(id(cert), entry)
    return entry  # type: ignore[no-any-return]


def remember_der(cert: x509.Certificate, der: bytes) -> None:
    """Record that ``der`` is exactly ``cert``'s encoding: its fingerprint is then one
    hashlib call on bytes already at hand."""
    entry = _facts(cert)
    if entry[1] is None:
        entry[1] = hashlib.sha256(der).hexdigest()


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lower-case hex: how roots are pinned and shown."""
    entry = _facts(cert)
    if entry[1] is None:
        from cryptography.hazmat.primitives import hashes

        entry[1] = cert.fingerprint(hashes.SHA256()).hex()
    return entry[1]  # type: ignore[no-any-return]


def common_name(cert: x509.Certificate) -> str:
    """The subject's first common name ("" when there is none)."""
    entry = _facts(cert)
    if entry[2] is None:
        from cryptography.x509.oid import NameOID

        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        value = names[0].value if names else ""
        entry[2] = value if isinstance(value, str) else value.decode("utf-8", "replace")
    return entry[2]  # type: ignore[no-any-return]


def issuer_common_name(cert: x509.Certificate | x509.CertificateRevocationList) -> str:
    from cryptography.x509.oid import NameOID

    names = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else ""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")
