"""Policy validation of verified SNP claims: every rule, every mismatch reported at once."""

from __future__ import annotations

import pytest

from motte.attest import parse_policy, verify_evidence
from motte.attest.snp._abi import POLICY_DEBUG, POLICY_MIGRATE_MA, POLICY_SMT
from tests.attest.fakes import AT, der, make_case

MEAS = bytes([0xAA]) * 48


def judge(case, policy_text: str = "", **kw):
    return verify_evidence(
        case.report,
        certs=[der(case.key_cert)],
        amd_roots=case.amd.roots,
        policy=parse_policy(policy_text) if policy_text else None,
        now=AT,
        **kw,
    )


def outcome(verdict, rule: str) -> str:
    return next(r.outcome for r in verdict.rules if r.rule == rule and r.stage == "policy")


def reason(verdict, rule: str) -> str:
    return next(r.reason for r in verdict.rules if r.rule == rule and r.stage == "policy")


def test_default_policy_accepts_a_plain_report() -> None:
    v = judge(make_case())
    assert v.accepted, v.reason
    assert outcome(v, "measurement") == "skip"
    assert outcome(v, "report-data") == "skip"


def test_debug_refused_unless_the_policy_names_it() -> None:
    case = make_case(policy=0x30000 | POLICY_DEBUG)
    v = judge(case)
    assert not v.accepted and v.reason.startswith("debug:")
    assert judge(case, "allow_debug = true").accepted


def test_migrate_ma_and_smt() -> None:
    case = make_case(policy=0x30000 | POLICY_MIGRATE_MA | POLICY_SMT)
    v = judge(case)
    assert outcome(v, "migrate-ma") == "fail"
    assert judge(case, "[snp]\nallow_migrate_ma = true").accepted
    v = judge(case, "[snp]\nallow_migrate_ma = true\nallow_smt = false")
    assert outcome(v, "smt") == "fail"


def test_every_mismatch_is_reported_with_field_got_and_want() -> None:
    case = make_case(vmpl=2, guest_svn=1)
    want_meas = "bb" * 48
    policy = f"""
[snp]
measurements = ["{want_meas}"]
host_data = "{"01" * 32}"
id_key_digests = ["{"02" * 48}"]
vmpl = 0
min_guest_svn = 5
min_tcb = {{ snp = 9, microcode = 100 }}
"""
    v = judge(case, policy, report_data=b"\x42" * 16)
    failed = {r.rule for r in v.failures}
    assert failed == {
        "measurement",
        "host-data",
        "id-key-digest",
        "vmpl",
        "min-guest-svn",
        "min-tcb",
        "report-data",
    }
    assert reason(v, "measurement") == f"MEASUREMENT: got {MEAS.hex()}, want {want_meas}"
    assert reason(v, "vmpl") == "VMPL: got 2, want 0"
    assert "snp 8 < 9" in reason(v, "min-tcb") and "microcode" not in reason(v, "min-tcb")
    assert reason(v, "report-data").startswith("REPORT_DATA: got 000102")
    assert ("42" * 16 + "00" * 48) in reason(v, "report-data")


def test_matching_values_pass() -> None:
    case = make_case(vmpl=0, guest_svn=3)
    policy = f"""
[snp]
measurements = ["{"00" * 48}", "{MEAS.hex()}"]
host_data = "{"00" * 32}"
vmpl = 0
min_guest_svn = 3
min_tcb = {{ bootloader = 3, tee = 0, snp = 8, microcode = 115 }}
"""
    v = judge(case, policy, report_data=bytes(range(64)))
    assert v.accepted, v.reason
    for rule in ("measurement", "host-data", "vmpl", "min-guest-svn", "min-tcb", "report-data"):
        assert outcome(v, rule) == "pass", rule


def test_report_data_prefix_is_zero_padded() -> None:
    case = make_case(report_data=b"\x07" * 48 + bytes(16))
    assert judge(case, report_data=b"\x07" * 48).accepted
    assert not judge(case, report_data=b"\x07" * 47).accepted


def test_report_data_from_the_policy_file() -> None:
    case = make_case(report_data=b"\x07" * 64)
    assert judge(case, f'report_data = "{"07" * 64}"').accepted
    v = judge(case, f'report_data = "{"08" * 64}"')
    assert v.reason.startswith("report-data:")


def test_author_key_digest_needs_author_key_en() -> None:
    case = make_case(author_key_digest=b"\x05" * 48)
    v = judge(case, f'[snp]\nauthor_key_digests = ["{"05" * 48}"]')
    assert outcome(v, "author-key-digest") == "fail"
    assert "AUTHOR_KEY_EN is clear" in reason(v, "author-key-digest")
    case = make_case(author_key_digest=b"\x05" * 48, signer_info=1)
    assert judge(case, f'[snp]\nauthor_key_digests = ["{"05" * 48}"]').accepted


def test_kind_not_allowed() -> None:
    v = judge(make_case(), 'allowed_kinds = ["tdx"]')
    assert v.reason == "kind: snp is not in allowed_kinds (tdx)"


def test_turin_min_tcb_includes_fmc() -> None:
    case = make_case(
        "Turin", "vcek", 5, tcb={"fmc": 1, "bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}
    )
    assert judge(case, "[snp]\nmin_tcb = { fmc = 1 }").accepted
    v = judge(case, "[snp]\nmin_tcb = { fmc = 2 }")
    assert "fmc 1 < 2" in reason(v, "min-tcb")


@pytest.mark.parametrize("rule", ["measurement", "host-data", "id-key-digest", "min-tcb"])
def test_unasked_rules_are_recorded_as_skipped(rule: str) -> None:
    assert outcome(judge(make_case()), rule) == "skip"
