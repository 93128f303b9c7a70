"""A Keep calls a vendor's HTTPS API with mutual TLS: real processes on 127.0.0.1.

nginx plays the vendor: it requires a client certificate issued by the Steward's CA and an
API token, and logs each request's TLS protocol, ALPN and client-certificate verdict. The
Keep is ``motte run`` of examples/outbound packaged and run by reference, attested by a
real ``motte steward serve`` (sim backend), as ``make demo`` does. The API token is a Steward
secret released to the package's digest. The call succeeds from the attested Keep and fails
from one without the grant, without the token (a build the release policy does not name
is refused it; a build that does not ask for it gets nginx's 401), without a certificate,
and with a certificate from another Steward.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from tests.integration._tls_peers import access_log, make_pki, nginx_tls
from tests.integration.test_keep_attested_e2e import motte, start_steward
from tests.keep.conftest import EXAMPLES

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"


def run(home: Path, *args: str, stdin: str | None = None):
    import os
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "motte", *args],
        env=dict(os.environ, MOTTE_HOME=str(home)),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def tokenless_copy(app: Path, to: Path) -> Path:
    """The example without its request for the token (so it calls without one)."""
    shutil.copytree(app, to)
    text = (to / "Motte.toml").read_text()
    (to / "Motte.toml").write_text(text[: text.index("[[secret]]")])
    return to


@pytest.fixture
def world(tmp_path, motte_home):
    """Two Stewards (ours, and another nginx does not trust), each releasing the token to
    the example's digest, nginx trusting ours, and the example packaged into both homes'
    stores (and, as demo/tokenless:1.0, a copy that does not ask for the token)."""
    ours, theirs = motte_home, tmp_path / "other-home"
    theirs.mkdir()
    stewards = []
    for home in (ours, theirs):
        assert motte(home, "steward", "init", "--allow-insecure-sim").returncode == 0
        stewards.append(start_steward(home))
    pki = make_pki(tmp_path / "pki", "vendor")
    vendor = nginx_tls(tmp_path / "nginx", pki, client_ca=ours / "steward" / "ca.pem", token=TOKEN)
    app = tmp_path / "outbound"
    shutil.copytree(EXAMPLES / "outbound", app)
    tokenless = tokenless_copy(app, tmp_path / "tokenless")
    for home in (ours, theirs):
        packaged = motte(home, "package", app, "--tag", "demo/outbound:1.0", "--json")
        assert packaged.returncode == 0, packaged.stderr
        digest = json.loads(packaged.stdout)["digest"]
        policy = home / "release.toml"
        policy.write_text(f'digests = ["{digest}"]\nallow_insecure_sim = true\n')
        put = run(home, "secret", "put", "vendor-api-token", "--policy", str(policy), stdin=TOKEN)
        assert put.returncode == 0, put.stderr
        packaged = motte(home, "package", tokenless, "--tag", "demo/tokenless:1.0")
        assert packaged.returncode == 0, packaged.stderr
    yield {
        "homes": (ours, theirs),
        "stewards": [url for _, url in stewards],
        "pki": pki,
        "vendor": vendor,
    }
    vendor.stop()
    for proc, _ in stewards:
        proc.stop()


def call(
    world,
    *,
    package: str = "demo/outbound:1.0",
    home: int = 0,
    grant: bool = True,
    steward: bool = True,
):
    homes, urls = world["homes"], world["stewards"]
    args = ["run", package]
    if steward:
        args += ["--steward", urls[home], "--backend", "sim", "--allow-insecure-sim"]
    if grant:
        address = world["vendor"].address
        args += ["--grant", f"connect:vendor={address},ca={world['pki'].ca}"]
        if package == "demo/outbound:1.0":
            args += ["--grant", "secret:vendor-api-token"]
    return run(homes[home], *args)


def test_the_attested_keep_calls_the_api_and_the_others_cannot(world, tmp_path):
    ok = call(world)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout == 'HTTP/1.1 200 OK\n{"hello":"from the vendor"}\n'
    assert "connect vendor = api.vendor.example via 127.0.0.1:" in ok.stderr
    first = access_log(world["vendor"], 1)[0]
    assert first.startswith("200 TLSv1.3 TLS_")
    assert " client=SUCCESS " in first
    assert 'request="GET /v1/hello HTTP/1.1"' in first

    # Without the grant: refused before anything runs, naming the flag; nginx sees nothing.
    ungranted = call(world, grant=False)
    assert ungranted.returncode == 125
    assert "connect vendor: calls api.vendor.example:443 (TLS): --grant connect:vendor" in (
        ungranted.stderr
    )

    # Without the token: a build the release policy does not name is refused it (and never
    # runs); a build that does not ask for it calls without one, and nginx answers 401.
    renamed = tmp_path / "renamed"
    shutil.copytree(EXAMPLES / "outbound", renamed)
    text = (renamed / "Motte.toml").read_text()
    (renamed / "Motte.toml").write_text(text.replace("wall_time = 10", "wall_time = 11"))
    home, url = world["homes"][0], world["stewards"][0]
    assert motte(home, "package", renamed, "--tag", "demo/other:1.0").returncode == 0
    refused = run(
        home,
        "run",
        "demo/other:1.0",
        *("--steward", url, "--backend", "sim", "--allow-insecure-sim"),
        *("--grant", f"connect:vendor={world['vendor'].address},ca={world['pki'].ca}"),
        *("--grant", "secret:vendor-api-token"),
    )
    assert refused.returncode == 125, refused.stderr
    assert "vendor-api-token" in refused.stderr and TOKEN not in refused.stderr
    tokenless = call(world, package="demo/tokenless:1.0")
    assert tokenless.returncode == 1, tokenless.stderr
    assert tokenless.stdout.startswith("HTTP/1.1 401")

    # Without a Steward the Keep has no certificate to present: nginx answers 400.
    unattested = call(world, package="demo/tokenless:1.0", steward=False)
    assert unattested.returncode == 1, unattested.stderr
    assert unattested.stdout.startswith("HTTP/1.1 400")

    # Attested by another Steward: a certificate nginx's CA did not issue.
    foreign = call(world, home=1)
    assert foreign.returncode == 1, foreign.stderr
    assert foreign.stdout.startswith("HTTP/1.1 400")

    lines = access_log(world["vendor"], 4)
    assert len(lines) == 4, lines  # the ungranted Keep never connected
    assert lines[1].startswith("401 ") and " client=SUCCESS " in lines[1]
    assert lines[2].startswith("400 ") and " client=NONE " in lines[2]
    assert lines[3].startswith("400 ") and " client=FAILED:" in lines[3]


def test_json_run_and_alpn(world, tmp_path):
    """ALPN as the manifest asks, in nginx's log; an ALPN nginx does not speak is refused
    in the handshake."""
    homes, urls = world["homes"], world["stewards"]
    app = tokenless_copy(EXAMPLES / "outbound", tmp_path / "alpn")
    text = (
        (app / "Motte.toml")
        .read_text()
        .replace(
            'API_HOST = "api.vendor.example"',
            f'API_HOST = "api.vendor.example"\nAPI_TOKEN = "{TOKEN}"',
        )
    )
    grant = f"connect:vendor={world['vendor'].address},ca={world['pki'].ca}"
    common = ["--steward", urls[0], "--backend", "sim", "--allow-insecure-sim", "--grant", grant]
    (app / "Motte.toml").write_text(text + '\n[connect.tls]\nalpn = ["http/1.1"]\n')
    ok = run(homes[0], "run", str(app), "--json", *common)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["stdout"].startswith("HTTP/1.1 200 OK")
    assert " alpn=http/1.1 " in access_log(world["vendor"], 1)[0]
    (app / "Motte.toml").write_text(text + '\n[connect.tls]\nalpn = ["motte-test"]\n')
    refused = run(homes[0], "run", str(app), *common)
    assert refused.returncode == 65, refused.stderr  # EPROTO
    assert "TLS handshake with api.vendor.example failed" in refused.stderr
