"""Shared fixtures: every test gets its own MOTTE_HOME; real evidence is read in place."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Public attestation samples, read from the shared folder beside the project, never copied.
SHARED_TESTDATA = REPO.parent / "shared" / "testdata"


def shared_testdata(*parts: str) -> Path:
    """Path under ../shared/testdata; skips, naming the folder, only when it is absent."""
    path = SHARED_TESTDATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data not present: {path}")
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
