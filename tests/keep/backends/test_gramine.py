"""Gramine's /dev/attestation: write user_report_data, read the quote."""

from __future__ import annotations

import pytest

from motte.keep.backends import BackendError, GramineAttestation, SgxBackend
from tests.keep.backends.kernels import gramine_tree, sample

REPORT_DATA = b"\x5a" * 64


def test_the_quote_answers_the_report_data_written(tmp_path):
    quote = sample("dcap-qvl", "sgx_quote")
    root = gramine_tree(tmp_path / "attestation", quote=quote)
    backend = SgxBackend(gramine=GramineAttestation(root))
    assert backend.available().ok
    evidence = backend.evidence(REPORT_DATA)
    assert (evidence.kind, evidence.raw) == ("sgx", quote)
    assert (root / "user_report_data").read_bytes() == REPORT_DATA


@pytest.mark.parametrize(
    ("kind", "reason"),
    [("epid", "DCAP quotes only"), ("none", "attestation_type is 'none'")],
)
def test_attestation_other_than_dcap_is_unavailable(tmp_path, kind, reason):
    root = gramine_tree(tmp_path / "attestation", kind=kind)
    backend = SgxBackend(gramine=GramineAttestation(root))
    availability = backend.available()
    assert not availability.ok and reason in availability.checks[0]
    with pytest.raises(BackendError, match="sgx backend: unavailable"):
        backend.evidence(REPORT_DATA)


def test_outside_an_enclave_there_is_no_tree(tmp_path):
    availability = GramineAttestation(tmp_path / "none").probe()
    assert not availability.ok and "not running in a Gramine SGX enclave" in availability.checks[0]


def test_an_empty_quote_is_an_error(tmp_path):
    root = gramine_tree(tmp_path / "attestation", quote=b"")
    with pytest.raises(BackendError, match="0 bytes"):
        GramineAttestation(root).evidence(REPORT_DATA)
