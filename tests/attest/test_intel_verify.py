"""verify_quote on every public Intel sample at a pinned time, and every way to break it.

Expected outcomes (see the shared PROVENANCE.md files and the attestation brief):

- dcap-qvl tdx_quote (v4) + its collateral, 2025-06-20: UpToDate, no advisories.
- dcap-qvl sgx_quote (v3) + its collateral, 2025-06-20: ConfigurationAndSWHardeningNeeded,
  INTEL-SA-00289 and INTEL-SA-00615 (dcap-qvl's tests/verify_quote.rs says the same).
- dcap-qvl tdx_quote_outdated (v5) + its collateral, 2026-02-19: the PCK's SGX component 8
  is 3 and every TCB level needs 5, so no level matches: Intel's QVL answers
  STATUS_TCB_NOT_SUPPORTED, a rejection, not "OutOfDate" (check "tcb-level").
- trustee tdx_quote_5 (v5, same FMSPC 90c06f000000) with that collateral: likewise.
- trustee tdx_quote_6 (v4, FMSPC 00a06d080000) with trustee's tcbInfo.json and
  enclaveIdentity.json: OutOfDate (PCESVN 11 < 13 leaves only the 2018 level; module TDX_03
  UpToDate). No public PCK CRL covers that TCB info's window (2025-10-27..11-26), so full
  verification stops at "collateral-expired"; the TCB walk is checked on its own.
- trustee tdx_quote_4 and occlum_quote: no collateral for their FMSPCs exists in the samples;
  every signature up to the TCB step verifies and the FMSPC/TEE check refuses the foreign
  TCB info ("tcb-info-mismatch").
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import importlib.util
import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import given, settings
from hypothesis import strategies as st

from motte.attest.errors import CollateralError, EvidenceParseError, EvidenceVerificationError
from motte.attest.intel import (
    ChainCache,
    Collateral,
    IntelVerifyOptions,
    Quote,
    TdReport,
    evaluate_tcb,
    intel_root_certificate,
    parse_collateral,
    parse_pck_extensions,
    parse_qe_identity,
    parse_quote,
    parse_tcb_info,
    verify_quote,
)
from tests.attest.test_intel_fakes import (
    NOW,
    collateral_doc,
    default_pki,
    make_collateral,
    make_pki,
    make_quote,
    pem,
    sgx_extension,
    verify,
)
from tests.conftest import require, shared_testdata

JUNE_2025 = datetime(2025, 6, 20, tzinfo=UTC)
FEB_2026 = datetime(2026, 2, 19, tzinfo=UTC)


def read(*parts: str) -> bytes:
    return shared_testdata("attestation", *parts).read_bytes()


def sample(quote: tuple[str, str], collateral: str) -> tuple[Quote, Collateral]:
    return parse_quote(read(*quote)), parse_collateral(read("dcap-qvl", collateral))


def check_of(excinfo: pytest.ExceptionInfo[EvidenceVerificationError]) -> str:
    return excinfo.value.check


# --------------------------------------------------------------------------- expected outcomes


def test_dcap_qvl_tdx_quote_is_up_to_date() -> None:
    q, c = sample(("dcap-qvl", "tdx_quote"), "tdx_quote_collateral.json")
    v = verify_quote(q, c, IntelVerifyOptions(now=JUNE_2025))
    assert (v.tee, v.quote_version, v.tcb_status, v.advisory_ids) == ("tdx", 4, "UpToDate", ())
    assert (v.qe_tcb_status, v.platform_tcb_status, v.tdx_module_tcb_status) == ("UpToDate",) * 3
    assert v.fmspc == "b0c06f000000" and v.tcb_date == datetime(2024, 3, 13, tzinfo=UTC)
    assert v.collateral_expires == datetime(2025, 7, 19, 10, 0, 35, tzinfo=UTC)  # PCK CRL
    body = q.body
    assert isinstance(body, TdReport)
    assert (v.mr_td, v.rtmr0, v.rtmr3, v.report_data) == (
        body.mr_td,
        body.rtmr0,
        body.rtmr3,
        body.report_data,
    )
    assert v.td_attributes == body.td_attributes and v.debug is False
    assert v.mr_enclave is None
    d = v.to_dict()
    assert d["tcb_status"] == "UpToDate" and d["mr_td"] == body.mr_td.hex()
    assert "mr_enclave" not in d and d["pck"]["fmspc"] == "b0c06f000000"
    json.dumps(d)  # JSON-ready


def test_dcap_qvl_sgx_quote_needs_configuration_and_sw_hardening() -> None:
    q, c = sample(("dcap-qvl", "sgx_quote"), "sgx_quote_collateral.json")
    v = verify_quote(q, c, IntelVerifyOptions(now=JUNE_2025))
    assert (v.tee, v.quote_version, v.tcb_status) == ("sgx", 3, "ConfigurationAndSWHardeningNeeded")
    assert v.advisory_ids == ("INTEL-SA-00289", "INTEL-SA-00615")
    assert v.qe_tcb_status == "UpToDate" and v.tdx_module_tcb_status is None
    assert v.mr_enclave == q.body.mr_enclave and v.isv_prod_id == q.body.isv_prod_id  # type: ignore[union-attr]
    assert v.mr_td is None and v.debug is False


@pytest.mark.parametrize(
    "quote", [("dcap-qvl", "tdx_quote_outdated"), ("trustee", "tdx_quote_5.dat")]
)
def test_platform_below_every_tcb_level_is_not_supported(quote: tuple[str, str]) -> None:
    q, c = sample(quote, "tdx_quote_outdated_collateral.json")
    with pytest.raises(EvidenceVerificationError) as e:
        verify_quote(q, c, IntelVerifyOptions(now=FEB_2026))
    assert check_of(e) == "tcb-level" and "not supported" in e.value.reason


def test_trustee_tdx_quote_6_with_trustee_collateral() -> None:
    q = parse_quote(read("trustee", "tdx_quote_6.dat"))
    base = parse_collateral(read("dcap-qvl", "tdx_quote_outdated_collateral.json"))
    c = dataclasses.replace(
        base,
        tcb_info=parse_tcb_info(read("trustee", "tcbInfo.json")),
        qe_identity=parse_qe_identity(read("trustee", "enclaveIdentity.json")),
    )
    # Chain, PCK CRL (2026-02-18..03-20), QE report, quote and the TCB info signature all
    # verify; the trustee TCB info itself ran out on 2025-11-26.
    with pytest.raises(EvidenceVerificationError) as e:
        verify_quote(q, c, IntelVerifyOptions(now=FEB_2026))
    assert check_of(e) == "collateral-expired" and "TCB info" in e.value.reason
    # Inside the TCB info's window the 2026 PCK CRL is not issued yet.
    with pytest.raises(EvidenceVerificationError) as e:
        verify_quote(q, c, IntelVerifyOptions(now=datetime(2025, 11, 1, tzinfo=UTC)))
    assert check_of(e) == "collateral-not-yet-valid" and "PCK CRL" in e.value.reason
    # A forged trustee TCB info would have stopped earlier.
    forged = dataclasses.replace(c.tcb_info, signature=bytes(64))
    with pytest.raises(EvidenceVerificationError) as e:
        verify_quote(q, dataclasses.replace(c, tcb_info=forged), IntelVerifyOptions(now=FEB_2026))
    assert check_of(e) == "tcb-info-signature"
    ev = evaluate_tcb(q, parse_pck_extensions(q.pck_chain[0]), c.tcb_info, c.qe_identity)
    assert (ev.tcb_status, ev.sgx_tcb_status, ev.tdx_module_tcb_status, ev.qe_tcb_status) == (
        "OutOfDate",
        "OutOfDate",
        "UpToDate",
        "UpToDate",
    )
    assert ev.tcb_level.pcesvn == 5 and ev.tcb_date == datetime(2018, 1, 4, tzinfo=UTC)


@pytest.mark.parametrize(
    ("quote", "collateral", "now", "reason"),
    [
        (
            ("trustee", "tdx_quote_4.dat"),
            "tdx_quote_outdated_collateral.json",
            FEB_2026,
            "FMSPC 90c06f000000, the PCK certificate has 50806f000000",
        ),
        (
            ("trustee", "occlum_quote.dat"),
            "tdx_quote_collateral.json",
            JUNE_2025,
            "TCB info is for TDX, the quote is SGX",
        ),
    ],
)
def test_samples_without_their_collateral_verify_up_to_the_tcb_step(
    quote: tuple[str, str], collateral: str, now: datetime, reason: str
) -> None:
    q, c = sample(quote, collateral)
    assert q.body.debug is True  # both are debug TEEs: for the policy to refuse
    with pytest.raises(EvidenceVerificationError) as e:
        verify_quote(q, c, IntelVerifyOptions(now=now))
    assert check_of(e) == "tcb-info-mismatch" and reason in e.value.reason


def test_dcap_qvl_agrees_on_the_samples() -> None:
    """Differential check against Phala's Rust verifier where both give a status."""
    require(importlib.util.find_spec("dcap_qvl") is not None, "dcap-qvl (pip install dcap-qvl)")
    import dcap_qvl

    for quote, coll in [
        (("dcap-qvl", "tdx_quote"), "tdx_quote_collateral.json"),
        (("dcap-qvl", "sgx_quote"), "sgx_quote_collateral.json"),
    ]:
        raw = read(*quote)
        theirs = dcap_qvl.verify(
            raw,
            dcap_qvl.QuoteCollateralV3.from_json(read("dcap-qvl", coll).decode()),
            int(JUNE_2025.timestamp()),
        )
        ours = verify_quote(
            parse_quote(raw),
            parse_collateral(read("dcap-qvl", coll)),
            IntelVerifyOptions(now=JUNE_2025),
        )
        assert (ours.tcb_status, list(ours.advisory_ids)) == (theirs.status, theirs.advisory_ids)


