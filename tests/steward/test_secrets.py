"""The secret store and the release decision, on a real Steward (SQLite and PostgreSQL).

Every refusal the issue names is shown here with its reason, and each is audited. The Keep's
side is the library's own (motte.keep's release_secrets over HTTP to a Steward served in
this process), so what is sealed is what a Keep opens.
"""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from motte.attest import Evidence
from motte.keep._release import release_secrets
from motte.keep.backends import SimBackend
from motte.sign import (
    INTOTO_PAYLOAD_TYPE,
    PUBLICATION,
    current_root,
    default_expiry,
    generate_key,
    install_root,
    new_root,
    propose,
    sign_envelope,
    with_namespace,
)
from motte.sign._statement import Statement, Subject
from motte.steward import (
    ReleasePolicyError,
    ReleaseRequest,
    SecretKeyError,
    SecretNotFoundError,
    SecretRefusedError,
    SecretUsageError,
    StewardClient,
    Wanted,
    open_sealed,
    parse_answer,
    parse_release_policy,
    release_info,
    release_report_data,
    spki_of,
)
from motte.steward._masterkey import ENV, key_text, new_master_key
from motte.steward._secrets import rekey_files
from tests.steward.helpers import DIGEST, OTHER_DIGEST, Clock, make_steward
from tests.steward.servers import steward_server

pytestmark = pytest.mark.usefixtures("database")

SIM = SimBackend(allow_insecure_sim=True)
ACTOR = "test"


def policy(text: str):
    return parse_release_policy(text, source="policy.toml")


def digest_policy(*digests: str, sim: bool = True):
    listed = ", ".join(f'"{d}"' for d in digests)
    return policy(f"digests = [{listed}]\nallow_insecure_sim = {str(sim).lower()}\n")


@pytest.fixture
def steward(tmp_path):
    clock = Clock()
    s = make_steward(tmp_path / "steward", clock=clock)
    s.test_clock = clock  # type: ignore[attr-defined]
    yield s
    s.close()


def rules_failed(doc):
    return [r["rule"] for r in doc["rules"] if r["outcome"] == "fail"]


# -- the store ------------------------------------------------------------------------------


def test_put_rotate_show_remove_keep_versions_and_audit_every_change(steward):
    store = steward.secrets
    info = store.put("db-password", b"v1-value", policy=digest_policy(DIGEST), actor=ACTOR)
    assert (info.latest, [v.size for v in info.versions]) == (1, [8])
    assert store.rotate("db-password", b"v2", actor=ACTOR).latest == 2
    with pytest.raises(SecretUsageError, match="exists"):
        store.put("db-password", b"again", policy=None, actor=ACTOR)
    assert [(i.name, i.latest) for i in store.list()] == [("db-password", 2)]
    (one,) = store.for_release([("db-password", 1)])
    (latest,) = store.for_release([("db-password", None)])
    assert (one.value, latest.value, latest.version) == (b"v1-value", b"v2", 2)
    assert "v1-value" not in repr(one) and "v2" not in repr(store.show("db-password"))
    assert store.remove("db-password", version=1, actor=ACTOR) == 1
    (gone,) = store.for_release([("db-password", 1)])
    assert gone.value is None and "no version 1" in gone.missing
    assert store.remove("db-password", actor=ACTOR) == 1
    with pytest.raises(SecretNotFoundError, match="removed at"):
        store.rotate("db-password", b"x", actor=ACTOR)
    assert store.list() == []
    # A name put again goes on from its old versions: a Keep pinned to version 1 never gets
    # a different value under the old number.
    assert store.put("db-password", b"new", policy=None, actor=ACTOR).latest == 3
    actions = [(r.action, r.decision) for r in store.audit(name="db-password")]
    assert actions == [
        ("put", "done"),
        ("rotate", "done"),
        ("rm", "done"),
        ("rm", "done"),
        ("put", "done"),
    ]
    assert all("v1-value" not in json.dumps(r.to_dict()) for r in store.audit())


def test_names_and_values_are_checked(steward):
    for bad in ("", "Upper", "a b", "../x", "x/", "a" * 129):
        with pytest.raises(SecretUsageError, match="secret name"):
            steward.secrets.put(bad, b"v", policy=None, actor=ACTOR)
    with pytest.raises(SecretUsageError, match="empty"):
        steward.secrets.put("x", b"", policy=None, actor=ACTOR)


