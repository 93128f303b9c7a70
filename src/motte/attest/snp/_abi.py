"""AMD SEV-SNP attestation report: bytes <-> a frozen dataclass, nothing more.

The layout is the ATTESTATION_REPORT structure of the SEV-SNP firmware ABI specification
(AMD 56860, table "ATTESTATION_REPORT Structure"); offsets are named below as the spec names
the fields. Versions 2, 3 (adds CPUID family/model/stepping; 4 is laid out as 3) and 5 (adds
the launch and current mitigation vectors) are accepted. Parsing checks the size, the version,
every reserved range (must be zero) and the reserved policy bit (must be one), and makes no
trust decision: a parsed report is *unverified* until :mod:`motte.attest.snp` verify says so.
:meth:`Report.to_bytes` is the exact inverse of :meth:`Report.from_bytes`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from motte.attest.errors import EvidenceParseError

STRUCTURE = "SNP report"

REPORT_SIZE = 0x4A0
#: The signature covers bytes 0x000..0x29F.
SIGNED_SIZE = 0x2A0
SIGNATURE_OFFSET = 0x2A0
#: ECDSA P-384 R and S, each a 72-byte little-endian field (only 48 bytes are used).
SIG_COMPONENT_SIZE = 0x48
SIGNATURE_ALGO_ECDSA_P384_SHA384 = 1
SUPPORTED_VERSIONS = (2, 3, 4, 5)

REPORT_DATA_SIZE = 64
MEASUREMENT_SIZE = 48
HOST_DATA_SIZE = 32
KEY_DIGEST_SIZE = 48
CHIP_ID_SIZE = 64

# POLICY bits (firmware ABI spec, "GUEST_POLICY Structure").
POLICY_SMT = 1 << 16
POLICY_RESERVED_1 = 1 << 17  # must be one
POLICY_MIGRATE_MA = 1 << 18
POLICY_DEBUG = 1 << 19
POLICY_SINGLE_SOCKET = 1 << 20
POLICY_CXL_ALLOW = 1 << 21
POLICY_MEM_AES_256_XTS = 1 << 22
POLICY_RAPL_DIS = 1 << 23
POLICY_CIPHERTEXT_HIDING = 1 << 24
POLICY_PAGE_SWAP_DISABLE = 1 << 25
#: Bits 26..63 are reserved and must be zero.
POLICY_MBZ_MASK = ~((1 << 26) - 1) & 0xFFFF_FFFF_FFFF_FFFF

# The u32 at 0x48: AUTHOR_KEY_EN, MASK_CHIP_ID, SIGNING_KEY; the rest must be zero.
SIGNER_AUTHOR_KEY_EN = 1 << 0
SIGNER_MASK_CHIP_ID = 1 << 1
SIGNER_KEY_SHIFT = 2
SIGNER_KEY_MASK = 0b111 << SIGNER_KEY_SHIFT
SIGNER_MBZ_MASK = ~0b11111 & 0xFFFF_FFFF
#: SIGNING_KEY values: which key signed the report.
SIGNING_KEYS = {0: "vcek", 1: "vlek", 7: "none"}

PLATFORM_INFO_BITS = {
    0: "smt_en",
    1: "tsme_en",
    2: "ecc_en",
    3: "rapl_dis",
    4: "ciphertext_hiding_en",
    5: "alias_check_complete",
    7: "tio_en",
}

# (name, offset, format) of every scalar field; byte strings are in _BYTES.
_INTS: tuple[tuple[str, int, str], ...] = (
    ("version", 0x000, "<I"),
    ("guest_svn", 0x004, "<I"),
    ("policy", 0x008, "<Q"),
    ("vmpl", 0x030, "<I"),
    ("signature_algo", 0x034, "<I"),
    ("current_tcb", 0x038, "<Q"),
    ("platform_info", 0x040, "<Q"),
    ("signer_info", 0x048, "<I"),
    ("reported_tcb", 0x180, "<Q"),
    ("committed_tcb", 0x1E0, "<Q"),
    ("current_build", 0x1E8, "<B"),
    ("current_minor", 0x1E9, "<B"),
    ("current_major", 0x1EA, "<B"),
    ("committed_build", 0x1EC, "<B"),
    ("committed_minor", 0x1ED, "<B"),
    ("committed_major", 0x1EE, "<B"),
    ("launch_tcb", 0x1F0, "<Q"),
)
_BYTES: tuple[tuple[str, int, int], ...] = (
    ("family_id", 0x010, 16),
    ("image_id", 0x020, 16),
    ("report_data", 0x050, REPORT_DATA_SIZE),
    ("measurement", 0x090, MEASUREMENT_SIZE),
    ("host_data", 0x0C0, HOST_DATA_SIZE),
    ("id_key_digest", 0x0E0, KEY_DIGEST_SIZE),
    ("author_key_digest", 0x110, KEY_DIGEST_SIZE),
    ("report_id", 0x140, 32),
    ("report_id_ma", 0x160, 32),
    ("chip_id", 0x1A0, CHIP_ID_SIZE),
    ("signature_r", 0x2A0, SIG_COMPONENT_SIZE),
    ("signature_s", 0x2E8, SIG_COMPONENT_SIZE),
)
# Version-dependent fields.
_CPUID = (("cpuid_fam_id", 0x188), ("cpuid_mod_id", 0x189), ("cpuid_step", 0x18A))
_MIT_VECTORS = (("launch_mit_vector", 0x1F8), ("current_mit_vector", 0x200))


def _reserved_ranges(version: int) -> tuple[tuple[str, int, int], ...]:
    """(name, start, end) of the ranges that must be zero in a report of ``version``."""
    ranges = [("reserved after SIGNER_INFO", 0x04C, 0x050)]
    if version >= 3:
        ranges.append(("reserved after CPUID", 0x18B, 0x1A0))
    else:
        ranges.append(("reserved after REPORTED_TCB", 0x188, 0x1A0))
    ranges.append(("reserved after CURRENT_MAJOR", 0x1EB, 0x1EC))
    ranges.append(("reserved after COMMITTED_MAJOR", 0x1EF, 0x1F0))
    if version >= 5:
        ranges.append(("reserved after CURRENT_MIT_VECTOR", 0x208, 0x2A0))
    else:
        ranges.append(("reserved after LAUNCH_TCB", 0x1F8, 0x2A0))
    ranges.append(("reserved in SIGNATURE", 0x330, REPORT_SIZE))
    return tuple(ranges)


#: The whole report in offset order, for one struct (un)pack. ``_r...`` are reserved ranges;
#: CPUID and the mitigation vectors are unpacked for every version and set to None (after
#: the reserved checks saw zeros there) when the version lacks them.
_LAYOUT_FIELDS: tuple[tuple[str, str], ...] = (
    ("version", "I"), ("guest_svn", "I"), ("policy", "Q"), ("family_id", "16s"),
    ("image_id", "16s"), ("vmpl", "I"), ("signature_algo", "I"), ("current_tcb", "Q"),
    ("platform_info", "Q"), ("signer_info", "I"), ("_r04c", "4s"), ("report_data", "64s"),
    ("measurement", "48s"), ("host_data", "32s"), ("id_key_digest", "48s"),
    ("author_key_digest", "48s"), ("report_id", "32s"), ("report_id_ma", "32s"),
    ("reported_tcb", "Q"), ("cpuid_fam_id", "B"), ("cpuid_mod_id", "B"), ("cpuid_step", "B"),
    ("_r18b", "21s"), ("chip_id", "64s"), ("committed_tcb", "Q"), ("current_build", "B"),
    ("current_minor", "B"), ("current_major", "B"), ("_r1eb", "1s"), ("committed_build", "B"),
    ("committed_minor", "B"), ("committed_major", "B"), ("_r1ef", "1s"), ("launch_tcb", "Q"),
    ("launch_mit_vector", "Q"), ("current_mit_vector", "Q"), ("_r208", "152s"),
    ("signature_r", "72s"), ("signature_s", "72s"), ("_r330", "368s"),
)  # fmt: skip
_LAYOUT = struct.Struct("<" + "".join(f for _, f in _LAYOUT_FIELDS))
assert _LAYOUT.size == REPORT_SIZE
_LAYOUT_NAMES = tuple(n for n, _ in _LAYOUT_FIELDS)
_RESERVED_NAMES = tuple(n for n in _LAYOUT_NAMES if n.startswith("_r"))
# The layout must put every field at the offset the spec tables above give it.
_OFFSETS = {
    name: struct.calcsize("<" + "".join(f for _, f in _LAYOUT_FIELDS[:i]))
    for i, (name, _) in enumerate(_LAYOUT_FIELDS)
}
for _name, _off, *_ in (*_INTS, *_BYTES, *_CPUID, *_MIT_VECTORS):
    assert _OFFSETS[_name] == _off, _name
_RESERVED_ZEROS = {n: bytes(int(f[:-1])) for n, f in _LAYOUT_FIELDS if n.startswith("_r")}
_ZEROS = bytes(REPORT_SIZE)


#: Integer fields shown in hex (bit fields and TCB versions), the rest in decimal.
_HEX_INTS = frozenset(
    {
        "policy",
        "platform_info",
        "signer_info",
        "current_tcb",
        "reported_tcb",
        "committed_tcb",
        "launch_tcb",
        "launch_mit_vector",
        "current_mit_vector",
    }
)


def _hex(b: bytes) -> str:
    return b.hex()


@dataclass(frozen=True, slots=True)
class GuestPolicy:
    """The POLICY field decoded: what the guest owner allowed the host to do."""

    abi_minor: int
    abi_major: int
    smt: bool
    migrate_ma: bool
    debug: bool
    single_socket: bool
    cxl_allow: bool
    mem_aes_256_xts: bool
    rapl_dis: bool
    ciphertext_hiding: bool
    page_swap_disable: bool

    @classmethod
    def from_int(cls, policy: int) -> GuestPolicy:
        return cls(
            abi_minor=policy & 0xFF,
            abi_major=(policy >> 8) & 0xFF,
            smt=bool(policy & POLICY_SMT),
            migrate_ma=bool(policy & POLICY_MIGRATE_MA),
            debug=bool(policy & POLICY_DEBUG),
            single_socket=bool(policy & POLICY_SINGLE_SOCKET),
            cxl_allow=bool(policy & POLICY_CXL_ALLOW),
            mem_aes_256_xts=bool(policy & POLICY_MEM_AES_256_XTS),
            rapl_dis=bool(policy & POLICY_RAPL_DIS),
            ciphertext_hiding=bool(policy & POLICY_CIPHERTEXT_HIDING),
            page_swap_disable=bool(policy & POLICY_PAGE_SWAP_DISABLE),
        )

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


#: TCB_VERSION layouts: byte index of each component in the little-endian u64.
TCB_LAYOUTS: dict[str, dict[str, int]] = {
    # Milan and Genoa: [0] bootloader, [1] TEE, [2..5] reserved, [6] SNP, [7] microcode.
    "milan-genoa": {"bootloader": 0, "tee": 1, "snp": 6, "microcode": 7},
    # Turin: [0] FMC, [1] bootloader, [2] TEE, [3] SNP, [4..6] reserved, [7] microcode.
    "turin": {"fmc": 0, "bootloader": 1, "tee": 2, "snp": 3, "microcode": 7},
}
PRODUCT_TCB_LAYOUT = {"Milan": "milan-genoa", "Genoa": "milan-genoa", "Turin": "turin"}


def decode_tcb(raw: int, layout: str) -> dict[str, int]:
    """The named components of a TCB_VERSION under ``layout`` ("milan-genoa" or "turin")."""
    b = raw.to_bytes(8, "little")
    return {name: b[i] for name, i in TCB_LAYOUTS[layout].items()}


def encode_tcb(parts: dict[str, int], layout: str) -> int:
    """Inverse of :func:`decode_tcb`; components missing from ``parts`` are zero."""
    b = bytearray(8)
    for name, i in TCB_LAYOUTS[layout].items():
        b[i] = parts.get(name, 0)
    return int.from_bytes(b, "little")


def product_from_cpuid(family: int, model: int) -> str | None:
    """The SEV-SNP product line of a CPUID family/model, or None when motte does not know it.

    Family 19h: models 00h-0Fh Milan, 10h-1Fh and A0h-AFh Genoa (incl. Bergamo, Siena, which
    use Genoa keys); family 1Ah: models 00h-1Fh Turin.
    """
    if family == 0x19:
        if model <= 0x0F:
            return "Milan"
        if 0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF:
            return "Genoa"
    if family == 0x1A and model <= 0x1F:
        return "Turin"
    return None


@dataclass(frozen=True, slots=True)
class Report:
    """An SEV-SNP ATTESTATION_REPORT. Field names are the spec's, in snake_case.

    TCB fields are kept as raw u64 values: their layout depends on the product (Milan/Genoa or
    Turin), which a version-2 report does not carry; use :func:`decode_tcb`. Fields a version
    does not have are None.
    """

    version: int
    guest_svn: int
    policy: int
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: int
    platform_info: int
    signer_info: int
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: int
    cpuid_fam_id: int | None
    cpuid_mod_id: int | None
    cpuid_step: int | None
    chip_id: bytes
    committed_tcb: int
    current_build: int
    current_minor: int
    current_major: int
    committed_build: int
    committed_minor: int
    committed_major: int
    launch_tcb: int
    launch_mit_vector: int | None
    current_mit_vector: int | None
    signature_r: bytes
    signature_s: bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> Report:
        """Parse exactly one report; raises EvidenceParseError naming field and offset."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError("Report.from_bytes takes bytes")
        data = bytes(data)
        if len(data) < REPORT_SIZE:
            raise EvidenceParseError(
                STRUCTURE,
                "length",
                f"{len(data)} bytes, a report is {REPORT_SIZE} ({REPORT_SIZE:#x})",
                offset=len(data),
            )
        if len(data) > REPORT_SIZE:
            raise EvidenceParseError(
                STRUCTURE,
                "length",
                f"{len(data) - REPORT_SIZE} trailing bytes after the {REPORT_SIZE}-byte report",
                offset=REPORT_SIZE,
            )
        # One unpack of the whole layout (see _LAYOUT); reserved ranges are checked below.
        kw = dict(zip(_LAYOUT_NAMES, _LAYOUT.unpack(data), strict=True))
        version = kw["version"]
        if version not in SUPPORTED_VERSIONS:
            raise EvidenceParseError(
                STRUCTURE,
                "VERSION",
                f"{version} is not a supported report version (2, 3, 4, 5)",
                offset=0,
            )
        for name, start, end in _reserved_ranges(version):
            if data[start:end] != _ZEROS[: end - start]:
                first = start + next(i for i, b in enumerate(data[start:end]) if b)
                raise EvidenceParseError(STRUCTURE, name, "must be zero", offset=first)
        for name in _RESERVED_NAMES:
            del kw[name]
        if version < 3:  # CPUID arrived in version 3 (zero before: checked above)
            kw["cpuid_fam_id"] = kw["cpuid_mod_id"] = kw["cpuid_step"] = None
        if version < 5:  # the mitigation vectors in version 5
            kw["launch_mit_vector"] = kw["current_mit_vector"] = None
        policy = kw["policy"]
        if not policy & POLICY_RESERVED_1:
            raise EvidenceParseError(
                STRUCTURE, "POLICY", "bit 17 is reserved and must be one", offset=0x008
            )
        if policy & POLICY_MBZ_MASK:
            raise EvidenceParseError(
                STRUCTURE,
                "POLICY",
                f"reserved bits 26-63 must be zero (policy {policy:#x})",
                offset=0x008,
            )
        signer = kw["signer_info"]
        if signer & SIGNER_MBZ_MASK:
            raise EvidenceParseError(
                STRUCTURE, "SIGNER_INFO", "reserved bits 5-31 must be zero", offset=0x048
            )
        key = (signer & SIGNER_KEY_MASK) >> SIGNER_KEY_SHIFT
        if key not in SIGNING_KEYS:
            raise EvidenceParseError(
                STRUCTURE, "SIGNING_KEY", f"{key} is a reserved value", offset=0x048
            )
        return cls(**kw)

    def to_bytes(self) -> bytes:
        """The exact report bytes: ``Report.from_bytes(b).to_bytes() == b``."""
        for name, _off, size in _BYTES:
            value = getattr(self, name)
            if len(value) != size:
                raise ValueError(f"{name} must be {size} bytes, not {len(value)}")
        values = [
            _RESERVED_ZEROS.get(name) if name in _RESERVED_ZEROS else getattr(self, name) or 0
            for name in _LAYOUT_NAMES
        ]
        return _LAYOUT.pack(*values)

    def signed_bytes(self) -> bytes:
        """The bytes the signature covers (0x000..0x29F)."""
        return self.to_bytes()[:SIGNED_SIZE]

    # Decoded views --------------------------------------------------------------------

    @property
    def guest_policy(self) -> GuestPolicy:
        return GuestPolicy.from_int(self.policy)

    @property
    def signing_key(self) -> str:
        """Which key signed the report: "vcek", "vlek" or "none"."""
        return SIGNING_KEYS[(self.signer_info & SIGNER_KEY_MASK) >> SIGNER_KEY_SHIFT]

    @property
    def author_key_en(self) -> bool:
        return bool(self.signer_info & SIGNER_AUTHOR_KEY_EN)

    @property
    def mask_chip_id(self) -> bool:
        return bool(self.signer_info & SIGNER_MASK_CHIP_ID)

    @property
    def debug(self) -> bool:
        return bool(self.policy & POLICY_DEBUG)

    @property
    def product(self) -> str | None:
        """The product line from CPUID (version 3+), else None (the VCEK tells)."""
        if self.cpuid_fam_id is None or self.cpuid_mod_id is None:
            return None
        return product_from_cpuid(self.cpuid_fam_id, self.cpuid_mod_id)

    def platform_flags(self) -> dict[str, bool]:
        return {
            name: bool(self.platform_info >> bit & 1) for bit, name in PLATFORM_INFO_BITS.items()
        }

    def to_dict(self, *, product: str | None = None) -> dict[str, Any]:
        """Every field, bytes as hex, with decoded policy, signer info and TCBs.

        ``product`` chooses the TCB layout when the report does not carry CPUID.
        """
        out: dict[str, Any] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if isinstance(value, bytes):
                value = _hex(value)
            elif name in _HEX_INTS and value is not None:
                value = f"{value:#018x}" if name.endswith(("_tcb", "_vector")) else f"{value:#x}"
            out[name] = value
        out["policy_decoded"] = self.guest_policy.to_dict()
        out["signing_key"] = self.signing_key
        out["author_key_en"] = self.author_key_en
        out["mask_chip_id"] = self.mask_chip_id
        out["platform_info_decoded"] = self.platform_flags()
        product = product or self.product
        out["product"] = product
        layout = PRODUCT_TCB_LAYOUT.get(product or "")
        if layout:
            for name in ("current_tcb", "reported_tcb", "committed_tcb", "launch_tcb"):
                out[f"{name}_decoded"] = decode_tcb(getattr(self, name), layout)
        return out
