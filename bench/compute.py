"""Compute in a Keep against native code, and what CPU-time limiting costs: fuel or epochs.

    .venv/bin/python bench/compute.py [--mib 128] [--text-mib 16] [--rounds 7] [--json]

Two example workloads, each built twice from the same C source with the same compiler (zig
cc -O2 from PyPI's ziglang, as the committed .wasm are; ``cc -O2`` when ziglang is absent,
and the header says so): natively, and for wasm32-wasi (the committed file).

- ``sha256 N MiB``   examples/sha256: SHA-256 over N MiB generated in memory (pure compute).
- ``wc M MiB``       examples/files ``wc`` over an M MiB text file through a preopened
                     directory: a byte loop plus host reads. No target: natively, LLVM
                     vectorizes this loop with SSE (4x; -fno-vectorize makes native about
                     1.4x faster than the Keep instead of 5x), which wasm code does not get.

Cases per workload (interleaved round-robin, median reported with its spread):

- ``native -O2``          the baseline: the native binary as a process (spawn included,
                          about 1 ms).
- ``wasmtime plain``      wasmtime-py, no interruption at all: the engine's floor.
- ``wasmtime fuel``       ``consume_fuel`` with an unreachable budget: the cost of counting.
- ``wasmtime epoch``      ``epoch_interruption`` with a far deadline: the cost of the checks.
- ``motte Keep``          ``PreparedWorkload.run``: epoch deadlines with motte's per-tick
                          CPU/wall-time callback, memory limits, captured stdout; the chosen
                          CPU-time limiting is on. Target: <= 1.3 x native for SHA-256.

Clocks: CPU seconds (the native process's user+sys from rusage; the guest thread's CPU time
for in-process runs), so other work on the shared machine inflates them less than wall
time would; wall-clock medians are printed beside them.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _harness import ROOT, Case, dump, interleave, scratch_dir, table, unit, verdict

TARGET = 1.3


def native_compiler() -> tuple[list[str], str]:
    try:
        import ziglang  # noqa: F401

        return [sys.executable, "-m", "ziglang", "cc", "-O2"], "zig cc -O2 (ziglang)"
    except ImportError:
        cc = shutil.which("cc") or shutil.which("clang") or "cc"
        return [cc, "-O2"], f"{cc} -O2 (ziglang absent: the wasm comes from zig, native does not)"


def build_native(tmp: Path) -> tuple[Path, Path, str]:
    cc, label = native_compiler()
    sha = tmp / "sha256-native"
    files = tmp / "files-native"
    subprocess.run([*cc, "-o", str(sha), str(ROOT / "examples/sha256/sha256.c")], check=True)
    subprocess.run([*cc, "-o", str(files), str(ROOT / "examples/files/files.c")], check=True)
    return sha, files, label


def native_case(cmd: list[str], wall: dict) -> callable:
    def run() -> float:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
        wall.setdefault("native", []).append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    return run


def raw_runner(mode: str, wasm: Path, argv: list[str], preopen: Path | None):
    """A wasmtime-py runner with only the interruption mode under test."""
    import wasmtime

    cfg = wasmtime.Config()
    if mode == "fuel":
        cfg.consume_fuel = True
    elif mode == "epoch":
        cfg.epoch_interruption = True
    engine = wasmtime.Engine(cfg)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    pre = linker.instantiate_pre(wasmtime.Module.from_file(engine, wasm))
    sink = os.memfd_create("bench-out")

    def run() -> float:
        store = wasmtime.Store(engine)
        wasi = wasmtime.WasiConfig()
        wasi.argv = argv
        wasi.stdout_file = f"/proc/self/fd/{sink}"
        if preopen is not None:
            wasi.preopen_dir(str(preopen), "/data", False)
        store.set_wasi(wasi)
        if mode == "fuel":
            store.set_fuel(2**63 - 1)
        elif mode == "epoch":
            store.set_epoch_deadline(1 << 40)
        start = time.thread_time()
        try:
            pre.instantiate(store).exports(store)["_start"](store)
        except wasmtime.ExitTrap as e:
            assert e.code == 0
        return time.thread_time() - start

    return run


def keep_runner(manifest, args: tuple[str, ...], check):
    from motte.keep import PreparedWorkload

    workload = PreparedWorkload.prepare(manifest)

    def run() -> float:
        r = workload.run(args=args, stdin="null", stdout="capture")
        assert r.exit_code == 0, r.trap
        check(r.stdout)
        return r.cpu_time

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=128, help="SHA-256 input size")
    parser.add_argument("--text-mib", type=int, default=16, help="wc input size")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    ns = parser.parse_args()

    os.environ.setdefault("MOTTE_HOME", str(scratch_dir("motte-bench-home-")))
    from motte.manifest import load_manifest

    tmp = scratch_dir("motte-bench-compute-")
    sha_native, files_native, compiler = build_native(tmp)
    print(f"native build: {compiler}; wasm: the committed examples (zig cc, wasm32-wasi)")

    block = bytes(((i * 2654435761) % 2**32) >> 24 for i in range(1 << 20))
    digest = hashlib.sha256(block * ns.mib).hexdigest()
    text = tmp / "data"
    text.mkdir()
    line = b"the keep stands on its motte, walled and dry\n"
    (text / "big.txt").write_bytes(line * (ns.text_mib * 2**20 // len(line)))

    def sha_ok(out: bytes) -> None:
        assert out.split()[0].decode() == digest

    def wc_ok(out: bytes) -> None:
        assert out.split()[-1] == b"/data/big.txt"

    rows: list[dict] = []
    ratios = {}
    sha_wasm = ROOT / "examples/sha256/sha256.wasm"
    files_wasm = ROOT / "examples/files/files.wasm"
    sha_manifest = load_manifest(ROOT / "examples/sha256/Motte.toml").with_overrides(
        cpu_time=600, wall_time=600
    )
    from motte.manifest import Dir

    wc_manifest = load_manifest(ROOT / "examples/files/Motte.toml")
    wc_manifest = type(wc_manifest)(
        workload=wc_manifest.workload, limits=wc_manifest.limits
    ).with_overrides(dirs=(Dir(text, "/data"),), cpu_time=600, wall_time=600)

    workloads = [
        (
            f"sha256 {ns.mib} MiB",
            [str(sha_native), str(ns.mib)],
            sha_wasm,
            ["sha256.wasm", str(ns.mib)],
            None,
            sha_manifest,
            (str(ns.mib),),
            sha_ok,
        ),
        (
            f"wc {ns.text_mib} MiB",
            [str(files_native), "wc", str(text / "big.txt")],
            files_wasm,
            ["files.wasm", "wc", "/data/big.txt"],
            text,
            wc_manifest,
            ("wc", "/data/big.txt"),
            wc_ok,
        ),
    ]
    for title, native_cmd, wasm, argv, preopen, manifest, args, check in workloads:
        if preopen is not None:
            native_cmd = [native_cmd[0], "wc", str(preopen / "big.txt")]
        wall: dict = {}
        cases = [
            Case("native -O2", native_case(native_cmd, wall)),
            Case("wasmtime plain", raw_runner("plain", wasm, argv, preopen)),
            Case("wasmtime fuel", raw_runner("fuel", wasm, argv, preopen)),
            Case("wasmtime epoch", raw_runner("epoch", wasm, argv, preopen)),
            Case("motte Keep", keep_runner(manifest, args, check)),
        ]
        interleave(cases, ns.rounds)
        plain = cases[1].median
        notes = {
            "wasmtime fuel": f"({cases[2].median / plain:.2f} x plain)",
            "wasmtime epoch": f"({cases[3].median / plain:.2f} x plain)",
        }
        if title.startswith("sha256"):
            notes["motte Keep"] = f"(target <= {TARGET})"
        rows += table(f"{title}: CPU seconds, {ns.rounds} rounds", cases, cases[0], notes)
        native_wall = sorted(wall["native"])[len(wall["native"]) // 2]
        print(f"  (native wall-clock median {unit(native_wall)})")
        ratios[title] = cases[4].median / cases[0].median
        ratios[f"{title} fuel/plain"] = cases[2].median / plain
        ratios[f"{title} epoch/plain"] = cases[3].median / plain
    print()
    sha = workloads[0][0]
    print(verdict(f"motte Keep / native, {sha}", ratios[sha], TARGET))
    for title, *_ in workloads:
        print(
            f"CPU-time limiting, {title}: fuel {ratios[f'{title} fuel/plain']:.2f} x plain, "
            f"epoch {ratios[f'{title} epoch/plain']:.2f} x plain"
        )
    if ns.json:
        dump(rows, {"ratios": ratios, "native_compiler": compiler})
    return 0


if __name__ == "__main__":
    sys.exit(main())
