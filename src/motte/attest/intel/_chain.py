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

from motte.attest import der as _der
from motte.attest.errors import EvidenceParseError, EvidenceVerificationError

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

#: SHA-256 of the DER of the Intel SGX Root CA shipped in motte/attest/roots/.
INTEL_SGX_ROOT_CA_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
_ROOT_FILE = "intel_sgx_root_ca.der"


@cache
def intel_root_der() -> bytes:
    """The DER of the pinned Intel SGX Root CA, checked against its SHA-256 when loaded."""
    import hashlib

    der = resources.files("motte.attest").joinpath("roots").joinpath(_ROOT_FILE).read_bytes()
    if hashlib.sha256(der).hexdigest() != INTEL_SGX_ROOT_CA_SHA256:
        raise RuntimeError(f"motte/attest/roots/{_ROOT_FILE} does not match its pinned digest")
    return der


def intel_root_certificate() -> x509.Certificate:
    """The pinned Intel SGX Root CA."""
    return pinned_root().x509


@cache
def pinned_root() -> Cert:
    """The pinned root, parsed once: a trust anchor, not a cached verification result."""
    return Cert(intel_root_der(), "Intel SGX Root CA")


@cache
def _crypto() -> tuple[Any, Any, Any, Any]:
    """What every signature check uses, imported once (nine checks per cold quote)."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    return InvalidSignature, ec, ec.ECDSA(hashes.SHA256()), encode_dss_signature


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

    @property
    def entries(self) -> int:
        """How many certificates, CRLs and verified signatures are remembered."""
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


#: AlgorithmIdentifier { ecdsa-with-SHA256 } (no parameters): the only algorithm in
#: Intel's SGX/TDX PKI, so the only one accepted.
ECDSA_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")


class _Signed:
    """The three parts of a signed X.509 object, cut from its DER without re-encoding."""

    __slots__ = ("der", "signature", "tbs", "tbs_items")

    def __init__(self, der: bytes) -> None:
        outer = _der.expect(_der.read_tlv(der, 0, len(der)), _der.SEQUENCE)
        if outer.end != len(der):
            raise _der.DerError("bytes after the object", outer.end)
        tbs, alg, sig = _der.children(der, outer)  # exactly three, or ValueError
        _der.expect(tbs, _der.SEQUENCE)
        if der[alg.offset : alg.end] != ECDSA_SHA256:
            raise _der.DerError("signature algorithm is not ecdsa-with-SHA256", alg.offset)
        _der.expect(sig, 0x03)
        if sig.end - sig.start < 2 or der[sig.start] != 0:
            raise _der.DerError("malformed signature BIT STRING", sig.offset)
        self.der = der
        self.tbs = der[tbs.offset : tbs.end]
        self.signature = der[sig.start + 1 : sig.end]
        self.tbs_items = list(_der.children(self.tbs, _der.read_tlv(self.tbs, 0, len(self.tbs))))

    def slice(self, tlv: _der.Tlv) -> bytes:
        return self.tbs[tlv.offset : tlv.end]

    def verify(self, issuer: Cert) -> bool:
        invalid, ec, ecdsa_sha256, _ = _crypto()
        key = issuer.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            return False
        try:
            key.verify(self.signature, self.tbs, ecdsa_sha256)
        except invalid:
            return False
        return True


class Cert(_Signed):
    """A parsed certificate with what the chain checks read from it, computed once."""

    __slots__ = ("_cn", "_ext", "_key", "issuer_der", "not_after", "not_before", "subject_der",
                 "x509")  # fmt: skip

    def __init__(self, der: bytes, what: str) -> None:
        from cryptography import x509

        try:
            super().__init__(der)
            items = self.tbs_items
            if items[0].tag == 0xA0:  # [0] EXPLICIT version
                items = items[1:]
            # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, ...
            if self.slice(items[1]) != ECDSA_SHA256:
                raise _der.DerError("TBS signature algorithm is not ecdsa-with-SHA256", 0)
            self.issuer_der = self.slice(_der.expect(items[2], _der.SEQUENCE))
            self.subject_der = self.slice(_der.expect(items[4], _der.SEQUENCE))
            cert = x509.load_der_x509_certificate(der)
            self.not_before = cert.not_valid_before_utc
            self.not_after = cert.not_valid_after_utc
        except (ValueError, IndexError, _der.DerError, x509.InvalidVersion) as e:
            raise EvidenceParseError(what, "certificate", f"not DER X.509: {e}") from None
        self.x509 = cert
        self._key: Any = None
        self._ext: dict[bytes, bytes] | None = None
        self._cn: str | None = None

    @property
    def cn(self) -> str:
        """The subject's first common name."""
        if self._cn is None:
            try:
                self._cn = _common_name(self.subject_der)
            except _der.DerError:
                self._cn = ""
        return self._cn

    def public_key(self) -> Any:
        """The subject's key; None when cryptography cannot load it (then nothing verifies)."""
        if self._key is None:
            from cryptography.exceptions import UnsupportedAlgorithm

            try:
                self._key = self.x509.public_key()
            except (ValueError, UnsupportedAlgorithm):
                self._key = False
        return self._key or None

    def extension(self, oid: bytes) -> bytes | None:
        """The value (inside the OCTET STRING) of the extension whose OID body is ``oid``."""
        if self._ext is None:
            self._ext = self._extensions()
        return self._ext.get(oid)

    def _extensions(self) -> dict[bytes, bytes]:
        items = self.tbs_items
        if items[0].tag == 0xA0:
            items = items[1:]
        found: dict[bytes, bytes] = {}
        for wrapper in items[6:]:  # after subjectPublicKeyInfo: [1], [2] unique IDs, [3]
            if wrapper.tag != 0xA3:
                continue
            tbs = self.tbs
            (seq,) = _der.children(tbs, wrapper)
            for ext in _der.children(tbs, _der.expect(seq, _der.SEQUENCE)):
                parts = _der.children(tbs, _der.expect(ext, _der.SEQUENCE))
                oid = tbs[parts[0].start : parts[0].end]
                value = _der.expect(parts[-1], _der.OCTET_STRING)
                if _der.expect(parts[0], _der.OID) and oid in found:
                    raise _der.DerError("duplicate extension", ext.offset)
                found[oid] = tbs[value.start : value.end]
        return found

    @property
    def is_ca(self) -> bool:
        """basicConstraints says cA = TRUE."""
        value = self.extension(_BASIC_CONSTRAINTS)
        if not value:
            return False
        seq = _der.expect(_der.read_tlv(value, 0, len(value)), _der.SEQUENCE)
        items = _der.children(value, seq)
        return bool(items) and items[0].tag == _der.BOOLEAN and _der.decode_boolean(value, items[0])


