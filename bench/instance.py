"""In-process instance start: a fresh instance from a prepared (pre-instantiated) workload.

    .venv/bin/python bench/instance.py [--rounds 31] [--batch 200] [--json]

What is timed (wall clock, ``time.perf_counter``, per call; each sample is the mean of a
batch of calls, cases interleaved round-robin, the median sample reported with its spread):

- ``wasmtime InstancePre``   the baseline: wasmtime-py's public API on the same engine and
                             module, as feasibility §1.6 measured it: new Store, empty
                             WasiConfig, ``InstancePre.instantiate``, ``exports["_start"]()``.
- ``motte run, no-op``       ``PreparedWorkload.run(stdin/stdout/stderr="null")`` on a module
                             whose _start returns at once: a new Store with the manifest's
                             memory limits, argv and env, the epoch watch (CPU and wall time),
                             instantiation, the call, the result.
- ``motte run, no-op, pooled``  the same through ``PreparedWorkload.for_many_instances()``:
                             wasmtime's pooling allocator, what a process that starts many
                             instances uses (a serving Keep: one instance per request).
                             Target: <= 100 µs median. (A ``motte run`` process starts one
                             instance, where the row above is the path and start-up is
                             bench/startup.py's business.)
- ``motte run, hello``       examples/hello with stdout captured (a memfd, read back): what a
                             request handler that prints a few lines costs.
- ``motte run, component``   examples/hello-component the same way (WASI 0.2; no InstancePre
                             in the Python bindings, so it links per instance).
"""

from __future__ import annotations

import argparse
import sys
import time

from _harness import ROOT, Case, dump, interleave, scratch_dir, table

NOOP = '(module (memory (export "memory") 1) (func (export "_start")))'
TARGET_US = 100.0


def batch_timer(fn, batch: int):
    def run() -> float:
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        return (time.perf_counter() - start) / batch

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    ns = parser.parse_args()

    import os

    import wasmtime

    os.environ.setdefault("MOTTE_HOME", str(scratch_dir("motte-bench-home-")))
    from motte.keep import PreparedWorkload
    from motte.manifest import load_manifest, manifest_for_module

    tmp = scratch_dir("motte-bench-instance-")
    noop_path = tmp / "noop.wasm"
    noop_path.write_bytes(wasmtime.wat2wasm(NOOP))
    noop = PreparedWorkload.prepare(manifest_for_module(noop_path))
    pooled = noop.for_many_instances()
    hello = PreparedWorkload.prepare(load_manifest(ROOT / "examples/hello/Motte.toml"))
    comp = PreparedWorkload.prepare(load_manifest(ROOT / "examples/hello-component/Motte.toml"))

    engine = noop._rt.engine
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    pre = linker.instantiate_pre(wasmtime.Module.from_file(engine, noop_path))

    def raw() -> None:
        store = wasmtime.Store(engine)
        store.set_wasi(wasmtime.WasiConfig())
        store.set_epoch_deadline(1 << 40)
        pre.instantiate(store).exports(store)["_start"](store)

    def motte_noop() -> None:
        r = noop.run(stdin="null", stdout="null", stderr="null")
        assert r.exit_code == 0

    def motte_pooled() -> None:
        r = pooled.run(stdin="null", stdout="null", stderr="null")
        assert r.exit_code == 0

    def motte_hello() -> None:
        r = hello.run(stdin="null", stdout="capture", stderr="null")
        assert r.stdout.startswith(b"Hello, world!")

    def motte_component() -> None:
        r = comp.run(stdin="null", stdout="capture", stderr="null")
        assert r.stdout.startswith(b"Hello, component model!")

    cases = [
        Case("wasmtime InstancePre", batch_timer(raw, ns.batch)),
        Case("motte run, no-op", batch_timer(motte_noop, ns.batch)),
        Case("motte run, no-op, pooled", batch_timer(motte_pooled, ns.batch)),
        Case("motte run, hello", batch_timer(motte_hello, ns.batch)),
        Case("motte run, component", batch_timer(motte_component, max(ns.batch // 4, 1))),
    ]
    interleave(cases, ns.rounds)
    rows = table(
        f"instance start, {ns.rounds} rounds x {ns.batch} calls (wall clock per call)",
        cases,
        cases[0],
        {"motte run, no-op, pooled": f"(target <= {TARGET_US:g} µs)"},
    )
    noop_us = cases[1].median * 1e6
    pooled_us = cases[2].median * 1e6
    met = "met" if pooled_us <= TARGET_US else "MISSED"
    print(
        f"\nmotte instance start, pooled: {pooled_us:.1f} µs median "
        f"(target <= {TARGET_US:g} µs: {met}); without the pool: {noop_us:.1f} µs"
    )
    for case in cases[1:3]:
        ratio = case.median / cases[0].median
        print(f"{case.name} / wasmtime InstancePre: {ratio:.2f} (same engine, same module)")
    if ns.json:
        dump(
            rows,
            {"instance_start_us": pooled_us, "unpooled_us": noop_us, "target_us": TARGET_US},
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
