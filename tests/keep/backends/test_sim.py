"""The software keep: consent first, a measurement of motte and wasmtime, refused by default."""

from __future__ import annotations

import hashlib

import pytest

from motte.attest import Policy, verify_evidence
from motte.attest.sim import SimEvidence
from motte.keep.backends import BackendError, SimBackend, measured_files, sim_measurement
from motte.keep.backends._sim import MEASUREMENT_DOMAIN

REPORT_DATA = bytes(range(64))


def test_sim_evidence_needs_the_operators_consent():
    with pytest.raises(BackendError, match="without consent") as e:
        SimBackend().evidence(REPORT_DATA)
    assert "--allow-insecure-sim" in (e.value.hint or "")


def test_sim_evidence_carries_report_data_and_measurement_and_says_insecure():
    evidence = SimBackend(allow_insecure_sim=True).evidence(REPORT_DATA)
    assert evidence.kind == "sim"
    assert evidence.raw.startswith(b"MOTTE-SIM-INSECURE")
    parsed = SimEvidence.from_bytes(evidence.raw)
    assert parsed.report_data == REPORT_DATA
    assert parsed.measurement == sim_measurement()


def test_default_policy_refuses_sim_and_only_allow_insecure_sim_accepts_it():
    evidence = SimBackend(allow_insecure_sim=True).evidence(REPORT_DATA)
    refused = verify_evidence(evidence, report_data=REPORT_DATA)
    assert not refused.accepted
    assert [r.rule for r in refused.failures] == ["kind"]
    accepted = verify_evidence(
        evidence, report_data=REPORT_DATA, policy=Policy(allow_insecure_sim=True)
    )
    assert accepted.accepted, accepted.reason


def test_the_measurement_covers_motte_and_the_wasmtime_library_in_a_documented_order():
    files = measured_files()
    names = [name for name, _ in files]
    assert "keep/_workload.py" in names and "keep/backends/_sim.py" in names
    assert any(n.startswith("wasmtime/") and "_libwasmtime" in n for n in names)
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    motte_names = [n for n in names if not n.startswith("wasmtime/")]
    assert motte_names == sorted(motte_names, key=str.encode)
    # Recompute it from the documented encoding: the function is the spec, not a black box.
    h = hashlib.sha384(MEASUREMENT_DOMAIN)
    for name, path in files:
        content = path.read_bytes()
        h.update(len(name.encode()).to_bytes(4, "big") + name.encode())
        h.update(len(content).to_bytes(8, "big") + content)
    assert h.digest() == sim_measurement()
    assert len(sim_measurement()) == 48
