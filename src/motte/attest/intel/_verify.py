"""verify_quote: a parsed Intel quote plus PCS collateral -> verified claims, or an error.

Steps, in this order (the evidence first, then what Intel says about it), each raising
EvidenceVerificationError with the check's name:

====================================  =====================================================
check                                 what
====================================  =====================================================
qe-vendor-id                          the quote names Intel's quoting enclave
certification-data                    the quote carries its PCK chain (type 5)
root-ca-crl                           the Root CA CRL is the root's and its signature holds
pck-chain                             PCK <- PCK CA <- pinned root: names, signatures,
                                      validity at ``now``, CA flag, the CA not revoked
pck-crl                               the CA's CRL is signed by it; the PCK is not revoked
qe-report-signature                   the PCK key signed the QE report
attestation-key-binding               QE REPORTDATA = SHA-256(attestation key || QE auth
                                      data) || 32 zero bytes
quote-signature                       the attestation key signed header + body
tcb-info-chain / qe-identity-chain    "Intel SGX TCB Signing" <- pinned root, not revoked
tcb-info-signature                    ECDSA over the exact TCB info bytes
qe-identity-signature                 ECDSA over the exact enclave identity bytes
collateral-expired / -not-yet-valid   both CRLs, TCB info and QE identity cover ``now``
tcb-info-mismatch, tdx-module,        the TCB-level algorithm (see ._tcb)
qe-identity, tcb-level
====================================  =====================================================

A verified quote is not yet an accepted one: the TCB status, the debug flag and the
measurements are for the relying party's policy to judge (motte.attest's validate step).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from motte.attest import der as _der
from motte.attest._checks import CheckLog, RuleResult
from motte.attest.errors import EvidenceParseError, EvidenceVerificationError
from motte.attest.intel._chain import (
    Cert,
    ChainCache,
    Checker,
    Crl,
    check_crl_fresh,
    check_not_revoked,
    check_validity,
    pinned_root,
    verify_raw_ecdsa,
)
from motte.attest.intel._collateral import Collateral, QeIdentity, TcbInfo
from motte.attest.intel._pck import (
    SGX_EXTENSION_OID,
    SGX_EXTENSION_OID_BODY,
    PckExtensions,
    parse_sgx_extension_value,
)
from motte.attest.intel._quote import (
    CERT_DATA_PCK_CHAIN,
    CERT_DATA_TYPES,
    INTEL_QE_VENDOR_ID,
    EnclaveReport,
    Quote,
    TdReport,
)
from motte.attest.intel._tcb import TcbEvaluation, evaluate_tcb

if TYPE_CHECKING:
    from cryptography import x509


@dataclass(frozen=True, slots=True)
class IntelVerified:
    """What a verified TDX or SGX quote says, and the TCB status Intel's collateral gives it.

    TDX fields are None for SGX quotes and SGX fields None for TDX quotes.
    """

    tee: Literal["tdx", "sgx"]
    quote_version: int
    #: Final status: UpToDate, SWHardeningNeeded, ConfigurationNeeded,
    #: ConfigurationAndSWHardeningNeeded, OutOfDate, OutOfDateConfigurationNeeded, Revoked,
    #: and for TDX 1.5 quotes TDRelaunchAdvised, TDRelaunchAdvisedConfigurationNeeded.
    tcb_status: str
    advisory_ids: tuple[str, ...]
    fmspc: str
    qe_tcb_status: str
    platform_tcb_status: str
    tdx_module_tcb_status: str | None
    tcb_date: datetime
    tcb_evaluation_data_number: int
    #: The earliest nextUpdate of the collateral used: re-verify with fresh collateral after.
    collateral_expires: datetime
    pck: PckExtensions
    report_data: bytes
    debug: bool
    # TDX
    mr_td: bytes | None = None
    rtmr0: bytes | None = None
    rtmr1: bytes | None = None
    rtmr2: bytes | None = None
    rtmr3: bytes | None = None
    mr_seam: bytes | None = None
    mr_signer_seam: bytes | None = None
    mr_config_id: bytes | None = None
    mr_owner: bytes | None = None
    mr_owner_config: bytes | None = None
    td_attributes: bytes | None = None
    xfam: bytes | None = None
    tee_tcb_svn: bytes | None = None
    mr_servicetd: bytes | None = None
    # SGX
    mr_enclave: bytes | None = None
    mr_signer: bytes | None = None
    isv_prod_id: int | None = None
    isv_svn: int | None = None
    attributes: bytes | None = None
    #: Every verification step that passed, in order (as SnpVerified.checks).
    checks: tuple[RuleResult, ...] = field(default=(), compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name == "checks":
                continue
            value = getattr(self, name)
            if value is None and name not in ("tdx_module_tcb_status",):
                continue
            if isinstance(value, bytes):
                value = value.hex()
            elif isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, PckExtensions):
                value = value.to_dict()
            out[name] = value
        return out


@dataclass(frozen=True, slots=True)
class IntelVerifyOptions:
    """How to verify a quote (the same shape as :class:`motte.attest.snp.SnpVerifyOptions`).

    ``now``: the verification time, timezone-aware, required (samples and caches carry
    expired collateral). ``root``: None means the Intel SGX Root CA shipped with motte (tests
    and private PKIs replace it). ``cache``: a :class:`ChainCache` to reuse parsed and
    verified certificates, CRLs, collateral and QE report signatures across calls; None
    means a private one for this call. Verification is always offline: collateral is an
    argument.
    """

    now: datetime
    root: x509.Certificate | None = None
    cache: ChainCache | None = None

    def __post_init__(self) -> None:
        if self.now.tzinfo is None or self.now.utcoffset() is None:
            raise ValueError("IntelVerifyOptions.now must be a timezone-aware datetime")


def verify_quote(
    quote: Quote, collateral: Collateral, options: IntelVerifyOptions
) -> IntelVerified:
    """Verify ``quote`` against ``collateral`` at ``options.now`` under the Intel SGX Root CA.

    Returns the claims with ``checks``: every step that passed, in order. Raises
    EvidenceVerificationError naming the failed check (its ``results`` list the steps that
    passed before it), EvidenceParseError when a certificate inside is malformed.
    """
    if not isinstance(options, IntelVerifyOptions):
        raise TypeError("verify_quote: options must be an IntelVerifyOptions")
    log = CheckLog("verify")
    try:
        return _verify_quote(quote, collateral, options, log)
    except EvidenceVerificationError as e:
        if not e.results:  # raised by a step, not by log.fail: record it after the passes
            e.results = (*log.results, RuleResult("verify", e.check, "fail", e.reason))
        raise


def _verify_quote(
    quote: Quote, collateral: Collateral, options: IntelVerifyOptions, log: CheckLog
) -> IntelVerified:
    now = options.now
    root = options.root
    checker = Checker(options.cache)
    what = quote.structure
    if quote.header.qe_vendor_id != INTEL_QE_VENDOR_ID:
        raise EvidenceVerificationError(
            "qe-vendor-id",
            f"{what}: QE vendor ID {quote.header.qe_vendor_id.hex()} is not Intel's "
            f"{INTEL_QE_VENDOR_ID.hex()}",
        )
    log.ok("qe-vendor-id", "the quote names Intel's quoting enclave")
    if quote.certification_data_type != CERT_DATA_PCK_CHAIN:
        kind = CERT_DATA_TYPES.get(quote.certification_data_type, "unknown")
        raise EvidenceVerificationError(
            "certification-data",
            f"{what}: certification data type {quote.certification_data_type} ({kind}); only "
            "type 5 (PCK certificate chain) can be verified offline",
            hint="configure the quote provider (QPL/PCCS) to embed the PCK certificate chain",
        )
    log.ok("certification-data", "the quote carries its PCK certificate chain (type 5)")

    if root is None:
        root_cert = pinned_root()
    else:
        from cryptography.hazmat.primitives.serialization import Encoding

        root_cert = checker.certificate(root.public_bytes(Encoding.DER), "Root CA certificate")
    check_validity(root_cert, now, check="pck-chain", what="Root CA certificate")
    root_crl = checker.crl(collateral.root_ca_crl, "Root CA CRL")
    checker.crl_signed_by(root_crl, root_cert, check="root-ca-crl", what="Root CA CRL")
    check_crl_fresh(root_crl, now, what="Root CA CRL")
    log.ok("root-ca-crl", "the Root CA CRL is signed by the pinned Intel SGX Root CA and current")

    pck, pck_ca = _verify_pck_chain(quote, root_cert, root_crl, checker, now)
    log.ok(
        "pck-chain",
        "PCK <- PCK CA <- pinned Intel SGX Root CA: names, signatures, validity, CA not revoked",
    )
    pck_crl = checker.crl(collateral.pck_crl, "PCK CRL")
    _check_crl_issuer_chain(collateral.pck_crl_issuer_chain, pck_ca, root_cert, checker, now)
    checker.crl_signed_by(pck_crl, pck_ca, check="pck-crl", what="PCK CRL")
    check_crl_fresh(pck_crl, now, what="PCK CRL")
    check_not_revoked(pck_crl, pck, check="pck-crl", what="PCK certificate")
    log.ok("pck-crl", "the PCK CRL is signed by the PCK CA, current, and does not list the PCK")

    # The certification chain goes on: PCK key -> QE report -> attestation key -> quote.
    checker.signed(
        pck,
        quote.qe_report.to_bytes(),
        quote.qe_report_signature,
        check="qe-report-signature",
        what=f"{what}: QE report signature",
    )
    log.ok("qe-report-signature", "the PCK key signed the QE report")
    expected = hashlib.sha256(quote.attestation_key + quote.qe_auth_data).digest() + bytes(32)
    if quote.qe_report.report_data != expected:
        raise EvidenceVerificationError(
            "attestation-key-binding",
            f"{what}: QE REPORTDATA {quote.qe_report.report_data.hex()} is not SHA-256("
            f"attestation key || QE auth data) || zeros = {expected.hex()}",
        )
    log.ok(
        "attestation-key-binding",
        "QE REPORTDATA is SHA-256(attestation key || QE auth data) || zeros",
    )
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        ak = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), b"\x04" + quote.attestation_key
        )
    except ValueError:
        raise EvidenceVerificationError(
            "quote-signature", f"{what}: attestation key is not a P-256 point"
        ) from None
    verify_raw_ecdsa(
        ak, quote.signature, quote.signed_bytes(), check="quote-signature",
        what=f"{what}: quote signature",
    )  # fmt: skip
    log.ok("quote-signature", "the attestation key signed the quote (ECDSA P-256)")

    tcb_info = collateral.tcb_info
    qe_identity = collateral.qe_identity
    for body, chain, check, name in (
        (tcb_info, collateral.tcb_info_issuer_chain, "tcb-info", "TCB info"),
        (qe_identity, collateral.qe_identity_issuer_chain, "qe-identity", "QE identity"),
    ):
        _verify_signed_collateral(body, chain, check, name, root_cert, root_crl, checker, now)
        log.ok(f"{check}-chain", "Intel SGX TCB Signing <- pinned root, valid, not revoked")
        log.ok(f"{check}-signature", f"{name} is signed by Intel SGX TCB Signing and current")

    pck_ext = checker.cache._get(("pck-ext", pck.der))
    if pck_ext is None:
        try:
            value = pck.extension(SGX_EXTENSION_OID_BODY)
        except (ValueError, _der.DerError) as e:
            raise EvidenceParseError("PCK certificate", "extensions", str(e)) from None
        if value is None:
            raise EvidenceParseError(
                "PCK certificate", "sgx_extension", f"no SGX extension {SGX_EXTENSION_OID}"
            )
        pck_ext = parse_sgx_extension_value(value)
        checker.cache._put(("pck-ext", pck.der), pck_ext)
    evaluation = evaluate_tcb(quote, pck_ext, tcb_info, qe_identity)
    expiries = [tcb_info.next_update, qe_identity.next_update]
    expiries += [c.x509.next_update_utc or now for c in (pck_crl, root_crl)]
    expires = min(expiries)
    log.ok("tcb-info-mismatch", f"TCB info is for this {quote.tee.upper()} FMSPC and PCE-ID")
    if evaluation.tdx_module_tcb_status is not None:
        log.ok(
            "tdx-module",
            f"MRSIGNERSEAM and SEAMATTRIBUTES are the TDX module's; module TCB status "
            f"{evaluation.tdx_module_tcb_status}",
        )
    log.ok(
        "qe-identity",
        f"the quoting enclave is Intel's ({qe_identity.id}); its TCB status "
        f"{evaluation.qe_tcb_status}",
    )
    log.ok(
        "tcb-level",
        f"TCB status {evaluation.tcb_status} (platform {evaluation.platform_tcb_status}, "
        f"QE {evaluation.qe_tcb_status}); FMSPC {pck_ext.fmspc.hex()}; collateral valid "
        f"until {expires.isoformat()}",
    )
    return _claims(quote, pck_ext, tcb_info, qe_identity, evaluation, expires, log.results)


def _verify_pck_chain(
    quote: Quote, root: Cert, root_crl: Crl, checker: Checker, now: datetime
) -> tuple[Cert, Cert]:
    """The quote's chain is exactly PCK, PCK CA, and the pinned root itself."""
    chain = quote.pck_chain
    if len(chain) != 3:
        raise EvidenceVerificationError(
            "pck-chain",
            f"{quote.structure}: PCK chain has {len(chain)} certificates, expected 3 "
            "(PCK, PCK CA, Root CA)",
        )
    if chain[2] != root.der:
        raise EvidenceVerificationError(
            "pck-chain", f"{quote.structure}: the chain's root is not the pinned Intel SGX Root CA"
        )
    ca = checker.certificate(chain[1], "PCK CA certificate")
    pck = checker.certificate(chain[0], "PCK certificate")
    checker.issued_by(ca, root, check="pck-chain", what="PCK CA certificate", now=now, ca=True)
    check_not_revoked(root_crl, ca, check="pck-chain", what="PCK CA certificate")
    checker.issued_by(pck, ca, check="pck-chain", what="PCK certificate", now=now, ca=False)
    if "SGX PCK Certificate" not in pck.cn:
        raise EvidenceVerificationError(
            "pck-chain", f"leaf certificate CN {pck.cn!r} is not an SGX PCK Certificate"
        )
    return pck, ca


