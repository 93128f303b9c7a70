"""Commands run without Typer (motte.cli._direct): the call made from the recorded spec is
the call Typer makes, for every command; usage errors are Typer's own; a running command
imports neither Typer, click, Rich nor pydantic."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from motte.cli import _direct, _typer, main
from tests.conftest import shared_testdata

COMMANDS = _direct.load()


def test_the_spec_is_current_and_every_command_runs_directly():
    assert COMMANDS is not None, "stale _commands.json: run python -m motte.cli._helpgen"
    marked = {path: spec["typer"] for path, spec in COMMANDS.items() if "typer" in spec}
    assert marked == {}, f"commands the direct path cannot run: {marked}"


def test_a_spec_from_other_sources_is_not_used(tmp_path, monkeypatch, capsys):
    data = json.loads(Path(_direct.COMMANDS_FILE).read_text(encoding="utf-8"))
    data["sources"] = "crc32:00000000:0"
    stale = tmp_path / "commands.json"
    stale.write_text(json.dumps(data), encoding="utf-8")
    monkeypatch.setattr(_direct, "COMMANDS_FILE", str(stale))
    assert _direct.load() is None
    assert _direct.run_direct(["platform", "info", "--json"]) is None
    assert capsys.readouterr() == ("", "")


# -- the same call as Typer's ---------------------------------------------------------------


def _sample(p: dict[str, Any], files: dict[str, Path], n: int) -> str:
    kind = p["type"]
    if kind == "str":
        return f"word{n}"
    if kind == "int":
        return str(max(p.get("min") or 0, 3) + n)
    if kind == "float":
        return f"{max(p.get('min') or 0, 2) + n}.5"
    if kind == "choice":
        return p["choices"][(n + 1) % len(p["choices"])]
    checks = p["path"]
    if not checks["file_okay"]:
        return str(files["dir"])
    if checks["exists"] or not checks["dir_okay"]:
        return str(files["file"])
    return str(files["file"] if n % 2 else files["missing"])


def _argvs(spec: dict[str, Any], files: dict[str, Path]) -> list[list[str]]:
    """A command line with only what is required, and one with every parameter given
    (options before, between and after the arguments, lists twice, flags both ways)."""
    minimal: list[str] = []
    full: list[str] = []
    after: list[str] = []
    for n, p in enumerate(spec["params"]):
        if p["kind"] == "argument":
            if p.get("after_dashes"):
                after = ["--", "--guest-flag", "word"]
                continue
            values = [_sample(p, files, n), _sample(p, files, n + 1)] if p["nargs"] == -1 else []
            values = values or [_sample(p, files, n)]
            if p["required"]:
                minimal += values
            full += values
            continue
        name = p["opts"][0]
        if p["flag"]:
            full += [p["off"][0]] if p["off"] and p["default"] is True else [name]
            continue
        value = _sample(p, files, n)
        if p["required"]:
            minimal += [name, value]
        long = next((o for o in p["opts"] if o.startswith("--")), None)
        if p["multiple"]:
            full += [name, value, long or name, _sample(p, files, n + 1)]
        else:
            full += [f"{long}={value}"] if n % 2 and long else [name, value]
    return [minimal, full + after]


@pytest.fixture
def typer_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every command function Typer calls records its keyword arguments instead of running."""
    calls: list[dict[str, Any]] = []
    real = _typer.typer_function

    def spying(func: Any) -> Any:
        command = real(func)

        def record(*args: Any, **kwargs: Any) -> int:
            calls.append(kwargs)
            return 0

        return functools.update_wrapper(record, command)

    monkeypatch.setattr(_typer, "typer_function", spying)
    return calls


@pytest.mark.parametrize("path", sorted(COMMANDS or ()))
def test_the_direct_call_is_typers(path, typer_calls, tmp_path):
    from motte.cli import _main_typer

    spec = COMMANDS[path]  # type: ignore[index]
    files = {"file": tmp_path / "in.txt", "dir": tmp_path / "d", "missing": tmp_path / "none"}
    files["file"].write_text("x")
    files["dir"].mkdir()
    for argv in _argvs(spec, files):
        ours = _direct.parse(spec, argv)
        assert _main_typer([*path.split(), *argv]) == 0, argv
        assert typer_calls, f"Typer did not call motte {path} {argv}"
        theirs = typer_calls.pop()
        assert ours == theirs, f"motte {path} {' '.join(argv)}"
        assert [type(v) for v in ours.values()] == [type(v) for v in theirs.values()]


def test_enum_and_path_values_are_typers_objects(typer_calls, tmp_path):
    from motte.cli.attest import Kind

    evidence = tmp_path / "ev.bin"
    evidence.write_bytes(b"x")
    kwargs = _direct.parse(COMMANDS["attest verify"], [str(evidence), "--kind", "tdx"])  # type: ignore[index]
    assert kwargs["kind"] is Kind.tdx
    assert kwargs["evidence"] == evidence and isinstance(kwargs["evidence"], Path)
    assert kwargs["certs"] is None and kwargs["json"] is False


