"""``motte attest show|verify``: exit statuses, human and JSON output, errors without tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from motte.attest.sim import sign_sim_evidence
from tests.conftest import shared_testdata

AT = "2025-06-01T00:00:00Z"


def path(*parts: str) -> Path:
    return shared_testdata("attestation", *parts)


REPORT = ("trustee", "snp", "test-report.bin")
VCEK = ("trustee", "snp", "test-vcek.der")


def test_verify_accepted(cli) -> None:
    r = cli("attest", "verify", path(*REPORT), "--certs", path(*VCEK), "--at", AT)
    assert r.exit_code == 0, r.stdout + r.stderr
    assert r.stdout.startswith("ACCEPTED  snp evidence (snp-report)")
    assert "report-signature" in r.stdout and "chip-id" in r.stdout
    assert "policy: default (built-in default policy)" in r.stdout


def test_verify_rejected_exits_1_with_reason(cli) -> None:
    r = cli(
        "attest",
        "verify",
        path(*REPORT),
        "--certs",
        path("virtee-sev", "vcek_milan.der"),
        "--at",
        AT,
    )
    assert r.exit_code == 1
    assert r.stdout.startswith("REJECTED")
    assert "reason: report-signature:" in r.stdout


def test_verify_json(cli) -> None:
    r = cli(
        "attest", "verify", path(*REPORT), "--certs", path(*VCEK), "--at", "2025-06-01", "--json"
    )
    assert r.exit_code == 0
    d = json.loads(r.stdout)
    assert d["accepted"] is True and d["kind"] == "snp"
    assert d["verified_at"] == "2025-06-01T00:00:00+00:00"
    assert d["measurement"] == d["claims"]["measurement"]


def test_verify_policy_and_report_data(cli, tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text('name = "mine"\n[snp]\nvmpl = 0\nmin_tcb = { snp = 9 }\n')
    r = cli(
        "attest", "verify", path(*REPORT), "--certs", path(*VCEK), "--at", AT,
        "--policy", policy, "--report-data", "00" * 64, "--json",
    )  # fmt: skip
    assert r.exit_code == 1
    d = json.loads(r.stdout)
    assert d["policy"]["name"] == "mine" and d["policy"]["source"] == str(policy)
    assert {x["rule"] for x in d["rules"] if x["outcome"] == "fail"} == {"min-tcb", "report-data"}


def test_malformed_evidence_exits_1_without_traceback(cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x02\x00\x00\x00" + bytes(20))
    r = cli("attest", "verify", bad)
    assert r.exit_code == 1
    assert "reason: parse: SNP report: length" in r.stdout
    assert "Traceback" not in r.stdout + r.stderr
    r = cli("attest", "show", bad)
    assert r.exit_code == 1
    assert r.stderr.startswith("motte: error: SNP report: length at offset 0x18: 24 bytes")
    assert len(r.stderr.strip().splitlines()) == 1


def test_broken_policy_names_key_and_line(cli, tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text("[snp]\n\nmeasurement = []\n")
    r = cli("attest", "verify", path(*REPORT), "--policy", policy)
    assert r.exit_code == 2  # the caller's input, not a rejected TEE
    assert "Traceback" not in r.stderr
    assert f"motte: error: {policy}:3: snp.measurement: unknown key" in r.stderr
    assert "hint: keys in [snp]: measurements" in r.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("--at", "yesterday"),
        ("--report-data", "xyz"),
        ("--report-data", "00" * 65),
        ("--kind", "kvm"),
        ("--certs", "/nonexistent"),
        ("--bogus",),
    ],
)
def test_usage_errors_exit_2(cli, args: tuple[str, ...]) -> None:
    r = cli("attest", "verify", path(*REPORT), *args)
    assert r.exit_code == 2, r.stdout + r.stderr


def test_missing_evidence_is_a_usage_error(cli, tmp_path: Path) -> None:
    assert cli("attest", "verify", tmp_path / "none.bin").exit_code == 2
    assert cli("attest", "verify").exit_code == 2


def test_show_human_and_json(cli) -> None:
    r = cli("attest", "show", path("enarx-steward", "milan.signed.crl.csr"))
    assert r.exit_code == 0
    assert "UNVERIFIED" in r.stdout
    assert "url: https://kdsintf.amd.com/vcek/v1/Milan/crl" in r.stdout
    r = cli("attest", "show", path("virtee-sev", "report_milan.hex"), "--json")
    d = json.loads(r.stdout)
    assert d["kind"] == "snp" and d["verified"] is False
    assert d["snp"]["reported_tcb"] == "0x7308000000000003"


def test_show_intel_quote(cli) -> None:
    r = cli("attest", "show", path("dcap-qvl", "tdx_quote"), "--json")
    assert r.exit_code == 0
    assert json.loads(r.stdout)["tee"] == "tdx"


def test_intel_verify_with_collateral(cli) -> None:
    r = cli(
        "attest", "verify", path("dcap-qvl", "tdx_quote"),
        "--collateral", path("dcap-qvl", "tdx_quote_collateral.json"), "--at", "2025-07-01",
    )  # fmt: skip
    assert r.exit_code == 0, r.stdout
    assert "tcb-status" in r.stdout


def test_sim_refused_then_accepted_by_policy(cli, tmp_path: Path) -> None:
    ev = tmp_path / "sim.bin"
    ev.write_bytes(sign_sim_evidence(bytes(64), bytes(48), Ed25519PrivateKey.generate()))
    r = cli("attest", "verify", ev)
    assert r.exit_code == 1
    assert "INSECURE" in r.stdout
    policy = tmp_path / "dev.toml"
    policy.write_text("allow_insecure_sim = true\n")
    r = cli("attest", "verify", ev, "--policy", policy)
    assert r.exit_code == 0
    assert "INSECURE: a software keep" in r.stdout
    r = cli("attest", "show", ev)
    assert "INSECURE: sim evidence comes from a software keep" in r.stdout


def test_tsm_directory(cli, tmp_path: Path) -> None:
    d = tmp_path / "report0"
    d.mkdir()
    (d / "provider").write_text("sev_guest\n")
    (d / "outblob").write_bytes(path(*REPORT).read_bytes())
    r = cli("attest", "verify", d, "--certs", path(*VCEK), "--at", AT, "--json")
    assert r.exit_code == 0, r.stdout
    assert json.loads(r.stdout)["format"] == "tsm"


def test_help_teaches(cli) -> None:
    r = cli("attest", "verify", "--help")
    assert r.exit_code == 0
    for word in (
        "--certs",
        "--collateral",
        "--policy",
        "--at",
        "--report-data",
        "--online",
        "--json",
    ):
        assert word in r.stdout
    assert "docs/attestation.md" in cli("attest", "--help").stdout


def test_evidence_from_stdin(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    class Stdin:
        buffer = io.BytesIO(path(*REPORT).read_bytes())

    monkeypatch.setattr(sys, "stdin", Stdin())
    r = cli("attest", "verify", "-", "--certs", path(*VCEK), "--at", AT)
    assert r.exit_code == 0, r.stdout


def test_a_file_that_is_no_certificate_is_named_once(cli) -> None:
    r = cli(
        "attest",
        "verify",
        path(*REPORT),
        "--certs",
        path("dcap-qvl", "tdx_quote_collateral.json"),
        "--at",
        AT,
    )
    assert r.exit_code == 1
    assert "collateral           certificate file 1: contents: neither PEM" in r.stdout
    assert "certificate file 1: certificate file 1" not in r.stdout


def test_lone_tcb_info_says_what_a_cli_user_can_do(cli) -> None:
    r = cli(
        "attest",
        "verify",
        path("trustee", "tdx_quote_6.dat"),
        "--collateral",
        path("trustee", "tcbInfo.json"),
    )
    assert r.exit_code == 1
    assert "collateral: collateral:" not in r.stdout  # the rule's name is not repeated
    assert "lone PCS TCB info" in r.stdout and "--online" in r.stdout


@pytest.mark.parametrize(
    ("kind", "text"),
    [(("--kind", "tsm"), "[" * 100_000), ((), '{"outblob": ' + "[" * 100_000)],
)
def test_deeply_nested_json_is_a_parse_error(cli, tmp_path: Path, kind, text: str) -> None:
    """Deeper than json's stack: a malformed capture (exit 1), not an internal error (70)."""
    deep = tmp_path / "deep.json"
    deep.write_text(text)
    r = cli("attest", "verify", deep, *kind)
    assert r.exit_code == 1, r.stdout + r.stderr
    assert "parse: configfs-tsm capture: JSON: nested too deeply" in r.stdout
    r = cli("attest", "show", deep, *kind)
    assert r.exit_code == 1
    assert "motte: error: configfs-tsm capture: JSON: nested too deeply" in r.stderr
    assert "internal error" not in r.stderr


@pytest.mark.parametrize("json_flag", [(), ("--json",)])
def test_a_reader_that_leaves_early_does_not_change_the_status(json_flag) -> None:
    """``motte attest verify ... | true``: the pipe is closed before motte writes a byte;
    the exit status is still the verdict's (0 accepted, 1 rejected) and nothing is said."""
    import os
    import subprocess
    import sys

    for vcek, status in ((VCEK, 0), (("virtee-sev", "vcek_milan.der"), 1)):
        argv = [sys.executable, "-m", "motte", "attest", "verify", str(path(*REPORT))]
        argv += ["--certs", str(path(*vcek)), "--at", AT, *json_flag]
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader is gone before the first write
        try:
            p = subprocess.run(argv, stdout=write_end, stderr=subprocess.PIPE, timeout=120)
        finally:
            os.close(write_end)
        assert (p.returncode, p.stderr) == (status, b"")
