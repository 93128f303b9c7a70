"""The certificate and key a Keep's TLS listeners present: :class:`TlsIdentity`.

An identity is either **attested** (a chain issued by the Steward after it verified the
Keep's evidence, built by the attestation side of motte) or the **self-signed** one from
:func:`self_signed_identity`, for a Keep with no Steward: a fresh key that exists only in
this process's memory, a certificate valid for one day, and nothing that lets a client tell
this Keep from any other program. The listeners log a loud warning whenever they serve it.

    identity = self_signed_identity()                      # no Steward
    identity = TlsIdentity(chain_pem, key_pem, attested=True,
                           description="issued by https://steward.example (snp)")

Listeners speak TLS 1.3 only (:func:`server_context`): no older protocol is offered, so no
downgrade is possible and the cipher suites are the TLS 1.3 AEADs alone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from motte._record import Record
from motte._tls_leaf import tls_leaf_key_usage
from motte.keep.serve._errors import IdentityError

if TYPE_CHECKING:
    import ssl

    from cryptography import x509

#: How long a self-signed certificate is valid: short, because nothing can revoke it.
SELF_SIGNED_LIFETIME = dt.timedelta(days=1)
#: Clocks differ; a certificate valid from a few minutes ago is accepted by a slow client.
CLOCK_SKEW = dt.timedelta(minutes=5)
#: The organisation in a self-signed certificate's subject, visible in any certificate viewer.
SELF_SIGNED_ORGANIZATION = "motte UNATTESTED self-signed Keep"
MAX_PEM_BYTES = 1024 * 1024


class TlsIdentity(Record):
    """A certificate chain (leaf first, PEM) and its private key (PEM, unencrypted).

    ``attested`` says whether the chain comes from a Steward that verified this Keep's
    evidence; ``description`` is one line for the log (who issued it, for what).
    Construction checks that the PEM parses, that the chain holds at least one certificate
    and that the key belongs to the first one; :class:`IdentityError` names what failed.
    The key never appears in ``repr``.
    """

    __slots__ = ("attested", "certificate_chain_pem", "description", "private_key_pem")
    certificate_chain_pem: bytes
    private_key_pem: bytes
    attested: bool
    description: str

    def __init__(
        self,
        certificate_chain_pem: bytes,
        private_key_pem: bytes,
        *,
        attested: bool,
        description: str,
    ) -> None:
        if not isinstance(attested, bool):
            raise TypeError("attested must be a bool")
        if not description or "\n" in description or "\r" in description:
            raise IdentityError("TLS identity: the description must be one non-empty line")
        _check_pair(certificate_chain_pem, private_key_pem)
        self._set(
            certificate_chain_pem=bytes(certificate_chain_pem),
            private_key_pem=bytes(private_key_pem),
            attested=attested,
            description=description,
        )

    def __repr__(self) -> str:
        return (
            f"TlsIdentity(attested={self.attested!r}, description={self.description!r}, "
            f"leaf_sha256={self.leaf_sha256!r})"
        )

    @property
    def leaf(self) -> x509.Certificate:
        """The leaf certificate (the first of the chain), parsed."""
        from cryptography import x509

        return x509.load_pem_x509_certificates(self.certificate_chain_pem)[0]

    @property
    def leaf_der(self) -> bytes:
        """The leaf certificate, DER-encoded."""
        from cryptography.hazmat.primitives.serialization import Encoding

        return self.leaf.public_bytes(Encoding.DER)

    @property
    def leaf_sha256(self) -> str:
        """SHA-256 of the leaf certificate (hex): what a client can pin without a Steward."""
        return hashlib.sha256(self.leaf_der).hexdigest()

    @property
    def not_after(self) -> dt.datetime:
        """When the leaf certificate expires (UTC)."""
        return self.leaf.not_valid_after_utc


def _check_pair(chain_pem: bytes, key_pem: bytes) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    if not isinstance(chain_pem, bytes | bytearray) or not isinstance(key_pem, bytes | bytearray):
        raise TypeError("the certificate chain and the key are PEM bytes")
    if len(chain_pem) > MAX_PEM_BYTES or len(key_pem) > MAX_PEM_BYTES:
        raise IdentityError("TLS identity: PEM larger than 1 MiB")
    try:
        chain = x509.load_pem_x509_certificates(bytes(chain_pem))
    except ValueError as e:
        raise IdentityError(
            f"TLS identity: certificate chain: not PEM certificates ({e})"
        ) from None
    try:
        key = serialization.load_pem_private_key(bytes(key_pem), password=None)
    except (ValueError, TypeError) as e:
        raise IdentityError(
            f"TLS identity: private key: not an unencrypted PEM key ({e})"
        ) from None
    leaf_public = (
        chain[0]
        .public_key()
        .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    key_public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if leaf_public != key_public:
        raise IdentityError(
            "TLS identity: the private key does not belong to the first certificate of the chain",
            hint="the chain must start with the leaf certificate issued for this key",
        )


def self_signed_identity(
    *,
    hostnames: Sequence[str] = ("localhost",),
    addresses: Sequence[str] = ("127.0.0.1", "::1"),
    lifetime: dt.timedelta = SELF_SIGNED_LIFETIME,
    now: dt.datetime | None = None,
) -> TlsIdentity:
    """A fresh P-256 key (in memory only) and a self-signed certificate for it.

    The certificate names ``hostnames`` and ``addresses`` as subject alternative names, is
    valid from ``now`` (minus five minutes of clock skew) for ``lifetime``, and says in its
    subject that it is unattested. It proves nothing about the Keep: ``attested`` is False.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if lifetime <= dt.timedelta(0):
        raise IdentityError("self-signed identity: the lifetime must be positive")
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, SELF_SIGNED_ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0] if hostnames else "motte"),
        ]
    )
    try:
        sans: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
        sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    except ValueError as e:
        raise IdentityError(f"self-signed identity: bad host name or address: {e}") from None
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(os.urandom(16), "big") >> 1)
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            tls_leaf_key_usage(),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    return TlsIdentity(
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        attested=False,
        description="self-signed certificate (no Steward): it attests nothing",
    )


def server_context(identity: TlsIdentity, *, alpn: Sequence[str] = ()) -> ssl.SSLContext:
    """A server-side SSLContext for ``identity``: TLS 1.3 only, no client certificates.

    The chain and key reach OpenSSL through memfds, so the key is never written to disk.
    """
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    # Session tickets would let a client resume without the certificate; each connection
    # to a Keep sees the (possibly renewed) attested certificate.
    ctx.num_tickets = 0
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    cert_fd = os.memfd_create("motte-tls-chain", os.MFD_CLOEXEC)
    key_fd = os.memfd_create("motte-tls-key", os.MFD_CLOEXEC)
    try:
        _write_all(cert_fd, identity.certificate_chain_pem)
        _write_all(key_fd, identity.private_key_pem)
        try:
            ctx.load_cert_chain(f"/proc/self/fd/{cert_fd}", f"/proc/self/fd/{key_fd}")
        except ssl.SSLError as e:
            raise IdentityError(f"TLS identity: OpenSSL refused the chain or key: {e}") from None
    finally:
        os.close(cert_fd)
        os.close(key_fd)
    return ctx


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