def test_cached_and_uncached_verification_agree() -> None:
    q, c = sample(("dcap-qvl", "tdx_quote"), "tdx_quote_collateral.json")
    cache = ChainCache()
    first = verify_quote(q, c, IntelVerifyOptions(now=JUNE_2025, cache=cache))
    assert cache.entries > 0
    hits = cache.hits
    second = verify_quote(q, c, IntelVerifyOptions(now=JUNE_2025, cache=cache))
    assert cache.hits > hits and first == second == verify_quote(
        q, c, IntelVerifyOptions(now=JUNE_2025)
    )
    # The cache never remembers time: the same quote later is still refused.
    with pytest.raises(EvidenceVerificationError, match="collateral-expired"):
        verify_quote(q, c, IntelVerifyOptions(now=datetime(2025, 8, 1, tzinfo=UTC), cache=cache))


def test_now_must_be_timezone_aware() -> None:
    q, c = sample(("dcap-qvl", "tdx_quote"), "tdx_quote_collateral.json")
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_quote(q, c, IntelVerifyOptions(now=datetime(2025, 6, 20)))


def test_pinned_root_is_the_root_of_every_sample_chain() -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    root = intel_root_certificate().public_bytes(Encoding.DER)
    for quote in ["tdx_quote", "sgx_quote", "tdx_quote_outdated"]:
        assert parse_quote(read("dcap-qvl", quote)).pck_chain[2] == root
    assert (
        parse_collateral(read("dcap-qvl", "tdx_quote_collateral.json")).tcb_info_issuer_chain[1]
        == root
    )


