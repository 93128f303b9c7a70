"""SEV-SNP report parsing: layout, versions, must-be-zero ranges, exact round trips."""

from __future__ import annotations

import struct
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from motte.attest import EvidenceParseError
from motte.attest.snp import (
    REPORT_SIZE,
    Report,
    decode_tcb,
    encode_tcb,
    product_from_cpuid,
)
from tests.attest.fakes import base_report
from tests.conftest import shared_testdata

SAMPLES = [
    ("trustee", "snp", "test-report.bin"),
    ("trustee", "snp", "test-vlek-report.bin"),
]


def sample(*parts: str) -> bytes:
    return shared_testdata("attestation", *parts).read_bytes()


def virtee_report() -> bytes:
    return bytes.fromhex(sample("virtee-sev", "report_milan.hex").decode())


@pytest.mark.parametrize("parts", SAMPLES, ids=lambda p: p[-1])
def test_samples_round_trip_exactly(parts: tuple[str, ...]) -> None:
    raw = sample(*parts)
    assert Report.from_bytes(raw).to_bytes() == raw


def test_virtee_sample_fields() -> None:
    r = Report.from_bytes(virtee_report())
    assert r.version == 2
    assert r.cpuid_fam_id is None and r.launch_mit_vector is None
    assert r.signing_key == "vcek"
    assert r.reported_tcb == 0x7308000000000003
    assert decode_tcb(r.reported_tcb, "milan-genoa") == {
        "bootloader": 3,
        "tee": 0,
        "snp": 8,
        "microcode": 0x73,
    }
    assert r.guest_policy.smt and not r.guest_policy.debug and not r.guest_policy.migrate_ma
    assert r.to_bytes() == virtee_report()


def test_vlek_sample_is_v3_with_cpuid_and_vlek_signer() -> None:
    r = Report.from_bytes(sample("trustee", "snp", "test-vlek-report.bin"))
    assert (r.version, r.cpuid_fam_id, r.cpuid_mod_id, r.cpuid_step) == (3, 0x19, 0x01, 0x01)
    assert r.product == "Milan"
    assert r.signing_key == "vlek"
    assert r.vmpl == 1


@pytest.mark.parametrize("version", [2, 3, 4, 5])
def test_synthetic_versions_round_trip(version: int) -> None:
    fields = {"launch_mit_vector": 0x1234, "current_mit_vector": 0x5678} if version >= 5 else {}
    r = base_report(version, **fields)
    raw = r.to_bytes()
    assert len(raw) == REPORT_SIZE
    back = Report.from_bytes(raw)
    assert back == r
    if version >= 5:
        assert struct.unpack_from("<QQ", raw, 0x1F8) == (0x1234, 0x5678)


def test_v5_mitigation_vectors_are_zero_region_in_v3() -> None:
    raw = bytearray(base_report(3).to_bytes())
    raw[0x1F8] = 1
    with pytest.raises(EvidenceParseError) as e:
        Report.from_bytes(bytes(raw))
    assert e.value.offset == 0x1F8
    assert "reserved after LAUNCH_TCB" in str(e.value)


# (version, offset, range name) for a byte inside each reserved range
RESERVED = [
    (2, 0x04C, "reserved after SIGNER_INFO"),
    (2, 0x188, "reserved after REPORTED_TCB"),
    (3, 0x18B, "reserved after CPUID"),
    (3, 0x19F, "reserved after CPUID"),
    (2, 0x1EB, "reserved after CURRENT_MAJOR"),
    (2, 0x1EF, "reserved after COMMITTED_MAJOR"),
    (2, 0x29F, "reserved after LAUNCH_TCB"),
    (5, 0x208, "reserved after CURRENT_MIT_VECTOR"),
    (5, 0x29F, "reserved after CURRENT_MIT_VECTOR"),
    (2, 0x330, "reserved in SIGNATURE"),
    (2, 0x49F, "reserved in SIGNATURE"),
]


@pytest.mark.parametrize(("version", "offset", "name"), RESERVED)
def test_reserved_bytes_must_be_zero(version: int, offset: int, name: str) -> None:
    raw = bytearray(base_report(version).to_bytes())
    raw[offset] = 0x01
    with pytest.raises(EvidenceParseError) as e:
        Report.from_bytes(bytes(raw))
    assert e.value.field == name
    assert e.value.offset == offset
    assert f"at offset {offset:#x}" in e.value.message


