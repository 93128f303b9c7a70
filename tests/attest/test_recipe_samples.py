"""Every SEV-SNP sample of the shared test data through the public recipe, with its outcome.

The samples carry certificates and CRLs that expire, so each case pins its verification time
(a date inside every validity window involved) and a second case checks the expiry bites.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from motte.attest import Evidence, verify_evidence
from tests.conftest import shared_testdata

AT_2025 = datetime(2025, 6, 1, tzinfo=UTC)
#: Inside the validity of the Milan CRL carried by the Enarx CSR (2022-05-09..2023-05-09).
AT_ENARX = datetime(2023, 1, 15, tzinfo=UTC)


def read(path: str) -> bytes:
    return shared_testdata("attestation", *path.split("/")).read_bytes()


def failed_rules(verdict) -> list[str]:
    return [r.rule for r in verdict.failures]


TRUSTEE_REPORT = "trustee/snp/test-report.bin"
TRUSTEE_VCEK = "trustee/snp/test-vcek.der"
VLEK_REPORT = "trustee/snp/test-vlek-report.bin"
VLEK = "trustee/snp/test-vlek.der"
ENARX_CSR = "enarx-steward/milan.signed.crl.csr"
AT_2026 = datetime(2026, 1, 1, tzinfo=UTC)

# (id, evidence, certificate files, time, accepted, first failing rule)
SNP_CASES = [
    ("trustee-milan-v2", TRUSTEE_REPORT, [TRUSTEE_VCEK], AT_2025, True, None),
    (
        "virtee-milan-hex",
        "virtee-sev/report_milan.hex",
        ["virtee-sev/vcek_milan.der", "virtee-sev/cert_chain_milan"],
        AT_2025,
        True,
        None,
    ),
    ("trustee-vlek-v3", VLEK_REPORT, [VLEK], AT_2025, True, None),
    ("trustee-vlek-expired", VLEK_REPORT, [VLEK], AT_2026, False, "validity"),
    ("enarx-csr", ENARX_CSR, [], AT_ENARX, True, None),
    ("enarx-csr-crl-expired", ENARX_CSR, [], AT_2025, False, "revocation"),
    (
        "wrong-vcek",
        TRUSTEE_REPORT,
        ["virtee-sev/vcek_milan.der"],
        AT_2025,
        False,
        "report-signature",
    ),
    (
        "invalid-legacy-vcek",
        TRUSTEE_REPORT,
        ["trustee/snp/test-vcek-invalid-legacy.der"],
        AT_2025,
        False,
        "chain",
    ),
    (
        "invalid-new-vcek",
        TRUSTEE_REPORT,
        ["trustee/snp/test-vcek-invalid-new.der"],
        AT_2025,
        False,
        "chain",
    ),
    ("no-vcek", TRUSTEE_REPORT, [], AT_2025, False, "collateral"),
]


@pytest.mark.parametrize(
    ("evidence", "certs", "at", "accepted", "failing"),
    [c[1:] for c in SNP_CASES],
    ids=[c[0] for c in SNP_CASES],
)
def test_snp_sample_outcomes(evidence, certs, at, accepted, failing) -> None:
    v = verify_evidence(read(evidence), certs=[read(c) for c in certs], now=at)
    assert v.accepted is accepted, v.rules
    if failing is None:
        assert v.failures == ()
        assert v.claims_verified
        assert v.kind == "snp"
    else:
        assert failed_rules(v)[0] == failing


def test_evidence_value_carries_the_certificates() -> None:
    ev = Evidence("snp", read(TRUSTEE_REPORT), read(TRUSTEE_VCEK))
    v = verify_evidence(ev, now=AT_2025)
    assert v.accepted
    assert v.measurement == ev.raw[0x90:0xC0].hex()
    assert Evidence.from_dict(ev.to_dict()) == ev
