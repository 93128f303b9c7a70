"""Sealed volumes' keys and rollback counters on a real Steward (SQLite and PostgreSQL).

The Keep's side is the library's own (motte.keep's release_volume_keys and a commit over
HTTP to a Steward served in this process): every refusal is shown with its reason and is
audited; the counter moves one transaction per commit and never backwards except by the
operator's audited accept-rollback.
"""

from __future__ import annotations

import hashlib
import secrets

import pytest

from motte.keep._volumes import release_volume_keys
from motte.keep.backends import SimBackend
from motte.sign import generate_key
from motte.steward import (
    CommitRequest,
    ReleasePolicyError,
    SnapshotRef,
    StewardClient,
    VolumeCommitError,
    VolumeCounters,
    VolumeIdentity,
    VolumeRefusedError,
    WantedVolume,
    counter_key,
)
from motte.steward._secrets import rekey_files
from tests.steward.helpers import DIGEST, OTHER_DIGEST, Clock, make_steward
from tests.steward.servers import steward_server
from tests.steward.test_secrets import publication, publisher  # noqa: F401 (a fixture)

pytestmark = pytest.mark.usefixtures("database")

SIM = SimBackend(allow_insecure_sim=True)
BY_DIGEST = VolumeIdentity("digest", DIGEST, "data")
BY_NAME = VolumeIdentity("namespace", "acme/web", "data")


@pytest.fixture
def steward(tmp_path):
    clock = Clock()
    s = make_steward(tmp_path / "steward", clock=clock)
    (s.paths.root / "volumes.toml").write_text("allow_insecure_sim = true\n")
    yield s
    s.close()


def want(identity, snapshot=None):
    return WantedVolume(identity, snapshot)


def release(url, identity=BY_DIGEST, snapshot=None, *, digest=DIGEST, statements=()):
    """(volume key, recorded version) as a Keep gets it."""
    got = release_volume_keys(url, digest, SIM, [want(identity, snapshot)], statements=statements)
    return got[str(identity)]


def commit(url, key, identity, old, new, sid=None, size=100):
    sid = sid or secrets.token_hex(16)
    request = CommitRequest.make(counter_key(key), identity, old, new, sid, size)
    with StewardClient(url) as client:
        return client.volume_commit(request.to_bytes()), sid


def refused(fn, *args, **kw):
    with pytest.raises(VolumeRefusedError) as info:
        fn(*args, **kw)
    return info.value


def test_a_new_volume_gets_a_key_and_its_counter_moves_one_commit_at_a_time(steward):
    with steward_server(steward) as url:
        key, version = release(url)
        assert (len(key), version) == (32, 0)
        latest, sid1 = commit(url, key, BY_DIGEST, 0, 1)
        assert latest == 1
        # The same commit again (an answer lost on the way) is done, not an error.
        with StewardClient(url) as client:
            again = CommitRequest.make(counter_key(key), BY_DIGEST, 0, 1, sid1, 100)
            assert client.volume_commit(again.to_bytes()) == 1
        # Another snapshot 1 (another Keep of the same volume): refused, naming the record.
        with pytest.raises(VolumeCommitError, match="recorded version 1, not 0") as info:
            commit(url, key, BY_DIGEST, 0, 1)
        assert info.value.status == 409
        latest, sid2 = commit(url, key, BY_DIGEST, 1, 2)
        # Opening snapshot 2: the same key, the version recorded.
        assert release(url, snapshot=SnapshotRef(2, sid2)) == (key, 2)
    record = VolumeCounters(steward.store.db).show(str(BY_DIGEST))
    assert (record.latest, record.snapshot_id, record.size) == (2, sid2, 100)
    # The key rests sealed under the master key, never in clear.
    with steward.store.db.read() as tx:
        (sealed,) = tx.one("SELECT sealed_key FROM volume")
    assert key not in bytes(sealed)


def test_a_rolled_back_snapshot_is_refused_naming_both_versions(steward):
    with steward_server(steward) as url:
        key, _ = release(url)
        sids = [commit(url, key, BY_DIGEST, v, v + 1)[1] for v in range(3)]
        e = refused(release, url, snapshot=SnapshotRef(2, sids[1]))
    assert "data: counter: snapshot version 2 is older than version 3" in e.message
    assert "a rolled-back snapshot" in e.message
    (row,) = steward.secrets.audit(name=f"volume:{BY_DIGEST}")[-1:]
    assert (row.action, row.decision) == ("volume-release", "refused")


def test_a_withheld_or_replaced_snapshot_is_refused(steward):
    with steward_server(steward) as url:
        key, _ = release(url)
        _, sid = commit(url, key, BY_DIGEST, 0, 1)
        withheld = refused(release, url)
        other = refused(release, url, snapshot=SnapshotRef(1, secrets.token_hex(16)))
        future = refused(release, url, snapshot=SnapshotRef(5, sid))
    assert "the host offers no snapshot, and the Steward recorded version 1" in withheld.message
    assert "another snapshot of the same version" in other.message
    assert "newer than any the Steward recorded (1)" in future.message


