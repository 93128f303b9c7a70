"""Intel samples through the recipe: motte.attest.intel verifies, the policy judges.

(The Intel verifier's own tests are tests/attest/test_intel_*.py.) Collateral in the samples
is valid from its issue date to its nextUpdate, so each case pins a time inside that window.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from motte.attest import parse_policy, verify_evidence
from motte.attest._validate import validate_intel
from tests.conftest import shared_testdata

JULY_2025 = datetime(2025, 7, 1, tzinfo=UTC)
MARCH_2026 = datetime(2026, 3, 1, tzinfo=UTC)


def sample(path: str) -> bytes:
    return shared_testdata("attestation", *path.split("/")).read_bytes()


TDX = "dcap-qvl/tdx_quote"
TDX_COLL = "dcap-qvl/tdx_quote_collateral.json"
SGX = "dcap-qvl/sgx_quote"
SGX_COLL = "dcap-qvl/sgx_quote_collateral.json"
OUTDATED = "dcap-qvl/tdx_quote_outdated"
OUTDATED_COLL = "dcap-qvl/tdx_quote_outdated_collateral.json"
AUG_2025 = datetime(2025, 8, 1, tzinfo=UTC)
JUNE_2025 = datetime(2025, 6, 1, tzinfo=UTC)

# (id, quote, collateral, time, accepted, first failing rule)
CASES = [
    ("dcap-tdx-uptodate", TDX, TDX_COLL, JULY_2025, True, None),
    ("dcap-sgx-config-and-sw-hardening", SGX, SGX_COLL, JULY_2025, False, "tcb-status"),
    ("dcap-tdx-outdated", OUTDATED, OUTDATED_COLL, MARCH_2026, False, "tcb-level"),
    ("trustee-tdx-v5", "trustee/tdx_quote_5.dat", OUTDATED_COLL, MARCH_2026, False, "tcb-level"),
    ("tdx-collateral-expired", TDX, TDX_COLL, AUG_2025, False, "collateral-expired"),
    ("tdx-collateral-not-yet", TDX, TDX_COLL, JUNE_2025, False, "collateral-not-yet-valid"),
    ("tdx-wrong-collateral", TDX, SGX_COLL, JULY_2025, False, None),
    ("trustee-occlum", "trustee/occlum_quote.dat", None, JULY_2025, False, "collateral"),
    ("trustee-tdx4", "trustee/tdx_quote_4.dat", None, JULY_2025, False, "collateral"),
    ("trustee-tdx6", "trustee/tdx_quote_6.dat", None, JULY_2025, False, "collateral"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("quote", "coll", "at", "accepted", "failing"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_intel_sample_outcomes(quote, coll, at, accepted, failing) -> None:
    v = verify_evidence(sample(quote), collateral=sample(coll) if coll else None, now=at)
    assert v.accepted is accepted, v.rules
    if failing:
        assert v.failures[0].rule == failing, v.reason
    if not accepted:
        assert v.reason


def test_policy_can_accept_a_named_tcb_status_and_its_advisories() -> None:
    policy = parse_policy(
        '[sgx]\naccepted_tcb_statuses = ["UpToDate", "ConfigurationAndSWHardeningNeeded"]\n'
        'allowed_advisories = ["INTEL-SA-00289", "INTEL-SA-00615"]\n'
    )
    v = verify_evidence(sample(SGX), collateral=sample(SGX_COLL), policy=policy, now=JULY_2025)
    assert v.accepted, v.reason
    assert v.kind == "sgx"
    narrower = parse_policy(
        '[sgx]\naccepted_tcb_statuses = ["ConfigurationAndSWHardeningNeeded"]\n'
        'allowed_advisories = ["INTEL-SA-00289"]\n'
    )
    v = verify_evidence(sample(SGX), collateral=sample(SGX_COLL), policy=narrower, now=JULY_2025)
    assert v.reason == "advisories: advisories not allowed by the policy: INTEL-SA-00615"


def test_tdx_measurement_rules() -> None:
    ok = verify_evidence(sample(TDX), collateral=sample(TDX_COLL), now=JULY_2025)
    mr_td = ok.claims["mr_td"]
    assert ok.measurement == mr_td
    good = parse_policy(f'[tdx]\nmr_td = ["{mr_td}"]\nrtmr0 = "{ok.claims["rtmr0"]}"')
    assert verify_evidence(
        sample(TDX), collateral=sample(TDX_COLL), policy=good, now=JULY_2025
    ).accepted
    bad = parse_policy(f'[tdx]\nmr_td = ["{"00" * 48}"]\nrtmr3 = "{"11" * 48}"')
    v = verify_evidence(
        sample(TDX),
        collateral=sample(TDX_COLL),
        policy=bad,
        now=JULY_2025,
        report_data=b"\x01" * 64,
    )
    assert {r.rule for r in v.failures} == {"mr-td", "rtmr3", "report-data"}
    assert f"MRTD: got {mr_td}, want {'00' * 48}" in {r.reason for r in v.failures}


def test_sgx_identity_rules() -> None:
    permissive = '[sgx]\naccepted_tcb_statuses = ["ConfigurationAndSWHardeningNeeded"]\n'
    v = verify_evidence(
        sample(SGX), collateral=sample(SGX_COLL), policy=parse_policy(permissive), now=JULY_2025
    )
    claims = v.claims
    policy = parse_policy(
        permissive
        + f'mr_signer = ["{claims["mr_signer"]}"]\nisv_prod_id = {claims["isv_prod_id"] + 1}\n'
        f"min_isv_svn = {claims['isv_svn'] + 1}\n"
    )
    v = verify_evidence(sample(SGX), collateral=sample(SGX_COLL), policy=policy, now=JULY_2025)
    assert {r.rule for r in v.failures} == {"isv-prod-id", "min-isv-svn"}
    assert {r.rule: r.outcome for r in v.rules}["mr-signer"] == "pass"


def test_debug_td_is_refused_unless_allowed() -> None:
    """The debug rule on real verified claims with the DEBUG attribute set."""
    from motte.attest.intel import (
        IntelVerifyOptions,
        parse_collateral,
        parse_quote,
        verify_quote,
    )

    verified = verify_quote(
        parse_quote(sample(TDX)),
        parse_collateral(sample(TDX_COLL)),
        IntelVerifyOptions(now=JULY_2025),
    )
    debug = replace(verified, debug=True)
    failed = [r.rule for r in validate_intel(debug, parse_policy("")) if r.outcome == "fail"]
    assert failed == ["debug"]
    assert not [
        r for r in validate_intel(debug, parse_policy("allow_debug = true")) if r.outcome == "fail"
    ]


@pytest.mark.parametrize(
    ("quote", "field", "coll"),
    [
        ("trustee/tdx_quote_4.dat", "TDATTRIBUTES.DEBUG", None),
        ("trustee/occlum_quote.dat", "ATTRIBUTES.DEBUG", None),
        # Another FMSPC's collateral: every signature verifies, then tcb-info-mismatch.
        ("trustee/tdx_quote_4.dat", "TDATTRIBUTES.DEBUG", OUTDATED_COLL),
    ],
)
def test_real_debug_samples_are_refused_as_debug(quote: str, field: str, coll: str | None):
    """The two real debug TEEs: no public collateral matches them, so verification stops
    first, and the verdict still says that the policy refuses a debug TEE."""
    v = verify_evidence(sample(quote), collateral=sample(coll) if coll else None, now=JULY_2025)
    assert not v.accepted
    debug = [r for r in v.rules if r.rule == "debug"]
    assert [(r.stage, r.outcome) for r in debug] == [("policy", "fail")]
    assert debug[0].reason.startswith(f"{field} is set")
    assert "did not complete" in debug[0].reason  # said to come from unverified evidence
    allowed = verify_evidence(
        sample(quote),
        collateral=sample(coll) if coll else None,
        now=JULY_2025,
        policy=parse_policy("allow_debug = true"),
    )
    assert not allowed.accepted  # unverified evidence is never accepted
    assert not [r for r in allowed.rules if r.rule == "debug"]


@pytest.mark.parametrize("quote", ["dcap-qvl/tdx_quote", "trustee/tdx_quote_6.dat"])
def test_a_production_tee_that_fails_verification_gets_no_debug_rule(quote: str) -> None:
    v = verify_evidence(sample(quote), now=JULY_2025)
    assert not v.accepted
    assert not [r for r in v.rules if r.rule == "debug"]


INTEL_PASSES = [
    "qe-vendor-id",
    "certification-data",
    "root-ca-crl",
    "pck-chain",
    "pck-crl",
    "qe-report-signature",
    "attestation-key-binding",
    "quote-signature",
    "tcb-info-chain",
    "tcb-info-signature",
    "qe-identity-chain",
    "qe-identity-signature",
    "tcb-info-mismatch",
]


@pytest.mark.parametrize(
    ("quote", "coll", "tail"),
    [(TDX, TDX_COLL, ["tdx-module", "qe-identity", "tcb-level"]),
     (SGX, SGX_COLL, ["qe-identity", "tcb-level"])],
)  # fmt: skip
def test_an_intel_verdict_lists_every_check_that_passed(quote, coll, tail) -> None:
    """As an SNP verdict does: each verification step by its name, in order."""
    v = verify_evidence(sample(quote), collateral=sample(coll), now=JULY_2025)
    verify = [r for r in v.rules if r.stage == "verify"]
    assert [r.rule for r in verify] == INTEL_PASSES + tail
    assert {r.outcome for r in verify} == {"pass"}


def test_a_failed_intel_verification_still_lists_what_passed_before_it() -> None:
    v = verify_evidence(sample(TDX), collateral=sample(TDX_COLL), now=AUG_2025)
    verify = [(r.rule, r.outcome) for r in v.rules if r.stage == "verify"]
    assert verify[:4] == [(name, "pass") for name in INTEL_PASSES[:4]]
    assert verify[4] == ("collateral-expired", "fail") and len(verify) == 5
