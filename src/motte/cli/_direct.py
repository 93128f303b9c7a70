"""Running a command without Typer: parse a plain command line from the parameter spec
Typer's own click objects gave (``_commands.json``, made by :mod:`motte.cli._helpgen`) and
call the command function directly.

Typer imports Rich and pydantic: 150 to 400 ms here, more than most commands take to do
their work (``motte attest verify`` of a TDX quote, ``motte measure snp``, ``motte run`` of
a small workload). The command modules declare their parameters through
:mod:`motte.cli._typer`, whose records cost nothing to import; this module reads the spec,
builds the call and makes it, importing ``json`` and the command's module.

It answers only what it reproduces exactly, and declines (returns None, and Typer runs the
command line) otherwise:

- a spec made from other command sources (the checksum of ``motte/cli/*.py``, as the help
  screens), or a command the generator marked for Typer (it records why);
- anything but a plain parse: ``-h``/``--help``, short options run together or with their
  value attached, an option value starting with ``-``, a value it cannot convert the way
  Typer would (an int or float in an unusual spelling, a path check that fails);
- a usage error (an unknown option, a missing argument, an extra word): Typer parses the
  same line again and reports it in its own words, usage line and exit 2.

A command with an ``after_dashes`` argument (``motte run``: its exit status is the guest's,
so 2 would be ambiguous) reports its usage errors here instead, in one line with status
125, and its guest's arguments are exactly the words after ``--``.

Values are converted as Typer converts them (tests/test_cli.py compares the call made here
with Typer's for every command): ``Path``, an enum member, ``int``/``float``, a list or
None for a repeatable option not given, ``True``/``False`` for a flag.
"""

from __future__ import annotations

import os
import sys

from motte.cli._help import CLI_DIR

TYPE_CHECKING = False  # not typing's: running a command does without importing typing here
if TYPE_CHECKING:
    from typing import Any

#: Bumped when the spec's shape changes (a spec of another format is not read).
FORMAT = 1
COMMANDS_FILE = os.path.join(CLI_DIR, "_commands.json")


class Decline(Exception):
    """Not a plain command line: Typer parses it."""


class Problem(Exception):
    """A usage error, said in click's words."""


