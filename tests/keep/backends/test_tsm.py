"""configfs-tsm: the real backend code over a temporary tree, the test playing the kernel,
with recorded SNP and TDX captures as what the "hardware" returns."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from motte.attest import verify_evidence
from motte.keep.backends import BackendError, ConfigfsTsm, SnpBackend, TdxBackend
from tests.keep.backends.kernels import FakeTsmKernel, left_behind, milan_cert_table, sample

AT_2025 = datetime(2025, 6, 1, tzinfo=UTC)
JULY_2025 = datetime(2025, 7, 1, tzinfo=UTC)
REPORT_DATA = bytes(range(64))


def snp_kernel(tmp_path, **kw) -> FakeTsmKernel:
    report = sample("trustee", "snp", "test-report.bin")
    table = milan_cert_table()
    return FakeTsmKernel(tmp_path / "tsm", produce=lambda data: (report, table), **kw)


def test_snp_evidence_is_the_kernels_outblob_and_auxblob_and_verifies(tmp_path):
    kernel = snp_kernel(tmp_path)
    evidence = SnpBackend(tsm=kernel).evidence(REPORT_DATA)
    assert evidence.kind == "snp"
    assert evidence.raw == sample("trustee", "snp", "test-report.bin")
    assert evidence.certs == milan_cert_table()
    assert kernel.log.inblobs == [REPORT_DATA]  # exactly what we asked, in one write
    # The host's certificate table travels with the report: nothing else is needed.
    verdict = verify_evidence(evidence, now=AT_2025)
    assert verdict.accepted, verdict.reason
    # The sample's REPORT_DATA is not ours: bound to a nonce, it is refused.
    assert not verify_evidence(evidence, now=AT_2025, report_data=REPORT_DATA).accepted


def test_tdx_evidence_is_the_whole_quote(tmp_path):
    quote = sample("dcap-qvl", "tdx_quote")
    kernel = FakeTsmKernel(
        tmp_path / "tsm", provider="tdx_guest", produce=lambda data: (quote, b"")
    )
    evidence = TdxBackend(tsm=kernel).evidence(REPORT_DATA)
    assert (evidence.kind, evidence.raw, evidence.certs) == ("tdx", quote, None)
    verdict = verify_evidence(
        evidence, collateral=sample("dcap-qvl", "tdx_quote_collateral.json"), now=JULY_2025
    )
    assert verdict.accepted, verdict.reason


def test_the_report_entry_is_removed_after_success_and_after_failure(tmp_path):
    kernel = snp_kernel(tmp_path)
    SnpBackend(tsm=kernel).evidence(REPORT_DATA)
    assert left_behind(kernel.root) == []
    failing = snp_kernel(tmp_path, fail_read="outblob")
    with pytest.raises(BackendError, match=r"cannot read outblob: Input/output error"):
        failing.evidence(REPORT_DATA)
    assert left_behind(failing.root) == []
    assert failing.log.made == failing.log.removed


def test_a_race_with_another_writer_is_retried_with_a_fresh_entry(tmp_path):
    kernel = snp_kernel(tmp_path, races=1)
    evidence = kernel.evidence(REPORT_DATA)
    assert evidence.raw == sample("trustee", "snp", "test-report.bin")
    assert len(kernel.log.made) == 2 and len(set(kernel.log.made)) == 2
    assert left_behind(kernel.root) == []


def test_a_writer_that_always_races_is_an_error_not_a_wrong_report(tmp_path):
    kernel = snp_kernel(tmp_path, races=100)
    with pytest.raises(BackendError, match="another writer changed the report entry 3 times"):
        kernel.evidence(REPORT_DATA)
    assert len(kernel.log.made) == 3


def test_probe_reads_the_provider_from_a_temporary_entry(tmp_path):
    kernel = snp_kernel(tmp_path)
    availability = kernel.probe()
    assert availability.ok and availability.via == "configfs-tsm"
    assert "provider sev_guest" in availability.checks[0]
    assert left_behind(kernel.root) == []


def test_the_wrong_provider_is_unavailable_and_refused(tmp_path):
    kernel = snp_kernel(tmp_path, answers="tdx_guest")
    availability = kernel.probe()
    assert not availability.ok
    assert "provider is 'tdx_guest', not sev_guest" in availability.checks[0]
    with pytest.raises(BackendError, match="provider is 'tdx_guest', not sev_guest"):
        kernel.evidence(REPORT_DATA)


def test_a_missing_tree_is_unavailable_with_the_reason(tmp_path):
    availability = ConfigfsTsm("sev_guest", tmp_path / "nowhere").probe()
    assert not availability.ok
    assert "does not exist" in availability.checks[0]


def test_no_permission_to_create_an_entry_is_named(tmp_path):
    kernel = snp_kernel(tmp_path, deny_mkdir=True)
    availability = kernel.probe()
    assert not availability.ok and "Permission denied" in availability.checks[0]
    with pytest.raises(BackendError, match="cannot create the report entry") as e:
        kernel.evidence(REPORT_DATA)
    assert "needs root" in (e.value.hint or "")


def test_an_empty_outblob_is_an_error(tmp_path):
    kernel = FakeTsmKernel(tmp_path / "tsm", produce=lambda data: (b"", b""))
    with pytest.raises(BackendError, match="outblob is empty"):
        kernel.evidence(REPORT_DATA)


def test_report_data_must_be_64_bytes(tmp_path):
    with pytest.raises(ValueError, match="64 bytes"):
        snp_kernel(tmp_path).evidence(b"short")


def test_snp_falls_back_to_sev_guest_when_configfs_is_missing(tmp_path):
    from motte.keep.backends import SevGuestDevice
    from tests.keep.backends.kernels import FakeSevFirmware

    report = sample("trustee", "snp", "test-report.bin")
    device_path = tmp_path / "sev-guest"
    device_path.write_bytes(b"")
    firmware = FakeSevFirmware(report, None)
    backend = SnpBackend(
        tsm=ConfigfsTsm("sev_guest", tmp_path / "no-configfs"),
        sev_guest=SevGuestDevice(device_path, ioctl=firmware),
    )
    availability = backend.available()
    assert availability.ok and availability.via == "/dev/sev-guest"
    assert any("does not exist" in c for c in availability.checks)
    assert backend.evidence(REPORT_DATA).raw == report
