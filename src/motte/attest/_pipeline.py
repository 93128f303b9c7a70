"""verify_evidence: evidence in, a Verdict out, in steps that pass values, never state.

::

    parse      prepare_evidence, parse_container, parse_inner      bytes -> ParsedEvidence
    gather     _Tee.gather                                         ALL collateral I/O: files
                                                                   given, the evidence's own
                                                                   certificates, the cache,
                                                                   and (online) AMD KDS /
                                                                   Intel PCS
    verify     the container's checks, then _Tee.verify            pure: signatures, chains,
               (verify_report / verify_quote / verify_sim_evidence  dates, bindings, each with
               with their frozen Options)                           its Options and ``now``
    validate   _Tee.validate                                       pure: the policy, every rule

One dispatch on the kind of what arrived (:mod:`._parse`) and one table of TEEs
(:data:`_TEES`) decide everything kind-specific. Any way the evidence can be wrong
(malformed, forged, expired, revoked, outside the policy, collateral missing) ends in a
rejected :class:`Verdict` whose rules say why; only a caller's misuse (an unknown kind, a
naive datetime) raises.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from motte.attest._checks import CheckLog, RuleResult
from motte.attest._evidence import KINDS, Evidence
from motte.attest._memo import INTEL_COLLATERAL, intel_chain_cache
from motte.attest._parse import (
    FORMATS,
    ParsedEvidence,
    describe,
    parse_container,
    parse_inner,
    prepare_evidence,
)
from motte.attest._policy import Policy, default_policy
from motte.attest._validate import (
    DEBUG_FIELD,
    check_debug,
    validate_intel,
    validate_sim,
    validate_snp,
)
from motte.attest._verdict import LazyClaims, Verdict
from motte.attest.errors import (
    CollateralError,
    EvidenceParseError,
    EvidenceVerificationError,
)
from motte.errors import RemoteError, UsageError

# Each TEE's verifier is imported by its own steps below, when evidence of that TEE arrives.
if TYPE_CHECKING:
    from cryptography import x509

    from motte.attest._x509 import Bundle
    from motte.attest.collateral import CollateralCache
    from motte.attest.sim import SimEvidence
    from motte.attest.snp._abi import Report
    from motte.attest.snp._roots import AmdRoots


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
    evidence_certs: tuple[tuple[str, bytes], ...] = ()
    if isinstance(raw, Evidence):
        kind = kind or raw.kind
        if raw.certs:
            evidence_certs = (("evidence certificates", raw.certs),)
        raw = raw.raw
    if not isinstance(raw, bytes | bytearray):
        raise UsageError("verify_evidence: raw must be bytes or an Evidence")
    if kind is not None and kind not in KINDS:
        raise UsageError(f"verify_evidence: unknown kind {kind!r}; one of {', '.join(KINDS)}")
    if online and cache is None:
        from motte.attest.collateral import CollateralCache

        cache = CollateralCache()
    given = tuple((f"certificate file {i + 1}", c) for i, c in enumerate(certs))
    inputs = _Inputs(
        now=now,
        policy=(policy or default_policy()).with_report_data(report_data),
        sources=_Sources(given + evidence_certs, collateral, cache, online, now),
        amd_roots=amd_roots,
        intel_root=intel_root,
    )
    return _judge(bytes(raw), kind, inputs)


@dataclass(frozen=True, slots=True)
class _Sources:
    """Where collateral may come from, as the caller named it: nothing is read yet."""

    certs: tuple[tuple[str, bytes], ...]
    collateral: bytes | None
    cache: CollateralCache | None
    online: bool
    #: Cached CRLs and collateral older than this are refetched when online.
    now: datetime


@dataclass(frozen=True, slots=True)
class _Inputs:
    now: datetime
    policy: Policy
    sources: _Sources
    amd_roots: AmdRoots | None
    intel_root: Any


class _Tee(NamedTuple):
    """What differs per TEE; every other step is shared."""

    #: (parsed evidence, sources) -> the collateral verification needs. The only step
    #: that reads files, the cache or the network.
    gather: Callable[[ParsedEvidence, _Sources], Any]
    #: (evidence, collateral, inputs) -> the verified value, with ``checks``; raises.
    verify: Callable[[Any, Any, _Inputs], Any]
    #: (verified, policy) -> every policy rule.
    validate: Callable[[Any, Policy], list[RuleResult]]
    #: verified -> the verdict's claims.
    claims: Callable[[Any], dict[str, Any]]


def _judge(raw: bytes, kind: str | None, inputs: _Inputs) -> Verdict:
    rules: list[RuleResult] = []
    told: str | None = None  # the kind told or detected, once the bytes are fit to parse
    parsed: ParsedEvidence | None = None
    verified: Any = None
    try:
        raw, told = prepare_evidence(raw, kind)
        parsed = parse_container(raw, told)
        if parsed.kind in ("tsm", "enarx"):
            rules.append(RuleResult("parse", "parse", "pass", describe(parsed, inner=False)))
        parsed = parse_inner(parsed)
        if parsed.evidence is not None:
            rules.append(RuleResult("parse", "parse", "pass", describe(parsed, inner=True)))
        rules += _container_checks(parsed)
        tee = _TEES[parsed.tee]  # type: ignore[index]  # Enarx KVM and SGX: refused above
        collateral = tee.gather(parsed, inputs.sources)
        verified = tee.verify(parsed.evidence, collateral, inputs)
        rules += verified.checks
        rules += _container_bindings(parsed, verified)
        claims = LazyClaims(partial(_claims, tee, verified, parsed))
        rules += tee.validate(verified, inputs.policy)
    except EvidenceParseError as e:
        verified = None
        rules.append(RuleResult("parse", "parse", "fail", _with_hint(e)))
    except EvidenceVerificationError as e:
        verified = None
        rules += e.results or (RuleResult("verify", e.check, "fail", e.reason),)
    except (CollateralError, RemoteError) as e:
        verified = None
        rules.append(RuleResult("verify", "collateral", "fail", _with_hint(e)))
    evidence = parsed.evidence if parsed is not None else None
    if verified is None:
        claims = LazyClaims(evidence.to_dict if evidence is not None else dict)
        if evidence is not None:
            rules += _debug_seen_unverified(evidence, inputs.policy)
    # What parsed says; else what was told or detected, if anything.
    tee = told if parsed is None else getattr(evidence, "tee", parsed.tee)  # quotes say
    fmt = told if parsed is None else parsed.kind
    return Verdict(
        accepted=verified is not None and not any(r.outcome == "fail" for r in rules),
        kind=tee if tee in _TEES else None,  # not "tsm", "enarx", or an Enarx KVM's "kvm"
        format=FORMATS[fmt] if fmt else None,
        measurement=_measurement(evidence),
        claims=claims,
        rules=tuple(rules),
        policy=inputs.policy.ref(),
        verified_at=inputs.now.isoformat(),
        claims_verified=verified is not None,
    )


def _claims(tee: _Tee, verified: Any, parsed: ParsedEvidence) -> dict[str, Any]:
    out = tee.claims(verified)
    if parsed.kind == "enarx":
        out["enarx_csr"] = parsed.value.to_dict()
    return out


def _measurement(evidence: Any) -> str | None:
    if evidence is None:
        return None
    body = getattr(evidence, "body", None)
    if body is None:  # an SNP report or sim evidence
        return evidence.measurement.hex()  # type: ignore[no-any-return]
    return (body.mr_td if evidence.tee == "tdx" else body.mr_enclave).hex()  # type: ignore[no-any-return]


def _with_hint(e: Any) -> str:
    return e.message + (f" ({e.hint})" if e.hint else "")


# Containers --------------------------------------------------------------------------------


def _container_checks(parsed: ParsedEvidence) -> list[RuleResult]:
    """An Enarx CSR vouches for its own key before its report is read further."""
    if parsed.kind != "enarx":
        return []
    from cryptography.hazmat.primitives.asymmetric import ec

    csr = parsed.value
    log = CheckLog("verify")
    if csr.tee == "kvm":
        log.fail("enarx-evidence", "an Enarx KVM keep carries no TEE evidence at all")
    if csr.tee == "sgx":
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
    return log.results


def _container_bindings(parsed: ParsedEvidence, verified: Any) -> list[RuleResult]:
    """An Enarx CSR's REPORT_DATA must commit to the CSR's key."""
    if parsed.kind != "enarx":
        return []
    log = CheckLog("verify")
    want = hashlib.sha384(parsed.value.spki).digest() + bytes(16)
    got = verified.report.report_data
    if got != want:
        log.fail(
            "report-data-binding",
            f"REPORT_DATA {got.hex()} != SHA-384(CSR public key) || zeros {want.hex()}",
        )
    log.ok("report-data-binding", "REPORT_DATA is SHA-384 of the CSR's public key")
    return log.results


def _container_bundle(parsed: ParsedEvidence) -> Bundle:
    """Certificates the evidence brought along (a tsm auxblob, an Enarx CSR's VCEK and CRLs)."""
    from motte.attest._x509 import Bundle, load_bundle

    value = parsed.value
    if parsed.kind == "tsm" and value.auxblob:
        return load_bundle(value.auxblob, "auxblob")
    if parsed.kind == "enarx" and value.vcek is not None:
        return Bundle(certificates=[value.vcek], crls=[crl for _, crl in value.crls])
    return Bundle()


# SEV-SNP -----------------------------------------------------------------------------------


def _gather_snp(parsed: ParsedEvidence, sources: _Sources) -> Bundle:
    """Every certificate and CRL for an SNP report: the files given, the evidence's own,
    then the cache's (and, online, AMD KDS's) VCEK and CRL when they are missing."""
    from motte.attest._x509 import Bundle, load_bundle
    from motte.attest.snp._certs import key_type_of, parse_amd_key_certificate

    report: Report = parsed.evidence
    bundle = Bundle()
    for name, blob in sources.certs:
        try:
            bundle.extend(load_bundle(blob, name))
        except EvidenceParseError as e:  # its message names the file already
            raise CollateralError(e.message, hint=e.hint) from None
    bundle.extend(_container_bundle(parsed))
    cache = sources.cache
    if cache is None:
        return bundle
    want = report.signing_key
    have_key = any(key_type_of(c) == want for c in bundle.certificates)
    products = (report.product,) if report.product else ("Milan", "Genoa", "Turin")
    if not have_key and want == "vcek":
        for blob in cache.vceks(report.chip_id, report.reported_tcb, products):
            bundle.extend(load_bundle(blob, "cached VCEK"))
        have_key = any(key_type_of(c) == want for c in bundle.certificates)
        if not have_key and sources.online:
            bundle.extend(_fetch_vcek(report, products, cache))
    keys = [c for c in bundle.certificates if key_type_of(c) == want]
    if not keys:
        return bundle
    try:
        product = parse_amd_key_certificate(keys[0]).product
    except EvidenceParseError:
        return bundle  # verify_report reports it
    if sources.online:
        blob = cache.fetch_amd_crl(product, want, sources.now)
    else:
        blob = cache.amd_crl(product, want)
    if blob is not None:
        bundle.extend(load_bundle(blob, f"cached {product} CRL"))
    return bundle


def _fetch_vcek(report: Report, products: tuple[str, ...], cache: CollateralCache) -> Bundle:
    from motte.attest._x509 import load_bundle

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
        return load_bundle(blob, f"VCEK from AMD KDS ({product})")
    assert last is not None
    raise last


def _fetch_order(report: Report, products: tuple[str, ...]) -> tuple[str, ...]:
    """Which products' KDS to ask: Turin chip IDs are 8 bytes followed by zeros."""
    if len(products) == 1:
        return products
    if not any(report.chip_id[8:]):
        return ("Turin",)
    return tuple(p for p in products if p != "Turin")


def _verify_snp(report: Report, bundle: Bundle, inputs: _Inputs) -> Any:
    from motte.attest.snp._verify import SnpVerifyOptions, verify_report

    options = SnpVerifyOptions(
        now=inputs.now,
        roots=inputs.amd_roots,
        crls=tuple(bundle.crls),
        require_crl=inputs.policy.snp.require_crl,
    )
    return verify_report(report, bundle.certificates, options)


# Intel TDX / SGX ---------------------------------------------------------------------------


def _gather_intel(parsed: ParsedEvidence, sources: _Sources) -> Any:
    """The PCS collateral for a quote: the document given, else the cache's for its FMSPC
    (and, online, Intel PCS's when missing or stale). Parsed once per distinct document."""
    from motte.attest import intel

    quote = parsed.evidence
    blob = sources.collateral
    if blob is None:
        blob = _intel_collateral_bytes(quote, sources, intel)
    return INTEL_COLLATERAL.get_or_compute(
        hashlib.sha256(blob).digest(), lambda: intel.parse_collateral(blob)
    )


def _intel_collateral_bytes(quote: Any, sources: _Sources, intel: Any) -> bytes:
    if not quote.pck_chain:
        raise CollateralError(f"{quote.structure} carries no PCK certificate chain")
    from cryptography import x509

    from motte.attest._x509 import issuer_common_name

    pck = x509.load_der_x509_certificate(quote.pck_chain[0])
    fmspc = intel.parse_pck_extensions(pck).fmspc.hex()
    cache = sources.cache
    cached = cache.intel_collateral(quote.tee, fmspc) if cache else None
    if cached is not None and not sources.online:
        return cached
    if sources.online and cache is not None:
        ca = "processor" if "Processor" in issuer_common_name(pck) else "platform"
        return cache.fetch_intel_collateral(quote.tee, fmspc, ca, sources.now)
    raise CollateralError(
        f"no Intel collateral for FMSPC {fmspc}",
        hint="pass the PCS collateral JSON with --collateral, or --online to fetch it",
    )


def _verify_intel(quote: Any, collateral: Any, inputs: _Inputs) -> Any:
    from motte.attest.intel import IntelVerifyOptions, verify_quote

    options = IntelVerifyOptions(now=inputs.now, root=inputs.intel_root, cache=intel_chain_cache())
    return verify_quote(quote, collateral, options)


# sim ---------------------------------------------------------------------------------------


class _SimVerified(NamedTuple):
    evidence: SimEvidence
    checks: tuple[RuleResult, ...]


def _verify_sim(ev: SimEvidence, _collateral: None, _inputs: _Inputs) -> _SimVerified:
    from motte.attest.sim import verify_sim_evidence

    verify_sim_evidence(ev)
    reason = (
        f"Ed25519 signature by SIGNER_KEY {ev.signer_key.hex()} verifies "
        "(this proves possession of that key, nothing about hardware)"
    )
    return _SimVerified(ev, (RuleResult("verify", "sim-signature", "pass", reason),))


#: The one table of TEEs: how each gathers, verifies, validates and states its claims.
_TEES: dict[str, _Tee] = {
    "snp": _Tee(_gather_snp, _verify_snp, validate_snp, lambda v: v.claims()),
    "tdx": _Tee(_gather_intel, _verify_intel, validate_intel, lambda v: v.to_dict()),
    "sgx": _Tee(_gather_intel, _verify_intel, validate_intel, lambda v: v.to_dict()),
    "sim": _Tee(
        lambda _parsed, _sources: None,
        _verify_sim,
        lambda v, policy: validate_sim(v.evidence, policy),
        lambda v: v.evidence.to_dict(),
    ),
}


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
