#!/usr/bin/env python3
"""Sealed volumes: what a snapshot costs against copying the same bytes, and a drain.

    python bench/sealed.py [--mib 256] [--rounds 5] [--json]

A sealed volume of ``--mib`` MiB (four files of random bytes, so nothing compresses) is
opened by this process as a Keep would (sim evidence, its key released by a Steward
process, the tree on the tmpfs), then, in interleaved rounds, onto the same disk (this
benchmark's scratch directory):

- ``cp -r + sync``  the baseline: coreutils cp of the volume's directory, then ``sync`` of
  the copied files (fsync each: a snapshot is fsynced too, so both reach the disk);
- ``cp -r``  the same without sync (page cache only), to show what durability costs;
- ``snapshot write``  motte's snapshot (motte.keep._snapshot): the tree scanned, archived,
  sealed in 1 MiB AES-256-GCM chunks, written to a temporary file, fsynced, renamed over
  the last one, the directory fsynced. Goal: throughput >= 0.5x the baseline's, that is a
  time <= 2x;
- ``drain (persist + commit)``  a drain's whole work for the volume after one file changed
  (``Volumes.persist_all("drain")``: the snapshot and the Steward's counter commit),
  printed per MiB.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from _harness import Case, dump, interleave, scratch_dir, table
from secret_release import motte_command, start_steward

MiB = 1 << 20
DIGEST = "sha256:" + "ab" * 32


def timed(fn):  # type: ignore[no-untyped-def]
    def run() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    ns = parser.parse_args()

    tmp = scratch_dir("motte-bench-sealed-")
    home = tmp / "home"
    env = {**os.environ, "MOTTE_HOME": str(home)}
    os.environ["MOTTE_HOME"] = str(home)
    subprocess.run(
        [*motte_command(), "steward", "init", "--allow-insecure-sim"],
        env=env,
        check=True,
        capture_output=True,
    )
    (home / "steward" / "volumes.toml").write_text("allow_insecure_sim = true\n")
    manifest_dir = tmp / "w"
    manifest_dir.mkdir()
    (manifest_dir / "Motte.toml").write_text(
        'workload = "w.wasm"\n[[volume]]\nname = "data"\nguest = "/data"\n'
        f'sealed_to = "digest"\nsize = {ns.mib + 16}\nsnapshot_interval = 0\n'
    )
    from motte.keep._snapshot import write_snapshot
    from motte.keep._volumes import open_volumes
    from motte.keep.backends import SimBackend
    from motte.manifest import parse_manifest

    manifest = parse_manifest(
        (manifest_dir / "Motte.toml").read_text(), base_dir=manifest_dir, name="Motte.toml"
    )
    manifest = manifest.replace(volume=(manifest.volume[0].replace(host=tmp / "host"),))
    steward, url = start_steward(env)
    volumes = None
    try:
        volumes = open_volumes(
            url,
            DIGEST,
            SimBackend(allow_insecure_sim=True),
            manifest,
            repository=None,
        )
        (vol,) = volumes.volumes
        part = ns.mib * MiB // 4
        for i in range(4):
            with open(vol.mem_dir / f"part{i}", "wb") as f:
                for _ in range(part // MiB):
                    f.write(os.urandom(MiB))
        total = sum(p.stat().st_size for p in vol.mem_dir.iterdir())
        disk = tmp / "disk"
        disk.mkdir()
        copies = iter(range(10**6))

        def cp(sync: bool) -> None:
            dest = disk / f"cp{next(copies)}"
            subprocess.run(["cp", "-r", str(vol.mem_dir), str(dest)], check=True)
            if sync:
                subprocess.run(["sync", *map(str, sorted(dest.iterdir()))], check=True)

        def cp_case(name: str, sync: bool) -> Case:
            def run() -> float:
                for old in disk.glob("cp*"):  # untimed: the disk holds one copy at a time
                    subprocess.run(["rm", "-rf", str(old)], check=True)
                start = time.perf_counter()
                cp(sync)
                return time.perf_counter() - start

            return Case(name, run)

        versions = iter(range(1, 10**6))

        def snapshot() -> None:
            write_snapshot(
                vol.mem_dir,
                disk / "snap",
                vol.snapshot_key,
                volume=str(vol.identity),
                sealed_to="digest",
                version=next(versions),
                limit=vol.spec.size_bytes,
            )

        def drain() -> float:
            (vol.mem_dir / "part0").open("r+b").write(os.urandom(16))  # one change (untimed)
            report = volumes.persist_all("drain")
            assert report.ok and len(report.persisted) == 1, report
            return report.seconds

        base = cp_case("cp -r + sync", True)
        cases = [
            base,
            cp_case("cp -r", False),
            Case("snapshot write", timed(snapshot)),
            Case("drain (persist + commit)", drain),
        ]
        interleave(cases, ns.rounds)
    finally:
        if volumes is not None:
            volumes.discard()
        steward.terminate()
        steward.wait(30)

    mib = total / MiB
    rows = table(
        f"a {mib:.0f} MiB sealed volume onto the same disk, {ns.rounds} rounds",
        cases,
        base,
        {
            "cp -r": "page cache only: no fsync",
            "snapshot write": "sealed, fsynced, renamed",
            "drain (persist + commit)": f"{cases[3].median / mib * 1e3:.2f} ms/MiB",
        },
    )
    throughput = base.median / cases[2].median
    unsynced = cases[1].median / cases[2].median
    print()
    met = "met" if throughput >= 0.5 else "MISSED"
    print(f"snapshot write throughput / cp -r + sync: {throughput:.2f}x (target >= 0.5: {met})")
    print(f"snapshot write throughput / cp -r without sync: {unsynced:.2f}x (for comparison)")
    print(
        f"drain with flush: {cases[3].median:.3f} s for {mib:.0f} MiB, "
        f"{cases[3].median / mib * 1e3:.2f} ms/MiB "
        f"({mib / cases[3].median:.0f} MiB/s)"
    )
    if ns.json:
        dump(rows, {"throughput_ratio": throughput, "drain_s_per_mib": cases[3].median / mib})
    return 0


if __name__ == "__main__":
    sys.exit(main())
