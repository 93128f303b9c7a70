"""A registry that misbehaves on purpose (no real registry does these, so a tiny server does).

Bounded reads and transport rules are what keep a hostile or compromised registry from
exhausting memory or steering the client off HTTPS.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from motte.oci import AuthError, InsecureTransportError, Limits, TooLargeError, parse_reference
from motte.oci._registry import RegistryClient


class Peer:
    def __init__(self, handle: Callable[[BaseHTTPRequestHandler], None]) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                return None

            def do_GET(self) -> None:
                handle(self)

            do_HEAD = do_GET

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def peer():
    peers = []

    def make(handle):
        p = Peer(handle)
        peers.append(p)
        return p

    yield make
    for p in peers:
        p.close()


def _endless(h: BaseHTTPRequestHandler, status: int, extra: dict[str, str]) -> None:
    h.send_response(status)
    for k, v in extra.items():
        h.send_header(k, v)
    h.send_header("Transfer-Encoding", "chunked")
    h.end_headers()
    chunk = b"x" * 65536
    try:
        for _ in range(100_000):  # 6.5 GB if anyone read it all
            h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    except (BrokenPipeError, ConnectionResetError):
        pass


def _client(url: str, **kw) -> RegistryClient:
    return RegistryClient(parse_reference(f"{url}/acme/hello:1"), **kw)


def test_an_endless_401_body_is_never_read(peer, monkeypatch):
    for name in ("MOTTE_REGISTRY_TOKEN", "MOTTE_REGISTRY_USER", "MOTTE_REGISTRY_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    p = peer(lambda h: _endless(h, 401, {"WWW-Authenticate": 'Basic realm="x"'}))
    with _client(p.url) as c, pytest.raises(AuthError, match="authentication required"):
        c.get_manifest("1", "manifest")


def test_an_endless_manifest_is_cut_off_at_the_limit(peer):
    p = peer(
        lambda h: _endless(h, 200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    )
    with (
        _client(p.url, limits=Limits(max_manifest_bytes=1 << 20)) as c,
        pytest.raises(TooLargeError),
    ):
        c.get_manifest("1", "manifest")


def test_an_endless_token_answer_is_cut_off(peer, monkeypatch):
    monkeypatch.setenv("MOTTE_REGISTRY_USER", "u")
    monkeypatch.setenv("MOTTE_REGISTRY_PASSWORD", "p")

    def handle(h: BaseHTTPRequestHandler) -> None:
        if h.path.startswith("/token"):
            _endless(h, 200, {"Content-Type": "application/json"})
        else:
            challenge = f'Bearer realm="{url}/token",service="s",scope="repository:acme/hello:pull"'
            h.send_response(401)
            h.send_header("WWW-Authenticate", challenge)
            h.send_header("Content-Length", "0")
            h.end_headers()

    p = peer(handle)
    url = p.url
    with _client(p.url) as c, pytest.raises(TooLargeError, match="token service"):
        c.get_manifest("1", "manifest")


def test_a_redirect_off_loopback_to_plain_http_is_refused(peer):
    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(307)
        h.send_header("Location", "http://blobs.example.com/data")
        h.send_header("Content-Length", "0")
        h.end_headers()

    p = peer(handle)
    with _client(p.url) as c, pytest.raises(InsecureTransportError, match=r"blobs\.example\.com"):
        c.get_manifest("1", "manifest")


def test_a_token_realm_over_plain_http_off_loopback_is_refused(peer, monkeypatch):
    monkeypatch.setenv("MOTTE_REGISTRY_USER", "u")
    monkeypatch.setenv("MOTTE_REGISTRY_PASSWORD", "p")

    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(401)
        h.send_header("WWW-Authenticate", 'Bearer realm="http://auth.example.com/token"')
        h.send_header("Content-Length", "0")
        h.end_headers()

    p = peer(handle)
    with _client(p.url) as c, pytest.raises(InsecureTransportError, match=r"auth\.example\.com"):
        c.get_manifest("1", "manifest")


def test_a_referrers_route_answering_html_counts_as_no_api(peer):
    def handle(h: BaseHTTPRequestHandler) -> None:
        body = b"<html>not an index</html>"
        h.send_response(200)
        h.send_header("Content-Type", "text/html")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    p = peer(handle)
    with _client(p.url) as c:
        assert c.referrers_api("sha256:" + "a" * 64) is None
