"""Verify an SEV-SNP report: signature, VCEK/VLEK chain to a pinned ARK, CRL, bindings.

The order follows go-sev-guest's ``verify.SnpAttestation``: find the endorsement key the
report names, chain it to the pinned ARK of its product (RSA-PSS, SHA-384), check validity
at ``now`` and the ARK's CRL when one is at hand, check the report's ECDSA P-384 signature,
then bind the report to the certificate: REPORTED_TCB must equal the TCB rebuilt from the
certificate's SPL extensions, and CHIP_ID must equal its hwID. Policy is not applied here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from motte.attest._checks import CheckLog, RuleResult
from motte.attest._memo import AMD_KEY_CERTS, ISSUED_BY, VALIDITY
from motte.attest._x509 import common_name, fingerprint
from motte.attest.errors import CollateralError, EvidenceParseError
from motte.attest.snp._abi import (
    PRODUCT_TCB_LAYOUT,
    SIGNATURE_ALGO_ECDSA_P384_SHA384,
    Report,
    decode_tcb,
)
from motte.attest.snp._certs import AmdKeyCertificate, key_type_of, parse_amd_key_certificate
from motte.attest.snp._roots import AmdChain, AmdRoots, pinned_amd_roots

if TYPE_CHECKING:
    from cryptography import x509


@dataclass(frozen=True, slots=True)
class SnpVerifyOptions:
    """How to verify. ``now`` is required: samples and caches carry expired certificates.

    ``roots``: None means the AMD roots shipped with motte. ``crls``: CRLs at hand (from
    the evidence, ``--certs`` or the cache); those not issued by the chain's ARK are ignored.
    ``require_crl``: fail when no CRL for the chain's ARK is at hand (else the check is
    recorded as skipped).
    """

    now: datetime
    roots: AmdRoots | None = None
    crls: Sequence[x509.CertificateRevocationList] = ()
    require_crl: bool = False

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("SnpVerifyOptions.now must be timezone-aware")


@dataclass(frozen=True, slots=True)
class SnpVerified:
    """A report whose signature and chain verified, with what it was verified against."""

    report: Report
    key: AmdKeyCertificate
    chain: AmdChain
    checks: tuple[RuleResult, ...] = field(default=())

    @property
    def product(self) -> str:
        return self.key.product

    def claims(self) -> dict[str, Any]:
        """The verified report as JSON-able claims, TCBs decoded for the product."""
        out = self.report.to_dict(product=self.product)
        out["key"] = self.key.to_dict()
        out["ark_sha256"] = fingerprint(self.chain.ark)
        return out

    def reported_tcb(self) -> dict[str, int]:
        return decode_tcb(self.report.reported_tcb, PRODUCT_TCB_LAYOUT[self.product])


def _pick_key_certificate(
    report: Report, certificates: Sequence[x509.Certificate], log: CheckLog
) -> AmdKeyCertificate:
    want = report.signing_key
    candidates = [c for c in certificates if key_type_of(c) == want]
    if not candidates:
        raise CollateralError(
            f"no {want.upper()} certificate for this SNP report",
            hint=f"pass the {want.upper()} with --certs (DER or PEM), or --online to fetch it"
            if want == "vcek"
            else "pass the VLEK with --certs; the cloud provider supplies it (auxblob)",
        )
    parsed: list[AmdKeyCertificate] = []
    for c in candidates:
        try:
            parsed.append(
                AMD_KEY_CERTS.get_or_compute(
                    fingerprint(c), lambda c=c: parse_amd_key_certificate(c)
                )
            )
        except EvidenceParseError as e:
            log.fail(f"{want}-extensions", e.message)
    # Several candidates (a cache, a bundle): prefer the one made for this chip and TCB.
    for k in parsed:
        if k.tcb == report.reported_tcb and (k.hwid is None or report.chip_id.startswith(k.hwid)):
            return k
    return parsed[0]


def verify_report(
    report: Report,
    certificates: Sequence[x509.Certificate],
    options: SnpVerifyOptions,
) -> SnpVerified:
    """Verify ``report`` with the VCEK/VLEK among ``certificates``; raise or return claims.

    Raises :class:`EvidenceVerificationError` (``check`` names the failed step, ``results``
    lists the steps before it) or :class:`CollateralError` when no endorsement key is given.
    """
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    log = CheckLog("verify")
    now = options.now
    roots = options.roots or pinned_amd_roots()

    if report.signing_key == "none":
        log.fail("signing-key", "SIGNING_KEY is 7: the report is not signed")
    key = _pick_key_certificate(report, certificates, log)
    kname = key.key_type.upper()
    log.ok(
        f"{key.key_type}-extensions",
        f"{kname} for {key.product_name}, TCB {key.tcb:#018x}"
        + (f", CSP {key.csp_id}" if key.csp_id else ""),
    )
    if report.product is not None and report.product != key.product:
        log.fail(
            "product",
            f"report CPUID says {report.product}, the {kname} is for {key.product}",
        )

    chain = roots.chain(key.product, key.key_type)
    ark = chain.ark
    # A supplied certificate calling itself this ARK must be the pinned one: a different
    # root is never trusted (other products' ARKs in a bundle are simply not used).
    for c in certificates:
        if common_name(c) == common_name(ark) and fingerprint(c) != fingerprint(ark):
            log.fail(
                "ark",
                f"supplied {common_name(c)} (sha256 {fingerprint(c)[:16]}...) is not the "
                f"pinned {common_name(ark)} (sha256 {fingerprint(ark)[:16]}...)",
            )
    log.ok("ark", f"pinned {common_name(ark)} sha256 {fingerprint(ark)}")

    ask = _issuing_ask(key.certificate, chain, certificates, log)
    for cert, what in ((ark, "ARK"), (ask, common_name(ask)), (key.certificate, kname)):
        not_before, not_after = _validity(cert)
        if now < not_before:
            log.fail(
                "validity",
                f"{what} is not valid before {not_before.isoformat()} "
                f"(verification time {now.isoformat()})",
            )
        if now > not_after:
            log.fail(
                "validity",
                f"{what} expired {not_after.isoformat()} (verification time {now.isoformat()})",
                hint="pass --at to verify at an earlier time, or fetch a current certificate",
            )
    log.ok("validity", f"ARK, {common_name(ask)} and {kname} valid at {now.isoformat()}")

    _check_revocation(ark, ask, options, log)

    try:
        public_key = key.certificate.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):
        log.fail(f"{key.key_type}-key", f"{kname} public key is malformed or of an unknown type")
    if (
        not isinstance(public_key, ec.EllipticCurvePublicKey)
        or public_key.curve.name != "secp384r1"
    ):
        log.fail(f"{key.key_type}-key", f"{kname} key is not ECDSA P-384")
    if report.signature_algo != SIGNATURE_ALGO_ECDSA_P384_SHA384:
        log.fail(
            "report-signature",
            f"SIGNATURE_ALGO is {report.signature_algo}, only 1 (ECDSA P-384 SHA-384) exists",
        )
    r = int.from_bytes(report.signature_r, "little")
    s = int.from_bytes(report.signature_s, "little")
    try:
        public_key.verify(
            encode_dss_signature(r, s), report.signed_bytes(), ec.ECDSA(hashes.SHA384())
        )
    except InvalidSignature:
        log.fail("report-signature", f"the report's signature does not verify with the {kname}")
    log.ok("report-signature", f"ECDSA P-384 signature by the {kname} verifies")

    if report.reported_tcb != key.tcb:
        log.fail(
            "reported-tcb",
            f"REPORTED_TCB {report.reported_tcb:#018x} != {kname} SPLs {key.tcb:#018x}",
        )
    log.ok("reported-tcb", f"REPORTED_TCB {report.reported_tcb:#018x} matches the {kname}")

    if key.hwid is None:
        log.skip("chip-id", f"a {kname} is not bound to one chip")
    elif report.mask_chip_id:
        log.skip("chip-id", "MASK_CHIP_ID is set: the report carries no CHIP_ID")
    else:
        n = len(key.hwid)
        if report.chip_id[:n] != key.hwid or any(report.chip_id[n:]):
            log.fail(
                "chip-id",
                f"CHIP_ID {report.chip_id.hex()[:32]}... != {kname} hwID {key.hwid.hex()[:32]}...",
            )
        log.ok("chip-id", f"CHIP_ID matches the {kname} hwID")
    return SnpVerified(report, key, chain, tuple(log.results))


def _issuing_ask(
    key_cert: x509.Certificate,
    chain: AmdChain,
    certificates: Sequence[x509.Certificate],
    log: CheckLog,
) -> x509.Certificate:
    """The ASK/ASVK that signed the key certificate, itself signed by the pinned ARK.

    The pinned ASK first; a supplied one with the same subject (a re-issued ASK) is
    accepted only if the pinned ARK signed it.
    """
    kname = chain.key_type.upper()
    if _issued_by(key_cert, chain.ask):  # the common case: the pinned ASK signed it
        log.ok(
            "chain",
            f"{kname} <- {common_name(chain.ask)} <- {common_name(chain.ark)} (RSA-PSS SHA-384)",
        )
        return chain.ask
    reason = (
        f"the {kname}'s signature does not verify with {common_name(chain.ask)}"
        if key_cert.issuer == chain.ask.subject
        else f"the {kname} is issued by {key_cert.issuer.rfc4514_string()!r}, "
        f"not {common_name(chain.ask)}"
    )
    pinned = fingerprint(chain.ask)
    for ask in certificates:
        if ask.subject != chain.ask.subject or fingerprint(ask) == pinned:
            continue
        if not _issued_by(ask, chain.ark):
            reason = f"supplied {common_name(ask)} is not signed by the pinned ARK"
            continue
        if _issued_by(key_cert, ask):
            log.ok(
                "chain",
                f"{kname} <- re-issued {common_name(ask)} <- {common_name(chain.ark)} "
                "(RSA-PSS SHA-384)",
            )
            return ask
    log.fail("chain", reason)


def _validity(cert: x509.Certificate) -> tuple[datetime, datetime]:
    return VALIDITY.get_or_compute(
        fingerprint(cert), lambda: (cert.not_valid_before_utc, cert.not_valid_after_utc)
    )


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer`` signed ``cert`` (remembered per exact pair of certificates)."""
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

    def check() -> bool:
        try:
            cert.verify_directly_issued_by(issuer)
        except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
            return False
        return True

    return ISSUED_BY.get_or_compute((fingerprint(cert), fingerprint(issuer)), check)


