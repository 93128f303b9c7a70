"""``--help`` without Typer: the screens Typer rendered (``_help_screens.json``, made by
:mod:`motte.cli._helpgen`), printed as they are.

Typer imports Rich and pydantic, 150 to 400 ms on a quiet machine: twenty times Python's
own start-up, for a screen of text that changes only when a command does. This module
imports nothing beyond what Python has loaded at start-up, ``json`` and ``zlib``.

It answers only the plain shapes, and only while the file was made from the command
sources installed beside it; everything else goes to Typer, which renders the same text:

- ``motte [COMMAND [SUBCOMMAND ...]] --help`` (or ``-h``) for a command path it knows;
- ``motte`` or a group without its subcommand (``motte attest``): the help, exit 2, as
  Typer does;
- on a terminal narrower than the screens' 80 columns, or with Typer's or Rich's own
  width and colour switches set, Typer renders instead (it fits the terminal).

Styles: Rich's colours when standard output is a terminal (or ``FORCE_COLOR``), never with
``NO_COLOR``; plain text otherwise, which is what Rich prints in the same case.
"""

from __future__ import annotations

import os
import sys

#: The width the screens were rendered at (Rich's width when output is not a terminal).
WIDTH = 80
CLI_DIR = os.path.dirname(os.path.abspath(__file__))
SCREENS_FILE = os.path.join(CLI_DIR, "_help_screens.json")
#: Modules of motte/cli that do not shape any help screen (this one and its generator).
_NOT_SOURCES = frozenset({"_help.py", "_helpgen.py"})
_HELP_FLAGS = frozenset({"-h", "--help"})
#: Set, these change Typer's or Rich's rendering: let Typer render.
_RENDER_SWITCHES = ("TERMINAL_WIDTH", "TYPER_USE_RICH", "_TYPER_FORCE_DISABLE_TERMINAL")


def sources_digest() -> str:
    """A digest of the command line's modules (every ``motte/cli/*.py`` that can shape a
    screen): the screens file is used only while it matches. CRC-32 over names, lengths
    and contents: this detects a file rendered from other sources, not tampering (anyone
    who can write the sources can write the screens)."""
    import zlib

    crc = 0
    count = 0
    for name in sorted(os.listdir(CLI_DIR)):
        if not name.endswith(".py") or name in _NOT_SOURCES:
            continue
        with open(os.path.join(CLI_DIR, name), "rb") as f:
            data = f.read()
        crc = zlib.crc32(b"%s\0%d\0" % (name.encode(), len(data)), crc)
        crc = zlib.crc32(data, crc)
        count += 1
    return f"crc32:{crc:08x}:{count}"


def plain(styled: str) -> str:
    """``styled`` without its escape sequences (SGR colours, OSC 8 links)."""
    if "\x1b" not in styled:
        return styled
    import re

    return re.sub(r"\x1b\[[0-9;]*m|\x1b\]8;[^\x1b]*\x1b\\", "", styled)


def _styled(stream: object) -> bool:
    env = os.environ
    if env.get("NO_COLOR"):
        return False
    if env.get("FORCE_COLOR") or env.get("PY_COLORS") or env.get("GITHUB_ACTIONS"):
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and env.get("TERM", "") not in ("dumb", "unknown")


def _fits(stream: object) -> bool:
    """Whether an 80-column screen is what Rich would print on ``stream`` too (near
    enough: wider terminals get the 80 columns, which read well)."""
    env = os.environ
    if any(env.get(name) for name in _RENDER_SWITCHES):
        return False
    columns = env.get("COLUMNS")
    if columns and columns != str(WIDTH):
        return False
    fileno = getattr(stream, "fileno", None)
    try:
        return os.get_terminal_size(fileno()).columns >= WIDTH if fileno else True
    except (OSError, ValueError):
        return True  # not a terminal: Rich renders 80 columns


def _load() -> dict | None:
    import json

    try:
        with open(SCREENS_FILE, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("sources") != sources_digest():
        return None  # stale or foreign: Typer renders
    return data.get("screens")  # type: ignore[no-any-return]


def answer_help(args: list[str]) -> int | None:
    """Print the help ``args`` ask for and return the exit status, or None when Typer
    must answer (not a plain help request, an unknown path, a stale file, a narrow
    terminal)."""
    bare = not args or args[-1] not in _HELP_FLAGS
    path = args if bare else args[:-1]
    if any(arg.startswith("-") for arg in path) or not _fits(sys.stdout):
        return None
    screens = _load()
    if screens is None:
        return None
    screen = screens.get(" ".join(path))
    if screen is None or (bare and not screen.get("bare")):
        return None
    text = screen["styled"] if _styled(sys.stdout) else screen.get("plain", plain(screen["styled"]))
    if bare:  # as Typer: the help without its last newline, which goes to stderr; exit 2
        sys.stdout.write(text[:-1])
        sys.stdout.flush()
        sys.stderr.write(text[-1:])
        return 2
    sys.stdout.write(text)
    return 0
