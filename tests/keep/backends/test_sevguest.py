"""/dev/sev-guest: the ioctl structures byte for byte, with a stand-in for the firmware."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from motte.attest import verify_evidence
from motte.keep.backends import BackendError, SevGuestDevice
from motte.keep.backends._sevguest import (
    EXT_REPORT_REQ,
    GUEST_REQUEST_IOCTL,
    REPORT_REQ,
    SNP_GET_EXT_REPORT,
    SNP_GET_REPORT,
)
from tests.keep.backends.kernels import FakeSevFirmware, milan_cert_table, sample

AT_2025 = datetime(2025, 6, 1, tzinfo=UTC)
REPORT_DATA = bytes(range(64, 128))


def _iowr(kind: str, nr: int, size: int) -> int:
    """Linux's _IOWR(type, nr, size) on x86: dir 3 << 30 | size << 16 | type << 8 | nr."""
    return (3 << 30) | (size << 16) | (ord(kind) << 8) | nr


def test_structure_sizes_and_request_numbers_are_the_kernels():
    assert REPORT_REQ.size == 96  # u8 user_data[64]; u32 vmpl; u8 rsvd[28]
    assert EXT_REPORT_REQ.size == 112  # + u64 certs_address; u32 certs_len; (padding)
    assert GUEST_REQUEST_IOCTL.size == 32  # u8 msg_version; u64 req, resp, exitinfo2
    assert SNP_GET_REPORT == _iowr("S", 0, 32) == 0xC0205300
    assert SNP_GET_EXT_REPORT == _iowr("S", 2, 32) == 0xC0205302


@pytest.fixture
def device_path(tmp_path):
    path = tmp_path / "sev-guest"
    path.write_bytes(b"")
    return path


def test_extended_report_carries_the_host_certificates_and_verifies(device_path):
    report = sample("trustee", "snp", "test-report.bin")
    firmware = FakeSevFirmware(report, milan_cert_table())
    evidence = SevGuestDevice(device_path, ioctl=firmware).evidence(REPORT_DATA)
    assert firmware.calls == [(SNP_GET_EXT_REPORT, REPORT_DATA, 0)]
    assert evidence.kind == "snp" and evidence.raw == report
    # The 16 KiB buffer is trimmed to the end of the last certificate.
    assert evidence.certs == milan_cert_table()
    assert verify_evidence(evidence, now=AT_2025).accepted


def test_a_kernel_without_the_extended_request_falls_back(device_path):
    report = sample("trustee", "snp", "test-report.bin")
    firmware = FakeSevFirmware(report, None, ext_supported=False)
    evidence = SevGuestDevice(device_path, ioctl=firmware).evidence(REPORT_DATA)
    assert [c[0] for c in firmware.calls] == [SNP_GET_EXT_REPORT, SNP_GET_REPORT]
    assert firmware.calls[1][1] == REPORT_DATA
    assert evidence.raw == report and evidence.certs is None


def test_a_host_without_certificates_gives_none(device_path):
    report = sample("trustee", "snp", "test-report.bin")
    evidence = SevGuestDevice(device_path, ioctl=FakeSevFirmware(report, None)).evidence(
        REPORT_DATA
    )
    assert evidence.certs is None


def test_a_certificate_table_larger_than_the_kernel_allows_is_named(device_path):
    report = sample("trustee", "snp", "test-report.bin")
    firmware = FakeSevFirmware(report, milan_cert_table(), certs_needed=0x8000)
    with pytest.raises(BackendError, match=r"needs 32768 bytes, more than the kernel's 16384"):
        SevGuestDevice(device_path, ioctl=firmware).evidence(REPORT_DATA)


def test_a_firmware_error_status_is_refused(device_path):
    report = sample("trustee", "snp", "test-report.bin")
    firmware = FakeSevFirmware(report, None, status=0x16)
    with pytest.raises(BackendError, match=r"firmware refused the report \(status 0x16\)"):
        SevGuestDevice(device_path, ioctl=firmware).evidence(REPORT_DATA)


def test_a_report_of_the_wrong_size_is_refused(device_path):
    firmware = FakeSevFirmware(b"\x02" * 100, None)
    with pytest.raises(BackendError, match="100-byte report, not 1184"):
        SevGuestDevice(device_path, ioctl=firmware).evidence(REPORT_DATA)


def test_a_missing_device_is_unavailable_and_refused(tmp_path):
    device = SevGuestDevice(tmp_path / "none")
    availability = device.probe()
    assert not availability.ok and "does not exist" in availability.checks[0]
    with pytest.raises(BackendError, match="cannot open"):
        device.evidence(REPORT_DATA)
