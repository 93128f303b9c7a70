"""At the Keep: the running launch values next to the inputs `motte measure` needs.

:func:`guest_facts` reads what the guest itself can tell (``/proc``: vCPUs, the vCPU's CPUID
signature, the kernel command line and release, memory); :func:`running_lines` puts them
beside the values of a parsed report or quote, as a `motte measure` command to reproduce them.
What the guest cannot see (the firmware file, the host's choice of guest features) is named
as such rather than guessed.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Any

from motte.measure._snp import cpu_signature, vcpu_type_names


def guest_facts(proc: str | os.PathLike[str] = "/proc") -> dict[str, Any]:
    """vCPUs, CPUID signature, command line, kernel release and memory, as far as readable."""
    root = Path(proc)

    def read(name: str) -> str | None:
        try:
            return (root / name).read_text(errors="replace")
        except OSError:
            return None

    facts: dict[str, Any] = {"release": os.uname().release}
    cpuinfo = read("cpuinfo") or ""
    facts["vcpus"] = len(re.findall(r"^processor\s*:", cpuinfo, re.M)) or None
    fms = [
        re.search(rf"^{k}\s*:\s*(\d+)", cpuinfo, re.M) for k in ("cpu family", "model", "stepping")
    ]
    facts["vcpu_sig"] = (
        cpu_signature(*(int(m.group(1)) for m in fms)) if all(fms) else None  # type: ignore[union-attr]
    )
    cmdline = read("cmdline")
    facts["cmdline"] = cmdline.strip() if cmdline is not None else None
    mem = re.search(r"^MemTotal:\s*(\d+) kB", read("meminfo") or "", re.M)
    facts["memory_kib"] = int(mem.group(1)) if mem else None
    return facts


def _linux_ge_6_9(release: str) -> bool:
    m = re.match(r"(\d+)\.(\d+)", release)
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= (6, 9)  # type: ignore[union-attr]


def running_lines(parsed: Any, facts: dict[str, Any]) -> list[str]:
    """The running values of ``parsed`` (motte.attest.ParsedEvidence) and how to reproduce them."""
    body = parsed.inner if parsed.inner is not None else parsed.value
    cmdline = facts.get("cmdline")
    append = f" --append {shlex.quote(cmdline)}" if cmdline else ""
    if parsed.tee == "snp":
        sig = facts.get("vcpu_sig")
        names = vcpu_type_names(sig) if sig else []
        cpu = f"--vcpu-sig {sig:#x}" if sig else "--vcpu-type MODEL"
        return [
            f"running MEASUREMENT {body.measurement.hex()}",
            f"  guest policy {body.policy:#x}, VMPL {body.vmpl}, "
            f"{facts.get('vcpus') or '?'} vCPUs, "
            f"CPUID signature {f'{sig:#x}' if sig else 'unknown'}"
            + (f" ({', '.join(names)})" if names else ""),
            "  reproduce: motte measure snp --ovmf OVMF.fd"
            f" --vcpus {facts.get('vcpus') or 'N'} {cpu}"
            " --guest-features HEX" + (f" [--kernel K --initrd I{append}]" if cmdline else ""),
            "  not visible in the guest: the firmware file (the host's), the guest features "
            "(the host's QEMU options; 0x1, or 0x21 with debug-swap) and whether the kernel was "
            "measured (only with an AmdSevX64 OVMF)",
        ]
    if parsed.tee == "tdx":
        report = getattr(body, "body", body)
        linux = "6.9+" if _linux_ge_6_9(str(facts.get("release") or "")) else "pre-6.9"
        mem = facts.get("memory_kib")
        return [
            f"running MRTD  {report.mr_td.hex()}",
            *(f"running RTMR{i} {getattr(report, f'rtmr{i}').hex()}" for i in range(4)),
            f"  {facts.get('vcpus') or '?'} vCPUs, kernel {facts.get('release')}, "
            f"MemTotal {mem // 1024 if mem else '?'} MiB (the VM's configured memory is larger)",
            "  reproduce: motte measure tdx --tdvf OVMF.fd --mrtd-order per-page|two-pass"
            f" --kernel K [--initrd I]{append} --linux {linux}"
            " --kernel-header unmodified|qemu-patched --separator rtmr1|rtmr0",
            "  RTMR0 and RTMR3 are not predicted by motte measure (docs/measure.md)",
        ]
    return []
