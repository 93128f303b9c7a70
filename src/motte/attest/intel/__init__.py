"""Intel TDX and SGX DCAP quotes: parse, verify against PCS collateral, evaluate the TCB.

Three steps, three functions (the go-sev-guest split):

- :func:`parse_quote` turns bytes into a frozen :class:`Quote` (TDX v4/v5, SGX v3/v4/v5)
  and :func:`parse_collateral` a PCS collateral document into :class:`Collateral`; neither
  trusts anything;
- :func:`verify_quote` checks the PCK chain to the pinned Intel SGX Root CA, the CRLs, the
  collateral signatures and validity at ``now``, the QE report, the attestation-key binding
  and the quote signature, then runs Intel's TCB-level algorithm (:func:`evaluate_tcb`) and
  returns :class:`IntelVerified`;
- judging the claims (TCB status, debug, measurements) is the relying party's policy.
"""

from motte.attest.intel._chain import ChainCache, intel_root_certificate
from motte.attest.intel._collateral import (
    Collateral,
    IdentityTcbLevel,
    QeIdentity,
    TcbInfo,
    TcbLevel,
    TdxModule,
    parse_collateral,
    parse_qe_identity,
    parse_tcb_info,
)
from motte.attest.intel._pck import PckExtensions, parse_pck_extensions
from motte.attest.intel._quote import EnclaveReport, Quote, QuoteHeader, TdReport, parse_quote
from motte.attest.intel._tcb import TcbEvaluation, evaluate_tcb
from motte.attest.intel._verify import IntelVerified, IntelVerifyOptions, verify_quote

__all__ = [
    "ChainCache",
    "Collateral",
    "EnclaveReport",
    "IdentityTcbLevel",
    "IntelVerified",
    "IntelVerifyOptions",
    "PckExtensions",
    "QeIdentity",
    "Quote",
    "QuoteHeader",
    "TcbEvaluation",
    "TcbInfo",
    "TcbLevel",
    "TdReport",
    "TdxModule",
    "evaluate_tcb",
    "intel_root_certificate",
    "parse_collateral",
    "parse_pck_extensions",
    "parse_qe_identity",
    "parse_quote",
    "parse_tcb_info",
    "verify_quote",
]
