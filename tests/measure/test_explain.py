"""Which input explains a differing MEASUREMENT, from `motte measure --json` alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from motte.cli import main
from motte.measure import explain_snp, measure_snp
from tests.conftest import shared_testdata
from tests.measure.conftest import data

KERNEL = {
    "kernel": data("synthetic-kernel.bin"),
    "initrd": data("synthetic-initrd.bin"),
    "append": "console=ttyS0 root=/dev/vda1 ro",
}
MILAN = 0xA00F11


def reference(**kw: object) -> dict[str, object]:
    args: dict[str, object] = {"vcpus": 4, "vcpu_sig": MILAN, **KERNEL, **kw}
    return measure_snp(data("ovmf_AmdSev_suffix.bin"), **args).to_dict()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("actual", "says"),
    [
        ({"vcpus": 2}, "2 vCPUs instead of 4"),
        ({"guest_features": 0x21}, "guest features 0x21 instead of 0x1"),
        ({"vcpu_sig": 0x800F12}, "vCPU signature 0x800f12 (EPYC"),
        ({"vmm": "ec2", "vcpu_sig": None}, "VMM type ec2 instead of qemu"),
        ({"initrd": None}, "no initrd"),
        ({"append": None}, "no command line"),
        ({"kernel": None, "initrd": None, "append": None}, "booted without --kernel"),
    ],
)
def test_one_changed_input_is_named(actual: dict[str, object], says: str) -> None:
    doc = reference()
    got = bytes.fromhex(reference(**actual)["measurement"])  # type: ignore[arg-type]
    lines = explain_snp(doc, got)
    assert any(says in line for line in lines), lines
    assert all(
        line.startswith("the report's MEASUREMENT is the reference's inputs with") for line in lines
    )


def test_equal_and_unexplained() -> None:
    doc = reference()
    assert "nothing to explain" in explain_snp(doc, bytes.fromhex(doc["measurement"]))[0]  # type: ignore[arg-type]
    other = reference(append="console=ttyS1")  # different bytes: no single switch explains
    (line,) = explain_snp(doc, bytes.fromhex(other["measurement"]))  # type: ignore[arg-type]
    assert line.startswith("no single change") and "bytes differ" in line


def test_attest_verify_names_both_values_and_reads_measure_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI end to end on a real report: a policy from --policy-out, the mismatch named."""
    report = shared_testdata("attestation", "trustee", "snp", "test-report.bin")
    vcek = shared_testdata("attestation", "trustee", "snp", "test-vcek.der")
    policy, inputs = tmp_path / "policy.toml", tmp_path / "ref.json"
    args = [
        "measure",
        "snp",
        "--ovmf",
        str(data("ovmf_AmdSev_suffix.bin")),
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC-v4",
        "--policy-out",
        str(policy),
        "--json",
    ]
    assert main(args) == 0
    inputs.write_text(capsys.readouterr().out)
    want = json.loads(inputs.read_text())["measurement"]
    verify = [
        "attest",
        "verify",
        str(report),
        "--certs",
        str(vcek),
        "--at",
        "2025-06-01T00:00:00Z",
        "--policy",
        str(policy),
        "--measure-inputs",
        str(inputs),
    ]
    assert main(verify) == 1
    out = capsys.readouterr().out
    assert "reason: measurement: MEASUREMENT: got " in out and f"want {want}" in out
    assert "measure: no single change of vCPU count" in out
    assert main([*verify, "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["measure_explanation"][0].startswith("no single change")
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main([*verify[:-1], str(bad)]) == 2
    assert "not the JSON of `motte measure" in capsys.readouterr().err
