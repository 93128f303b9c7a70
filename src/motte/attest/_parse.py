"""Parse any evidence kind into its typed structure, without verifying anything.

What ``motte attest show`` prints, and the first step of :func:`motte.attest.verify_evidence`.
The result is UNVERIFIED: a forged report parses as well as a real one; only verification
says whether to believe it.

The one dispatch on the evidence kind lives here: :data:`_CONTAINERS` reads what arrives (a
bare report or quote, a configfs-tsm capture, an Enarx CSR), :data:`TEE_PARSERS` the TEE's
own evidence inside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from motte.attest._evidence import (
    KINDS,
    MAX_EVIDENCE_BYTES,
    Evidence,
    decode_evidence_text,
    detect_kind,
)
from motte.attest.errors import EvidenceParseError
from motte.errors import UsageError

# Each kind's parser is imported when that kind arrives: a process verifying a TDX quote
# does not load the SNP, sim, Enarx or configfs-tsm modules.

#: How the evidence arrived, as a verdict names it ("format"), per kind.
FORMATS = {
    "snp": "snp-report",
    "tdx": "tdx-quote",
    "sgx": "sgx-quote",
    "sim": "sim",
    "tsm": "tsm",
    "enarx": "enarx-csr",
}


@dataclass(frozen=True, slots=True)
class ParsedEvidence:
    """``value`` is the container as parsed (Report, Quote, SimEvidence, TsmCapture,
    EnarxCsr); ``inner`` the report or quote inside a tsm capture or Enarx CSR."""

    kind: str
    tee: str | None
    value: Any
    inner: Any = None

    @property
    def format(self) -> str:
        return FORMATS[self.kind]

    @property
    def evidence(self) -> Any:
        """The TEE's own evidence (Report, Quote, SimEvidence); None while a container's
        inner evidence is unparsed or absent (Enarx KVM and SGX CSRs)."""
        return self.value if self.kind not in ("tsm", "enarx") else self.inner

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "tee": self.tee, "verified": False}
        out[self.kind] = self.value.to_dict()
        if self.inner is not None:
            out["report" if self.tee == "snp" else "quote"] = self.inner.to_dict()
        if self.kind == "tsm" and self.value.auxblob:
            out["certificates"] = _cert_table_summary(self.value.auxblob)
        if self.kind == "enarx" and self.value.vcek is not None:
            out["certificates"] = [_cert_summary(self.value.vcek)]
        return out


def parse_evidence(raw: bytes | Evidence, kind: str | None = None) -> ParsedEvidence:
    """Parse ``raw`` (kind detected when None); raises EvidenceParseError when malformed."""
    if isinstance(raw, Evidence):
        kind = kind or raw.kind
        raw = raw.raw
    if kind is not None and kind not in KINDS:
        raise UsageError(f"unknown evidence kind {kind!r}; one of {', '.join(KINDS)}")
    raw, kind = prepare_evidence(raw, kind)
    return parse_inner(parse_container(raw, kind))


def prepare_evidence(raw: bytes, kind: str | None) -> tuple[bytes, str]:
    """Refuse oversized input, undo hex text, detect the kind: the bytes and kind to parse."""
    if len(raw) > MAX_EVIDENCE_BYTES:
        raise EvidenceParseError(
            "evidence",
            "length",
            f"{len(raw)} bytes is too large; the limit is {MAX_EVIDENCE_BYTES}",
        )
    if kind not in ("tsm", "enarx"):
        raw = decode_evidence_text(raw)
    return raw, kind or detect_kind(raw)


def parse_container(raw: bytes, kind: str) -> ParsedEvidence:
    """What arrived, parsed: the TEE evidence itself, or a container whose inner evidence
    :func:`parse_inner` reads next."""
    return _CONTAINERS[kind](raw)


def parse_inner(parsed: ParsedEvidence) -> ParsedEvidence:
    """A container with its inner report or quote parsed (the same value for bare evidence)."""
    blob = _inner_bytes(parsed)
    if blob is None or parsed.tee is None:
        return parsed
    return replace(parsed, inner=TEE_PARSERS[parsed.tee](blob))


def describe(parsed: ParsedEvidence, inner: bool) -> str:
    """The parse rule's reason: for the container (``inner`` false) or the TEE evidence."""
    value = parsed.evidence if inner else parsed.value
    what = parsed.tee if inner else parsed.kind
    if what == "tsm":
        return f"configfs-tsm capture from provider {value.provider}"
    if what == "enarx":
        return f"Enarx CSR with {value.tee.upper()} evidence"
    if what == "snp":
        return f"SNP report version {value.version}, signed by {value.signing_key.upper()}"
    if what == "sim":
        return "sim evidence version 1: an INSECURE software keep"
    return f"{value.structure}, certification data type {value.certification_data_type}"


def _inner_bytes(parsed: ParsedEvidence) -> bytes | None:
    if parsed.inner is not None:
        return None
    if parsed.kind == "tsm":
        return parsed.value.outblob  # type: ignore[no-any-return]
    if parsed.kind == "enarx":
        return parsed.value.report  # type: ignore[no-any-return]
    return None


def _snp_report(raw: bytes) -> Any:
    from motte.attest.snp._abi import Report

    return Report.from_bytes(raw)


def _intel_quote(raw: bytes) -> Any:
    from motte.attest.intel import parse_quote

    return parse_quote(raw)


def _sim_evidence(raw: bytes) -> Any:
    from motte.attest.sim import SimEvidence

    return SimEvidence.from_bytes(raw)


#: The TEE's own evidence, by TEE.
TEE_PARSERS: dict[str, Callable[[bytes], Any]] = {
    "snp": _snp_report,
    "tdx": _intel_quote,
    "sgx": _intel_quote,
    "sim": _sim_evidence,
}


def _bare(kind: str) -> Callable[[bytes], ParsedEvidence]:
    def parse(raw: bytes) -> ParsedEvidence:
        value = TEE_PARSERS[kind](raw)
        tee = getattr(value, "tee", kind)  # a quote says whether it is TDX or SGX
        return ParsedEvidence(tee, tee, value)

    return parse


def _tsm(raw: bytes) -> ParsedEvidence:
    from motte.attest._tsm import parse_tsm_capture

    capture = parse_tsm_capture(raw)
    return ParsedEvidence("tsm", capture.kind, capture)


def _enarx(raw: bytes) -> ParsedEvidence:
    from motte.attest._enarx import parse_enarx_csr

    csr = parse_enarx_csr(raw)
    return ParsedEvidence("enarx", csr.tee, csr)


#: What arrived, by kind: the one dispatch on the evidence kind.
_CONTAINERS: dict[str, Callable[[bytes], ParsedEvidence]] = {
    "snp": _bare("snp"),
    "tdx": _bare("tdx"),
    "sgx": _bare("sgx"),
    "sim": _bare("sim"),
    "tsm": _tsm,
    "enarx": _enarx,
}


def _cert_summary(cert: Any) -> dict[str, Any]:
    from motte.attest.snp._certs import key_type_of, parse_amd_key_certificate

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
    from motte.attest._x509 import load_bundle
    from motte.attest.snp._certtable import looks_like_cert_table, parse_cert_table

    if not looks_like_cert_table(blob):
        return [_cert_summary(c) for c in load_bundle(blob, "auxblob").certificates]
    out = []
    for entry in parse_cert_table(blob, structure="auxblob"):
        certs = load_bundle(entry.data, f"auxblob {entry.name}").certificates
        for c in certs:
            out.append({"entry": entry.name, **_cert_summary(c)})
    return out
