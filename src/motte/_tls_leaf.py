"""What a Keep's TLS certificate may be used for, whoever issues it (the Steward's CA, or a
Keep signing its own when it has no Steward): one answer, so the two cannot drift apart."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509


def tls_leaf_key_usage() -> x509.KeyUsage:
    """Signatures only (TLS 1.3 handshakes sign; no key encipherment, no certificate or CRL
    signing), for the critical KeyUsage extension of a leaf."""
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )
