"""The Keep's side of the Steward protocol: ``GET /nonce``, then ``POST /attest``.

Plain :mod:`http.client` over one keep-alive connection: a Keep starting up pays for no
HTTP library import and one TCP (and TLS) handshake for both requests. Every response is
size-bounded. ``https://`` Stewards are verified against the system's trust store (or
``SSL_CERT_FILE``); plain ``http://`` is accepted only to a loopback address.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import ssl
from typing import Any
from urllib.parse import urlsplit

from motte._net import is_loopback_host
from motte.errors import UsageError
from motte.steward.errors import AttestationRefusedError, StewardUnreachableError

MAX_SMALL = 64 * 1024
MAX_PROBLEM = 2 * 1024 * 1024
DEFAULT_TIMEOUT = 30.0


def check_steward_url(url: str) -> str:
    """``url`` if it names a Steward motte may talk to; UsageError saying why not."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as e:
        raise UsageError(f"steward {url!r}: not a URL: {e}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UsageError(f"steward {url!r}: expected https://HOST[:PORT]")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise UsageError(
            f"steward {url!r}: plain http is allowed only to a loopback address",
            hint="use https:// (the Steward with --tls-cert/--tls-key)",
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise UsageError(f"steward {url!r}: no credentials, query or fragment")
    return url.rstrip("/")


class StewardClient:
    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = check_steward_url(url)
        parts = urlsplit(self.url)
        self._base = parts.path.rstrip("/")
        assert parts.hostname is not None
        if parts.scheme == "https":
            ctx = context or ssl.create_default_context()
            self._conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                parts.hostname, parts.port, timeout=timeout, context=ctx
            )
        else:
            self._conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> StewardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str, bytes]:
        where = f"{self.url}{path}"
        try:
            self._conn.request(method, self._base + path, body=body, headers=headers or {})
            resp = self._conn.getresponse()
            limit = MAX_PROBLEM if resp.status >= 400 else MAX_SMALL
            data = resp.read(limit + 1)
        except ssl.SSLCertVerificationError as e:
            self._conn.close()
            raise StewardUnreachableError(
                f"Steward {where}: its TLS certificate does not verify: {e.verify_message}",
                hint="trust the CA of the Steward's --tls-cert (SSL_CERT_FILE=ca.pem)",
            ) from None
        except (OSError, http.client.HTTPException) as e:
            self._conn.close()
            raise StewardUnreachableError(
                f"Steward {where}: {getattr(e, 'strerror', None) or e}",
                hint="is `motte steward serve` running there?",
            ) from None
        if len(data) > limit:
            self._conn.close()
            raise StewardUnreachableError(f"Steward {where}: response larger than {limit} bytes")
        media = resp.getheader("Content-Type", "").split(";")[0].strip()
        return resp.status, media, data

    def nonce(self) -> bytes:
        status, media, data = self._request("GET", "/nonce")
        doc = self._json(status, media, data, "/nonce")
        text = doc.get("nonce") if isinstance(doc, dict) else None
        try:
            nonce = base64.urlsafe_b64decode(str(text) + "=" * (-len(str(text)) % 4))
        except (binascii.Error, ValueError):
            nonce = b""
        if not 16 <= len(nonce) <= 64:
            raise StewardUnreachableError(f"Steward {self.url}/nonce: no usable nonce in {doc!r}")
        return nonce

    def attest(self, csr_der: bytes) -> bytes:
        """The PEM chain (leaf, then CA) the Steward issued; AttestationRefusedError if not."""
        status, media, data = self._request(
            "POST", "/attest", csr_der, {"Content-Type": "application/pkcs10"}
        )
        if status == 200:
            return data
        doc = self._json(status, media, data, "/attest", allow_error=True)
        reasons = tuple(str(r) for r in doc.get("reasons", ())) if isinstance(doc, dict) else ()
        detail = "; ".join(reasons) or str(doc.get("detail") or doc.get("title") or status)
        audit = doc.get("audit_id") if isinstance(doc, dict) else None
        raise AttestationRefusedError(
            f"the Steward at {self.url} refused this Keep: {detail}",
            reasons=reasons,
            audit_id=audit if isinstance(audit, int) else None,
            problem=doc if isinstance(doc, dict) else None,
            hint=f"the Steward's audit log has the whole verdict (`motte steward audit`, id "
            f"{audit})"
            if audit is not None
            else None,
        )

    def release(self, request: bytes) -> bytes:
        """``POST /secrets/release``: the answer's bytes (sealed values; open them with the
        release key), or SecretRefusedError with every reason the Steward gave."""
        from motte.steward.errors import SecretRefusedError

        status, media, data = self._request(
            "POST", "/secrets/release", request, {"Content-Type": "application/json"}
        )
        if status == 200 and media == "application/json":
            return data
        doc = self._json(status, media, data, "/secrets/release", allow_error=True)
        doc = doc if isinstance(doc, dict) else {}
        reasons = tuple(str(r) for r in doc.get("reasons", ()))
        detail = "; ".join(reasons) or str(doc.get("detail") or doc.get("title") or status)
        audit = doc.get("audit_id")
        raise SecretRefusedError(
            f"the Steward at {self.url} refused to release secrets to this Keep: {detail}",
            reasons=reasons,
            audit_id=audit if isinstance(audit, int) else None,
            hint=f"the Steward's secret audit log has every rule (motte secret audit, id {audit})"
            if isinstance(audit, int)
            else doc.get("hint"),
        )

    def volume_release(self, request: bytes) -> bytes:
        """``POST /volumes/release`` (docs/sealed-state.md): the answer's bytes (volume keys
        sealed to the release key), or VolumeRefusedError with every reason."""
        from motte.steward.errors import VolumeRefusedError

        status, media, data = self._request(
            "POST", "/volumes/release", request, {"Content-Type": "application/json"}
        )
        if status == 200 and media == "application/json":
            return data
        doc = self._json(status, media, data, "/volumes/release", allow_error=True)
        doc = doc if isinstance(doc, dict) else {}
        reasons = tuple(str(r) for r in doc.get("reasons", ()))
        detail = "; ".join(reasons) or str(doc.get("detail") or doc.get("title") or status)
        audit = doc.get("audit_id")
        raise VolumeRefusedError(
            f"the Steward at {self.url} refused this Keep its volume keys: {detail}",
            reasons=reasons,
            audit_id=audit if isinstance(audit, int) else None,
            hint=f"the Steward's audit log has every rule (motte secret audit, id {audit})"
            if isinstance(audit, int)
            else doc.get("hint"),
        )

    def volume_commit(self, request: bytes) -> int:
        """``POST /volumes/commit``: the version the Steward now records, or
        VolumeCommitError saying why it did not record this one."""
        from motte.steward.errors import VolumeCommitError

        status, media, data = self._request(
            "POST", "/volumes/commit", request, {"Content-Type": "application/json"}
        )
        doc = self._json(status, media, data, "/volumes/commit", allow_error=True)
        doc = doc if isinstance(doc, dict) else {}
        latest = doc.get("latest")
        if status == 200 and isinstance(latest, int):
            return latest
        raise VolumeCommitError(
            f"the Steward at {self.url} did not record the snapshot: "
            f"{doc.get('detail') or doc.get('title') or status}",
            latest=latest if isinstance(latest, int) else None,
            status=status,
        )

    def _json(
        self, status: int, media: str, data: bytes, path: str, *, allow_error: bool = False
    ) -> Any:
        if status >= 400 and not allow_error:
            raise StewardUnreachableError(
                f"Steward {self.url}{path}: HTTP {status}: {data[:200].decode('utf-8', 'replace')}"
            )
        if media not in ("application/json", "application/problem+json"):
            raise StewardUnreachableError(
                f"Steward {self.url}{path}: HTTP {status} with {media or 'no'} content type"
            )
        try:
            return json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise StewardUnreachableError(f"Steward {self.url}{path}: malformed JSON") from None