# --------------------------------------------------------------------------- tampering


SIGNED_REGIONS = {
    # sample: (quote, collateral, now, signed length)
    "tdx v4": (("dcap-qvl", "tdx_quote"), "tdx_quote_collateral.json", JUNE_2025, 0x278),
    "sgx v3": (("dcap-qvl", "sgx_quote"), "sgx_quote_collateral.json", JUNE_2025, 0x1B0),
    "tdx v5": (("dcap-qvl", "tdx_quote_outdated"), "tdx_quote_outdated_collateral.json", FEB_2026,
               0x36 + 648),
}  # fmt: skip
#: Header bytes whose corruption the parser or the vendor check catches before the signature.
_PARSE_OR_VENDOR = {"header.version", "header.attestation_key_type", "header.tee_type",
                    "body.type", "body.size"}  # fmt: skip


@pytest.mark.parametrize("name", SIGNED_REGIONS)
def test_flipping_any_signed_byte_fails(name: str) -> None:
    """Every byte of header + body, inverted in turn, makes verification fail."""
    quote, coll, now, signed = SIGNED_REGIONS[name]
    raw = read(*quote)
    c = parse_collateral(read("dcap-qvl", coll))
    assert parse_quote(raw).signed_bytes() == raw[:signed]
    cache = ChainCache()
    for pos in range(signed):
        bad = bytearray(raw)
        bad[pos] ^= 0xFF
        try:
            verify_quote(parse_quote(bytes(bad)), c, IntelVerifyOptions(now=now, cache=cache))
        except EvidenceParseError as e:
            assert e.field in _PARSE_OR_VENDOR, (pos, e)
        except EvidenceVerificationError as e:
            want = "qe-vendor-id" if 12 <= pos < 28 else "quote-signature"
            assert e.check == want, (pos, e)
        else:
            pytest.fail(f"{name}: flipping byte {pos:#x} still verified")


