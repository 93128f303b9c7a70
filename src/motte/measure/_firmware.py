"""Parse an OVMF/TDVF firmware image: its GUID table, SEV metadata and TDX metadata.

Sans I/O: :func:`parse_firmware` takes the image's bytes. Every offset read from the file is
checked against the file before use, and anything QEMU would refuse or that would make the
measurement a guess is refused here too, with one line naming what and where.

Layouts (all little-endian):

- GUID table (edk2 ``OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm``; QEMU
  ``hw/i386/pc_sysfw_ovmf.c``): the last 32 bytes are the reset vector; before them a footer
  entry ``{u16 table size, GUID 96b582de-...}`` closes a table read backwards, each entry
  ``{data, u16 entry size, GUID}``. QEMU takes the first entry found from the end.
- SEV metadata (edk2 ``OvmfSevMetadata.asm``): the table entry holds a u32 offset from the
  end of the image to ``"ASEV", u32 size, u32 version (1), u32 count`` and ``count`` items
  ``{u32 GPA, u32 size, u32 type}``.
- TDX metadata (edk2 ``IntelTdxMetadata.asm``; QEMU ``hw/i386/tdvf.c``): the table entry holds
  a u32 offset from the end to ``"TDVF", u32 length, u32 version (1), u32 count`` and 32-byte
  sections ``{u32 data offset, u32 raw size, u64 GPA, u64 memory size, u32 type,
  u32 attributes}``; data offsets index this file.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from motte.measure.errors import FirmwareError

PAGE = 0x1000
FOUR_GIB = 1 << 32

FOOTER_GUID = "96b582de-1fb2-45f7-baea-a366c55a082d"
SEV_ES_RESET_BLOCK_GUID = "00f771de-1a7e-4fcb-890e-68c77e2fb44e"
SEV_HASH_TABLE_GUID = "7255371f-3a3b-4b04-927b-1da6efa8d454"
SEV_METADATA_GUID = "dc886566-984a-4798-a75e-5585a7bf67cc"
TDX_METADATA_OFFSET_GUID = "e47a6535-984a-4798-865e-4685a7bf8ec2"

#: SEV metadata section types (edk2 OvmfSevMetadata.asm).
SEV_SECTION_TYPES = {
    1: "SNP_SEC_MEM",
    2: "SNP_SECRETS",
    3: "CPUID",
    4: "SVSM_CAA",
    0x10: "SNP_KERNEL_HASHES",
}
SNP_KERNEL_HASHES = 0x10
#: TDVF section types QEMU accepts (hw/i386/tdvf.c); td-shim's others are not TDVF.
TDX_SECTION_TYPES = {0: "BFV", 1: "CFV", 2: "TD_HOB", 3: "TempMem"}
TDX_ATTR_MR_EXTEND = 1
TDX_ATTR_PAGE_AUG = 2

_ENTRY_HEADER = 18  # u16 size + GUID
_RESET_VECTOR = 32


@dataclass(frozen=True, slots=True)
class SevSection:
    gpa: int
    size: int
    type: int

    @property
    def name(self) -> str:
        return SEV_SECTION_TYPES[self.type]

    def to_dict(self) -> dict[str, object]:
        return {"gpa": f"{self.gpa:#x}", "size": f"{self.size:#x}", "type": self.name}


@dataclass(frozen=True, slots=True)
class TdxSection:
    data_offset: int
    raw_size: int
    gpa: int
    memory_size: int
    type: int
    attributes: int

    @property
    def name(self) -> str:
        return TDX_SECTION_TYPES[self.type]

    @property
    def extend_mr(self) -> bool:
        return bool(self.attributes & TDX_ATTR_MR_EXTEND)

    @property
    def page_aug(self) -> bool:
        return bool(self.attributes & TDX_ATTR_PAGE_AUG)

    def to_dict(self) -> dict[str, object]:
        return {
            "type": self.name,
            "data_offset": f"{self.data_offset:#x}",
            "raw_size": f"{self.raw_size:#x}",
            "gpa": f"{self.gpa:#x}",
            "memory_size": f"{self.memory_size:#x}",
            "mr_extend": self.extend_mr,
            "page_aug": self.page_aug,
        }


@dataclass(frozen=True, slots=True)
class Firmware:
    """A parsed firmware image. ``sev_sections``/``tdx_sections`` are None when absent."""

    name: str
    data: bytes = field(repr=False)
    table: Mapping[str, bytes] = field(repr=False)
    sev_sections: tuple[SevSection, ...] | None
    tdx_sections: tuple[TdxSection, ...] | None
    #: EIP the APs start at (SEV-ES reset block), None without the entry.
    ap_reset_eip: int | None
    #: GPA of the kernel-hashes table QEMU fills, None when the entry is absent or zero.
    hashes_table_gpa: int | None
    #: Why the SEV or TDX metadata is unusable, raised only when that TEE is asked for: an
    #: AmdSev build carries TDX metadata its 4 KiB tail cannot satisfy, and that is no reason
    #: to refuse it for SNP.
    sev_error: FirmwareError | None = field(default=None, repr=False)
    tdx_error: FirmwareError | None = field(default=None, repr=False)

    @property
    def gpa(self) -> int:
        """Where the image sits: it is mapped so that it ends at 4 GiB."""
        return FOUR_GIB - len(self.data)

    @property
    def has_kernel_hashes(self) -> bool:
        return any(s.type == SNP_KERNEL_HASHES for s in self.sev_sections or ())

    def _require_table(self) -> None:
        if not self.table:
            raise FirmwareError(
                f"{self.name}: no OVMF GUID table (footer GUID {FOOTER_GUID} is not 48 bytes "
                "before the end): not an OVMF/TDVF image, or truncated at the end"
            )

    def require_sev(self) -> tuple[SevSection, ...]:
        self._require_table()
        if self.sev_error is not None:
            raise self.sev_error
        if self.sev_sections is None:
            raise FirmwareError(
                f"{self.name}: no SEV metadata (GUID {SEV_METADATA_GUID} is not in the "
                "firmware's GUID table): QEMU refuses such firmware for SEV-SNP "
                '("Failed to locate SEV metadata header")',
                hint="use an OVMF built with SEV support (OvmfPkgX64 or AmdSevX64), the "
                "unified OVMF.fd rather than a CODE/VARS split",
            )
        return self.sev_sections

    def require_tdx(self) -> tuple[TdxSection, ...]:
        self._require_table()
        if self.tdx_error is not None:
            raise self.tdx_error
        if self.tdx_sections is None:
            raise FirmwareError(
                f"{self.name}: no TDX metadata (GUID {TDX_METADATA_OFFSET_GUID} is not in "
                "the firmware's GUID table): not a TDVF build",
                hint="use an OVMF built with TDX support (IntelTdxX64 or OvmfPkgX64 with TDX)",
            )
        return self.tdx_sections


def _guid(raw: bytes) -> str:
    return str(uuid.UUID(bytes_le=bytes(raw)))


def _u32(data: bytes, off: int) -> int:
    return int.from_bytes(data[off : off + 4], "little")


def parse_guid_table(data: bytes, name: str) -> dict[str, bytes]:
    """The footer GUID table: GUID -> entry data. Empty when the image has no footer."""
    size = len(data)
    footer = size - _RESET_VECTOR - _ENTRY_HEADER
    if footer < 0:
        raise FirmwareError(f"{name}: {size} bytes is too short to be firmware (truncated?)")
    if _guid(data[footer + 2 : footer + _ENTRY_HEADER]) != FOOTER_GUID:
        return {}
    total = int.from_bytes(data[footer : footer + 2], "little")
    if total < _ENTRY_HEADER or total - _ENTRY_HEADER > footer:
        raise FirmwareError(
            f"{name}: GUID table size {total} at offset {footer:#x} does not fit the file"
        )
    table: dict[str, bytes] = {}
    end = footer  # entries end here and are read backwards
    start = footer - (total - _ENTRY_HEADER)
    while end > start:
        if end - start < _ENTRY_HEADER:
            raise FirmwareError(
                f"{name}: GUID table entry ending at offset {end:#x} is cut short "
                f"({end - start} bytes left)"
            )
        guid = _guid(data[end - 16 : end])
        length = int.from_bytes(data[end - _ENTRY_HEADER : end - 16], "little")
        if not _ENTRY_HEADER <= length <= end - start:
            raise FirmwareError(
                f"{name}: GUID table entry {guid} at offset {end - _ENTRY_HEADER:#x} has size "
                f"{length}, outside {_ENTRY_HEADER}..{end - start}"
            )
        table.setdefault(guid, data[end - length : end - _ENTRY_HEADER])  # QEMU: first from end
        end -= length
    return table


def _entry_u32(table: Mapping[str, bytes], guid: str, what: str, name: str) -> int | None:
    entry = table.get(guid)
    if entry is None:
        return None
    if len(entry) < 4:
        raise FirmwareError(f"{name}: {what} entry ({guid}) holds {len(entry)} bytes, not 4")
    return _u32(entry, 0)


def _parse_sev_metadata(data: bytes, offset_from_end: int, name: str) -> tuple[SevSection, ...]:
    size = len(data)
    start = size - offset_from_end
    if not 0 < offset_from_end <= size or start + 16 > size:
        raise FirmwareError(
            f"{name}: SEV metadata offset {offset_from_end:#x} from the end is outside the file"
        )
    magic = data[start : start + 4]
    length, version, count = struct.unpack_from("<III", data, start + 4)
    if magic != b"ASEV":
        raise FirmwareError(
            f"{name}: SEV metadata at offset {start:#x} has signature {magic!r}, not b'ASEV'"
        )
    if version != 1:
        raise FirmwareError(f"{name}: SEV metadata version {version} (only version 1 is known)")
    if length < 16 + 12 * count or start + length > size:
        raise FirmwareError(
            f"{name}: SEV metadata at offset {start:#x} claims {count} sections in {length} "
            "bytes, which do not fit the header or the file"
        )
    sections = []
    for i in range(count):
        gpa, sz, kind = struct.unpack_from("<III", data, start + 16 + 12 * i)
        if kind not in SEV_SECTION_TYPES:
            raise FirmwareError(
                f"{name}: SEV metadata section {i} has unknown type {kind:#x}: QEMU refuses it"
            )
        if gpa % PAGE or sz % PAGE or sz == 0:
            raise FirmwareError(
                f"{name}: SEV metadata section {i} ({SEV_SECTION_TYPES[kind]}) at GPA {gpa:#x} "
                f"size {sz:#x} is not a whole number of 4 KiB pages"
            )
        sections.append(SevSection(gpa, sz, kind))
    return tuple(sections)


def _parse_tdx_metadata(data: bytes, offset_from_end: int, name: str) -> tuple[TdxSection, ...]:
    size = len(data)
    start = size - offset_from_end
    if not 0 < offset_from_end <= size or start + 16 > size:
        raise FirmwareError(
            f"{name}: TDX metadata offset {offset_from_end:#x} from the end is outside the file"
        )
    magic = data[start : start + 4]
    length, version, count = struct.unpack_from("<III", data, start + 4)
    if magic != b"TDVF":
        raise FirmwareError(
            f"{name}: TDX metadata at offset {start:#x} has signature {magic!r}, not b'TDVF'"
        )
    if version != 1:
        raise FirmwareError(f"{name}: TDX metadata version {version} (only version 1 is known)")
    if count == 0 or length < 16 + 32 * count or start + length > size:
        raise FirmwareError(
            f"{name}: TDX metadata at offset {start:#x} claims {count} sections in {length} "
            "bytes, which do not fit the header or the file"
        )
    sections = []
    for i in range(count):
        off, raw, gpa, mem, kind, attrs = struct.unpack_from("<IIQQII", data, start + 16 + 32 * i)
        what = f"{name}: TDX metadata section {i}"
        if kind not in TDX_SECTION_TYPES:
            raise FirmwareError(f"{what} has type {kind}, which TDVF does not define")
        what += f" ({TDX_SECTION_TYPES[kind]})"
        if gpa % PAGE or mem % PAGE:
            raise FirmwareError(
                f"{what}: GPA {gpa:#x} and memory size {mem:#x} must be 4 KiB aligned"
            )
        if raw > mem:
            raise FirmwareError(f"{what}: raw size {raw:#x} exceeds memory size {mem:#x}")
        if off + raw > size:
            raise FirmwareError(
                f"{what}: data at offset {off:#x}+{raw:#x} runs past the end of the "
                f"{size}-byte file",
                hint="the offsets index the unified image: measure OVMF.fd, not OVMF_CODE.fd",
            )
        if attrs & ~(TDX_ATTR_MR_EXTEND | TDX_ATTR_PAGE_AUG):
            raise FirmwareError(f"{what}: unknown attribute bits {attrs:#x}")
        if attrs & TDX_ATTR_MR_EXTEND and attrs & TDX_ATTR_PAGE_AUG:
            raise FirmwareError(f"{what}: MR.EXTEND on a PAGE.AUG section cannot be measured")
        sections.append(TdxSection(off, raw, gpa, mem, kind, attrs))
    return tuple(sections)


def parse_firmware(data: bytes, *, name: str = "firmware") -> Firmware:
    """Parse an OVMF/TDVF image; raises FirmwareError naming what is malformed and where.

    Absent SEV or TDX metadata is not an error here (the image may serve the other TEE):
    :meth:`Firmware.require_sev` and :meth:`Firmware.require_tdx` refuse at use.
    """
    size = len(data)
    if size == 0 or size % PAGE:
        raise FirmwareError(
            f"{name}: {size} bytes is not a whole number of 4 KiB pages (truncated?)"
        )
    if size > FOUR_GIB // 2:
        raise FirmwareError(f"{name}: {size} bytes is too large for a firmware image")
    table = parse_guid_table(data, name)
    sev_off = _entry_u32(table, SEV_METADATA_GUID, "SEV metadata", name)
    tdx_off = _entry_u32(table, TDX_METADATA_OFFSET_GUID, "TDX metadata", name)
    hashes = table.get(SEV_HASH_TABLE_GUID)
    if hashes is not None and len(hashes) < 8:
        raise FirmwareError(
            f"{name}: SEV hash table entry ({SEV_HASH_TABLE_GUID}) holds {len(hashes)} bytes, not 8"
        )
    hashes_gpa = _u32(hashes, 0) if hashes is not None else 0
    sev: tuple[SevSection, ...] | None = None
    tdx: tuple[TdxSection, ...] | None = None
    sev_error = tdx_error = None
    if sev_off is not None:
        try:
            sev = _parse_sev_metadata(data, sev_off, name)
        except FirmwareError as e:
            sev_error = e
    if tdx_off is not None:
        try:
            tdx = _parse_tdx_metadata(data, tdx_off, name)
        except FirmwareError as e:
            tdx_error = e
    return Firmware(
        name=name,
        data=data,
        table=table,
        sev_sections=sev,
        tdx_sections=tdx,
        ap_reset_eip=_entry_u32(table, SEV_ES_RESET_BLOCK_GUID, "SEV-ES reset block", name),
        hashes_table_gpa=hashes_gpa or None,
        sev_error=sev_error,
        tdx_error=tdx_error,
    )
