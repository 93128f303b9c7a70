"""Workload directories for tests: a Motte.toml and a module of a chosen size."""

from __future__ import annotations

import random
from pathlib import Path

WASM_HEADER = b"\0asm\x01\x00\x00\x00"


def make_workload(
    directory: Path, *, size: int = 4096, seed: int = 1, name: str = "hello.wasm"
) -> Path:
    """``directory`` with Motte.toml naming ``name``, a module of ``size`` bytes (seeded)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "Motte.toml").write_text(f'workload = "{name}"\n')
    body = random.Random(seed).randbytes(max(0, size - len(WASM_HEADER)))
    (directory / name).write_bytes(WASM_HEADER + body)
    return directory