def _tdx_sample() -> tuple[Quote, Collateral]:
    return sample(("dcap-qvl", "tdx_quote"), "tdx_quote_collateral.json")


@pytest.mark.parametrize("pos", [0, 16, 48, 64, 112, 128, 256, 300, 320, 352, 383])
def test_tampered_qe_report_fails(pos: int) -> None:
    q, c = _tdx_sample()
    raw = bytearray(q.qe_report.to_bytes())
    raw[pos] ^= 0x01
    qe = type(q.qe_report).from_bytes(bytes(raw))
    with pytest.raises(EvidenceVerificationError) as e:
        verify_quote(
            parse_quote(dataclasses.replace(q, qe_report=qe).to_bytes()),
            c,
            IntelVerifyOptions(now=JUNE_2025),
        )
    assert check_of(e) == "qe-report-signature"


def test_tampered_qe_report_signature_fails() -> None:
    q, c = _tdx_sample()
    sig = bytes([q.qe_report_signature[0] ^ 1]) + q.qe_report_signature[1:]
    with pytest.raises(EvidenceVerificationError) as e:
        verify_quote(
            dataclasses.replace(q, qe_report_signature=sig), c, IntelVerifyOptions(now=JUNE_2025)
        )
    assert check_of(e) == "qe-report-signature"


def test_qe_auth_data_must_bind_the_attestation_key() -> None:
    q, c = _tdx_sample()
    tampered = parse_quote(dataclasses.replace(q, qe_auth_data=b"\xff" * 32).to_bytes())
    with pytest.raises(EvidenceVerificationError) as e:
        verify_quote(tampered, c, IntelVerifyOptions(now=JUNE_2025))
    assert check_of(e) == "attestation-key-binding"


def test_quote_signature_itself_tampered() -> None:
    q, c = _tdx_sample()
    with pytest.raises(EvidenceVerificationError) as e:
        verify_quote(
            dataclasses.replace(q, signature=q.signature[::-1]),
            c,
            IntelVerifyOptions(now=JUNE_2025),
        )
    assert check_of(e) == "quote-signature"


def test_wrong_root_is_refused() -> None:
    q, c = _tdx_sample()
    with pytest.raises(EvidenceVerificationError) as e:
        verify_quote(q, c, IntelVerifyOptions(now=JUNE_2025, root=default_pki().root))
    assert check_of(e) == "root-ca-crl"  # Intel's root CRL is not the fake root's
    fake = make_collateral(default_pki())
    with pytest.raises(EvidenceVerificationError) as e:
        verify_quote(q, fake, IntelVerifyOptions(now=NOW, root=default_pki().root))
    assert check_of(e) == "pck-chain" and "not the pinned" in e.value.reason


def _with_chain(q: Quote, chain: bytes) -> Quote:
    return parse_quote(dataclasses.replace(q, certification_data=chain).to_bytes())


def test_swapped_or_short_chain_is_refused() -> None:
    pki = default_pki()
    q, c = make_quote(), make_collateral()
    for chain, reason in [
        (pem(pki.ca, pki.pck, pki.root), "PCK CA certificate"),
        (pem(pki.pck, pki.root, pki.root), "PCK certificate is issued by"),
        (pem(pki.pck, pki.ca), "2 certificates"),
        (pem(pki.pck, pki.ca, pki.root, pki.root), "4 certificates"),
    ]:
        with pytest.raises(EvidenceVerificationError) as e:
            verify(_with_chain(q, chain), c)
        assert check_of(e) == "pck-chain" and reason in e.value.reason, chain


def test_pck_from_another_platform_ca_is_refused() -> None:
    """A chain whose PCK CA is signed by another root than the one pinned."""
    other = make_pki()
    pki = default_pki()
    q = make_quote(chain=pem(pki.pck, other.ca, pki.root))
    with pytest.raises(EvidenceVerificationError) as e:
        verify(q, make_collateral())
    assert check_of(e) == "pck-chain"


