"""sim evidence: says it is insecure, refused by default, accepted only when a policy says so."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from motte.attest import (
    AttestError,
    EvidenceParseError,
    EvidenceVerificationError,
    detect_kind,
    parse_evidence,
    parse_policy,
    verify_evidence,
)
from motte.attest.sim import (
    SIM_EVIDENCE_SIZE,
    SimEvidence,
    load_or_create_sim_key,
    sign_sim_evidence,
    sim_key_path,
    verify_sim_evidence,
)

RD = bytes(range(64))
MEAS = bytes([0x5A]) * 48


def pub(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def test_format_says_insecure_in_band(key: Ed25519PrivateKey) -> None:
    raw = sign_sim_evidence(RD, MEAS, key)
    assert raw.startswith(b"MOTTE-SIM-INSECURE")
    assert len(raw) == SIM_EVIDENCE_SIZE
    ev = SimEvidence.from_bytes(raw)
    assert (ev.report_data, ev.measurement, ev.signer_key) == (RD, MEAS, pub(key))
    assert ev.to_bytes() == raw
    assert ev.to_dict()["insecure"] is True
    assert detect_kind(raw) == "sim"
    assert parse_evidence(raw).kind == "sim"


def test_default_policy_refuses_sim(key: Ed25519PrivateKey) -> None:
    v = verify_evidence(sign_sim_evidence(RD, MEAS, key))
    assert not v.accepted
    assert v.kind == "sim" and v.claims_verified
    assert v.reason is not None and v.reason.startswith("kind: sim evidence comes from an INSECURE")


def test_allow_insecure_sim_accepts(key: Ed25519PrivateKey) -> None:
    v = verify_evidence(
        sign_sim_evidence(RD, MEAS, key),
        policy=parse_policy("allow_insecure_sim = true"),
        report_data=RD,
    )
    assert v.accepted, v.reason
    assert v.measurement == MEAS.hex()
    assert {r.rule: r.outcome for r in v.rules}["report-data"] == "pass"


def test_policy_pins_keys_and_measurements(key: Ed25519PrivateKey) -> None:
    raw = sign_sim_evidence(RD, MEAS, key)
    other = Ed25519PrivateKey.generate()
    pinned_other = parse_policy(f'allow_insecure_sim = true\n[sim]\nkeys = ["{pub(other).hex()}"]')
    v = verify_evidence(raw, policy=pinned_other)
    assert v.reason is not None and v.reason.startswith("sim-key: SIGNER_KEY: got")
    pinned = parse_policy(
        f'allow_insecure_sim = true\n[sim]\nkeys = ["{pub(key).hex()}"]\n'
        f'measurements = ["{"00" * 48}"]'
    )
    v = verify_evidence(raw, policy=pinned)
    assert [r.rule for r in v.failures] == ["measurement"]


def test_tampering_breaks_the_signature(key: Ed25519PrivateKey) -> None:
    raw = bytearray(sign_sim_evidence(RD, MEAS, key))
    for off in (0x18, 0x58, 0x88, 0xA8, 0xE7):
        bad = bytearray(raw)
        bad[off] ^= 1
        v = verify_evidence(bytes(bad), policy=parse_policy("allow_insecure_sim = true"))
        assert not v.accepted
        assert v.failures[0].rule == "sim-signature"
    with pytest.raises(EvidenceVerificationError):
        verify_sim_evidence(SimEvidence.from_bytes(bytes(bad)))


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b[:100], "length"),
        (lambda b: b + b"\0", "length"),
        (lambda b: b[:18] + b"\x02\x00" + b[20:], "VERSION"),
        (lambda b: b[:20] + b"\x01" + b[21:], "reserved"),
        (lambda b: b"MOTTE-SIM-INSECUR!" + b[18:], "MAGIC"),
    ],
)
def test_malformed(key: Ed25519PrivateKey, mutate, field: str) -> None:
    raw = sign_sim_evidence(RD, MEAS, key)
    with pytest.raises(EvidenceParseError) as e:
        SimEvidence.from_bytes(mutate(raw))
    assert e.value.field == field


def test_sign_checks_sizes(key: Ed25519PrivateKey) -> None:
    with pytest.raises(ValueError, match="report_data must be 64"):
        sign_sim_evidence(b"x", MEAS, key)
    with pytest.raises(ValueError, match="SHA-384"):
        sign_sim_evidence(RD, b"x" * 32, key)


def test_installation_key_is_created_once_and_private(motte_home: Path) -> None:
    k1 = load_or_create_sim_key()
    path = sim_key_path()
    assert path.is_relative_to(motte_home / "keys")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    k2 = load_or_create_sim_key()
    assert pub(k1) == pub(k2)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left


def test_corrupt_installation_key(motte_home: Path) -> None:
    path = sim_key_path()
    path.write_bytes(b"not a key")
    with pytest.raises(AttestError, match="cannot load the sim keep key"):
        load_or_create_sim_key()


@given(st.binary(max_size=300))
def test_arbitrary_bytes_after_magic_raise_only_parse_errors(tail: bytes) -> None:
    data = b"MOTTE-SIM-INSECURE" + tail
    try:
        ev = SimEvidence.from_bytes(data)
    except EvidenceParseError:
        return
    assert ev.to_bytes() == data
