"""TEE attestation: evidence in, a Verdict out. Pure and offline unless asked.

The recipe::

    from motte.attest import verify_evidence, load_policy
    verdict = verify_evidence(raw, certs=[vcek_der], policy=load_policy("policy.toml"),
                              report_data=expected)
    if verdict.accepted: ...

Beneath it, three steps per TEE (go-sev-guest's split): parse bytes into frozen structures
(:func:`parse_evidence`, :mod:`motte.attest.snp`, :mod:`motte.attest.intel`), verify
signatures and chains to the vendor roots shipped with motte (AMD ARKs for Milan, Genoa and
Turin, VCEK and VLEK; the Intel SGX Root CA), validate the verified claims against a
:class:`Policy`. ``sim`` evidence (:mod:`motte.attest.sim`) is the insecure software keep's
and is refused unless a policy sets ``allow_insecure_sim``.

Keep and Steward share :func:`bind_report_data` (what goes in REPORT_DATA) and
:class:`Evidence` (what a Keep backend hands over). :mod:`motte.attest.der` is the one strict
DER reader, for the Steward's own extensions too.
"""

from typing import TYPE_CHECKING

from motte._lazy import lazy_exports

if TYPE_CHECKING:
    from motte.attest._binding import bind_report_data, expected_report_data
    from motte.attest._checks import RuleResult
    from motte.attest._enarx import EnarxCsr, parse_enarx_csr
    from motte.attest._evidence import KINDS, MAX_EVIDENCE_BYTES, Evidence, detect_kind
    from motte.attest._memo import clear_caches
    from motte.attest._parse import ParsedEvidence, parse_evidence
    from motte.attest._pipeline import verify_evidence
    from motte.attest._policy import (
        Policy,
        SgxPolicy,
        SimPolicy,
        SnpPolicy,
        TdxPolicy,
        default_policy,
        load_policy,
        parse_policy,
    )
    from motte.attest._tsm import TsmCapture, parse_tsm_capture, read_tsm_capture_dir
    from motte.attest._verdict import Verdict
    from motte.attest._x509 import x509_load_errors
    from motte.attest.errors import (
        AttestError,
        CollateralError,
        EvidenceParseError,
        EvidenceVerificationError,
        PolicyError,
    )

__all__ = [
    "KINDS",
    "MAX_EVIDENCE_BYTES",
    "AttestError",
    "CollateralError",
    "EnarxCsr",
    "Evidence",
    "EvidenceParseError",
    "EvidenceVerificationError",
    "ParsedEvidence",
    "Policy",
    "PolicyError",
    "RuleResult",
    "SgxPolicy",
    "SimPolicy",
    "SnpPolicy",
    "TdxPolicy",
    "TsmCapture",
    "Verdict",
    "bind_report_data",
    "clear_caches",
    "default_policy",
    "detect_kind",
    "expected_report_data",
    "load_policy",
    "parse_enarx_csr",
    "parse_evidence",
    "parse_policy",
    "parse_tsm_capture",
    "read_tsm_capture_dir",
    "verify_evidence",
    "x509_load_errors",
]

# Names load on first use: a Keep that only binds REPORT_DATA and wraps its evidence must not
# pay ~150 ms for the verifiers (SNP, Intel, X.509) it never calls.
_LAZY = {
    "bind_report_data": "motte.attest._binding",
    "expected_report_data": "motte.attest._binding",
    "RuleResult": "motte.attest._checks",
    "EnarxCsr": "motte.attest._enarx",
    "parse_enarx_csr": "motte.attest._enarx",
    "KINDS": "motte.attest._evidence",
    "MAX_EVIDENCE_BYTES": "motte.attest._evidence",
    "Evidence": "motte.attest._evidence",
    "detect_kind": "motte.attest._evidence",
    "clear_caches": "motte.attest._memo",
    "ParsedEvidence": "motte.attest._parse",
    "parse_evidence": "motte.attest._parse",
    "Policy": "motte.attest._policy",
    "SgxPolicy": "motte.attest._policy",
    "SimPolicy": "motte.attest._policy",
    "SnpPolicy": "motte.attest._policy",
    "TdxPolicy": "motte.attest._policy",
    "default_policy": "motte.attest._policy",
    "load_policy": "motte.attest._policy",
    "parse_policy": "motte.attest._policy",
    "verify_evidence": "motte.attest._pipeline",
    "TsmCapture": "motte.attest._tsm",
    "parse_tsm_capture": "motte.attest._tsm",
    "read_tsm_capture_dir": "motte.attest._tsm",
    "Verdict": "motte.attest._verdict",
    "x509_load_errors": "motte.attest._x509",
    "AttestError": "motte.attest.errors",
    "CollateralError": "motte.attest.errors",
    "EvidenceParseError": "motte.attest.errors",
    "EvidenceVerificationError": "motte.attest.errors",
    "PolicyError": "motte.attest.errors",
}


__getattr__ = lazy_exports(__name__, _LAZY, globals())
