"""Intel TDX reference values: MRTD from the firmware, RTMR1 and RTMR2 for QEMU direct boot.

Sans I/O: inputs are bytes. Every behaviour that changed between QEMU, edk2 or Linux versions
is an explicit argument, never a default guessed for the caller.

Sources:

- MRTD: Intel TDX Module ABI (TDH.MEM.PAGE.ADD, TDH.MR.EXTEND, TDH.MR.FINALIZE: each adds a
  128-byte block to one SHA-384); edk2 ``OvmfPkg/IntelTdx/IntelTdxMetadata.asm``; QEMU
  ``target/i386/kvm/tdx.c``; KVM ``tdx_gmem_post_populate``. Upstream KVM/QEMU add and extend
  page by page; the QEMU 8.x-era TDX stacks added every page of a section before extending
  any (dstack-mr and quex-tech/td-report-web model that as "two-pass"). Agreement:
  confidential-containers/td-shim ``td_shim_tee_info_hash.py`` (per page), td-report-web
  ``reproduceMrtd`` (two-pass) on Debian's OVMF.fd (tests/measure).
- RTMR1/RTMR2: UEFI 2.10 section 38.4.1 (PCR 1-7 -> RTMR0/1, 8-15 -> RTMR2); edk2
  ``TdTcg2Dxe`` and ``DxeTpm2MeasureBootLib`` (the PE image digest, excluding the checksum,
  the certificate directory and the certificate table, sections in file order); edk2
  ``X86QemuLoadImageLib`` (``initrd=initrd`` in LoadOptions); Linux ``efi-stub``
  (``efi_measure_tagged_event`` of LoadOptions and the initrd, Linux >= 6.9); QEMU
  ``hw/i386/x86-common.c`` ``x86_load_linux`` (the setup-header fields QEMU <= 10.1 rewrites
  before the firmware measures the kernel). Cross-checked with td-report-web, dstack-mr and
  td-shim ``td_payload_qemu_hash.py`` through the vectors in tests/measure.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from motte.measure._firmware import PAGE, Firmware
from motte.measure.errors import MeasureError

MRTD_ORDERS = ("per-page", "two-pass")
KERNEL_HEADERS = ("unmodified", "qemu-patched")
SEPARATORS = ("rtmr1", "rtmr0")
INITRD_OPTIONS = ("prefix", "suffix")
LINUX_STUBS = ("6.9+", "pre-6.9")

_EXTEND_CHUNK = 0x100


def _block(op: bytes, gpa: int) -> bytes:
    return op + bytes(16 - len(op)) + struct.pack("<Q", gpa) + bytes(128 - 24)


def mrtd(firmware: Firmware, order: str) -> bytes:
    """MRTD of a TD launched from ``firmware``; ``order`` is "per-page" or "two-pass"."""
    if order not in MRTD_ORDERS:
        raise MeasureError(f"MRTD order {order!r}: use one of {', '.join(MRTD_ORDERS)}")
    h = hashlib.sha384()
    data = memoryview(firmware.data)
    for s in firmware.require_tdx():
        memory = bytes(data[s.data_offset : s.data_offset + s.raw_size])
        memory += bytes(s.memory_size - len(memory))
        adds = (
            []
            if s.page_aug
            else [_block(b"MEM.PAGE.ADD", s.gpa + p) for p in range(0, s.memory_size, PAGE)]
        )
        extends: list[bytes] = []
        if s.extend_mr:
            for p in range(0, s.memory_size, PAGE):
                page = b"".join(
                    _block(b"MR.EXTEND", s.gpa + p + c) + memory[p + c : p + c + _EXTEND_CHUNK]
                    for c in range(0, PAGE, _EXTEND_CHUNK)
                )
                extends.append(page)
        if order == "two-pass" or not adds or not extends:
            h.update(b"".join(adds))
            h.update(b"".join(extends))
        else:
            for add, ext in zip(adds, extends, strict=True):
                h.update(add)
                h.update(ext)
    return h.digest()


# Event digests and RTMR replay

CALLING_EFI_APPLICATION = b"Calling EFI Application from Boot Option"
EXIT_BOOT_SERVICES_INVOCATION = b"Exit Boot Services Invocation"
EXIT_BOOT_SERVICES_SUCCESS = b"Exit Boot Services Returned with Success"
SEPARATOR = bytes(4)


def sha384(data: bytes) -> bytes:
    return hashlib.sha384(data).digest()


@dataclass(frozen=True, slots=True)
class Event:
    """One measured event: what it is, and the digest extended into the register."""

    what: str
    digest: bytes

    def to_dict(self) -> dict[str, str]:
        return {"event": self.what, "digest": self.digest.hex()}


def replay(events: list[Event]) -> bytes:
    """RTMR = SHA-384(RTMR || digest) for each event, from zero."""
    reg = bytes(48)
    for e in events:
        reg = sha384(reg + e.digest)
    return reg


def rtmr1_events(kernel_digest: bytes, separator: str) -> list[Event]:
    """RTMR1 for QEMU direct boot: the kernel image, the boot attempt, ExitBootServices.

    ``separator``: "rtmr1" for edk2 >= stable202411 (commit efaf893 measures the PCR 1-7
    separator into RTMR1), "rtmr0" before it.
    """
    if separator not in SEPARATORS:
        raise MeasureError(f"separator {separator!r}: use one of {', '.join(SEPARATORS)}")
    events = [
        Event("EV_EFI_BOOT_SERVICES_APPLICATION: the kernel (PE image digest)", kernel_digest),
        Event(
            "EV_EFI_ACTION: " + CALLING_EFI_APPLICATION.decode(), sha384(CALLING_EFI_APPLICATION)
        ),
    ]
    if separator == "rtmr1":
        events.append(Event("EV_SEPARATOR: 00000000", sha384(SEPARATOR)))
    events += [
        Event(
            "EV_EFI_ACTION: " + EXIT_BOOT_SERVICES_INVOCATION.decode(),
            sha384(EXIT_BOOT_SERVICES_INVOCATION),
        ),
        Event(
            "EV_EFI_ACTION: " + EXIT_BOOT_SERVICES_SUCCESS.decode(),
            sha384(EXIT_BOOT_SERVICES_SUCCESS),
        ),
    ]
    return events


def load_options(cmdline: str | None, has_initrd: bool, initrd_option: str | None) -> str | None:
    """The LoadOptions edk2 gives the kernel, None when nothing would be measured.

    edk2 adds ``initrd=initrd`` when QEMU supplies an initrd: appended after the command line
    before edk2 PR 11115 (2025), prefixed since. Without a command line the sources disagree
    on what is measured, so that case is not predicted (None, with the caller saying so).
    """
    if not cmdline:
        return None
    if not has_initrd:
        return cmdline
    if initrd_option == "prefix":
        return "initrd=initrd " + cmdline
    if initrd_option == "suffix":
        return cmdline + " initrd=initrd"
    raise MeasureError(
        "an initrd changes the kernel's LoadOptions and edk2 changed how (PR 11115, 2025): give "
        "--initrd-option suffix (edk2 before it) or prefix (edk2 after it)"
    )


def rtmr2_events(
    cmdline: str | None, initrd_digest: bytes | None, initrd_option: str | None
) -> list[Event]:
    """RTMR2 as Linux >= 6.9's EFI stub extends it: LoadOptions, then the initrd."""
    events = []
    options = load_options(cmdline, initrd_digest is not None, initrd_option)
    if options is not None:
        encoded = (options + "\0").encode("utf-16-le")
        events.append(Event(f"EV_EVENT_TAG: LoadOptions {options!r}", sha384(encoded)))
    if initrd_digest is not None:
        events.append(Event("EV_EVENT_TAG: the initrd (SHA-384)", initrd_digest))
    return events