def test_revoked_pck_is_refused() -> None:
    pki = default_pki()
    c = make_collateral(pck_crl=pki.pck_crl(revoked=(0x99, pki.pck.serial_number)))
    with pytest.raises(EvidenceVerificationError) as e:
        verify(make_quote(), c)
    assert check_of(e) == "pck-crl" and "revoked" in e.value.reason
    # Another serial revoked: fine.
    assert verify(make_quote(), make_collateral(pck_crl=pki.pck_crl(revoked=(0x99,))))


def test_revoked_pck_ca_and_tcb_signer_are_refused() -> None:
    pki = default_pki()
    with pytest.raises(EvidenceVerificationError) as e:
        verify(make_quote(), make_collateral(root_crl=pki.root_crl(revoked=(2,))))
    assert check_of(e) == "pck-chain" and "PCK CA certificate" in e.value.reason
    with pytest.raises(EvidenceVerificationError) as e:
        verify(make_quote(), make_collateral(root_crl=pki.root_crl(revoked=(3,))))
    assert check_of(e) == "tcb-info-chain"


def test_crls_signed_by_the_wrong_key_are_refused() -> None:
    pki, other = default_pki(), make_pki()
    forged_pck_crl = other.crl("Test SGX PCK Platform CA", other.ca_key)
    with pytest.raises(EvidenceVerificationError) as e:
        verify(make_quote(), make_collateral(pck_crl=forged_pck_crl))
    assert check_of(e) == "pck-crl" and "signature" in e.value.reason
    with pytest.raises(EvidenceVerificationError) as e:
        verify(make_quote(), make_collateral(root_crl=other.root_crl()))
    assert check_of(e) == "root-ca-crl"
    # A CRL of the right key but another issuer name.
    with pytest.raises(EvidenceVerificationError) as e:
        verify(make_quote(), make_collateral(pck_crl=pki.crl("Someone Else", pki.ca_key)))
    assert check_of(e) == "pck-crl" and "issued by" in e.value.reason


@pytest.mark.parametrize(
    ("now", "check", "what"),
    [
        (datetime(2025, 2, 2, tzinfo=UTC), "collateral-expired", "Root CA CRL"),
        (datetime(2024, 12, 31, tzinfo=UTC), "collateral-not-yet-valid", "Root CA CRL"),
    ],
)
def test_collateral_outside_its_window_is_refused(now: datetime, check: str, what: str) -> None:
    with pytest.raises(EvidenceVerificationError) as e:
        verify(make_quote(), make_collateral(), now=now)
    assert check_of(e) == check and what in e.value.reason


def test_each_expired_collateral_part_is_named() -> None:
    from tests.attest.test_intel_fakes import qe_identity_doc, tcb_info_doc

    pki = default_pki()
    late = {"next_update": datetime(2026, 1, 1, tzinfo=UTC)}
    long_crls = {"pck_crl": pki.pck_crl(**late), "root_crl": pki.root_crl(**late)}
    later = datetime(2025, 3, 1, tzinfo=UTC)
    with pytest.raises(EvidenceVerificationError, match="TCB info expired"):
        verify(make_quote(), make_collateral(**long_crls), now=later)
    fresh_tcb = tcb_info_doc(next_update="2026-01-01T00:00:00Z")
    with pytest.raises(EvidenceVerificationError, match="QE identity expired"):
        verify(make_quote(), make_collateral(**long_crls, tcb_info=fresh_tcb), now=later)
    fresh_qe = qe_identity_doc(next_update="2026-01-01T00:00:00Z")
    with pytest.raises(EvidenceVerificationError, match="PCK CRL expired"):
        verify(
            make_quote(),
            make_collateral(
                root_crl=long_crls["root_crl"], tcb_info=fresh_tcb, qe_identity=fresh_qe
            ),
            now=later,
        )
    v = verify(make_quote(), make_collateral(**long_crls, tcb_info=fresh_tcb, qe_identity=fresh_qe),
               now=later)  # fmt: skip
    assert v.collateral_expires == datetime(2026, 1, 1, tzinfo=UTC)


def test_real_collateral_expires() -> None:
    q, c = _tdx_sample()
    with pytest.raises(EvidenceVerificationError) as e:
        verify_quote(q, c, IntelVerifyOptions(now=datetime(2025, 7, 20, tzinfo=UTC)))
    assert check_of(e) == "collateral-expired" and e.value.hint


