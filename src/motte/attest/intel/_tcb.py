"""The TCB-level algorithm: which TCB status a verified quote's platform has.

Pure (no signatures, no clock): it takes the quote, the PCK certificate's SGX extension and
collateral whose signatures were already checked, and follows Intel's QVL
(intel/SGX-TDX-DCAP-QuoteVerificationLibrary, QuoteVerifier.cpp, Checks/TcbLevelCheck.cpp,
Checks/TdxModuleCheck.cpp, Checks/TDRelaunchCheck.cpp, EnclaveReportVerifier.cpp):

1. TCB info must be for this TEE (id "TDX" for a TD quote, "SGX" otherwise), this FMSPC and
   this PCE-ID.
2. TDX: MRSIGNERSEAM must equal the TDX module's mrsigner and SEAMATTRIBUTES must be zero
   (and equal the module's). The module is ``tdxModule``, or, when TEE_TCB_SVN[1] (the
   module's major version) is non-zero, the ``tdxModuleIdentities`` entry "TDX_<nn>".
3. QE identity: the QE report's MISCSELECT and ATTRIBUTES under the masks, MRSIGNER and
   ISVPRODID must match; the first level (highest ISVSVN first) with isvsvn <= the QE's
   ISVSVN gives the QE's status.
4. TCB levels, highest first: the SGX level is the first whose sixteen SGX components and
   PCESVN are all <= the PCK certificate's. For TDX the TDX level is the first of those
   levels whose TDX components are also <= TEE_TCB_SVN (bytes 0 and 1 are skipped when
   TEE_TCB_SVN[1] > 0: the module identity judges those). No level: not supported, rejected.
5. TDX module status (module identity level with isvsvn <= TEE_TCB_SVN[0]; UpToDate when
   TEE_TCB_SVN[1] is 0) folds into the TDX level's status: module OutOfDate turns UpToDate /
   SWHardeningNeeded into OutOfDate and ConfigurationNeeded / ConfigurationAndSWHardening-
   Needed into OutOfDateConfigurationNeeded; module Revoked makes it Revoked.
6. TDX 1.5 (body type 3): TDRelaunchAdvised when the platform is current but the running TD
   still reports an old module that TEE_TCB_SVN2 shows was updated (TDRelaunchCheck.cpp).
7. The QE's status folds in the same way as the module's (step 5), last.

Advisory IDs are the union, in that order, of the platform level's, the TDX module level's
and the QE identity level's. ``tcb_date`` is the earliest tcbDate of those levels (Intel's
``tcb_level_date_tag``): the platform is at least as old as its oldest part.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from motte.attest.errors import EvidenceVerificationError
from motte.attest.intel._collateral import (
    IdentityTcbLevel,
    QeIdentity,
    TcbInfo,
    TcbLevel,
    TdxModule,
)
from motte.attest.intel._pck import PckExtensions
from motte.attest.intel._quote import BODY_TD_REPORT15, EnclaveReport, Quote, TdReport

UP_TO_DATE = "UpToDate"
SW_HARDENING_NEEDED = "SWHardeningNeeded"
CONFIGURATION_NEEDED = "ConfigurationNeeded"
CONFIGURATION_AND_SW_HARDENING_NEEDED = "ConfigurationAndSWHardeningNeeded"
OUT_OF_DATE = "OutOfDate"
OUT_OF_DATE_CONFIGURATION_NEEDED = "OutOfDateConfigurationNeeded"
REVOKED = "Revoked"
#: Only ever computed (TDX 1.5), never found in TCB info.
TD_RELAUNCH_ADVISED = "TDRelaunchAdvised"
TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED = "TDRelaunchAdvisedConfigurationNeeded"

_CONFIGURATION = {
    CONFIGURATION_NEEDED,
    OUT_OF_DATE_CONFIGURATION_NEEDED,
    CONFIGURATION_AND_SW_HARDENING_NEEDED,
    TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED,
}


@dataclass(frozen=True, slots=True)
class TcbEvaluation:
    """The outcome of the TCB-level walk: the final status and how it was reached."""

    tcb_status: str
    #: The matched TCB level's own status (the TDX level for TDX, else the SGX level).
    platform_tcb_status: str
    #: The SGX level's status (equal to platform_tcb_status for SGX).
    sgx_tcb_status: str
    #: The TDX module identity level's status; None for SGX, UpToDate for a v1.0 module.
    tdx_module_tcb_status: str | None
    qe_tcb_status: str
    advisory_ids: tuple[str, ...]
    tcb_date: datetime
    tcb_level: TcbLevel
    qe_tcb_level: IdentityTcbLevel
    tdx_module_tcb_level: IdentityTcbLevel | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "tcb_status": self.tcb_status,
            "platform_tcb_status": self.platform_tcb_status,
            "sgx_tcb_status": self.sgx_tcb_status,
            "tdx_module_tcb_status": self.tdx_module_tcb_status,
            "qe_tcb_status": self.qe_tcb_status,
            "advisory_ids": list(self.advisory_ids),
            "tcb_date": self.tcb_date.isoformat(),
            "tcb_level": self.tcb_level.to_dict(),
        }


def evaluate_tcb(
    quote: Quote, pck: PckExtensions, tcb_info: TcbInfo, qe_identity: QeIdentity
) -> TcbEvaluation:
    """Run Intel's TCB-level algorithm; raise EvidenceVerificationError when nothing matches.

    Checks: "tcb-info-mismatch" (wrong TEE, FMSPC or PCE-ID), "tdx-module" (MRSIGNERSEAM,
    SEAMATTRIBUTES, no identity for the module version), "qe-identity" (the QE is not the
    one the identity describes, or its ISVSVN is below every level), "tcb-level" (the
    platform is below every level of the TCB info: not supported).
    """
    _check_tcb_info_applies(quote, pck, tcb_info)
    module = _tdx_module_for(quote, tcb_info) if isinstance(quote.body, TdReport) else None
    qe_level = _qe_identity_level(quote, qe_identity)
    qe_status = qe_level.tcb_status
    sgx_level, tdx_level = _match_levels(quote, pck, tcb_info)
    sgx_status = sgx_level.tcb_status

    module_level: IdentityTcbLevel | None = None
    module_status: str | None = None
    if not isinstance(quote.body, TdReport):
        level = sgx_level
        status = _converge(sgx_status, qe_status)
    else:
        assert module is not None and tdx_level is not None
        level = tdx_level
        module_level, module_status = _tdx_module_status(quote.body, module)
        status = _converge(tdx_level.tcb_status, module_status)
        if status != REVOKED:
            if quote.body_type == BODY_TD_REPORT15:
                status = _relaunch_check(
                    quote.body, tcb_info, sgx_status, status, module_status, qe_status
                )
            status = _converge(status, qe_status)

    advisories: list[str] = []
    for lv in (level, module_level, qe_level):
        for a in lv.advisory_ids if lv is not None else ():
            if a not in advisories:
                advisories.append(a)
    dates = [level.tcb_date, qe_level.tcb_date]
    if module_level is not None:
        dates.append(module_level.tcb_date)
    return TcbEvaluation(
        tcb_status=status,
        platform_tcb_status=level.tcb_status,
        sgx_tcb_status=sgx_status,
        tdx_module_tcb_status=module_status,
        qe_tcb_status=qe_status,
        advisory_ids=tuple(advisories),
        tcb_date=min(dates),
        tcb_level=level,
        qe_tcb_level=qe_level,
        tdx_module_tcb_level=module_level,
    )


def _fail(check: str, message: str) -> EvidenceVerificationError:
    return EvidenceVerificationError(check, message)


def _check_tcb_info_applies(quote: Quote, pck: PckExtensions, tcb_info: TcbInfo) -> None:
    want = "TDX" if quote.tee == "tdx" else "SGX"
    if tcb_info.id != want:
        raise _fail("tcb-info-mismatch", f"TCB info is for {tcb_info.id}, the quote is {want}")
    if tcb_info.fmspc != pck.fmspc:
        raise _fail(
            "tcb-info-mismatch",
            f"TCB info is for FMSPC {tcb_info.fmspc.hex()}, the PCK certificate has "
            f"{pck.fmspc.hex()}",
        )
    if tcb_info.pce_id != pck.pce_id:
        raise _fail(
            "tcb-info-mismatch",
            f"TCB info is for PCE-ID {tcb_info.pce_id.hex()}, the PCK certificate has "
            f"{pck.pce_id.hex()}",
        )
    if tcb_info.tcb_type != 0:
        raise _fail("tcb-info-mismatch", f"TCB info tcbType {tcb_info.tcb_type} is unknown (0)")


def _tdx_module_for(quote: Quote, tcb_info: TcbInfo) -> TdxModule:
    body = quote.body
    assert isinstance(body, TdReport)
    major = body.tee_tcb_svn[1]
    module = tcb_info.tdx_module
    if major > 0:
        module = _find_module_identity(tcb_info, major)
    if module is None:
        raise _fail("tdx-module", "TDX TCB info has no tdxModule")
    if body.mr_signer_seam != module.mrsigner:
        raise _fail(
            "tdx-module",
            f"MRSIGNERSEAM {body.mr_signer_seam.hex()} is not the TDX module signer "
            f"{module.mrsigner.hex()}{f' of {module.id}' if module.id else ''}",
        )
    # Intel's QVL requires SEAMATTRIBUTES to be zero and equal to the module's attributes.
    if any(body.seam_attributes) or body.seam_attributes != module.attributes:
        raise _fail(
            "tdx-module",
            f"SEAMATTRIBUTES {body.seam_attributes.hex()} is not zero / not the module's "
            f"{module.attributes.hex()}",
        )
    return module


def _find_module_identity(tcb_info: TcbInfo, major: int) -> TdxModule:
    want = f"TDX_{major:02X}"
    for identity in tcb_info.tdx_module_identities:
        if identity.id.upper() == want:
            return identity
    raise _fail(
        "tdx-module",
        f"TEE_TCB_SVN[1] = {major}: TCB info has no TDX module identity {want}",
    )


def _tdx_module_status(body: TdReport, module: TdxModule) -> tuple[IdentityTcbLevel | None, str]:
    if body.tee_tcb_svn[1] == 0:
        return None, UP_TO_DATE
    isvsvn = body.tee_tcb_svn[0]
    for lv in module.tcb_levels:
        if isvsvn >= lv.isvsvn:
            return lv, lv.tcb_status
    raise _fail(
        "tcb-level",
        f"TDX module {module.id} ISVSVN {isvsvn} is below every level of its identity "
        "(not supported)",
    )


def _qe_identity_level(quote: Quote, identity: QeIdentity) -> IdentityTcbLevel:
    want = "TD_QE" if quote.tee == "tdx" else "QE"
    if identity.id != want:
        raise _fail(
            "qe-identity", f"enclave identity is {identity.id}, a {quote.tee} quote needs {want}"
        )
    qe: EnclaveReport = quote.qe_report
    if qe.misc_select & identity.miscselect_mask != identity.miscselect:
        raise _fail(
            "qe-identity",
            f"QE MISCSELECT {qe.misc_select:#010x} under mask {identity.miscselect_mask:#010x} "
            f"is not {identity.miscselect:#010x}",
        )
    masked = bytes(a & m for a, m in zip(qe.attributes, identity.attributes_mask, strict=True))
    if masked != identity.attributes:
        raise _fail(
            "qe-identity",
            f"QE ATTRIBUTES {qe.attributes.hex()} under mask {identity.attributes_mask.hex()} "
            f"is not {identity.attributes.hex()}",
        )
    if qe.mr_signer != identity.mrsigner:
        raise _fail(
            "qe-identity",
            f"QE MRSIGNER {qe.mr_signer.hex()} is not {identity.mrsigner.hex()}",
        )
    if qe.isv_prod_id != identity.isvprodid:
        raise _fail("qe-identity", f"QE ISVPRODID {qe.isv_prod_id} is not {identity.isvprodid}")
    for lv in identity.tcb_levels:
        if qe.isv_svn >= lv.isvsvn:
            return lv
    raise _fail(
        "qe-identity",
        f"QE ISVSVN {qe.isv_svn} is below every level of the {identity.id} identity "
        "(not supported)",
    )


def _match_levels(
    quote: Quote, pck: PckExtensions, tcb_info: TcbInfo
) -> tuple[TcbLevel, TcbLevel | None]:
    tee_tcb_svn = quote.body.tee_tcb_svn if isinstance(quote.body, TdReport) else None
    # Bytes 0 and 1 (module SVN and major version) are judged by the module identity.
    first_tdx = 2 if tee_tcb_svn is not None and tee_tcb_svn[1] > 0 else 0
    sgx_level: TcbLevel | None = None
    for lv in tcb_info.tcb_levels:
        if pck.pcesvn < lv.pcesvn or any(
            have < need for have, need in zip(pck.tcb_components, lv.sgx_components, strict=True)
        ):
            continue
        if tee_tcb_svn is None:
            return lv, None
        sgx_level = sgx_level or lv
        assert lv.tdx_components is not None
        if all(tee_tcb_svn[i] >= lv.tdx_components[i] for i in range(first_tdx, 16)):
            return sgx_level, lv
    if sgx_level is None:
        raise _fail(
            "tcb-level",
            f"platform SGX TCB (components {list(pck.tcb_components)}, PCESVN {pck.pcesvn}) "
            f"is below every level of TCB info {tcb_info.fmspc.hex()} (not supported)",
        )
    assert tee_tcb_svn is not None
    raise _fail(
        "tcb-level",
        f"TEE_TCB_SVN {tee_tcb_svn.hex()} is below every TDX level of TCB info "
        f"{tcb_info.fmspc.hex()} the platform's SGX TCB reaches (not supported)",
    )


def _converge(status: str, other: str | None) -> str:
    """Fold a QE or TDX module status (UpToDate/OutOfDate/Revoked) into a platform status."""
    if other == OUT_OF_DATE:
        if status in (UP_TO_DATE, SW_HARDENING_NEEDED):
            return OUT_OF_DATE
        if status in (CONFIGURATION_NEEDED, CONFIGURATION_AND_SW_HARDENING_NEEDED):
            return OUT_OF_DATE_CONFIGURATION_NEEDED
    if other == REVOKED:
        return REVOKED
    return status


def _relaunch_check(
    body: TdReport,
    tcb_info: TcbInfo,
    sgx_status: str,
    tdx_status: str,
    module_status: str,
    qe_status: str,
) -> str:
    """TDRelaunchAdvised: TEE_TCB_SVN2 (the module now loaded) is current, the TD is not."""
    svn2 = body.tee_tcb_svn2
    if svn2 is None or qe_status in (OUT_OF_DATE, REVOKED):
        return tdx_status
    if sgx_status not in (
        UP_TO_DATE,
        SW_HARDENING_NEEDED,
        CONFIGURATION_NEEDED,
        CONFIGURATION_AND_SW_HARDENING_NEEDED,
    ):
        return tdx_status
    if tdx_status not in (OUT_OF_DATE, OUT_OF_DATE_CONFIGURATION_NEEDED):
        return tdx_status
    if module_status != OUT_OF_DATE:
        return tdx_status
    latest = tcb_info.tcb_levels[0]
    assert latest.tdx_components is not None
    if svn2[1] == 0:
        current = svn2[0] >= latest.tdx_components[0]
    else:
        identity = _find_module_identity(tcb_info, svn2[1])
        current = svn2[0] >= identity.tcb_levels[0].isvsvn
    if not (current and svn2[2] >= latest.tdx_components[2]):
        return tdx_status
    if sgx_status in _CONFIGURATION or tdx_status in _CONFIGURATION:
        return TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED
    return TD_RELAUNCH_ADVISED
