"""Sigstore bundles attached to a package, verified by ``motte verify`` against a pinned root.

The bundles come from our own Sigstore instance (tests/sign/sigstore_instance.py): real
certificates, SCTs, Rekor proofs, checkpoints and SETs that sigstore-python verifies exactly
as it verifies the public-good instance's, offline.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import socket

import pytest

from motte.oci import Descriptor, LocalRepository, build_package, parse_reference
from motte.oci import _mediatypes as mt
from motte.sign import (
    COSIGN_SIGN,
    PUBLICATION,
    ArtifactVerificationError,
    KeylessIdentity,
    attach_bundle,
    current_root,
    default_expiry,
    generate_key,
    install_root,
    install_trusted_root,
    new_root,
    propose,
    sign_artifact,
    verify_artifact,
    with_namespace,
)
from tests.oci.workloads import make_workload
from tests.sign.sigstore_instance import (
    GITHUB,
    SigstoreInstance,
    cosign_legacy_signature,
    statement,
)

GH = "https://github.com/acme/hello/.github/workflows/release.yml@refs/heads/main"
OTHER = "https://github.com/mallory/hello/.github/workflows/release.yml@refs/heads/main"
IDENT = KeylessIdentity(GH, GITHUB)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Verification is offline: any attempt to connect fails the test."""

    def refuse(*a, **kw):
        raise AssertionError("verification tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def sigstore():
    return SigstoreInstance()


class Package:
    def __init__(self, tmp_path, sigstore, *, keys=(), identities=(IDENT,), threshold=1):
        now = dt.datetime.now(dt.UTC)
        root = generate_key()
        d = tmp_path / "acme-root"
        propose(d, new_root([root.public], 1, expires=default_expiry(now)), [root], now=now)
        meta = with_namespace(
            current_root(d, now=now),
            "acme",
            [k.public for k in keys],
            threshold,
            expires=default_expiry(now),
            identities=list(identities),
        )
        propose(d, meta, [root], now=now)
        install_root(d, now=now)
        self.trusted_root = tmp_path / "trusted_root.json"
        self.trusted_root.write_bytes(sigstore.trusted_root())
        result = build_package(make_workload(tmp_path / "w"), parse_reference("acme/hello:1.0"))
        self.digest = result.digest
        self.ref = f"acme/hello@{self.digest}"
        self.repo = LocalRepository(parse_reference(self.ref))
        self.desc, self.manifest = self.repo.resolve(parse_reference(self.ref))
        self.sigstore = sigstore

    def attach(self, bundle: bytes) -> str:
        return attach_bundle(self.repo, self.desc, bundle).digest

    def dsse(self, predicate_type=COSIGN_SIGN, predicate=None, identity=GH, **kw) -> str:
        st = statement(self.digest, predicate_type, predicate or {})
        return self.attach(self.sigstore.sign_dsse(st, identity, **kw))


def test_a_cosign_signature_by_the_delegated_identity_publishes_the_package(tmp_path, sigstore):
    p = Package(tmp_path, sigstore)
    install_trusted_root(p.trusted_root)
    referrer = p.dsse()
    v = verify_artifact(p.ref)
    assert v.publishers == (IDENT.id,)
    assert v.name_of(IDENT.id) == f"{GH} (issuer {GITHUB})"
    (s,) = v.statements
    assert (s.referrer, s.kind, s.signers) == (referrer, "signature", (IDENT.id,))
    assert s.log.origin.startswith("Rekor ") and s.log.time is not None
    assert "none for Rekor" in s.log.fork_check


def test_a_message_signature_over_the_manifest_counts_too(tmp_path, sigstore):
    p = Package(tmp_path, sigstore)
    p.attach(sigstore.sign_message(p.manifest, GH))
    v = verify_artifact(p.ref, trusted_root=p.trusted_root)
    assert v.publishers == (IDENT.id,) and v.statements[0].kind == "signature"


def test_a_sigstore_signed_motte_publication_binds_the_name(tmp_path, sigstore):
    p = Package(tmp_path, sigstore)
    p.dsse(PUBLICATION, {"namespace": "acme", "name": "other"})
    with pytest.raises(ArtifactVerificationError, match="publishes it as acme/other"):
        verify_artifact(p.ref, trusted_root=p.trusted_root)
    p.dsse(PUBLICATION, {"namespace": "acme", "name": "hello"})
    v = verify_artifact(p.ref, trusted_root=p.trusted_root)
    assert v.publishers == (IDENT.id,)


@pytest.mark.parametrize(
    ("identity", "issuer", "why"),
    [
        (OTHER, GITHUB, f"signed by {OTHER} (issuer {GITHUB}), not an identity you trust"),
        (GH, "https://issuer.example", "(issuer https://issuer.example), not an identity"),
    ],
)
def test_a_bundle_by_another_identity_or_issuer_is_not_counted(
    tmp_path, sigstore, identity, issuer, why
):
    """The pair decides: the right workflow from another issuer is someone else."""
    p = Package(tmp_path, sigstore)
    referrer = p.dsse(identity=identity, issuer=issuer)
    with pytest.raises(ArtifactVerificationError, match="0 of the 1 required") as e:
        verify_artifact(p.ref, trusted_root=p.trusted_root)
    assert referrer[:19] in e.value.message and why in e.value.message


def test_a_bundle_from_another_sigstore_instance_is_refused_by_sigstore_python(tmp_path, sigstore):
    """The delegated identity, but a certificate our pinned root's CA never issued."""
    p = Package(tmp_path, sigstore)
    rogue = SigstoreInstance(name="rogue")
    p.attach(rogue.sign_dsse(statement(p.digest, COSIGN_SIGN, {}), GH))
    with pytest.raises(ArtifactVerificationError, match="failed to build timestamp certificate"):
        verify_artifact(p.ref, trusted_root=p.trusted_root)


def test_a_bundle_about_another_digest_is_not_counted(tmp_path, sigstore):
    p = Package(tmp_path, sigstore)
    other = "sha256:" + hashlib.sha256(b"other").hexdigest()
    p.attach(sigstore.sign_dsse(statement(other, COSIGN_SIGN, {}), GH))
    with pytest.raises(ArtifactVerificationError, match=f"not about {p.digest}"):
        verify_artifact(p.ref, trusted_root=p.trusted_root)


def test_without_a_pinned_root_bundles_are_ignored_and_say_so(tmp_path, sigstore):
    p = Package(tmp_path, sigstore)
    p.dsse()
    with pytest.raises(ArtifactVerificationError, match="no Sigstore trusted root is pinned"):
        verify_artifact(p.ref)


def test_the_threshold_counts_keys_and_identities_alike(tmp_path, sigstore):
    alice = generate_key()
    p = Package(tmp_path, sigstore, keys=[alice], threshold=2)
    sign_artifact(p.ref, [alice])
    with pytest.raises(ArtifactVerificationError, match="1 of the 2 required"):
        verify_artifact(p.ref, trusted_root=p.trusted_root)
    p.dsse()
    v = verify_artifact(p.ref, trusted_root=p.trusted_root)
    assert set(v.publishers) == {alice.keyid, IDENT.id}


def test_bundles_nobody_trusted_signed_never_change_an_outcome(tmp_path, sigstore):
    """A package published by key: junk and strangers' bundles leave it verified, each
    bundle listed as ignored with the reason."""
    alice = generate_key()
    p = Package(tmp_path, sigstore, keys=[alice])
    sign_artifact(p.ref, [alice])
    junk = p.attach(b"not json")
    stranger = p.dsse(identity=OTHER)
    v = verify_artifact(p.ref, trusted_root=p.trusted_root)
    assert v.publishers == (alice.keyid,)
    why = dict(v.ignored)
    assert "not a Sigstore bundle" in why[junk]
    assert "not an identity you trust" in why[stranger]


def test_a_namespace_without_identities_does_not_even_parse_bundles(tmp_path, sigstore):
    alice = generate_key()
    p = Package(tmp_path, sigstore, keys=[alice], identities=())
    sign_artifact(p.ref, [alice])
    bundle = p.dsse()
    v = verify_artifact(p.ref, trusted_root=tmp_path / "missing.json")
    assert v.publishers == (alice.keyid,)
    assert "nobody you trust signs keyless" in dict(v.ignored)[bundle]


def test_cosign_tag_scheme_signatures_are_read_and_ignored_with_the_reason(tmp_path, sigstore):
    """``sha256-<hex>.sig``: a SET but no inclusion proof, which sigstore-python requires."""
    p = Package(tmp_path, sigstore)
    payload, annotations = cosign_legacy_signature(sigstore, p.digest, GH)
    empty = Descriptor.of(mt.OCI_EMPTY, mt.OCI_EMPTY_BYTES)
    layer = Descriptor.of(
        "application/vnd.dev.cosign.simplesigning.v1+json", payload, annotations=annotations
    )
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mt.OCI_MANIFEST,
            "config": empty.to_dict(),
            "layers": [layer.to_dict()],
        }
    ).encode()
    tag = f"sha256-{p.digest[7:]}.sig"
    with p.repo.session() as sink:
        for d, blob in ((empty, mt.OCI_EMPTY_BYTES), (layer, payload)):
            sink.put_blob(d, iter([blob]), "blob", advance=lambda n: None)
        sink.put_manifest(Descriptor.of(mt.OCI_MANIFEST, manifest), manifest, tag=tag)
    with pytest.raises(ArtifactVerificationError, match="0 of the 1 required") as e:
        verify_artifact(p.ref, trusted_root=p.trusted_root)
    assert (
        f"cosign tag {tag} layer 0: it carries a SET but no inclusion proof, and "
        "sigstore-python cannot verify that: failed to load bundle: 1 validation error for "
        "Bundle verificationMaterial.tlogEntries.0.inclusionProof"
    ) in e.value.message


