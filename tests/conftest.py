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


# -- databases: every store test runs on SQLite and on a real PostgreSQL --------------------


@pytest.fixture(scope="session")
def postgresql() -> Iterator[object]:
    """One PostgreSQL server for the session (tests/integration/_postgres.py), stopped at
    the end. Clients find its password in the passfile named by PGPASSFILE."""
    from tests.integration._postgres import PostgresServer, find_bindir

    bindir = find_bindir()
    require(bindir is not None, "PostgreSQL server (scripts/system-deps.sh test: postgresql)")
    assert bindir is not None
    server = PostgresServer(bindir)
    old = os.environ.get("PGPASSFILE")
    os.environ["PGPASSFILE"] = str(server.passfile)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
        if old is None:
            os.environ.pop("PGPASSFILE", None)
        else:
            os.environ["PGPASSFILE"] = old


@pytest.fixture
def pg_database(postgresql: object) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; its URL (no password in it)."""
    name, url = postgresql.create_database()  # type: ignore[attr-defined]
    try:
        yield url
    finally:
        postgresql.drop_database(name)  # type: ignore[attr-defined]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test once on the embedded SQLite and once with MOTTE_DB naming a fresh
    PostgreSQL database: a module opts in with ``pytestmark = usefixtures("database")``."""
    monkeypatch.delenv("MOTTE_DB", raising=False)
    if request.param == "sqlite":
        yield "sqlite"
        return
    url = request.getfixturevalue("pg_database")
    monkeypatch.setenv("MOTTE_DB", url)
    yield "postgresql"
