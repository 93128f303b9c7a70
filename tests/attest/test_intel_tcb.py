"""Each branch of Intel's TCB-level algorithm, end to end through signed synthetic collateral.

The fake platform (tests.attest.test_intel_fakes): SGX components PLATFORM_SGX, PCESVN 13,
TEE_TCB_SVN 05 00 03 .. (TDX module SVN 5, major version 0), QE ISVSVN 8.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from motte.attest.errors import EvidenceVerificationError
from motte.attest.intel import IntelVerified
from tests.attest.test_intel_fakes import (
    PLATFORM_SGX,
    TEE_TCB_SVN,
    id_level,
    level,
    make_collateral,
    make_pki,
    make_quote,
    module_identity,
    qe_identity_doc,
    sgx_extension,
    tcb_info_doc,
    td_report,
    verify,
)

HIGHER_SGX = tuple(v + 1 if i == 7 else v for i, v in enumerate(PLATFORM_SGX))
LOWER_SGX = tuple(v - 1 if i == 0 else v for i, v in enumerate(PLATFORM_SGX))
TDX = tuple(TEE_TCB_SVN)
HIGHER_TDX = tuple(v + 1 if i == 2 else v for i, v in enumerate(TDX))


def run(
    tee: str = "tdx",
    levels: list[dict[str, Any]] | None = None,
    qe_levels: list[dict[str, Any]] | None = None,
    body: Any = None,
    module_identities: list[dict[str, Any]] | None = None,
    **tcb: Any,
) -> IntelVerified:
    collateral = make_collateral(
        tee=tee,
        tcb_info=tcb_info_doc(tee=tee, levels=levels, module_identities=module_identities, **tcb),
        qe_identity=qe_identity_doc(tee=tee, levels=qe_levels),
    )
    return verify(make_quote(tee=tee, body=body), collateral)


def fails(check: str, **kw: Any) -> EvidenceVerificationError:
    with pytest.raises(EvidenceVerificationError) as e:
        run(**kw)
    assert e.value.check == check, e.value
    return e.value


def sgx(status: str, sgx_comps: tuple[int, ...] = PLATFORM_SGX, **kw: Any) -> dict[str, Any]:
    return level(sgx=sgx_comps, tdx=None, status=status, **kw)


# --------------------------------------------------------------------------- platform status


@pytest.mark.parametrize(
    "status",
    [
        "UpToDate",
        "SWHardeningNeeded",
        "ConfigurationNeeded",
        "ConfigurationAndSWHardeningNeeded",
        "OutOfDate",
        "OutOfDateConfigurationNeeded",
        "Revoked",
    ],
)
@pytest.mark.parametrize("tee", ["sgx", "tdx"])
def test_matched_level_status_is_reported(tee: str, status: str) -> None:
    lv = level(tdx=TDX if tee == "tdx" else None, status=status, advisories=("INTEL-SA-00001",))
    v = run(tee=tee, levels=[lv])
    assert (v.tcb_status, v.platform_tcb_status) == (status, status)
    assert v.advisory_ids == ("INTEL-SA-00001",)


def test_sw_hardening_needed_with_advisories() -> None:
    v = run(
        tee="sgx",
        levels=[
            sgx("UpToDate", HIGHER_SGX),
            sgx("SWHardeningNeeded", advisories=("INTEL-SA-00334", "INTEL-SA-00615")),
        ],
    )
    assert v.tcb_status == "SWHardeningNeeded"
    assert v.advisory_ids == ("INTEL-SA-00334", "INTEL-SA-00615")


def test_first_level_the_platform_reaches_wins() -> None:
    levels = [
        sgx("UpToDate", HIGHER_SGX, date="2025-01-01T00:00:00Z"),
        sgx("SWHardeningNeeded", date="2024-06-01T00:00:00Z"),
        sgx("OutOfDate", LOWER_SGX, date="2023-01-01T00:00:00Z"),
    ]
    v = run(tee="sgx", levels=levels)
    assert v.tcb_status == "SWHardeningNeeded"
    assert v.tcb_date == datetime(2024, 3, 13, tzinfo=UTC)  # the QE level's date is older
    # The walk does not depend on the order the JSON lists the levels in.
    assert run(tee="sgx", levels=levels[::-1]).tcb_status == "SWHardeningNeeded"


def test_pcesvn_below_the_level_skips_it() -> None:
    levels = [sgx("UpToDate", pcesvn=14), sgx("OutOfDate", pcesvn=13)]
    assert run(tee="sgx", levels=levels).tcb_status == "OutOfDate"


def test_platform_below_every_level_is_not_supported() -> None:
    err = fails("tcb-level", tee="sgx", levels=[sgx("UpToDate", HIGHER_SGX)])
    assert "not supported" in err.reason


# --------------------------------------------------------------------------- QE identity


@pytest.mark.parametrize(
    ("platform", "qe", "final"),
    [
        ("UpToDate", "OutOfDate", "OutOfDate"),
        ("SWHardeningNeeded", "OutOfDate", "OutOfDate"),
        ("ConfigurationNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"),
        ("ConfigurationAndSWHardeningNeeded", "OutOfDate", "OutOfDateConfigurationNeeded"),
        ("OutOfDate", "OutOfDate", "OutOfDate"),
        ("UpToDate", "Revoked", "Revoked"),
        ("ConfigurationNeeded", "UpToDate", "ConfigurationNeeded"),
    ],
)
@pytest.mark.parametrize("tee", ["sgx", "tdx"])
def test_qe_status_folds_into_the_platform_status(
    tee: str, platform: str, qe: str, final: str
) -> None:
    v = run(
        tee=tee,
        levels=[level(tdx=TDX if tee == "tdx" else None, status=platform)],
        qe_levels=[id_level(9), id_level(8, qe, advisories=("INTEL-SA-00999",))],
    )
    assert (v.tcb_status, v.platform_tcb_status, v.qe_tcb_status) == (final, platform, qe)
    assert v.advisory_ids == ("INTEL-SA-00999",)


def test_qe_below_every_identity_level_is_not_supported() -> None:
    err = fails("qe-identity", qe_levels=[id_level(9)])
    assert "ISVSVN 8 is below every level" in err.reason


@pytest.mark.parametrize(
    ("quote", "reason"),
    [
        ({"qe_mr_signer": b"\x01" * 32}, "MRSIGNER"),
        ({"qe_isv_prod_id": 9}, "ISVPRODID"),
    ],
)
def test_qe_that_is_not_intels_is_refused(quote: dict[str, Any], reason: str) -> None:
    with pytest.raises(EvidenceVerificationError) as e:
        verify(make_quote(**quote), make_collateral())
    assert e.value.check == "qe-identity" and reason in e.value.reason


def test_qe_identity_for_the_other_tee_is_refused() -> None:
    collateral = make_collateral(tee="tdx", qe_identity=qe_identity_doc(tee="sgx"))
    with pytest.raises(EvidenceVerificationError, match="needs TD_QE"):
        verify(make_quote(tee="tdx"), collateral)


def test_qe_attributes_and_miscselect_under_mask() -> None:
    doc = qe_identity_doc()
    doc["attributes"] = "13000000000000000000000000000000"
    with pytest.raises(EvidenceVerificationError, match="QE ATTRIBUTES"):
        verify(make_quote(), make_collateral(qe_identity=doc))
    doc = qe_identity_doc()
    doc["attributesMask"] = "00000000000000000000000000000000"
    doc["attributes"] = "00000000000000000000000000000000"
    assert verify(make_quote(), make_collateral(qe_identity=doc)).tcb_status == "UpToDate"
    doc = qe_identity_doc()
    doc["miscselect"] = "01000000"
    with pytest.raises(EvidenceVerificationError, match="MISCSELECT"):
        verify(make_quote(), make_collateral(qe_identity=doc))


# --------------------------------------------------------------------------- TDX levels


def test_tdx_components_choose_a_lower_level() -> None:
    levels = [
        level(tdx=HIGHER_TDX, status="UpToDate"),
        level(tdx=TDX, status="OutOfDate", advisories=("INTEL-SA-01036",)),
    ]
    v = run(levels=levels)
    assert (v.tcb_status, v.advisory_ids) == ("OutOfDate", ("INTEL-SA-01036",))
    assert v.tdx_module_tcb_status == "UpToDate"  # TDX 1.0 module: no identity to consult


def test_tdx_below_every_level_is_not_supported() -> None:
    err = fails("tcb-level", levels=[level(tdx=HIGHER_TDX)])
    assert "TEE_TCB_SVN" in err.reason


def test_sgx_level_is_found_before_the_tdx_level() -> None:
    """The SGX status comes from the first level the SGX TCB reaches, even when the TDX
    components only reach a later one."""
    v = run(levels=[level(tdx=HIGHER_TDX, status="UpToDate"), level(tdx=TDX, status="OutOfDate")])
    assert v.platform_tcb_status == "OutOfDate"


def test_sgx_tcb_info_for_a_td_is_refused() -> None:
    collateral = make_collateral(tee="tdx", tcb_info=tcb_info_doc(tee="sgx"))
    with pytest.raises(EvidenceVerificationError) as e:
        verify(make_quote(tee="tdx"), collateral)
    assert e.value.check == "tcb-info-mismatch"


def test_tcb_info_for_another_fmspc_or_pce_is_refused() -> None:
    with pytest.raises(EvidenceVerificationError, match="FMSPC"):
        verify(make_quote(), make_collateral(tcb_info=tcb_info_doc(fmspc=b"\x11" * 6)))
    pki = make_pki(sgx_extension(pce_id=b"\x00\x01"))
    with pytest.raises(EvidenceVerificationError, match="PCE-ID"):
        verify(make_quote(pki), make_collateral(pki), pki)


# --------------------------------------------------------------------------- TDX module


def test_mrsignerseam_must_be_the_modules_signer() -> None:
    err = fails("tdx-module", tdx_module_mrsigner=b"\x01" * 48)
    assert "MRSIGNERSEAM" in err.reason


def test_seam_attributes_must_be_zero() -> None:
    err = fails("tdx-module", body=td_report(seam_attributes=b"\x01" + bytes(7)))
    assert "SEAMATTRIBUTES" in err.reason


MODULE_TDX = bytes([3, 1, 3] + [0] * 13)  # module SVN 3, major version 1


@pytest.mark.parametrize(
    ("module_status", "platform", "final"),
    [
        ("UpToDate", "UpToDate", "UpToDate"),
        ("OutOfDate", "UpToDate", "OutOfDate"),
        ("OutOfDate", "SWHardeningNeeded", "OutOfDate"),
        ("OutOfDate", "ConfigurationNeeded", "OutOfDateConfigurationNeeded"),
        ("Revoked", "UpToDate", "Revoked"),
        ("UpToDate", "ConfigurationAndSWHardeningNeeded", "ConfigurationAndSWHardeningNeeded"),
    ],
)
def test_module_identity_status_folds_into_the_tdx_status(
    module_status: str, platform: str, final: str
) -> None:
    # Components 0 and 1 belong to the module identity: a level asking for module SVN 9
    # still matches a module at SVN 3 of major version 1.
    lv = level(tdx=tuple([9, 9, 3] + [0] * 13), status=platform)
    v = run(
        levels=[lv],
        body=td_report(tee_tcb_svn=MODULE_TDX),
        module_identities=[
            module_identity(1, [id_level(3, module_status, advisories=("INTEL-SA-01111",))])
        ],
    )
    assert (v.tcb_status, v.tdx_module_tcb_status, v.platform_tcb_status) == (
        final,
        module_status,
        platform,
    )
    assert v.advisory_ids == ("INTEL-SA-01111",)


def test_module_identity_missing_for_the_major_version() -> None:
    err = fails(
        "tdx-module",
        body=td_report(tee_tcb_svn=MODULE_TDX),
        module_identities=[module_identity(3, [id_level(1)])],
    )
    assert "TDX_01" in err.reason


def test_module_svn_below_every_identity_level() -> None:
    err = fails(
        "tcb-level",
        body=td_report(tee_tcb_svn=MODULE_TDX),
        module_identities=[module_identity(1, [id_level(4)])],
    )
    assert "TDX module TDX_01 ISVSVN 3" in err.reason


def test_qe_revoked_after_module_out_of_date_is_revoked() -> None:
    v = run(
        body=td_report(tee_tcb_svn=MODULE_TDX),
        module_identities=[module_identity(1, [id_level(3, "OutOfDate")])],
        qe_levels=[id_level(8, "Revoked")],
    )
    assert v.tcb_status == "Revoked"


# --------------------------------------------------------------------------- TD relaunch


@pytest.mark.parametrize(
    ("platform", "final"),
    [
        ("UpToDate", "TDRelaunchAdvised"),
        ("ConfigurationNeeded", "TDRelaunchAdvisedConfigurationNeeded"),
    ],
)
def test_td_relaunch_advised_when_the_loaded_module_is_current(platform: str, final: str) -> None:
    """TDX 1.5: the TD runs on module SVN 3 (out of date), TEE_TCB_SVN2 shows SVN 5 loaded."""
    body = td_report(
        tee_tcb_svn=MODULE_TDX,
        tee_tcb_svn2=bytes([5, 1, 3] + [0] * 13),
        mr_servicetd=bytes(48),
    )
    identities = [module_identity(1, [id_level(5), id_level(2, "OutOfDate")])]
    v = run(levels=[level(status=platform)], body=body, module_identities=identities)
    assert (v.tcb_status, v.tdx_module_tcb_status) == (final, "OutOfDate")
    # The same TD on a 1.0 report body (no TEE_TCB_SVN2) is simply out of date.
    v10 = run(
        levels=[level(status=platform)],
        body=td_report(tee_tcb_svn=MODULE_TDX),
        module_identities=identities,
    )
    assert v10.tcb_status.startswith("OutOfDate")


def test_no_relaunch_when_the_loaded_module_is_old_too() -> None:
    body = td_report(
        tee_tcb_svn=MODULE_TDX,
        tee_tcb_svn2=MODULE_TDX,
        mr_servicetd=bytes(48),
    )
    identities = [module_identity(1, [id_level(5), id_level(2, "OutOfDate")])]
    assert run(body=body, module_identities=identities).tcb_status == "OutOfDate"


def test_of_two_identical_levels_the_first_listed_wins() -> None:
    """Intel's QVL keeps TCB levels in a set: a repeated level keeps its first status."""
    v = run(tee="sgx", levels=[sgx("SWHardeningNeeded"), sgx("OutOfDate")])
    assert v.tcb_status == "SWHardeningNeeded"
