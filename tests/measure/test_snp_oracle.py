"""motte's SNP implementation against sev-snp-measure 0.0.13, run in the same test.

sev-snp-measure is the field's calculator; motte reimplements it (docs/measure.md says why)
and must agree byte for byte: on Debian's real OVMF build, on the AmdSev fixture with kernels,
initrds and command lines, and on the VMSA pages themselves.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest

sevsnpmeasure = pytest.importorskip("sevsnpmeasure", reason="pip install -e '.[test]'")
from sevsnpmeasure import guest, vmsa  # noqa: E402
from sevsnpmeasure.sev_mode import SevMode  # noqa: E402
from sevsnpmeasure.vmm_types import VMMType  # noqa: E402

from motte.cli import main  # noqa: E402
from motte.measure import (  # noqa: E402
    VCPU_SIGNATURES,
    MeasureError,
    measure_snp,
    vmsa_page,
)
from tests.measure.conftest import data, debian_ovmf  # noqa: E402

VMM = {"qemu": VMMType.QEMU, "ec2": VMMType.ec2, "gce": VMMType.gce}
TYPES = ("EPYC-v4", "EPYC-Rome", "EPYC-Milan", "EPYC-Genoa", "EPYC-Turin")


def oracle(
    ovmf: Path,
    *,
    vcpus: int,
    vcpu_type: str | None,
    vmm: str = "qemu",
    features: int = 0x1,
    kernel: Path | None = None,
    initrd: Path | None = None,
    append: str | None = None,
) -> str:
    sig = VCPU_SIGNATURES[vcpu_type] if vcpu_type else 0
    return guest.calc_launch_digest(
        SevMode.SEV_SNP,
        vcpus,
        sig,
        str(ovmf),
        str(kernel) if kernel else None,
        str(initrd) if initrd else None,
        append,
        features,
        vmm_type=VMM[vmm],
    ).hex()


def ours(
    ovmf: Path,
    *,
    vcpus: int,
    vcpu_type: str | None,
    vmm: str = "qemu",
    features: int = 1,
    kernel: Path | None = None,
    initrd: Path | None = None,
    append: str | None = None,
) -> str:
    sig = VCPU_SIGNATURES[vcpu_type] if vcpu_type else None
    return measure_snp(
        ovmf,
        vcpus=vcpus,
        vcpu_sig=sig,
        vcpu_type=vcpu_type,
        vmm=vmm,
        guest_features=features,
        kernel=kernel,
        initrd=initrd,
        append=append,
    ).measurement.hex()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "motte", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "MOTTE_DEBUG": ""},
    )


def test_debian_ovmf_two_option_sets_agree_with_sev_snp_measure_cli() -> None:
    """The issue's check: Debian's OVMF.fd, two option sets, both tools' command lines."""
    ovmf = debian_ovmf()
    for options in (
        ["--vcpus", "1", "--vcpu-type", "EPYC-v4"],
        ["--vcpus", "4", "--vcpu-type", "EPYC-Milan", "--guest-features", "0x21"],
    ):
        theirs = subprocess.run(
            [
                sys.executable,
                "-m",
                "sevsnpmeasure.cli",
                "--mode",
                "snp",
                "--ovmf",
                str(ovmf),
                *options,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        got = run_cli("measure", "snp", "--ovmf", str(ovmf), *options)
        assert got.returncode == 0, got.stderr
        assert got.stdout.splitlines()[0] == theirs


def test_debian_ovmf_grid_agrees_with_sev_snp_measure() -> None:
    ovmf = debian_ovmf()
    checked = 0
    for vcpus, vcpu_type, features in itertools.product((1, 2, 7, 16), TYPES, (0x1, 0x21)):
        kw = {"vcpus": vcpus, "vcpu_type": vcpu_type, "features": features}
        assert ours(ovmf, **kw) == oracle(ovmf, **kw), kw
        checked += 1
    for vcpus, vmm in itertools.product((1, 3, 8), ("ec2", "gce")):
        kw = {"vcpus": vcpus, "vcpu_type": None, "vmm": vmm}
        assert ours(ovmf, **kw) == oracle(ovmf, **kw), kw
        checked += 1
    assert checked == 46


def test_debian_ovmf_with_kernel_is_refused_like_sev_snp_measure(tmp_path: Path) -> None:
    """Debian's build has SEV metadata but no SNP_KERNEL_HASHES section: QEMU could not
    measure a kernel with it, so motte refuses rather than print a value that omits it."""
    ovmf = debian_ovmf()
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"kernel")
    with pytest.raises(RuntimeError, match="doesn't include SNP_KERNEL_HASHES"):
        oracle(ovmf, vcpus=1, vcpu_type="EPYC-v4", kernel=kernel)
    with pytest.raises(MeasureError, match="no SNP_KERNEL_HASHES section") as e:
        ours(ovmf, vcpus=1, vcpu_type="EPYC-v4", kernel=kernel)
    assert "kernel would run unmeasured" in e.value.message
    got = run_cli(
        "measure",
        "snp",
        "--ovmf",
        str(ovmf),
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC-v4",
        "--kernel",
        str(kernel),
    )
    assert got.returncode == 2 and got.stdout == ""
    first = got.stderr.splitlines()[0]
    assert first.startswith("motte: error: ") and "no SNP_KERNEL_HASHES section" in first
    assert "Traceback" not in got.stderr


def test_measured_direct_boot_grid_agrees_with_sev_snp_measure(tmp_path: Path) -> None:
    ovmf = data("ovmf_AmdSev_suffix.bin")
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(os.urandom(3 * 4096 + 17))
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(os.urandom(5000))
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    for initrd_file, append, vcpus, vcpu_type, vmm, features in itertools.product(
        (None, initrd, empty),
        (None, "", "console=ttyS0 root=/dev/vda1 ro quiet", "ünïcode=✓"),
        (1, 4),
        ("EPYC-v4", "EPYC-Genoa"),
        ("qemu", "ec2", "gce"),
        (0x1, 0x21),
    ):
        kw = {
            "vcpus": vcpus,
            "vcpu_type": vcpu_type,
            "vmm": vmm,
            "features": features,
            "kernel": kernel,
            "initrd": initrd_file,
            "append": append,
        }
        assert ours(ovmf, **kw) == oracle(ovmf, **kw), kw


@pytest.mark.parametrize("vmm", ["qemu", "ec2", "gce"])
@pytest.mark.parametrize("eip", [0xFFFF_FFF0, 0x80B004])
def test_vmsa_pages_equal_sev_snp_measure_s(vmm: str, eip: int) -> None:
    sig = VCPU_SIGNATURES["EPYC-Milan"]
    theirs = bytes(vmsa.VMSA.build_save_area(eip, 0x21, sig, VMM[vmm]))
    assert vmsa_page(eip, 0x21, sig, vmm) == theirs


def test_motte_cli_json_agrees_and_names_every_input(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    ovmf = data("ovmf_AmdSev_suffix.bin")
    args = ["--vcpus", "2", "--vcpu-type", "EPYC-Milan", "--guest-features", "0x21"]
    kernel, initrd = data("synthetic-kernel.bin"), data("synthetic-initrd.bin")
    rc = main(
        [
            "measure",
            "snp",
            "--ovmf",
            str(ovmf),
            "--kernel",
            str(kernel),
            "--initrd",
            str(initrd),
            "--append",
            "console=ttyS0 root=/dev/vda1 ro",
            *args,
            "--json",
        ]
    )
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["measurement"] == oracle(
        ovmf,
        vcpus=2,
        vcpu_type="EPYC-Milan",
        features=0x21,
        kernel=kernel,
        initrd=initrd,
        append="console=ttyS0 root=/dev/vda1 ro",
    )
    inputs = doc["inputs"]
    assert inputs["firmware"]["sha256"] == (
        "8f765dfabc127fc0a938a0744a3103ec15864d7d794eb4c398aa976b6d6ab16c"
    )
    assert inputs["kernel"]["sha256"] == (
        "767cbdaaf7e03f36d7c3be931cd42c5d362b030eef5c90c17518d1f604410c90"
    )
    assert inputs["initrd"]["sha256"] == (
        "7ef9c3a4cfc14264c1f976ef2188119822d293ec5400a34cea4409a0b48d3834"
    )
    assert (inputs["vcpus"], inputs["vcpu_sig"], inputs["guest_features"]) == (
        2,
        "0xa00f11",
        "0x21",
    )
    assert doc["digests"]["firmware_pages"] == (
        "086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74"
    )