def test_broken_tcb_info_signature_is_refused() -> None:
    q, c = _tdx_sample()
    bad_sig = dataclasses.replace(c.tcb_info, signature=c.tcb_info.signature[:-1] + b"\x00")
    with pytest.raises(EvidenceVerificationError) as e:
        verify_quote(q, dataclasses.replace(c, tcb_info=bad_sig), IntelVerifyOptions(now=JUNE_2025))
    assert check_of(e) == "tcb-info-signature"
    # An edited TCB info under the original signature: "OutOfDate" dressed as "UpToDate".
    doc = json.loads(read("dcap-qvl", "tdx_quote_collateral.json"))
    doc["tcb_info"] = doc["tcb_info"].replace(
        '"tcbEvaluationDataNumber":17', '"tcbEvaluationDataNumber":18'
    )
    with pytest.raises(EvidenceVerificationError) as e:
        verify_quote(
            q, parse_collateral(json.dumps(doc).encode()), IntelVerifyOptions(now=JUNE_2025)
        )
    assert check_of(e) == "tcb-info-signature"


def test_broken_qe_identity_signature_is_refused() -> None:
    q, c = _tdx_sample()
    bad = dataclasses.replace(c.qe_identity, signature=bytes(64))
    with pytest.raises(EvidenceVerificationError) as e:
        verify_quote(q, dataclasses.replace(c, qe_identity=bad), IntelVerifyOptions(now=JUNE_2025))
    assert check_of(e) == "qe-identity-signature"


def test_collateral_signed_by_a_non_tcb_signing_certificate_is_refused() -> None:
    pki = make_pki(signer_cn="Intel SGX PCK Platform CA")
    with pytest.raises(EvidenceVerificationError) as e:
        verify(make_quote(pki), make_collateral(pki), pki)
    assert check_of(e) == "tcb-info-chain" and "TCB Signing" in e.value.reason


def test_tcb_issuer_chain_must_end_at_the_root() -> None:
    pki, other = default_pki(), make_pki()
    doc = collateral_doc()
    doc["tcb_info_issuer_chain"] = pem(pki.signer, other.root).decode()
    with pytest.raises(EvidenceVerificationError) as e:
        verify(make_quote(), parse_collateral(json.dumps(doc).encode()))
    assert check_of(e) == "tcb-info-chain"
    doc["tcb_info_issuer_chain"] = pem(pki.signer).decode()
    with pytest.raises(EvidenceVerificationError) as e:
        verify(make_quote(), parse_collateral(json.dumps(doc).encode()))
    assert check_of(e) == "tcb-info-chain" and "1 certificates" in e.value.reason


def test_expired_pck_certificate_is_refused() -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    pki = default_pki()
    expired = (
        x509.CertificateBuilder()
        .subject_name(pki.pck.subject)
        .issuer_name(pki.ca.subject)
        .public_key(pki.pck_key.public_key())
        .serial_number(0x777)
        .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2024, 1, 1, tzinfo=UTC))
        .add_extension(pki.pck.extensions[1].value, critical=False)
        .sign(pki.ca_key, hashes.SHA256())
    )
    with pytest.raises(EvidenceVerificationError) as e:
        verify(make_quote(chain=pem(expired, pki.ca, pki.root)), make_collateral())
    assert check_of(e) == "pck-chain" and "expired" in e.value.reason


def test_ppid_certification_data_cannot_be_verified_offline() -> None:
    q = make_quote()
    ppid = parse_quote(
        dataclasses.replace(
            q, certification_data_type=3, certification_data=b"\x01" * 384
        ).to_bytes()
    )
    with pytest.raises(EvidenceVerificationError) as e:
        verify(ppid, make_collateral())
    assert check_of(e) == "certification-data" and e.value.hint


def test_foreign_qe_vendor_is_refused() -> None:
    q = make_quote()
    other = dataclasses.replace(q, header=dataclasses.replace(q.header, qe_vendor_id=bytes(16)))
    with pytest.raises(EvidenceVerificationError) as e:
        verify(other, make_collateral())
    assert check_of(e) == "qe-vendor-id"