# -- what is not plain goes to Typer; usage errors are Typer's ------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["attest", "verify", "ev.bin", "--bogus"],
        ["attest", "verify"],
        ["attest", "verify", "ev.bin", "extra"],
        ["attest", "verify", "ev.bin", "--kind", "nope"],
        ["attest", "verify", "ev.bin", "--policy", "/nonexistent/policy.toml"],
        ["attest", "verify", "ev.bin", "--certs"],
        ["attest", "verify", "ev.bin", "--json=1"],
        ["attest", "verify", "ev.bin", "--polcy", "p.toml"],
        ["measure", "snp", "--ovmf", "OVMF.fd", "--vcpus", "many"],
        ["measure", "snp", "--vcpus", "2"],
        ["platform", "info", "-h"],
    ],
    ids=" ".join,
)
def test_usage_errors_are_typers(argv, capsys):
    from motte.cli import _main_typer

    assert _direct.run_direct(argv) is None  # declined: Typer answers
    assert capsys.readouterr() == ("", "")
    status = main(argv)
    ours = capsys.readouterr()
    assert _main_typer(argv) == status
    assert capsys.readouterr() == ours
    assert status == (0 if "-h" in argv else 2)


@pytest.mark.parametrize(
    "argv",
    [
        ["--at", "not-a-time"],
        ["--report-data", "zz"],
    ],
)
def test_a_bad_value_found_by_the_command_is_reported_as_typer_does(argv, capsys, tmp_path):
    """typer.BadParameter raised inside a command: the same usage, hint and words."""
    from motte.cli import _main_typer

    evidence = tmp_path / "ev.bin"
    evidence.write_bytes(b"x")
    args = ["attest", "verify", str(evidence), *argv]
    status = _direct.run_direct(args)
    ours = capsys.readouterr()
    assert status == 2
    assert _main_typer(args) == status
    theirs = capsys.readouterr()
    assert ours == theirs
    assert theirs.err.startswith("Usage: motte attest verify")


# -- a running command imports nothing heavy -------------------------------------------------

HEAVY = ("typer", "click", "rich", "pydantic", "markdown_it", "shellingham")

_IMPORTS = """\
import json, sys
from motte.cli import main
status = main(sys.argv[1:])
sys.stdout.flush()
sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)))
sys.exit(status)
"""


def _modules_of(*args: str) -> tuple[int, str, set[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR", "FORCE_COLOR")}
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORTS, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    err, _, modules = proc.stderr.rpartition("\nMODULES ")
    return proc.returncode, proc.stdout + err, set(json.loads(modules))


def _running_commands() -> list[tuple[tuple[str, ...], int]]:
    dcap = shared_testdata("attestation", "dcap-qvl")
    quote = str(dcap / "tdx_quote_outdated")
    collateral = str(dcap / "tdx_quote_outdated_collateral.json")
    at = "2026-02-19T00:00:00+00:00"
    hello = str(Path(__file__).parents[1] / "examples" / "hello")
    return [
        (("attest", "verify", quote, "--collateral", collateral, "--at", at), 1),
        (("attest", "verify", quote, "--collateral", collateral, "--at", at, "--json"), 1),
        (("attest", "show", quote), 0),
        (("measure", "snp", "--ovmf", "{OVMF}", "--vcpus", "2", "--vcpu-type", "EPYC-Milan"), 0),
        (("run", hello, "--", "Ann"), 0),
        (("cache", "info", "--json"), 0),
        (("platform", "info"), 0),
    ]


@pytest.mark.parametrize("args", _running_commands(), ids=lambda a: " ".join(a[0][:2]))
def test_a_running_command_imports_no_typer_click_rich_or_pydantic(args, tmp_path):
    argv, expected = args
    if "{OVMF}" in argv:  # an OVMF image as bench/measure.py makes one: 4 MiB, AmdSev's tail
        tail = shared_testdata("measure", "ovmf_AmdSev_suffix.bin").read_bytes()
        ovmf = tmp_path / "OVMF.fd"
        ovmf.write_bytes(bytes((4 << 20) - len(tail)) + tail)
        argv = tuple(str(ovmf) if a == "{OVMF}" else a for a in argv)
    status, output, modules = _modules_of(*argv)
    assert status == expected, output
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == [], f"motte {' '.join(argv[:2])} imported {heavy}"


def test_a_module_still_importing_typer_itself_runs_through_typer(monkeypatch):
    """A command module not yet declaring through motte.cli._typer (another branch's, say)
    keeps working: Typer registers its app as it is, and runs its commands."""
    import typer

    import motte.cli.platform as platform

    app = typer.Typer()
    assert _typer.to_typer(app) is app
    monkeypatch.setattr(platform, "typer", typer)
    assert _direct.run_direct(["platform", "info"]) is None
