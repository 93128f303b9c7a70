"""parse_quote on the public Intel samples: fields at their offsets, exact inverse, bad input."""

from __future__ import annotations

import contextlib
import hashlib
import struct
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from motte.attest.errors import EvidenceParseError
from motte.attest.intel import EnclaveReport, TdReport, parse_pck_extensions, parse_quote
from tests.conftest import shared_testdata

SAMPLES = {
    # name: (path, tee, version, body type, size, fmspc)
    "dcap-qvl tdx_quote": (("dcap-qvl", "tdx_quote"), "tdx", 4, 2, 5006, "b0c06f000000"),
    "dcap-qvl sgx_quote": (("dcap-qvl", "sgx_quote"), "sgx", 3, 1, 4600, "00a067110000"),
    "dcap-qvl tdx_quote_outdated": (
        ("dcap-qvl", "tdx_quote_outdated"),
        "tdx",
        5,
        3,
        5006,
        "90c06f000000",
    ),
    "trustee tdx_quote_4": (("trustee", "tdx_quote_4.dat"), "tdx", 4, 2, 4936, "50806f000000"),
    "trustee tdx_quote_5": (("trustee", "tdx_quote_5.dat"), "tdx", 5, 3, 5006, "90c06f000000"),
    "trustee tdx_quote_6": (("trustee", "tdx_quote_6.dat"), "tdx", 4, 2, 5006, "00a06d080000"),
    "trustee occlum_quote": (("trustee", "occlum_quote.dat"), "sgx", 3, 1, 4733, "00606a000000"),
}


def read(*parts: str) -> bytes:
    return shared_testdata("attestation", *parts).read_bytes()


@pytest.mark.parametrize("name", SAMPLES)
def test_parse_sample(name: str) -> None:
    path, tee, version, body_type, size, fmspc = SAMPLES[name]
    raw = read(*path)
    assert len(raw) == size
    q = parse_quote(raw)
    assert (q.tee, q.version, q.body_type) == (tee, version, body_type)
    assert q.header.attestation_key_type == 2
    assert q.header.qe_vendor_id.hex() == "939a7233f79c4ca9940a0db3957f0607"
    # Type 5 innermost: PCK, PCK CA, Root CA, each a DER SEQUENCE.
    assert q.certification_data_type == 5
    assert len(q.pck_chain) == 3 and all(c[:1] == b"\x30" for c in q.pck_chain)
    assert parse_pck_extensions(q.pck_chain[0]).fmspc.hex() == fmspc
    # The QE binds the attestation key: a structural fact of every real quote.
    bound = hashlib.sha256(q.attestation_key + q.qe_auth_data).digest()
    assert q.qe_report.report_data == bound + bytes(32)
    # Exact inverse, padding included.
    assert q.to_bytes() == raw
    assert q.to_dict()["tee"] == tee


def test_tdx_v4_fields_at_their_offsets() -> None:
    raw = read("dcap-qvl", "tdx_quote")
    q = parse_quote(raw)
    body = q.body
    assert isinstance(body, TdReport)
    # TD report body at 0x30: TEE_TCB_SVN @0, MRSEAM @0x10, ... MRTD @0x88, REPORTDATA @0x208.
    assert body.tee_tcb_svn == raw[0x30 : 0x30 + 16]
    assert body.mr_seam == raw[0x40 : 0x40 + 48]
    assert body.td_attributes == raw[0x30 + 0x78 : 0x30 + 0x80]
    assert body.mr_td == raw[0x30 + 0x88 : 0x30 + 0xB8]
    assert body.rtmr3 == raw[0x30 + 0x148 + 3 * 48 : 0x30 + 0x148 + 4 * 48]
    assert body.report_data == raw[0x30 + 0x208 : 0x30 + 0x248]
    assert q.signed_bytes() == raw[:0x278]
    (sig_len,) = struct.unpack_from("<I", raw, 0x278)
    assert q.signature == raw[0x27C : 0x27C + 64]
    assert q.attestation_key == raw[0x2BC : 0x2BC + 64]
    assert q.padding == len(raw) - 0x27C - sig_len == 70
    assert body.debug is False and body.tee_tcb_svn2 is None


def test_tdx_v5_body_descriptor_and_td15_fields() -> None:
    raw = read("dcap-qvl", "tdx_quote_outdated")
    q = parse_quote(raw)
    assert struct.unpack_from("<HI", raw, 0x30) == (3, 648)
    body = q.body
    assert isinstance(body, TdReport)
    assert body.tee_tcb_svn == raw[0x36 : 0x36 + 16]
    assert body.tee_tcb_svn2 == raw[0x36 + 584 : 0x36 + 600]
    assert body.mr_servicetd == raw[0x36 + 600 : 0x36 + 648]
    assert q.signed_bytes() == raw[: 0x36 + 648]


def test_sgx_v3_fields_and_debug_flag() -> None:
    raw = read("trustee", "occlum_quote.dat")
    q = parse_quote(raw)
    body = q.body
    assert isinstance(body, EnclaveReport)
    assert body.mr_enclave == raw[0x30 + 64 : 0x30 + 96]
    assert body.mr_signer == raw[0x30 + 128 : 0x30 + 160]
    assert body.isv_prod_id == struct.unpack_from("<H", raw, 0x30 + 256)[0]
    assert body.report_data[:4] == b"test"  # Occlum's sample REPORTDATA
    assert body.debug is True
    assert q.signed_bytes() == raw[:0x1B0]


def test_trustee_tdx_quote_4_is_a_debug_td() -> None:
    q = parse_quote(read("trustee", "tdx_quote_4.dat"))
    assert isinstance(q.body, TdReport) and q.body.debug is True


