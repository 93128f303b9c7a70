"""Intel PCS collateral: TCB info, QE identity, CRLs and issuer chains, parsed, not verified.

Two shapes are read:

- the collateral document (as Phala-Network/dcap-qvl and PCCS clients store it): one JSON
  object with ``tcb_info`` and ``qe_identity`` as the exact signed JSON strings, hex
  signatures, hex (or PEM) DER CRLs and PEM issuer chains; see :func:`parse_collateral`;
- a raw PCS response body, ``{"tcbInfo": {...}, "signature": "..."}`` or
  ``{"enclaveIdentity": {...}, "signature": "..."}`` (what trustee ships), from which the
  exact signed bytes of the inner object are cut out; see :func:`parse_tcb_info` and
  :func:`parse_qe_identity`. PCS sends the issuer chain in an HTTP header, so such a body is
  combined with an issuer chain and CRLs via ``dataclasses.replace(collateral, ...)``.

Signatures are over the exact bytes of the inner object, so each model keeps those bytes.
Only TCB info v3 (PCS API v4) and enclave identity v2 are accepted: v2 TCB info belongs to the
retired PCS API v3 and cannot describe TDX.
"""

from __future__ import annotations

import binascii
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from motte.attest.errors import CollateralError, EvidenceParseError

#: A PCS TCB info is ~3-20 KB, a PCK CRL a few KB; a document past this is not collateral.
MAX_COLLATERAL_SIZE = 1024 * 1024

TCB_STATUSES = (
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
)
#: Statuses an enclave identity level or a TDX module identity level may carry.
IDENTITY_STATUSES = ("UpToDate", "OutOfDate", "Revoked")

_PEM_CRL = re.compile(r"-----BEGIN X509 CRL-----(.*?)-----END X509 CRL-----", re.DOTALL)


@dataclass(frozen=True, slots=True)
class TcbLevel:
    #: The sixteen SGX TCB component SVNs.
    sgx_components: tuple[int, ...]
    pcesvn: int
    #: The sixteen TDX TCB component SVNs (TDX TCB info only).
    tdx_components: tuple[int, ...] | None
    tcb_date: datetime
    tcb_status: str
    advisory_ids: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "sgx_components": list(self.sgx_components),
            "pcesvn": self.pcesvn,
            "tdx_components": None if self.tdx_components is None else list(self.tdx_components),
            "tcb_date": self.tcb_date.isoformat(),
            "tcb_status": self.tcb_status,
            "advisory_ids": list(self.advisory_ids),
        }


@dataclass(frozen=True, slots=True)
class IdentityTcbLevel:
    """A level of an enclave identity (QE, TD_QE) or of a TDX module identity."""

    isvsvn: int
    tcb_date: datetime
    tcb_status: str
    advisory_ids: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "isvsvn": self.isvsvn,
            "tcb_date": self.tcb_date.isoformat(),
            "tcb_status": self.tcb_status,
            "advisory_ids": list(self.advisory_ids),
        }


@dataclass(frozen=True, slots=True)
class TdxModule:
    """What MRSIGNERSEAM and SEAMATTRIBUTES must be (``tdxModule``, or one identity)."""

    id: str
    mrsigner: bytes
    attributes: bytes
    attributes_mask: bytes
    #: Levels by the module's ISVSVN (TEE_TCB_SVN[0]); only ``tdxModuleIdentities`` have them.
    tcb_levels: tuple[IdentityTcbLevel, ...] = ()


@dataclass(frozen=True, slots=True)
class TcbInfo:
    id: str
    version: int
    issue_date: datetime
    next_update: datetime
    fmspc: bytes
    pce_id: bytes
    tcb_type: int
    tcb_evaluation_data_number: int
    #: In the order Intel's QVL walks them: highest first (see :mod:`._tcb`).
    tcb_levels: tuple[TcbLevel, ...]
    tdx_module: TdxModule | None = None
    tdx_module_identities: tuple[TdxModule, ...] = ()
    #: The exact bytes the signature covers, and the raw r||s signature.
    signed_bytes: bytes = field(default=b"", repr=False)
    signature: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, slots=True)
