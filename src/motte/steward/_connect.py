"""Connect to a Keep and know what it is: TLS 1.3 to the Steward's CA, then the claims.

    from motte.steward import connect_keep
    with connect_keep("https://keep.example.com:8443/", steward_ca="ca.pem",
                      expect_digest="sha256:...") as keep:
        keep.identity.kind, keep.identity.measurement   # what the Steward verified
        keep.request("GET", "/")                          # over the same, verified connection

The checks, in order; any failure raises :class:`KeepIdentityError` naming it:

1. TLS 1.3, the chain to the pinned Steward CA, the name in the URL against the SAN, the
   validity period (OpenSSL, in strict RFC 5280 mode);
2. EKU serverAuth;
3. motte's extensions: a TEE kind (``sim`` only with ``allow_insecure_sim``), a
   measurement, and the workload digest equal to ``expect_digest``.

The request goes over the connection that was verified: checking one connection and
talking over another would let a second server answer.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from motte._digest import check_digest
from motte.errors import RemoteError, UsageError
from motte.steward._identity import KeepCertificate
from motte.steward.errors import KeepIdentityError

SECURE_KINDS = ("snp", "tdx", "sgx")
MAX_BODY = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "headers": [list(h) for h in self.headers],
            "body": self.body.decode("utf-8", "replace"),
        }


class KeepConnection:
    """A TLS connection to a Keep whose identity was verified."""

    def __init__(self, sock: ssl.SSLSocket, identity: KeepCertificate, url: str, host: str) -> None:
        self.sock = sock
        self.identity = identity
        self.url = url
        self._host = host
        self.tls_version = sock.version()
        self.cipher = (sock.cipher() or ("?",))[0]

    def request(self, method: str = "GET", path: str | None = None, body: bytes = b"") -> Response:
        """One HTTP/1.1 request over this connection (which it then closes)."""
        if path is None:
            parts = urlsplit(self.url)
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        target = path
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: {self._host}\r\n"
            f"User-Agent: motte-connect\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        try:
            self.sock.sendall(head.encode("latin-1") + body)
            resp = http.client.HTTPResponse(self.sock, method=method)  # type: ignore[arg-type]
            resp.begin()
            data = resp.read(MAX_BODY + 1)
        except (OSError, http.client.HTTPException) as e:
            raise RemoteError(f"{self.url}: the request failed: {e}") from None
        finally:
            self.close()
        if len(data) > MAX_BODY:
            raise RemoteError(f"{self.url}: response body larger than {MAX_BODY} bytes")
        return Response(resp.status, resp.reason, tuple(resp.getheaders()), data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> KeepConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _context(steward_ca: bytes | str | Path) -> ssl.SSLContext:
    if isinstance(steward_ca, bytes):
        pem = steward_ca
        where = "--steward-ca"
    else:
        where = str(steward_ca)
        try:
            pem = Path(steward_ca).read_bytes()
        except OSError as e:
            raise UsageError(f"--steward-ca {where}: cannot read: {e.strerror}") from None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    try:
        ctx.load_verify_locations(cadata=pem.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as e:
        raise UsageError(f"--steward-ca {where}: not a PEM CA certificate: {e}") from None
    return ctx


def connect_keep(
    url: str,
    *,
    steward_ca: bytes | str | Path,
    expect_digest: str,
    allow_insecure_sim: bool = False,
    timeout: float = 10.0,
) -> KeepConnection:
    """Open TLS to the Keep at ``url`` (``https://`` or ``tls://``) and verify what it is."""
    try:
        check_digest(expect_digest)
    except ValueError as e:
        raise UsageError(f"--expect-digest: {e}") from None
    parts = urlsplit(url)
    if parts.scheme not in ("https", "tls") or not parts.hostname:
        raise UsageError(f"{url!r}: expected https://HOST[:PORT][/PATH] or tls://HOST:PORT")
    try:
        port = parts.port or (443 if parts.scheme == "https" else None)
    except ValueError as e:
        raise UsageError(f"{url!r}: {e}") from None
    if port is None:
        raise UsageError(f"{url!r}: a tls:// URL needs a port")
    ctx = _context(steward_ca)
    host = parts.hostname
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        raise RemoteError(f"{url}: cannot connect: {e.strerror or e}") from None
    try:
        sock = ctx.wrap_socket(raw, server_hostname=host)
    except ssl.SSLCertVerificationError as e:
        raw.close()
        raise KeepIdentityError(
            f"{url}: the Keep's certificate does not verify against the Steward CA: "
            f"{e.verify_message}",
            hint="is --steward-ca the CA of the Steward that attested this Keep?",
        ) from None
    except (ssl.SSLError, OSError) as e:
        raw.close()
        raise RemoteError(f"{url}: TLS handshake failed: {e}") from None
    try:
        identity = _verify(sock, url, expect_digest, allow_insecure_sim)
    except BaseException:
        sock.close()
        raise
    shown = f"[{host}]" if ":" in host else host
    netloc = f"{shown}:{port}" if parts.port else shown
    return KeepConnection(sock, identity, url, netloc)


def _verify(
    sock: ssl.SSLSocket, url: str, expect_digest: str, allow_insecure_sim: bool
) -> KeepCertificate:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    der = sock.getpeercert(binary_form=True)
    if der is None:
        raise KeepIdentityError(f"{url}: the Keep presented no certificate")
    cert = x509.load_der_x509_certificate(der)
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is None or ExtendedKeyUsageOID.SERVER_AUTH not in eku:
        raise KeepIdentityError(f"{url}: the certificate is not for a TLS server (EKU)")
    identity = KeepCertificate.from_certificate(cert)
    if identity.kind is None:
        raise KeepIdentityError(
            f"{url}: the certificate carries no attestation (no motte TEE kind extension)",
            hint="this is not a Keep certificate issued by a motte Steward",
        )
    if identity.kind == "sim" and not allow_insecure_sim:
        raise KeepIdentityError(
            f"{url}: the Keep is a sim keep: INSECURE, no hardware protects it",
            hint="accept it only for development: --allow-insecure-sim",
        )
    if identity.kind not in (*SECURE_KINDS, "sim"):
        raise KeepIdentityError(f"{url}: unknown TEE kind {identity.kind!r} in the certificate")
    if identity.measurement is None:
        raise KeepIdentityError(f"{url}: the certificate names no measurement")
    if identity.workload_digest is None:
        raise KeepIdentityError(
            f"{url}: the certificate binds no workload digest (an unbound Enarx Keep?)",
            hint="only Keeps attested with their workload digest can be checked",
        )
    if identity.workload_digest != expect_digest:
        raise KeepIdentityError(
            f"{url}: the Keep runs {identity.workload_digest}, not the expected {expect_digest}",
            hint="the workload differs from the one you meant to talk to",
        )
    return identity
