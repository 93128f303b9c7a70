"""Every shared Sigstore case (shared/testdata/sigstore) with its expected outcome.

``motte verify FILE --bundle B --trusted-root R --identity I --issuer O`` (or ``--key K``),
offline, as ``cosign verify-blob``: exit 0 verified, 1 refused with the reason, 2 bad usage
or a malformed bundle. The checks are sigstore-python's (see motte.sign._sigstore).
"""

from __future__ import annotations

import json
import socket

import pytest

from tests.conftest import shared_testdata

D = shared_testdata("sigstore")
GH = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
GHI = "https://token.actions.githubusercontent.com"
WY = ("william@yossarian.net", "https://github.com/login/oauth")
PROD, STAGING = "trusted_root.production.json", "trusted_root.staging.json"
COSIGN_DIGEST = "sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4"

# (bundle, artifact, identity, issuer, root)
VERIFIES = [
    ("happy-path-v0.1.sigstore.json", "a.txt", GH, GHI, PROD),
    ("happy-path-v0.2.sigstore.json", "a.txt", GH, GHI, PROD),
    ("happy-path-v0.3.sigstore.json", "a.txt", GH, GHI, PROD),
    ("happy-path-intoto-in-dsse-v3.sigstore.json", "a.txt", GH, GHI, PROD),
    ("rekor2-happy-path.sigstore.json", "a.txt", GH, GHI, STAGING),
    ("bundle_v3.txt.sigstore", "bundle_v3.txt", *WY, STAGING),
    (
        "cosign-oci-attestation.sigstore.json",
        COSIGN_DIGEST,
        "cody@soyland.com",
        "https://github.com/login/oauth",
        PROD,
    ),
]

# (bundle, artifact, identity, issuer, root, exit status, why)
FAILS = [
    ("signature-mismatch_fail.sigstore.json", "a.txt", GH, GHI, PROD, 1, "Signature is invalid"),
    (
        "wrong-material_fail.sigstore.json",
        "wrong-material_fail.artifact",
        GH,
        GHI,
        PROD,
        1,
        "message digest mismatch",
    ),
    (
        "bundle_cve_2022_36056.txt.sigstore",
        "bundle_cve_2022_36056.txt",
        *WY,
        STAGING,
        1,
        "log entry is inconsistent with other materials",
    ),
    (
        "bundle_no_log_entry.txt.sigstore",
        "bundle_no_log_entry.txt",
        "alex.cameron@trailofbits.com",
        "https://accounts.google.com",
        PROD,
        1,
        "expected exactly one log entry",
    ),
    (
        "bundle_invalid_version.txt.sigstore",
        "bundle_invalid_version.txt",
        *WY,
        STAGING,
        2,
        "not a Sigstore bundle",
    ),
    (
        "bundle_no_checkpoint.txt.sigstore",
        "bundle_no_checkpoint.txt",
        *WY,
        STAGING,
        1,
        "inclusion proof, with checkpoint",
    ),
    (
        "rekor2-no-timestamp_fail.sigstore.json",
        "a.txt",
        GH,
        GHI,
        STAGING,
        1,
        "inclusion promise or signed timestamp",
    ),
]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Verification is offline: any attempt to connect fails the test."""

    def refuse(*a, **kw):
        raise AssertionError("verification tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _artifact(name: str) -> str:
    return name if name.startswith("sha256:") else str(D / name)


@pytest.mark.parametrize(("bundle", "artifact", "identity", "issuer", "root"), VERIFIES)
def test_verifies(cli, bundle, artifact, identity, issuer, root):
    r = cli(
        "verify",
        _artifact(artifact),
        "--bundle",
        D / bundle,
        "--trusted-root",
        D / root,
        "--identity",
        identity,
        "--issuer",
        issuer,
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["verified"] is True and doc["identity"] == identity
    assert doc["content"] == (
        "dsse" if "dsse" in bundle or "cosign" in bundle else "message-signature"
    )


@pytest.mark.parametrize(
    ("bundle", "artifact", "identity", "issuer", "root", "status", "why"), FAILS
)
def test_fails(cli, bundle, artifact, identity, issuer, root, status, why):
    r = cli(
        "verify",
        _artifact(artifact),
        "--bundle",
        D / bundle,
        "--trusted-root",
        D / root,
        "--identity",
        identity,
        "--issuer",
        issuer,
    )
    assert r.exit_code == status, r.stderr
    assert why in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2  # one line, and perhaps a hint


def test_another_identity_is_refused(cli):
    r = cli(
        "verify",
        D / "happy-path-v0.3.sigstore.json",
        "--bundle",
        D / "happy-path-v0.3.sigstore.json",
        "--trusted-root",
        D / PROD,
        "--identity",
        "https://github.com/acme/hello/.github/workflows/release.yml@refs/heads/main",
        "--issuer",
        GHI,
    )
    assert r.exit_code == 1


@pytest.mark.parametrize(("bundle", "artifact", "identity", "issuer", "root"), VERIFIES[:1])
def test_the_other_roots_refuse(cli, bundle, artifact, identity, issuer, root):
    r = cli(
        "verify",
        _artifact(artifact),
        "--bundle",
        D / bundle,
        "--trusted-root",
        D / STAGING,
        "--identity",
        identity,
        "--issuer",
        issuer,
    )
    assert r.exit_code == 1 and "Traceback" not in r.stderr


def test_a_keyed_bundle_verifies_with_its_key(cli):
    r = cli(
        "verify",
        D / "a.txt",
        "--bundle",
        D / "managed-key-happy-path.sigstore.json",
        "--trusted-root",
        D / PROD,
        "--key",
        D / "managed-key-happy-path.key.pub",
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert "SET" in doc["log"] and "TSA" in doc["log"]


def test_a_keyed_bundle_refuses_another_artifact_or_key(cli, tmp_path):
    from motte.sign import generate_key

    args = ("--trusted-root", D / PROD, "--bundle", D / "managed-key-happy-path.sigstore.json")
    r = cli("verify", D / "bundle_v3.txt", *args, "--key", D / "managed-key-happy-path.key.pub")
    assert r.exit_code == 1 and "invalid for input" in r.stderr
    other = tmp_path / "other.pub"
    other.write_bytes(generate_key("ecdsa-p256").public.to_pem())
    r = cli("verify", D / "a.txt", *args, "--key", other)
    assert r.exit_code == 1


@pytest.mark.parametrize(
    "args",
    [
        ("--identity", GH),  # no issuer
        ("--key", "x.pub", "--identity", GH, "--issuer", GHI),  # both
        (),  # neither
    ],
)
def test_bad_usage_exits_2(cli, args):
    r = cli("verify", D / "a.txt", "--bundle", D / "happy-path-v0.3.sigstore.json", *args)
    assert r.exit_code == 2


def test_a_bundle_that_is_not_json_exits_2(cli, tmp_path):
    junk = tmp_path / "b.json"
    junk.write_bytes(b"{nope")
    r = cli(
        "verify",
        D / "a.txt",
        "--bundle",
        junk,
        "--trusted-root",
        D / PROD,
        "--identity",
        GH,
        "--issuer",
        GHI,
    )
    assert r.exit_code == 2 and "not a Sigstore bundle" in r.stderr