class QeIdentity:
    id: str
    version: int
    issue_date: datetime
    next_update: datetime
    tcb_evaluation_data_number: int
    miscselect: int
    miscselect_mask: int
    attributes: bytes
    attributes_mask: bytes
    mrsigner: bytes
    isvprodid: int
    #: Highest ISVSVN first.
    tcb_levels: tuple[IdentityTcbLevel, ...]
    signed_bytes: bytes = field(default=b"", repr=False)
    signature: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, slots=True)
class Collateral:
    """Everything besides the quote that verification needs, as Intel PCS serves it."""

    tcb_info: TcbInfo
    #: DER certificates, signer first: "Intel SGX TCB Signing", then the root.
    tcb_info_issuer_chain: tuple[bytes, ...]
    qe_identity: QeIdentity
    qe_identity_issuer_chain: tuple[bytes, ...]
    #: DER CRL of the PCK's issuing CA (platform or processor), and of the Intel SGX Root CA.
    pck_crl: bytes
    pck_crl_issuer_chain: tuple[bytes, ...]
    root_ca_crl: bytes

    def to_dict(self) -> dict[str, Any]:
        """The same document shape :func:`parse_collateral` reads."""
        return {
            "pck_crl_issuer_chain": _pem_chain(self.pck_crl_issuer_chain),
            "root_ca_crl": self.root_ca_crl.hex(),
            "pck_crl": self.pck_crl.hex(),
            "tcb_info_issuer_chain": _pem_chain(self.tcb_info_issuer_chain),
            "tcb_info": self.tcb_info.signed_bytes.decode(),
            "tcb_info_signature": self.tcb_info.signature.hex(),
            "qe_identity_issuer_chain": _pem_chain(self.qe_identity_issuer_chain),
            "qe_identity": self.qe_identity.signed_bytes.decode(),
            "qe_identity_signature": self.qe_identity.signature.hex(),
        }


def _pem_chain(chain: tuple[bytes, ...]) -> str:
    out = []
    for der in chain:
        b64 = binascii.b2a_base64(der, newline=False).decode()
        lines = "\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
        out.append(f"-----BEGIN CERTIFICATE-----\n{lines}\n-----END CERTIFICATE-----\n")
    return "".join(out)


# --------------------------------------------------------------------------- entry points


def parse_collateral(data: bytes) -> Collateral:
    """Parse a collateral document (the dcap-qvl / PCCS JSON layout); nothing is verified."""
    doc = _load_json(data, "collateral")
    if not isinstance(doc, dict):
        raise EvidenceParseError("collateral", "document", "not a JSON object")
    if "tcbInfo" in doc or "enclaveIdentity" in doc:
        raise CollateralError(
            "this is a lone PCS TCB info or enclave identity, not full collateral: it lacks "
            "the issuer chains and the PCK CRLs",
            hint="pass the whole collateral JSON, as dcap-qvl or a PCCS writes it, or --online "
            "to fetch it from Intel; in Python, parse_tcb_info and parse_qe_identity read "
            "the pieces",
        )
    p = _Fields(doc, "collateral", "")
    tcb_sig = p.hex_bytes("tcb_info_signature", 64)
    qe_sig = p.hex_bytes("qe_identity_signature", 64)
    tcb_text = p.string("tcb_info")
    qe_text = p.string("qe_identity")
    return Collateral(
        tcb_info=_tcb_info_from_text(tcb_text, tcb_sig),
        tcb_info_issuer_chain=p.pem_chain("tcb_info_issuer_chain"),
        qe_identity=_qe_identity_from_text(qe_text, qe_sig),
        qe_identity_issuer_chain=p.pem_chain("qe_identity_issuer_chain"),
        pck_crl=p.crl("pck_crl"),
        pck_crl_issuer_chain=p.pem_chain("pck_crl_issuer_chain"),
        root_ca_crl=p.crl("root_ca_crl"),
    )


def parse_tcb_info(data: bytes) -> TcbInfo:
    """A PCS TCB info response body ``{"tcbInfo": {...}, "signature": "<hex>"}``."""
    body, sig = _split_signed_body(data, "tcbInfo", "TCB info")
    return _tcb_info_from_text(body, sig)


