"""Registry credentials against docker-registry: htpasswd (Basic) and token (Bearer) auth.

For token auth the test runs the token service the registry's challenge points at: it checks
Basic credentials and issues an ES256 JWT whose x5c certificate the registry trusts
(``auth.token.rootcertbundle``), exactly as distribution's token spec describes.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from motte.oci import AuthError, build_package, load_workload, parse_reference, pull, push
from tests.oci.registry_server import bcrypt_hash, run_registry
from tests.oci.workloads import make_workload

pytestmark = pytest.mark.integration

USER, PASSWORD = "alice", "correct horse battery staple"


@pytest.fixture(autouse=True)
def no_ambient_credentials(monkeypatch, tmp_path):
    for name in ("MOTTE_REGISTRY_TOKEN", "MOTTE_REGISTRY_USER", "MOTTE_REGISTRY_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker"))


def _package(tmp_path):
    build_package(make_workload(tmp_path / "w"), parse_reference("acme/hello:1"))


def test_basic_auth_with_htpasswd(tmp_path, monkeypatch):
    htpasswd = tmp_path / "htpasswd"
    htpasswd.write_text(f"{USER}:{bcrypt_hash(PASSWORD)}\n")
    auth = f"auth:\n  htpasswd:\n    realm: motte-test\n    path: {htpasswd}\n"
    _package(tmp_path)
    with run_registry(tmp_path, auth_yaml=auth) as reg:
        ref = parse_reference(f"{reg.url}/acme/hello:1")
        with pytest.raises(AuthError) as e:
            push(ref)
        assert "authentication required" in e.value.message
        assert "MOTTE_REGISTRY_USER" in (e.value.hint or "")

        monkeypatch.setenv("MOTTE_REGISTRY_USER", USER)
        monkeypatch.setenv("MOTTE_REGISTRY_PASSWORD", "wrong")
        with pytest.raises(AuthError, match="refused the credentials from MOTTE_REGISTRY_USER"):
            push(ref)

        monkeypatch.setenv("MOTTE_REGISTRY_PASSWORD", PASSWORD)
        assert push(ref).blobs_copied == 3

        # The credentials file works the same way, and is refused if others can read it.
        monkeypatch.delenv("MOTTE_REGISTRY_USER")
        monkeypatch.delenv("MOTTE_REGISTRY_PASSWORD")
        monkeypatch.setenv("MOTTE_HOME", str(tmp_path / "consumer"))
        creds = tmp_path / "consumer" / "credentials.toml"
        creds.parent.mkdir()
        creds.write_text(
            f'[registries."{reg.host}"]\nusername = "{USER}"\npassword = "{PASSWORD}"\n'
        )
        creds.chmod(0o644)
        with pytest.raises(AuthError, match="readable by others"):
            pull(ref)
        creds.chmod(0o600)
        pull(ref)
        assert load_workload("acme/hello:1").module == (tmp_path / "w" / "hello.wasm").read_bytes()


class TokenService:
    """A token service for distribution's token auth: Basic in, ES256 JWT (x5c) out."""

    def __init__(self, issuer: str, service: str) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.issuer, self.service = issuer, service
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "motte test token signer")])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_pem = self.cert.public_bytes(serialization.Encoding.PEM)
        self.issued: list[str] = []
        svc = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return None

            def do_GET(self) -> None:
                query = parse_qs(urlparse(self.path).query)
                expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                scopes = query.get("scope", [])
                token = svc.mint(scopes)
                body = json.dumps({"token": token, "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/token"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def mint(self, scopes: list[str]) -> str:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        def b64url(data: bytes) -> str:
            return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "ES256", "x5c": [base64.b64encode(der).decode()]}
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": USER,
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        signing_input = (
            f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        )
        r, s = decode_dss_signature(
            self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        )
        token = f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"
        self.issued.append(token)
        return token

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_token_auth(tmp_path, monkeypatch):
    tokens = TokenService("motte-test-issuer", "motte-test")
    bundle = tmp_path / "token-signer.pem"
    bundle.write_bytes(tokens.cert_pem)
    auth = (
        "auth:\n  token:\n"
        f"    realm: {tokens.url}\n    service: motte-test\n"
        f"    issuer: motte-test-issuer\n    rootcertbundle: {bundle}\n"
    )
    _package(tmp_path)
    try:
        with run_registry(tmp_path, auth_yaml=auth) as reg:
            ref = parse_reference(f"{reg.url}/acme/hello:1")
            with pytest.raises(AuthError, match="authentication required"):
                push(ref)

            # Basic credentials go to the token service; its token goes to the registry.
            monkeypatch.setenv("MOTTE_REGISTRY_USER", USER)
            monkeypatch.setenv("MOTTE_REGISTRY_PASSWORD", PASSWORD)
            assert push(ref).blobs_copied == 3
            assert tokens.issued

            # A bearer token obtained elsewhere is sent as is.
            monkeypatch.delenv("MOTTE_REGISTRY_USER")
            monkeypatch.delenv("MOTTE_REGISTRY_PASSWORD")
            monkeypatch.setenv("MOTTE_HOME", str(tmp_path / "consumer"))
            monkeypatch.setenv("MOTTE_REGISTRY_TOKEN", tokens.mint(["repository:acme/other:pull"]))
            with pytest.raises(
                AuthError, match="refused the bearer token from MOTTE_REGISTRY_TOKEN"
            ):
                pull(ref)
            monkeypatch.setenv("MOTTE_REGISTRY_TOKEN", tokens.mint(["repository:acme/hello:pull"]))
            pull(ref)
            assert (
                load_workload("acme/hello:1").module == (tmp_path / "w" / "hello.wasm").read_bytes()
            )
    finally:
        tokens.close()
