"""Fixtures for the Keep tests: WAT guests compiled to files, the example workloads, and a
``motte`` runner that captures at the file-descriptor level (guests write to fd 1 and 2
directly, below Python's sys.stdout)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, CliResult
from tests.keep import guests

EXAMPLES = REPO / "examples"


@pytest.fixture
def guest(tmp_path: Path) -> Callable[[str, str], Path]:
    """``guest("spin", guests.SPIN)`` -> path of the compiled module."""

    def make(name: str, wat: str) -> Path:
        return guests.compile_to(tmp_path / f"{name}.wasm", wat)

    return make


@pytest.fixture
def motte(capfd: pytest.CaptureFixture[str]) -> Iterator[Callable[..., CliResult]]:
    """Run ``motte`` in-process; stdout/stderr include what the guest wrote."""
    from motte.cli import main

    def run(*args: object) -> CliResult:
        capfd.readouterr()
        code = main([str(a) for a in args])
        out, err = capfd.readouterr()
        return CliResult(code, out, err)

    yield run


def only_the_grant_line(stderr: str) -> bool:
    """What `motte run` of a package that asks nothing of the host says: only its mode line
    (a package run by reference gets only what the host grants), nothing else."""
    lines = stderr.splitlines()
    return (
        len(lines) == 1
        and "a package run by reference gets only what this host grants" in (lines[0])
    )
