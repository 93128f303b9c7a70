"""Every expected value in shared/testdata/measure (PROVENANCE.md, vectors.json) reproduced."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from motte.measure import (
    FirmwareError,
    KernelHashes,
    MeasureError,
    firmware_pages_digest,
    mrtd,
    parse_firmware,
    pe_image_digest,
    qemu_patch_setup_header,
    replay,
    rtmr1_events,
    rtmr2_events,
    sev_es_launch_digest,
    sev_launch_digest,
    snp_launch_digest,
)
from motte.measure._tdx import (
    CALLING_EFI_APPLICATION,
    EXIT_BOOT_SERVICES_INVOCATION,
    EXIT_BOOT_SERVICES_SUCCESS,
    SEPARATOR,
)
from tests.measure.conftest import data, firmware_path, vectors


def _file(name: str | None) -> bytes | None:
    if name is None:
        return None
    if name == "<empty file>":
        return b""
    return data(name).read_bytes()


def _hashes(row: dict[str, Any]) -> KernelHashes | None:
    kernel = _file(row["kernel"])
    if kernel is None:
        return None
    initrd = _file(row["initrd"]) or b""
    return KernelHashes(
        hashlib.sha256(kernel).digest(),
        hashlib.sha256(initrd).digest(),
        KernelHashes.cmdline_digest(row["append"]),
    )


def _compute(row: dict[str, Any]) -> str:
    path = firmware_path(row["firmware"])
    fw = parse_firmware(path.read_bytes(), name=path.name)
    sig = int(row["vcpu_sig"], 16) if row["vcpu_sig"] else None
    vmm = row["vmm_type"].lower()
    hashes = _hashes(row)
    if row["mode"] == "snp":
        seed = bytes.fromhex(row["snp_ovmf_hash"]) if row["snp_ovmf_hash"] else None
        return snp_launch_digest(
            fw,
            vcpus=row["vcpus"],
            vcpu_sig=sig,
            vmm=vmm,
            guest_features=int(row["guest_features"], 16),
            kernel_hashes=hashes,
            firmware_digest=seed,
        ).hex()
    if row["mode"] == "seves":
        return sev_es_launch_digest(
            fw, vcpus=row["vcpus"], vcpu_sig=sig, vmm=vmm, kernel_hashes=hashes
        ).hex()
    assert row["mode"] == "sev", row["mode"]
    return sev_launch_digest(fw, kernel_hashes=hashes).hex()


SNP_ROWS = vectors()["snp"]


@pytest.mark.parametrize("row", SNP_ROWS, ids=[r["id"] for r in SNP_ROWS])
def test_sev_family_vector(row: dict[str, Any]) -> None:
    if row["mode"] == "snp:svsm":
        pytest.skip("snp:svsm (Coconut-SVSM) launches are not modelled; docs/measure.md")
    path = firmware_path(row["firmware"])
    assert hashlib.sha256(path.read_bytes()).hexdigest() == row["firmware_sha256"]
    if row["expected_error"] is not None:
        with pytest.raises(MeasureError) as e:
            _compute(row)
        # motte says why in its own words: the kernel cannot be measured with this firmware.
        assert "kernel" in e.value.message and (
            "SNP_KERNEL_HASHES" in e.value.message or "hash table" in e.value.message
        )
        return
    assert _compute(row) == row["expected"]


@pytest.mark.parametrize("name", sorted(vectors()["snp_ovmf_hash"]))
def test_firmware_pages_digest_vector(name: str) -> None:
    path = firmware_path(name)
    fw = parse_firmware(path.read_bytes(), name=name)
    assert firmware_pages_digest(fw).hex() == vectors()["snp_ovmf_hash"][name]


MRTD_ROWS = vectors()["tdx_mrtd"]


@pytest.mark.parametrize("row", MRTD_ROWS, ids=[r["id"] for r in MRTD_ROWS])
def test_mrtd_vector(row: dict[str, Any]) -> None:
    if "(external)" in row["id"]:
        pytest.skip(f"{row['firmware']}: inputs not obtainable here (reference only)")
    path = firmware_path(row["firmware"])
    fw = parse_firmware(path.read_bytes(), name=path.name)
    order = "per-page" if row["order"].startswith("per page") else "two-pass"
    assert mrtd(fw, order).hex() == row["expected"]


def test_event_digests() -> None:
    want = vectors()["tdx_event_digests"]
    got = {
        "calling_efi_application": CALLING_EFI_APPLICATION,
        "separator_00000000": SEPARATOR,
        "exit_boot_services_invocation": EXIT_BOOT_SERVICES_INVOCATION,
        "exit_boot_services_returned_with_success": EXIT_BOOT_SERVICES_SUCCESS,
    }
    assert {k: hashlib.sha384(v).hexdigest() for k, v in got.items()} == want


@pytest.mark.parametrize("row", vectors()["tdx_rtmr1_from_kernel_digest"])
def test_rtmr1_from_kernel_digest(row: dict[str, Any]) -> None:
    digest = bytes.fromhex(row["kernel_event_digest"])
    assert replay(rtmr1_events(digest, "rtmr1")).hex() == row["rtmr1_edk2_ge_202411"]
    assert replay(rtmr1_events(digest, "rtmr0")).hex() == row["rtmr1_edk2_lt_202411"]


RTMR2_ROWS = vectors()["tdx_rtmr2_direct_boot"]


@pytest.mark.parametrize("row", RTMR2_ROWS, ids=[r["edk2_initrd_option"] for r in RTMR2_ROWS])
def test_rtmr2_vector(row: dict[str, Any]) -> None:
    initrd = _file(row["initrd"])
    option = "prefix" if row["edk2_initrd_option"].startswith("prefixes") else "suffix"
    initrd_digest = hashlib.sha384(initrd).digest() if initrd is not None else None
    if initrd_digest is not None:
        assert initrd_digest.hex() == row["initrd_digest"]
    events = rtmr2_events(row["cmdline"], initrd_digest, option)
    assert events[0].digest.hex() == row["load_options_digest"]
    assert replay(events).hex() == row["expected_rtmr2"]


RTMR1_ROWS = vectors()["tdx_rtmr1_direct_boot"]


@pytest.mark.parametrize(
    "row",
    RTMR1_ROWS,
    ids=[f"{r['qemu']}-{r['memory_gib']}G-{bool(r['initrd'])}" for r in RTMR1_ROWS],
)
def test_rtmr1_direct_boot_vector(row: dict[str, Any], debian_kernel: Path) -> None:
    kernel = debian_kernel.read_bytes()
    if row["memory_gib"] is not None:
        initrd = _file(row["initrd"])
        kernel = qemu_patch_setup_header(
            kernel,
            memory=row["memory_gib"] << 30,
            initrd_size=len(initrd) if initrd is not None else None,
            cmdline=None,
        )
    digest = pe_image_digest(kernel)
    assert digest.hex() == row["kernel_event_digest"]
    assert replay(rtmr1_events(digest, "rtmr1")).hex() == row["rtmr1_edk2_ge_202411"]
    assert replay(rtmr1_events(digest, "rtmr0")).hex() == row["rtmr1_edk2_lt_202411"]


def test_patched_header_is_the_same_for_2g_and_above_2_75g(debian_kernel: Path) -> None:
    """QEMU caps RAM below 4 GiB at 2 GiB from 2.75 GiB on: same initrd address, same digest."""
    kernel = debian_kernel.read_bytes()
    two, eight = (
        qemu_patch_setup_header(kernel, memory=g << 30, initrd_size=18, cmdline=None)
        for g in (2, 8)
    )
    assert two == eight
    assert qemu_patch_setup_header(kernel, memory=1 << 30, initrd_size=18, cmdline=None) != two


def test_synthetic_kernel_is_refused_for_tdx() -> None:
    with pytest.raises(MeasureError, match=r"not a PE image.*no MZ header"):
        pe_image_digest(data("synthetic-kernel.bin").read_bytes())


def test_amdsev_suffix_tdx_metadata_points_past_the_4k_tail() -> None:
    fw = parse_firmware(data("ovmf_AmdSev_suffix.bin").read_bytes(), name="suffix")
    assert fw.sev_sections is not None and fw.has_kernel_hashes
    with pytest.raises(FirmwareError, match="runs past the end of the 4096-byte file"):
        fw.require_tdx()
