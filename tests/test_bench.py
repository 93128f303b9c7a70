"""The benchmarks leave nothing behind: each one's scratch space goes when it exits."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_compute_benchmark_removes_its_temporary_directories(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    env.pop("MOTTE_HOME", None)  # the benchmark makes its own, which must go too
    r = subprocess.run(
        [sys.executable, "bench/compute.py", "--mib", "1", "--text-mib", "1", "--rounds", "1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert "motte Keep / native" in r.stdout
    assert sorted(p.name for p in scratch.iterdir()) == []