def parse_qe_identity(data: bytes) -> QeIdentity:
    """A PCS enclave identity response body ``{"enclaveIdentity": {...}, "signature": ...}``."""
    body, sig = _split_signed_body(data, "enclaveIdentity", "QE identity")
    return _qe_identity_from_text(body, sig)


def _load_json(data: bytes | str, structure: str) -> Any:
    if len(data) > MAX_COLLATERAL_SIZE:
        raise EvidenceParseError(
            structure, "document", f"{len(data)} bytes is more than {MAX_COLLATERAL_SIZE}"
        )
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:
        raise EvidenceParseError(structure, "document", f"not JSON: {e}") from None


def _split_signed_body(data: bytes, key: str, structure: str) -> tuple[str, bytes]:
    """Cut the exact text of ``key``'s value out of ``{key: {...}, "signature": ...}``."""
    if len(data) > MAX_COLLATERAL_SIZE:
        raise EvidenceParseError(
            structure, "document", f"{len(data)} bytes is more than {MAX_COLLATERAL_SIZE}"
        )
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
    except UnicodeDecodeError as e:
        raise EvidenceParseError(structure, "document", "not UTF-8", offset=e.start) from None
    decoder = json.JSONDecoder()
    ws = re.compile(r"[ \t\n\r]*")
    pos = ws.match(text, 0).end()  # type: ignore[union-attr]
    if not text.startswith("{", pos):
        raise EvidenceParseError(structure, "document", "not a JSON object", offset=pos)
    pos += 1
    spans: dict[str, tuple[int, int, Any]] = {}
    try:
        while True:
            pos = ws.match(text, pos).end()  # type: ignore[union-attr]
            if text.startswith("}", pos) and not spans:
                pos += 1
                break
            name, pos = json.decoder.scanstring(text, pos + 1) if text[pos] == '"' else ("", -1)
            if pos < 0:
                raise ValueError("expected a key")
            pos = ws.match(text, pos).end()  # type: ignore[union-attr]
            if not text.startswith(":", pos):
                raise ValueError("expected ':'")
            pos = ws.match(text, pos + 1).end()  # type: ignore[union-attr]
            value, end = decoder.raw_decode(text, pos)
            if name in spans:
                raise ValueError(f"duplicate key {name!r}")
            spans[name] = (pos, end, value)
            pos = ws.match(text, end).end()  # type: ignore[union-attr]
            if text.startswith(",", pos):
                pos += 1
                continue
            if text.startswith("}", pos):
                pos += 1
                break
            raise ValueError("expected ',' or '}'")
        if text[pos:].strip():
            raise ValueError("data after the JSON object")
    except (ValueError, IndexError, RecursionError) as e:
        raise EvidenceParseError(structure, "document", f"not JSON: {e}", offset=pos) from None
    if key not in spans:
        raise EvidenceParseError(structure, key, "missing")
    if "signature" not in spans:
        raise EvidenceParseError(structure, "signature", "missing")
    start, end, _ = spans[key]
    sig = _Fields({"signature": spans["signature"][2]}, structure, "").hex_bytes("signature", 64)
    return text[start:end], sig


# --------------------------------------------------------------------------- field access