def _check_crl_issuer_chain(
    chain: tuple[bytes, ...], pck_ca: Cert, root: Cert, checker: Checker, now: datetime
) -> None:
    """PCS names the PCK CRL's issuer chain; it must be the quote's own PCK CA and root.

    The CRL itself is checked with the quote's PCK CA (already chained to the pinned
    root), so this only refuses collateral that was assembled for another CA.
    """
    if len(chain) != 2 or chain[1] != root.der:
        raise EvidenceVerificationError(
            "pck-crl",
            "PCK CRL issuer chain is not [PCK CA, pinned Intel SGX Root CA]",
        )
    ca = checker.certificate(chain[0], "PCK CRL issuer certificate")
    if ca.der != pck_ca.der:
        checker.issued_by(
            ca, root, check="pck-crl", what="PCK CRL issuer certificate", now=now, ca=True
        )
        if ca.subject_der != pck_ca.subject_der or ca.public_key() != pck_ca.public_key():
            raise EvidenceVerificationError(
                "pck-crl", "PCK CRL issuer chain names another CA than the quote's PCK CA"
            )


def _verify_signed_collateral(
    body: TcbInfo | QeIdentity,
    issuer_chain: tuple[bytes, ...],
    check: str,
    what: str,
    root: Cert,
    root_crl: Crl,
    checker: Checker,
    now: datetime,
) -> None:
    chain_check = f"{check}-chain"
    if len(issuer_chain) != 2:
        raise EvidenceVerificationError(
            chain_check,
            f"{what} issuer chain has {len(issuer_chain)} certificates, expected 2 "
            "(TCB Signing, Root CA)",
        )
    if issuer_chain[1] != root.der:
        raise EvidenceVerificationError(
            chain_check, f"{what} issuer chain does not end at the pinned Intel SGX Root CA"
        )
    signer = checker.certificate(issuer_chain[0], f"{what} signing certificate")
    checker.issued_by(
        signer, root, check=chain_check, what=f"{what} signing certificate", now=now, ca=False
    )
    check_not_revoked(root_crl, signer, check=chain_check, what=f"{what} signing certificate")
    if signer.cn != "Intel SGX TCB Signing":
        raise EvidenceVerificationError(
            chain_check, f"{what} is signed by {signer.cn!r}, not 'Intel SGX TCB Signing'"
        )
    checker.signed(signer, body.signed_bytes, body.signature, check=f"{check}-signature", what=what)
    if now < body.issue_date:
        raise EvidenceVerificationError(
            "collateral-not-yet-valid",
            f"{what} is issued {body.issue_date.isoformat()}, after {now.isoformat()}",
        )
    if now > body.next_update:
        raise EvidenceVerificationError(
            "collateral-expired",
            f"{what} expired at {body.next_update.isoformat()} (nextUpdate)",
            hint="fetch fresh collateral from Intel PCS or your PCCS",
        )


