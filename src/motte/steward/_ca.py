"""The Steward's certificate authority: one P-384 key, one self-signed certificate.

The CA certificate is what clients pin (``motte connect --steward-ca``). It can sign only
end-entity certificates (pathLen 0) and only for the names ``motte steward init`` allowed
(name constraints), so even a stolen CA key cannot mint a certificate clients would accept
for a name outside that list.

Issued Keep certificates are short-lived and carry no subject, only a critical SAN (RFC
5280 §4.2.1.6), plus EKU serverAuth and clientAuth and motte's extensions (see _oids.py).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from motte._tls_leaf import tls_leaf_key_usage
from motte.fsutil import atomic_write_bytes
from motte.steward._config import SanPattern, StewardPaths
from motte.steward.errors import StewardConfigError, StewardNotInitialisedError

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

CA_LIFETIME = timedelta(days=3650)
#: Issued certificates start a minute early: a Keep whose clock is slightly behind the
#: Steward's still accepts its own certificate.
CLOCK_SKEW = timedelta(seconds=60)


def _name_constraints(patterns: Sequence[SanPattern]) -> x509.NameConstraints:
    from cryptography import x509

    subtrees: list[x509.GeneralName] = []
    seen: set[str] = set()
    for p in patterns:
        key = f"{p.kind}:{p.value}"
        if key in seen:
            continue
        seen.add(key)
        if p.kind == "ip":
            subtrees.append(x509.IPAddress(ipaddress.ip_network(p.value)))
        else:
            # RFC 5280: a DNS constraint permits the name and every name below it.
            subtrees.append(x509.DNSName(p.value))
    return x509.NameConstraints(permitted_subtrees=subtrees, excluded_subtrees=None)


@dataclass(frozen=True, slots=True)
class StewardCa:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, san_allow: Sequence[SanPattern], *, now: datetime) -> StewardCa:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP384R1())
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "motte"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"motte Steward CA {ski.digest[:4].hex()}"),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(_name_constraints(san_allow), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                critical=False,
            )
            .sign(key, hashes.SHA384())
        )
        return cls(key, cert)

    @classmethod
    def load(cls, paths: StewardPaths) -> StewardCa:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        if not paths.ca_key.exists() or not paths.ca_cert.exists():
            raise StewardNotInitialisedError(
                f"{paths.root}: no Steward CA here", hint="create one with `motte steward init`"
            )
        try:
            key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
            cert = x509.load_pem_x509_certificate(paths.ca_cert.read_bytes())
        except (OSError, ValueError, TypeError) as e:
            raise StewardConfigError(f"{paths.root}: cannot load the CA: {e}") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise StewardConfigError(f"{paths.ca_key}: not an EC private key")
        if key.public_key() != cert.public_key():
            raise StewardConfigError(f"{paths.ca_cert}: does not match {paths.ca_key}")
        mode = paths.ca_key.stat().st_mode & 0o777
        if mode & 0o077:
            raise StewardConfigError(
                f"{paths.ca_key}: mode {mode:o} lets others read the CA key",
                hint=f"chmod 600 {paths.ca_key}",
            )
        return cls(key, cert)

    def save(self, paths: StewardPaths) -> None:
        from cryptography.hazmat.primitives import serialization

        pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        atomic_write_bytes(paths.ca_key, pem, mode=0o600)
        atomic_write_bytes(paths.ca_cert, self.cert_pem, mode=0o644)

    @property
    def cert_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def fingerprint(self) -> str:
        from cryptography.hazmat.primitives import hashes

        return self.cert.fingerprint(hashes.SHA256()).hex()

    def permits(self, pattern: SanPattern) -> bool:
        """Whether the CA's name constraints allow every name ``pattern`` can match."""
        from cryptography import x509

        try:
            nc = self.cert.extensions.get_extension_for_class(x509.NameConstraints).value
        except x509.ExtensionNotFound:
            return True
        for subtree in nc.permitted_subtrees or ():
            if pattern.kind == "ip" and isinstance(subtree, x509.IPAddress):
                network = subtree.value
                if (
                    isinstance(network, ipaddress.IPv4Network | ipaddress.IPv6Network)
                    and ipaddress.ip_address(pattern.value) in network
                ):
                    return True
            if pattern.kind != "ip" and isinstance(subtree, x509.DNSName):
                base = subtree.value.lower()
                if pattern.value == base or pattern.value.endswith("." + base):
                    return True
        return False

    def issue(
        self,
        public_key: ec.EllipticCurvePublicKey,
        sans: Sequence[x509.GeneralName],
        extensions: Sequence[tuple[str, bytes]],
        *,
        lifetime: int,
        now: datetime,
    ) -> x509.Certificate:
        """A Keep certificate for ``public_key`` naming ``sans``, with motte's extensions."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.x509.oid import ExtendedKeyUsageOID

        now = now.astimezone(UTC)
        not_before = max(now - CLOCK_SKEW, self.cert.not_valid_before_utc)
        not_after = min(now + timedelta(seconds=lifetime), self.cert.not_valid_after_utc)
        ca_ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(list(sans)), critical=True)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                tls_leaf_key_usage(),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
        )
        for oid, value in extensions:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value), critical=False
            )
        return builder.sign(self.key, hashes.SHA384())