def test_values_rest_sealed_in_the_database(steward, tmp_path):
    canary = b"canary-" + os.urandom(12).hex().encode()
    steward.secrets.put("c", canary, policy=None, actor=ACTOR)
    with steward.store.db.read() as tx:
        rows = tx.all("SELECT sealed FROM secret_version")
    assert rows and all(canary not in bytes(r[0]) for r in rows)
    for path in (tmp_path / "steward").rglob("*"):
        if path.is_file():
            assert canary not in path.read_bytes(), path


def test_a_wrong_master_key_is_named_and_nothing_is_written(steward, monkeypatch):
    steward.secrets.put("db", b"value", policy=None, actor=ACTOR)
    before = len(steward.secrets.audit())
    monkeypatch.setenv(ENV, key_text(new_master_key()).decode().strip())
    steward.secrets._key = None  # as a new process would
    with pytest.raises(SecretKeyError, match="is not the one this Steward's secrets are sealed"):
        steward.secrets.rotate("db", b"other", actor=ACTOR)
    with pytest.raises(SecretKeyError, match="is not the one"):
        steward.secrets.for_release([("db", None)])
    assert len(steward.secrets.audit()) == before
    assert steward.secrets.show("db").latest == 1
    monkeypatch.setenv(ENV, "not-a-key")
    steward.secrets._key = None
    with pytest.raises(SecretKeyError, match="not a master key"):
        steward.secrets.for_release([("db", None)])


def test_a_master_key_others_can_read_is_refused(steward):
    steward.secrets.key_path.chmod(0o644)
    steward.secrets._key = None
    with pytest.raises(SecretKeyError, match="accessible to others"):
        steward.secrets.put("db", b"v", policy=None, actor=ACTOR)


def test_rekey_reseals_every_value_in_one_transaction(steward):
    store = steward.secrets
    for i in range(5):
        store.put(f"s{i}", f"value-{i}".encode(), policy=None, actor=ACTOR)
    old = store.master_key()
    assert rekey_files(store, actor=ACTOR) == 5
    new = store.master_key()
    assert new.key_id != old.key_id and store.recorded_key_id() == new.key_id
    with store.db.read() as tx:
        rows = tx.all("SELECT name, version, sealed FROM secret_version")
    assert all(old.open(n, v, bytes(s)) is None for n, v, s in rows)
    store._key = None  # a new process reads the file the rekey left
    got = store.for_release([(f"s{i}", None) for i in range(5)])
    assert [g.value for g in got] == [f"value-{i}".encode() for i in range(5)]
    assert store.audit()[-1].action == "rekey"


def test_an_interrupted_rekey_is_finished_by_the_next_use(steward, monkeypatch):
    store = steward.secrets
    store.put("db", b"value", policy=None, actor=ACTOR)
    pending = store.key_path.with_name("secrets.key.new")
    # Crash after the commit, before the rename: the next process finds the store's key in
    # secrets.key.new and moves it into place.
    monkeypatch.setattr("motte.steward._secrets.os.replace", _crash)
    with pytest.raises(RuntimeError):
        rekey_files(store, actor=ACTOR)
    monkeypatch.undo()
    assert pending.exists()
    store._key = None
    (got,) = store.for_release([("db", None)])
    assert got.value == b"value" and not pending.exists()


def _crash(*_a, **_k):
    raise RuntimeError("power cut")


def test_a_damaged_store_fails_the_rekey_with_nothing_changed(steward):
    store = steward.secrets
    store.put("db", b"value", policy=None, actor=ACTOR)
    with store.db.write() as tx:
        tx.execute("UPDATE secret_version SET sealed = ?", (b"\0" * 40,))
    key_id = store.recorded_key_id()
    with pytest.raises(SecretKeyError, match="does not open"):
        rekey_files(store, actor=ACTOR)
    assert store.recorded_key_id() == key_id
    assert not store.key_path.with_name("secrets.key.new").exists()


def test_the_secret_audit_log_is_append_only(steward):
    from motte.store import ConstraintError, StoreError

    steward.secrets.put("db", b"v", policy=None, actor=ACTOR)
    for sql in ("UPDATE secret_audit SET actor = 'x'", "DELETE FROM secret_audit"):
        with pytest.raises((ConstraintError, StoreError)), steward.store.db.write() as tx:
            tx.execute(sql)