# The kernel image as the firmware measures it

#: QEMU's ACPI data reservation below 4 GiB on pc/q35 (pcmc->acpi_data_size).
ACPI_DATA_SIZE = 0x20000 + 0x8000


def below_4g_memory(memory: int) -> int:
    """Guest RAM below 4 GiB on q35 (hw/i386/pc_q35.c): all of it up to 2.75 GiB, else 2 GiB."""
    lowmem = 0x8000_0000 if memory >= 0xB000_0000 else 0xB000_0000
    return min(memory, lowmem)


def qemu_patch_setup_header(
    kernel: bytes, *, memory: int, initrd_size: int | None, cmdline: str | None
) -> bytes:
    """The bzImage as QEMU <= 10.1 serves it: setup-header fields rewritten by x86_load_linux.

    QEMU commit a7542a38f399 (first in 10.2) stopped this for confidential guests.
    """
    k = bytearray(kernel)
    if len(k) < 0x240:
        raise MeasureError(f"kernel is {len(k)} bytes, too short for a bzImage setup header")
    protocol = struct.unpack_from("<H", k, 0x206)[0] if k[0x202:0x206] == b"HdrS" else 0
    cmdline_size = (len(cmdline or "") + 16) & ~15
    if protocol < 0x202 or not k[0x211] & 0x01:
        real_addr, cmdline_addr = 0x90000, 0x9A000 - cmdline_size
    else:
        real_addr, cmdline_addr = 0x10000, 0x20000
    if protocol >= 0x20C and struct.unpack_from("<H", k, 0x236)[0] & 2:
        initrd_max = 0xFFFF_FFFF
    elif protocol >= 0x203:
        initrd_max = struct.unpack_from("<I", k, 0x22C)[0]
    else:
        initrd_max = 0x37FF_FFFF
    low = below_4g_memory(memory)
    if initrd_max >= low - ACPI_DATA_SIZE:
        initrd_max = low - ACPI_DATA_SIZE - 1
    if protocol >= 0x202:
        struct.pack_into("<I", k, 0x228, cmdline_addr)
    else:
        struct.pack_into("<HH", k, 0x20, 0xA33F, cmdline_addr - real_addr)
    if protocol >= 0x200:
        k[0x210] = 0xB0  # type_of_loader: QEMU
    if protocol >= 0x201:
        k[0x211] |= 0x80  # loadflags: CAN_USE_HEAP
        struct.pack_into("<H", k, 0x224, cmdline_addr - real_addr - 0x200)
    if initrd_size is not None:
        if protocol < 0x200:
            raise MeasureError("the kernel's boot protocol is too old to take an initrd")
        if initrd_size >= initrd_max:
            raise MeasureError(
                f"initrd of {initrd_size} bytes does not fit below {initrd_max:#x} with "
                f"{memory} bytes of guest memory"
            )
        struct.pack_into("<II", k, 0x218, (initrd_max - initrd_size) & ~0xFFF, initrd_size)
    return bytes(k)


