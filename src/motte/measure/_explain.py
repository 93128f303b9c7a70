"""Which input would explain a measurement that differs from the reference.

Given what ``motte measure --json`` wrote and the values a report carries, try the changes an
operator most often gets wrong, one at a time, and say which reproduces the report's value:

- SNP, replayed from the firmware-pages digest (no files needed): the vCPU count (1-512),
  the vCPU model, the guest features, the VMM type, and a kernel, initrd or command line
  that was not measured (absent) although the reference had one.
- TDX: the reference's own alternatives (page order, edk2 separator layout, QEMU's header
  patch, edk2's initrd= placement, a kernel without RTMR2 measurement), and which register
  differs, which names the stage: MRTD the firmware, RTMR1 the kernel, RTMR2 the command line
  or initrd.

When nothing matches, the answer says what that leaves: different bytes in an input.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

from motte.measure._firmware import SEV_SECTION_TYPES, SevSection
from motte.measure._snp import (
    VCPU_SIGNATURES,
    KernelHashes,
    SnpLayout,
    extend_vmsas,
    metadata_digest,
    vcpu_type_names,
    vmsa_pages,
)
from motte.measure.errors import MeasureError

MAX_VCPUS = 512
COMMON_GUEST_FEATURES = (0x1, 0x21)


def _hex(doc: Mapping[str, Any], *keys: str) -> bytes | None:
    value: Any = doc
    for k in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(k)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MeasureError(f"measure inputs: {'.'.join(keys)} is not a hex string")
    try:
        return bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raise MeasureError(f"measure inputs: {'.'.join(keys)} is not hex") from None


def _int(value: Any, what: str) -> int:
    try:
        return int(value, 0) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        raise MeasureError(f"measure inputs: {what} {value!r} is not a number") from None


def _snp_layout(doc: Mapping[str, Any]) -> SnpLayout:
    fw = doc.get("firmware") or {}
    by_name = {v: k for k, v in SEV_SECTION_TYPES.items()}
    try:
        sections = tuple(
            SevSection(_int(s["gpa"], "gpa"), _int(s["size"], "size"), by_name[s["type"]])
            for s in fw["sev_metadata"]
        )
    except (KeyError, TypeError):
        raise MeasureError(
            "measure inputs: firmware.sev_metadata is missing or malformed"
        ) from None
    eip = fw.get("ap_reset_eip")
    table = fw.get("kernel_hashes_table_gpa")
    return SnpLayout(
        sections,
        _int(eip, "ap_reset_eip") if eip else None,
        _int(table, "kernel_hashes_table_gpa") if table else None,
    )


def _kernel_variants(
    doc: Mapping[str, Any],
) -> Iterator[tuple[KernelHashes | None, str | None]]:
    """The reference's kernel hashes, then the usual slips (None = the reference's own)."""
    kernel = _hex(doc, "digests", "kernel_sha256")
    if kernel is None:
        yield None, None
        return
    initrd = _hex(doc, "digests", "initrd_sha256")
    cmdline = _hex(doc, "digests", "cmdline_sha256")
    assert initrd is not None and cmdline is not None
    yield KernelHashes(kernel, initrd, cmdline), None
    yield None, "no kernel, initrd or command line measured (the VM booted without --kernel)"
    empty, nul = hashlib.sha256(b"").digest(), hashlib.sha256(b"\0").digest()
    if initrd != empty:
        yield KernelHashes(kernel, empty, cmdline), "no initrd"
    if cmdline != nul:
        yield KernelHashes(kernel, initrd, nul), "no command line"


def explain_snp(doc: Mapping[str, Any], measurement: bytes) -> list[str]:
    """Lines saying which single change of the reference's inputs gives ``measurement``."""
    want = _hex(doc, "measurement")
    fw_digest = _hex(doc, "digests", "firmware_pages")
    if want is None or fw_digest is None:
        raise MeasureError("measure inputs: not the JSON of `motte measure snp --json`")
    if measurement == want:
        return ["the report's MEASUREMENT equals the reference: nothing to explain"]
    inputs = doc.get("inputs") or {}
    layout = _snp_layout(doc)
    vcpus = _int(inputs.get("vcpus", 1), "vcpus")
    sig0 = inputs.get("vcpu_sig")
    sig0 = _int(sig0, "vcpu_sig") if sig0 else None
    vmm0 = str(inputs.get("vmm_type", "qemu"))
    feat0 = _int(inputs.get("guest_features", "0x1"), "guest_features")
    sigs = list(dict.fromkeys([sig0, *VCPU_SIGNATURES.values()]))
    feats = list(dict.fromkeys([feat0, *COMMON_GUEST_FEATURES]))
    found: list[str] = []
    for hashes, kernel_change in _kernel_variants(doc):
        for vmm in dict.fromkeys([vmm0, "qemu", "ec2", "gce"]):
            try:
                base = metadata_digest(fw_digest, layout, hashes, vmm)
            except MeasureError:
                continue
            for sig in sigs if vmm == "qemu" else [None]:
                if vmm == "qemu" and sig is None:
                    continue
                for feat in feats:
                    pages = vmsa_pages(MAX_VCPUS, layout.ap_reset_eip, feat, sig or 0, vmm)
                    for n, ld in enumerate(extend_vmsas(base, pages), start=1):
                        if ld != measurement:
                            continue
                        changes = [kernel_change] if kernel_change else []
                        if vmm != vmm0:
                            changes.append(f"VMM type {vmm} instead of {vmm0}")
                        if n != vcpus:
                            changes.append(f"{n} vCPUs instead of {vcpus}")
                        if vmm == "qemu" and sig != sig0:
                            names = ", ".join(vcpu_type_names(sig or 0)) or "unknown model"
                            changes.append(
                                f"vCPU signature {sig:#x} ({names}) instead of {sig0:#x}"
                            )
                        if feat != feat0:
                            changes.append(f"guest features {feat:#x} instead of {feat0:#x}")
                        found.append("; ".join(changes))
                        break
    if found:
        return [f"the report's MEASUREMENT is the reference's inputs with: {f}" for f in found]
    return [
        "no single change of vCPU count (1-512), vCPU model, guest features, VMM type, or a "
        "dropped kernel, initrd or command line gives the report's MEASUREMENT: the firmware, "
        "kernel, initrd or command line bytes differ (or the host is SVSM/IGVM-based, which is "
        "not modelled)"
    ]


