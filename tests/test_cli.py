import importlib
import subprocess
import sys

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
