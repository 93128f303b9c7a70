"""Certificates, CRLs and signatures under the pinned Intel SGX Root CA, with a chain cache.

Intel's PKI is small and fixed: the Intel SGX Root CA signs the PCK Platform/Processor CAs
and the TCB Signing certificate; a CA signs the PCK leaf and its CRL; all ECDSA P-256 with
SHA-256. The web-PKI profile of ``x509.verification`` does not fit (no SAN/EKU), so each
link is checked here: issuer name, signature, validity at ``now``, CA flag, revocation.

:class:`ChainCache` remembers *parsed* certificates and CRLs and which signatures were
*verified*, keyed by the exact DER bytes involved; nothing time-dependent (validity, CRL
freshness, revocation) is ever cached, so a cache hit changes speed, never the outcome.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from motte.attest.errors import EvidenceParseError, EvidenceVerificationError

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

#: SHA-256 of the DER of the Intel SGX Root CA shipped in motte/attest/roots/.
INTEL_SGX_ROOT_CA_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
_ROOT_FILE = "intel_sgx_root_ca.der"


@cache
def intel_root_certificate() -> x509.Certificate:
    """The pinned Intel SGX Root CA (checked against its fingerprint when loaded)."""
    import hashlib

    from cryptography import x509

    der = resources.files("motte.attest").joinpath("roots").joinpath(_ROOT_FILE).read_bytes()
    if hashlib.sha256(der).hexdigest() != INTEL_SGX_ROOT_CA_SHA256:
        raise RuntimeError(f"motte/attest/roots/{_ROOT_FILE} does not match its pinned digest")
    return x509.load_der_x509_certificate(der)


class ChainCache:
    """Parsed certificates/CRLs and verified signatures, reused across verifications.

    Bounded (least recently used entries go first) and safe to share between threads.
    Keys are the exact bytes checked, so a hit can only repeat a result already computed.
    """

    def __init__(self, max_entries: int = 1024) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _get(self, key: tuple[Any, ...]) -> Any:
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return value

    def _put(self, key: tuple[Any, ...], value: Any) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class _Checker:
    """One verification's view of the chain cache (or of no cache)."""

    __slots__ = ("cache",)

    def __init__(self, cache: ChainCache | None) -> None:
        self.cache = cache

    def certificate(self, der: bytes, what: str) -> x509.Certificate:
        from cryptography import x509

        c = self.cache
        cert = c._get(("cert", der)) if c else None
        if cert is None:
            try:
                cert = x509.load_der_x509_certificate(der)
            except ValueError as e:
                raise EvidenceParseError(what, "certificate", f"not DER X.509: {e}") from None
            if c:
                c._put(("cert", der), cert)
        return cert

    def crl(self, der: bytes, what: str) -> x509.CertificateRevocationList:
        from cryptography import x509

        c = self.cache
        crl = c._get(("crl", der)) if c else None
        if crl is None:
            try:
                crl = x509.load_der_x509_crl(der)
            except ValueError as e:
                raise EvidenceParseError(what, "crl", f"not a DER CRL: {e}") from None
            if c:
                c._put(("crl", der), crl)
        return crl

    def issued_by(
        self,
        cert: x509.Certificate,
        issuer: x509.Certificate,
        *,
        check: str,
        what: str,
        now: datetime,
        ca: bool,
    ) -> None:
        """``cert`` is signed by ``issuer``, names it, is valid at ``now`` (and is a CA)."""
        from cryptography import x509
        from cryptography.exceptions import InvalidSignature

        if cert.issuer != issuer.subject:
            raise EvidenceVerificationError(
                check,
                f"{what} is issued by {cert.issuer.rfc4514_string()}, not by "
                f"{issuer.subject.rfc4514_string()}",
            )
        key = ("sig", issuer.tbs_certificate_bytes, cert.tbs_certificate_bytes, cert.signature)
        if not (self.cache and self.cache._get(key)):
            try:
                cert.verify_directly_issued_by(issuer)
            except (InvalidSignature, ValueError, TypeError) as e:
                raise EvidenceVerificationError(
                    check, f"{what} signature does not verify with its issuer's key ({e})"
                ) from None
            if self.cache:
                self.cache._put(key, True)
        check_validity(cert, now, check=check, what=what)
        if ca:
            try:
                bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
            except x509.ExtensionNotFound:
                bc = None
            if bc is None or not bc.ca:
                raise EvidenceVerificationError(check, f"{what} is not a CA certificate")

    def crl_signed_by(
        self,
        crl: x509.CertificateRevocationList,
        crl_der: bytes,
        issuer: x509.Certificate,
        *,
        check: str,
        what: str,
    ) -> None:
        if crl.issuer != issuer.subject:
            raise EvidenceVerificationError(
                check,
                f"{what} is issued by {crl.issuer.rfc4514_string()}, not by "
                f"{issuer.subject.rfc4514_string()}",
            )
        key = ("crl-sig", issuer.tbs_certificate_bytes, crl_der)
        if self.cache and self.cache._get(key):
            return
        if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
            raise EvidenceVerificationError(check, f"{what} signature does not verify")
        if self.cache:
            self.cache._put(key, True)

    def signed_json(
        self,
        signer: x509.Certificate,
        body: bytes,
        signature: bytes,
        *,
        check: str,
        what: str,
    ) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        key = ("json-sig", signer.tbs_certificate_bytes, body, signature)
        if self.cache and self.cache._get(key):
            return
        public_key = signer.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise EvidenceVerificationError(check, f"{what} signer key is not ECDSA")
        verify_raw_ecdsa(public_key, signature, body, check=check, what=what)
        if self.cache:
            self.cache._put(key, True)


def check_validity(cert: x509.Certificate, now: datetime, *, check: str, what: str) -> None:
    if now < cert.not_valid_before_utc:
        raise EvidenceVerificationError(
            check, f"{what} is not valid before {cert.not_valid_before_utc.isoformat()}"
        )
    if now > cert.not_valid_after_utc:
        raise EvidenceVerificationError(
            check, f"{what} expired at {cert.not_valid_after_utc.isoformat()}"
        )


def check_crl_fresh(crl: x509.CertificateRevocationList, now: datetime, *, what: str) -> None:
    if now < crl.last_update_utc:
        raise EvidenceVerificationError(
            "collateral-not-yet-valid",
            f"{what} is issued {crl.last_update_utc.isoformat()}, after {now.isoformat()}",
        )
    nxt = crl.next_update_utc
    if nxt is None or now > nxt:
        raise EvidenceVerificationError(
            "collateral-expired",
            f"{what} expired at {nxt.isoformat() if nxt else '(no nextUpdate)'}",
            hint="fetch fresh collateral from Intel PCS or your PCCS",
        )


def check_not_revoked(
    crl: x509.CertificateRevocationList, cert: x509.Certificate, *, check: str, what: str
) -> None:
    entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if entry is not None:
        raise EvidenceVerificationError(
            check,
            f"{what} (serial {cert.serial_number:x}) is revoked since "
            f"{entry.revocation_date_utc.isoformat()}",
        )


def verify_raw_ecdsa(
    public_key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes, *, check: str, what: str
) -> None:
    """Verify an Intel-style raw ``r || s`` (big-endian, 32 bytes each) P-256 signature."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    if len(signature) != 64 or not isinstance(public_key.curve, ec.SECP256R1):
        raise EvidenceVerificationError(check, f"{what}: not an ECDSA P-256 r||s signature")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    try:
        public_key.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise EvidenceVerificationError(check, f"{what} does not verify") from None
