"""AMD SEV-SNP launch digest (MEASUREMENT) from firmware, kernel hashes and VM shape.

Sans I/O: inputs are bytes and digests; :mod:`motte.measure._inputs` reads the files.

Sources: AMD SEV-SNP Firmware ABI (SNP_LAUNCH_UPDATE, PAGE_INFO, Table 67 in rev 1.55); QEMU
``target/i386/sev.c`` (which pages it adds, in what order, the kernel-hashes table);
edk2 ``OvmfSevMetadata.asm``; virtee/sev-snp-measure 0.0.13 (``gctx``, ``guest``, ``vmsa``,
``sev_hashes``), whose output this module reproduces byte for byte (tests/measure). The VMSA
modelled is the one KVM builds from the reset state on host kernels >= 6.10
(sev-snp-measure >= 0.0.10).

Launch digest chain: LD starts as 48 zero bytes and every page QEMU adds sets
``LD = SHA-384(PAGE_INFO)``, PAGE_INFO = LD || contents (48) || u16 0x70 || u8 page type ||
u8 IMI 0 || VMPL3/2/1 permissions 0 || u8 0 || u64 GPA.
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from motte.measure._firmware import (
    PAGE,
    SNP_KERNEL_HASHES,
    Firmware,
    SevSection,
)
from motte.measure.errors import FirmwareError, MeasureError

LD_SIZE = 48
ZEROS48 = bytes(LD_SIZE)
#: The VMSA page is recorded at GPA (u64)-1, page aligned, bits above 51 clear.
VMSA_GPA = 0xFFFF_FFFF_F000
BSP_EIP = 0xFFFF_FFF0

PAGE_NORMAL, PAGE_VMSA, PAGE_ZERO, PAGE_UNMEASURED, PAGE_SECRETS, PAGE_CPUID = 1, 2, 3, 4, 5, 6

VMM_TYPES = ("qemu", "ec2", "gce")

#: QEMU's AMD CPU models (builtin_x86_defs) -> CPUID Fn0000_0001_EAX signature, which QEMU
#: puts in the VMSA's RDX.
VCPU_SIGNATURES: dict[str, int] = {}


def cpu_signature(family: int, model: int, stepping: int) -> int:
    """CPUID Fn0000_0001_EAX from family/model/stepping (AMD CPUID Specification #25481)."""
    base, ext = (0xF, family - 0xF) if family > 0xF else (family, 0)
    return (
        (ext & 0xFF) << 20
        | ((model >> 4) & 0xF) << 16
        | base << 8
        | (model & 0xF) << 4
        | (stepping & 0xF)
    )


for _names, _fms in (
    (("EPYC", "EPYC-v1", "EPYC-v2", "EPYC-IBPB", "EPYC-v3", "EPYC-v4"), (23, 1, 2)),
    (("EPYC-Rome", "EPYC-Rome-v1", "EPYC-Rome-v2", "EPYC-Rome-v3"), (23, 49, 0)),
    (("EPYC-Milan", "EPYC-Milan-v1", "EPYC-Milan-v2"), (25, 1, 1)),
    (("EPYC-Genoa", "EPYC-Genoa-v1"), (25, 17, 0)),
    (("EPYC-Turin",), (26, 0, 0)),
):
    for _n in _names:
        VCPU_SIGNATURES[_n] = cpu_signature(*_fms)


def _page_info(ld: bytes, contents: bytes, page_type: int, gpa: int) -> bytes:
    return hashlib.sha384(
        ld + contents + struct.pack("<HBBBBBBQ", 0x70, page_type, 0, 0, 0, 0, 0, gpa)
    ).digest()


def extend_normal_pages(ld: bytes, gpa: int, data: bytes | memoryview) -> bytes:
    """LD after adding ``data`` (a whole number of pages) as NORMAL pages at ``gpa``."""
    view = memoryview(data)
    sha384 = hashlib.sha384
    pack = struct.Struct("<HBBBBBBQ").pack
    for off in range(0, len(view), PAGE):
        contents = sha384(view[off : off + PAGE]).digest()
        ld = sha384(ld + contents + pack(0x70, PAGE_NORMAL, 0, 0, 0, 0, 0, gpa + off)).digest()
    return ld


def _extend_empty_pages(ld: bytes, page_type: int, gpa: int, size: int) -> bytes:
    for off in range(0, size, PAGE):
        ld = _page_info(ld, ZEROS48, page_type, gpa + off)
    return ld


def firmware_pages_digest(firmware: Firmware) -> bytes:
    """The LD after the firmware's pages alone (sev-snp-measure's ``snp:ovmf-hash``)."""
    return extend_normal_pages(ZEROS48, firmware.gpa, firmware.data)


# Kernel hashes table (QEMU target/i386/sev.c, struct SevHashTable; edk2 BlobVerifierSevHashes)

HASH_TABLE_HEADER_GUID = "9438d606-4f22-4cc9-b479-a793d411fd21"
KERNEL_ENTRY_GUID = "4de79437-abd2-427f-b835-d5b172d2045b"
INITRD_ENTRY_GUID = "44baf731-3a2f-4bd7-9af1-41e29169781d"
CMDLINE_ENTRY_GUID = "97d02dd8-bd20-4c94-aa78-e7714d36ab2a"
_HASH_ENTRY = 16 + 2 + 32
_HASH_TABLE = 16 + 2 + 3 * _HASH_ENTRY  # 0xa8
HASH_TABLE_PADDED = (_HASH_TABLE + 15) & ~15  # 0xb0


@dataclass(frozen=True, slots=True)
class KernelHashes:
    """SHA-256 of what QEMU hashes for measured direct boot (``kernel-hashes=on``)."""

    kernel: bytes
    #: Of the initrd file, or of nothing when there is none.
    initrd: bytes = hashlib.sha256(b"").digest()
    #: Of the command line and its NUL; a lone NUL when there is none.
    cmdline: bytes = hashlib.sha256(b"\0").digest()

    @staticmethod
    def cmdline_digest(append: str | None) -> bytes:
        return hashlib.sha256((append or "").encode() + b"\0").digest()

    def table(self) -> bytes:
        """The padded table QEMU writes into the SNP_KERNEL_HASHES page."""

        def entry(guid: str, digest: bytes) -> bytes:
            return uuid.UUID(guid).bytes_le + struct.pack("<H", _HASH_ENTRY) + digest

        body = (
            uuid.UUID(HASH_TABLE_HEADER_GUID).bytes_le
            + struct.pack("<H", _HASH_TABLE)
            + entry(CMDLINE_ENTRY_GUID, self.cmdline)
            + entry(INITRD_ENTRY_GUID, self.initrd)
            + entry(KERNEL_ENTRY_GUID, self.kernel)
        )
        return body + bytes(HASH_TABLE_PADDED - len(body))


# VMSA (AMD APM vol. 2, Table B-4; Linux struct sev_es_save_area)

_SEGMENTS = ("es", "cs", "ss", "ds", "fs", "gs", "gdtr", "ldtr", "idtr", "tr")
_U64 = {
    "efer": 0xD0,
    "cr4": 0x148,
    "cr0": 0x158,
    "dr7": 0x160,
    "dr6": 0x168,
    "rflags": 0x170,
    "rip": 0x178,
    "g_pat": 0x268,
    "rdx": 0x310,
    "sev_features": 0x3B0,
    "xcr0": 0x3E8,
}
_MXCSR, _X87_FCW = 0x408, 0x410


def vmsa_page(eip: int, sev_features: int, vcpu_sig: int, vmm: str) -> bytes:
    """The 4 KiB VMSA a vCPU starts from, as QEMU/KVM, EC2 or GCE build it."""
    g_pat = 0x0007_0406_0007_0406  # PAT reset value (APM vol. 2, A.3)
    cs_flags, ss_flags, tr_flags = 0x9B, 0x93, 0x8B
    if vmm == "qemu":
        rdx, mxcsr, fcw = vcpu_sig, 0x1F80, 0x37F
    elif vmm == "ec2":
        cs_flags = 0x9A if eip == BSP_EIP else 0x9B
        ss_flags, tr_flags = 0x92, 0x83
        rdx, mxcsr, fcw = 0x600, 0, 0
    elif vmm == "gce":
        g_pat = 0x0007_0106  # GCE's hypervisor sets its own PAT
        rdx, mxcsr, fcw = 0x600, 0, 0
    else:
        raise MeasureError(f"unknown VMM type {vmm!r}; use one of {', '.join(VMM_TYPES)}")
    page = bytearray(PAGE)
    segments = {
        "es": (0, 0x93, 0xFFFF, 0),
        "cs": (0xF000, cs_flags, 0xFFFF, eip & 0xFFFF_0000),
        "ss": (0, ss_flags, 0xFFFF, 0),
        "ds": (0, 0x93, 0xFFFF, 0),
        "fs": (0, 0x93, 0xFFFF, 0),
        "gs": (0, 0x93, 0xFFFF, 0),
        "gdtr": (0, 0, 0xFFFF, 0),
        "ldtr": (0, 0x82, 0xFFFF, 0),
        "idtr": (0, 0, 0xFFFF, 0),
        "tr": (0, tr_flags, 0xFFFF, 0),
    }
    for i, name in enumerate(_SEGMENTS):
        struct.pack_into("<HHIQ", page, 16 * i, *segments[name])
    values = {
        "efer": 0x1000,  # KVM sets EFER.SVME
        "cr4": 0x40,  # KVM sets CR4.MCE
        "cr0": 0x10,
        "dr7": 0x400,
        "dr6": 0xFFFF_0FF0,
        "rflags": 0x2,
        "rip": eip & 0xFFFF,
        "g_pat": g_pat,
        "rdx": rdx,
        "sev_features": sev_features,
        "xcr0": 0x1,
    }
    for name, off in _U64.items():
        struct.pack_into("<Q", page, off, values[name])
    struct.pack_into("<I", page, _MXCSR, mxcsr)
    struct.pack_into("<H", page, _X87_FCW, fcw)
    return bytes(page)


def vmsa_pages(
    vcpus: int, ap_eip: int | None, sev_features: int, vcpu_sig: int, vmm: str
) -> Iterator[bytes]:
    """One VMSA per vCPU: the BSP at the reset vector, the APs at the reset block's EIP."""
    bsp = vmsa_page(BSP_EIP, sev_features, vcpu_sig, vmm)
    ap = vmsa_page(ap_eip, sev_features, vcpu_sig, vmm) if ap_eip else None
    for i in range(vcpus):
        if i and ap is None:
            raise FirmwareError(
                "the firmware has no SEV-ES reset block (GUID 00f771de-...): APs cannot start, "
                "so only 1 vCPU can be measured"
            )
        yield bsp if i == 0 else ap  # type: ignore[misc]


# The launch


@dataclass(frozen=True, slots=True)
class SnpLayout:
    """What the launch needs from the firmware besides its pages: enough to replay the digest
    from the firmware-pages digest alone (the attest explanation does that without files)."""

    sections: tuple[SevSection, ...]
    ap_reset_eip: int | None
    hashes_table_gpa: int | None

    @classmethod
    def of(cls, firmware: Firmware) -> SnpLayout:
        return cls(firmware.require_sev(), firmware.ap_reset_eip, firmware.hashes_table_gpa)

    @property
    def has_kernel_hashes(self) -> bool:
        return any(s.type == SNP_KERNEL_HASHES for s in self.sections)


def _hashes_page(layout: SnpLayout, section: SevSection, hashes: KernelHashes) -> bytes:
    gpa = layout.hashes_table_gpa
    if section.size != PAGE or gpa is None or not section.gpa <= gpa < section.gpa + PAGE:
        raise FirmwareError(
            f"SNP_KERNEL_HASHES section at GPA {section.gpa:#x} size {section.size:#x} does not "
            f"hold the hashes table (GPA {gpa or 0:#x}) in one page: this layout is not modelled"
        )
    off = gpa & (PAGE - 1)
    if off + HASH_TABLE_PADDED > PAGE:
        raise FirmwareError(f"hashes table at GPA {gpa:#x} would cross its page")
    return bytes(off) + hashes.table() + bytes(PAGE - off - HASH_TABLE_PADDED)


def metadata_digest(ld: bytes, layout: SnpLayout, hashes: KernelHashes | None, vmm: str) -> bytes:
    """LD after the SEV metadata sections, in table order (EC2: CPUID pages last)."""
    if hashes is not None and not layout.has_kernel_hashes:
        raise no_kernel_hashes_error()
    for s in layout.sections:
        if s.type == 1:  # SNP_SEC_MEM
            ld = _extend_empty_pages(
                ld, PAGE_UNMEASURED if vmm == "gce" else PAGE_ZERO, s.gpa, s.size
            )
        elif s.type == 2:  # SNP_SECRETS
            ld = _page_info(ld, ZEROS48, PAGE_SECRETS, s.gpa)
        elif s.type == 3:  # CPUID
            if vmm != "ec2":
                ld = _page_info(ld, ZEROS48, PAGE_CPUID, s.gpa)
        elif s.type == 4:  # SVSM_CAA
            ld = _extend_empty_pages(ld, PAGE_ZERO, s.gpa, s.size)
        elif s.type == SNP_KERNEL_HASHES:
            if hashes is None:
                ld = _extend_empty_pages(ld, PAGE_ZERO, s.gpa, s.size)
            else:
                ld = extend_normal_pages(ld, s.gpa, _hashes_page(layout, s, hashes))
    if vmm == "ec2":
        for s in layout.sections:
            if s.type == 3:
                ld = _page_info(ld, ZEROS48, PAGE_CPUID, s.gpa)
    return ld


def no_kernel_hashes_error(name: str = "the firmware") -> FirmwareError:
    return FirmwareError(
        f"{name}: its SEV metadata has no SNP_KERNEL_HASHES section, so QEMU cannot measure "
        "a kernel, initrd or command line with it: the kernel would run unmeasured",
        hint="build OVMF from edk2's OvmfPkg/AmdSev/AmdSevX64.dsc for measured direct boot, "
        "or boot without --kernel (then the measurement covers the firmware only)",
    )


def extend_vmsas(ld: bytes, pages: Iterable[bytes]) -> Iterator[bytes]:
    """The LD after each VMSA in turn (the n-th value is the digest with n+1 vCPUs)."""
    prev, digest = None, b""
    for page in pages:
        if page is not prev:  # the APs share one page: hash it once
            prev, digest = page, hashlib.sha384(page).digest()
        ld = _page_info(ld, digest, PAGE_VMSA, VMSA_GPA)
        yield ld


def check_vm_shape(vcpus: int, vcpu_sig: int | None, vmm: str) -> int:
    """Validate the VM shape; returns the vCPU signature to put in RDX (0 when unused)."""
    if vmm not in VMM_TYPES:
        raise MeasureError(f"unknown VMM type {vmm!r}; use one of {', '.join(VMM_TYPES)}")
    if not 1 <= vcpus <= 512:
        raise MeasureError(f"{vcpus} vCPUs: must be 1 to 512")
    if vmm == "qemu" and vcpu_sig is None:
        raise MeasureError(
            "QEMU puts the vCPU model's CPUID signature in each VMSA: give --vcpu-type "
            "(e.g. EPYC-v4, EPYC-Milan, EPYC-Genoa) or --vcpu-sig"
        )
    if vcpu_sig is not None and not 0 < vcpu_sig <= 0xFFFF_FFFF:
        raise MeasureError(f"vCPU signature {vcpu_sig:#x}: must be a non-zero 32-bit value")
    return vcpu_sig or 0


def snp_launch_digest_from(
    firmware_digest: bytes,
    layout: SnpLayout,
    *,
    vcpus: int,
    vcpu_sig: int | None,
    vmm: str = "qemu",
    guest_features: int = 0x1,
    kernel_hashes: KernelHashes | None = None,
) -> bytes:
    """The MEASUREMENT, starting from the digest after the firmware's pages."""
    sig = check_vm_shape(vcpus, vcpu_sig, vmm)
    ld = metadata_digest(firmware_digest, layout, kernel_hashes, vmm)
    pages = vmsa_pages(vcpus, layout.ap_reset_eip, guest_features, sig, vmm)
    for digest in extend_vmsas(ld, pages):
        ld = digest
    return ld


def snp_launch_digest(
    firmware: Firmware,
    *,
    vcpus: int,
    vcpu_sig: int | None,
    vmm: str = "qemu",
    guest_features: int = 0x1,
    kernel_hashes: KernelHashes | None = None,
    firmware_digest: bytes | None = None,
) -> bytes:
    """The SEV-SNP MEASUREMENT QEMU (or EC2, GCE) launching ``firmware`` produces.

    ``firmware_digest``: a precomputed digest of the firmware pages (sev-snp-measure's
    ``--snp-ovmf-hash``); the image is then read only for its metadata.
    """
    layout = SnpLayout.of(firmware)
    if kernel_hashes is not None and not layout.has_kernel_hashes:
        raise no_kernel_hashes_error(firmware.name)
    check_vm_shape(vcpus, vcpu_sig, vmm)
    if firmware_digest is None:
        firmware_digest = firmware_pages_digest(firmware)
    elif len(firmware_digest) != LD_SIZE:
        raise MeasureError(f"firmware digest is {len(firmware_digest)} bytes, not 48")
    return snp_launch_digest_from(
        firmware_digest,
        layout,
        vcpus=vcpus,
        vcpu_sig=vcpu_sig,
        vmm=vmm,
        guest_features=guest_features,
        kernel_hashes=kernel_hashes,
    )


# SEV and SEV-ES (plain SHA-256; QEMU sev_launch_get_measure): library only, for the fixtures
# and for completeness; motte attests SNP, not these.


def _legacy_table(firmware: Firmware, hashes: KernelHashes | None) -> bytes:
    if hashes is None:
        return b""
    if firmware.hashes_table_gpa is None:
        raise FirmwareError(
            f"{firmware.name}: the firmware has no SEV hash table, so a kernel, initrd or "
            "command line cannot be measured with it"
        )
    return hashes.table()


def sev_launch_digest(firmware: Firmware, *, kernel_hashes: KernelHashes | None = None) -> bytes:
    """SEV: SHA-256 over the firmware image and (measured direct boot) the hashes table."""
    return hashlib.sha256(firmware.data + _legacy_table(firmware, kernel_hashes)).digest()


def sev_es_launch_digest(
    firmware: Firmware,
    *,
    vcpus: int,
    vcpu_sig: int | None,
    vmm: str = "qemu",
    kernel_hashes: KernelHashes | None = None,
) -> bytes:
    """SEV-ES: SHA-256 over the firmware, the hashes table and one VMSA per vCPU."""
    table = _legacy_table(firmware, kernel_hashes)  # the firmware's refusal comes first
    sig = check_vm_shape(vcpus, vcpu_sig, vmm)
    h = hashlib.sha256(firmware.data + table)
    for page in vmsa_pages(vcpus, firmware.ap_reset_eip, 0, sig, vmm):
        h.update(page)
    return h.digest()


def vcpu_signature(vcpu_type: str | None, vcpu_sig: int | None) -> int | None:
    """The signature for ``--vcpu-type`` or ``--vcpu-sig`` (not both)."""
    if vcpu_type is not None and vcpu_sig is not None:
        raise MeasureError("give --vcpu-type or --vcpu-sig, not both")
    if vcpu_type is None:
        return vcpu_sig
    try:
        return VCPU_SIGNATURES[vcpu_type]
    except KeyError:
        raise MeasureError(
            f"unknown vCPU type {vcpu_type!r}; known: {', '.join(VCPU_SIGNATURES)}",
            hint="or give its CPUID signature with --vcpu-sig",
        ) from None


def vcpu_type_names(sig: int) -> Sequence[str]:
    return [n for n, s in VCPU_SIGNATURES.items() if s == sig]