# -- release policies -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "names no workload"),
        ('digests = ["sha256:12"]', "digests: [0] 'sha256:12' is not sha256"),
        ('signed = ["acme"]', "is not namespace/name"),
        ('signed = ["a/b"]\nallowed_kinds = ["sim"]', "allowed_kinds: sim protects nothing"),
        ('signed = ["a/b"]\nallowed_kinds = ["gpu"]', "'gpu' is not one of"),
        ('signed = ["a/b"]\nallowed_kinds = []', "is empty"),
        ('signed = ["a/b"]\nwho = "me"', "who"),
        ('signed = ["a/b"]\nallow_insecure_sim = "yes"', "must be true or false"),
        ('signed = ["a/b"', "policy.toml"),
        ('signed = ["a/b"]\nattestation_policy = "a b"', "policy name or sha256"),
    ],
)
def test_malformed_policies_are_named_with_their_line(text, error):
    with pytest.raises(ReleasePolicyError, match=r"policy\.toml") as e:
        policy(text)
    assert error in e.value.message
    assert "\n" not in e.value.message


# -- release --------------------------------------------------------------------------------


def test_a_release_round_trip_opens_only_with_the_keeps_key(steward):
    value = b"hunter2-" + os.urandom(8).hex().encode()
    steward.secrets.put("db", value, policy=digest_policy(DIGEST), actor=ACTOR)
    steward.secrets.put("token", b"t0k3n", policy=digest_policy(DIGEST), actor=ACTOR)
    with steward_server(steward) as url:
        got = release_secrets(url, DIGEST, SIM, [Wanted("db"), Wanted("token", 1)])
    assert {n: (s.version, s.value) for n, s in got.items()} == {
        "db": (1, value),
        "token": (1, b"t0k3n"),
    }
    assert value.decode() not in repr(got)
    (row,) = steward.secrets.audit(name="db")[-1:]
    assert (row.action, row.decision, row.workload_digest, row.kind) == (
        "release",
        "released",
        DIGEST,
        "sim",
    )
    assert value.decode() not in json.dumps(row.to_dict())
    counts = steward.store.counts()
    assert counts["used_nonces"] == counts["consuming_rows"] == 1


