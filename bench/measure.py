"""What `motte measure snp` costs against sev-snp-measure on the same inputs, in the same run.

    .venv/bin/python bench/measure.py [--rounds 7] [--mib 50] [--json]

Inputs (written once to a temporary directory, not timed): a 4 MiB OVMF image (random bytes
ending in the 4 KiB AmdSevX64 tail from shared/testdata/measure, so it has SEV metadata and an
SNP_KERNEL_HASHES section), and a kernel and an initrd of ``--mib`` MiB together (random).
The measurement: 4 vCPUs, EPYC-Milan, with kernel, initrd and command line.

Cases, round-robin over ``--rounds`` rounds, wall seconds (medians; spread = IQR / median):

- ``sev-snp-measure (library)``  ``sevsnpmeasure.guest.calc_launch_digest``: the baseline.
- ``motte (library)``            ``motte.measure.measure_snp``. Ratio over the baseline: the
                                 speed goal, within 1.2x.
- ``sev-snp-measure (process)``  its command line, a new Python process per call.
- ``motte measure snp (process)`` motte's command line. Ratio over the process baseline: it
                                 adds motte's CLI start-up (Typer, which imports pydantic),
                                 which every motte command but ``motte run`` pays.

Both tools are asserted to print the same measurement before anything is timed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from _harness import Case, dump, interleave, table, verdict  # noqa: E402

TAIL = REPO.parent / "shared" / "testdata" / "measure" / "ovmf_AmdSev_suffix.bin"
APPEND = "console=ttyS0 root=/dev/vda1 ro"


def timed(fn):  # type: ignore[no-untyped-def]
    def run() -> float:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--mib", type=int, default=50, help="kernel + initrd size in MiB")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    try:
        from sevsnpmeasure import guest
        from sevsnpmeasure.sev_mode import SevMode
        from sevsnpmeasure.vmm_types import VMMType
    except ImportError:
        print("bench/measure.py: pip install -e '.[bench]' (sev-snp-measure)", file=sys.stderr)
        return 2
    from motte.measure import VCPU_SIGNATURES, measure_snp

    if not TAIL.exists():
        print(f"bench/measure.py: {TAIL} absent (shared test data)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        ovmf, kernel, initrd = d / "OVMF.fd", d / "vmlinuz", d / "initrd.img"
        tail = TAIL.read_bytes()
        ovmf.write_bytes(os.urandom((4 << 20) - len(tail)) + tail)
        half = (args.mib << 20) // 2
        kernel.write_bytes(os.urandom(half))
        initrd.write_bytes(os.urandom((args.mib << 20) - half))
        sig = VCPU_SIGNATURES["EPYC-Milan"]

        def theirs_lib() -> str:
            return guest.calc_launch_digest(
                SevMode.SEV_SNP,
                4,
                sig,
                str(ovmf),
                str(kernel),
                str(initrd),
                APPEND,
                0x1,
                vmm_type=VMMType.QEMU,
            ).hex()

        def ours_lib() -> str:
            return measure_snp(
                ovmf, vcpus=4, vcpu_sig=sig, kernel=kernel, initrd=initrd, append=APPEND
            ).measurement.hex()

        common = [
            "--vcpus",
            "4",
            "--vcpu-type",
            "EPYC-Milan",
            "--ovmf",
            str(ovmf),
            "--kernel",
            str(kernel),
            "--initrd",
            str(initrd),
            "--append",
            APPEND,
        ]
        theirs_cmd = [sys.executable, "-m", "sevsnpmeasure.cli", "--mode", "snp", *common]
        ours_cmd = [sys.executable, "-m", "motte", "measure", "snp", *common]

        def theirs_proc() -> str:
            return subprocess.run(theirs_cmd, capture_output=True, text=True, check=True).stdout

        def ours_proc() -> str:
            return subprocess.run(ours_cmd, capture_output=True, text=True, check=True).stdout

        want = theirs_lib()
        assert ours_lib() == want, "motte and sev-snp-measure disagree"
        assert theirs_proc().strip() == want and ours_proc().splitlines()[0] == want

        lib_base = Case("sev-snp-measure (library)", timed(theirs_lib))
        lib = Case("motte (library)", timed(ours_lib), baseline=lib_base.name)
        proc_base = Case("sev-snp-measure (process)", timed(theirs_proc))
        proc = Case("motte measure snp (process)", timed(ours_proc), baseline=proc_base.name)
        interleave([lib_base, lib, proc_base, proc], args.rounds)

    print(f"inputs: 4 MiB OVMF, kernel + initrd {args.mib} MiB, 4 vCPUs EPYC-Milan")
    rows = table("library calls", [lib_base, lib], lib_base, {})
    rows += table(
        "command lines (new process each)",
        [proc_base, proc],
        proc_base,
        {proc.name: "includes motte's CLI start-up"},
    )
    ratio = lib.median / lib_base.median
    print("\n" + verdict("motte / sev-snp-measure, library", ratio, 1.2))
    print(f"motte / sev-snp-measure, process: {proc.median / proc_base.median:.2f} (reported)")
    if args.json:
        dump(rows, {"ratio_library": ratio, "ratio_process": proc.median / proc_base.median})
    return 0


if __name__ == "__main__":
    sys.exit(main())
