"""The CA (its certificate, its constraints, its files) and the Steward's database."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from motte.steward import SanPattern, Steward, StewardConfigError, init_steward
from motte.steward._ca import StewardCa
from motte.steward._store import NonceRefused, StewardStore
from motte.steward.errors import StewardNotInitialisedError
from motte.store import StoreError, resolve_database

NOW = datetime(2025, 6, 1, tzinfo=UTC)

# Every case on the embedded SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("database")


def open_store(tmp_path) -> StewardStore:
    """The store a Steward in ``tmp_path`` would use (MOTTE_DB when the case sets it)."""
    return StewardStore(resolve_database(None, default=tmp_path / "db"))


def patterns(*names: str) -> list[SanPattern]:
    return [SanPattern.parse(n) for n in names]


def test_the_ca_can_sign_only_leaves_and_only_allowed_names():
    ca = StewardCa.create(patterns("keep.example.com", "*.keeps.example.com", "10.0.0.7"), now=NOW)
    ext = ca.cert.extensions
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and not ku.value.digital_signature
    nc = ext.get_extension_for_class(x509.NameConstraints)
    assert nc.critical
    assert {str(s.value) for s in nc.value.permitted_subtrees} == {
        "keep.example.com",
        "keeps.example.com",
        "10.0.0.7/32",
    }
    assert isinstance(ca.key.curve, ec.SECP384R1)
    assert ca.permits(SanPattern.parse("a.keeps.example.com"))
    assert not ca.permits(SanPattern.parse("evil.example.com"))
    assert not ca.permits(SanPattern.parse("10.0.0.8"))


def test_issued_leaves_are_end_entity_server_and_client_certificates():
    from cryptography.x509.oid import ExtendedKeyUsageOID

    ca = StewardCa.create(patterns("localhost"), now=NOW)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = ca.issue(key.public_key(), [x509.DNSName("localhost")], [], lifetime=600, now=NOW)
    ext = cert.extensions
    assert not ext.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ext.get_extension_for_class(x509.KeyUsage).value.digital_signature
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
    ]
    assert (cert.not_valid_after_utc - NOW).total_seconds() == 600
    cert.verify_directly_issued_by(ca.cert)


def test_init_writes_everything_and_never_overwrites(tmp_path, database):
    paths = init_steward(root=tmp_path / "s", now=NOW)
    assert (paths.ca_key.stat().st_mode & 0o777) == 0o600
    assert (paths.root.stat().st_mode & 0o777) == 0o700
    for p in (paths.ca_cert, paths.config, paths.policy):
        assert p.is_file(), p
    # The database is the Steward's own file, or the shared one config.toml records.
    assert paths.database.is_file() == (database == "sqlite")
    assert ("database = " in paths.config.read_text()) == (database == "postgresql")
    with pytest.raises(StewardConfigError, match="already exists"):
        init_steward(root=tmp_path / "s")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".s.")]  # no staging left


def test_the_default_policy_refuses_sim_and_the_dev_one_pins_this_installation(
    tmp_path, monkeypatch
):
    from motte.attest import load_policy
    from motte.attest.sim import load_or_create_sim_key

    monkeypatch.delenv("MOTTE_DB", raising=False)  # two Stewards: each its own SQLite
    default = load_policy(init_steward(root=tmp_path / "a").policy)
    assert not default.allow_insecure_sim and default.name == "steward-default"
    dev_paths = init_steward(root=tmp_path / "b", allow_insecure_sim=True)
    dev = load_policy(dev_paths.policy)
    assert dev.allow_insecure_sim
    from cryptography.hazmat.primitives import serialization

    mine = (
        load_or_create_sim_key()
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    assert dev.sim.keys == (mine,)
    assert "INSECURE" in dev_paths.policy.read_text()


def test_a_readable_ca_key_is_refused(tmp_path):
    paths = init_steward(root=tmp_path / "s")
    paths.ca_key.chmod(0o644)
    with pytest.raises(StewardConfigError, match="lets others read the CA key"):
        Steward(paths.root)


def test_san_allow_may_not_widen_past_the_ca(tmp_path):
    paths = init_steward(root=tmp_path / "s", san_allow=["localhost"])
    text = paths.config.read_text().replace('san_allow = ["localhost"]', 'san_allow = ["x.org"]')
    paths.config.write_text(text)
    with pytest.raises(StewardConfigError, match="outside the CA's name constraints"):
        Steward(paths.root)


def test_no_steward_yet(tmp_path):
    with pytest.raises(StewardNotInitialisedError, match="no Steward here") as e:
        Steward(tmp_path / "nothing")
    assert "motte steward init" in (e.value.hint or "")


# -- the database ---------------------------------------------------------------------------


def test_a_nonce_is_used_once_even_under_a_race(tmp_path):
    store = open_store(tmp_path)
    nonce = b"\x01" * 32
    store.issue_nonce(nonce, now=1000.0, lifetime=60)
    wins, losses = [], []
    barrier = threading.Barrier(8)

    def consume() -> None:
        barrier.wait()
        try:
            store.consume_nonce(nonce, now=1001.0)
            wins.append(1)
        except NonceRefused as e:
            losses.append(e.reason)

    threads = [threading.Thread(target=consume) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(losses) == 7
    assert all("already used" in r for r in losses)
    store.close()


def test_two_stores_racing_for_one_nonce_let_exactly_one_win(tmp_path):
    """Two stores on one database, as two Steward replicas: each of many nonces is
    redeemed by exactly one of the two, whatever the interleaving."""
    stores = [open_store(tmp_path), open_store(tmp_path)]
    nonces = [bytes([i]) * 32 for i in range(1, 21)]
    for n in nonces:
        stores[0].issue_nonce(n, now=1000.0, lifetime=60)
    wins: dict[bytes, int] = {}
    barrier = threading.Barrier(2)
    lock = threading.Lock()

    def redeem(store) -> None:
        barrier.wait()
        for n in nonces:
            with store.decision() as record:  # as the Steward records a decision
                reason = record.consume_nonce(n, now=1001.0)
                decision = "accepted" if reason is None else "rejected"
                record.append_audit({"time": "t", "client": "c", "decision": decision})
            if reason is None:
                with lock:
                    wins[n] = wins.get(n, 0) + 1
            else:
                assert "already used" in reason

    threads = [threading.Thread(target=redeem, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert wins == dict.fromkeys(nonces, 1)
    assert stores[1].counts() == {"used_nonces": 20, "consuming_rows": 20, "audit_rows": 40}
    for s in stores:
        s.close()


def test_expired_nonces_are_explained_then_forgotten(tmp_path):
    store = open_store(tmp_path)
    store.issue_nonce(b"\x02" * 32, now=1000.0, lifetime=60)
    with pytest.raises(NonceRefused, match="expired"):
        store.consume_nonce(b"\x02" * 32, now=1061.0)
    store.issue_nonce(b"\x03" * 32, now=1000.0 + 2 * 86400, lifetime=60)  # prunes old rows
    with pytest.raises(NonceRefused, match="unknown"):
        store.consume_nonce(b"\x02" * 32, now=1000.0 + 2 * 86400)
    store.close()


def test_the_audit_log_is_append_only(tmp_path):
    store = open_store(tmp_path)
    row_id = store.append_audit(
        {"time": "t", "client": "c", "decision": "rejected", "sans": [], "rules": []}
    )
    # Even SQL that goes around the store's methods cannot rewrite it.
    with pytest.raises(StoreError, match="append-only"), store.db.write() as tx:
        tx.execute("UPDATE audit SET decision = 'accepted' WHERE id = ?", (row_id,))
    with pytest.raises(StoreError, match="append-only"), store.db.write() as tx:
        tx.execute("DELETE FROM audit")
    assert [r.decision for r in store.audit()] == ["rejected"]
    store.close()


def test_a_serial_is_never_recorded_twice(tmp_path):
    from motte.store import ConstraintError

    store = open_store(tmp_path)
    row = {"time": "t", "client": "c", "decision": "accepted", "sans": [], "rules": []}
    store.append_audit(row | {"serial": "5be1"})
    with pytest.raises(ConstraintError):
        store.append_audit(row | {"serial": "5be1"})
    assert [r.serial for r in store.audit()] == ["5be1"]
    store.close()


def test_a_database_belongs_to_one_ca(tmp_path, monkeypatch, database):
    """A second init for the database is refused; a replica with another CA will not serve."""
    paths = init_steward(root=tmp_path / "a", now=NOW)
    with Steward(paths.root) as steward:
        assert steward.store.ca()[0] == steward.ca.fingerprint
    other = StewardCa.create(patterns("localhost", "127.0.0.1", "::1"), now=NOW)
    if database == "postgresql":
        with pytest.raises(StewardConfigError, match="already belongs to a Steward") as e:
            init_steward(root=tmp_path / "b", now=NOW)
        assert "copy that Steward's directory" in (e.value.hint or "")
        assert not (tmp_path / "b").exists()
    other.save(paths)  # this directory's CA replaced: no longer the database's
    with pytest.raises(StewardConfigError, match="belongs to the Steward whose CA is"):
        Steward(paths.root)


def test_outstanding_nonces_are_bounded(tmp_path, monkeypatch):
    from motte.steward import _store
    from motte.steward._store import TooManyNonces

    monkeypatch.setattr(_store, "MAX_OUTSTANDING", 3)
    store = open_store(tmp_path)
    for i in range(3):
        store.issue_nonce(bytes([i + 1]) * 32, now=1000.0, lifetime=60)
    with pytest.raises(TooManyNonces):
        store.issue_nonce(b"\x09" * 32, now=1000.0, lifetime=60)
    store.consume_nonce(b"\x01" * 32, now=1001.0)  # used: no longer outstanding
    store.issue_nonce(b"\x09" * 32, now=1001.0, lifetime=60)
    store.issue_nonce(b"\x0a" * 32, now=1070.0, lifetime=60)  # the others expired
    store.close()
