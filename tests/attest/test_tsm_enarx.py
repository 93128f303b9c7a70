"""Containers of evidence: configfs-tsm captures and Enarx Keep CSRs."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from motte.attest import (
    EvidenceParseError,
    TsmCapture,
    detect_kind,
    parse_enarx_csr,
    parse_evidence,
    parse_tsm_capture,
    read_tsm_capture_dir,
    verify_evidence,
)
from motte.attest.snp import GUID_ARK, GUID_ASK, GUID_VCEK, build_cert_table
from tests.attest.fakes import AT, der, make_case
from tests.conftest import shared_testdata

AT_2025 = datetime(2025, 6, 1, tzinfo=UTC)


def sample(*parts: str) -> bytes:
    return shared_testdata("attestation", *parts).read_bytes()


def b64url(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def snp_capture() -> bytes:
    """A capture as a Milan guest's configfs-tsm gives it: report + the host's cert table."""
    from cryptography.x509 import load_pem_x509_certificates

    ask, ark = load_pem_x509_certificates(sample("virtee-sev", "cert_chain_milan"))
    table = build_cert_table(
        [
            (GUID_VCEK, sample("trustee", "snp", "test-vcek.der")),
            (GUID_ASK, ask.public_bytes(serialization.Encoding.PEM)),
            (GUID_ARK, der(ark)),
        ]
    )
    doc = {
        "provider": "sev_guest\n",
        "outblob": b64url(sample("trustee", "snp", "test-report.bin")),
        "auxblob": b64url(table),
    }
    return json.dumps(doc).encode()


# configfs-tsm ----------------------------------------------------------------------------


def test_snp_capture_verifies_with_the_certificates_it_carries() -> None:
    raw = snp_capture()
    assert detect_kind(raw) == "tsm"
    v = verify_evidence(raw, now=AT_2025)
    assert v.accepted, v.reason
    assert (v.kind, v.format) == ("snp", "tsm")
    parsed = parse_evidence(raw).to_dict()
    assert parsed["tee"] == "snp"
    assert [c["entry"] for c in parsed["certificates"]] == ["VCEK", "ASK", "ARK"]


def test_capture_round_trips_and_reads_from_a_directory(tmp_path: Path) -> None:
    c = parse_tsm_capture(snp_capture())
    assert c.provider == "sev_guest" and c.kind == "snp"
    assert parse_tsm_capture(c.to_json()) == c
    d = tmp_path / "report0"
    d.mkdir()
    (d / "provider").write_text("sev_guest\n")
    (d / "outblob").write_bytes(c.outblob)
    assert c.auxblob is not None
    (d / "auxblob").write_bytes(c.auxblob)
    (d / "generation").write_text("3\n")
    from_dir = read_tsm_capture_dir(d)
    assert from_dir.generation == 3
    assert verify_evidence(from_dir.to_json(), now=AT_2025).accepted


def test_tdx_capture_uses_the_intel_verifier() -> None:
    doc = {"provider": "tdx_guest", "outblob": b64url(sample("dcap-qvl", "tdx_quote"))}
    v = verify_evidence(
        json.dumps(doc).encode(),
        collateral=sample("dcap-qvl", "tdx_quote_collateral.json"),
        now=datetime(2025, 7, 1, tzinfo=UTC),
    )
    assert v.accepted, v.reason
    assert (v.kind, v.format) == ("tdx", "tsm")


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"provider": "arm_cca_guest", "outblob": "AA"}, "provider"),
        ({"provider": "sev_guest"}, "outblob"),
        ({"outblob": "AA"}, "provider"),
        ({"provider": "sev_guest", "outblob": "!!"}, "outblob"),
        ({"provider": "tdx_guest", "outblob": "AA", "auxblob": "AA"}, "auxblob"),
        ({"provider": "sev_guest", "outblob": "AA", "inblob": "AA"}, "inblob"),
        ({"provider": "sev_guest", "outblob": ""}, "outblob"),
        ({"provider": "sev_guest", "outblob": "AA", "generation": "x"}, "generation"),
        ([1, 2], "JSON"),
    ],
)
def test_malformed_captures(doc: object, field: str) -> None:
    with pytest.raises(EvidenceParseError) as e:
        parse_tsm_capture(json.dumps(doc).encode())
    assert e.value.field == field


def test_capture_not_json_and_missing_dir_files(tmp_path: Path) -> None:
    with pytest.raises(EvidenceParseError, match="not valid JSON"):
        parse_tsm_capture(b'{"outblob": ')
    with pytest.raises(EvidenceParseError, match="provider does not exist"):
        read_tsm_capture_dir(tmp_path)


def test_capture_with_a_malformed_report_is_rejected() -> None:
    doc = {"provider": "sev_guest", "outblob": b64url(b"\x02\0\0\0" + bytes(100))}
    v = verify_evidence(json.dumps(doc).encode())
    assert not v.accepted and v.failures[0].rule == "parse"
    assert TsmCapture("sev_guest", b"x").to_dict()["kind"] == "snp"


# Enarx ----------------------------------------------------------------------------------


def test_real_enarx_csr() -> None:
    raw = sample("enarx-steward", "milan.signed.crl.csr")
    csr = parse_enarx_csr(raw)
    assert csr.tee == "snp" and csr.report is not None and len(csr.report) == 1184
    assert [url.rsplit("/", 2)[-2] for url, _ in csr.crls] == ["Genoa", "Milan"]
    assert detect_kind(raw) == "enarx"
    v = verify_evidence(raw, now=datetime(2023, 1, 15, tzinfo=UTC))
    assert v.accepted, v.reason
    rules = {r.rule: r.outcome for r in v.rules}
    assert rules["csr-signature"] == rules["report-data-binding"] == rules["revocation"] == "pass"
    # PEM works too
    pem = x509.load_der_x509_csr(raw).public_bytes(serialization.Encoding.PEM)
    assert verify_evidence(pem, kind="enarx", now=datetime(2023, 1, 15, tzinfo=UTC)).accepted


def _tlv(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    ln = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(ln)]) + ln + body


def enarx_csr(
    *,
    key: ec.EllipticCurvePrivateKey | None = None,
    bind: bool = True,
    oid: str = "1.3.6.1.4.1.58270.1.3",
    critical: bool = False,
    value: bytes | None = None,
    extra_ext: bool = False,
) -> tuple[bytes, object]:
    key = key or ec.generate_private_key(ec.SECP384R1())
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    rd = hashlib.sha384(spki).digest() + bytes(16) if bind else bytes(64)
    case = make_case(report_data=rd)
    crl = case.amd.crl().public_bytes(serialization.Encoding.DER)
    entry = _tlv(0x30, _tlv(0x0C, b"https://kds.example/crl") + crl)
    evidence = _tlv(
        0x30,
        _tlv(0x30, der(case.key_cert) + _tlv(0x30, _tlv(0x30, entry))) + _tlv(0x04, case.report),
    )
    b = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    b = b.add_extension(
        x509.UnrecognizedExtension(
            x509.ObjectIdentifier(oid), evidence if value is None else value
        ),
        critical=critical,
    )
    if extra_ext:
        b = b.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.58270.1.1"), b"\x05\x00"),
            critical=False,
        )
    csr = b.sign(key, hashes.SHA384())
    return csr.public_bytes(serialization.Encoding.DER), case


def test_synthetic_enarx_csr_binding() -> None:
    raw, case = enarx_csr()
    v = verify_evidence(raw, amd_roots=case.amd.roots, now=AT)  # type: ignore[attr-defined]
    assert v.accepted, v.reason
    raw, case = enarx_csr(bind=False)
    v = verify_evidence(raw, amd_roots=case.amd.roots, now=AT)  # type: ignore[attr-defined]
    assert v.reason is not None and v.reason.startswith("report-data-binding:")


def test_enarx_csr_key_must_be_p384() -> None:
    raw, case = enarx_csr(key=ec.generate_private_key(ec.SECP256R1()))
    v = verify_evidence(raw, amd_roots=case.amd.roots, now=AT)  # type: ignore[attr-defined]
    assert v.failures[0].rule == "csr-key"


def test_enarx_csr_signature_must_verify() -> None:
    raw, case = enarx_csr()
    bad = bytearray(raw)
    bad[-1] ^= 0x01  # inside the signature
    v = verify_evidence(bytes(bad), amd_roots=case.amd.roots, now=AT)  # type: ignore[attr-defined]
    assert v.failures[0].rule in {"csr-signature", "parse"}
    assert not v.accepted


def test_enarx_kvm_and_malformed() -> None:
    raw, _ = enarx_csr(oid="1.3.6.1.4.1.58270.1.1", value=b"\x05\x00")
    v = verify_evidence(raw)
    assert v.reason is not None and "KVM keep carries no TEE evidence" in v.reason
    raw, _ = enarx_csr(critical=True)
    with pytest.raises(EvidenceParseError, match="must not be critical"):
        parse_enarx_csr(raw)
    raw, _ = enarx_csr(extra_ext=True)
    with pytest.raises(EvidenceParseError, match="found 2"):
        parse_enarx_csr(raw)
    raw, _ = enarx_csr(value=b"\x30\x03\x04\x01\x00")
    with pytest.raises(EvidenceParseError, match="expected 2 elements"):
        parse_enarx_csr(raw)
    with pytest.raises(EvidenceParseError, match="CertificationRequest"):
        parse_enarx_csr(b"\x30\x05\x02\x01\x01")