# --------------------------------------------------------------------------- malformed input


def test_truncated_everywhere_names_a_field() -> None:
    raw = read("dcap-qvl", "tdx_quote")
    end = parse_quote(raw).to_bytes()[: len(raw) - 70]  # without the padding
    for cut in [0, 1, 2, 20, 47, 48, 100, 0x277, 0x278, 0x27B, 0x300, 0x400, len(end) - 1]:
        with pytest.raises(EvidenceParseError) as e:
            parse_quote(end[:cut])
        assert e.value.offset is not None, cut
        assert "truncated" in e.value.reason or "needs" in e.value.reason, (cut, e.value)


def test_oversized_input_is_refused_before_parsing() -> None:
    raw = read("dcap-qvl", "tdx_quote") + bytes(70 * 1024)
    with pytest.raises(EvidenceParseError, match="more than the 65536"):
        parse_quote(raw)


def test_non_zero_trailing_bytes_are_refused() -> None:
    raw = read("dcap-qvl", "tdx_quote") + b"\x01"
    with pytest.raises(EvidenceParseError) as e:
        parse_quote(raw)
    assert e.value.field == "trailing data" and e.value.offset == len(raw) - 1


@pytest.mark.parametrize(
    ("offset", "value", "field"),
    [
        (0, b"\x06\x00", "header.version"),
        (2, b"\x03\x00", "header.attestation_key_type"),
        (4, b"\x82\x00\x00\x00", "header.tee_type"),
    ],
)
def test_bad_header_fields(offset: int, value: bytes, field: str) -> None:
    raw = bytearray(read("dcap-qvl", "tdx_quote"))
    raw[offset : offset + len(value)] = value
    with pytest.raises(EvidenceParseError) as e:
        parse_quote(bytes(raw))
    assert e.value.field == field and e.value.offset == offset


def test_v5_body_size_must_match_its_type() -> None:
    raw = bytearray(read("dcap-qvl", "tdx_quote_outdated"))
    struct.pack_into("<I", raw, 0x32, 584)
    with pytest.raises(EvidenceParseError) as e:
        parse_quote(bytes(raw))
    assert e.value.field == "body.size" and e.value.offset == 0x32


def test_signature_data_length_past_the_end() -> None:
    raw = bytearray(read("dcap-qvl", "tdx_quote"))
    struct.pack_into("<I", raw, 0x278, 100_000)
    with pytest.raises(EvidenceParseError) as e:
        parse_quote(bytes(raw))
    assert e.value.field == "signature_data_length" and e.value.offset == 0x278


def test_v4_needs_qe_report_certification_data() -> None:
    """A v4 quote whose outer certification data is type 5 carries no QE report."""
    raw = bytearray(read("dcap-qvl", "tdx_quote"))
    at = 0x27C + 128
    assert struct.unpack_from("<H", raw, at)[0] == 6
    struct.pack_into("<H", raw, at, 5)
    with pytest.raises(EvidenceParseError, match="needs type 6") as e:
        parse_quote(bytes(raw))
    assert e.value.offset == at


def test_pem_chain_garbage_is_refused() -> None:
    q = parse_quote(read("dcap-qvl", "tdx_quote"))
    bad = q.certification_data.replace(
        b"-----BEGIN CERTIFICATE-----", b"-----BEGIN CERTIFICATE-----!", 1
    )
    with pytest.raises(EvidenceParseError, match="not base64"):
        parse_quote(replace(q, certification_data=bad).to_bytes())
    with pytest.raises(EvidenceParseError, match="no PEM certificate"):
        parse_quote(replace(q, certification_data=b"\x00" * 16).to_bytes())
    with pytest.raises(EvidenceParseError, match="not PEM after"):
        parse_quote(replace(q, certification_data=q.certification_data + b"junk").to_bytes())


# --------------------------------------------------------------------------- fuzzing

_ANY_PARSE_FAILURE = (EvidenceParseError,)


_HEADERS = st.sampled_from(
    [
        struct.pack("<HHI", 3, 2, 0),
        struct.pack("<HHI", 4, 2, 0x81),
        struct.pack("<HHI", 4, 2, 0),
        struct.pack("<HHI", 5, 2, 0x81),
        struct.pack("<HHI", 5, 2, 0) + bytes(40) + struct.pack("<HI", 1, 384),
        struct.pack("<HHI", 5, 2, 0x81) + bytes(40) + struct.pack("<HI", 3, 648),
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=6000), st.tuples(_HEADERS, st.binary(max_size=6000))))
def test_arbitrary_bytes_raise_only_evidence_parse_error(data: bytes | tuple[bytes, bytes]) -> None:
    # Half the inputs start with a plausible header so the fuzz reaches the deeper fields.
    raw = data if isinstance(data, bytes) else data[0] + data[1]
    with contextlib.suppress(_ANY_PARSE_FAILURE):
        parse_quote(raw)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(SAMPLES)),
    st.lists(st.tuples(st.integers(0, 5005), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(0, 5006),
)
def test_mutated_real_quotes_raise_only_evidence_parse_error(
    name: str, edits: list[tuple[int, int]], cut: int
) -> None:
    raw = bytearray(read(*SAMPLES[name][0]))
    for pos, value in edits:
        raw[pos % len(raw)] = value
    try:
        q = parse_quote(bytes(raw[: max(cut, 1)] if cut < len(raw) else raw))
    except _ANY_PARSE_FAILURE:
        return
    # Whatever parses must serialise back to the same bytes.
    assert q.to_bytes() == bytes(raw[: max(cut, 1)] if cut < len(raw) else raw)