_TDX_STAGE = {
    "mr_td": "MRTD differs: the firmware (TDVF) image differs",
    "rtmr1": "RTMR1 differs: the kernel image differs",
    "rtmr2": "RTMR2 differs: the kernel command line or initrd differs",
}


def explain_tdx(doc: Mapping[str, Any], claims: Mapping[str, Any]) -> list[str]:
    """Lines naming the registers that differ and any alternative that explains them."""
    lines = []
    alternatives = doc.get("alternatives") or []
    for reg in ("mr_td", "rtmr1", "rtmr2"):
        want = _hex(doc, reg)
        got_hex = claims.get(reg)
        if want is None or not isinstance(got_hex, str):
            continue
        got = bytes.fromhex(got_hex)
        if got == want:
            continue
        match = [
            a.get("if")
            for a in alternatives
            if isinstance(a, Mapping) and a.get("register") == reg and a.get("value") == got.hex()
        ]
        if match:
            lines.append(
                f"{'MRTD' if reg == 'mr_td' else reg.upper()} equals the reference with: "
                + "; or ".join(map(str, match))
            )
        else:
            lines.append(f"{_TDX_STAGE[reg]} (no version switch explains it)")
    return lines or ["MRTD, RTMR1 and RTMR2 equal the reference: nothing to explain"]


def explain_mismatch(doc: Mapping[str, Any], verdict: Mapping[str, Any]) -> list[str]:
    """Explain a verdict's launch values against a reference (``motte measure --json``).

    ``verdict`` is :meth:`motte.attest.Verdict.to_dict`; its ``claims`` give the values.
    """
    tee = doc.get("tee")
    if verdict.get("kind") != tee:
        return [f"the evidence is {verdict.get('kind')}, the reference is for {tee}"]
    claims = verdict.get("claims") or {}
    if tee == "snp":
        got = claims.get("measurement") or verdict.get("measurement")
        if not isinstance(got, str):
            return ["the verdict carries no MEASUREMENT"]
        return explain_snp(doc, bytes.fromhex(got))
    if tee == "tdx":
        return explain_tdx(doc, claims)
    raise MeasureError(f"measure inputs: unknown tee {tee!r}")