def test_policy_reserved_bit_17_must_be_one() -> None:
    raw = base_report(policy=0x1F).to_bytes()
    with pytest.raises(EvidenceParseError, match="bit 17 is reserved and must be one"):
        Report.from_bytes(raw)


def test_policy_high_bits_must_be_zero() -> None:
    with pytest.raises(EvidenceParseError, match="reserved bits 26-63"):
        Report.from_bytes(base_report(policy=0x30000 | 1 << 40).to_bytes())


def test_signer_info_reserved_bits_and_values() -> None:
    with pytest.raises(EvidenceParseError, match="SIGNER_INFO"):
        Report.from_bytes(base_report(signer_info=1 << 5).to_bytes())
    with pytest.raises(EvidenceParseError, match=r"SIGNING_KEY.*3 is a reserved value"):
        Report.from_bytes(base_report(signer_info=3 << 2).to_bytes())
    assert Report.from_bytes(base_report(signer_info=7 << 2).to_bytes()).signing_key == "none"


@pytest.mark.parametrize("version", [0, 1, 6, 0xFFFFFFFF])
def test_unsupported_versions(version: int) -> None:
    raw = bytearray(base_report(2).to_bytes())
    struct.pack_into("<I", raw, 0, version)
    with pytest.raises(EvidenceParseError) as e:
        Report.from_bytes(bytes(raw))
    assert e.value.field == "VERSION" and e.value.offset == 0


def test_truncated_and_oversized() -> None:
    raw = base_report().to_bytes()
    for n in (0, 1, 0x2A0, REPORT_SIZE - 1):
        with pytest.raises(EvidenceParseError, match=f"{n} bytes, a report is 1184"):
            Report.from_bytes(raw[:n])
    with pytest.raises(EvidenceParseError, match="3 trailing bytes") as e:
        Report.from_bytes(raw + b"\0\0\0")
    assert e.value.offset == REPORT_SIZE


def test_to_bytes_checks_field_sizes() -> None:
    with pytest.raises(ValueError, match="measurement must be 48 bytes"):
        replace(base_report(), measurement=b"short").to_bytes()


def test_tcb_layouts() -> None:
    parts = {"bootloader": 1, "tee": 2, "snp": 3, "microcode": 4}
    assert encode_tcb(parts, "milan-genoa") == 0x0403000000000201
    turin = {"fmc": 9, **parts}
    assert encode_tcb(turin, "turin") == 0x0400000003020109
    assert decode_tcb(encode_tcb(turin, "turin"), "turin") == turin


@pytest.mark.parametrize(
    ("family", "model", "product"),
    [(0x19, 0x01, "Milan"), (0x19, 0x11, "Genoa"), (0x19, 0xA0, "Genoa"), (0x1A, 0x02, "Turin"),
     (0x17, 0x31, None), (0x19, 0x50, None)],
)  # fmt: skip
def test_product_from_cpuid(family: int, model: int, product: str | None) -> None:
    assert product_from_cpuid(family, model) == product


def test_to_dict_shows_decoded_fields() -> None:
    d = Report.from_bytes(sample("trustee", "snp", "test-report.bin")).to_dict(product="Milan")
    assert d["reported_tcb"] == "0x7308000000000003"
    assert d["reported_tcb_decoded"]["microcode"] == 0x73
    assert d["policy_decoded"]["smt"] is True
    assert d["signing_key"] == "vcek"


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=0, max_size=2 * REPORT_SIZE))
def test_arbitrary_bytes_raise_only_parse_errors(data: bytes) -> None:
    try:
        r = Report.from_bytes(data)
    except EvidenceParseError:
        return
    assert r.to_bytes() == data


@settings(max_examples=200)
@given(
    version=st.sampled_from([2, 3, 5]),
    body=st.binary(min_size=REPORT_SIZE, max_size=REPORT_SIZE),
)
def test_mutated_valid_reports_parse_or_fail_cleanly(version: int, body: bytes) -> None:
    """Random bytes with a valid header: parse errors only, and any success round-trips."""
    raw = bytearray(body)
    struct.pack_into("<I", raw, 0, version)
    struct.pack_into("<Q", raw, 8, 0x30000)
    struct.pack_into("<I", raw, 0x48, 0)
    try:
        r = Report.from_bytes(bytes(raw))
    except EvidenceParseError as e:
        assert e.offset is not None
        return
    assert r.to_bytes() == bytes(raw)