_BASIC_CONSTRAINTS = _der.encode_oid_body("2.5.29.19")


class Crl(_Signed):
    __slots__ = ("issuer_der", "x509")

    def __init__(self, der: bytes, what: str) -> None:
        from cryptography import x509

        try:
            super().__init__(der)
            items = self.tbs_items
            if items[0].tag == _der.INTEGER:  # version
                items = items[1:]
            if self.slice(items[0]) != ECDSA_SHA256:
                raise _der.DerError("TBS signature algorithm is not ecdsa-with-SHA256", 0)
            self.issuer_der = self.slice(_der.expect(items[1], _der.SEQUENCE))
            self.x509 = x509.load_der_x509_crl(der)
        except (ValueError, IndexError, _der.DerError, x509.InvalidVersion) as e:
            raise EvidenceParseError(what, "crl", f"not a DER CRL: {e}") from None


class _OneCall(dict):  # type: ignore[type-arg]
    """The private memo of one verification (the ChainCache interface, minus the rest)."""

    __slots__ = ()
    _get = dict.get
    _put = dict.__setitem__


class Checker:
    """One verification's use of a chain cache.

    Without a shared cache each verification gets a private one, so a certificate that
    appears twice in one verification (the TCB Signing certificate) is checked once.
    """

    __slots__ = ("cache",)

    def __init__(self, cache: ChainCache | None) -> None:
        # A verification of its own needs no lock and no eviction: a plain dict will do.
        self.cache: Any = cache if cache is not None else _OneCall()

    def certificate(self, der: bytes, what: str) -> Cert:
        cert = self.cache._get(("cert", der))
        if cert is None:
            cert = Cert(der, what)
            self.cache._put(("cert", der), cert)
        return cert

    def crl(self, der: bytes, what: str) -> Crl:
        crl = self.cache._get(("crl", der))
        if crl is None:
            crl = Crl(der, what)
            self.cache._put(("crl", der), crl)
        return crl

    def issued_by(
        self, cert: Cert, issuer: Cert, *, check: str, what: str, now: datetime, ca: bool
    ) -> None:
        """``cert`` names ``issuer``, is signed by it, is valid at ``now`` (and is a CA)."""
        key = ("sig", issuer.der, cert.der)
        if not self.cache._get(key):
            if cert.issuer_der != issuer.subject_der:
                raise EvidenceVerificationError(
                    check,
                    f"{what} is issued by {name_text(cert.issuer_der)}, not by "
                    f"{name_text(issuer.subject_der)}",
                )
            if not cert.verify(issuer):
                raise EvidenceVerificationError(
                    check, f"{what} signature does not verify with its issuer's key"
                )
            self.cache._put(key, True)
        check_validity(cert, now, check=check, what=what)
        try:
            is_ca = cert.is_ca
        except (ValueError, _der.DerError):
            raise EvidenceVerificationError(check, f"{what} has malformed extensions") from None
        if ca and not is_ca:
            raise EvidenceVerificationError(check, f"{what} is not a CA certificate")

    def crl_signed_by(self, crl: Crl, issuer: Cert, *, check: str, what: str) -> None:
        key = ("crl-sig", issuer.der, crl.der)
        if self.cache._get(key):
            return
        if crl.issuer_der != issuer.subject_der:
            raise EvidenceVerificationError(
                check,
                f"{what} is issued by {name_text(crl.issuer_der)}, not by "
                f"{name_text(issuer.subject_der)}",
            )
        if not crl.verify(issuer):
            raise EvidenceVerificationError(check, f"{what} signature does not verify")
        self.cache._put(key, True)

    def signed(self, signer: Cert, body: bytes, signature: bytes, *, check: str, what: str) -> None:
        """An Intel raw r||s signature by ``signer`` over ``body`` (collateral JSON, the QE
        report): remembered per (signer, body, signature)."""
        from cryptography.hazmat.primitives.asymmetric import ec

        key = ("signed", signer.der, body, signature)
        if self.cache._get(key):
            return
        public_key = signer.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise EvidenceVerificationError(check, f"{what}: signer key is not ECDSA")
        verify_raw_ecdsa(public_key, signature, body, check=check, what=what)
        self.cache._put(key, True)


