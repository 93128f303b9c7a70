"""The Intel SGX extension of a PCK certificate (OID 1.2.840.113741.1.13.1).

Layout (Intel "SGX PCK Certificate and Certificate Revocation List Profile Specification"):

    SEQUENCE OF SEQUENCE { OID, value }:
      .1  PPID                OCTET STRING (16)
      .2  TCB                 SEQUENCE OF SEQUENCE { OID, value }:
            .2.1 - .2.16      INTEGER   SGX TCB component SVNs (comp01 .. comp16)
            .2.17             INTEGER   PCESVN
            .2.18             OCTET STRING (16) CPUSVN
      .3  PCE-ID              OCTET STRING (2)
      .4  FMSPC               OCTET STRING (6)
      .5  SGX type            ENUMERATED (0 standard, 1 scalable, 2 scalable with integrity)
      .6  platform instance ID  OCTET STRING (16)   (platform CA certificates only)
      .7  configuration       SEQUENCE { .7.1 dynamicPlatform, .7.2 cachedKeys,
                                         .7.3 SMTEnabled: BOOLEAN }  (platform CA only)

The TCB level walk compares the sixteen component SVNs and PCESVN against TCB info; FMSPC
and PCE-ID select which TCB info applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from motte.attest import der as _der
from motte.attest.errors import EvidenceParseError

if TYPE_CHECKING:
    from cryptography import x509

SGX_EXTENSION_OID = "1.2.840.113741.1.13.1"
SGX_EXTENSION_OID_BODY = _der.encode_oid_body(SGX_EXTENSION_OID)
_ROOT = SGX_EXTENSION_OID
_STRUCTURE = "PCK certificate"


@dataclass(frozen=True, slots=True)
class PckExtensions:
    ppid: bytes
    #: The sixteen SGX TCB component SVNs (comp01 .. comp16).
    tcb_components: tuple[int, ...]
    pcesvn: int
    cpusvn: bytes
    pce_id: bytes
    fmspc: bytes
    sgx_type: int
    platform_instance_id: bytes | None = None
    dynamic_platform: bool | None = None
    cached_keys: bool | None = None
    smt_enabled: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ppid": self.ppid.hex(),
            "tcb_components": list(self.tcb_components),
            "pcesvn": self.pcesvn,
            "cpusvn": self.cpusvn.hex(),
            "pce_id": self.pce_id.hex(),
            "fmspc": self.fmspc.hex(),
            "sgx_type": self.sgx_type,
            "platform_instance_id": (
                None if self.platform_instance_id is None else self.platform_instance_id.hex()
            ),
            "dynamic_platform": self.dynamic_platform,
            "cached_keys": self.cached_keys,
            "smt_enabled": self.smt_enabled,
        }


def parse_pck_extensions(cert: x509.Certificate | bytes) -> PckExtensions:
    """The SGX extension of a PCK certificate (a parsed certificate, or its DER).

    Raises EvidenceParseError naming the sub-field (e.g. ``sgx_extension.tcb.comp05``) and
    the offset inside the extension value when it is missing or malformed.
    """
    from cryptography import x509

    if isinstance(cert, bytes | bytearray):
        try:
            cert = x509.load_der_x509_certificate(bytes(cert))
        except ValueError as e:
            raise EvidenceParseError(_STRUCTURE, "certificate", f"not DER X.509: {e}") from e
    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSION_OID))
    except x509.ExtensionNotFound:
        raise EvidenceParseError(
            _STRUCTURE, "sgx_extension", f"no SGX extension {SGX_EXTENSION_OID}"
        ) from None
    except (ValueError, x509.DuplicateExtension, x509.UnsupportedGeneralNameType) as e:
        raise EvidenceParseError(_STRUCTURE, "extensions", str(e)) from None
    value = ext.value
    raw = value.value if isinstance(value, x509.UnrecognizedExtension) else b""
    return parse_sgx_extension_value(raw)


def parse_sgx_extension_value(raw: bytes) -> PckExtensions:
    """Decode the DER value of the SGX extension (offsets in errors are into ``raw``)."""
    field = "sgx_extension"
    try:
        top = _der.expect(_der.read_tlv(raw, 0, len(raw)), _der.SEQUENCE)
        if top.end != len(raw):
            raise _der.DerError("bytes after the extension value", top.end)
        found = _pairs(raw, top, "sgx_extension", _TOP)

        def need(name: str) -> _der.Tlv:
            nonlocal field
            field = f"sgx_extension.{name}"
            if name not in found:
                raise _der.DerError("missing", top.offset)
            return found[name]

        ppid = _der.decode_octets(raw, need("ppid"), 16)
        tcb = _der.expect(need("tcb"), _der.SEQUENCE)
        comps = _pairs(raw, tcb, "sgx_extension.tcb", _TCB)
        svns = []
        for name in _COMPONENTS:
            field = f"sgx_extension.tcb.{name}"
            if name not in comps:
                raise _der.DerError("missing", tcb.offset)
            limit = 0xFFFF if name == "pcesvn" else 255
            value = _der.decode_unsigned(raw, comps[name])
            if value > limit:
                raise _der.DerError(f"SVN {value} is larger than {limit}", comps[name].start)
            svns.append(value)
        field = "sgx_extension.tcb.cpusvn"
        if "cpusvn" not in comps:
            raise _der.DerError("missing", tcb.offset)
        cpusvn = _der.decode_octets(raw, comps["cpusvn"], 16)
        pce_id = _der.decode_octets(raw, need("pce_id"), 2)
        fmspc = _der.decode_octets(raw, need("fmspc"), 6)
        sgx_type = _der.decode_unsigned(raw, need("sgx_type"), _der.ENUMERATED)
        instance = None
        if "platform_instance_id" in found:
            field = "sgx_extension.platform_instance_id"
            instance = _der.decode_octets(raw, found["platform_instance_id"], 16)
        flags: dict[str, bool] = {}
        if "configuration" in found:
            conf = _der.expect(found["configuration"], _der.SEQUENCE)
            for name, value in _pairs(raw, conf, "sgx_extension.configuration", _CONF).items():
                field = f"sgx_extension.configuration.{name}"
                flags[name] = _der.decode_boolean(raw, value)
    except _Fault as e:
        raise EvidenceParseError(_STRUCTURE, e.field, e.reason, offset=e.offset) from None
    except _der.DerError as e:
        raise EvidenceParseError(_STRUCTURE, field, e.reason, offset=e.offset) from None
    return PckExtensions(
        ppid=ppid,
        tcb_components=tuple(svns[:16]),
        pcesvn=svns[16],
        cpusvn=cpusvn,
        pce_id=pce_id,
        fmspc=fmspc,
        sgx_type=sgx_type,
        platform_instance_id=instance,
        dynamic_platform=flags.get("dynamic_platform"),
        cached_keys=flags.get("cached_keys"),
        smt_enabled=flags.get("smt_enabled"),
    )


def _oids(prefix: str, names: dict[str, str]) -> dict[bytes, str]:
    return {_der.encode_oid_body(f"{prefix}.{arc}"): name for arc, name in names.items()}


_TOP = _oids(
    _ROOT,
    {
        "1": "ppid",
        "2": "tcb",
        "3": "pce_id",
        "4": "fmspc",
        "5": "sgx_type",
        "6": "platform_instance_id",
        "7": "configuration",
    },
)
_COMPONENTS = [f"comp{i:02d}" for i in range(1, 17)] + ["pcesvn"]
_TCB = _oids(
    f"{_ROOT}.2", {str(i): name for i, name in enumerate([*_COMPONENTS, "cpusvn"], start=1)}
)
_CONF = _oids(f"{_ROOT}.7", {"1": "dynamic_platform", "2": "cached_keys", "3": "smt_enabled"})


class _Fault(_der.DerError):
    def __init__(self, field: str, reason: str, offset: int) -> None:
        super().__init__(reason, offset)
        self.field = field


def _pairs(raw: bytes, seq: _der.Tlv, path: str, known: dict[bytes, str]) -> dict[str, _der.Tlv]:
    """SEQUENCE OF SEQUENCE { OID, value } -> {name: value}; unknown OIDs are skipped (the
    profile may grow), repeated ones refused. Runs ~30 times per PCK certificate, so the
    OID is compared as raw bytes rather than decoded."""
    out: dict[str, _der.Tlv] = {}
    read_tlv = _der.read_tlv
    pos, end = seq.start, seq.end
    while pos < end:
        item = read_tlv(raw, pos, end)
        if item.tag != _der.SEQUENCE:
            raise _Fault(path, f"expected a SEQUENCE, found tag {item.tag:#04x}", pos)
        oid = read_tlv(raw, item.start, item.end)
        if oid.tag != _der.OID:
            raise _Fault(path, f"expected an OID, found tag {oid.tag:#04x}", oid.offset)
        value = read_tlv(raw, oid.end, item.end)
        if value.end != item.end:
            raise _Fault(path, "expected {OID, value}, found more items", item.offset)
        name = known.get(raw[oid.start : oid.end])
        if name is None:
            _der.decode_oid(raw, oid)  # still must be a well-formed OID
        elif name in out:
            raise _Fault(f"{path}.{name}", "appears twice", item.offset)
        else:
            out[name] = value
        pos = item.end
    return out
