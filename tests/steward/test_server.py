"""The Steward's HTTP API over a real socket: nonces, certificates, problem documents."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from motte.steward import AttestationRefusedError, StewardClient
from tests.steward.helpers import OTHER_DIGEST, keep_csr, make_steward
from tests.steward.servers import steward_server

# Every case on the embedded SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("database")


@pytest.fixture
def served(tmp_path):
    with make_steward(tmp_path / "s") as steward, steward_server(steward) as url:
        yield steward, url


def fetch(url: str, data: bytes | None = None, content_type: str | None = None):
    req = urllib.request.Request(url, data=data)
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_health_nonce_and_ca(served):
    steward, url = served
    status, _, body = fetch(url + "/health")
    assert status == 200 and json.loads(body)["ca_sha256"] == steward.ca.fingerprint
    status, headers, body = fetch(url + "/nonce")
    doc = json.loads(body)
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert doc["lifetime"] == 60 and len(doc["nonce"]) == 43  # 32 bytes, base64url
    status, headers, body = fetch(url + "/ca")
    assert body == steward.ca.cert_pem
    assert headers["Content-Type"] == "application/pem-certificate-chain"


def test_the_keep_client_gets_a_chain(served):
    _, url = served
    with StewardClient(url) as client:
        chain = client.attest(keep_csr(client.nonce()))
    assert chain.count(b"BEGIN CERTIFICATE") == 2


def test_a_refusal_is_a_problem_document_with_every_reason(served):
    _, url = served
    with StewardClient(url) as client:
        nonce = client.nonce()
        with pytest.raises(AttestationRefusedError) as e:
            client.attest(keep_csr(nonce, bound_digest=OTHER_DIGEST, sans=("evil.example",)))
    err = e.value
    assert [r.split(":")[0] for r in err.reasons] == ["san", "report-data"]
    assert err.problem["type"] == "/problems/attestation-rejected"
    assert err.problem["status"] == 403 and err.audit_id == 1
    assert "refused this Keep: san: evil.example not in san_allow" in err.message
    assert "motte steward audit" in (err.hint or "")


def test_http_level_refusals_are_audited_too(served):
    steward, url = served
    status, headers, body = fetch(url + "/attest", b"x", "application/json")
    assert status == 415 and headers["Content-Type"] == "application/problem+json"
    status, _, body = fetch(url + "/attest", b"\x30" * (3 * 1024 * 1024), "application/pkcs10")
    assert status == 413
    status, _, body = fetch(url + "/attest", b"garbage", "application/pkcs10")
    assert status == 400 and json.loads(body)["type"] == "/problems/malformed-request"
    assert [r.decision for r in steward.store.audit()] == ["rejected"] * 3
    status, _, body = fetch(url + "/problems/malformed-request")
    assert status == 200 and b"PKCS#10" in body


def test_plain_http_off_loopback_is_refused_without_the_loud_flag(served):
    from motte.errors import UsageError
    from motte.steward._server import serve

    steward, _ = served
    with pytest.raises(UsageError, match="plain HTTP off loopback") as e:
        serve(steward, "0.0.0.0:0")
    assert "--allow-insecure-http" in (e.value.hint or "")


@pytest.mark.parametrize(
    "url",
    ["http://steward.example.com", "ftp://127.0.0.1", "https://u:p@h", "not a url", "https://"],
)
def test_keep_side_refuses_unsafe_steward_urls(url):
    from motte.errors import UsageError

    with pytest.raises(UsageError):
        StewardClient(url)


def test_a_keep_verifies_a_tls_steward(tmp_path, monkeypatch):
    """HTTPS to the Steward: trusted through the usual store (here SSL_CERT_FILE's CA)."""
    import os
    import ssl

    from motte.steward import StewardUnreachableError
    from tests.steward.helpers import make_steward as steward_at

    shared = os.environ.pop("MOTTE_DB", None)  # the second Steward, below, gets the database
    with steward_at(tmp_path / "tls-ca") as tls_ca:  # any CA will do to mint the server cert
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        from motte.steward._csr import san_general_name

        key = ec.generate_private_key(ec.SECP256R1())
        cert = tls_ca.ca.issue(
            key.public_key(),
            [san_general_name("127.0.0.1")],
            [],
            lifetime=600,
            now=tls_ca.now(),
        )
        cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        trusted = ssl.create_default_context(cafile=None, cadata=tls_ca.ca.cert_pem.decode())
    if shared:
        monkeypatch.setenv("MOTTE_DB", shared)
    with (
        make_steward(tmp_path / "s") as steward,
        steward_server(steward, tls=(cert_file, key_file)) as url,
    ):
        assert url.startswith("https://")
        with StewardClient(url, context=trusted) as client:
            assert client.attest(keep_csr(client.nonce())).count(b"BEGIN CERTIFICATE") == 2
        with (
            StewardClient(url) as client,
            pytest.raises(StewardUnreachableError, match="TLS certificate does not verify") as e,
        ):
            client.nonce()
        assert "SSL_CERT_FILE" in (e.value.hint or "")
