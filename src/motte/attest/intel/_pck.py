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

from motte.attest.errors import EvidenceParseError
from motte.attest.intel import _der

if TYPE_CHECKING:
    from cryptography import x509

SGX_EXTENSION_OID = "1.2.840.113741.1.13.1"
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
    except ValueError as e:  # a duplicate or undecodable extension list
        raise EvidenceParseError(_STRUCTURE, "extensions", str(e)) from e
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
        found: dict[str, _der.Tlv] = {}
        for oid, value in _pairs(raw, top):
            field = f"sgx_extension.{_name(oid)}"
            if oid in found:
                raise _der.DerError(f"{oid} appears twice", value.offset)
            found[oid] = value

        def need(suffix: str) -> _der.Tlv:
            nonlocal field
            field = f"sgx_extension.{_NAMES[suffix]}"
            if f"{_ROOT}.{suffix}" not in found:
                raise _der.DerError("missing", top.offset)
            return found[f"{_ROOT}.{suffix}"]

        ppid = _der.decode_octets(raw, need("1"), 16)
        tcb = _der.expect(need("2"), _der.SEQUENCE)
        comps: dict[str, _der.Tlv] = {}
        for oid, value in _pairs(raw, tcb):
            field = f"sgx_extension.tcb.{oid.rsplit('.', 1)[-1]}"
            comps[oid] = value
        svns = []
        for i in range(1, 17):
            field = f"sgx_extension.tcb.comp{i:02d}"
            tlv = comps.get(f"{_ROOT}.2.{i}")
            if tlv is None:
                raise _der.DerError("missing", tcb.offset)
            svns.append(_check_svn(_der.decode_unsigned(raw, tlv), 255, tlv))
        field = "sgx_extension.tcb.pcesvn"
        if f"{_ROOT}.2.17" not in comps:
            raise _der.DerError("missing", tcb.offset)
        pcesvn_tlv = comps[f"{_ROOT}.2.17"]
        pcesvn = _check_svn(_der.decode_unsigned(raw, pcesvn_tlv), 0xFFFF, pcesvn_tlv)
        field = "sgx_extension.tcb.cpusvn"
        if f"{_ROOT}.2.18" not in comps:
            raise _der.DerError("missing", tcb.offset)
        cpusvn = _der.decode_octets(raw, comps[f"{_ROOT}.2.18"], 16)
        pce_id = _der.decode_octets(raw, need("3"), 2)
        fmspc = _der.decode_octets(raw, need("4"), 6)
        sgx_type = _der.decode_unsigned(raw, need("5"), _der.ENUMERATED)
        instance = None
        if f"{_ROOT}.6" in found:
            field = "sgx_extension.platform_instance_id"
            instance = _der.decode_octets(raw, found[f"{_ROOT}.6"], 16)
        flags: dict[str, bool] = {}
        if f"{_ROOT}.7" in found:
            conf = _der.expect(found[f"{_ROOT}.7"], _der.SEQUENCE)
            for oid, value in _pairs(raw, conf):
                field = f"sgx_extension.configuration.{oid.rsplit('.', 1)[-1]}"
                flags[oid] = _der.decode_boolean(raw, value)
    except _der.DerError as e:
        raise EvidenceParseError(_STRUCTURE, field, e.reason, offset=e.offset) from None
    return PckExtensions(
        ppid=ppid,
        tcb_components=tuple(svns),
        pcesvn=pcesvn,
        cpusvn=cpusvn,
        pce_id=pce_id,
        fmspc=fmspc,
        sgx_type=sgx_type,
        platform_instance_id=instance,
        dynamic_platform=flags.get(f"{_ROOT}.7.1"),
        cached_keys=flags.get(f"{_ROOT}.7.2"),
        smt_enabled=flags.get(f"{_ROOT}.7.3"),
    )


_NAMES = {
    "1": "ppid",
    "2": "tcb",
    "3": "pce_id",
    "4": "fmspc",
    "5": "sgx_type",
    "6": "platform_instance_id",
    "7": "configuration",
}


def _name(oid: str) -> str:
    if oid.startswith(_ROOT + "."):
        return _NAMES.get(oid[len(_ROOT) + 1 :], oid)
    return oid


def _pairs(raw: bytes, seq: _der.Tlv) -> list[tuple[str, _der.Tlv]]:
    """SEQUENCE OF SEQUENCE { OID, value } -> [(oid, value tlv)]."""
    out = []
    for item in _der.children(raw, seq):
        _der.expect(item, _der.SEQUENCE)
        parts = list(_der.children(raw, item))
        if len(parts) != 2:
            raise _der.DerError(f"expected {{OID, value}}, found {len(parts)} items", item.offset)
        out.append((_der.decode_oid(raw, parts[0]), parts[1]))
    return out


def _check_svn(value: int, limit: int, tlv: _der.Tlv) -> int:
    if value > limit:
        raise _der.DerError(f"SVN {value} is larger than {limit}", tlv.start)
    return value
