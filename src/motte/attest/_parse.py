"""Parse any evidence kind into its typed structure, without verifying anything.

What ``motte attest show`` prints. The result is UNVERIFIED: a forged report parses as well
as a real one; only :func:`motte.attest.verify_evidence` says whether to believe it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from motte.attest._enarx import EnarxCsr, parse_enarx_csr
from motte.attest._evidence import (
    KINDS,
    MAX_EVIDENCE_BYTES,
    Evidence,
    decode_evidence_text,
    detect_kind,
)
from motte.attest._tsm import TsmCapture, parse_tsm_capture
from motte.attest._x509 import load_bundle
from motte.attest.errors import EvidenceParseError
from motte.attest.sim import SimEvidence
from motte.attest.snp._abi import Report
from motte.attest.snp._certs import key_type_of, parse_amd_key_certificate
from motte.attest.snp._certtable import looks_like_cert_table, parse_cert_table
from motte.errors import UsageError


@dataclass(frozen=True, slots=True)
class ParsedEvidence:
    """``value`` is the container as parsed (Report, Quote, SimEvidence, TsmCapture,
    EnarxCsr); ``inner`` the report or quote inside a tsm capture or Enarx CSR."""

    kind: str
    tee: str | None
    value: Any
    inner: Any = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "tee": self.tee, "verified": False}
        out[self.kind] = self.value.to_dict()
        if self.inner is not None:
            out["report" if self.tee == "snp" else "quote"] = self.inner.to_dict()
        if isinstance(self.value, TsmCapture) and self.value.auxblob:
            out["certificates"] = _cert_table_summary(self.value.auxblob)
        if isinstance(self.value, EnarxCsr) and self.value.vcek is not None:
            out["certificates"] = [_cert_summary(self.value.vcek)]
        return out


def parse_evidence(raw: bytes | Evidence, kind: str | None = None) -> ParsedEvidence:
    """Parse ``raw`` (kind detected when None); raises EvidenceParseError when malformed."""
    if isinstance(raw, Evidence):
        kind = kind or raw.kind
        raw = raw.raw
    if kind is not None and kind not in KINDS:
        raise UsageError(f"unknown evidence kind {kind!r}; one of {', '.join(KINDS)}")
    if len(raw) > MAX_EVIDENCE_BYTES:
        raise EvidenceParseError("evidence", "length", f"{len(raw)} bytes is too large")
    if kind not in ("tsm", "enarx"):
        raw = decode_evidence_text(raw)
    kind = kind or detect_kind(raw)
    if kind == "snp":
        return ParsedEvidence("snp", "snp", Report.from_bytes(raw))
    if kind == "sim":
        return ParsedEvidence("sim", "sim", SimEvidence.from_bytes(raw))
    if kind == "tsm":
        capture = parse_tsm_capture(raw)
        inner = (
            Report.from_bytes(capture.outblob)
            if capture.kind == "snp"
            else _intel_parse(capture.outblob)
        )
        return ParsedEvidence("tsm", capture.kind, capture, inner)
    if kind == "enarx":
        csr = parse_enarx_csr(raw)
        inner = Report.from_bytes(csr.report) if csr.report is not None else None
        return ParsedEvidence("enarx", csr.tee, csr, inner)
    quote = _intel_parse(raw)
    return ParsedEvidence(quote.tee, quote.tee, quote)


def _intel_parse(raw: bytes) -> Any:
    from motte.attest.intel import parse_quote

    return parse_quote(raw)


def _cert_summary(cert: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "not_valid_before": cert.not_valid_before_utc.isoformat(),
        "not_valid_after": cert.not_valid_after_utc.isoformat(),
    }
    if key_type_of(cert):
        try:
            d["amd"] = parse_amd_key_certificate(cert).to_dict()
        except EvidenceParseError as e:
            d["amd_error"] = e.message
    return d


def _cert_table_summary(blob: bytes) -> list[dict[str, Any]]:
    if not looks_like_cert_table(blob):
        return [_cert_summary(c) for c in load_bundle(blob, "auxblob").certificates]
    out = []
    for entry in parse_cert_table(blob, structure="auxblob"):
        certs = load_bundle(entry.data, f"auxblob {entry.name}").certificates
        for c in certs:
            out.append({"entry": entry.name, **_cert_summary(c)})
    return out