def test_a_snapshot_written_but_not_committed_opens_and_is_recorded(steward):
    """A Keep killed between its snapshot's rename and its commit: the next one opens it."""
    with steward_server(steward) as url:
        key, _ = release(url)
        commit(url, key, BY_DIGEST, 0, 1)
        sid = secrets.token_hex(16)
        assert release(url, snapshot=SnapshotRef(2, sid)) == (key, 2)
        # Recorded: the snapshot before it is now a rollback.
        assert VolumeCounters(steward.store.db).show(str(BY_DIGEST)).latest == 2


def test_another_workload_gets_no_key_of_a_volume_sealed_to_a_digest(steward):
    with steward_server(steward) as url:
        release(url)
        e = refused(release, url, digest=OTHER_DIGEST)
    assert f"data: volume-identity: sealed to {DIGEST}; this Keep runs {OTHER_DIGEST}" in (
        e.message
    )


def test_a_signed_upgrade_opens_a_namespace_volume_and_nothing_else_does(steward, publisher):  # noqa: F811
    upgrade = "sha256:" + hashlib.sha256(b"1.1").hexdigest()
    mallory = generate_key()
    with steward_server(steward) as url:
        key, _ = release(url, BY_NAME, statements=[publication(publisher, DIGEST)])
        key2, _ = release(
            url, BY_NAME, digest=upgrade, statements=[publication(publisher, upgrade)]
        )
        assert key2 == key
        unsigned = refused(
            release, url, BY_NAME, digest=upgrade, statements=[publication(publisher, DIGEST)]
        )
        forged = refused(
            release, url, BY_NAME, digest=upgrade, statements=[publication(mallory, upgrade)]
        )
        other_ns = refused(
            release,
            url,
            VolumeIdentity("namespace", "evil/web", "data"),
            digest=upgrade,
            statements=[publication(publisher, upgrade)],
        )
    assert "volume-identity: signed acme/web: 0 of the 1 required publisher" in unsigned.message
    assert "volume-identity: signed acme/web: 0 of the 1" in forged.message
    assert "signed evil/web: " in other_ns.message


def test_sim_gets_no_volume_key_without_the_volume_policys_consent(steward):
    (steward.paths.root / "volumes.toml").unlink()
    with steward_server(steward) as url:
        e = refused(release, url)
    assert "tee-kind: sim keeps protect nothing" in e.message
    assert VolumeCounters(steward.store.db).list() == []  # nothing made for a refusal


def test_a_malformed_volume_policy_refuses_naming_the_file(steward):
    (steward.paths.root / "volumes.toml").write_text('allowed_kinds = ["sim"]\n')
    with steward_server(steward) as url:
        e = refused(release, url)
    assert "volumes.toml:1: allowed_kinds: sim protects nothing" in e.message


def test_a_commit_without_the_key_is_refused_and_audited(steward):
    with steward_server(steward) as url:
        key, _ = release(url)
        with pytest.raises(VolumeCommitError, match="MAC does not verify") as info:
            commit(url, b"\0" * 32, BY_DIGEST, 0, 1)
        assert info.value.status == 403
        with pytest.raises(VolumeCommitError, match="knows no volume"):
            commit(url, key, VolumeIdentity("digest", OTHER_DIGEST, "data"), 0, 1)
    assert VolumeCounters(steward.store.db).show(str(BY_DIGEST)).latest == 0
    (row,) = steward.secrets.audit(name=f"volume:{BY_DIGEST}")[-1:]
    assert (row.action, row.decision) == ("volume-commit", "refused")


def test_accept_rollback_lets_an_older_snapshot_open_and_is_audited(steward):
    counters = VolumeCounters(steward.store.db)
    with steward_server(steward) as url:
        key, _ = release(url)
        sids = [commit(url, key, BY_DIGEST, v, v + 1)[1] for v in range(3)]
        refused(release, url, snapshot=SnapshotRef(1, sids[0]))
        with pytest.raises(Exception, match="say why"):
            counters.accept_rollback(str(BY_DIGEST), 1, actor="op", reason=" ")
        record = counters.accept_rollback(
            str(BY_DIGEST), 1, actor="op", reason="restored from Monday's backup"
        )
        assert (record.latest, record.snapshot_id) == (1, None)
        assert release(url, snapshot=SnapshotRef(1, sids[0])) == (key, 1)
        # And the counter goes on from there.
        assert commit(url, key, BY_DIGEST, 1, 2)[0] == 2
    row = next(
        r
        for r in steward.secrets.audit(name=f"volume:{BY_DIGEST}")
        if r.action == "volume-accept-rollback"
    )
    assert row.actor == "op" and row.reason == (
        "version 3 -> 1 accepted: restored from Monday's backup"
    )


def test_rekey_reseals_the_volume_keys_in_the_same_transaction(steward):
    with steward_server(steward) as url:
        key, _ = release(url)
        _, sid = commit(url, key, BY_DIGEST, 0, 1)
        rekey_files(steward.secrets, actor="op")
        steward.secrets._key = None  # read the new key file, as a restarted Steward does
        assert release(url, snapshot=SnapshotRef(1, sid)) == (key, 1)
    assert "1 volume key(s) re-sealed" in steward.secrets.audit()[-2].reason


def test_volume_policy_errors_are_release_policy_errors(steward):
    from motte.steward._volumes import load_volume_policy

    (steward.paths.root / "volumes.toml").write_text('allowed_kinds = ["gpu"]\n')
    with pytest.raises(ReleasePolicyError, match="'gpu' is not one of"):
        load_volume_policy(steward.paths.root)
