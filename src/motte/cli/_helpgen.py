"""Renders every ``--help`` screen of the command line through Typer, once, into
``_help_screens.json``, which :mod:`motte.cli._help` prints without importing Typer.

    python -m motte.cli._helpgen            # rewrite src/motte/cli/_help_screens.json
    python -m motte.cli._helpgen --check    # exit 1 if it is not what Typer renders now

Why: importing Typer (which imports Rich and pydantic) costs 150 to 400 ms, twenty times
Python's own start-up, and ``--help`` is what people run most when they learn a tool. The
screens are Typer's own output, byte for byte, at 80 columns, with Rich's styles (plain
text is the same with the escape sequences removed), so the help keeps one source: the
commands' docstrings and parameters. tests/test_cli.py fails when the file is stale, and
the fast path itself refuses a file made from other command sources (it falls back to
Typer), so a stale screen is never shown.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

from motte.cli._help import SCREENS_FILE, WIDTH, plain, sources_digest

#: Environment variables that change how Rich renders; cleared while rendering.
_RENDER_ENV = ("NO_COLOR", "FORCE_COLOR", "PY_COLORS", "COLUMNS", "LINES", "TERMINAL_WIDTH")


def _capture(command: Any, args: list[str]) -> tuple[str, str, int]:
    """(stdout, stderr, exit status) of the click command run on ``args``."""
    from motte.cli import _main_typer_command

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = _main_typer_command(command, args)
    return out.getvalue(), err.getvalue(), status


def _walk(group: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
    found = [(path, group)]
    for name, sub in sorted(getattr(group, "commands", {}).items()):
        found += _walk(sub, (*path, name))
    return found


def render_screens() -> dict[str, Any]:
    """Every screen as Typer renders it now: {"sources": digest, "screens": {path: {...}}}.

    A screen is keyed by its command path joined with spaces ("" is ``motte`` itself) and
    holds ``styled`` (Rich's output with standard colours), ``plain`` only where removing
    the styles does not give Rich's plain output, and ``bare`` when the path alone, without
    ``--help``, prints the same help (a group that needs a subcommand)."""
    saved = {name: os.environ.pop(name, None) for name in _RENDER_ENV}
    try:
        import typer.main
        import typer.rich_utils as rich_utils

        from motte.cli import build_app

        command = typer.main.get_command(build_app())
        screens: dict[str, Any] = {}
        originals = (rich_utils.MAX_WIDTH, rich_utils.FORCE_TERMINAL, rich_utils.COLOR_SYSTEM)
        try:
            rich_utils.MAX_WIDTH = WIDTH
            for path, sub in _walk(command, ()):
                rich_utils.FORCE_TERMINAL, rich_utils.COLOR_SYSTEM = True, "standard"
                styled, _, status = _capture(command, [*path, "--help"])
                assert status == 0, (path, status)
                rich_utils.FORCE_TERMINAL, rich_utils.COLOR_SYSTEM = False, None
                text, _, _ = _capture(command, [*path, "--help"])
                screen: dict[str, Any] = {"styled": styled}
                if plain(styled) != text:
                    screen["plain"] = text
                if getattr(sub, "no_args_is_help", False):
                    bare, bare_err, bare_status = _capture(command, list(path))
                    # Typer prints the help (its last newline on stderr) and exits 2.
                    if bare + bare_err == text and bare_status == 2:
                        screen["bare"] = True
                screens[" ".join(path)] = screen
        finally:
            rich_utils.MAX_WIDTH, rich_utils.FORCE_TERMINAL, rich_utils.COLOR_SYSTEM = originals
    finally:
        for name, value in saved.items():
            if value is not None:
                os.environ[name] = value
    return {"sources": sources_digest(), "screens": screens}


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=0, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = dumps(render_screens())
    if argv == ["--check"]:
        screens = Path(SCREENS_FILE)
        current = screens.read_text(encoding="utf-8") if screens.exists() else ""
        if current != text:
            print(f"{SCREENS_FILE}: stale; run: python -m motte.cli._helpgen", file=sys.stderr)
            return 1
        return 0
    if argv:
        print("usage: python -m motte.cli._helpgen [--check]", file=sys.stderr)
        return 2
    from motte.fsutil import atomic_write_bytes

    atomic_write_bytes(Path(SCREENS_FILE), text.encode("utf-8"))
    print(f"wrote {SCREENS_FILE} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
