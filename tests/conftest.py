"""Shared fixtures: every test gets its own MOTTE_HOME; real evidence is read in place."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Public attestation samples, read from the shared folder beside the project, never copied.
SHARED_TESTDATA = REPO.parent / "shared" / "testdata"


def require(available: bool, what: str) -> None:
    """Skip when a real peer or tool is missing (``what`` says which and how to install it),
    unless MOTTE_REQUIRE_PEERS is set: ``make test`` sets it, so a missing peer fails CI
    instead of turning its tests into silent skips."""
    if available:
        return
    if os.environ.get("MOTTE_REQUIRE_PEERS"):
        pytest.fail(f"required by make test, but missing: {what}", pytrace=False)
    pytest.skip(f"missing: {what}")


def shared_testdata(*parts: str) -> Path:
    """Path under ../shared/testdata; skips, naming the folder, only when it is absent."""
    path = SHARED_TESTDATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data not present: {path}", allow_module_level=True)
    return path


@pytest.fixture(autouse=True)
def motte_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("motte-home")
    monkeypatch.setenv("MOTTE_HOME", str(home))
    return home


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[object]:
    """Call ``motte`` in-process: ``cli("attest", "show", path)`` -> CliResult."""
    from motte.cli import main

    def run(*args: str) -> CliResult:
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    yield run
