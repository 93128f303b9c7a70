"""Namespace roots of trust: chains of versions, thresholds, rotation, installation."""

import datetime as dt
import json

import pytest

from motte.sign import (
    EnvelopeFormatError,
    RootDocument,
    SigningUsageError,
    TrustRootError,
    current_root,
    default_expiry,
    generate_key,
    install_root,
    load_chain,
    new_root,
    policy_for_namespace,
    propose,
    sign_staged,
    trust_roots_dir,
    with_namespace,
    with_root_keys,
)

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
EXP = default_expiry(NOW)


def make_root(directory, *, root_keys=None, threshold=1, publishers=None, ns="acme"):
    root_keys = root_keys or [generate_key()]
    publishers = publishers or [generate_key()]
    status = propose(
        directory,
        new_root([k.public for k in root_keys], threshold, expires=EXP),
        root_keys,
        now=NOW,
    )
    assert status.complete
    meta = with_namespace(
        current_root(directory, now=NOW), ns, [p.public for p in publishers], 1, expires=EXP
    )
    assert propose(directory, meta, root_keys, now=NOW).complete
    return root_keys, publishers


def test_delegation_gives_the_namespace_its_keys(tmp_path):
    _, (alice,) = make_root(tmp_path / "r")
    policy = policy_for_namespace("acme", tmp_path / "r", now=NOW)
    assert policy.keys == (alice.public,) and policy.threshold == 1
    assert "version 2" in policy.source
    with pytest.raises(TrustRootError, match="'other': no trust root"):
        policy_for_namespace("other", tmp_path / "r", now=NOW)


def test_rotation_needs_the_old_roots_threshold_and_the_new(tmp_path):
    d = tmp_path / "r"
    (old,), _ = make_root(d)
    new = generate_key()
    meta = with_root_keys(current_root(d, now=NOW), [new.public], 1, expires=EXP)
    status = propose(d, meta, [new], now=NOW)
    assert not status.complete
    assert status.missing == ("1 more of version 2's root keys",)
    assert status.path.name == "staged.root.json"
    assert load_chain(d, now=NOW).version == 2  # the staged version does not count yet

    status = sign_staged(d, [old], now=NOW)
    assert status.complete and status.path.name == "3.root.json"
    latest = load_chain(d, now=NOW)
    assert latest.version == 3 and [k.keyid for k in latest.root_keys()] == [new.keyid]
    assert "acme" in latest.namespaces  # delegations carry over


def test_a_version_signed_only_by_the_new_keys_is_rejected(tmp_path):
    d = tmp_path / "r"
    make_root(d)
    attacker = generate_key()
    meta = with_root_keys(current_root(d, now=NOW), [attacker.public], 1, expires=EXP)
    (d / "3.root.json").write_bytes(RootDocument(meta).sign(attacker).to_bytes())
    with pytest.raises(TrustRootError) as e:
        load_chain(d, now=NOW)
    assert "3.root.json: version 3 needs 1 more of version 2's root keys" in e.value.message


def test_threshold_counts_distinct_keys(tmp_path):
    d = tmp_path / "r"
    a, b, c = generate_key(), generate_key(), generate_key()
    meta = new_root([a.public, b.public, c.public], 2, expires=EXP)
    status = propose(d, meta, [a, a], now=NOW)
    assert status.missing == ("1 more of its own root keys",)
    status = sign_staged(d, [a], now=NOW)  # the same key again does not count twice
    assert not status.complete
    assert sign_staged(d, [c], now=NOW).complete
    with pytest.raises(SigningUsageError, match="not a root key"):
        propose(
            d,
            with_namespace(load_chain(d, now=NOW), "x", [a.public], 1, expires=EXP),
            [generate_key()],
            now=NOW,
        )


def test_changed_content_breaks_the_signatures(tmp_path):
    d = tmp_path / "r"
    make_root(d)
    path = d / "2.root.json"
    doc = json.loads(path.read_text())
    intruder = generate_key()
    doc["signed"]["namespaces"]["acme"]["keyids"] = [intruder.keyid]
    doc["signed"]["keys"][intruder.keyid] = {
        "keytype": "ed25519",
        "public": __import__("base64").b64encode(intruder.public.spki_der).decode(),
    }
    path.write_text(json.dumps(doc))
    with pytest.raises(TrustRootError, match="needs 1 more of its own root keys"):
        policy_for_namespace("acme", d, now=NOW)


def test_versions_must_be_consecutive_and_unexpired(tmp_path):
    d = tmp_path / "r"
    make_root(d)
    (d / "2.root.json").rename(d / "3.root.json")
    with pytest.raises(TrustRootError, match="version 2 is missing"):
        load_chain(d, now=NOW)
    (d / "3.root.json").rename(d / "2.root.json")
    later = EXP + dt.timedelta(days=1)
    with pytest.raises(TrustRootError, match="expired at"):
        load_chain(d, now=later)
    assert load_chain(d, now=later, check_expiry=False).version == 2


def test_root_documents_are_parsed_strictly(tmp_path):
    d = tmp_path / "r"
    make_root(d)
    doc = json.loads((d / "1.root.json").read_text())
    kid = next(iter(doc["signed"]["keys"]))
    doc["signed"]["keys"]["0" * 64] = doc["signed"]["keys"].pop(kid)
    with pytest.raises(EnvelopeFormatError, match="keyid is not the SHA-256 of the key"):
        RootDocument.from_bytes(json.dumps(doc).encode(), "x")
    doc = json.loads((d / "1.root.json").read_text())
    doc["signed"]["root"]["threshold"] = 2
    with pytest.raises(EnvelopeFormatError, match="threshold"):
        RootDocument.from_bytes(json.dumps(doc).encode(), "x")


