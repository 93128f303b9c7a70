"""A publisher that signs keyless in CI, end to end through verify, trust and run.

The namespace's root names a GitHub Actions workflow identity (no key at all); the workflow
attaches cosign-style Sigstore bundles to the package (an image signature, and GitHub's SLSA
provenance in DSSE), issued and logged by our own Sigstore instance
(tests/sign/sigstore_instance.py); the consumer pins that instance's trusted_root.json and
names the identity as a builder in its policy. Nothing touches the network.
"""

from __future__ import annotations

import datetime as dt
import socket

import pytest
import wasmtime

from motte.errors import ExitStatus
from motte.oci import LocalRepository, build_package, parse_reference
from motte.sign import (
    COSIGN_SIGN,
    SLSA_PROVENANCE,
    KeylessIdentity,
    attach_bundle,
    current_root,
    default_expiry,
    generate_key,
    install_root,
    install_trusted_root,
    new_root,
    propose,
    with_namespace,
)
from motte.trust import assess, parse_policy
from tests.keep.conftest import only_the_grant_line
from tests.sign.sigstore_instance import GITHUB, SigstoreInstance, statement

GH = "https://github.com/acme/hello/.github/workflows/release.yml@refs/heads/main"
OTHER = "https://github.com/mallory/hello/.github/workflows/release.yml@refs/heads/main"
RUNNER = "https://github.com/actions/runner/github-hosted"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
REF = "acme/hello:1.0"


def github_provenance(builder: str = RUNNER) -> dict:
    """SLSA v1 as actions/attest-build-provenance writes it."""
    return {
        "buildDefinition": {
            "buildType": "https://actions.github.io/buildtypes/workflow/v1",
            "externalParameters": {
                "workflow": {
                    "ref": "refs/heads/main",
                    "repository": "https://github.com/acme/hello",
                    "path": ".github/workflows/release.yml",
                }
            },
            "internalParameters": {"github": {"event_name": "push"}},
            "resolvedDependencies": [
                {
                    "uri": "git+https://github.com/acme/hello@refs/heads/main",
                    "digest": {"gitCommit": COMMIT},
                }
            ],
        },
        "runDetails": {"builder": {"id": builder}, "metadata": {"invocationId": "x"}},
    }


def policy_text(identity: str = GH, issuer: str = GITHUB) -> str:
    # The test has no network, so integrity.source cannot ask github.com for the commit.
    return f"""
require = ["build", "integrity"]
[integrity]
unchecked_source = "note"
[[build.builders]]
id = "{RUNNER}"
identities = [{{identity = "{identity}", issuer = "{issuer}"}}]
"""


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*a, **kw):
        raise AssertionError("verification tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def sigstore():
    return SigstoreInstance()


@pytest.fixture
def package(tmp_path, sigstore):
    """acme/hello:1.0, a real WASI command; the acme root names only the GH identity."""
    now = dt.datetime.now(dt.UTC)
    root = generate_key()
    d = tmp_path / "acme-root"
    propose(d, new_root([root.public], 1, expires=default_expiry(now)), [root], now=now)
    meta = with_namespace(
        current_root(d, now=now),
        "acme",
        [],
        1,
        expires=default_expiry(now),
        identities=[KeylessIdentity(GH, GITHUB)],
    )
    propose(d, meta, [root], now=now)
    install_root(d, now=now)
    trusted = tmp_path / "trusted_root.json"
    trusted.write_bytes(sigstore.trusted_root())
    install_trusted_root(trusted)
    w = tmp_path / "w"
    w.mkdir()
    (w / "Motte.toml").write_text('workload = "hello.wasm"\n')
    (w / "hello.wasm").write_bytes(wasmtime.wat2wasm('(module (func (export "_start")))'))
    digest = build_package(w, parse_reference(REF)).digest
    repo = LocalRepository(parse_reference(REF))
    desc, _ = repo.resolve(parse_reference(f"{REF}@{digest}"))

    def sign(identity: str = GH, issuer: str = GITHUB, provenance: dict | None = None) -> None:
        for ptype, predicate in (
            (COSIGN_SIGN, {}),
            (SLSA_PROVENANCE, provenance or github_provenance()),
        ):
            bundle = sigstore.sign_dsse(statement(digest, ptype, predicate), identity, issuer)
            attach_bundle(repo, desc, bundle)

    return sign, tmp_path


def test_a_keyless_publisher_is_verified_trusted_and_run(package, cli):
    sign, tmp = package
    sign()
    policy = tmp / "policy.toml"
    policy.write_text(policy_text())

    r = cli("verify", REF)
    assert r.exit_code == 0, r.stderr
    assert f"publishers  {GH} (issuer {GITHUB})" in r.stdout
    assert "provenance  by " + GH in r.stdout and f"commit={COMMIT}" in r.stdout

    r = cli("trust", REF, "--policy", policy, "-v")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert f"built by {RUNNER} (its identity {GH} (issuer {GITHUB}))" in r.stdout
    assert f"from https://github.com/acme/hello at {COMMIT[:12]}" in r.stdout
    assert "published by 1 of the 1 required key(s)" in r.stdout
    assert "(inclusion proof and checkpoint; no fork check)" in r.stdout

    r = cli("run", REF, "--trust-policy", policy)
    assert r.exit_code == 0, r.stderr
    assert only_the_grant_line(r.stderr)


@pytest.mark.parametrize(
    ("identity", "issuer"), [(OTHER, GITHUB), (GH, "https://token.example.invalid")]
)
def test_bundles_by_another_identity_or_issuer_are_not_counted(package, cli, identity, issuer):
    sign, tmp = package
    sign(identity, issuer)
    policy = tmp / "policy.toml"
    policy.write_text(policy_text())

    r = cli("verify", REF, "-v")
    assert r.exit_code == ExitStatus.FAILURE
    assert "0 of the 1 required publisher signature(s)" in r.stderr
    assert f"signed by {identity} (issuer {issuer}), not an identity you trust" in r.stderr

    verdict = assess(REF, parse_policy(policy.read_text(), name="policy.toml"))
    assert not verdict.accepted
    areas = {a.area: a for a in verdict.areas}
    assert areas["build"].status.value == "unknown"
    assert areas["integrity"].status.value == "not satisfied"
    notes = [r.message for r in areas["integrity"].rules if r.rule == "integrity.ignored"]
    assert any("not an identity you trust" in n for n in notes)

    r = cli("run", REF, "--trust-policy", policy)
    assert r.exit_code == ExitStatus.RUN_ERROR and "refused under policy" in r.stderr


def test_provenance_counts_only_for_a_signer_builder_pair_the_policy_names(package, cli):
    """The publisher's identity signed the provenance, but the policy trusts another
    identity to build: published, yes; built by a builder you trust, no."""
    sign, tmp = package
    sign()
    policy = tmp / "policy.toml"
    policy.write_text(policy_text(identity=OTHER))
    verdict = assess(REF, parse_policy(policy.read_text(), name="policy.toml"))
    areas = {a.area: a for a in verdict.areas}
    assert areas["integrity"].status.value == "satisfied"
    assert areas["build"].status.value == "not satisfied"
    assert "not a signer-builder pair the policy trusts" in areas["build"].deciding.message


def test_a_policy_identity_needs_its_issuer(tmp_path):
    from motte.trust import PolicyError

    with pytest.raises(PolicyError, match="missing required key 'issuer'"):
        parse_policy(
            f'require = ["build"]\n[[build.builders]]\nid = "{RUNNER}"\n'
            f'identities = [{{identity = "{GH}"}}]\n',
            name="p.toml",
        )
