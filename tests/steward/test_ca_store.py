"""The CA (its certificate, its constraints, its files) and the Steward's database."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from motte.steward import SanPattern, Steward, StewardConfigError, init_steward
from motte.steward._ca import StewardCa
from motte.steward._store import NonceRefused, StewardStore
from motte.steward.errors import StewardNotInitialisedError

NOW = datetime(2025, 6, 1, tzinfo=UTC)


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


def test_init_writes_everything_and_never_overwrites(tmp_path):
    paths = init_steward(root=tmp_path / "s", now=NOW)
    assert (paths.ca_key.stat().st_mode & 0o777) == 0o600
    assert (paths.root.stat().st_mode & 0o777) == 0o700
    for p in (paths.ca_cert, paths.config, paths.policy, paths.database):
        assert p.is_file(), p
    with pytest.raises(StewardConfigError, match="already exists"):
        init_steward(root=tmp_path / "s")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".s.")]  # no staging left


def test_the_default_policy_refuses_sim_and_the_dev_one_pins_this_installation(tmp_path):
    from motte.attest import load_policy
    from motte.attest.sim import load_or_create_sim_key

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
    store = StewardStore(tmp_path / "db")
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


def test_expired_nonces_are_explained_then_forgotten(tmp_path):
    store = StewardStore(tmp_path / "db")
    store.issue_nonce(b"\x02" * 32, now=1000.0, lifetime=60)
    with pytest.raises(NonceRefused, match="expired"):
        store.consume_nonce(b"\x02" * 32, now=1061.0)
    store.issue_nonce(b"\x03" * 32, now=1000.0 + 2 * 86400, lifetime=60)  # prunes old rows
    with pytest.raises(NonceRefused, match="unknown"):
        store.consume_nonce(b"\x02" * 32, now=1000.0 + 2 * 86400)


def test_the_audit_log_is_append_only(tmp_path):
    store = StewardStore(tmp_path / "db")
    row_id = store.append_audit(
        {"time": "t", "client": "c", "decision": "rejected", "sans": [], "rules": []}
    )
    db = sqlite3.connect(tmp_path / "db")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("UPDATE audit SET decision = 'accepted' WHERE id = ?", (row_id,))
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        db.execute("DELETE FROM audit")
    assert [r.decision for r in store.audit()] == ["rejected"]
