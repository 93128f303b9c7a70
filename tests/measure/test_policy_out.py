"""--policy-out: the policy it writes accepts a report with the computed value and refuses
one byte off, through motte's own verification (signed evidence from the attest tests' fake
AMD and Intel PKIs, verified and validated as any report is)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from motte.attest import load_policy, verify_evidence
from motte.cli import main
from motte.measure import MeasureError, explain_mismatch, extend_policy_text, measure_snp
from tests.attest.fakes import AT, der, make_case, pem
from tests.attest.test_intel_fakes import NOW, collateral_doc, default_pki, make_quote, td_report
from tests.measure.conftest import data, debian_ovmf

SUFFIX = ["--ovmf", "", "--vcpus", "2", "--vcpu-type", "EPYC-Milan"]


def snp_args(policy: Path, *extra: str) -> list[str]:
    return [
        "measure",
        "snp",
        "--ovmf",
        str(data("ovmf_AmdSev_suffix.bin")),
        "--kernel",
        str(data("synthetic-kernel.bin")),
        "--initrd",
        str(data("synthetic-initrd.bin")),
        "--append",
        "console=ttyS0 root=/dev/vda1 ro",
        "--policy-out",
        str(policy),
        *extra,
    ]


def verify_snp(measurement: bytes, policy: Path):  # type: ignore[no-untyped-def]
    case = make_case(measurement=measurement)
    return verify_evidence(
        case.report,
        certs=[pem(case.key_cert, case.amd.ask), der(case.amd.ark)],
        amd_roots=case.amd.roots,
        now=AT,
        policy=load_policy(policy),
    )


def one_byte_off(value: bytes) -> bytes:
    return value[:-1] + bytes([value[-1] ^ 0x01])


def test_snp_policy_accepts_the_measurement_and_refuses_one_byte_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.toml"
    assert main([*snp_args(policy), "--vcpus", "1", "--vcpu-type", "EPYC-v4", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    value = bytes.fromhex(doc["measurement"])
    assert doc["measurement"] == (
        "ecb35832699b3f8920f0a2c76c45d5730d06d588e111f58b060ced0a4460bb155f31941c222acbe6e5e11253cb2d3ab3"
    )
    text = policy.read_text()
    assert "sha256:767cbdaaf7e03f36d7c3be931cd42c5d362b030eef5c90c17518d1f604410c90" in text
    assert "append 'console=ttyS0 root=/dev/vda1 ro'" in text and "EPYC-v4" in text
    assert load_policy(policy).allowed_kinds == ("snp",)

    ok = verify_snp(value, policy)
    assert ok.accepted, ok.reason
    assert [r.outcome for r in ok.rules if r.rule == "measurement"] == ["pass"]

    off = one_byte_off(value)
    bad = verify_snp(off, policy)
    assert not bad.accepted
    assert bad.reason == f"measurement: MEASUREMENT: got {off.hex()}, want {value.hex()}"
    # The explanation finds no single input change for an arbitrary value, and says so.
    (line,) = explain_mismatch(doc, bad.to_dict())
    assert line.startswith("no single change")


def test_extending_keeps_the_policy_and_adds_each_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "prod.toml"
    original = (
        "# Production: reviewed by the security team.\n"
        'name = "prod"   # shown in verdicts\n'
        'allowed_kinds = ["snp", "tdx"]\n'
        "\n"
        "[snp]\n"
        "vmpl = 0  # only VMPL0 reports\n"
        'measurements = ["' + "ab" * 48 + '"]  # the old image\n'
        "min_guest_svn = 1\n"
        "\n"
        "[tdx]\n"
        'accepted_tcb_statuses = ["UpToDate"]\n'
    )
    policy.write_text(original)
    before = load_policy(policy)
    for vcpus in ("1", "4"):
        assert main([*snp_args(policy), "--vcpus", vcpus, "--vcpu-type", "EPYC-v4"]) == 0
    out = capsys.readouterr().out
    assert f"policy: pinned in {policy}" in out
    after = load_policy(policy)
    text = policy.read_text()
    for line in original.splitlines():  # every line and comment survives
        if not line.startswith("measurements"):
            assert line in text
    assert "# the old image" in text
    assert after.snp.measurements[0] == bytes.fromhex("ab" * 48)
    assert len(after.snp.measurements) == 3
    assert (after.name, after.snp.vmpl, after.snp.min_guest_svn) == ("prod", 0, 1)
    assert after.tdx == before.tdx and after.allowed_kinds == before.allowed_kinds
    # Idempotent: the same configuration again changes nothing.
    assert main([*snp_args(policy), "--vcpus", "4", "--vcpu-type", "EPYC-v4"]) == 0
    assert "already pins these values" in capsys.readouterr().out
    assert policy.read_text() == text


def test_extending_refuses_what_it_cannot_do_safely(tmp_path: Path) -> None:
    ref = measure_snp(debian_ovmf(), vcpus=1, vcpu_sig=0x800F12)
    with pytest.raises(MeasureError, match="does not include snp"):
        extend_policy_text('allowed_kinds = ["tdx"]\n', ref, source="p.toml")
    with pytest.raises(MeasureError, match=r"cannot extend the policy: p\.toml:1: nmae"):
        extend_policy_text('nmae = "x"\n', ref, source="p.toml")
    with pytest.raises(MeasureError, match="dotted keys or an inline table"):
        extend_policy_text("snp = { vmpl = 0 }\n", ref, source="p.toml")
    # A table appended when absent; a comma added after an element without one.
    text, changed = extend_policy_text('name = "x"\n', ref, source="p.toml")
    assert changed and load_policy_text(text).snp.measurements == (ref.measurement,)
    text, _ = extend_policy_text(
        '[snp]\nmeasurements = [\n  "' + "cd" * 48 + '"  # no comma\n]\n', ref, source="p.toml"
    )
    assert load_policy_text(text).snp.measurements == (bytes.fromhex("cd" * 48), ref.measurement)


def load_policy_text(text: str):  # type: ignore[no-untyped-def]
    from motte.attest import parse_policy

    return parse_policy(text, source="t")


def tdx_verdict(policy: Path, **fields: bytes):  # type: ignore[no-untyped-def]
    quote = make_quote(tee="tdx", body=td_report(**fields))
    return verify_evidence(
        quote.to_bytes(),
        kind="tdx",
        collateral=json.dumps(collateral_doc(tee="tdx")).encode(),
        intel_root=default_pki().root,
        now=NOW,
        policy=load_policy(policy),
    )


def test_tdx_policy_pins_mrtd_rtmr1_rtmr2_and_names_the_stage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], debian_kernel: Path
) -> None:
    policy = tmp_path / "tdx.toml"
    args = [
        "measure",
        "tdx",
        "--tdvf",
        str(debian_ovmf()),
        "--mrtd-order",
        "per-page",
        "--kernel",
        str(debian_kernel),
        "--kernel-header",
        "unmodified",
        "--separator",
        "rtmr1",
        "--linux",
        "6.9+",
        "--initrd",
        str(data("synthetic-initrd.bin")),
        "--append",
        "console=ttyS0 root=/dev/vda1 ro",
        "--initrd-option",
        "prefix",
        "--policy-out",
        str(policy),
        "--json",
    ]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["mr_td"].startswith("4c7206f0") and doc["rtmr1"].startswith("fe068c2a")
    assert doc["rtmr2"].startswith("dc56819d") and doc["rtmr0"] is None
    pins = load_policy(policy).tdx
    assert pins.mr_td == (bytes.fromhex(doc["mr_td"]),) and pins.rtmr0 is None
    values = {k: bytes.fromhex(doc[k]) for k in ("mr_td", "rtmr1", "rtmr2")}

    ok = tdx_verdict(policy, **values)
    assert ok.accepted, ok.reason
    for reg in ("rtmr1", "rtmr2"):
        bad = tdx_verdict(policy, **{**values, reg: one_byte_off(values[reg])})
        assert not bad.accepted
        assert bad.reason.startswith(f"{reg}: {reg.upper()}: got ")
        assert values[reg].hex() in bad.reason
        lines = explain_mismatch(doc, bad.to_dict())
        assert lines == [
            f"RTMR{reg[-1]} differs: the "
            + ("kernel image" if reg == "rtmr1" else "kernel command line or initrd")
            + " differs (no version switch explains it)"
        ]
    # A value from another version switch is named: edk2's suffix initrd= placement.
    suffix = bytes.fromhex(
        "cafc56fbb9dc68994ba88d160b3a7aff1efab1546e6f97f42b953f3181cbd854fd4635673e63ace2106e368feb2c8f46"
    )
    bad = tdx_verdict(policy, **{**values, "rtmr2": suffix})
    assert explain_mismatch(doc, bad.to_dict()) == [
        "RTMR2 equals the reference with: ' initrd=initrd' appended (edk2 before PR 11115)"
    ]
    two_pass = bytes.fromhex(
        "acccbcc870a381adab0d3919d90a7f268ac3b0364771f202ed4bb4e892d045b33db3b32e6924cba830a724eed443f7e1"
    )
    bad = tdx_verdict(policy, **{**values, "mr_td": two_pass})
    assert not bad.accepted
    assert explain_mismatch(doc, bad.to_dict()) == [
        "MRTD equals the reference with: two-pass page order (QEMU 8.x-era TDX stacks)"
    ]
