"""The Keep's side of outbound connections without a network: TLS contexts built from the
manifest's settings, and what a guest gets when it asks for what it was not granted.
Real peers: tests/integration/test_outbound.py."""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path

import pytest

from motte.keep import PreparedWorkload, WorkloadError
from motte.manifest import Connect, Manifest, TlsSettings, Workload, apply_grants, load_manifest
from tests.keep.conftest import EXAMPLES

OUTBOUND = EXAMPLES / "outbound" / "outbound.wasm"


def context(tls: TlsSettings, **kw):
    from motte.keep._tls_client import client_context

    return client_context(Connect("v", "api.vendor.example", 443, tls, **kw))


def test_the_default_context_verifies_and_offers_forward_secret_aeads_only():
    ctx = context(TlsSettings())
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_3
    tls12 = [c for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12
    assert all(c["aead"] and c["kea"] in ("kx-ecdhe", "kx-dhe") for c in tls12), tls12


def test_tls13_suites_reach_the_context_python_uses():
    ctx = context(TlsSettings(tls13_ciphers=("TLS_CHACHA20_POLY1305_SHA256",)))
    assert [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.3"] == [
        "TLS_CHACHA20_POLY1305_SHA256"
    ]


def test_tls12_suites_and_versions():
    ctx = context(TlsSettings(max_version="1.2", tls12_ciphers=("ECDHE-ECDSA-AES256-GCM-SHA384",)))
    assert ctx.maximum_version == ssl.TLSVersion.TLSv1_2
    names = [c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert names == ["ECDHE-ECDSA-AES256-GCM-SHA384"]


def test_skipping_verification_is_what_it_says():
    ctx = context(TlsSettings(unsafe_skip_verification=True))
    assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname


def test_a_missing_ca_bundle_is_one_line(tmp_path):
    from motte.keep._tls_client import OutboundError

    with pytest.raises(OutboundError) as e:
        context(TlsSettings(), ca=tmp_path / "nope.pem")
    assert e.value.message == f"connect v: CA bundle {tmp_path / 'nope.pem'}: no such file"


def test_the_keeps_identity_is_the_client_certificate():
    from motte.keep._tls_client import client_context
    from motte.keep.serve import self_signed_identity

    identity = self_signed_identity()
    ctx = client_context(
        Connect("v", "api.vendor.example", 443, TlsSettings()),
        client_identity=(identity.certificate_chain_pem, identity.private_key_pem),
    )
    assert isinstance(ctx, ssl.SSLContext)


def test_pins_match_the_spki_or_the_certificate():
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from motte.keep._tls_client import PinMismatchError, check_pins
    from motte.keep.serve import self_signed_identity

    cert = x509.load_pem_x509_certificate(self_signed_identity().certificate_chain_pem)
    der = cert.public_bytes(serialization.Encoding.DER)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pin = "sha256:" + hashlib.sha256(spki).hexdigest()
    check_pins(TlsSettings(pin_spki=(pin,)), der)
    check_pins(TlsSettings(pin_certificate=("sha256:" + hashlib.sha256(der).hexdigest(),)), der)
    check_pins(TlsSettings(), None)  # nothing pinned, nothing to check
    with pytest.raises(PinMismatchError):
        check_pins(TlsSettings(pin_spki=("sha256:" + "0" * 64,)), der)


def _app(tmp_path: Path, connect: str) -> Manifest:
    app = tmp_path / "app"
    app.mkdir()
    shutil.copy(OUTBOUND, app)
    (app / "Motte.toml").write_text(f'workload = "outbound.wasm"\n{connect}')
    return apply_grants(load_manifest(app / "Motte.toml"), package=None).manifest


def test_a_name_the_keep_was_not_granted_is_eacces(tmp_path):
    manifest = _app(
        tmp_path, '[[connect]]\nname = "vendor"\nhost = "api.vendor.example"\nport = 443\n'
    )
    result = PreparedWorkload.prepare(manifest).run(
        args=["get", "other", "/"], stdout="capture", stderr="capture"
    )
    assert result.exit_code == 2  # EACCES
    assert b"connect other: not a destination this Keep was granted" in result.stderr


def test_a_module_importing_motte_connect_needs_a_destination(tmp_path):
    manifest = Manifest(Workload(path=OUTBOUND))
    with pytest.raises(WorkloadError, match=r"imports motte_connect .*no destination is granted"):
        PreparedWorkload.prepare(manifest)


def test_a_component_cannot_have_destinations_yet():
    manifest = Manifest(
        Workload(path=EXAMPLES / "hello-component" / "hello-component.wasm"),
        connect=(Connect("v", "api.vendor.example", 443, TlsSettings(), where="Motte.toml:3"),),
    )
    with pytest.raises(WorkloadError, match=r"Motte\.toml:3: \[\[connect\]\]: outbound"):
        PreparedWorkload.prepare(manifest)