def _check_revocation(
    ark: x509.Certificate, ask: x509.Certificate, options: SnpVerifyOptions, log: CheckLog
) -> None:
    """The ARK's CRL lists revoked ASKs/ASVKs (VCEKs are never revoked, only outdated)."""
    now = options.now
    mine = [c for c in options.crls if c.issuer == ark.subject]
    if not mine:
        if options.require_crl:
            log.fail(
                "revocation",
                f"no CRL from {common_name(ark)} at hand and the policy requires one",
                hint="pass the KDS CRL with --certs, or --online to fetch it",
            )
        log.skip("revocation", f"no CRL from {common_name(ark)} at hand")
        return
    for crl in mine:
        if not crl.is_signature_valid(ark.public_key()):  # type: ignore[arg-type]
            log.fail("revocation", f"a CRL claiming issuer {common_name(ark)} is not signed by it")
        next_update = crl.next_update_utc
        if now < crl.last_update_utc or (next_update is not None and now > next_update):
            log.fail(
                "revocation",
                f"the {common_name(ark)} CRL is valid {crl.last_update_utc.isoformat()} to "
                f"{next_update.isoformat() if next_update else 'open end'}, not at "
                f"{now.isoformat()}",
                hint="fetch a current CRL (--online) or pass --at",
            )
        revoked = crl.get_revoked_certificate_by_serial_number(ask.serial_number)
        if revoked is not None:
            log.fail(
                "revocation",
                f"{common_name(ask)} (serial {ask.serial_number:#x}) was revoked "
                f"{revoked.revocation_date_utc.isoformat()}",
            )
    log.ok("revocation", f"{common_name(ask)} is not on the {common_name(ark)} CRL")
