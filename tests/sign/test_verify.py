"""motte verify, end to end on the local store and the embedded log: what passes, what fails."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from motte.errors import VerificationError
from motte.oci import (
    DigestMismatchError,
    LocalStore,
    Manifest,
    build_package,
    parse_reference,
)
from motte.sign import (
    INTOTO_PAYLOAD_TYPE,
    ArtifactVerificationError,
    Envelope,
    Signature,
    attach_statement,
    attest_build,
    attest_review,
    current_root,
    default_expiry,
    generate_key,
    install_root,
    new_root,
    policy_from_keys,
    propose,
    sign_artifact,
    sign_envelope,
    verify_artifact,
    with_namespace,
)
from motte.sign._statement import Statement, Subject
from tests.oci.workloads import make_workload

REF = "acme/hello:1.0"


def publisher_setup(tmp_path, *, signers=1, threshold=1):
    """A root delegating acme to ``signers`` fresh keys, installed; acme/hello:1.0 packaged."""
    now = dt.datetime.now(dt.UTC)
    root = generate_key()
    keys = [generate_key() for _ in range(signers)]
    d = tmp_path / "acme-root"
    propose(d, new_root([root.public], 1, expires=default_expiry(now)), [root], now=now)
    meta = with_namespace(
        current_root(d, now=now),
        "acme",
        [k.public for k in keys],
        threshold,
        expires=default_expiry(now),
    )
    propose(d, meta, [root], now=now)
    install_root(d, now=now)
    result = build_package(make_workload(tmp_path / "w"), parse_reference(REF))
    return keys, result.digest


def test_signed_and_logged_package_verifies(tmp_path):
    (alice,), digest = publisher_setup(tmp_path)
    sign_artifact(REF, [alice])
    attest_build(
        REF,
        [alice],
        source="https://git.example/acme/hello",
        commit="c" * 40,
        command="make",
        builder="https://motte.dev/builders/local/v1",
    )
    attest_review(REF, [alice], reviewer="mailto:bob@example.org", scope="full", result="pass")
    v = verify_artifact(REF)
    assert v.digest == digest and v.publishers == (alice.keyid,)
    assert [s.kind for s in v.statements] == ["publication", "provenance", "review"]
    assert v.statements[1].summary["commit"] == "c" * 40
    assert [s.log.index for s in v.statements] == [0, 1, 2]
    assert v.statements[0].log.fork_check == "first checkpoint seen from this log"
    assert v.statements[2].log.fork_check.startswith("consistent with")


def test_unsigned_package_fails_the_threshold(tmp_path):
    publisher_setup(tmp_path)
    with pytest.raises(ArtifactVerificationError) as e:
        verify_artifact(REF)
    assert e.value.check == "threshold"
    assert "0 of the 1 required publisher signature(s) from trust root acme-root" in e.value.message


def test_a_signature_by_an_undelegated_key_does_not_count(tmp_path):
    publisher_setup(tmp_path)
    mallory = generate_key()
    sign_artifact(REF, [mallory])
    with pytest.raises(ArtifactVerificationError) as e:
        verify_artifact(REF)
    assert e.value.check == "threshold" and mallory.keyid[:16] in e.value.message


def test_pinned_keys(tmp_path):
    (alice,), _ = publisher_setup(tmp_path)
    sign_artifact(REF, [alice])
    assert verify_artifact(REF, policy_from_keys([alice.public])).publishers == (alice.keyid,)
    with pytest.raises(ArtifactVerificationError, match="threshold"):
        verify_artifact(REF, policy_from_keys([generate_key().public]))


def test_namespace_threshold_needs_distinct_keys(tmp_path):
    (alice, bob), _ = publisher_setup(tmp_path, signers=2, threshold=2)
    sign_artifact(REF, [alice])
    sign_artifact(REF, [alice])
    with pytest.raises(ArtifactVerificationError, match="1 of the 2 required"):
        verify_artifact(REF)
    sign_artifact(REF, [bob])
    assert set(verify_artifact(REF).publishers) == {alice.keyid, bob.keyid}


def test_publication_binds_the_name(tmp_path):
    (alice,), _ = publisher_setup(tmp_path)
    sign_artifact(REF, [alice])
    build_package(tmp_path / "w", parse_reference("acme/other:1.0"))  # same bytes, other name
    with pytest.raises(ArtifactVerificationError) as e:
        verify_artifact("acme/other:1.0")
    assert "publishes it as acme/hello, not acme/other" in e.value.message


# -- tampering ---------------------------------------------------------------------------


def _manifest(store: LocalStore, digest: str) -> Manifest:
    return Manifest.from_bytes(store.blob_path(digest).read_bytes())


def test_a_changed_layer_is_named(tmp_path):
    (alice,), digest = publisher_setup(tmp_path)
    sign_artifact(REF, [alice])
    store = LocalStore()
    module = store.blob_path(_manifest(store, digest).layers[1].digest)
    module.write_bytes(module.read_bytes()[:-1] + b"\xff")
    with pytest.raises(DigestMismatchError) as e:
        verify_artifact(REF)
    assert e.value.message.startswith(f"layer hello.wasm of acme/hello@{digest}: digest mismatch")


def test_a_changed_manifest_is_named(tmp_path):
    (alice,), digest = publisher_setup(tmp_path)
    sign_artifact(REF, [alice])
    path = LocalStore().blob_path(digest)
    path.write_bytes(path.read_bytes().replace(b'"schemaVersion":2', b'"schemaVersion":2 '))
    with pytest.raises(DigestMismatchError, match=r"manifest of acme/hello:1\.0: digest mismatch"):
        verify_artifact(REF)


def test_a_changed_envelope_blob_is_named(tmp_path):
    (alice,), _ = publisher_setup(tmp_path)
    result = sign_artifact(REF, [alice])
    store = LocalStore()
    envelope = store.blob_path(_manifest(store, result.referrer).layers[0].digest)
    envelope.write_bytes(envelope.read_bytes().replace(b'"payloadType"', b'"payloadType" '))
    # The changed referrer no longer counts (anyone can attach junk, so it is ignored, not
    # an error of its own), and without it the threshold is not met: the reason names it.
    with pytest.raises(ArtifactVerificationError) as e:
        verify_artifact(REF)
    assert e.value.check == "threshold"
    assert f"referrer {result.referrer} layer 0 (DSSE envelope): digest mismatch" in e.value.message


def test_a_changed_signature_is_named(tmp_path):
    (alice,), _ = publisher_setup(tmp_path)
    result = sign_artifact(REF, [alice])
    store = LocalStore()
    ref_manifest = _manifest(store, result.referrer)
    env = Envelope.from_bytes(store.read_blob(ref_manifest.layers[0], "e"))
    bundle = store.read_blob(ref_manifest.layers[1], "b")
    sig = bytearray(env.signatures[0].sig)
    sig[10] ^= 1
    forged = Envelope(env.payload_type, env.payload, (Signature(alice.keyid, bytes(sig)),))
    from motte.oci import LocalRepository

    repo = LocalRepository(parse_reference(REF))
    subject = repo.resolve(parse_reference(REF))[0]
    bad = attach_statement(
        repo,
        subject,
        forged.to_bytes(),
        bundle,
        predicate_type="p",
        keyids=[alice.keyid],
        now=dt.datetime.now(dt.UTC),
    )
    # Only a keyid hint names alice: the forged referrer is ignored, the genuine one counts.
    result = verify_artifact(REF)
    assert result.publishers == (alice.keyid,)
    why = dict(result.ignored)[bad.digest]
    assert f"names trusted key {alice.keyid[:16]} but its signature does not verify" in why


def _attach(alice, envelope: bytes, bundle: bytes | None):
    from motte.oci import LocalRepository

    repo = LocalRepository(parse_reference(REF))
    subject = repo.resolve(parse_reference(REF))[0]
    return attach_statement(
        repo,
        subject,
        envelope,
        bundle,
        predicate_type="p",
        keyids=[alice.keyid],
        now=dt.datetime.now(dt.UTC),
    )


def _publication(alice, digest, subject_name="acme/hello"):
    statement = Statement(
        (Subject.for_digest(subject_name, digest),),
        "https://motte.dev/attestation/publication/v1",
        {"namespace": "acme", "name": "hello"},
    )
    return sign_envelope(INTOTO_PAYLOAD_TYPE, statement.to_bytes(), [alice]).to_bytes()


def test_a_statement_without_a_log_proof_does_not_count(tmp_path):
    (alice,), digest = publisher_setup(tmp_path)
    _attach(alice, _publication(alice, digest), None)
    with pytest.raises(ArtifactVerificationError) as e:
        verify_artifact(REF)
    assert e.value.check == "threshold" and "not in a transparency log" in e.value.message


def test_a_proof_for_another_entry_is_ignored(tmp_path):
    (alice,), digest = publisher_setup(tmp_path)
    logged = sign_artifact(REF, [alice])
    store = LocalStore()
    other_bundle = store.read_blob(_manifest(store, logged.referrer).layers[1], "b")
    # A validly signed statement (not the logged one: Ed25519 is deterministic, so change a
    # byte), shipped with the proof of a different log entry.
    bad = _attach(alice, _publication(alice, digest, "acme/hello-again"), other_bundle)
    # Anyone can re-attach a signed statement beside a proof that does not fit it: that copy
    # does not count (and says why); the genuine, logged publication still does.
    result = verify_artifact(REF)
    assert result.publishers == (alice.keyid,)
    assert "inclusion proof for leaf 0" in dict(result.ignored)[bad.digest]


def test_a_log_nobody_trusts_fails(tmp_path, monkeypatch):
    (alice,), _ = publisher_setup(tmp_path)
    sign_artifact(REF, [alice])
    pub = alice.public
    # Same artifact and statements, verified from another installation that never trusted
    # this machine's log key.
    import shutil

    from motte.home import motte_home

    other = tmp_path / "other-home"
    shutil.copytree(motte_home() / "oci", other / "oci")
    monkeypatch.setenv("MOTTE_HOME", str(other))
    with pytest.raises(ArtifactVerificationError) as e:
        verify_artifact(REF, policy_from_keys([pub]))
    # The statement is not counted (its log is unknown here), so nothing publishes it.
    assert e.value.check == "threshold" and "publication:" in e.value.message
    assert "motte log trust" in (e.value.hint or "")
    assert isinstance(e.value, VerificationError)


def test_a_forked_log_is_refused(tmp_path):
    (alice,), _ = publisher_setup(tmp_path)
    sign_artifact(REF, [alice])
    verify_artifact(REF)  # remembers the log's checkpoint (size 1)
    # The log operator rewrites history: same key, a new tree with a different first entry.
    from motte.home import motte_home

    for f in (motte_home() / "tlog").glob("log.db*"):
        f.unlink()
    # Drop the old statements so only the rewritten log's entries remain to be checked.
    store = LocalStore()
    index = json.loads((store.root / "index.json").read_text())
    index["manifests"] = [
        m for m in index["manifests"] if "dev.motte.subject" not in m.get("annotations", {})
    ]
    (store.root / "index.json").write_text(json.dumps(index))
    attest_review(REF, [alice], reviewer="x", scope="full", result="pass")
    sign_artifact(REF, [alice])
    with pytest.raises(ArtifactVerificationError) as e:
        verify_artifact(REF)
    assert e.value.check == "log" and "forked" in e.value.message