def keep_request(steward_url, *, digest=DIGEST, names=("db",), bound_key=None, key=None):
    """A release request made by hand: (request, the release private key, nonce)."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    spki = spki_of(key.public_key())
    bound = spki_of((bound_key or key).public_key())
    with StewardClient(steward_url) as client:
        nonce = client.nonce()
    evidence = SIM.evidence(release_report_data(bound, digest, nonce))
    wanted = tuple(Wanted(n) for n in names)
    return ReleaseRequest(evidence, digest, nonce, spki, wanted), key, nonce


def refused(steward, request) -> dict:
    decision = steward.release(request.to_bytes(), client="test")
    assert not decision.released and decision.status == 403
    assert decision.sealed == []
    doc = decision.problem_document()
    audit = steward.secrets.audit()[-1]
    assert (audit.action, audit.decision, audit.id) == ("release", "refused", doc["audit_id"])
    return doc


def test_refused_another_digest(steward):
    steward.secrets.put("db", b"v", policy=digest_policy(DIGEST), actor=ACTOR)
    with steward_server(steward) as url:
        request, _, _ = keep_request(url, digest=OTHER_DIGEST)
    doc = refused(steward, request)
    assert doc["reasons"] == [f"db: workload: {OTHER_DIGEST} is not among digests ({DIGEST})"]


def test_refused_a_replayed_release(steward):
    steward.secrets.put("db", b"v", policy=digest_policy(DIGEST), actor=ACTOR)
    with steward_server(steward) as url:
        request, key, nonce = keep_request(url)
    first = steward.release(request.to_bytes(), client="keep")
    assert first.released
    (item,) = parse_answer(json.dumps(first.answer()).encode())
    assert open_sealed(key, item.sealed, release_info("db", 1, DIGEST, nonce)) == b"v"
    doc = refused(steward, request)
    assert rules_failed(doc) == ["nonce"]
    assert "already used" in doc["reasons"][0] and "(a replay)" in doc["reasons"][0]


def test_refused_evidence_bound_to_another_key(steward):
    steward.secrets.put("db", b"v", policy=digest_policy(DIGEST), actor=ACTOR)
    other = ec.generate_private_key(ec.SECP256R1())
    with steward_server(steward) as url:
        # A host that swaps in its own key for the Keep's: the evidence binds the Keep's.
        request, _, _ = keep_request(url, bound_key=other)
    doc = refused(steward, request)
    assert rules_failed(doc) == ["report-data"]


def test_refused_an_expired_nonce(steward):
    steward.secrets.put("db", b"v", policy=digest_policy(DIGEST), actor=ACTOR)
    with steward_server(steward) as url:
        request, _, _ = keep_request(url)
    steward.test_clock.advance(61)
    doc = refused(steward, request)
    assert rules_failed(doc) == ["nonce"] and "expired" in doc["reasons"][0]


def test_refused_sim_without_consent(steward):
    steward.secrets.put("db", b"v", policy=digest_policy(DIGEST, sim=False), actor=ACTOR)
    with steward_server(steward) as url:
        request, _, _ = keep_request(url)
    doc = refused(steward, request)
    assert doc["reasons"] == [
        "db: tee-kind: sim keeps protect nothing; the release policy does not set "
        "allow_insecure_sim"
    ]


def test_refused_a_removed_secret_and_one_without_a_policy(steward):
    steward.secrets.put("db", b"v", policy=digest_policy(DIGEST), actor=ACTOR)
    steward.secrets.put("nopolicy", b"v", policy=None, actor=ACTOR)
    steward.secrets.remove("db", actor=ACTOR)
    with steward_server(steward) as url:
        request, _, _ = keep_request(url, names=("db", "nopolicy", "never"))
    doc = refused(steward, request)
    assert [r.split(" at ")[0] for r in doc["reasons"]] == [
        "db: secret: removed",
        "nopolicy: release-policy: the secret has no release policy: it is released to nobody "
        "(motte secret policy NAME FILE)",
        "never: secret: no such secret",
    ]


def test_refused_by_the_keep_side_too(steward):
    steward.secrets.put("db", b"v", policy=digest_policy(DIGEST, sim=False), actor=ACTOR)
    with steward_server(steward) as url, pytest.raises(SecretRefusedError) as e:
        release_secrets(url, DIGEST, SIM, [Wanted("db")])
    assert "tee-kind: sim keeps protect nothing" in e.value.message
    assert e.value.audit_id == steward.secrets.audit()[-1].id


def test_a_sealed_value_does_not_open_for_another_secret_or_request(steward):
    steward.secrets.put("a", b"value-a", policy=digest_policy(DIGEST), actor=ACTOR)
    steward.secrets.put("b", b"value-b", policy=digest_policy(DIGEST), actor=ACTOR)
    with steward_server(steward) as url:
        request, key, nonce = keep_request(url, names=("a", "b"))
    decision = steward.release(request.to_bytes(), client="keep")
    a, b = decision.sealed
    # Swapping the two ciphertexts (a proxy's trick) or replaying them into another nonce
    # does not open: info binds the name, version, workload and nonce.
    assert open_sealed(key, b.sealed, release_info("a", 1, DIGEST, nonce)) is None
    assert open_sealed(key, a.sealed, release_info("a", 1, DIGEST, b"\0" * 32)) is None
    other = ec.generate_private_key(ec.SECP256R1())
    assert open_sealed(other, a.sealed, release_info("a", 1, DIGEST, nonce)) is None
    assert open_sealed(key, a.sealed, release_info("a", 1, DIGEST, nonce)) == b"value-a"


def test_a_malformed_request_is_refused_and_audited(steward):
    decision = steward.release(b'{"version": 1}', client="x")
    assert decision.status == 400 and not decision.released
    assert steward.secrets.audit()[-1].decision == "refused"


# -- signed namespace/name ------------------------------------------------------------------


@pytest.fixture
def publisher(tmp_path):
    """A root delegating acme to one key, installed in the Steward's MOTTE_HOME."""
    now = dt.datetime.now(dt.UTC)
    root, alice = generate_key(), generate_key()
    d = tmp_path / "acme-root"
    propose(d, new_root([root.public], 1, expires=default_expiry(now)), [root], now=now)
    meta = with_namespace(
        current_root(d, now=now), "acme", [alice.public], 1, expires=default_expiry(now)
    )
    propose(d, meta, [root], now=now)
    install_root(d, now=now)
    return alice


def publication(key, digest, name="acme/web"):
    namespace, _, short = name.partition("/")
    statement = Statement(
        (Subject.for_digest(name, digest),), PUBLICATION, {"namespace": namespace, "name": short}
    )
    return sign_envelope(INTOTO_PAYLOAD_TYPE, statement.to_bytes(), [key]).to_bytes()


def signed_request(url, digest, statements):
    request, _key, _nonce = keep_request(url, digest=digest)
    return ReleaseRequest(
        request.evidence,
        request.workload_digest,
        request.nonce,
        request.release_key,
        request.secrets,
        tuple(statements),
    )


