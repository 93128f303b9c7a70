"""The recipe: evidence in, Verdict out. Parse, verify, validate, and never raise for bad input.

:func:`verify_evidence` is what the CLI, the Steward and the benchmarks call. Any way the
evidence can be wrong (malformed, forged, expired, revoked, outside the policy, collateral
missing) ends in a rejected :class:`Verdict` whose rules say why; only a caller's misuse
(an unknown kind, a naive datetime) raises.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from motte.attest._checks import CheckLog, RuleResult
from motte.attest._enarx import parse_enarx_csr
from motte.attest._evidence import (
    KINDS,
    MAX_EVIDENCE_BYTES,
    Evidence,
    decode_evidence_text,
    detect_kind,
)
from motte.attest._memo import INTEL_COLLATERAL, intel_chain_cache
from motte.attest._policy import Policy, default_policy
from motte.attest._tsm import parse_tsm_capture
from motte.attest._validate import (
    DEBUG_FIELD,
    check_debug,
    validate_intel,
    validate_sim,
    validate_snp,
)
from motte.attest._verdict import Verdict
from motte.attest._x509 import Bundle, load_bundle
from motte.attest.collateral import CollateralCache
from motte.attest.errors import (
    CollateralError,
    EvidenceParseError,
    EvidenceVerificationError,
)
from motte.attest.sim import SimEvidence, verify_sim_evidence
from motte.attest.snp._abi import Report
from motte.attest.snp._certs import key_type_of, parse_amd_key_certificate
from motte.attest.snp._roots import AmdRoots
from motte.attest.snp._verify import SnpVerifyOptions, verify_report
from motte.errors import RemoteError, UsageError

if TYPE_CHECKING:
    from cryptography import x509


def verify_evidence(
    raw: bytes | Evidence,
    *,
    kind: str | None = None,
    certs: Sequence[bytes] = (),
    collateral: bytes | None = None,
    policy: Policy | None = None,
    now: datetime | None = None,
    report_data: bytes | None = None,
    cache: CollateralCache | None = None,
    online: bool = False,
    amd_roots: AmdRoots | None = None,
    intel_root: x509.Certificate | None = None,
) -> Verdict:
    """Judge attestation evidence; returns a Verdict, accepted or rejected with reasons.

    - ``raw``: the evidence bytes (or hex text of them), or an :class:`Evidence`.
    - ``kind``: "snp", "tdx", "sgx", "tsm", "sim", "enarx"; detected when None.
    - ``certs``: certificate/CRL blobs (PEM, DER, PkiPath, SNP cert table) for SNP.
    - ``collateral``: Intel PCS collateral JSON (dcap-qvl layout) for TDX/SGX.
    - ``policy``: the relying party's policy; None means :func:`default_policy`.
    - ``now``: the verification time (timezone-aware); None means the current time.
    - ``report_data``: the expected REPORT_DATA (<= 64 bytes, zero-padded); overrides the
      policy's. Pass :func:`bind_report_data` of key, workload and nonce.
    - ``cache``: where to look for (and, ``online``, store) collateral; None means none.
    - ``online``: fetch missing collateral from AMD KDS / Intel PCS (through ``cache``).
    - ``amd_roots`` / ``intel_root``: replace the pinned vendor roots (tests, private PKIs).
    """
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None or now.utcoffset() is None:
        raise UsageError("verify_evidence: now must be timezone-aware")
    if report_data is not None and len(report_data) > 64:
        raise UsageError(
            f"verify_evidence: report_data is at most 64 bytes, not {len(report_data)}"
        )
    evidence_certs: list[tuple[str, bytes]] = []
    if isinstance(raw, Evidence):
        kind = kind or raw.kind
        if raw.certs:
            evidence_certs.append(("evidence certificates", raw.certs))
        raw = raw.raw
    if not isinstance(raw, bytes | bytearray):
        raise UsageError("verify_evidence: raw must be bytes or an Evidence")
    if kind is not None and kind not in KINDS:
        raise UsageError(f"verify_evidence: unknown kind {kind!r}; one of {', '.join(KINDS)}")
    if online and cache is None:
        cache = CollateralCache()
    run = _Run(
        now=now,
        policy=(policy or default_policy()).with_report_data(report_data),
        certs=[(f"certificate file {i + 1}", c) for i, c in enumerate(certs)] + evidence_certs,
        collateral=collateral,
        cache=cache,
        online=online,
        amd_roots=amd_roots,
        intel_root=intel_root,
    )
    return run.verdict(bytes(raw), kind)


@dataclass
class _Run:
    now: datetime
    policy: Policy
    certs: list[tuple[str, bytes]]
    collateral: bytes | None
    cache: CollateralCache | None
    online: bool
    amd_roots: AmdRoots | None
    intel_root: Any
    rules: list[RuleResult] = field(default_factory=list)
    kind: str | None = None
    format: str | None = None
    measurement: str | None = None
    claims: dict[str, Any] = field(default_factory=dict)
    verified: bool = False
    #: What parsed but did not (yet) verify: shown as claims for diagnosis when rejected.
    unverified: Any = None
    #: Enarx CSRs: what REPORT_DATA must be (SHA-384 of the CSR key, zero-padded).
    enarx_binding: bytes | None = None

    def parsed(self, what: str) -> None:
        self.rules.append(RuleResult("parse", "parse", "pass", what))

    def verdict(self, raw: bytes, kind: str | None) -> Verdict:
        try:
            if len(raw) > MAX_EVIDENCE_BYTES:
                raise EvidenceParseError(
                    "evidence", "length", f"{len(raw)} bytes; the limit is {MAX_EVIDENCE_BYTES}"
                )
            if kind not in ("tsm", "enarx"):
                raw = decode_evidence_text(raw)
            kind = kind or detect_kind(raw)
            getattr(self, f"_{kind}")(raw)
        except EvidenceParseError as e:
            reason = e.message + (f" ({e.hint})" if e.hint else "")
            self.rules.append(RuleResult("parse", "parse", "fail", reason))
        except EvidenceVerificationError as e:
            self.rules.extend(e.results or (RuleResult("verify", e.check, "fail", e.reason),))
        except (CollateralError, RemoteError) as e:
            reason = e.message + (f" ({e.hint})" if e.hint else "")
            self.rules.append(RuleResult("verify", "collateral", "fail", reason))
        if not self.verified and self.unverified is not None:
            self.claims = self.unverified.to_dict()
            self.rules.extend(_debug_seen_unverified(self.unverified, self.policy))
        accepted = self.verified and not any(r.outcome == "fail" for r in self.rules)
        return Verdict(
            accepted=accepted,
            kind=self.kind,
            format=self.format,
            measurement=self.measurement,
            claims=self.claims,
            rules=tuple(self.rules),
            policy=self.policy.ref(),
            verified_at=self.now.isoformat(),
            claims_verified=self.verified,
        )

    # Kinds ----------------------------------------------------------------------------------

    def _snp(self, raw: bytes, extra: Bundle | None = None, fmt: str = "snp-report") -> None:
        self.format = self.format or fmt
        self.kind = "snp"
        report = Report.from_bytes(raw)
        self.parsed(f"SNP report version {report.version}, signed by {report.signing_key.upper()}")
        self.unverified = report
        self.measurement = report.measurement.hex()
        bundle = self._bundle()
        if extra is not None:
            bundle.extend(extra)
        self._snp_collateral(report, bundle)
        verified = verify_report(
            report,
            bundle.certificates,
            SnpVerifyOptions(
                now=self.now,
                roots=self.amd_roots,
                crls=tuple(bundle.crls),
                require_crl=self.policy.snp.require_crl,
            ),
        )
        self.rules.extend(verified.checks)
        if self.enarx_binding is not None:
            self._check_enarx_binding(verified.report)
        self.claims = verified.claims()
        self.verified = True
        self.rules.extend(validate_snp(verified, self.policy))

    def _check_enarx_binding(self, report: Report) -> None:
        log = CheckLog("verify")
        want = self.enarx_binding
        if report.report_data != want:
            log.fail(
                "report-data-binding",
                f"REPORT_DATA {report.report_data.hex()} != SHA-384(CSR public key) || zeros "
                f"{want.hex() if want else ''}",
            )
        log.ok("report-data-binding", "REPORT_DATA is SHA-384 of the CSR's public key")
        self.rules.extend(log.results)

    def _snp_collateral(self, report: Report, bundle: Bundle) -> None:
        """Add cached (and, online, fetched) VCEKs and CRLs to ``bundle``."""
        want = report.signing_key
        have_key = any(key_type_of(c) == want for c in bundle.certificates)
        cache = self.cache
        if cache is None:
            return
        products = (report.product,) if report.product else ("Milan", "Genoa", "Turin")
        if not have_key and want == "vcek":
            for blob in cache.vceks(report.chip_id, report.reported_tcb, products):
                bundle.extend(load_bundle(blob, "cached VCEK"))
            have_key = any(key_type_of(c) == want for c in bundle.certificates)
            if not have_key and self.online:
                if report.mask_chip_id:
                    raise CollateralError(
                        "the report masks CHIP_ID, so its VCEK cannot be fetched",
                        hint="pass the VCEK with --certs",
                    )
                last: RemoteError | None = None
                for product in _fetch_order(report, products):
                    try:
                        blob = cache.fetch_vcek(product, report.chip_id, report.reported_tcb)
                    except RemoteError as e:  # a v2 report does not say Milan or Genoa
                        last = e
                        continue
                    bundle.extend(load_bundle(blob, f"VCEK from AMD KDS ({product})"))
                    break
                else:
                    assert last is not None
                    raise last
        # CRLs: the cached ones for the key's product, fetched when online and stale.
        keys = [c for c in bundle.certificates if key_type_of(c) == want]
        if not keys:
            return
        try:
            product = parse_amd_key_certificate(keys[0]).product
        except EvidenceParseError:
            return  # verify_report reports it
        if self.online:
            blob = cache.fetch_amd_crl(product, want, self.now)
        else:
            blob = cache.amd_crl(product, want)
        if blob is not None:
            bundle.extend(load_bundle(blob, f"cached {product} CRL"))

    def _tsm(self, raw: bytes) -> None:
        self.format = "tsm"
        capture = parse_tsm_capture(raw)
        self.parsed(f"configfs-tsm capture from provider {capture.provider}")
        if capture.provider == "sev_guest":
            extra = load_bundle(capture.auxblob, "auxblob") if capture.auxblob else None
            self._snp(capture.outblob, extra, "tsm")
        else:
            self._intel(capture.outblob, "tsm")

    def _enarx(self, raw: bytes) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        self.format = "enarx-csr"
        csr = parse_enarx_csr(raw)
        self.parsed(f"Enarx CSR with {csr.tee.upper()} evidence")
        log = CheckLog("verify")
        if csr.tee == "kvm":
            self.kind = None
            log.fail("enarx-evidence", "an Enarx KVM keep carries no TEE evidence at all")
        if csr.tee == "sgx":
            self.kind = "sgx"
            log.fail(
                "enarx-evidence",
                "Enarx SGX evidence (quote, CRLs, TCB info without QE identity) is not "
                "supported; verify the Keep's SGX quote with its PCS collateral instead",
            )
        if not csr.csr.is_signature_valid:
            log.fail("csr-signature", "the CSR's self-signature does not verify")
        log.ok("csr-signature", "the CSR is signed by its own key")
        key = csr.csr.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
            log.fail("csr-key", "an SNP Keep's CSR key must be ECDSA P-384, like the VCEK")
        log.ok("csr-key", "CSR key is ECDSA P-384, like the VCEK (no downgrade)")
        self.rules.extend(log.results)
        assert csr.report is not None and csr.vcek is not None
        extra = Bundle(certificates=[csr.vcek], crls=[crl for _, crl in csr.crls])
        self.enarx_binding = hashlib.sha384(csr.spki).digest() + bytes(16)
        self._snp(csr.report, extra, "enarx-csr")
        self.claims["enarx_csr"] = csr.to_dict()

    def _sim(self, raw: bytes) -> None:
        self.format = "sim"
        self.kind = "sim"
        ev = SimEvidence.from_bytes(raw)
        self.parsed("sim evidence version 1: an INSECURE software keep")
        self.claims = ev.to_dict()
        self.unverified = ev
        self.measurement = ev.measurement.hex()
        try:
            verify_sim_evidence(ev)
        except EvidenceVerificationError as e:
            e.results = (RuleResult("verify", e.check, "fail", e.reason),)
            raise
        self.rules.append(
            RuleResult(
                "verify",
                "sim-signature",
                "pass",
                f"Ed25519 signature by SIGNER_KEY {ev.signer_key.hex()} verifies "
                "(this proves possession of that key, nothing about hardware)",
            )
        )
        self.verified = True
        self.rules.extend(validate_sim(ev, self.policy))

    def _tdx(self, raw: bytes) -> None:
        self._intel(raw, "tdx-quote")

    def _sgx(self, raw: bytes) -> None:
        self._intel(raw, "sgx-quote")

    def _intel(self, raw: bytes, fmt: str) -> None:
        try:
            from motte.attest import intel
        except ImportError:  # pragma: no cover - an installation without the Intel part
            raise CollateralError(
                "Intel TDX/SGX verification is not part of this installation"
            ) from None
        quote = intel.parse_quote(raw)
        self.kind = quote.tee
        self.format = self.format or f"{quote.tee}-quote"
        self.parsed(f"{quote.structure}, certification data type {quote.certification_data_type}")
        self.unverified = quote
        body = quote.body
        self.measurement = (body.mr_td if quote.tee == "tdx" else body.mr_enclave).hex()  # type: ignore[union-attr]
        blob = self._intel_collateral(quote, intel)
        coll = INTEL_COLLATERAL.get_or_compute(
            hashlib.sha256(blob).digest(), lambda: intel.parse_collateral(blob)
        )
        try:
            verified = intel.verify_quote(
                quote, coll, now=self.now, root=self.intel_root, cache=intel_chain_cache()
            )
        except EvidenceVerificationError as e:
            e.results = (RuleResult("verify", e.check, "fail", e.reason),)
            raise
        self.rules.append(
            RuleResult(
                "verify",
                "intel-quote",
                "pass",
                f"PCK chain to the Intel SGX Root CA, CRLs, QE report, attestation key, quote "
                f"signature, TCB info and QE identity verify; FMSPC {verified.fmspc}",
            )
        )
        self.rules.append(
            RuleResult(
                "verify",
                "tcb-level",
                "pass",
                f"TCB status {verified.tcb_status} (platform {verified.platform_tcb_status}, "
                f"QE {verified.qe_tcb_status}); collateral valid until "
                f"{verified.collateral_expires.isoformat()}",
            )
        )
        self.claims = verified.to_dict()
        self.verified = True
        self.rules.extend(validate_intel(verified, self.policy))

    def _intel_collateral(self, quote: Any, intel: Any) -> bytes:
        if self.collateral is not None:
            return self.collateral
        if not quote.pck_chain:
            raise CollateralError(f"{quote.structure} carries no PCK certificate chain")
        from cryptography import x509

        from motte.attest._x509 import issuer_common_name

        pck = x509.load_der_x509_certificate(quote.pck_chain[0])
        fmspc = intel.parse_pck_extensions(pck).fmspc.hex()
        cached = self.cache.intel_collateral(quote.tee, fmspc) if self.cache else None
        if cached is not None and not self.online:
            return cached
        if self.online and self.cache is not None:
            ca = "processor" if "Processor" in issuer_common_name(pck) else "platform"
            return self.cache.fetch_intel_collateral(quote.tee, fmspc, ca, self.now)
        raise CollateralError(
            f"no Intel collateral for FMSPC {fmspc}",
            hint="pass the PCS collateral JSON with --collateral, or --online to fetch it",
        )

    # Helpers -------------------------------------------------------------------------------

    def _bundle(self) -> Bundle:
        bundle = Bundle()
        for name, blob in self.certs:
            try:
                bundle.extend(load_bundle(blob, name))
            except EvidenceParseError as e:  # its message names the file already
                raise CollateralError(e.message, hint=e.hint) from None
        return bundle


def _debug_seen_unverified(evidence: Any, policy: Policy) -> list[RuleResult]:
    """The debug rule on evidence that parsed but did not verify, when it fails: a debug TEE
    is refused whatever else went wrong, and the operator should see that reason too (a
    missing collateral can be fetched; a debug TEE stays one). Only ever a failure, on a
    verdict already rejected: unverified claims never pass a rule."""
    debug = getattr(getattr(evidence, "body", evidence), "debug", False)
    if debug is not True:
        return []
    log = CheckLog("policy")
    kind = getattr(evidence, "tee", "snp")  # an SNP report does not say; Intel quotes do
    check_debug(log, True, DEBUG_FIELD.get(kind, DEBUG_FIELD["snp"]), policy)
    return [
        replace(
            r,
            reason=f"{r.reason} (read from the evidence as parsed: its verification did "
            "not complete)",
        )
        for r in log.results
        if r.outcome == "fail"
    ]


def _fetch_order(report: Report, products: tuple[str, ...]) -> tuple[str, ...]:
    """Which products' KDS to ask: Turin chip IDs are 8 bytes followed by zeros."""
    if len(products) == 1:
        return products
    if not any(report.chip_id[8:]):
        return ("Turin",)
    return tuple(p for p in products if p != "Turin")