def test_pck_without_sgx_extension_is_a_parse_error() -> None:
    pki = make_pki(extension=sgx_extension()[:2] + b"\x00" * 4)  # garbage extension value
    with pytest.raises(EvidenceParseError) as e:
        verify(make_quote(pki), make_collateral(pki), pki)
    assert e.value.structure == "PCK certificate"


# --------------------------------------------------------------------------- fuzzing verify


def _tdx_raw() -> tuple[bytes, bytes]:
    return read("dcap-qvl", "tdx_quote"), read("dcap-qvl", "tdx_quote_collateral.json")


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4935), st.integers(0, 255)), min_size=1, max_size=4))
def test_mutated_quotes_fail_only_with_evidence_errors(edits: list[tuple[int, int]]) -> None:
    """Anywhere in the quote (certificates, QE report, padding): parse or verify refuses it
    with an evidence error, or the bytes changed nothing the quote is judged on."""
    raw, coll = _tdx_raw()
    bad = bytearray(raw)
    for pos, value in edits:
        bad[pos] = value
    try:
        v = verify_quote(
            parse_quote(bytes(bad)), parse_collateral(coll), IntelVerifyOptions(now=JUNE_2025)
        )
    except (EvidenceParseError, EvidenceVerificationError):
        return
    # Accepted: then what was signed is exactly the original.
    assert bytes(bad[:0x278]) == raw[:0x278] and v.tcb_status == "UpToDate"


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(["pck_crl", "root_ca_crl", "tcb_info_issuer_chain", "pck_crl_issuer_chain"]),
    st.integers(0, 10_000),
    st.sampled_from("0123456789abcdefAZ+/=\n-"),
)
def test_mutated_collateral_fails_only_with_evidence_errors(key: str, pos: int, ch: str) -> None:
    raw, coll = _tdx_raw()
    doc = json.loads(coll)
    text = doc[key]
    pos %= len(text)
    doc[key] = text[:pos] + ch + text[pos + 1 :]
    with contextlib.suppress(EvidenceParseError, EvidenceVerificationError, CollateralError):
        verify_quote(
            parse_quote(raw),
            parse_collateral(json.dumps(doc).encode()),
            IntelVerifyOptions(now=JUNE_2025),
        )


def test_pck_crl_issuer_chain_must_be_the_quotes_ca() -> None:
    pki, other = default_pki(), make_pki()
    doc = collateral_doc()
    doc["pck_crl_issuer_chain"] = pem(other.ca, pki.root).decode()
    with pytest.raises(EvidenceVerificationError) as e:
        verify(make_quote(), parse_collateral(json.dumps(doc).encode()))
    assert check_of(e) == "pck-crl" and "PCK CRL issuer certificate" in e.value.reason
    doc["pck_crl_issuer_chain"] = pem(pki.ca, other.root).decode()
    with pytest.raises(EvidenceVerificationError) as e:
        verify(make_quote(), parse_collateral(json.dumps(doc).encode()))
    assert check_of(e) == "pck-crl" and "issuer chain" in e.value.reason


def test_root_outside_its_validity_is_refused() -> None:
    with pytest.raises(EvidenceVerificationError) as e:
        verify(make_quote(), make_collateral(), now=datetime(2019, 6, 1, tzinfo=UTC))
    assert check_of(e) == "pck-chain" and "Root CA certificate" in e.value.reason


def test_certificate_and_crl_with_bad_versions_are_parse_errors() -> None:
    """cryptography raises InvalidVersion (not ValueError) for these; found by fuzzing."""
    pki = default_pki()
    der = bytearray(pki.pck.public_bytes(Encoding.DER))
    at = der.index(bytes.fromhex("a003020102"))  # [0] { INTEGER 2 } = v3
    der[at + 4] = 0x76
    bad_pck = bytes(der)
    chain = b"".join(
        [
            b"-----BEGIN CERTIFICATE-----\n"
            + base64.encodebytes(bad_pck)
            + b"-----END CERTIFICATE-----\n",
            pem(pki.ca, pki.root),
        ]
    )
    with pytest.raises(EvidenceParseError, match="PCK certificate"):
        verify(_with_chain(make_quote(), chain), make_collateral())
    crl = bytearray(pki.pck_crl())
    at = crl.index(bytes.fromhex("020101"))  # version v2
    crl[at + 2] = 0x0A
    with pytest.raises(EvidenceParseError, match="PCK CRL"):
        verify(make_quote(), make_collateral(pck_crl=bytes(crl)))