def pe_image_digest(image: bytes) -> bytes:
    """SHA-384 of a PE/COFF image as edk2 measures it (the Authenticode digest).

    Headers without the checksum and the certificate-directory entry, the sections in file
    order, then any data after them except the certificate table.
    """

    def bad(why: str) -> MeasureError:
        return MeasureError(f"kernel is not a PE image the firmware can measure: {why}")

    if len(image) < 0x40 or image[:2] != b"MZ":
        raise bad("no MZ header (an EFI-stub bzImage is needed for TDX direct boot)")
    pe = struct.unpack_from("<I", image, 0x3C)[0]
    if pe + 24 > len(image) or image[pe : pe + 4] != b"PE\0\0":
        raise bad("no PE signature")
    nsections, opt_size = (
        struct.unpack_from("<H", image, pe + 6)[0],
        struct.unpack_from("<H", image, pe + 20)[0],
    )
    opt = pe + 24
    if opt + opt_size > len(image) or opt_size < 0x60:
        raise bad("optional header runs past the end")
    magic = struct.unpack_from("<H", image, opt)[0]
    if magic == 0x20B:
        fixed = 112
    elif magic == 0x10B:
        fixed = 96
    else:
        raise bad(f"optional header magic {magic:#x}")
    size_of_headers = struct.unpack_from("<I", image, opt + 60)[0]
    n_dirs = struct.unpack_from("<I", image, opt + fixed - 4)[0]
    if size_of_headers > len(image):
        raise bad("SizeOfHeaders exceeds the file")
    checksum = opt + 64
    h = hashlib.sha384(image[:checksum])
    cert_off = cert_size = 0
    if n_dirs > 4:
        cert_dir = opt + fixed + 4 * 8
        if cert_dir + 8 > size_of_headers:
            raise bad("certificate directory lies outside the headers")
        h.update(image[checksum + 4 : cert_dir])
        h.update(image[cert_dir + 8 : size_of_headers])
        cert_off, cert_size = struct.unpack_from("<II", image, cert_dir)
    else:
        h.update(image[checksum + 4 : size_of_headers])
    table = opt + opt_size
    if table + 40 * nsections > len(image):
        raise bad("section table runs past the end")
    sections = []
    for i in range(nsections):
        raw_size, raw_ptr = struct.unpack_from("<II", image, table + 40 * i + 16)
        if raw_size:
            if raw_ptr + raw_size > len(image):
                raise bad(f"section {i} runs past the end of the file")
            sections.append((raw_ptr, raw_size))
    hashed = size_of_headers
    for ptr, size in sorted(sections):
        h.update(image[ptr : ptr + size])
        hashed += size
    if len(image) > hashed:
        if len(image) < hashed + cert_size:
            raise bad("the certificate table overlaps the sections")
        h.update(image[hashed : len(image) - cert_size])
    del cert_off  # edk2 trims the table by size only, as here
    return h.digest()
