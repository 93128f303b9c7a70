"""``motte measure``: the launch measurement a policy should pin, computed from the artifacts.

Thin commands: parse the command line, call :mod:`motte.measure`, render, and with
``--policy-out`` pin the values in a policy file. Exit 0 computed, 2 an input that cannot be
measured (named in one line).
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from motte.cli import _typer as typer
from motte.errors import ExitStatus

if TYPE_CHECKING:
    from motte.measure import SnpReference, TdxReference

_EPILOG = """motte measure snp --ovmf OVMF.fd --vcpus 4 --vcpu-type EPYC-Milan: firmware-only SNP launch

motte measure snp --ovmf AmdSev.fd --kernel vmlinuz --initrd initrd.img --append "console=ttyS0" --vcpus 2 --vcpu-type EPYC-Genoa --policy-out policy.toml: measured direct boot, pinned in a policy

motte measure tdx --tdvf OVMF.fd --mrtd-order per-page: MRTD only

See docs/measure.md: what each input changes, what cannot be predicted, and the caveats."""  # noqa: E501

app = typer.Typer(
    no_args_is_help=True,
    help="Compute the launch measurement (SNP MEASUREMENT, TDX MRTD/RTMRs) of what you built.",
    epilog=_EPILOG,
)


class Vmm(StrEnum):
    qemu = "qemu"
    ec2 = "ec2"
    gce = "gce"


class MrtdOrder(StrEnum):
    per_page = "per-page"
    two_pass = "two-pass"


class KernelHeader(StrEnum):
    unmodified = "unmodified"
    qemu_patched = "qemu-patched"


class Separator(StrEnum):
    rtmr1 = "rtmr1"
    rtmr0 = "rtmr0"


class InitrdOption(StrEnum):
    prefix = "prefix"
    suffix = "suffix"


class Linux(StrEnum):
    new = "6.9+"
    old = "pre-6.9"


Json = Annotated[bool, typer.Option("--json", help="Print JSON (every input's digest).")]
PolicyOut = Annotated[
    Path | None,
    typer.Option(
        "--policy-out",
        metavar="FILE",
        help="Write (or extend) an attestation policy pinning the computed values.",
        show_default=False,
    ),
]
Kernel = Annotated[
    Path | None,
    typer.Option("--kernel", metavar="FILE", help="Kernel for direct boot.", show_default=False),
]
Initrd = Annotated[
    Path | None,
    typer.Option("--initrd", metavar="FILE", help="Initrd (with --kernel).", show_default=False),
]
Append = Annotated[
    str | None,
    typer.Option(
        "--append",
        metavar="CMDLINE",
        help="Kernel command line (with --kernel).",
        show_default=False,
    ),
]


def _number(value: str | None, option: str, *, maximum: int) -> int | None:
    if value is None:
        return None
    try:
        n = int(value, 0)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a number (hex with 0x)", param_hint=option
        ) from None
    if not 0 <= n <= maximum:
        raise typer.BadParameter(f"{value} is out of range", param_hint=option)
    return n


_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*$", re.I)


def _memory(value: str | None) -> int | None:
    if value is None:
        return None
    m = _SIZE_RE.match(value)
    if not m:
        raise typer.BadParameter(f"{value!r} is not a size like 2G or 2048M", param_hint="--memory")
    return int(m.group(1)) << (10 * " KMGT".index(m.group(2).upper() or " "))


@app.command()
def snp(
    ovmf: Annotated[
        Path,
        typer.Option(
            "--ovmf", metavar="FILE", help="The OVMF image QEMU is given.", show_default=False
        ),
    ],
    vcpus: Annotated[int, typer.Option("--vcpus", metavar="N", help="Number of vCPUs.")],
    kernel: Kernel = None,
    initrd: Initrd = None,
    append: Append = None,
    vcpu_type: Annotated[
        str | None,
        typer.Option(
            "--vcpu-type",
            metavar="TYPE",
            help="QEMU vCPU model (EPYC-v4, EPYC-Milan, EPYC-Genoa, EPYC-Turin, ...).",
            show_default=False,
        ),
    ] = None,
    vcpu_sig: Annotated[
        str | None,
        typer.Option(
            "--vcpu-sig",
            metavar="HEX",
            help="The vCPU's CPUID signature (leaf 1 EAX), instead of --vcpu-type.",
            show_default=False,
        ),
    ] = None,
    vmm_type: Annotated[Vmm, typer.Option("--vmm-type", help="Who launches the VM.")] = Vmm.qemu,
    guest_features: Annotated[
        str,
        typer.Option(
            "--guest-features",
            metavar="HEX",
            help="SEV_FEATURES of the VMSA: 0x1 SNP only, 0x21 with DebugSwap.",
        ),
    ] = "0x1",
    json: Json = False,
    policy_out: PolicyOut = None,
) -> int:
    """Print the SEV-SNP launch MEASUREMENT of OVMF (and a measured kernel) with this VM shape.

    Agrees byte for byte with sev-snp-measure 0.0.13. A kernel, initrd and command line are
    measured only with firmware that has an SNP_KERNEL_HASHES section (AmdSevX64 builds):
    --kernel with other firmware is refused, since the kernel would run unmeasured.
    """
    from motte.measure import measure_snp, vcpu_signature, write_policy

    sig = vcpu_signature(vcpu_type, _number(vcpu_sig, "--vcpu-sig", maximum=0xFFFF_FFFF))
    ref = measure_snp(
        ovmf,
        vcpus=vcpus,
        vcpu_sig=sig,
        vcpu_type=vcpu_type,
        vmm=vmm_type.value,
        guest_features=_number(guest_features, "--guest-features", maximum=(1 << 64) - 1) or 0,
        kernel=kernel,
        initrd=initrd,
        append=append,
    )
    changed = write_policy(policy_out, ref) if policy_out is not None else None
    if json:
        from motte.cli._output import emit_json

        emit_json(ref.to_dict())
        return int(ExitStatus.OK)
    _print_snp(ref)
    _print_policy(policy_out, changed)
    return int(ExitStatus.OK)


@app.command()
def tdx(
    tdvf: Annotated[
        Path,
        typer.Option(
            "--tdvf",
            metavar="FILE",
            help="The TDVF (OVMF) image QEMU is given.",
            show_default=False,
        ),
    ],
    mrtd_order: Annotated[
        MrtdOrder | None,
        typer.Option(
            "--mrtd-order",
            help="How the host adds firmware pages: per-page (upstream KVM/QEMU) or two-pass "
            "(QEMU 8.x-era TDX stacks). Required.",
            show_default=False,
        ),
    ] = None,
    kernel: Kernel = None,
    initrd: Initrd = None,
    append: Append = None,
    kernel_header: Annotated[
        KernelHeader | None,
        typer.Option(
            "--kernel-header",
            help="unmodified (QEMU >= 10.2) or qemu-patched (QEMU <= 10.1 rewrites the bzImage "
            "setup header). Required with --kernel.",
            show_default=False,
        ),
    ] = None,
    memory: Annotated[
        str | None,
        typer.Option(
            "--memory",
            metavar="SIZE",
            help="Guest memory (2G, 2048M): the patched header depends on it.",
            show_default=False,
        ),
    ] = None,
    separator: Annotated[
        Separator | None,
        typer.Option(
            "--separator",
            help="Where edk2 measures the boot separator: rtmr1 (edk2 >= stable202411) or "
            "rtmr0 (older). Required with --kernel.",
            show_default=False,
        ),
    ] = None,
    initrd_option: Annotated[
        InitrdOption | None,
        typer.Option(
            "--initrd-option",
            help="Where edk2 puts initrd=initrd in the command line: prefix (after edk2 PR "
            "11115, 2025) or suffix (before). Required with --initrd and --append.",
            show_default=False,
        ),
    ] = None,
    linux: Annotated[
        Linux | None,
        typer.Option(
            "--linux",
            help="The guest kernel's EFI stub: 6.9+ measures command line and initrd into "
            "RTMR2, pre-6.9 does not. Required with --kernel.",
            show_default=False,
        ),
    ] = None,
    json: Json = False,
    policy_out: PolicyOut = None,
) -> int:
    """Print the TDX MRTD of TDVF and, for QEMU direct boot, RTMR1 and RTMR2.

    RTMR0 (ACPI tables, UEFI variables, memory layout) and RTMR3 are not predicted and are
    never pinned. Options that depend on a QEMU, edk2 or Linux version have no default.
    """
    from motte.measure import measure_tdx, write_policy

    ref = measure_tdx(
        tdvf,
        mrtd_order=mrtd_order.value if mrtd_order else None,
        kernel=kernel,
        initrd=initrd,
        append=append,
        kernel_header=kernel_header.value if kernel_header else None,
        memory=_memory(memory),
        separator=separator.value if separator else None,
        initrd_option=initrd_option.value if initrd_option else None,
        linux=linux.value if linux else None,
    )
    changed = write_policy(policy_out, ref) if policy_out is not None else None
    if json:
        from motte.cli._output import emit_json

        emit_json(ref.to_dict())
        return int(ExitStatus.OK)
    _print_tdx(ref)
    _print_policy(policy_out, changed)
    return int(ExitStatus.OK)


def _print_snp(ref: SnpReference) -> None:
    typer.echo(ref.measurement.hex())
    for line in ref.describe_inputs():
        typer.echo(f"  {line}")
    typer.echo(f"  firmware pages digest (snp:ovmf-hash): {ref.firmware_digest.hex()}")
    if ref.kernel_hashes is not None:
        typer.echo(f"  kernel hashes table: {ref.kernel_hashes.table().hex()}")
    typer.echo("  host model: QEMU/KVM (host kernel >= 6.10 VMSA), no SVSM, no IGVM")


def _print_tdx(ref: TdxReference) -> None:
    typer.echo(f"MRTD   {ref.mr_td.hex()}")
    for reg in ("rtmr0", "rtmr1", "rtmr2", "rtmr3"):
        value = getattr(ref, reg, None)
        shown = value.hex() if value is not None else f"not predicted: {ref.not_predicted[reg]}"
        typer.echo(f"{reg.upper():6} {shown}")
    for line in ref.describe_inputs():
        typer.echo(f"  {line}")
    for reg, events in ref.events.items():
        for e in events:
            typer.echo(f"  {reg.upper()} event {e.digest.hex()}  {e.what}")


def _print_policy(path: Path | None, changed: bool | None) -> None:
    if path is None:
        return
    if changed:
        typer.echo(f"policy: pinned in {path}")
    else:
        typer.echo(f"policy: {path} already pins these values")