def test_cli_verify_names_the_identity_and_lists_what_it_ignored(cli, tmp_path, sigstore):
    p = Package(tmp_path, sigstore)
    p.dsse()
    stranger = p.dsse(identity=OTHER)
    r = cli("verify", p.ref, "--trusted-root", str(p.trusted_root), "-v")
    assert r.exit_code == 0, r.stderr
    assert f"publishers  {GH} (issuer {GITHUB})" in r.stdout
    assert "signature   by " + GH in r.stdout
    assert f"ignored     {stranger[:19]}: Sigstore bundle signed by {OTHER}" in r.stdout
    doc = json.loads(cli("verify", p.ref, "--trusted-root", str(p.trusted_root), "--json").stdout)
    assert doc["identities"] == {IDENT.id: IDENT.label}
    r = cli("verify", p.ref, "--identity", GH)
    assert r.exit_code == 2 and "go with --bundle" in r.stderr


# -- GitHub's SLSA provenance, as motte reads it ---------------------------------------------


def test_github_provenance_maps_to_source_commit_and_builder():
    """The real actions/attest-build-provenance statement in the shared test data."""
    import base64

    from motte.sign import Provenance
    from tests.conftest import shared_testdata

    bundle = json.loads(
        shared_testdata("sigstore", "happy-path-intoto-in-dsse-v3.sigstore.json").read_bytes()
    )
    predicate = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))["predicate"]
    p = Provenance.from_dict(predicate, "github")
    assert (p.source, p.commit, p.command) == (
        "https://github.com/loosebazooka/aa-test",
        "ebff8dfbd609b7b22237c7719ce07f2dc7934f5f",
        None,
    )
    assert p.builder == (
        "https://github.com/loosebazooka/aa-test/.github/workflows/provenance.yaml@refs/heads/main"
    )


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda p: p["buildDefinition"]["externalParameters"].update(inputs={"x": 1}), "'inputs'"),
        (lambda p: p["buildDefinition"].update(resolvedDependencies=[]), "no single resolved"),
        (
            lambda p: p["buildDefinition"]["resolvedDependencies"][0].update(
                uri="git+https://github.com/other/repo@refs/heads/main"
            ),
            "no single resolved",
        ),
        (
            lambda p: p["buildDefinition"]["resolvedDependencies"][0]["digest"].update(
                gitCommit="abc"
            ),
            "not a full git commit",
        ),
    ],
)
def test_github_provenance_that_motte_cannot_check_is_refused(change, why):
    from motte.sign import EnvelopeFormatError, Provenance

    predicate = {
        "buildDefinition": {
            "buildType": "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1",
            "externalParameters": {
                "workflow": {
                    "ref": "refs/tags/v1",
                    "repository": "https://github.com/a/b",
                    "path": "w",
                },
                "inputs": {},
            },
            "resolvedDependencies": [
                {
                    "uri": "git+https://github.com/a/b@refs/tags/v1",
                    "digest": {"gitCommit": "a" * 40},
                }
            ],
        },
        "runDetails": {
            "builder": {"id": "https://github.com/slsa-framework/slsa-github-generator"}
        },
    }
    assert Provenance.from_dict(predicate, "ok").commit == "a" * 40
    change(predicate)
    with pytest.raises(EnvelopeFormatError, match=why):
        Provenance.from_dict(predicate, "github")
