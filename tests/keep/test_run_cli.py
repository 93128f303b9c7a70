"""``motte run``: run without Typer from its one declaration, and Typer reads it the same
way; statuses and messages are the documented ones; nothing heavy is imported on the fast
path."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.keep import guests
from tests.keep.conftest import EXAMPLES

HELLO = EXAMPLES / "hello" / "hello.wasm"


def _parse(argv: list[str]) -> dict:
    """What ``motte run ARGV`` calls :func:`motte.cli.run.run` with, without Typer."""
    from motte.cli import _direct

    commands = _direct.load()
    assert commands is not None, "stale _commands.json: run python -m motte.cli._helpgen"
    return _direct.parse(commands["run"], argv)


def test_run_is_run_without_typer():
    from motte.cli import _direct

    spec = _direct.load()["run"]  # type: ignore[index]
    assert "typer" not in spec
    assert [p["name"] for p in spec["params"] if p.get("after_dashes")] == ["args"]


def test_both_parsers_read_the_same_command_line_the_same_way(capfd):
    """The same command through each parser gives the same outcome."""
    from motte.cli import build_app, main

    argv = ["--env", "GREETING=Hey", "--memory", "32", "--cpu-time", "2", "--json", str(HELLO)]
    capfd.readouterr()
    fast_code = main(["run", *argv, "--", "a", "b"])
    fast = json.loads(capfd.readouterr().out)
    app = build_app("run")
    typer_code = app(args=["run", *argv, "a", "b"], prog_name="motte", standalone_mode=False)
    slow = json.loads(capfd.readouterr().out)
    assert fast_code == typer_code == 0
    assert (
        fast["stdout"]
        == slow["stdout"]
        == ("Hey, a!\nHey, b!\nenvironment: 1 variable\n  GREETING=Hey\n")
    )
    for key in ("limits", "status", "digest", "trap"):
        assert fast[key] == slow[key]
    assert fast["limits"] == {
        "memory": 32,
        "cpu_time": 2.0,
        "wall_time": 300.0,
        "memories": 4,
        "tables": 8,
        "instances": 16,
        "table_elements": 100_000,
        "output": 64,
        "connections": 16,
        "connections_total": 1000,
        "connection_time": 60.0,
        "connection_bytes": 64,
    }


def test_parse_splits_guest_arguments_at_the_first_double_dash():
    o = _parse(["--env", "A=1", "x.wasm", "--", "--env", "-h", "--"])
    assert (o["target"], o["env"], o["args"]) == ("x.wasm", ["A=1"], ["--env", "-h", "--"])
    assert _parse(["x.wasm"])["args"] is None
    assert _parse(["x.wasm", "--"])["args"] == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "Missing argument 'WORKLOAD'."),
        (["x.wasm", "extra"], "Got unexpected extra argument(s) (extra)"),
        (
            ["--memory", "lots", "x.wasm"],
            "Invalid value for '--memory': Input should be a valid integer",
        ),
        (["--cpu", "1", "x.wasm"], "No such option: --cpu"),  # no abbreviations
        (["x.wasm", "--json=yes"], "Option '--json' does not take a value."),
        (["x.wasm", "--memory"], "Option '--memory' requires an argument."),
    ],
)
def test_usage_errors_exit_125_in_one_line(motte, argv, message):
    """A usage error of motte run is 125 (2 could be the guest's), said in click's words."""
    r = motte("run", *argv)
    assert r.exit_code == 125
    assert r.stderr.startswith(f"motte: error: motte run: {message}"), r.stderr
    assert "\n  hint: usage: motte run [OPTIONS]" in r.stderr
    assert len(r.stderr.splitlines()) == 2


def test_help_is_typer_and_guest_dash_h_is_the_guests(motte):
    r = motte("run", "--help")
    assert r.exit_code == 0
    assert "WORKLOAD" in r.stdout and "--cpu-time" in r.stdout
    r = motte("run", HELLO, "--", "-h")
    assert (r.exit_code, r.stdout.splitlines()[0]) == (0, "Hello, -h!")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope.wasm"], "motte: error: nope.wasm: no such file\n"),
        (["--memory", "0", str(HELLO)], "motte: error: --memory 0: must be from 1 to 4096"),
        (["--env", "NOEQUALS", str(HELLO)], "motte: error: --env 'NOEQUALS': expected KEY=VALUE"),
        (
            ["--dir", "/nonexistent-dir:/d", str(HELLO)],
            "motte: error: --dir "
            "/nonexistent-dir:/d: dir.host /nonexistent-dir: no such directory\n",
        ),
        (
            ["x", "y"],
            "motte: error: motte run: Got unexpected extra argument(s) (y)\n"
            "  hint: usage: motte run",
        ),
    ],
)
def test_cannot_start_exits_125_with_one_line(motte, args, message):
    r = motte("run", *args)
    assert r.exit_code == 125
    assert r.stderr.startswith(message)
    assert "Traceback" not in r.stderr


def test_bad_manifest_names_file_line_and_key(motte, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "Motte.toml").write_text('workload = "m.wasm"\n\n[limits]\nmemroy = 5\n')
    r = motte("run", ".")
    assert r.exit_code == 125
    assert r.stderr == (
        "motte: error: Motte.toml:4: limits.memroy: unknown key (known here: connection_bytes, "
        "connection_time, connections, connections_total, cpu_time, instances, "
        "memories, memory, output, table_elements, tables, wall_time)\n"
        "  hint: did you mean 'memory'?\n"
    )


def test_examples_run_from_their_directory_and_manifest(motte):
    r = motte("run", EXAMPLES / "hello")
    assert (r.exit_code, r.stdout.splitlines()[0]) == (0, "Hello, world!")
    r = motte("run", EXAMPLES / "hello" / "Motte.toml", "--", "Ann")
    assert r.stdout.splitlines()[0] == "Hello, Ann!"
    r = motte("run", EXAMPLES / "files")
    assert r.exit_code == 0 and r.stdout.split()[-1] == "/data/poem.txt"


def test_json_reports_the_outcome(motte, guest):
    r = motte("run", "--json", "--cpu-time", "0.1", guest("spin", guests.SPIN))
    assert r.exit_code == 152
    doc = json.loads(r.stdout)
    assert doc["status"] == 152 and doc["exit_code"] is None
    assert doc["trap"]["kind"] == "cpu_time"
    assert doc["digest"].startswith("sha256:") and doc["kind"] == "module"
    assert r.stderr == ""


def test_debug_shows_wasmtimes_detail(motte, guest, monkeypatch):
    monkeypatch.setenv("MOTTE_DEBUG", "1")
    r = motte("run", guest("unreachable", guests.UNREACHABLE))
    assert r.exit_code == 134
    assert "wasm backtrace" in r.stderr


def test_fast_path_imports_nothing_heavy():
    code = (
        "import sys\nfrom motte.cli import main\n"
        f"code = main(['run', {str(HELLO)!r}])\n"
        "heavy = sorted(m for m in ('typer', 'click', 'rich', 'pydantic', 'cryptography', "
        "'httpx', 'fastapi') if m in sys.modules)\n"
        "print('HEAVY', heavy, code)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.splitlines()[-1] == "HEAVY [] 0"