def load() -> dict[str, Any] | None:
    """The commands' specs, or None when the file is missing, of another format, or made
    from other command sources."""
    import json

    from motte.cli._help import sources_digest

    try:
        with open(COMMANDS_FILE, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        return None
    if data.get("sources") != sources_digest():
        return None
    return data.get("commands")  # type: ignore[no-any-return]


def find(commands: dict[str, Any], args: list[str]) -> tuple[str, dict[str, Any], list[str]]:
    """(command path, spec, the rest of the line) for the command ``args`` name."""
    for k, word in enumerate(args, 1):
        if word.startswith("-"):
            break
        path = " ".join(args[:k])
        spec = commands.get(path)
        if spec is not None:
            return path, spec, args[k:]
    raise Decline("not a command path")


def run_direct(args: list[str]) -> int | None:
    """Run ``motte ARGS`` without Typer and return its exit status, or None when Typer must
    (a stale spec, a command it cannot run, anything but a plain parse, a usage error)."""
    commands = load()
    if commands is None:
        return None
    try:
        path, spec, rest = find(commands, args)
        if "typer" in spec:
            return None
        kwargs = parse(spec, rest)
    except Decline:
        return None
    except Problem as e:
        if not _reports_itself(spec):
            return None  # Typer says it, in its words
        _say_run_error(path, spec, str(e))
        return 125
    return call(path, spec, kwargs)


def call(path: str, spec: dict[str, Any], kwargs: dict[str, Any]) -> int | None:
    """Call the command function as Typer would; its exit status (None: Typer must)."""
    import importlib

    from motte.cli import _typer

    module_name, qualname = spec["function"]
    module = importlib.import_module(module_name)
    if "typer" in sys.modules and vars(module).get("typer") is sys.modules["typer"]:
        return None  # a module still declaring through Typer itself raises Typer's errors
    func = getattr(module, qualname)
    try:
        rv = func(**kwargs)
    except _typer.BadParameter as e:
        if _reports_itself(spec):
            _say_run_error(path, spec, e.format_message())
            return 125
        # click's UsageError.show(), as motte.cli._main_typer_command has it printed
        sys.stderr.write(
            f"{spec['usage']}\nTry 'motte {path} {spec['help'][0]}' for help.\n\n"
            f"Error: {e.format_message()}\n"
        )
        return 2
    except _typer.Exit as e:
        return int(e.exit_code)
    except _typer.Abort:
        print("motte: aborted", file=sys.stderr)
        return 130
    except EOFError:  # click turns it into an abort, after a newline
        print("\nmotte: aborted", file=sys.stderr)
        return 130
    return int(rv) if isinstance(rv, int) else 0


def _reports_itself(spec: dict[str, Any]) -> bool:
    return any(p.get("after_dashes") for p in spec["params"])


def _say_run_error(path: str, spec: dict[str, Any], message: str) -> None:
    usage = spec["usage"].removeprefix("Usage: ")
    sys.stderr.write(f"motte: error: motte {path}: {message}\n  hint: usage: {usage}\n")


# -- parsing, as click parses -------------------------------------------------------------


def parse(spec: dict[str, Any], tokens: list[str]) -> dict[str, Any]:
    """The keyword arguments Typer would call the command with for ``tokens``."""
    params = spec["params"]
    names: dict[str, tuple[dict[str, Any], bool]] = {}
    for p in params:
        if p["kind"] == "option":
            names.update((o, (p, True)) for o in p["opts"])
            names.update((o, (p, False)) for o in p["off"])
    helps = spec["help"]
    rest = next((p for p in params if p.get("after_dashes")), None)
    given: dict[str, Any] = {}
    words: list[str] = []
    after: list[str] | None = None
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token == "--":
            after = tokens[i:]
            break
        if token[:1] != "-" or token == "-":
            words.append(token)
            continue
        if token in helps:
            raise Decline("help")
        name, eq, value = token.partition("=") if token[:2] == "--" else (token, "", "")
        hit = names.get(name)
        if hit is None:
            if token[:2] == "--" or len(token) == 2:
                raise Problem(f"No such option: {name}")
            raise Decline("short options run together, or a value attached")
        p, on = hit
        if p["flag"]:
            if eq:
                raise Problem(f"Option '{name}' does not take a value.")
            given[p["name"]] = on
            continue
        if not eq:
            if i >= len(tokens):
                raise Problem(f"Option '{name}' requires an argument.")
            value = tokens[i]
            i += 1
            if value[:1] == "-" and value != "-":
                raise Decline("an option's value that looks like an option")
        if p["multiple"]:
            given.setdefault(p["name"], []).append(value)
        else:
            given[p["name"]] = value
    if after is not None:
        if rest is not None:
            given[rest["name"]] = after
        else:
            words += after
    for p in params:
        if p["kind"] != "argument" or p is rest:
            continue
        if p["nargs"] == -1:
            if words:
                given[p["name"]] = words
            words = []
        elif words:
            given[p["name"]] = words.pop(0)
    if words:
        raise Problem(f"Got unexpected extra argument(s) ({' '.join(words)})")
    kwargs = {}
    for p in params:
        if p is rest:
            kwargs[p["name"]] = given.get(p["name"])
            continue
        if p["name"] in given:
            value = given[p["name"]]
        elif p["required"]:
            kind = "argument" if p["kind"] == "argument" else "option"
            raise Problem(f"Missing {kind} {p['hint']}.")
        else:
            value = p["default"]
        kwargs[p["name"]] = convert(p, value)
    return kwargs


def convert(p: dict[str, Any], value: Any) -> Any:
    """A value from the command line (or the default), as Typer hands it to the command."""
    if value is None or isinstance(value, bool):
        return value  # not given (Typer passes None), or a flag
    if p["list"]:
        items = [_scalar(p, v) for v in value]
        # an empty list is None unless the default is a list (typer.main's normalizing)
        return items if items or p["default"] is not None else None
    return _scalar(p, value)


def _scalar(p: dict[str, Any], value: Any) -> Any:
    kind = p["type"]
    if not isinstance(value, str):  # a default of another type
        if kind == "int" and type(value) is int:
            return _in_range(p, value)
        if kind == "float" and type(value) in (int, float):
            return _in_range(p, float(value))
        raise Decline(f"{p['name']}: a default that is not a string")
    if kind == "str":
        return value
    if kind == "int":
        if not _is_int(value):
            raise Problem(
                f"Invalid value for {p['hint']}: Input should be a valid integer, "
                "unable to parse string as an integer"
            )
        return _in_range(p, int(value))
    if kind == "float":
        if not _is_float(value):
            raise Problem(
                f"Invalid value for {p['hint']}: Input should be a valid number, "
                "unable to parse string as a number"
            )
        return _in_range(p, float(value))
    if kind == "choice":
        if value not in p["choices"]:
            choices = ", ".join(repr(c) for c in p["choices"])
            raise Problem(
                f"Invalid value for {p['hint']}: Value error, {value!r} is not one of {choices}."
            )
        import importlib

        module, qualname = p["enum"]
        return getattr(importlib.import_module(module), qualname)(value)
    if kind == "path":
        return _path(p, value)
    raise Decline(f"{p['name']}: {kind}")


def _in_range(p: dict[str, Any], number: Any) -> Any:
    low, high = p.get("min"), p.get("max")
    if (low is not None and number < low) or (high is not None and number > high):
        raise Problem(f"Invalid value for {p['hint']}: {number} is not in the range")
    return number


def _is_int(text: str) -> bool:
    digits = text[1:] if text[:1] in "+-" else text
    return digits.isascii() and digits.isdigit()


def _is_float(text: str) -> bool:
    body = text[1:] if text[:1] in "+-" else text
    mantissa, e, exponent = body.lower().partition("e")
    if e and not _is_int(exponent):
        return False
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    return bool(digits) and digits.isascii() and digits.isdigit()


def _path(p: dict[str, Any], value: str) -> Any:
    """Typer's path checks (typer._param_types.coerce_cli_path), in the same order."""
    import stat
    from pathlib import Path

    checks = p["path"]
    if not value:
        raise Decline("an empty path")
    if checks["file_okay"] and checks["allow_dash"] and value == "-":
        return Path(value)
    rv = os.path.realpath(value) if checks["resolve_path"] else value
    label = "path"  # typer._param_types.path_type_name
    if checks["file_okay"] != checks["dir_okay"]:
        label = "file" if checks["file_okay"] else "dir"
    try:
        st = os.stat(rv)
    except OSError:
        if not checks["exists"]:
            return Path(rv)
        raise Problem(f"Invalid value for {p['hint']}: {label} {value!r} does not exist.") from None
    what = None
    if not checks["file_okay"] and stat.S_ISREG(st.st_mode):
        what = "is a file"
    elif not checks["dir_okay"] and stat.S_ISDIR(st.st_mode):
        what = "is a directory"
    elif checks["readable"] and not os.access(rv, os.R_OK):
        what = "is not readable"
    elif checks["writable"] and not os.access(rv, os.W_OK):
        what = "is not writable"
    if what is not None:
        raise Problem(f"Invalid value for {p['hint']}: {label} {value!r} {what}.")
    return Path(rv)
