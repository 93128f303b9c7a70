"""The console's guard at the ASGI level: methods, the token, the Host check, the headers,
and values escaped in the pages (the browser tests check the same in Chromium)."""

from __future__ import annotations

import os
import warnings

import pytest

from motte.console import COOKIE, CSP, ConsoleConfig, Token, create_console_app, read_token_file
from motte.errors import ConfigError, UsageError
from motte.steward import StewardPaths, StewardStore

TOKEN = "k" * 43
HOSTILE = ['<script>alert("x")</script>', '"><img src=x onerror=alert(1)>']


def client(app, *, client_host="127.0.0.1", base="http://127.0.0.1"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette's note about httpx: not ours to fix
        from starlette.testclient import TestClient

        return TestClient(app, base_url=base, client=(client_host, 41000), follow_redirects=False)


@pytest.fixture
def steward_dir(tmp_path):
    root = tmp_path / "steward"
    root.mkdir()
    store = StewardStore(StewardPaths(root).database)
    for text in HOSTILE:
        store.append_audit(
            {
                "time": "2026-01-01T00:00:00+00:00",
                "client": "127.0.0.1:1",
                "decision": "rejected",
                "reason": f"san: {text} not allowed",
                "sans": [text],
                "rules": [{"rule": "san", "outcome": "fail", "reason": f"{text} not allowed"}],
            }
        )
    store.close()
    return root


@pytest.fixture
def app(steward_dir):
    console = create_console_app(ConsoleConfig(token=TOKEN, steward_dir=steward_dir))
    yield console
    console.close()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
def test_every_method_but_get_and_head_is_refused_on_every_path(app, method):
    for path in ("/keeps", "/nowhere", "/static/console.css"):
        r = client(app).request(method, path)
        assert r.status_code == 405, (method, path)
        assert r.headers["allow"] == "GET, HEAD"
        assert r.headers["content-security-policy"] == CSP


def test_head_and_get_answer(app):
    c = client(app)
    assert c.get("/keeps").status_code == 200
    assert c.head("/keeps").status_code == 200


def test_headers_forbid_scripts_framing_sniffing_and_caching(app):
    r = client(app).get("/keeps")
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["cache-control"] == "no-store"
    assert "<script" not in r.text  # the pages carry no script of their own


def test_a_client_off_this_machine_needs_the_token(app):
    far = client(app, client_host="192.0.2.77", base="http://192.0.2.2:8480")
    r = far.get("/keeps")
    assert r.status_code == 401 and "needs its token" in r.text
    assert "san:" not in r.text  # nothing of the page leaks
    assert far.get("/keeps", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert far.get("/keeps", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert far.get("/keeps", headers={"Cookie": f"{COOKIE}={TOKEN}x"}).status_code == 401
    assert far.get("/keeps", headers={"Cookie": f"{COOKIE}={TOKEN}"}).status_code == 200


def test_the_token_in_the_address_becomes_a_cookie_and_leaves_the_address(app):
    far = client(app, client_host="192.0.2.77", base="http://192.0.2.2:8480")
    assert far.get(f"/keeps?token={TOKEN[:-1]}").status_code == 401
    r = far.get(f"/keeps?decision=rejected&token={TOKEN}")
    assert r.status_code == 303
    assert r.headers["location"] == "/keeps?decision=rejected"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}={TOKEN};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert far.get("/keeps?decision=rejected").status_code == 200  # the client kept it


def test_loopback_with_a_foreign_host_name_needs_the_token(app):
    # DNS rebinding: a page from evil.example re-pointed at 127.0.0.1 names its own host.
    rebound = client(app, client_host="127.0.0.1", base="http://evil.example:8480")
    assert rebound.get("/keeps").status_code == 401
    for base in ("http://localhost:8480", "http://[::1]:8480", "http://127.0.0.1"):
        assert client(app, base=base).get("/keeps").status_code == 200, base


def test_the_token_is_compared_whole_and_never_shown():
    token = Token(TOKEN)
    assert token.matches(TOKEN)
    assert not token.matches(TOKEN[:-1]) and not token.matches(TOKEN + "k")
    assert not token.matches("") and not token.matches(None)
    assert TOKEN not in repr(token)


def test_a_token_file_must_be_private_and_long(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="others can read it"):
        read_token_file(path)
    os.chmod(path, 0o600)
    assert read_token_file(path) == TOKEN
    path.write_text("short\n")
    with pytest.raises(UsageError, match="at least 32"):
        read_token_file(path)


def test_hostile_values_are_escaped(app):
    html = client(app).get("/keeps").text
    for text in HOSTILE:
        assert text not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<img" not in html


def test_a_hostile_query_is_escaped_where_it_is_echoed(app):
    r = client(app).get("/keeps", params={"q": HOSTILE[1], "kind": HOSTILE[0]})
    assert r.status_code == 200
    assert HOSTILE[0] not in r.text and HOSTILE[1] not in r.text
    assert 'value="&#34;&gt;&lt;img' in r.text
