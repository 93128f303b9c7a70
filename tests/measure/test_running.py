"""What `motte platform info` prints on a TEE: running values beside the measure inputs."""

from __future__ import annotations

from pathlib import Path

from motte.attest import parse_evidence
from motte.measure import guest_facts, running_lines
from tests.attest.fakes import make_case
from tests.attest.test_intel_fakes import make_quote, td_report


def fake_proc(tmp_path: Path) -> Path:
    cpu = "processor\t: {}\ncpu family\t: 25\nmodel\t\t: 1\nstepping\t: 1\n\n"
    (tmp_path / "cpuinfo").write_text("".join(cpu.format(i) for i in range(4)))
    (tmp_path / "cmdline").write_text("console=ttyS0 root=/dev/vda1 ro\n")
    (tmp_path / "meminfo").write_text("MemTotal:        4005560 kB\nMemFree: 1 kB\n")
    return tmp_path


def test_guest_facts_read_proc(tmp_path: Path) -> None:
    facts = guest_facts(fake_proc(tmp_path))
    assert facts["vcpus"] == 4 and facts["vcpu_sig"] == 0xA00F11  # EPYC-Milan
    assert facts["cmdline"] == "console=ttyS0 root=/dev/vda1 ro"
    assert facts["memory_kib"] == 4005560
    empty = guest_facts(tmp_path / "absent")
    assert (empty["vcpus"], empty["vcpu_sig"], empty["cmdline"]) == (None, None, None)


def test_snp_running_lines(tmp_path: Path) -> None:
    parsed = parse_evidence(make_case(measurement=b"\x5a" * 48).report, "snp")
    lines = running_lines(parsed, guest_facts(fake_proc(tmp_path)))
    assert lines[0] == "running MEASUREMENT " + "5a" * 48
    assert "4 vCPUs, CPUID signature 0xa00f11 (EPYC-Milan" in lines[1]
    assert "motte measure snp --ovmf OVMF.fd --vcpus 4 --vcpu-sig 0xa00f11" in lines[2]
    assert "--append 'console=ttyS0 root=/dev/vda1 ro'" in lines[2]
    assert "not visible in the guest" in lines[3]


def test_tdx_running_lines(tmp_path: Path) -> None:
    quote = make_quote(tee="tdx", body=td_report(mr_td=b"\x01" * 48, rtmr2=b"\x22" * 48))
    parsed = parse_evidence(quote.to_bytes(), "tdx")
    facts = {**guest_facts(fake_proc(tmp_path)), "release": "6.12.0-cloud"}
    lines = running_lines(parsed, facts)
    assert lines[0] == "running MRTD  " + "01" * 48
    assert lines[3] == "running RTMR2 " + "22" * 48
    assert "--linux 6.9+" in lines[6] and "motte measure tdx --tdvf OVMF.fd" in lines[6]
    assert "--linux pre-6.9" in running_lines(parsed, {**facts, "release": "6.1.0-57"})[6]
