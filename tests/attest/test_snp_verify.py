"""SEV-SNP verification: real samples, byte flips, and a fake AMD PKI for the rest."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from motte.attest import CollateralError, EvidenceVerificationError, verify_evidence
from motte.attest.snp import (
    SIGNED_SIZE,
    AmdRoots,
    Report,
    SnpVerifyOptions,
    pinned_amd_roots,
    verify_report,
)
from tests.attest.fakes import (
    AT,
    at,
    base_report,
    der,
    ec_key,
    fake_amd,
    make_case,
    pem,
    sign_report,
)
from tests.conftest import shared_testdata

AT_2025 = datetime(2025, 6, 1, tzinfo=UTC)


def sample(*parts: str) -> bytes:
    return shared_testdata("attestation", *parts).read_bytes()


def opts(roots: AmdRoots | None = None, **kw: object) -> SnpVerifyOptions:
    return SnpVerifyOptions(now=kw.pop("now", AT), roots=roots, **kw)  # type: ignore[arg-type]


def failed_check(fn, *args) -> EvidenceVerificationError:
    with pytest.raises(EvidenceVerificationError) as e:
        fn(*args)
    return e.value


# Real samples -----------------------------------------------------------------------------


def test_every_signed_byte_of_a_real_report_matters() -> None:
    """Flip each byte of the 672 signed bytes: every one is rejected, never accepted."""
    raw = sample("trustee", "snp", "test-report.bin")
    vcek = sample("trustee", "snp", "test-vcek.der")
    assert verify_evidence(raw, certs=[vcek], now=AT_2025).accepted
    outcomes: dict[str, int] = {}
    for i in range(SIGNED_SIZE):
        bad = bytearray(raw)
        bad[i] ^= 0x01
        v = verify_evidence(bytes(bad), certs=[vcek], now=AT_2025)
        assert not v.accepted, f"flipping byte {i:#x} was accepted"
        first = v.failures[0].rule
        assert first in {"parse", "report-signature", "reported-tcb"}, (i, v.reason)
        outcomes[first] = outcomes.get(first, 0) + 1
    # Most bytes are plain fields that only the signature protects.
    assert outcomes["report-signature"] > 400


def test_flipping_signature_bytes_fails() -> None:
    raw = sample("trustee", "snp", "test-report.bin")
    vcek = sample("trustee", "snp", "test-vcek.der")
    for off in (0x2A0, 0x2A0 + 47, 0x2E8, 0x2E8 + 47):
        bad = bytearray(raw)
        bad[off] ^= 0x80
        v = verify_evidence(bytes(bad), certs=[vcek], now=AT_2025)
        assert v.failures[0].rule == "report-signature"


def test_real_report_with_real_chain_in_reverse_order() -> None:
    # A bundle with ARK before ASK (a "swapped" chain file) is sorted by subject, not order.
    from cryptography import x509

    ask, ark = x509.load_pem_x509_certificates(sample("virtee-sev", "cert_chain_milan"))
    v = verify_evidence(
        sample("virtee-sev", "report_milan.hex"),
        certs=[pem(ark, ask), sample("virtee-sev", "vcek_milan.der")],
        now=AT_2025,
    )
    assert v.accepted, v.reason


def test_genoa_chain_for_a_milan_vcek_is_not_used() -> None:
    # Supplying another product's chain changes nothing: the VCEK's product picks the roots.
    v = verify_evidence(
        sample("trustee", "snp", "test-report.bin"),
        certs=[sample("trustee", "snp", "test-vcek.der"), sample("enarx-steward", "genoa.pkipath")],
        now=AT_2025,
    )
    assert v.accepted, v.reason


def test_vcek_before_its_validity() -> None:
    v = verify_evidence(
        sample("trustee", "snp", "test-report.bin"),
        certs=[sample("trustee", "snp", "test-vcek.der")],
        now=datetime(2022, 1, 1, tzinfo=UTC),
    )
    assert v.failures[0].rule == "validity"
    assert "not valid before 2023-01-24" in v.failures[0].reason


# Synthetic chains: versions, products, key types ------------------------------------------

PRODUCT_CASES = [
    ("Milan", "vcek", 2),
    ("Milan", "vcek", 3),
    ("Genoa", "vcek", 3),
    ("Genoa", "vlek", 3),
    ("Turin", "vcek", 5),
    ("Turin", "vlek", 5),
    ("Milan", "vlek", 5),
]


@pytest.mark.parametrize(("product", "key_type", "version"), PRODUCT_CASES)
def test_synthetic_reports_verify(product: str, key_type: str, version: int) -> None:
    case = make_case(product, key_type, version)
    v = verify_report(Report.from_bytes(case.report), [case.key_cert], opts(case.amd.roots))
    assert v.product == product
    assert v.key.key_type == key_type
    names = [c.rule for c in v.checks]
    assert "report-signature" in names and "reported-tcb" in names
    chip = next(c for c in v.checks if c.rule == "chip-id")
    assert chip.outcome == ("pass" if key_type == "vcek" else "skip")


def test_turin_tcb_layout_and_8_byte_hwid() -> None:
    tcb = {"fmc": 2, "bootloader": 4, "tee": 1, "snp": 25, "microcode": 0xDB}
    case = make_case("Turin", "vcek", 5, tcb=tcb)
    v = verify_report(Report.from_bytes(case.report), [case.key_cert], opts(case.amd.roots))
    assert v.reported_tcb() == tcb
    assert v.key.hwid is not None and len(v.key.hwid) == 8
    assert v.report.reported_tcb == 0xDB0000001901_0402


def test_synthetic_chain_is_not_trusted_by_the_pinned_roots() -> None:
    case = make_case()
    e = failed_check(verify_report, Report.from_bytes(case.report), [case.key_cert], opts())
    assert e.check == "chain"


def test_a_different_root_named_like_the_pinned_ark_is_refused() -> None:
    case = make_case()
    certs = [case.key_cert, case.amd.ask, case.amd.ark]  # own ARK-Milan and SEV-Milan
    e = failed_check(verify_report, Report.from_bytes(case.report), certs, opts())
    assert e.check == "ark"
    assert "is not the pinned ARK-Milan" in e.reason


def test_wrong_vcek_for_the_report() -> None:
    case = make_case()
    other = case.amd.key_cert(
        tcb={"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115},
        hwid=bytes(range(1, 65)),
        key=ec_key("another"),
    )
    e = failed_check(verify_report, Report.from_bytes(case.report), [other], opts(case.amd.roots))
    assert e.check == "report-signature"


def test_swapped_chain_vcek_signed_by_the_ark() -> None:
    amd = fake_amd()
    case = make_case()
    skipping = amd.key_cert(
        tcb={"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115},
        hwid=bytes(range(1, 65)),
        signer=(amd.ark, amd.ark_key),
    )
    e = failed_check(verify_report, Report.from_bytes(case.report), [skipping], opts(amd.roots))
    assert e.check == "chain"


def test_vcek_signed_by_another_products_ask() -> None:
    genoa = fake_amd("Genoa")
    case = make_case()
    cross = case.amd.key_cert(
        tcb={"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115},
        hwid=bytes(range(1, 65)),
        signer=(genoa.ask, genoa.ask_key),
    )
    e = failed_check(verify_report, Report.from_bytes(case.report), [cross], opts(case.amd.roots))
    assert e.check == "chain"
    assert "SEV-Genoa" in e.reason


def test_reissued_ask_signed_by_the_ark_is_accepted() -> None:
    from tests.attest.fakes import _ca_cert, rsa_key

    amd = fake_amd()
    new_key = rsa_key("reissued-ask")
    new_ask = _ca_cert("SEV-Milan", new_key, "ARK-Milan", amd.ark_key, 0x10002)
    tcb = {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}
    vcek = amd.key_cert(tcb=tcb, hwid=bytes(range(1, 65)), signer=(new_ask, new_key))
    report = make_case().report
    v = verify_report(Report.from_bytes(report), [vcek, new_ask], opts(amd.roots))
    assert any(c.rule == "chain" and c.outcome == "pass" for c in v.checks)
    # The same ASK signed by a stranger is not.
    rogue = _ca_cert("SEV-Milan", new_key, "ARK-Milan", rsa_key("rogue"), 0x10002)
    e = failed_check(verify_report, Report.from_bytes(report), [vcek, rogue], opts(amd.roots))
    assert e.check == "chain"


def test_revoked_ask() -> None:
    case = make_case()
    crl = case.amd.crl(revoked=(case.amd.ask.serial_number,))
    e = failed_check(
        verify_report,
        Report.from_bytes(case.report),
        [case.key_cert],
        opts(case.amd.roots, crls=[crl]),
    )
    assert e.check == "revocation"
    assert "was revoked" in e.reason
    # passes recorded before the failure are carried for the verdict
    assert [r.rule for r in e.results][:3] == ["vcek-extensions", "ark", "chain"]


def test_crl_not_revoking_passes_and_is_recorded() -> None:
    case = make_case()
    crl = case.amd.crl(revoked=(0x999,))
    v = verify_report(
        Report.from_bytes(case.report), [case.key_cert], opts(case.amd.roots, crls=[crl])
    )
    assert next(c for c in v.checks if c.rule == "revocation").outcome == "pass"


def test_forged_crl_and_expired_crl() -> None:
    from tests.attest.fakes import rsa_key

    case = make_case()
    forged = case.amd.crl(signer=rsa_key("forger"))
    e = failed_check(
        verify_report,
        Report.from_bytes(case.report),
        [case.key_cert],
        opts(case.amd.roots, crls=[forged]),
    )
    assert e.check == "revocation" and "not signed by it" in e.reason
    stale = case.amd.crl(last=at(-400), next_=at(-30))
    e = failed_check(
        verify_report,
        Report.from_bytes(case.report),
        [case.key_cert],
        opts(case.amd.roots, crls=[stale]),
    )
    assert e.check == "revocation" and "not at" in e.reason


def test_require_crl() -> None:
    case = make_case()
    report = Report.from_bytes(case.report)
    v = verify_report(report, [case.key_cert], opts(case.amd.roots))
    assert next(c for c in v.checks if c.rule == "revocation").outcome == "skip"
    e = failed_check(verify_report, report, [case.key_cert], opts(case.amd.roots, require_crl=True))
    assert e.check == "revocation"


def test_expired_vcek() -> None:
    case = make_case()
    e = failed_check(
        verify_report,
        Report.from_bytes(case.report),
        [case.key_cert],
        opts(case.amd.roots, now=datetime(2040, 1, 1, tzinfo=UTC)),
    )
    assert e.check == "validity" and "expired" in e.reason


def test_reported_tcb_must_equal_the_vcek_spls() -> None:
    case = make_case()
    lower = case.amd.key_cert(
        tcb={"bootloader": 3, "tee": 0, "snp": 7, "microcode": 115}, hwid=bytes(range(1, 65))
    )
    e = failed_check(verify_report, Report.from_bytes(case.report), [lower], opts(case.amd.roots))
    assert e.check == "reported-tcb"


def test_chip_id_must_equal_the_hwid() -> None:
    case = make_case()
    other_chip = case.amd.key_cert(
        tcb={"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}, hwid=bytes(64)
    )
    e = failed_check(
        verify_report, Report.from_bytes(case.report), [other_chip], opts(case.amd.roots)
    )
    assert e.check == "chip-id"


def test_masked_chip_id_skips_the_check() -> None:
    r = Report.from_bytes(make_case().report)
    masked = replace(r, signer_info=0b10, chip_id=bytes(64))
    amd = fake_amd()
    raw = sign_report(masked, ec_key("Milan-vcek"))
    v = verify_report(Report.from_bytes(raw), [make_case().key_cert], opts(amd.roots))
    assert next(c for c in v.checks if c.rule == "chip-id").outcome == "skip"


def test_hwid_in_octet_string_form() -> None:
    amd = fake_amd()
    tcb = {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}
    wrapped = amd.key_cert(tcb=tcb, hwid=b"\x04\x40" + bytes(range(1, 65)))
    v = verify_report(Report.from_bytes(make_case().report), [wrapped], opts(amd.roots))
    assert v.key.hwid == bytes(range(1, 65))


def test_cpuid_product_must_match_the_vcek() -> None:
    case = make_case("Milan", "vcek", 3, cpuid_fam_id=0x19, cpuid_mod_id=0x11)  # says Genoa
    e = failed_check(
        verify_report, Report.from_bytes(case.report), [case.key_cert], opts(case.amd.roots)
    )
    assert e.check == "product"


def test_unsigned_report_and_wrong_algorithm() -> None:
    case = make_case()
    r = Report.from_bytes(case.report)
    e = failed_check(
        verify_report, replace(r, signer_info=7 << 2), [case.key_cert], opts(case.amd.roots)
    )
    assert e.check == "signing-key"
    raw = sign_report(replace(r, signature_algo=2), ec_key("Milan-vcek"))
    e = failed_check(verify_report, Report.from_bytes(raw), [case.key_cert], opts(case.amd.roots))
    assert e.check == "report-signature" and "SIGNATURE_ALGO is 2" in e.reason


def test_vlek_report_needs_a_vlek() -> None:
    vcek_case = make_case()
    vlek_case = make_case("Milan", "vlek", 3)
    with pytest.raises(CollateralError, match="no VLEK certificate"):
        verify_report(Report.from_bytes(vlek_case.report), [vcek_case.key_cert], opts())


def test_several_vceks_the_matching_one_is_chosen() -> None:
    case = make_case()
    amd = case.amd
    stale = amd.key_cert(
        tcb={"bootloader": 2, "tee": 0, "snp": 6, "microcode": 100}, hwid=bytes(range(1, 65))
    )
    v = verify_report(Report.from_bytes(case.report), [stale, case.key_cert], opts(amd.roots))
    assert v.key.certificate == case.key_cert


def test_options_need_an_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SnpVerifyOptions(now=datetime(2025, 1, 1))


def test_pinned_roots_cover_every_product_and_key_type() -> None:
    roots = pinned_amd_roots()
    for product in ("Milan", "Genoa", "Turin"):
        for key_type in ("vcek", "vlek"):
            chain = roots.chain(product, key_type)
            assert chain.ark.subject == chain.ask.issuer
    with pytest.raises(CollateralError):
        AmdRoots({}).chain("Milan", "vcek")


def test_recipe_with_fake_roots_and_pem_bundle() -> None:
    case = make_case("Genoa", "vlek", 3)
    v = verify_evidence(
        case.report, certs=[pem(case.key_cert, case.amd.ask), der(case.amd.ark)],
        amd_roots=case.amd.roots, now=AT,
    )  # fmt: skip
    assert v.accepted, v.reason
    assert v.claims["key"]["csp_id"] == "CN=cloud.example"
    assert base_report(3).version == 3


def test_memos_change_speed_never_the_verdict() -> None:
    from motte.attest import clear_caches
    from motte.attest._memo import ISSUED_BY, VALIDITY

    clear_caches()
    assert len(ISSUED_BY) == len(VALIDITY) == 0
    case = make_case()
    report = Report.from_bytes(case.report)
    verify_report(report, [case.key_cert], opts(case.amd.roots))
    assert len(ISSUED_BY) > 0 and len(VALIDITY) > 0
    # Time, revocation and the report's own signature are still checked on every call.
    late = opts(case.amd.roots, now=datetime(2040, 1, 1, tzinfo=UTC))
    assert failed_check(verify_report, report, [case.key_cert], late).check == "validity"
    crl = case.amd.crl(revoked=(case.amd.ask.serial_number,))
    revoked = opts(case.amd.roots, crls=[crl])
    assert failed_check(verify_report, report, [case.key_cert], revoked).check == "revocation"
    forged = replace(report, measurement=bytes(48))
    assert failed_check(verify_report, forged, [case.key_cert], opts(case.amd.roots)).check == (
        "report-signature"
    )
    clear_caches()
    assert len(ISSUED_BY) == 0
