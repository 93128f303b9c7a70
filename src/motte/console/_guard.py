"""The console's guard: read-only, loopback or token, and headers that forbid the rest.

An ASGI middleware in front of every console page (standalone, or mounted in the Steward):

- **Read-only.** GET and HEAD only; every other method is refused with 405 before routing,
  on every path. No request changes anything, so there is nothing for a cross-site request
  to forge (CSRF) and no form needs a CSRF token.
- **Who may look.** A request from a loopback client that also *names* a loopback host
  (``Host: 127.0.0.1:...``, ``localhost``, ``[::1]``) is let in: it comes from this machine,
  and the Host check stops DNS rebinding (a web page whose name was re-pointed at 127.0.0.1
  sends its own name). Anything else needs the token: ``Authorization: Bearer <token>``, the
  console's cookie, or ``?token=<token>`` once, which sets the cookie (HttpOnly,
  SameSite=Strict) and redirects to the same page without it so the token does not stay in
  the address bar. The comparison is constant-time (:func:`hmac.compare_digest` over
  SHA-256 digests, so not even the length leaks).
- **Headers on every answer**, refusals included: a Content-Security-Policy that allows
  nothing but the console's own stylesheet and images (no script at all; the pages have
  none), ``frame-ancestors 'none'`` and ``X-Frame-Options: DENY`` (no clickjacking),
  ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``, ``Cache-Control:
  no-store``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import stat
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from motte._net import is_loopback_host
from motte.errors import ConfigError, UsageError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SAFE_METHODS = frozenset({"GET", "HEAD"})
COOKIE = "motte_console"
#: No script-src other than 'none': the console ships no JavaScript at all.
CSP = (
    "default-src 'self'; script-src 'none'; object-src 'none'; style-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
#: A token file must hold at least this many characters (a generated one has 43).
MIN_TOKEN = 32


def new_token() -> str:
    """A fresh token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def read_token_file(path: Path) -> str:
    """The token in ``path``, refused unless only its owner can read it and it is long enough."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigError(f"--token-file {path}: cannot read it: {e.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"--token-file {path}: others can read it (mode {stat.S_IMODE(mode):04o})",
            hint=f"chmod 600 {path}",
        )
    if len(text) < MIN_TOKEN or any(c.isspace() for c in text):
        raise UsageError(
            f"--token-file {path}: a token is one word of at least {MIN_TOKEN} characters",
            hint="make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'",
        )
    return text


class Token:
    """The secret a non-loopback client must present; compared in constant time."""

    __slots__ = ("_digest",)

    def __init__(self, value: str) -> None:
        self._digest = hashlib.sha256(value.encode()).digest()

    def matches(self, presented: str | None) -> bool:
        if not presented:
            return False
        return hmac.compare_digest(hashlib.sha256(presented.encode()).digest(), self._digest)

    def __repr__(self) -> str:  # never the value, in a log or a traceback
        return "Token(<hidden>)"


def host_of(header: str) -> str:
    """The host part of a Host header: ``[::1]:8480`` -> ``::1``, ``a.b:80`` -> ``a.b``."""
    if header.startswith("["):
        return header[1:].partition("]")[0]
    if header.count(":") == 1:
        return header.partition(":")[0]
    return header


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in scope.get("headers", ()):
        out.setdefault(key.decode("latin-1").lower(), value.decode("latin-1"))
    return out


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class ConsoleGuard:
    """The middleware (see the module docstring). ``secure_cookie`` when served over TLS."""

    def __init__(self, app: ASGIApp, token: Token, *, secure_cookie: bool = False) -> None:
        self.app = app
        self.token = token
        self.secure_cookie = secure_cookie

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":  # websockets: the console has none
            await send({"type": "websocket.close", "code": 1008})
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() not in {h for h, _ in SECURITY_HEADERS}
                ]
                message["headers"] = headers + list(SECURITY_HEADERS)
            await send(message)

        method = scope["method"]
        if method not in SAFE_METHODS:
            await _plain(
                send_with_headers,
                405,
                "the console is read-only: only GET and HEAD\n",
                [(b"allow", b"GET, HEAD")],
            )
            return
        headers = _headers(scope)
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        offered = [v for k, v in query if k == "token"]
        if offered:
            if not self.token.matches(offered[-1]):
                await _plain(send_with_headers, 401, "wrong token\n")
                return
            await self._set_cookie_and_redirect(scope, query, offered[-1], send_with_headers)
            return
        if not (self._from_this_machine(scope, headers) or self._has_token(headers)):
            await _plain(
                send_with_headers,
                401,
                "this console needs its token: open the address it printed at start "
                "(?token=...), or send Authorization: Bearer <token>\n",
                [(b"www-authenticate", b'Bearer realm="motte console"')],
            )
            return
        await self.app(scope, receive, send_with_headers)

    @staticmethod
    def _from_this_machine(scope: Scope, headers: dict[str, str]) -> bool:
        client = scope.get("client")
        if not client or not is_loopback_host(str(client[0])):
            return False
        return is_loopback_host(host_of(headers.get("host", "")))

    def _has_token(self, headers: dict[str, str]) -> bool:
        auth = headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and self.token.matches(value.strip()):
            return True
        return self.token.matches(_cookie(headers.get("cookie", ""), COOKIE))

    async def _set_cookie_and_redirect(
        self, scope: Scope, query: list[tuple[str, str]], token: str, send: Send
    ) -> None:
        root = scope.get("root_path", "") or ""
        path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        rest = urlencode([(k, v) for k, v in query if k != "token"])
        location = path + ("?" + rest if rest else "")
        cookie = f"{COOKIE}={token}; Path={root or '/'}; HttpOnly; SameSite=Strict"
        if self.secure_cookie:
            cookie += "; Secure"
        await _plain(
            send,
            303,
            "token accepted\n",
            [(b"location", location.encode("latin-1")), (b"set-cookie", cookie.encode())],
        )


async def _plain(
    send: Send, status: int, text: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *(extra or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
