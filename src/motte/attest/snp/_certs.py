"""VCEK and VLEK certificates: AMD's X.509 extensions, read strictly.

The extensions live under 1.3.6.1.4.1.3704.1 (AMD "Versioned Chip Endorsement Key (VCEK)
Certificate and KDS Interface Specification", 57230, and the VLEK chapter of the same):
``.1`` structVersion, ``.2`` productName (IA5String), ``.3.1`` blSPL, ``.3.2`` teeSPL,
``.3.3`` snpSPL, ``.3.4``-``.3.7`` reserved SPLs, ``.3.8`` ucodeSPL, ``.3.9`` fmcSPL (Turin),
``.4`` hwID (64 raw bytes, 8 on Turin; newer KDS wraps it in an OCTET STRING), ``.5`` cspID
(VLEK only). Each SPL is a DER INTEGER.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from motte.attest._x509 import common_name, fingerprint
from motte.attest.der import IA5_STRING, OCTET_STRING, UTF8_STRING, DerReader
from motte.attest.errors import EvidenceParseError
from motte.attest.snp._abi import PRODUCT_TCB_LAYOUT, encode_tcb

if TYPE_CHECKING:
    from cryptography import x509

AMD_ARC = "1.3.6.1.4.1.3704.1"
OID_STRUCT_VERSION = f"{AMD_ARC}.1"
OID_PRODUCT_NAME = f"{AMD_ARC}.2"
OID_BL_SPL = f"{AMD_ARC}.3.1"
OID_TEE_SPL = f"{AMD_ARC}.3.2"
OID_SNP_SPL = f"{AMD_ARC}.3.3"
OID_UCODE_SPL = f"{AMD_ARC}.3.8"
OID_FMC_SPL = f"{AMD_ARC}.3.9"
OID_HWID = f"{AMD_ARC}.4"
OID_CSP_ID = f"{AMD_ARC}.5"

PRODUCTS = ("Milan", "Genoa", "Turin")
#: hwID length per product: Turin chips have an 8-byte ID, the others 64.
HWID_SIZE = {"Milan": 64, "Genoa": 64, "Turin": 8}

CN_VCEK = "SEV-VCEK"
CN_VLEK = "SEV-VLEK"


def product_line(product_name: str) -> str | None:
    """ "Milan-B0" -> "Milan": the product line a productName belongs to, if motte knows it."""
    base = product_name.split("-", 1)[0]
    return base if base in PRODUCTS else None


@dataclass(frozen=True, slots=True)
class AmdKeyCertificate:
    """A VCEK or VLEK certificate with its AMD extensions decoded."""

    certificate: x509.Certificate
    #: "vcek" or "vlek".
    key_type: str
    struct_version: int
    product_name: str
    #: "Milan", "Genoa" or "Turin".
    product: str
    bl_spl: int
    tee_spl: int
    snp_spl: int
    ucode_spl: int
    fmc_spl: int | None
    hwid: bytes | None
    csp_id: str | None

    @property
    def tcb_layout(self) -> str:
        return PRODUCT_TCB_LAYOUT[self.product]

    @property
    def tcb(self) -> int:
        """The TCB_VERSION this key was derived for, rebuilt from the SPL extensions."""
        return _tcb_of(
            self.product, self.bl_spl, self.tee_spl, self.snp_spl, self.ucode_spl, self.fmc_spl
        )

    def to_dict(self) -> dict[str, Any]:
        c = self.certificate
        return {
            "key_type": self.key_type,
            "subject": c.subject.rfc4514_string(),
            "issuer": c.issuer.rfc4514_string(),
            "not_valid_before": c.not_valid_before_utc.isoformat(),
            "not_valid_after": c.not_valid_after_utc.isoformat(),
            "sha256": fingerprint(c),
            "struct_version": self.struct_version,
            "product_name": self.product_name,
            "bl_spl": self.bl_spl,
            "tee_spl": self.tee_spl,
            "snp_spl": self.snp_spl,
            "ucode_spl": self.ucode_spl,
            "fmc_spl": self.fmc_spl,
            "tcb": f"{self.tcb:#018x}",
            "hwid": self.hwid.hex() if self.hwid is not None else None,
            "csp_id": self.csp_id,
        }


@functools.lru_cache(maxsize=256)
def _tcb_of(product: str, bl: int, tee: int, snp: int, ucode: int, fmc: int | None) -> int:
    parts = {"bootloader": bl, "tee": tee, "snp": snp, "microcode": ucode}
    if fmc is not None:
        parts["fmc"] = fmc
    return encode_tcb(parts, PRODUCT_TCB_LAYOUT[product])


def key_type_of(cert: x509.Certificate) -> str | None:
    """ "vcek" or "vlek" from the subject CN, None for anything else."""
    cn = common_name(cert)
    return {CN_VCEK: "vcek", CN_VLEK: "vlek"}.get(cn)


def parse_amd_key_certificate(cert: x509.Certificate) -> AmdKeyCertificate:
    """Decode a VCEK/VLEK's AMD extensions; raises EvidenceParseError on anything malformed."""
    from cryptography import x509 as _x509

    key_type = key_type_of(cert)
    structure = f"{(key_type or 'VCEK').upper()} certificate"
    if key_type is None:
        raise EvidenceParseError(
            structure, "subject", f"CN is {common_name(cert)!r}, not SEV-VCEK or SEV-VLEK"
        )
    raw: dict[str, bytes] = {}
    for ext in cert.extensions:
        if isinstance(ext.value, _x509.UnrecognizedExtension):
            raw[ext.oid.dotted_string] = ext.value.value

    def need(oid: str, name: str) -> bytes:
        if oid not in raw:
            raise EvidenceParseError(structure, name, f"extension {oid} is missing")
        return raw[oid]

    def integer(oid: str, name: str) -> int:
        value = need(oid, name)
        r = DerReader(value, structure)
        top = r.tlv(0, len(value), name)
        if top.end != len(value):
            raise EvidenceParseError(structure, name, "trailing bytes after the INTEGER")
        n = r.integer(top, name)
        if name != "structVersion" and n > 0xFF:
            raise EvidenceParseError(structure, name, f"{n} does not fit an 8-bit SPL")
        return n

    struct_version = integer(OID_STRUCT_VERSION, "structVersion")
    name_der = need(OID_PRODUCT_NAME, "productName")
    r = DerReader(name_der, structure)
    top = r.tlv(0, len(name_der), "productName")
    product_name = r.string(top, "productName", (IA5_STRING, UTF8_STRING))
    product = product_line(product_name)
    if product is None:
        raise EvidenceParseError(structure, "productName", f"unknown product {product_name!r}")
    fmc = integer(OID_FMC_SPL, "fmcSPL") if product == "Turin" else None
    hwid = _hwid(raw.get(OID_HWID), product, structure) if key_type == "vcek" else None
    if key_type == "vcek" and hwid is None:
        raise EvidenceParseError(structure, "hwID", f"extension {OID_HWID} is missing")
    csp_id = None
    if OID_CSP_ID in raw:
        v = raw[OID_CSP_ID]
        r = DerReader(v, structure)
        csp_id = r.string(r.tlv(0, len(v), "cspID"), "cspID", (IA5_STRING, UTF8_STRING))
    return AmdKeyCertificate(
        certificate=cert,
        key_type=key_type,
        struct_version=struct_version,
        product_name=product_name,
        product=product,
        bl_spl=integer(OID_BL_SPL, "blSPL"),
        tee_spl=integer(OID_TEE_SPL, "teeSPL"),
        snp_spl=integer(OID_SNP_SPL, "snpSPL"),
        ucode_spl=integer(OID_UCODE_SPL, "ucodeSPL"),
        fmc_spl=fmc,
        hwid=hwid,
        csp_id=csp_id,
    )


def _hwid(value: bytes | None, product: str, structure: str) -> bytes | None:
    if value is None:
        return None
    size = HWID_SIZE[product]
    if len(value) == size:
        return value
    # Newer KDS certificates wrap the ID in an OCTET STRING (04 40 ... / 04 08 ...).
    if len(value) == size + 2 and value[0] == OCTET_STRING and value[1] == size:
        return value[2:]
    raise EvidenceParseError(
        structure, "hwID", f"{len(value)} bytes; a {product} hwID is {size} bytes"
    )
