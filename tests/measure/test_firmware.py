"""Firmware that cannot be measured is refused: one line naming what is missing, exit 2."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from motte.cli import main
from motte.measure import FirmwareError, parse_firmware
from tests.conftest import require
from tests.measure.conftest import DEBIAN_OVMF_CODE, DEBIAN_OVMF_CODE_4M, data, debian_ovmf

SNP = ["measure", "snp", "--vcpus", "1", "--vcpu-type", "EPYC-v4", "--ovmf"]
TDX = ["measure", "tdx", "--mrtd-order", "per-page", "--tdvf"]


def refused(capsys: pytest.CaptureFixture[str], args: list[str]) -> str:
    """Run the CLI in-process; it must exit 2 with one error line (and maybe a hint)."""
    rc = main(args)
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    assert out == ""
    lines = err.splitlines()
    assert lines and lines[0].startswith("motte: error: "), err
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("  hint: ")), err
    assert "Traceback" not in err
    return lines[0]


def amdsev_suffix() -> bytearray:
    return bytearray(data("ovmf_AmdSev_suffix.bin").read_bytes())


def write(tmp_path: Path, raw: bytes, name: str = "fw.fd") -> str:
    path = tmp_path / name
    path.write_bytes(raw)
    return str(path)


def test_debian_code_4m_has_neither_sev_nor_tdx_metadata(
    capsys: pytest.CaptureFixture[str],
) -> None:
    require(DEBIAN_OVMF_CODE_4M.exists(), "Debian's ovmf package (make test installs it)")
    line = refused(capsys, [*SNP, str(DEBIAN_OVMF_CODE_4M)])
    assert "no SEV metadata" in line and "Failed to locate SEV metadata header" in line
    assert "no TDX metadata" in refused(capsys, [*TDX, str(DEBIAN_OVMF_CODE_4M)])


def test_debian_code_split_tdx_sections_past_the_end(capsys: pytest.CaptureFixture[str]) -> None:
    require(DEBIAN_OVMF_CODE.exists(), "Debian's ovmf package (make test installs it)")
    line = refused(capsys, [*TDX, str(DEBIAN_OVMF_CODE)])
    assert "section 0 (BFV): data at offset 0x20000+0x1e0000 runs past the end" in line
    assert "1966080-byte file" in line


def test_truncated_firmware(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    whole = debian_ovmf().read_bytes()
    odd = write(tmp_path, whole[:100_000])
    assert "not a whole number of 4 KiB pages (truncated?)" in refused(capsys, [*SNP, odd])
    head = write(tmp_path, whole[: 1 << 20], "head.fd")  # the tail with the table is gone
    line = refused(capsys, [*SNP, head])
    assert "no OVMF GUID table" in line and "truncated at the end" in line
    assert "no OVMF GUID table" in refused(capsys, [*TDX, head])
    assert "0 bytes" in refused(capsys, [*SNP, write(tmp_path, b"", "empty.fd")])


def test_wrong_guid_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = amdsev_suffix()
    footer = len(raw) - 32 - 18
    bad_total = bytearray(raw)
    struct.pack_into("<H", bad_total, footer, 0xFFF0)
    assert "GUID table size 65520" in refused(capsys, [*SNP, write(tmp_path, bad_total, "a")])
    bad_entry = bytearray(raw)
    struct.pack_into("<H", bad_entry, footer - 18, 3)  # the last entry claims 3 bytes
    line = refused(capsys, [*SNP, write(tmp_path, bad_entry, "b")])
    assert "GUID table entry" in line and "has size 3" in line


def test_wrong_sev_metadata(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = amdsev_suffix()
    start = raw.index(b"ASEV")
    sig = bytearray(raw)
    sig[start : start + 4] = b"XSEV"
    assert "signature b'XSEV', not b'ASEV'" in refused(capsys, [*SNP, write(tmp_path, sig, "a")])
    kind = bytearray(raw)
    struct.pack_into("<I", kind, start + 16 + 8, 0x77)  # section 0's type
    assert "unknown type 0x77" in refused(capsys, [*SNP, write(tmp_path, kind, "b")])
    count = bytearray(raw)
    struct.pack_into("<I", count, start + 12, 4000)
    assert "claims 4000 sections" in refused(capsys, [*SNP, write(tmp_path, count, "c")])


def test_tdx_section_past_the_end_of_the_suffix(capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(capsys, [*TDX, str(data("ovmf_AmdSev_suffix.bin"))])
    assert "runs past the end of the 4096-byte file" in line


def test_missing_and_unreadable_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "cannot read firmware" in refused(capsys, [*SNP, str(tmp_path / "nope.fd")])
    assert "cannot read firmware" in refused(capsys, [*SNP, str(tmp_path)])
    ovmf = str(data("ovmf_AmdSev_suffix.bin"))
    line = refused(capsys, [*SNP, ovmf, "--kernel", str(tmp_path / "vmlinuz")])
    assert "cannot read kernel" in line
    assert "need --kernel" in refused(capsys, [*SNP, ovmf, "--initrd", ovmf])


def test_snp_vm_shape_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    ovmf = str(data("ovmf_AmdSev_suffix.bin"))
    line = refused(capsys, ["measure", "snp", "--ovmf", ovmf, "--vcpus", "1"])
    assert "give --vcpu-type" in line
    line = refused(capsys, ["measure", "snp", "--ovmf", ovmf, "--vcpus", "1", "--vcpu-type", "Z80"])
    assert "unknown vCPU type 'Z80'" in line
    line = refused(
        capsys, ["measure", "snp", "--ovmf", ovmf, "--vcpus", "0", "--vcpu-type", "EPYC"]
    )
    assert "0 vCPUs" in line


def test_a_process_never_shows_a_traceback(tmp_path: Path) -> None:
    got = subprocess.run(
        [sys.executable, "-m", "motte", *SNP, write(tmp_path, bytes(8192))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert got.returncode == 2
    assert got.stderr.splitlines()[0].startswith("motte: error: ")
    assert "no OVMF GUID table" in got.stderr and "Traceback" not in got.stderr


def test_parse_firmware_keeps_one_tees_fault_from_the_other() -> None:
    fw = parse_firmware(bytes(data("ovmf_OvmfX64_suffix.bin").read_bytes()), name="x64")
    assert fw.sev_sections is not None and not fw.has_kernel_hashes
    assert fw.hashes_table_gpa is None  # the entry is present but zero
    assert fw.ap_reset_eip == 0x80B004
    with pytest.raises(FirmwareError):
        fw.require_tdx()
