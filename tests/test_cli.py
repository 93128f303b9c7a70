import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from motte.cli import COMMANDS, main
from motte.errors import ExitStatus


def test_version(cli):
    r = cli("--version")
    assert r.exit_code == 0
    assert r.stdout.startswith("motte ")


def test_help_lists_every_command(cli):
    r = cli("--help")
    assert r.exit_code == 0
    for name in COMMANDS:
        assert name in r.stdout, name


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_registered_command_imports(name):
    module, attr, _ = COMMANDS[name]
    assert hasattr(importlib.import_module(module), attr)


def test_unknown_command_is_a_usage_error(cli):
    r = cli("no-such-command")
    assert r.exit_code == ExitStatus.USAGE
    assert "No such command" in r.stderr


def test_console_script_runs_without_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "motte", "no-such-command"], capture_output=True, text=True
    )
    assert proc.returncode == ExitStatus.USAGE
    assert "Traceback" not in proc.stderr


def test_main_maps_motte_error_to_its_status(monkeypatch, capsys):
    from motte.errors import ConfigError

    def boom(args):
        raise ConfigError("Motte.toml:3: unknown key 'x'", hint="remove it")

    monkeypatch.setattr("motte.cli._main_typer", boom)
    assert main(["anything"]) == ExitStatus.FAILURE
    err = capsys.readouterr().err
    assert err == "motte: error: Motte.toml:3: unknown key 'x'\n  hint: remove it\n"


# -- --help without Typer (motte.cli._help) ------------------------------------------------

#: Modules `motte --help` must not import: each costs tens to hundreds of milliseconds, and
#: help is answered from the pre-rendered screens (docs/performance.md, "CLI start-up").
HEAVY = (
    "typer",
    "click",
    "rich",
    "pydantic",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "h11",
    "wasmtime",
    "cryptography",
    "asyncio",
    "ssl",
    "typing",
    "dataclasses",
    "motte.keep",
    "motte.attest",
)

_IMPORTS = """\
import json, sys
from motte.cli import main
status = main(sys.argv[1:])
sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)))
sys.exit(status)
"""


def _help_in_subprocess(*args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR", "FORCE_COLOR")}
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORTS, *args], capture_output=True, text=True, env=env
    )
    err, _, modules = proc.stderr.rpartition("\nMODULES ")
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout, err), set(
        json.loads(modules)
    )


@pytest.mark.parametrize(
    "args",
    [("--help",), ("-h",), (), ("attest", "verify", "--help"), ("attest",), ("run", "--help")],
    ids=lambda a: " ".join(a) or "(none)",
)
def test_help_imports_no_heavy_module(args):
    proc, modules = _help_in_subprocess(*args)
    asked = "--help" in args or "-h" in args
    assert proc.returncode == (0 if asked else 2), proc.stderr  # bare: help, exit 2 (Typer's)
    assert "Usage: motte" in proc.stdout
    # What the interpreter loads by itself here (site, .pth files) is not motte's doing.
    bare = subprocess.run(
        [sys.executable, "-c", "import json, sys; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    modules -= set(json.loads(bare.stdout))
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY))
    assert heavy == [], f"motte {' '.join(args)} imported {heavy}"


def test_help_screens_are_what_typer_renders_now():
    """The pre-rendered screens are current: regenerate with `python -m motte.cli._helpgen`
    after changing a command's help, options or docstring."""
    from motte.cli._help import SCREENS_FILE
    from motte.cli._helpgen import dumps, render_screens

    current = Path(SCREENS_FILE).read_text(encoding="utf-8")
    assert current == dumps(render_screens()), (
        f"{SCREENS_FILE} is stale: run `python -m motte.cli._helpgen` and commit it"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        [],
        ["attest", "verify", "--help"],
        ["attest", "-h"],
        ["attest"],
        ["run", "--help"],
        ["power", "plan", "check", "--help"],
        ["key", "root"],
        ["measure", "snp", "-h"],
    ],
    ids=lambda a: " ".join(a) or "(none)",
)
def test_fast_help_prints_what_typer_prints(args, capsys, monkeypatch):
    from motte.cli import _main_typer
    from motte.cli._help import answer_help

    for name in ("COLUMNS", "NO_COLOR", "FORCE_COLOR", "TERMINAL_WIDTH"):
        monkeypatch.delenv(name, raising=False)
    status = answer_help(list(args))
    fast = capsys.readouterr()
    assert status is not None, "the fast path declined a plain help request"
    assert _main_typer(list(args)) == status
    typer_out = capsys.readouterr()
    assert (fast.out, fast.err) == (typer_out.out, typer_out.err)
    assert "Usage: motte" in fast.out


@pytest.mark.parametrize(
    "args",
    [
        ["attest", "verify", "x.bin", "--kind", "--help"],  # --help may be an option's value
        ["no-such-command", "--help"],
        ["run", "examples/hello", "--", "--help"],  # the guest's
        ["platform", "info"],  # a command, not a group: runs
    ],
)
def test_fast_help_leaves_everything_else_to_typer(args, capsys):
    from motte.cli._help import answer_help

    assert answer_help(args) is None
    assert capsys.readouterr() == ("", "")


def test_fast_help_refuses_screens_from_other_sources(tmp_path, monkeypatch, capsys):
    """A screens file rendered from other command sources is never shown."""
    import motte.cli._help as fast

    stale = tmp_path / "screens.json"
    data = json.loads(Path(fast.SCREENS_FILE).read_text(encoding="utf-8"))
    data["sources"] = "crc32:00000000:0"
    stale.write_text(json.dumps(data), encoding="utf-8")
    monkeypatch.setattr(fast, "SCREENS_FILE", str(stale))
    assert fast.answer_help(["--help"]) is None
    assert capsys.readouterr() == ("", "")


def _helps(command):
    """(where, text) of every help string of a click command and its subcommands."""
    yield command.name, command.help or ""
    for param in command.params:
        yield f"{command.name} {param.name}", getattr(param, "help", None) or ""
    for sub in getattr(command, "commands", {}).values():
        for where, text in _helps(sub):
            yield f"{command.name} {where}", text


def test_help_text_shows_its_brackets():
    """Help is rendered as Rich markup, where `[user@]` or `[http://]` is a tag and vanishes:
    a literal bracket must be escaped (`\\[`) to reach the reader."""
    import typer.main
    from rich.text import Text

    from motte.cli import build_app

    lost = [
        f"{where}: {text!r}"
        for where, text in _helps(typer.main.get_command(build_app()))
        # click's "\b" (keep these lines as written) is a control character Rich drops
        if Text.from_markup(text).plain != text.replace("\b", "").replace("\\[", "[")
    ]
    assert not lost, "\n".join(lost)