def test_install_then_extend_only_by_chaining_versions(tmp_path):
    d = tmp_path / "acme-root"
    (old,), _ = make_root(d)
    (d / "2.root.json").rename(tmp_path / "v2")  # the consumer first gets version 1 only
    target, latest, added = install_root(d, now=NOW)
    assert target == trust_roots_dir() / "acme-root" and added == [1] and latest.version == 1
    (tmp_path / "v2").rename(d / "2.root.json")
    new = generate_key()
    propose(
        d,
        with_root_keys(current_root(d, now=NOW), [new.public], 1, expires=EXP),
        [old, new],
        now=NOW,
    )
    _, latest, added = install_root(d, now=NOW)
    assert added == [2, 3] and latest.version == 3
    assert policy_for_namespace("acme", now=NOW).source == "trust root acme-root version 3"

    # A different document claiming an installed version number is refused.
    forged = tmp_path / "forged"
    forged.mkdir()
    other = generate_key()
    (forged / "1.root.json").write_bytes(
        RootDocument(new_root([other.public], 1, expires=EXP)).sign(other).to_bytes()
    )
    with pytest.raises(TrustRootError):
        install_root(forged, "acme-root", now=NOW)


def test_a_namespace_delegated_by_two_roots_is_an_error(tmp_path):
    make_root(tmp_path / "roots" / "one")
    make_root(tmp_path / "roots" / "two")
    with pytest.raises(TrustRootError, match="more than one root"):
        policy_for_namespace("acme", tmp_path / "roots", now=NOW)


def test_no_roots_installed_says_how_to_get_one():
    with pytest.raises(TrustRootError) as e:
        policy_for_namespace("acme", now=NOW)
    assert "motte key root trust" in (e.value.hint or "")


# -- keyless identities ------------------------------------------------------------------

GH_ID = "https://github.com/acme/hello/.github/workflows/release.yml@refs/heads/main"
GH_ISSUER = "https://token.actions.githubusercontent.com"


def test_a_namespace_names_keyless_identities_beside_keys_and_the_threshold_counts_both(
    tmp_path,
):
    from motte.sign import KeylessIdentity

    d = tmp_path / "r"
    (root_key,), (alice,) = make_root(d)
    ident = KeylessIdentity.parse(GH_ID, GH_ISSUER)
    meta = with_namespace(
        current_root(d, now=NOW), "acme", [alice.public], 2, expires=EXP, identities=[ident]
    )
    assert propose(d, meta, [root_key], now=NOW).complete
    doc = json.loads((d / "3.root.json").read_bytes())
    assert doc["signed"]["identities"] == {ident.id: {"identity": GH_ID, "issuer": GH_ISSUER}}
    assert doc["signed"]["namespaces"]["acme"] == {
        "keyids": [alice.keyid, ident.id],
        "threshold": 2,
    }
    policy = policy_for_namespace("acme", d, now=NOW)
    assert policy.keys == (alice.public,) and policy.identities == (ident,)
    assert policy.threshold == 2 and policy.ids == {alice.keyid, ident.id}
    assert policy.name_of(ident.id) == f"{GH_ID} (issuer {GH_ISSUER})"
    # An identity alone is never a publisher: the same identity from another issuer is
    # another id.
    assert KeylessIdentity(GH_ID, "https://issuer.example").id != ident.id


def test_a_root_without_identities_signs_the_same_bytes_as_before(tmp_path):
    """Old roots keep verifying: 'identities' appears only when a namespace names one."""
    d = tmp_path / "r"
    make_root(d)
    doc = json.loads((d / "2.root.json").read_bytes())
    assert "identities" not in doc["signed"]
    assert load_chain(d, now=NOW).identities == {}


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda s, i: s["identities"][i].update(issuer="http://plain.example"), "https://"),
        (lambda s, i: s["identities"][i].update(identity="someone-else"), "not the SHA-256"),
        (lambda s, i: s["identities"][i].update(extra="x"), "identity and issuer"),
        (lambda s, i: s["root"]["keyids"].append(i), "is not in 'keys'"),
    ],
)
def test_a_malformed_identity_is_refused_naming_it(tmp_path, change, why):
    from motte.sign import KeylessIdentity

    d = tmp_path / "r"
    _, (alice,) = make_root(d)
    ident = KeylessIdentity.parse(GH_ID, GH_ISSUER)
    meta = with_namespace(
        current_root(d, now=NOW), "acme", [alice.public], 1, expires=EXP, identities=[ident]
    )
    signed = meta.to_dict()
    change(signed, ident.id)
    with pytest.raises(EnvelopeFormatError, match=why):
        RootDocument.from_bytes(json.dumps({"signed": signed, "signatures": []}).encode(), "x")


def test_identity_pairs_are_validated():
    from motte.sign import KeylessIdentity

    with pytest.raises(SigningUsageError, match="non-empty"):
        KeylessIdentity.parse("", GH_ISSUER)
    with pytest.raises(SigningUsageError, match="https://"):
        KeylessIdentity.parse(GH_ID, "token.actions.githubusercontent.com")
