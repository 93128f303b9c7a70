"""Certificates: AMD's VCEK/VLEK extensions, bundles in every shape, the SNP cert table,
the pinned roots, and the serial-number-zero quirk of every AMD VCEK."""

from __future__ import annotations

import uuid
import warnings
from importlib import resources

import pytest
from cryptography import x509
from cryptography.utils import CryptographyDeprecationWarning

from motte.attest import EvidenceParseError
from motte.attest._x509 import fingerprint, load_bundle, load_der_certificate
from motte.attest.snp import (
    GUID_ARK,
    GUID_ASK,
    GUID_VCEK,
    build_cert_table,
    parse_amd_key_certificate,
    parse_cert_table,
    pinned_amd_roots,
    product_line,
)
from motte.attest.snp._roots import PINNED_AMD_CHAINS
from tests.attest.fakes import der, fake_amd, ia5
from tests.conftest import shared_testdata


def sample(*parts: str) -> bytes:
    return shared_testdata("attestation", *parts).read_bytes()


def cert(*parts: str) -> x509.Certificate:
    return load_der_certificate(sample(*parts), "test")


def test_milan_vcek_extensions() -> None:
    k = parse_amd_key_certificate(cert("trustee", "snp", "test-vcek.der"))
    assert (k.key_type, k.product_name, k.product, k.struct_version) == (
        "vcek",
        "Milan-B0",
        "Milan",
        0,
    )
    assert (k.bl_spl, k.tee_spl, k.snp_spl, k.ucode_spl, k.fmc_spl) == (3, 0, 8, 0x73, None)
    assert k.tcb == 0x7308000000000003
    assert k.hwid is not None and k.hwid.hex().startswith("c38427a30d4c7af9")
    assert k.csp_id is None


def test_vlek_extensions_with_two_byte_spl() -> None:
    k = parse_amd_key_certificate(cert("trustee", "snp", "test-vlek.der"))
    assert k.key_type == "vlek" and k.hwid is None
    assert k.ucode_spl == 0xD9  # DER INTEGER 02 02 00 d9
    assert k.csp_id == "CN=cc-us-east-2.amazonaws.com"


def test_turin_vcek_extensions() -> None:
    k = parse_amd_key_certificate(cert("virtee-sev", "vcek_turin.der"))
    assert (k.product, k.struct_version, k.fmc_spl) == ("Turin", 1, 0)
    assert k.hwid == bytes.fromhex("1e550a8ee5cf9f4d")
    assert k.tcb_layout == "turin"


def test_legacy_and_wrapped_hwid_encodings() -> None:
    legacy = parse_amd_key_certificate(cert("trustee", "snp", "test-vcek-invalid-legacy.der"))
    wrapped = parse_amd_key_certificate(cert("trustee", "snp", "test-vcek-invalid-new.der"))
    assert legacy.hwid == wrapped.hwid == bytes(range(64))


def test_turin_vcek_chains_to_the_pinned_turin_ask() -> None:
    chain = pinned_amd_roots().chain("Turin", "vcek")
    cert("virtee-sev", "vcek_turin.der").verify_directly_issued_by(chain.ask)


@pytest.mark.parametrize(
    ("name", "product"),
    [("Milan-B0", "Milan"), ("Genoa", "Genoa"), ("Turin", "Turin"), ("Rome", None), ("", None)],
)
def test_product_line(name: str, product: str | None) -> None:
    assert product_line(name) == product


def test_malformed_extensions_are_named() -> None:
    amd = fake_amd()
    tcb = {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}
    no_hwid = amd.key_cert(tcb=tcb, hwid=None)
    with pytest.raises(EvidenceParseError, match="hwID"):
        parse_amd_key_certificate(no_hwid)
    bad_len = amd.key_cert(tcb=tcb, hwid=bytes(10))
    with pytest.raises(EvidenceParseError, match="10 bytes; a Milan hwID is 64 bytes"):
        parse_amd_key_certificate(bad_len)
    rome = amd.key_cert(tcb=tcb, hwid=bytes(64), product_name="Rome")
    with pytest.raises(EvidenceParseError, match="unknown product 'Rome'"):
        parse_amd_key_certificate(rome)
    with pytest.raises(EvidenceParseError, match="not SEV-VCEK or SEV-VLEK"):
        parse_amd_key_certificate(amd.ask)
    assert ia5("x") == b"\x16\x01x"