_CN_OID = b"\x55\x04\x03"


def name_text(name: bytes) -> str:
    """A DER Name for a message: its CN, or a hex prefix when it does not decode."""
    try:
        cn = _common_name(name)
    except (_der.DerError, ValueError, IndexError):
        cn = ""
    return f"CN={cn!r}" if cn else f"the name {name[:24].hex()}..."


def _common_name(name: bytes) -> str:
    """The first CN of a DER Name ("" when there is none)."""
    top = _der.read_tlv(name, 0, len(name))
    for rdn in _der.children(name, top):
        for atv in _der.children(name, rdn):
            oid = _der.read_tlv(name, atv.start, atv.end)
            if name[oid.start : oid.end] == _CN_OID:
                value = _der.read_tlv(name, oid.end, atv.end)
                return name[value.start : value.end].decode("utf-8", errors="replace")
    return ""


def check_validity(cert: Cert, now: datetime, *, check: str, what: str) -> None:
    if now < cert.not_before:
        raise EvidenceVerificationError(
            check, f"{what} is not valid before {cert.not_before.isoformat()}"
        )
    if now > cert.not_after:
        raise EvidenceVerificationError(check, f"{what} expired at {cert.not_after.isoformat()}")


def check_crl_fresh(crl: Crl, now: datetime, *, what: str) -> None:
    if now < crl.x509.last_update_utc:
        raise EvidenceVerificationError(
            "collateral-not-yet-valid",
            f"{what} is issued {crl.x509.last_update_utc.isoformat()}, after {now.isoformat()}",
        )
    nxt = crl.x509.next_update_utc
    if nxt is None or now > nxt:
        raise EvidenceVerificationError(
            "collateral-expired",
            f"{what} expired at {nxt.isoformat() if nxt else '(no nextUpdate)'}",
            hint="fetch fresh collateral from Intel PCS or your PCCS",
        )


def check_not_revoked(crl: Crl, cert: Cert, *, check: str, what: str) -> None:
    serial = cert.x509.serial_number
    try:
        entry = crl.x509.get_revoked_certificate_by_serial_number(serial)
    except ValueError as e:  # entries are decoded lazily; a signed CRL can still be odd
        raise EvidenceParseError("CRL", "revokedCertificates", str(e)) from None
    if entry is not None:
        raise EvidenceVerificationError(
            check,
            f"{what} (serial {serial:x}) is revoked since {entry.revocation_date_utc.isoformat()}",
        )


def verify_raw_ecdsa(
    public_key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes, *, check: str, what: str
) -> None:
    """Verify an Intel-style raw ``r || s`` (big-endian, 32 bytes each) P-256 signature."""
    invalid, ec, ecdsa_sha256, encode_dss_signature = _crypto()
    if len(signature) != 64 or not isinstance(public_key.curve, ec.SECP256R1):
        raise EvidenceVerificationError(check, f"{what}: not an ECDSA P-256 r||s signature")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    try:
        public_key.verify(encode_dss_signature(r, s), data, ecdsa_sha256)
    except invalid:
        raise EvidenceVerificationError(check, f"{what} does not verify") from None
