"""Errors of motte.attest, split by who is at fault.

Malformed or forged evidence is the evidence's fault (a "remote" error in h11's terms):
:class:`EvidenceParseError` names the structure, field and byte offset; the verification
errors name the check that failed. :class:`PolicyError` is the relying party's own file.
All exit with status 1 from ``motte attest verify`` (rejected), as the CLI contract says.
"""

from __future__ import annotations

from typing import Any

from motte.errors import ConfigError, MotteError, NotFoundError, ParseError, VerificationError


class AttestError(MotteError):
    """Base of every attestation error."""


class EvidenceParseError(AttestError, ParseError):
    """Bytes that are not well-formed evidence.

    ``structure`` is what was being parsed ("SNP report", "TDX quote v4", "PCK certificate"),
    ``field`` the spec's field name, ``offset`` the byte offset in the input when known.
    """

    def __init__(
        self,
        structure: str,
        field: str,
        reason: str,
        *,
        offset: int | None = None,
        hint: str | None = None,
    ) -> None:
        where = f" at offset {offset:#x}" if offset is not None else ""
        super().__init__(f"{structure}: {field}{where}: {reason}", hint=hint)
        self.structure = structure
        self.field = field
        self.offset = offset
        self.reason = reason


class EvidenceVerificationError(AttestError, VerificationError):
    """A signature, chain, CRL, binding or collateral check failed.

    ``check`` is a short stable name for the failed check (e.g. "report-signature",
    "vcek-chain", "tcb-info-signature") so verdicts and tests can refer to it.
    """

    def __init__(self, check: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{check}: {message}", hint=hint)
        self.check = check
        self.reason = message
        #: The checks that ran up to and including this failure (motte.attest's RuleResults),
        #: so a verdict can list what passed before verification stopped.
        self.results: tuple[Any, ...] = ()


class CollateralError(AttestError, NotFoundError):
    """Collateral needed to verify (a VCEK, a chain, a CRL, TCB info) is missing or unusable."""


class PolicyError(AttestError, ConfigError):
    """The relying party's policy file is malformed (names the key and line)."""