def test_a_signed_upgrade_keeps_access_and_nothing_else_does(steward, publisher):
    steward.secrets.put(
        "db", b"v", policy=policy('signed = ["acme/web"]\nallow_insecure_sim = true'), actor=ACTOR
    )
    mallory = generate_key()
    with steward_server(steward) as url:
        # Version 1 and a signed upgrade: both released.
        for digest in (DIGEST, OTHER_DIGEST):
            ok = steward.release(
                signed_request(url, digest, [publication(publisher, digest)]).to_bytes(),
                client="keep",
            )
            assert ok.released, ok.reasons
        upgrade = "sha256:" + "ee" * 32
        # An unsigned upgrade: no statement about its digest.
        unsigned = refused(steward, signed_request(url, upgrade, [publication(publisher, DIGEST)]))
        # Another namespace's package, and a signature by a key acme does not delegate.
        other_ns = refused(
            steward, signed_request(url, upgrade, [publication(publisher, upgrade, "evil/web")])
        )
        forged = refused(steward, signed_request(url, upgrade, [publication(mallory, upgrade)]))
    assert "0 of the 1 required publisher signature(s)" in unsigned["reasons"][0]
    assert "(a publication of another digest)" in unsigned["reasons"][0]
    assert "(published as evil/web)" in other_ns["reasons"][0]
    assert forged["reasons"][0].startswith("db: workload: signed acme/web: 0 of the 1")


def test_explain_says_rule_by_rule(steward):
    steward.secrets.put("db", b"v", policy=digest_policy(DIGEST, sim=False), actor=ACTOR)
    raw = SIM.evidence(b"\0" * 64)
    ok = steward.explain("db", evidence=Evidence("sim", raw.raw), workload_digest=DIGEST)
    assert not ok.would_release
    fails = [r.rule for r in ok.rules if r.outcome == "fail"]
    assert fails == ["tee-kind"]
    outcomes = {r.rule: r.outcome for r in ok.rules}
    assert outcomes["workload"] == "pass" and outcomes["binding"] == "skip"
    steward.secrets.set_policy("db", digest_policy(DIGEST), actor=ACTOR)
    assert steward.explain("db", evidence=raw, workload_digest=DIGEST).would_release
    other = steward.explain("db", evidence=raw, workload_digest=OTHER_DIGEST)
    assert [r.rule for r in other.rules if r.outcome == "fail"] == ["workload"]


def test_releases_and_refusals_per_secret_for_the_console(steward):
    value = b"console-canary-" + os.urandom(6).hex().encode()
    store = steward.secrets
    store.put("db", value, policy=digest_policy(DIGEST), actor=ACTOR)
    store.put("token", b"t0k3n", policy=digest_policy(OTHER_DIGEST), actor=ACTOR)
    store.put("idle", b"x", policy=None, actor=ACTOR)
    with steward_server(steward) as url:
        ok, _, _ = keep_request(url, names=("db",))
        both, _, _ = keep_request(url, names=("db", "token"))  # token: another digest
    assert steward.release(ok.to_bytes(), client="keep-1").released
    assert not steward.release(both.to_bytes(), client="keep-2").released
    assert not steward.release(ok.to_bytes(), client="keep-3").released  # a replay
    summary = {s.name: s for s in store.release_summary()}
    assert list(summary) == ["db", "idle", "token"]
    db, token, idle = summary["db"], summary["token"], summary["idle"]
    assert (db.released, db.refused, token.released, token.refused) == (1, 2, 0, 1)
    assert (idle.released, idle.refused, idle.last_released, idle.stored) == (0, 0, None, True)
    assert db.last_released is not None and db.last_refused is not None
    # The latest refusal of db was the replay: the request's own rule, nothing of token's.
    assert len(db.last_refusal) == 1 and db.last_refusal[0].startswith("nonce: ")
    # token's only refusal: its own rule (db's passed in that request).
    assert token.last_refusal == (
        f"token: workload: {DIGEST} is not among digests ({OTHER_DIGEST})",
    )
    rows = store.releases()
    assert [(r.actor, r.decision) for r in rows] == [
        ("keep-3", "refused"),
        ("keep-2", "refused"),
        ("keep-1", "released"),
    ]
    assert [r.actor for r in store.releases(name="token")] == ["keep-2"]
    assert [r.actor for r in store.releases(decision="released")] == ["keep-1"]
    assert [r.actor for r in store.releases(limit=1, before=rows[0].id)] == ["keep-2"]
    # db passed every rule of keep-2's request: refused with it, all or nothing.
    assert rows[1].failed("db") == ["all or nothing: token refused in the same request"]
    assert rows[1].failed() == [token.last_refusal[0]]
    assert rows[2].failed() == []
    # Removed: still listed by its history, marked as no longer stored; never a value.
    store.remove("db", actor=ACTOR)
    assert not {s.name: s for s in store.release_summary()}["db"].stored
    shown = json.dumps([s.to_dict() for s in store.release_summary()])
    shown += json.dumps([r.to_dict() for r in store.releases()])
    assert value.decode() not in shown and "t0k3n" not in shown
