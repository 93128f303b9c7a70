"""The Keep's TLS client: one ``ssl.SSLContext`` per granted destination, from its settings.

What every context does unless the manifest's ``[connect.tls]`` says otherwise (and, for
the two insecure choices, the host consents):

- TLS 1.2 or 1.3; TLS 1.2 with forward-secret AEAD suites only (ECDHE/DHE with AES-GCM or
  ChaCha20-Poly1305), TLS 1.3 with OpenSSL's suites;
- the server verified against the CA bundle the host grants (else the system's roots,
  ``SSL_CERT_FILE``/``SSL_CERT_DIR`` honoured) and its name (``server_name``, default the
  destination's host; an IP address is checked against the certificate's IP addresses);
- the Keep's attested certificate as the client certificate (mutual TLS) when it has one:
  a peer that trusts the Steward's CA admits only attested Keeps. Its key reaches OpenSSL
  through a memfd, never a file.

Python's ``ssl`` module sets the TLS 1.2 suites, the versions and ALPN; it has no call for
the TLS 1.3 suites or the key-exchange groups (3.11), so those two go to OpenSSL's
``SSL_CTX_set_ciphersuites`` and ``SSL_CTX_set1_groups_list`` through ctypes, on the
context's own ``SSL_CTX``. The TLS 1.3 suites are read back (``get_ciphers``) to prove the
call reached the context Python uses; a build where it did not is refused, never ignored.

Pins (``pin_spki``, ``pin_certificate``: SHA-256 of the server's SubjectPublicKeyInfo or
of its certificate, DER) are checked after the handshake and before any byte of the guest
is sent; they add to the CA check, and with ``unsafe_skip_verification`` they are the only
check.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import ssl
from pathlib import Path
from typing import TYPE_CHECKING

from motte.errors import ExitStatus, MotteError

if TYPE_CHECKING:
    from motte.manifest import Connect, TlsSettings

_VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}
#: The TLS 1.2 suites offered unless the manifest lists its own: forward secrecy (ECDHE,
#: DHE) and an AEAD (AES-GCM, ChaCha20-Poly1305), as motte.manifest allows by name.
DEFAULT_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"
#: SSL_CTRL_SET_GROUPS_LIST (openssl/ssl.h): SSL_CTX_set1_groups_list is a macro over it.
_SSL_CTRL_SET_GROUPS_LIST = 92


class OutboundError(MotteError):
    """A destination cannot be set up as granted (a CA bundle missing, settings OpenSSL
    refuses): ``motte run`` stops before the guest starts."""

    exit_status = ExitStatus.RUN_ERROR


class PinMismatchError(ssl.SSLError):
    """The server's certificate matches none of the destination's pins."""


def _libssl() -> ctypes.CDLL:
    """The libssl the ``ssl`` module is linked to (already loaded: the same library)."""
    import _ssl

    for name in ("libssl.so.3", "libssl.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.SSL_CTX_set_ciphersuites.argtypes = (ctypes.c_void_p, ctypes.c_char_p)
        lib.SSL_CTX_set_ciphersuites.restype = ctypes.c_int
        lib.SSL_CTX_ctrl.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p)
        lib.SSL_CTX_ctrl.restype = ctypes.c_long
        return lib
    raise OutboundError(f"cannot load libssl beside {_ssl.__file__}")


def _ssl_ctx(ctx: ssl.SSLContext) -> int:
    """The ``SSL_CTX *`` of a context: the first field after the object header
    (CPython's ``PySSLContext``)."""
    address = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not address:
        raise OutboundError("cannot reach the SSL_CTX of an ssl.SSLContext")
    return address


def _set_tls13_ciphers(ctx: ssl.SSLContext, suites: tuple[str, ...], where: str) -> None:
    if not _libssl().SSL_CTX_set_ciphersuites(_ssl_ctx(ctx), ":".join(suites).encode()):
        raise OutboundError(f"{where}: tls.tls13_ciphers: OpenSSL refuses {list(suites)}")
    got = [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.3"]
    if sorted(got) != sorted(suites):
        raise OutboundError(
            f"{where}: tls.tls13_ciphers: could not be set on this Python's OpenSSL "
            f"(asked for {list(suites)}, the context has {got})"
        )


def _set_groups(ctx: ssl.SSLContext, groups: tuple[str, ...], where: str) -> None:
    text = ctypes.c_char_p(":".join(groups).encode())
    if _libssl().SSL_CTX_ctrl(_ssl_ctx(ctx), _SSL_CTRL_SET_GROUPS_LIST, 0, text) != 1:
        raise OutboundError(f"{where}: tls.groups: OpenSSL refuses {list(groups)}")


def load_client_identity(ctx: ssl.SSLContext, chain_pem: bytes, key_pem: bytes) -> None:
    """The Keep's certificate chain and key into ``ctx``, through memfds (never a file)."""
    cert_fd = os.memfd_create("motte-client-chain", os.MFD_CLOEXEC)
    key_fd = os.memfd_create("motte-client-key", os.MFD_CLOEXEC)
    try:
        for fd, data in ((cert_fd, chain_pem), (key_fd, key_pem)):
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        ctx.load_cert_chain(f"/proc/self/fd/{cert_fd}", f"/proc/self/fd/{key_fd}")
    finally:
        os.close(cert_fd)
        os.close(key_fd)


def client_context(
    connect: Connect, *, client_identity: tuple[bytes, bytes] | None = None
) -> ssl.SSLContext:
    """The context a Keep dials ``connect`` with (its ``tls`` settings must be set)."""
    settings = connect.tls
    assert settings is not None, "a plain-text destination has no TLS context"
    where = f"connect {connect.name}"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = _VERSIONS[settings.min_version]
    ctx.maximum_version = _VERSIONS[settings.max_version]
    _set_tls12_ciphers(ctx, settings, where)
    if settings.tls13_ciphers:
        _set_tls13_ciphers(ctx, settings.tls13_ciphers, where)
    if settings.groups:
        _set_groups(ctx, settings.groups, where)
    if settings.alpn:
        ctx.set_alpn_protocols(list(settings.alpn))
    if settings.unsafe_skip_verification:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        _load_trust(ctx, connect.ca, where)
    if client_identity is not None:
        try:
            load_client_identity(ctx, *client_identity)
        except ssl.SSLError as e:
            raise OutboundError(f"{where}: the Keep's certificate or key: {e}") from None
    return ctx


def _set_tls12_ciphers(ctx: ssl.SSLContext, settings: TlsSettings, where: str) -> None:
    text = ":".join(settings.tls12_ciphers) or DEFAULT_TLS12_CIPHERS
    if settings.unsafe_legacy_tls and settings.min_version in ("1.0", "1.1"):
        # OpenSSL 3 refuses TLS 1.0/1.1 (SHA-1 signatures) above security level 0.
        text += ":@SECLEVEL=0"
    try:
        ctx.set_ciphers(text)
    except ssl.SSLError:
        raise OutboundError(
            f"{where}: tls.tls12_ciphers: OpenSSL knows none of {text!r}",
            hint="`openssl ciphers -v` lists the names this OpenSSL knows",
        ) from None


def _load_trust(ctx: ssl.SSLContext, ca: Path | None, where: str) -> None:
    if ca is None:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        return
    try:
        ctx.load_verify_locations(cafile=os.fspath(ca))
    except FileNotFoundError:
        raise OutboundError(f"{where}: CA bundle {ca}: no such file") from None
    except (ssl.SSLError, OSError) as e:
        raise OutboundError(
            f"{where}: CA bundle {ca}: not a PEM bundle OpenSSL reads ({e})"
        ) from None


def check_pins(settings: TlsSettings, der: bytes | None) -> None:
    """Raise :class:`PinMismatchError` unless the server's certificate (DER) matches a pin;
    nothing to check without pins."""
    if not settings.pin_spki and not settings.pin_certificate:
        return
    if der is None:
        raise PinMismatchError("the server sent no certificate to check the pins against")
    if "sha256:" + hashlib.sha256(der).hexdigest() in settings.pin_certificate:
        return
    if settings.pin_spki:
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        spki = (
            x509.load_der_x509_certificate(der)
            .public_key()
            .public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        if "sha256:" + hashlib.sha256(spki).hexdigest() in settings.pin_spki:
            return
    raise PinMismatchError("the server's certificate matches none of the pins (tls.pin_*)")
