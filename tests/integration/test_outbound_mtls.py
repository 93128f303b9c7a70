"""A Keep calls a vendor's HTTPS API with mutual TLS: real processes on 127.0.0.1.

nginx plays the vendor: it requires a client certificate issued by the Steward's CA and an
API token, and logs each request's TLS protocol, ALPN and client-certificate verdict. The
Keep is ``motte run`` of examples/outbound packaged and run by reference, attested by a
real ``motte steward serve`` (sim backend), as ``make demo`` does. The call succeeds from
the attested Keep and fails from one without the grant, without the token, without a
certificate, and with a certificate from another Steward.
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


def run(home: Path, *args: str, env: dict[str, str] | None = None):
    import os
    import subprocess

    return subprocess.run(
        [sys.executable, "-m", "motte", "run", *args],
        env=dict(os.environ, MOTTE_HOME=str(home), **(env or {})),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def world(tmp_path, motte_home):
    """Two Stewards (ours, and another nginx does not trust), nginx trusting ours, and the
    example packaged into our home's store."""
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
    for home in (ours, theirs):
        packaged = motte(home, "package", app, "--tag", "demo/outbound:1.0", "--json")
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


def call(world, *, home: int = 0, grant: bool = True, token: bool = True, steward: bool = True):
    homes, urls = world["homes"], world["stewards"]
    args = ["demo/outbound:1.0"]
    if steward:
        args += ["--steward", urls[home], "--backend", "sim", "--allow-insecure-sim"]
    if grant:
        address = world["vendor"].address
        args += [
            "--grant",
            f"connect:vendor={address},ca={world['pki'].ca}",
            "--grant",
            "env:VENDOR_API_TOKEN",
        ]
    return run(homes[home], *args, env={"VENDOR_API_TOKEN": TOKEN} if token else {})


def test_the_attested_keep_calls_the_api_and_the_others_cannot(world):
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

    # Without the token: nginx answers 401 to the attested Keep.
    tokenless = call(world, token=False)
    assert tokenless.returncode == 1, tokenless.stderr
    assert tokenless.stdout.startswith("HTTP/1.1 401")

    # Without a Steward the Keep has no certificate to present: nginx answers 400.
    unattested = call(world, steward=False)
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
    app = tmp_path / "alpn"
    shutil.copytree(EXAMPLES / "outbound", app)
    text = (app / "Motte.toml").read_text()
    grant = f"connect:vendor={world['vendor'].address},ca={world['pki'].ca}"
    common = ["--steward", urls[0], "--backend", "sim", "--allow-insecure-sim", "--grant", grant]
    env = {"VENDOR_API_TOKEN": TOKEN}
    (app / "Motte.toml").write_text(text + '\n[connect.tls]\nalpn = ["http/1.1"]\n')
    ok = run(homes[0], str(app), "--json", *common, env=env)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["stdout"].startswith("HTTP/1.1 200 OK")
    assert " alpn=http/1.1 " in access_log(world["vendor"], 1)[0]
    (app / "Motte.toml").write_text(text + '\n[connect.tls]\nalpn = ["motte-test"]\n')
    refused = run(homes[0], str(app), *common, env=env)
    assert refused.returncode == 65, refused.stderr  # EPROTO
    assert "TLS handshake with api.vendor.example failed" in refused.stderr
