"""``motte run``: the fast parser and the Typer command agree; statuses and messages are the
documented ones; nothing heavy is imported on the fast path."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from motte.cli._run_fast import build_parser, parse
from motte.errors import UsageError
from tests.keep import guests
from tests.keep.conftest import EXAMPLES

HELLO = EXAMPLES / "hello" / "hello.wasm"


def _typer_options() -> dict[str, bool]:
    """Every option of the Typer command -> whether it takes a value."""
    import typer.main

    from motte.cli.run import run

    app = typer.Typer(add_completion=False)
    app.command()(run)
    command = typer.main.get_command(app)
    out = {}
    for param in command.params:
        if param.param_type_name == "option":
            for opt in param.opts:
                out[opt] = not param.is_flag
    return out


def _argparse_options() -> dict[str, bool]:
    out = {}
    for action in build_parser()._actions:
        for opt in action.option_strings:
            out[opt] = action.nargs != 0
    return out


def test_both_parsers_accept_exactly_the_same_options():
    assert _typer_options() == _argparse_options()


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
    }


def test_parse_splits_guest_arguments_at_the_first_double_dash():
    o = parse(["--env", "A=1", "x.wasm", "--", "--env", "-h", "--"])
    assert (o.target, o.env, o.args) == ("x.wasm", ["A=1"], ["--env", "-h", "--"])
    assert parse(["x.wasm"]).args is None
    assert parse(["x.wasm", "--"]).args == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: WORKLOAD"),
        (["x.wasm", "extra"], "unrecognized arguments: extra"),
        (["--memory", "lots", "x.wasm"], "argument --memory: invalid int value: 'lots'"),
        (["--cpu", "1", "x.wasm"], "unrecognized arguments: --cpu"),  # no abbreviations
    ],
)
def test_usage_errors(argv, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(")) as e:
        parse(argv)
    assert "usage: motte run" in e.value.hint


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
            "motte: error: motte run: unrecognized arguments: y\n  hint: usage: motte run",
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
        "motte: error: Motte.toml:4: limits.memroy: unknown key (known here: cpu_time, instances, "
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
