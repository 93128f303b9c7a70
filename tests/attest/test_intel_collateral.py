"""parse_collateral, parse_tcb_info, parse_qe_identity and the PCK SGX extension parser."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from motte.attest.errors import CollateralError, EvidenceParseError
from motte.attest.intel import (
    parse_collateral,
    parse_pck_extensions,
    parse_qe_identity,
    parse_quote,
    parse_tcb_info,
)
from motte.attest.intel._pck import SGX_EXTENSION_OID, parse_sgx_extension_value
from tests.attest.test_intel_fakes import (
    PLATFORM_SGX,
    SGX,
    der_int,
    der_oid,
    level,
    seq,
    sgx_extension,
    tcb_info_doc,
    tlv,
)
from tests.conftest import shared_testdata


def read(*parts: str) -> bytes:
    return shared_testdata("attestation", *parts).read_bytes()


DOCS = [
    "tdx_quote_collateral.json",
    "sgx_quote_collateral.json",
    "tdx_quote_outdated_collateral.json",
]


@pytest.mark.parametrize("name", DOCS)
def test_parse_collateral_documents(name: str) -> None:
    raw = read("dcap-qvl", name)
    c = parse_collateral(raw)
    doc = json.loads(raw)
    assert c.tcb_info.signed_bytes == doc["tcb_info"].encode()
    assert c.tcb_info.signature.hex() == doc["tcb_info_signature"]
    assert c.qe_identity.signed_bytes == doc["qe_identity"].encode()
    assert c.pck_crl.hex() == doc["pck_crl"] and c.root_ca_crl.hex() == doc["root_ca_crl"]
    assert len(c.tcb_info_issuer_chain) == len(c.pck_crl_issuer_chain) == 2
    assert c.tcb_info.version == 3 and c.qe_identity.version == 2
    assert c.tcb_info.issue_date < c.tcb_info.next_update
    levels = c.tcb_info.tcb_levels
    assert all(len(lv.sgx_components) == 16 for lv in levels)
    keys = [(lv.sgx_components, lv.pcesvn, lv.tdx_components or ()) for lv in levels]
    assert keys == sorted(keys, reverse=True)  # highest first
    # to_dict gives the same document back.
    assert parse_collateral(json.dumps(c.to_dict()).encode()) == c


def test_tdx_tcb_info_fields() -> None:
    c = parse_collateral(read("dcap-qvl", "tdx_quote_outdated_collateral.json"))
    t = c.tcb_info
    assert (t.id, t.fmspc.hex(), t.pce_id, t.tcb_type) == ("TDX", "90c06f000000", b"\0\0", 0)
    assert t.tcb_evaluation_data_number == 18
    assert t.tdx_module is not None and t.tdx_module.mrsigner == bytes(48)
    ids = {
        m.id: [(lv.isvsvn, lv.tcb_status) for lv in m.tcb_levels] for m in t.tdx_module_identities
    }
    assert ids["TDX_01"] == [(6, "UpToDate"), (4, "OutOfDate"), (2, "OutOfDate")]
    assert t.tcb_levels[1].advisory_ids[0] == "INTEL-SA-01036"
    assert t.tcb_levels[0].tcb_date == datetime(2024, 11, 13, tzinfo=UTC)
    q = c.qe_identity
    assert (q.id, q.isvprodid, q.miscselect, q.miscselect_mask) == ("TD_QE", 2, 0, 0xFFFFFFFF)
    assert q.mrsigner.hex().startswith("dc9e2a7c")


def test_raw_pcs_bodies_keep_the_exact_signed_bytes() -> None:
    raw = read("trustee", "tcbInfo.json")
    t = parse_tcb_info(raw)
    start = raw.index(b'"tcbInfo":') + len(b'"tcbInfo":')
    assert t.signed_bytes == raw[start : raw.index(b',"signature"')]
    assert (t.id, t.fmspc.hex()) == ("TDX", "00a06d080000")
    q = parse_qe_identity(read("trustee", "enclaveIdentity.json"))
    assert q.id == "TD_QE" and q.signed_bytes.startswith(b'{"id":"TD_QE"')
    # Whitespace and key order around the signed object do not matter; its bytes do.
    body = t.signed_bytes.decode()
    spaced = f' {{ "signature" : "{t.signature.hex()}" ,\n "tcbInfo" : {body} }} '
    assert parse_tcb_info(spaced.encode()) == t


def test_a_lone_pcs_body_is_not_collateral() -> None:
    with pytest.raises(CollateralError, match="lone PCS TCB info") as e:
        parse_collateral(read("trustee", "tcbInfo.json"))
    assert e.value.hint


def _doc() -> dict[str, str]:
    return json.loads(read("dcap-qvl", "tdx_quote_collateral.json"))


def _tcb(edit: dict[str, object]) -> str:
    doc = _doc()
    tcb = json.loads(doc["tcb_info"])
    tcb.update(edit)
    doc["tcb_info"] = json.dumps(tcb)
    return json.dumps(doc)


LEVELS = "tcbInfo.tcbLevels[0]"
MALFORMED = [
    (b"not json", "document", "not JSON"),
    (b"[]", "document", "not a JSON object"),
    (json.dumps({k: v for k, v in _doc().items() if k != "pck_crl"}), "pck_crl", "missing"),
    (json.dumps({**_doc(), "pck_crl": "zz"}), "pck_crl", "not hex"),
    (json.dumps({**_doc(), "tcb_info_signature": "00" * 63}), "tcb_info_signature", "63 bytes"),
    (json.dumps({**_doc(), "tcb_info_issuer_chain": ""}), "tcb_info_issuer_chain", "no PEM"),
    (_tcb({"version": 2}), "tcbInfo.version", "version 2 is not supported"),
    (_tcb({"id": "XYZ"}), "tcbInfo.id", "unknown TCB info id"),
    (_tcb({"fmspc": "B0C0"}), "tcbInfo.fmspc", "2 bytes, expected 6"),
    (_tcb({"issueDate": "yesterday"}), "tcbInfo.issueDate", "not an ISO 8601 date"),
    (_tcb({"issueDate": "2025-06-19T10:16:03"}), "tcbInfo.issueDate", "without a time zone"),
    (_tcb({"tcbLevels": []}), "tcbInfo.tcbLevels", "empty"),
    (_tcb({"tcbLevels": [level(status="Fine")]}), f"{LEVELS}.tcbStatus", "unknown status"),
    (
        _tcb({"tcbLevels": [level(sgx=PLATFORM_SGX[:15])]}),
        f"{LEVELS}.tcb.sgxtcbcomponents",
        "15 components",
    ),
    (_tcb({"tcbLevels": [level(tdx=None)]}), f"{LEVELS}.tcb.tdxtcbcomponents", "missing"),
    (
        _tcb({"tcbLevels": [level(sgx=(256,) * 16)]}),
        f"{LEVELS}.tcb.sgxtcbcomponents[0].svn",
        "not an integer",
    ),
    (
        _tcb({"tcbLevels": [{**level(), "advisoryIDs": "INTEL-SA-1"}]}),
        f"{LEVELS}.advisoryIDs",
        "not an array",
    ),
    (_tcb({"tdxModule": None}), "tcbInfo.tdxModule", "not a JSON object"),
]


@pytest.mark.parametrize(("data", "field", "reason"), MALFORMED)
def test_malformed_collateral_names_the_field(data: bytes | str, field: str, reason: str) -> None:
    with pytest.raises(EvidenceParseError) as e:
        parse_collateral(data.encode() if isinstance(data, str) else data)
    assert (e.value.field, reason in e.value.reason) == (field, True), e.value


def test_pem_crl_is_accepted() -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    doc = _doc()
    crl = x509.load_der_x509_crl(bytes.fromhex(doc["pck_crl"]))
    doc["pck_crl"] = crl.public_bytes(Encoding.PEM).decode()
    assert parse_collateral(json.dumps(doc).encode()).pck_crl == bytes.fromhex(_doc()["pck_crl"])


def test_oversized_and_truncated_collateral() -> None:
    with pytest.raises(EvidenceParseError, match="more than"):
        parse_collateral(b" " * (1024 * 1024 + 1))
    raw = read("dcap-qvl", "tdx_quote_collateral.json")
    for cut in (1, 100, len(raw) // 2, len(raw) - 1):
        with pytest.raises(EvidenceParseError):
            parse_collateral(raw[:cut])
    body = read("trustee", "tcbInfo.json")
    for cut in (0, 1, 12, len(body) // 2, len(body) - 2):
        with pytest.raises(EvidenceParseError):
            parse_tcb_info(body[:cut])


def test_raw_body_needs_object_and_signature() -> None:
    with pytest.raises(EvidenceParseError, match="signature"):
        parse_tcb_info(json.dumps({"tcbInfo": tcb_info_doc()}).encode())
    with pytest.raises(EvidenceParseError, match="tcbInfo"):
        parse_tcb_info(json.dumps({"signature": "00" * 64}).encode())
    with pytest.raises(EvidenceParseError, match="duplicate key"):
        parse_tcb_info(b'{"tcbInfo": {}, "tcbInfo": {}, "signature": ""}')
    with pytest.raises(EvidenceParseError, match="not UTF-8"):
        parse_tcb_info(b'{"tcbInfo": "\xff"}')


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_collateral_bytes_raise_only_parse_errors(data: bytes) -> None:
    for parse in (parse_collateral, parse_tcb_info, parse_qe_identity):
        with contextlib.suppress(EvidenceParseError, CollateralError):
            parse(data)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(list('{}[]",:0123456789aZ -')))
def test_mutated_tcb_info_raises_only_parse_errors(pos: int, char: str) -> None:
    doc = _doc()
    text = doc["tcb_info"]
    pos %= len(text)
    doc["tcb_info"] = text[:pos] + char + text[pos + 1 :]
    with contextlib.suppress(EvidenceParseError):
        parse_collateral(json.dumps(doc).encode())


# --------------------------------------------------------------------------- PCK extension


def test_sample_pck_extensions() -> None:
    q = parse_quote(read("dcap-qvl", "tdx_quote"))
    ext = parse_pck_extensions(q.pck_chain[0])
    assert ext.tcb_components == (3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0)
    assert (ext.pcesvn, ext.pce_id, ext.fmspc.hex(), ext.sgx_type) == (
        11,
        b"\0\0",
        "b0c06f000000",
        1,
    )
    assert ext.ppid.hex() == "811dca2a26b952e85bb6448b097ba4fd"  # as dcap-qvl reports it
    assert (ext.dynamic_platform, ext.cached_keys, ext.smt_enabled) == (True, True, True)
    assert ext.to_dict()["fmspc"] == "b0c06f000000"
    sgx = parse_pck_extensions(parse_quote(read("dcap-qvl", "sgx_quote")).pck_chain[0])
    assert sgx.platform_instance_id is None and sgx.dynamic_platform is None  # processor CA


def _without(arc: str) -> bytes:
    """The fake extension with one top-level entry removed."""
    from motte.attest import der as _der

    raw = sgx_extension()
    top = _der.read_tlv(raw, 0, len(raw))
    keep = []
    for item in _der.children(raw, top):
        oid = _der.read_tlv(raw, item.start, item.end)
        if _der.decode_oid(raw, oid) != f"{SGX}.{arc}":
            keep.append(raw[item.offset : item.end])
    return seq(*keep)


def _twice(arc: str) -> bytes:
    entry = seq(der_oid(f"{SGX}.{arc}"), der_int(5))
    return seq(entry, entry)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (_without("4"), "sgx_extension.fmspc"),
        (_without("2"), "sgx_extension.tcb"),
        (_without("1"), "sgx_extension.ppid"),
        (seq(seq(der_oid(f"{SGX}.1"), tlv(0x04, bytes(15)))), "sgx_extension.ppid"),
        (_twice("4"), "sgx_extension.fmspc"),
        (sgx_extension(comps=(300, *PLATFORM_SGX[1:])), "sgx_extension.tcb.comp01"),
        (sgx_extension()[:-3], "sgx_extension"),
        (sgx_extension() + b"\x00", "sgx_extension"),
        (b"\x30\x80\x00\x00", "sgx_extension"),
    ],
)
def test_malformed_sgx_extension_names_the_field(value: bytes, field: str) -> None:
    with pytest.raises(EvidenceParseError) as e:
        parse_sgx_extension_value(value)
    assert e.value.field == field and e.value.structure == "PCK certificate", e.value


def test_certificate_without_sgx_extension() -> None:
    q = parse_quote(read("dcap-qvl", "tdx_quote"))
    with pytest.raises(EvidenceParseError, match=SGX_EXTENSION_OID):
        parse_pck_extensions(q.pck_chain[1])  # the PCK CA has none
    with pytest.raises(EvidenceParseError, match=r"not DER X\.509"):
        parse_pck_extensions(b"\x30\x03\x02\x01\x00")


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2000), st.integers(0, 255), st.integers(0, 600))
def test_mutated_sgx_extension_raises_only_parse_errors(pos: int, value: int, cut: int) -> None:
    raw = bytearray(sgx_extension(configuration=(True, True, False)))
    raw[pos % len(raw)] = value
    with contextlib.suppress(EvidenceParseError):
        parse_sgx_extension_value(bytes(raw[: len(raw) - cut % 8]))


def test_replace_keeps_models_frozen() -> None:
    c = parse_collateral(read("dcap-qvl", "sgx_quote_collateral.json"))
    with pytest.raises(AttributeError):
        c.pck_crl = b""  # type: ignore[misc]
    assert replace(c, pck_crl=b"x").pck_crl == b"x"


def test_duplicate_extensions_are_a_parse_error() -> None:
    """cryptography raises DuplicateExtension, which is not a ValueError."""
    der = parse_quote(read("dcap-qvl", "tdx_quote")).pck_chain[0]
    ski, aki = bytes.fromhex("0603551d0e"), bytes.fromhex("0603551d23")
    assert der.count(ski) == 1
    with pytest.raises(EvidenceParseError, match="Duplicate") as e:
        parse_pck_extensions(der.replace(ski, aki))
    assert e.value.field == "extensions"