class _Fields:
    """Typed access to a JSON object, naming the full path of a missing or bad field."""

    __slots__ = ("obj", "path", "structure")

    def __init__(self, obj: Any, structure: str, path: str) -> None:
        if type(obj) is not dict:
            raise EvidenceParseError(structure, path or "document", "not a JSON object")
        self.obj = obj
        self.structure = structure
        self.path = path

    def _name(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def fail(self, key: str, reason: str) -> EvidenceParseError:
        return EvidenceParseError(self.structure, self._name(key), reason)

    def get(self, key: str) -> Any:
        if key not in self.obj:
            raise self.fail(key, "missing")
        return self.obj[key]

    def sub(self, key: str) -> _Fields:
        return _Fields(self.get(key), self.structure, self._name(key))

    def items(self, key: str) -> list[_Fields]:
        value = self.get(key)
        if not isinstance(value, list):
            raise self.fail(key, "not a JSON array")
        return [_Fields(v, self.structure, f"{self._name(key)}[{i}]") for i, v in enumerate(value)]

    def svns(self, key: str) -> tuple[int, ...]:
        """A TCB component list ``[{"svn": n, ...} x 16]`` as sixteen SVNs."""
        value = self.obj.get(key)
        if isinstance(value, list) and len(value) == 16:
            # Fast path: this runs 32 times per TCB level; the slow path names the fault.
            try:
                svns = tuple([c["svn"] for c in value])
            except (TypeError, KeyError, IndexError):
                svns = ()
            if all(type(v) is int and 0 <= v <= 255 for v in svns) and svns:
                return svns
        svns = tuple(c.integer("svn", 255) for c in self.items(key))
        if len(svns) != 16:
            raise self.fail(key, f"{len(svns)} components, expected 16")
        return svns

    def string(self, key: str) -> str:
        value = self.get(key)
        if not isinstance(value, str):
            raise self.fail(key, "not a string")
        return value

    def integer(self, key: str, limit: int = 2**32 - 1) -> int:
        value = self.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
            raise self.fail(key, f"not an integer in 0..{limit}")
        return value

    def hex_bytes(self, key: str, size: int | None = None) -> bytes:
        text = self.string(key)
        try:
            value = bytes.fromhex(text)
        except ValueError:
            raise self.fail(key, "not hex") from None
        if size is not None and len(value) != size:
            raise self.fail(key, f"{len(value)} bytes, expected {size}")
        return value

    def date(self, key: str) -> datetime:
        text = self.string(key)
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise self.fail(key, f"not an ISO 8601 date: {text!r}") from None
        if value.tzinfo is None:
            raise self.fail(key, f"date without a time zone: {text!r}")
        return value

    def status(self, key: str, allowed: tuple[str, ...]) -> str:
        value = self.string(key)
        if value not in allowed:
            raise self.fail(key, f"unknown status {value!r}")
        return value

    def advisories(self) -> tuple[str, ...]:
        if "advisoryIDs" not in self.obj:
            return ()
        value = self.obj["advisoryIDs"]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail("advisoryIDs", "not an array of strings")
        return tuple(value)

    def pem_chain(self, key: str) -> tuple[bytes, ...]:
        text = self.string(key)
        begin_marker, end_marker = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
        out = []
        pos = 0
        while (begin := text.find(begin_marker, pos)) >= 0:
            if text[pos:begin].strip():
                raise self.fail(key, "text that is not PEM between certificates")
            end = text.find(end_marker, begin)
            if end < 0:
                raise self.fail(key, f"certificate {len(out)} has no END line")
            b64 = "".join(text[begin + len(begin_marker) : end].split())
            try:
                out.append(binascii.a2b_base64(b64, strict_mode=True))
            except binascii.Error as e:
                raise self.fail(key, f"certificate {len(out)} is not base64: {e}") from None
            pos = end + len(end_marker)
        if text[pos:].strip():
            raise self.fail(key, "text that is not PEM after the certificates")
        if not out:
            raise self.fail(key, "no PEM certificate")
        return tuple(out)

    def crl(self, key: str) -> bytes:
        text = self.string(key)
        m = _PEM_CRL.search(text) if "-----BEGIN" in text else None
        if m:
            try:
                return binascii.a2b_base64("".join(m.group(1).split()), strict_mode=True)
            except binascii.Error as e:
                raise self.fail(key, f"PEM CRL is not base64: {e}") from None
        return self.hex_bytes(key)


# --------------------------------------------------------------------------- models


def _tcb_info_from_text(text: str, signature: bytes) -> TcbInfo:
    s = "TCB info"
    p = _Fields(_load_json(text, s), s, "tcbInfo")
    tcb_id = p.string("id")
    if tcb_id not in ("SGX", "TDX"):
        raise p.fail("id", f"unknown TCB info id {tcb_id!r} (SGX, TDX)")
    version = p.integer("version")
    if version != 3:
        raise p.fail(
            "version",
            f"TCB info version {version} is not supported (3, from PCS API v4)",
        )
    is_tdx = tcb_id == "TDX"
    levels = []
    for lv in p.items("tcbLevels"):
        tcb = lv.sub("tcb")
        sgx = tcb.svns("sgxtcbcomponents")
        tdx = tcb.svns("tdxtcbcomponents") if is_tdx else None
        levels.append(
            TcbLevel(
                sgx_components=sgx,
                pcesvn=tcb.integer("pcesvn", 0xFFFF),
                tdx_components=tdx,
                tcb_date=lv.date("tcbDate"),
                tcb_status=lv.status("tcbStatus", TCB_STATUSES),
                advisory_ids=lv.advisories(),
            )
        )
    if not levels:
        raise p.fail("tcbLevels", "empty")
    module = None
    identities: list[TdxModule] = []
    if is_tdx:
        module = _tdx_module(p.sub("tdxModule"), "")
        if "tdxModuleIdentities" in p.obj:
            identities = [_tdx_module(m, m.string("id")) for m in p.items("tdxModuleIdentities")]
    return TcbInfo(
        id=tcb_id,
        version=version,
        issue_date=p.date("issueDate"),
        next_update=p.date("nextUpdate"),
        fmspc=p.hex_bytes("fmspc", 6),
        pce_id=p.hex_bytes("pceId", 2),
        tcb_type=p.integer("tcbType"),
        tcb_evaluation_data_number=p.integer("tcbEvaluationDataNumber"),
        tcb_levels=_sorted_tcb_levels(levels),
        tdx_module=module,
        tdx_module_identities=tuple(identities),
        signed_bytes=text.encode(),
        signature=signature,
    )


def _sorted_tcb_levels(levels: list[TcbLevel]) -> tuple[TcbLevel, ...]:
    """Highest first, as Intel's QVL orders them (a set under TcbLevel::operator>): by the
    SGX components, then PCESVN, then the TDX components. PCS already publishes them in this
    order; sorting makes the walk independent of the JSON order."""
    # reverse=True keeps equal levels in JSON order: the first wins, as in Intel's set.
    levels.sort(
        key=lambda lv: (lv.sgx_components, lv.pcesvn, lv.tdx_components or ()), reverse=True
    )
    return tuple(levels)


def _identity_levels(p: _Fields) -> tuple[IdentityTcbLevel, ...]:
    levels = [
        IdentityTcbLevel(
            isvsvn=lv.sub("tcb").integer("isvsvn", 0xFFFF),
            tcb_date=lv.date("tcbDate"),
            tcb_status=lv.status("tcbStatus", IDENTITY_STATUSES),
            advisory_ids=lv.advisories(),
        )
        for lv in p.items("tcbLevels")
    ]
    if not levels:
        raise p.fail("tcbLevels", "empty")
    levels.sort(key=lambda lv: lv.isvsvn, reverse=True)
    return tuple(levels)


def _tdx_module(p: _Fields, module_id: str) -> TdxModule:
    return TdxModule(
        id=module_id,
        mrsigner=p.hex_bytes("mrsigner", 48),
        attributes=p.hex_bytes("attributes", 8),
        attributes_mask=p.hex_bytes("attributesMask", 8),
        tcb_levels=_identity_levels(p) if module_id else (),
    )


def _qe_identity_from_text(text: str, signature: bytes) -> QeIdentity:
    s = "QE identity"
    p = _Fields(_load_json(text, s), s, "enclaveIdentity")
    qe_id = p.string("id")
    if qe_id not in ("QE", "TD_QE", "QVE"):
        raise p.fail("id", f"unknown enclave identity id {qe_id!r} (QE, TD_QE, QVE)")
    version = p.integer("version")
    if version != 2:
        raise p.fail("version", f"enclave identity version {version} is not supported (2)")
    return QeIdentity(
        id=qe_id,
        version=version,
        issue_date=p.date("issueDate"),
        next_update=p.date("nextUpdate"),
        tcb_evaluation_data_number=p.integer("tcbEvaluationDataNumber"),
        # The hex is the field's bytes as they sit in the report: a little-endian u32.
        miscselect=int.from_bytes(p.hex_bytes("miscselect", 4), "little"),
        miscselect_mask=int.from_bytes(p.hex_bytes("miscselectMask", 4), "little"),
        attributes=p.hex_bytes("attributes", 16),
        attributes_mask=p.hex_bytes("attributesMask", 16),
        mrsigner=p.hex_bytes("mrsigner", 32),
        isvprodid=p.integer("isvprodid", 0xFFFF),
        tcb_levels=_identity_levels(p),
        signed_bytes=text.encode(),
        signature=signature,
    )