def _claims(
    quote: Quote,
    pck: PckExtensions,
    tcb_info: TcbInfo,
    qe_identity: QeIdentity,
    ev: TcbEvaluation,
    expires: datetime,
    checks: list[RuleResult],
) -> IntelVerified:
    common: dict[str, Any] = {
        "checks": tuple(checks),
        "tee": quote.tee,
        "quote_version": quote.version,
        "tcb_status": ev.tcb_status,
        "advisory_ids": ev.advisory_ids,
        "fmspc": pck.fmspc.hex(),
        "qe_tcb_status": ev.qe_tcb_status,
        "platform_tcb_status": ev.platform_tcb_status,
        "tdx_module_tcb_status": ev.tdx_module_tcb_status,
        "tcb_date": ev.tcb_date,
        "tcb_evaluation_data_number": min(
            tcb_info.tcb_evaluation_data_number, qe_identity.tcb_evaluation_data_number
        ),
        "collateral_expires": expires,
        "pck": pck,
        "report_data": quote.body.report_data,
        "debug": quote.body.debug,
    }
    body = quote.body
    if isinstance(body, TdReport):
        return IntelVerified(
            **common,
            mr_td=body.mr_td,
            rtmr0=body.rtmr0,
            rtmr1=body.rtmr1,
            rtmr2=body.rtmr2,
            rtmr3=body.rtmr3,
            mr_seam=body.mr_seam,
            mr_signer_seam=body.mr_signer_seam,
            mr_config_id=body.mr_config_id,
            mr_owner=body.mr_owner,
            mr_owner_config=body.mr_owner_config,
            td_attributes=body.td_attributes,
            xfam=body.xfam,
            tee_tcb_svn=body.tee_tcb_svn,
            mr_servicetd=body.mr_servicetd,
        )
    assert isinstance(body, EnclaveReport)
    return IntelVerified(
        **common,
        mr_enclave=body.mr_enclave,
        mr_signer=body.mr_signer,
        isv_prod_id=body.isv_prod_id,
        isv_svn=body.isv_svn,
        attributes=body.attributes,
    )