def test_serial_zero_loads_without_warnings() -> None:
    """Regression guard: AMD VCEKs have serial 0. If cryptography starts refusing them,
    this fails loudly and motte needs its own certificate parser for VCEKs."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        c = load_der_certificate(sample("trustee", "snp", "test-vcek.der"), "test")
    assert c.subject.rfc4514_string().startswith("CN=SEV-VCEK")
    with pytest.warns(CryptographyDeprecationWarning, match="serial number"):
        x509.load_der_x509_certificate(sample("trustee", "snp", "test-vcek.der"))


def test_bundle_shapes() -> None:
    pem_chain = load_bundle(sample("virtee-sev", "cert_chain_milan"))
    assert [c.subject.rfc4514_string().split(",")[0] for c in pem_chain.certificates] == [
        "CN=SEV-Milan",
        "CN=ARK-Milan",
    ]
    pki = load_bundle(sample("enarx-steward", "milan.pkipath"))
    assert [c.subject.rfc4514_string().split(",")[0] for c in pki.certificates] == [
        "CN=ARK-Milan",
        "CN=SEV-Milan",
    ]
    one = load_bundle(sample("trustee", "snp", "test-vcek.der"))
    assert len(one.certificates) == 1 and not one.crls
    crl = fake_amd().crl()
    from cryptography.hazmat.primitives.serialization import Encoding

    assert len(load_bundle(crl.public_bytes(Encoding.DER)).crls) == 1
    assert len(load_bundle(crl.public_bytes(Encoding.PEM)).crls) == 1


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"hello", "neither PEM, DER"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n", "BEGIN without END"),
        (b"-----BEGIN PRIVATE KEY-----\nAA\n-----END PRIVATE KEY-----\n", "unexpected block"),
        (b"\x30\x03\x02\x01\x01", "PkiPath"),
        (b"\x30" * (1 << 20) + b"\x30", "more than 1 MiB"),
    ],
)
def test_bundle_errors(data: bytes, match: str) -> None:
    with pytest.raises(EvidenceParseError, match=match):
        load_bundle(data, "certs.pem")


def test_cert_table_round_trip() -> None:
    vcek = sample("trustee", "snp", "test-vcek.der")
    ask_ark = sample("virtee-sev", "cert_chain_milan")
    table = build_cert_table([(GUID_VCEK, vcek), (GUID_ASK, ask_ark)])
    entries = parse_cert_table(table)
    assert [(e.name, e.data) for e in entries] == [("VCEK", vcek), ("ASK", ask_ark)]
    bundle = load_bundle(table, "auxblob")
    assert len(bundle.certificates) == 3


def test_cert_table_errors() -> None:
    vcek = sample("trustee", "snp", "test-vcek.der")
    table = bytearray(build_cert_table([(GUID_VCEK, vcek)]))
    with pytest.raises(EvidenceParseError, match="without the all-zero terminator"):
        parse_cert_table(bytes(table[:30]))
    bad = bytearray(table)
    bad[16:20] = (len(table) + 5).to_bytes(4, "little")
    with pytest.raises(EvidenceParseError, match="lies outside") as e:
        parse_cert_table(bytes(bad))
    assert e.value.offset == 16
    dup = build_cert_table([(GUID_ARK, vcek), (GUID_ARK, vcek)])
    with pytest.raises(EvidenceParseError, match="appears twice"):
        parse_cert_table(dup)
    unterminated = build_cert_table([(uuid.uuid4(), b"x")] * 1)[:24] + bytes(20)
    with pytest.raises(EvidenceParseError):
        parse_cert_table(unterminated)


def test_pinned_roots_match_their_provenance_record() -> None:
    text = resources.files("motte.attest").joinpath("roots", "PROVENANCE.md").read_text()
    roots = pinned_amd_roots()
    for (product, key_type), (file, ask_fp, ark_fp) in PINNED_AMD_CHAINS.items():
        chain = roots.chain(product, key_type)
        assert fingerprint(chain.ask) == ask_fp and fingerprint(chain.ark) == ark_fp
        assert file in text and ask_fp in text and ark_fp in text
        # the shipped roots are the shared samples' roots, byte for byte
        shipped = resources.files("motte.attest").joinpath("roots", file).read_bytes()
        assert shipped == sample("amd-roots", file)


def test_fake_pki_is_self_consistent() -> None:
    amd = fake_amd("Turin", "vlek")
    amd.ask.verify_directly_issued_by(amd.ark)
    assert der(amd.ark)[:1] == b"\x30"
