"""TlsIdentity and the self-signed identity: real keys and certificates through
cryptography, and a real TLS 1.3 handshake through the ssl module (in memory, no socket)."""

from __future__ import annotations

import contextlib
import datetime as dt
import ssl

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from motte.keep.serve import (
    IdentityError,
    TlsIdentity,
    self_signed_identity,
    server_context,
)

NOW = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def _leaf(identity: TlsIdentity) -> x509.Certificate:
    return x509.load_pem_x509_certificates(identity.certificate_chain_pem)[0]


def test_self_signed_is_unattested_short_lived_and_names_localhost() -> None:
    identity = self_signed_identity(now=NOW)
    assert identity.attested is False
    assert "attests nothing" in identity.description
    leaf = _leaf(identity)
    assert leaf.not_valid_after_utc == NOW + dt.timedelta(days=1)
    assert leaf.not_valid_before_utc == NOW - dt.timedelta(minutes=5)
    assert identity.not_after == leaf.not_valid_after_utc
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(a) for a in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    org = leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    assert "UNATTESTED" in org
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False


def test_each_self_signed_identity_has_a_fresh_key() -> None:
    a, b = self_signed_identity(now=NOW), self_signed_identity(now=NOW)
    assert a.private_key_pem != b.private_key_pem
    assert a.leaf_sha256 != b.leaf_sha256


def test_key_is_never_in_repr() -> None:
    identity = self_signed_identity(now=NOW)
    text = repr(identity)
    assert "PRIVATE KEY" not in text
    assert identity.leaf_sha256 in text


def test_custom_names_and_lifetime() -> None:
    identity = self_signed_identity(
        hostnames=("keep.example",), addresses=(), lifetime=dt.timedelta(hours=2), now=NOW
    )
    leaf = _leaf(identity)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["keep.example"]
    assert sans.get_values_for_type(x509.IPAddress) == []
    assert leaf.not_valid_after_utc == NOW + dt.timedelta(hours=2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"addresses": ("not-an-ip",)}, "bad host name or address"),
        ({"lifetime": dt.timedelta(0)}, "lifetime must be positive"),
    ],
)
def test_self_signed_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(IdentityError, match=message):
        self_signed_identity(**kwargs)  # type: ignore[arg-type]


def test_mismatched_key_is_refused() -> None:
    a, b = self_signed_identity(now=NOW), self_signed_identity(now=NOW)
    with pytest.raises(IdentityError, match="does not belong to the first certificate"):
        TlsIdentity(a.certificate_chain_pem, b.private_key_pem, attested=True, description="x")


@pytest.mark.parametrize(
    ("chain", "key", "description", "message"),
    [
        (b"not pem", None, "x", "certificate chain: not PEM"),
        (None, b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "x", "key"),
        (None, None, "", "one non-empty line"),
        (None, None, "two\nlines", "one non-empty line"),
    ],
)
def test_malformed_identity_is_refused(
    chain: bytes | None, key: bytes | None, description: str, message: str
) -> None:
    good = self_signed_identity(now=NOW)
    with pytest.raises(IdentityError, match=message):
        TlsIdentity(
            chain if chain is not None else good.certificate_chain_pem,
            key if key is not None else good.private_key_pem,
            attested=False,
            description=description,
        )


def test_a_chain_keeps_its_intermediates() -> None:
    leaf = self_signed_identity(now=NOW)
    other = self_signed_identity(now=NOW)
    chain = leaf.certificate_chain_pem + other.certificate_chain_pem
    identity = TlsIdentity(chain, leaf.private_key_pem, attested=True, description="a chain")
    assert len(x509.load_pem_x509_certificates(identity.certificate_chain_pem)) == 2
    assert identity.leaf_sha256 == leaf.leaf_sha256


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> tuple[ssl.SSLObject, bytes]:
    """A TLS handshake between two SSLObjects over memory BIOs; returns the client side."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname="localhost")
    s = server.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        for side in (c, s):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        try:
            c.do_handshake()
            s.do_handshake()
            break
        except ssl.SSLWantReadError:
            continue
    return c, c.getpeercert(binary_form=True) or b""


def test_server_context_speaks_tls13_with_the_identity() -> None:
    identity = self_signed_identity()
    client = ssl.create_default_context(cadata=identity.certificate_chain_pem.decode())
    client.set_alpn_protocols(["http/1.1"])
    conn, peer = _handshake(server_context(identity, alpn=["http/1.1"]), client)
    assert conn.version() == "TLSv1.3"
    assert conn.selected_alpn_protocol() == "http/1.1"
    assert peer == identity.leaf_der


def test_server_context_refuses_tls12() -> None:
    identity = self_signed_identity()
    client = ssl.create_default_context(cadata=identity.certificate_chain_pem.decode())
    client.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        _handshake(server_context(identity), client)
