"""From files to reference values: read the artifacts, compute, and describe the result.

The only module here that touches files. A reference is a value: what was computed, from
which inputs (each with its size and SHA-256), with every intermediate digest, so an operator
(or ``motte attest verify --measure-inputs``) can tell later which input a mismatch points at.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from motte.measure._firmware import Firmware, parse_firmware
from motte.measure._snp import (
    KernelHashes,
    SnpLayout,
    check_vm_shape,
    firmware_pages_digest,
    no_kernel_hashes_error,
    snp_launch_digest_from,
    vcpu_type_names,
)
from motte.measure._tdx import (
    INITRD_OPTIONS,
    KERNEL_HEADERS,
    LINUX_STUBS,
    MRTD_ORDERS,
    SEPARATORS,
    Event,
    mrtd,
    pe_image_digest,
    qemu_patch_setup_header,
    replay,
    rtmr1_events,
    rtmr2_events,
)
from motte.measure.errors import MeasureError

#: Bumped when a field of a reference's to_dict() changes meaning or disappears.
REFERENCE_FORMAT_VERSION = 1
MAX_FIRMWARE_BYTES = 64 << 20
#: What SNP host stack the VMSA model is: sev-snp-measure >= 0.0.10's.
SNP_HOST_MODEL = (
    "QEMU/KVM (or EC2/GCE) SEV-SNP launch without SVSM or IGVM; VMSA as KVM builds it on "
    "host kernels >= 6.10 (sev-snp-measure >= 0.0.10)"
)
RTMR0_NOT_PREDICTED = (
    "RTMR0 holds the TD HOB (memory layout), the CFV (UEFI variables: SecureBoot, PK, KEK, "
    "db, dbx), QEMU's ACPI tables and boot variables: they depend on machine type, devices, "
    "vCPUs and memory, and are not computed here; pin it from an observed report or leave it"
)
RTMR3_NOT_PREDICTED = "RTMR3 is left to the guest OS; nothing is measured into it at boot"

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Artifact:
    """A file that went into a reference value: where it was, its size and digests."""

    path: str
    size: int
    sha256: bytes
    sha384: bytes | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "size": self.size, "sha256": self.sha256.hex()}
        if self.sha384 is not None:
            out["sha384"] = self.sha384.hex()
        return out

    def describe(self) -> str:
        return f"{Path(self.path).name} ({self.size} bytes, sha256:{self.sha256.hex()})"


def _open_error(path: Path, what: str, e: OSError) -> MeasureError:
    return MeasureError(f"cannot read {what} {path}: {e.strerror or e}")


def digest_file(path: str | Path, what: str, *, sha384: bool = False) -> Artifact:
    """Stream ``path`` through SHA-256 (and SHA-384): kernels and initrds can be large."""
    p = Path(path)
    h256 = hashlib.sha256()
    h384 = hashlib.sha384() if sha384 else None
    size = 0
    try:
        with p.open("rb") as f:
            while chunk := f.read(_CHUNK):
                size += len(chunk)
                h256.update(chunk)
                if h384 is not None:
                    h384.update(chunk)
    except OSError as e:
        raise _open_error(p, what, e) from None
    return Artifact(str(p), size, h256.digest(), h384.digest() if h384 else None)


def read_firmware(path: str | Path) -> tuple[Firmware, Artifact]:
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(MAX_FIRMWARE_BYTES + 1)
    except OSError as e:
        raise _open_error(p, "firmware", e) from None
    if len(data) > MAX_FIRMWARE_BYTES:
        raise MeasureError(f"{p}: larger than {MAX_FIRMWARE_BYTES >> 20} MiB: not a firmware image")
    fw = parse_firmware(data, name=str(p))
    return fw, Artifact(str(p), len(data), hashlib.sha256(data).digest())


def _read_all(path: str | Path, what: str) -> tuple[bytes, Artifact]:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise _open_error(p, what, e) from None
    return data, Artifact(
        str(p), len(data), hashlib.sha256(data).digest(), hashlib.sha384(data).digest()
    )


# SEV-SNP


@dataclass(frozen=True, slots=True)
class SnpReference:
    """An expected SEV-SNP MEASUREMENT and everything it was computed from."""

    measurement: bytes
    firmware: Artifact
    kernel: Artifact | None
    initrd: Artifact | None
    append: str | None
    vcpus: int
    vcpu_sig: int | None
    vcpu_type: str | None
    vmm: str
    guest_features: int
    layout: SnpLayout
    firmware_digest: bytes
    kernel_hashes: KernelHashes | None

    tee = "snp"

    def to_dict(self) -> dict[str, Any]:
        from motte import __version__

        kh = self.kernel_hashes
        return {
            "format_version": REFERENCE_FORMAT_VERSION,
            "tee": "snp",
            "tool": f"motte {__version__} (motte measure snp)",
            "measurement": self.measurement.hex(),
            "host_model": SNP_HOST_MODEL,
            "inputs": {
                "firmware": self.firmware.to_dict(),
                "kernel": self.kernel.to_dict() if self.kernel else None,
                "initrd": self.initrd.to_dict() if self.initrd else None,
                "append": self.append,
                "vcpus": self.vcpus,
                "vcpu_type": self.vcpu_type,
                "vcpu_sig": f"{self.vcpu_sig:#x}" if self.vcpu_sig is not None else None,
                "vmm_type": self.vmm,
                "guest_features": f"{self.guest_features:#x}",
            },
            "firmware": {
                "gpa": f"{FOUR_GIB - self.firmware.size:#x}",
                "ap_reset_eip": (
                    f"{self.layout.ap_reset_eip:#x}" if self.layout.ap_reset_eip else None
                ),
                "kernel_hashes_table_gpa": (
                    f"{self.layout.hashes_table_gpa:#x}"
                    if self.layout.hashes_table_gpa and self.layout.has_kernel_hashes
                    else None
                ),
                "sev_metadata": [s.to_dict() for s in self.layout.sections],
            },
            "digests": {
                "firmware_pages": self.firmware_digest.hex(),
                "kernel_sha256": kh.kernel.hex() if kh else None,
                "initrd_sha256": kh.initrd.hex() if kh else None,
                "cmdline_sha256": kh.cmdline.hex() if kh else None,
                "kernel_hashes_table": kh.table().hex() if kh else None,
            },
        }

    def describe_inputs(self) -> list[str]:
        """One line per input, for policy comments and the human output."""
        sig = f"{self.vcpu_sig:#x}" if self.vcpu_sig is not None else "none"
        cpu = f"{self.vcpu_type} (signature {sig})" if self.vcpu_type else f"signature {sig}"
        lines = [f"firmware {self.firmware.describe()}"]
        if self.kernel is not None:
            lines.append(f"kernel {self.kernel.describe()}")
            lines.append(f"initrd {self.initrd.describe()}" if self.initrd else "initrd none")
            lines.append(f"append {self.append!r}" if self.append else "append none")
        else:
            lines.append(
                "no kernel (firmware-only measurement; kernel, initrd, cmdline unmeasured)"
            )
        lines.append(
            f"{self.vcpus} vCPU{'s' if self.vcpus > 1 else ''}, vCPU {cpu}, VMM {self.vmm}, "
            f"guest features {self.guest_features:#x}"
        )
        return lines


FOUR_GIB = 1 << 32


def measure_snp(
    ovmf: str | Path,
    *,
    vcpus: int,
    vcpu_sig: int | None,
    vcpu_type: str | None = None,
    vmm: str = "qemu",
    guest_features: int = 0x1,
    kernel: str | Path | None = None,
    initrd: str | Path | None = None,
    append: str | None = None,
) -> SnpReference:
    """The SEV-SNP MEASUREMENT for launching ``ovmf`` (and a kernel) with this VM shape."""
    if (initrd is not None or append is not None) and kernel is None:
        raise MeasureError("--initrd and --append need --kernel (they are measured with it)")
    check_vm_shape(vcpus, vcpu_sig, vmm)
    if not 0 <= guest_features < 1 << 64:
        raise MeasureError(f"guest features {guest_features:#x}: must be a 64-bit value")
    fw, fw_art = read_firmware(ovmf)
    layout = SnpLayout.of(fw)
    hashes = k_art = i_art = None
    if kernel is not None:
        if not layout.has_kernel_hashes:  # refuse before reading a large kernel
            raise no_kernel_hashes_error(fw.name)
        k_art = digest_file(kernel, "kernel")
        i_art = digest_file(initrd, "initrd") if initrd is not None else None
        hashes = KernelHashes(
            kernel=k_art.sha256,
            initrd=i_art.sha256 if i_art else hashlib.sha256(b"").digest(),
            cmdline=KernelHashes.cmdline_digest(append),
        )
    fw_digest = firmware_pages_digest(fw)
    value = snp_launch_digest_from(
        fw_digest,
        layout,
        vcpus=vcpus,
        vcpu_sig=vcpu_sig,
        vmm=vmm,
        guest_features=guest_features,
        kernel_hashes=hashes,
    )
    if vcpu_type is None and vcpu_sig is not None:
        names = vcpu_type_names(vcpu_sig)
        vcpu_type = names[-1] if names else None
    return SnpReference(
        measurement=value,
        firmware=fw_art,
        kernel=k_art,
        initrd=i_art,
        append=append,
        vcpus=vcpus,
        vcpu_sig=vcpu_sig if vmm == "qemu" or vcpu_sig is not None else None,
        vcpu_type=vcpu_type,
        vmm=vmm,
        guest_features=guest_features,
        layout=layout,
        firmware_digest=fw_digest,
        kernel_hashes=hashes,
    )


# Intel TDX


@dataclass(frozen=True, slots=True)
class Alternative:
    """The value a register would have under another version-dependent choice."""

    register: str
    value: bytes
    condition: str

    def to_dict(self) -> dict[str, str]:
        return {"register": self.register, "value": self.value.hex(), "if": self.condition}


@dataclass(frozen=True, slots=True)
class TdxReference:
    """Expected TDX MRTD and, for direct boot, RTMR1 and RTMR2; None = not predicted."""

    mr_td: bytes
    rtmr1: bytes | None
    rtmr2: bytes | None
    firmware: Artifact
    kernel: Artifact | None
    initrd: Artifact | None
    append: str | None
    options: Mapping[str, Any]
    tdx_sections: tuple[Any, ...]
    events: Mapping[str, list[Event]]
    not_predicted: Mapping[str, str]
    alternatives: tuple[Alternative, ...]

    tee = "tdx"

    def to_dict(self) -> dict[str, Any]:
        from motte import __version__

        return {
            "format_version": REFERENCE_FORMAT_VERSION,
            "tee": "tdx",
            "tool": f"motte {__version__} (motte measure tdx)",
            "mr_td": self.mr_td.hex(),
            "rtmr0": None,
            "rtmr1": self.rtmr1.hex() if self.rtmr1 is not None else None,
            "rtmr2": self.rtmr2.hex() if self.rtmr2 is not None else None,
            "rtmr3": None,
            "not_predicted": dict(self.not_predicted),
            "inputs": {
                "firmware": self.firmware.to_dict(),
                "kernel": self.kernel.to_dict() if self.kernel else None,
                "initrd": self.initrd.to_dict() if self.initrd else None,
                "append": self.append,
                **self.options,
            },
            "firmware": {"tdx_metadata": [s.to_dict() for s in self.tdx_sections]},
            "events": {reg: [e.to_dict() for e in evs] for reg, evs in self.events.items()},
            "alternatives": [a.to_dict() for a in self.alternatives],
        }

    def describe_inputs(self) -> list[str]:
        lines = [f"firmware {self.firmware.describe()}"]
        if self.kernel is not None:
            lines.append(f"kernel {self.kernel.describe()}")
        if self.initrd is not None:
            lines.append(f"initrd {self.initrd.describe()}")
        if self.append is not None:
            lines.append(f"append {self.append!r}")
        lines.append(", ".join(f"{k} {v}" for k, v in self.options.items() if v is not None))
        return lines


_ORDER_WHY = {
    "per-page": "per-page page order (upstream KVM/QEMU TDX)",
    "two-pass": "two-pass page order (QEMU 8.x-era TDX stacks)",
}
_HEADER_WHY = {
    "unmodified": "kernel served unmodified (QEMU >= 10.2)",
    "qemu-patched": "setup header rewritten by QEMU <= 10.1",
}
_SEPARATOR_WHY = {
    "rtmr1": "separator in RTMR1 (edk2 >= stable202411)",
    "rtmr0": "separator in RTMR0 (edk2 before stable202411)",
}
_INITRD_WHY = {
    "prefix": "'initrd=initrd ' prefixed (edk2 after PR 11115)",
    "suffix": "' initrd=initrd' appended (edk2 before PR 11115)",
}


def _require(value: str | None, option: str, choices: tuple[str, ...], why: str) -> str:
    if value is None:
        raise MeasureError(f"{option} is required: {why}", hint=f"one of {', '.join(choices)}")
    if value not in choices:
        raise MeasureError(f"{option} {value!r}: use one of {', '.join(choices)}")
    return value


def measure_tdx(
    tdvf: str | Path,
    *,
    mrtd_order: str | None,
    kernel: str | Path | None = None,
    initrd: str | Path | None = None,
    append: str | None = None,
    kernel_header: str | None = None,
    memory: int | None = None,
    separator: str | None = None,
    initrd_option: str | None = None,
    linux: str | None = None,
) -> TdxReference:
    """MRTD of ``tdvf`` and, with a kernel, RTMR1 and RTMR2 of QEMU direct boot.

    Every argument that depends on a QEMU, edk2 or Linux version must be given when it
    matters (a MeasureError says which and why); none has a default.
    """
    order = _require(
        mrtd_order,
        "--mrtd-order",
        MRTD_ORDERS,
        "MRTD depends on how the host adds the firmware's pages: per-page (upstream KVM and "
        "QEMU) or two-pass (QEMU 8.x-era TDX stacks)",
    )
    if (initrd is not None or append is not None) and kernel is None:
        raise MeasureError("--initrd and --append need --kernel (RTMR1/RTMR2 are direct boot)")
    fw, fw_art = read_firmware(tdvf)
    sections = fw.require_tdx()
    value = mrtd(fw, order)
    other = "two-pass" if order == "per-page" else "per-page"
    alternatives = [Alternative("mr_td", mrtd(fw, other), _ORDER_WHY[other])]
    options: dict[str, Any] = {"mrtd_order": order}
    not_predicted = {"rtmr0": RTMR0_NOT_PREDICTED, "rtmr3": RTMR3_NOT_PREDICTED}
    events: dict[str, list[Event]] = {}
    rtmr1 = rtmr2 = None
    k_art = i_art = None
    if kernel is None:
        not_predicted["rtmr1"] = not_predicted["rtmr2"] = (
            "no --kernel: RTMR1 and RTMR2 are modelled for QEMU direct boot only"
        )
    else:
        header = _require(
            kernel_header,
            "--kernel-header",
            KERNEL_HEADERS,
            "QEMU <= 10.1 rewrites the bzImage setup header before the firmware measures it "
            "(qemu-patched); QEMU >= 10.2 serves it unmodified",
        )
        sep = _require(
            separator,
            "--separator",
            SEPARATORS,
            "edk2 >= stable202411 measures the boot separator into RTMR1 (rtmr1), older edk2 "
            "into RTMR0 (rtmr0)",
        )
        stub = _require(
            linux,
            "--linux",
            LINUX_STUBS,
            "Linux >= 6.9's EFI stub measures the command line and initrd into RTMR2 (6.9+); "
            "older kernels leave RTMR2 empty (pre-6.9)",
        )
        if header == "qemu-patched" and memory is None:
            raise MeasureError(
                "--memory is required with --kernel-header qemu-patched: QEMU puts the initrd "
                "address, which depends on guest memory, into the header"
            )
        if header == "unmodified" and memory is not None:
            raise MeasureError("--memory only matters with --kernel-header qemu-patched")
        kdata, k_art = _read_all(kernel, "kernel")
        i_art = digest_file(initrd, "initrd", sha384=True) if initrd is not None else None
        if i_art is not None and append and stub == "6.9+":
            _require(
                initrd_option,
                "--initrd-option",
                INITRD_OPTIONS,
                "edk2 puts 'initrd=initrd' into the kernel's LoadOptions, after the command "
                "line before edk2 PR 11115 (suffix), before it since (prefix)",
            )
        options.update(
            kernel_header=header,
            memory=memory,
            separator=sep,
            initrd_option=initrd_option,
            linux=stub,
        )
        initrd_size = i_art.size if i_art else None

        def kernel_digest(how: str, mem: int | None) -> bytes:
            if how == "unmodified":
                return pe_image_digest(kdata)
            assert mem is not None
            patched = qemu_patch_setup_header(
                kdata, memory=mem, initrd_size=initrd_size, cmdline=append
            )
            return pe_image_digest(patched)

        kd = kernel_digest(header, memory)
        events["rtmr1"] = rtmr1_events(kd, sep)
        rtmr1 = replay(events["rtmr1"])
        other_sep = "rtmr0" if sep == "rtmr1" else "rtmr1"
        alternatives.append(
            Alternative("rtmr1", replay(rtmr1_events(kd, other_sep)), _SEPARATOR_WHY[other_sep])
        )
        if header == "unmodified":
            # The common guest sizes: 2 GiB and anything >= 2.75 GiB put the initrd alike.
            patched = kernel_digest("qemu-patched", 2 << 30)
            alternatives.append(
                Alternative(
                    "rtmr1",
                    replay(rtmr1_events(patched, sep)),
                    _HEADER_WHY["qemu-patched"] + " with 2 GiB or >= 2.75 GiB of memory",
                )
            )
        else:
            alternatives.append(
                Alternative(
                    "rtmr1",
                    replay(rtmr1_events(kernel_digest("unmodified", None), sep)),
                    _HEADER_WHY["unmodified"],
                )
            )
        initrd_digest = i_art.sha384 if i_art else None
        if stub == "pre-6.9":
            events["rtmr2"] = []
            rtmr2 = bytes(48)
        elif initrd_digest is not None and not append:
            not_predicted["rtmr2"] = (
                "an initrd without --append: what edk2 puts in LoadOptions then is not "
                "settled by the sources (measured ' initrd=initrd', or nothing); give --append"
            )
        else:
            events["rtmr2"] = rtmr2_events(append, initrd_digest, initrd_option)
            rtmr2 = replay(events["rtmr2"])
            alternatives.append(
                Alternative("rtmr2", bytes(48), "a guest kernel older than Linux 6.9 (empty)")
            )
            if initrd_digest is not None and append:
                other_opt = "suffix" if initrd_option == "prefix" else "prefix"
                alternatives.append(
                    Alternative(
                        "rtmr2",
                        replay(rtmr2_events(append, initrd_digest, other_opt)),
                        _INITRD_WHY[other_opt],
                    )
                )
    return TdxReference(
        mr_td=value,
        rtmr1=rtmr1,
        rtmr2=rtmr2,
        firmware=fw_art,
        kernel=k_art,
        initrd=i_art,
        append=append,
        options=options,
        tdx_sections=sections,
        events=events,
        not_predicted=not_predicted,
        alternatives=tuple(alternatives),
    )
