"""The console's Secrets page: releases and refusals per secret from the Steward's secrets'
audit log (a real Steward's store, real release decisions), never a value."""

from __future__ import annotations

import os

import pytest

from motte.console import ConsoleConfig, create_console_app
from tests.console.test_guard import TOKEN, client
from tests.steward.helpers import DIGEST, OTHER_DIGEST, make_steward
from tests.steward.servers import steward_server
from tests.steward.test_secrets import digest_policy, keep_request


@pytest.fixture
def world(tmp_path):
    steward = make_steward(tmp_path / "steward")
    value = b"page-canary-" + os.urandom(6).hex().encode()
    steward.secrets.put("db-password", value, policy=digest_policy(DIGEST), actor="test")
    steward.secrets.put("api/token", b"t0k3n-canary", policy=None, actor="test")
    with steward_server(steward) as url:
        ok, _, _ = keep_request(url, names=("db-password",))
        refused, _, _ = keep_request(url, digest=OTHER_DIGEST, names=("db-password",))
        nopolicy, _, _ = keep_request(url, names=("api/token",))
    assert steward.release(ok.to_bytes(), client="10.0.0.1:5000").released
    assert not steward.release(refused.to_bytes(), client="10.0.0.2:5000").released
    assert not steward.release(nopolicy.to_bytes(), client="10.0.0.3:5000").released
    steward.close()
    console = create_console_app(ConsoleConfig(token=TOKEN, steward_dir=tmp_path / "steward"))
    yield console, value
    console.close()


def test_the_page_shows_each_secrets_releases_and_refusals_and_no_value(world):
    app, value = world
    r = client(app).get("/secrets")
    assert r.status_code == 200
    html = r.text
    assert "no secret store" not in html
    assert "2 secrets stored; 1 releases, 2 refusals" in html
    assert 'href="/secrets?secret=db-password"' in html
    assert 'href="/secrets?secret=api/token"' in html
    assert f"db-password: workload: {OTHER_DIGEST} is not among digests ({DIGEST})" in html
    assert "api/token: release-policy: the secret has no release policy" in html
    assert html.count('<tr class="refused">') == 2 and html.count('<tr class="released">') == 1
    assert "10.0.0.1:5000" in html and "db-password v1" in html
    assert value.decode() not in html and "t0k3n-canary" not in html


def test_the_page_filters_by_secret_and_decision(world):
    app, _ = world
    html = client(app).get("/secrets", params={"secret": "db-password"}).text
    assert "10.0.0.1:5000" in html and "10.0.0.2:5000" in html and "10.0.0.3:5000" not in html
    html = client(app).get("/secrets", params={"decision": "released"}).text
    assert html.count('<tr class="released">') == 1 and '<tr class="refused">' not in html
    html = client(app).get("/secrets", params={"secret": '"><img src=x>'}).text
    assert "<img" not in html and "No release decisions match these filters" in html


def test_a_steward_without_secrets_says_so(tmp_path):
    make_steward(tmp_path / "steward").close()
    console = create_console_app(ConsoleConfig(token=TOKEN, steward_dir=tmp_path / "steward"))
    try:
        html = client(console).get("/secrets").text
    finally:
        console.close()
    assert 'id="no-secrets"' in html and "No release decisions." in html
