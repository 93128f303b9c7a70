"""The recipe's contract: a Verdict for any bytes, an exception only for caller misuse."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from motte.attest import (
    KINDS,
    Evidence,
    EvidenceParseError,
    bind_report_data,
    detect_kind,
    expected_report_data,
    parse_evidence,
    verify_evidence,
)
from motte.attest._evidence import MAX_EVIDENCE_BYTES
from motte.errors import UsageError
from tests.attest.fakes import base_report
from tests.conftest import shared_testdata

DIGEST = "sha256:" + "ab" * 32


def sample(*parts: str) -> bytes:
    return shared_testdata("attestation", *parts).read_bytes()


def test_misuse_raises() -> None:
    with pytest.raises(UsageError, match="timezone-aware"):
        verify_evidence(b"x", now=datetime(2025, 1, 1))
    with pytest.raises(UsageError, match="unknown kind 'kvm'"):
        verify_evidence(b"x", kind="kvm")
    with pytest.raises(UsageError, match="at most 64 bytes"):
        verify_evidence(b"x", report_data=bytes(65))
    with pytest.raises(UsageError, match="must be bytes"):
        verify_evidence("text")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        parse_evidence(b"x", kind="nope")


@pytest.mark.parametrize(
    ("parts", "kind"),
    [
        (("trustee", "snp", "test-report.bin"), "snp"),
        (("dcap-qvl", "tdx_quote"), "tdx"),
        (("dcap-qvl", "tdx_quote_outdated"), "tdx"),
        (("dcap-qvl", "sgx_quote"), "sgx"),
        (("trustee", "occlum_quote.dat"), "sgx"),
        (("enarx-steward", "milan.signed.crl.csr"), "enarx"),
    ],
)
def test_detect_kind(parts: tuple[str, ...], kind: str) -> None:
    assert detect_kind(sample(*parts)) == kind


def test_hex_encoded_evidence_is_accepted() -> None:
    hex_report = sample("virtee-sev", "report_milan.hex")
    assert parse_evidence(hex_report).value.version == 2
    spaced = b"\n".join(hex_report[i : i + 64] for i in range(0, len(hex_report), 64))
    assert parse_evidence(spaced).kind == "snp"


def test_unknown_bytes_are_a_parse_rejection() -> None:
    v = verify_evidence(b"\x99" * 100)
    assert not v.accepted and v.kind is None
    assert v.failures[0].stage == "parse"
    assert "(name the kind with --kind" in v.failures[0].reason
    with pytest.raises(EvidenceParseError) as e:
        detect_kind(b"\x99" * 100)
    assert e.value.hint is not None and "--kind" in e.value.hint


def test_oversized_evidence_is_refused_before_parsing() -> None:
    v = verify_evidence(b"\x02\0\0\0" + bytes(MAX_EVIDENCE_BYTES))
    assert v.failures[0].rule == "parse" and "limit" in v.failures[0].reason


def test_truncated_report_names_length() -> None:
    v = verify_evidence(sample("trustee", "snp", "test-report.bin")[:1000])
    assert (
        v.reason
        == "parse: SNP report: length at offset 0x3e8: 1000 bytes, a report is 1184 (0x4a0)"
    )


def test_wrong_kind_forced() -> None:
    v = verify_evidence(sample("trustee", "snp", "test-report.bin"), kind="sim")
    assert not v.accepted and v.failures[0].rule == "parse"


def test_verdict_is_json_and_names_the_policy() -> None:
    v = verify_evidence(
        sample("trustee", "snp", "test-report.bin"),
        certs=[sample("trustee", "snp", "test-vcek.der")],
        now=datetime(2025, 6, 1, tzinfo=UTC),
    )
    d = json.loads(json.dumps(v.to_dict()))
    assert d["verdict"] == "accepted" and d["reason"] is None
    assert d["policy"] == {"name": "default", "source": "built-in default policy", "sha256": None}
    assert d["verified_at"] == "2025-06-01T00:00:00+00:00"
    assert d["claims"]["key"]["product_name"] == "Milan-B0"
    assert {r["stage"] for r in d["rules"]} == {"parse", "verify", "policy"}
    assert d["format_version"] == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=6000), kind=st.sampled_from([None, *KINDS]))
def test_any_bytes_give_a_rejected_verdict_never_an_exception(
    data: bytes, kind: str | None
) -> None:
    v = verify_evidence(data, kind=kind, now=datetime(2025, 1, 1, tzinfo=UTC))
    assert not v.accepted
    assert v.failures


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=1183), st.integers(min_value=1, max_value=255))
def test_corrupted_real_report_never_raises(offset: int, xor: int) -> None:
    raw = bytearray(sample("trustee", "snp", "test-report.bin"))
    raw[offset] ^= xor
    v = verify_evidence(bytes(raw), certs=[sample("trustee", "snp", "test-vcek.der")])
    assert not v.accepted


def test_parse_evidence_errors_are_parse_errors() -> None:
    with pytest.raises(EvidenceParseError):
        parse_evidence(base_report().to_bytes()[:-1])
    with pytest.raises(EvidenceParseError, match="too large"):
        parse_evidence(bytes(MAX_EVIDENCE_BYTES + 1))


def test_evidence_value_type() -> None:
    ev = Evidence("sim", b"MOTTE-SIM-INSECURE")
    assert Evidence.from_dict(json.loads(json.dumps(ev.to_dict()))) == ev
    with pytest.raises(ValueError):
        Evidence("kvm", b"")
    for bad in (
        {"kind": "snp"},
        {"kind": "x", "raw": ""},
        {"kind": "snp", "raw": "!"},
        [],
        {"kind": "snp", "raw": "", "x": 1},
    ):
        with pytest.raises(EvidenceParseError):
            Evidence.from_dict(bad)


# REPORT_DATA binding ---------------------------------------------------------------------


def test_bind_report_data() -> None:
    key = ec.generate_private_key(ec.SECP384R1()).public_key()
    nonce = bytes(range(32))
    rd = bind_report_data(key, DIGEST, nonce)
    assert len(rd) == 64
    from cryptography.hazmat.primitives import serialization

    spki = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert bind_report_data(spki, DIGEST, nonce) == rd
    assert bind_report_data(spki, "sha256:" + "cd" * 32, nonce) != rd
    assert bind_report_data(spki, DIGEST, bytes(range(1, 33))) != rd
    other = ec.generate_private_key(ec.SECP384R1()).public_key()
    assert bind_report_data(other, DIGEST, nonce) != rd


def test_bind_report_data_is_a_stable_definition() -> None:
    """Keep and Steward must agree forever: the documented encoding, rebuilt here by hand,
    and a known answer (changing either is a protocol change, v2 of the domain tag)."""
    import hashlib

    spki = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d03010703420004") + bytes(64)
    h = hashlib.sha512(b"motte/report-data/v1\x00")
    for part in (spki, DIGEST.encode(), bytes(16)):
        h.update(len(part).to_bytes(4, "big") + part)
    got = bind_report_data(spki, DIGEST, bytes(16))
    assert got == h.digest()
    assert got.hex().startswith("60969c694635789d4e5b008bb70eb45b")


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((b"\x01", DIGEST, bytes(16)), "SubjectPublicKeyInfo"),
        ((b"\x30\x00", "sha256:xyz", bytes(16)), "workload_digest"),
        ((b"\x30\x00", DIGEST, bytes(15)), "nonce must be 16 to 64"),
        ((b"\x30\x00", DIGEST, bytes(65)), "nonce must be 16 to 64"),
    ],
)
def test_bind_report_data_rejects_misuse(args: tuple, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        bind_report_data(*args)


def test_expected_report_data_pads() -> None:
    assert expected_report_data(b"\x01") == b"\x01" + bytes(63)
    with pytest.raises(ValueError):
        expected_report_data(bytes(65))
