"""Renders every ``--help`` screen of the command line through Typer, once, into
``_help_screens.json``, which :mod:`motte.cli._help` prints without importing Typer; and
records every command's parameters, as Typer's click objects hold them, into
``_commands.json``, from which :mod:`motte.cli._direct` runs a command without Typer.

    python -m motte.cli._helpgen            # rewrite both files
    python -m motte.cli._helpgen --check    # exit 1 if either is not what Typer makes now

Why: importing Typer (which imports Rich and pydantic) costs 150 to 400 ms, twenty times
Python's own start-up, and ``--help`` is what people run most when they learn a tool. The
screens are Typer's own output, byte for byte, at 80 columns, with Rich's styles (plain
text is the same with the escape sequences removed), so the help keeps one source: the
commands' docstrings and parameters. tests/test_cli.py fails when the file is stale, and
the fast path itself refuses a file made from other command sources (it falls back to
Typer), so a stale screen is never shown.

The parameter spec is read off the same click command Typer builds (option names, flags,
types, defaults, requiredness, argument order), so running a command has one source too:
the declarations in the command modules. A parameter the direct path cannot reproduce
exactly (a callback, an environment variable, a prompt, a type other than str, int,
float, bool, Path, an enum or a list of them...) marks its command for Typer, with the
reason recorded.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any

from motte.cli._direct import COMMANDS_FILE, FORMAT
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


# -- the parameter spec of every command -------------------------------------------------

#: Typer's parameter settings the direct path reproduces; any other setting that differs
#: from Typer's default sends the command to Typer.
_DEFAULTS = {
    "callback": None,
    "envvar": None,
    "is_eager": False,
    "expose_value": True,
    "parser": None,
    "default_factory": None,
    "clamp": False,
    "formats": None,
    "case_sensitive": True,
    "path_type": None,
    "prompt": False,
    "count": False,
    "flag_value": None,
}
_PATH_CHECKS = (
    "exists",
    "file_okay",
    "dir_okay",
    "readable",
    "writable",
    "resolve_path",
    "allow_dash",
)


class Unsupported(Exception):
    """The direct path cannot reproduce this: Typer runs the command."""


def _type_spec(annotation: Any, info: Any) -> dict[str, Any]:
    from enum import Enum
    from pathlib import PurePath

    if annotation is bool:
        return {"type": "bool"}
    if annotation in (str, int, float):
        return {"type": annotation.__name__}
    if isinstance(annotation, type) and issubclass(annotation, PurePath):
        if annotation is not Path:
            raise Unsupported(f"path type {annotation.__name__}")
        return {"type": "path", "path": {k: getattr(info, k) for k in _PATH_CHECKS}}
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        module = sys.modules.get(annotation.__module__)
        if getattr(module, annotation.__qualname__, None) is not annotation:
            raise Unsupported(f"enum {annotation.__qualname__} not at its module's top")
        if not annotation.__module__.startswith("motte.cli."):
            # the sources checksum covers motte/cli alone
            raise Unsupported(f"enum {annotation.__qualname__} outside motte.cli")
        choices = [member.value for member in annotation]
        if not all(isinstance(c, str) for c in choices):
            raise Unsupported(f"enum {annotation.__qualname__} with values other than str")
        return {
            "type": "choice",
            "choices": choices,
            "enum": [annotation.__module__, annotation.__qualname__],
        }
    raise Unsupported(f"type {annotation!r}")


def _json_default(value: Any) -> Any:
    from enum import Enum

    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, Path):
        value = str(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value):
        return list(value)
    raise Unsupported(f"default {value!r}")


def _own_markers(func: Any) -> dict[str, dict[str, Any]]:
    """Per parameter, our own keyword arguments of its recorded Option/Argument."""
    import inspect
    from typing import get_type_hints

    from motte.cli._typer import _OWN_KWARGS, Param

    hints = get_type_hints(func, include_extras=True)
    out: dict[str, dict[str, Any]] = {}
    for p in inspect.signature(func).parameters.values():
        records = [
            m for m in getattr(hints.get(p.name), "__metadata__", ()) if isinstance(m, Param)
        ]
        if isinstance(p.default, Param):
            records.append(p.default)
        for record in records:
            own = {k: v for k, v in record.kwargs.items() if k in _OWN_KWARGS}
            if own:
                out[p.name] = own
    return out


def _param_spec(param: Any, markers: dict[str, Any]) -> dict[str, Any]:
    from typing import get_args

    info = param.type_descriptor.parameter_info
    for name, default in _DEFAULTS.items():
        value = getattr(param, name, getattr(info, name, default))
        if name == "prompt" and value is None:
            value = False
        if value != default and not (name == "count" and value is False):
            raise Unsupported(f"{param.name}: {name}={value!r}")
    desc = param.type_descriptor
    if desc.is_tuple or desc.is_file or desc.is_datetime:
        raise Unsupported(f"{param.name}: tuple, file or datetime type")
    annotation = desc.annotation
    if desc.is_list:
        (annotation,) = get_args(annotation)
    spec: dict[str, Any] = {"name": param.name, "kind": param.param_type_name}
    spec["hint"] = param.get_error_hint()  # how click's messages name it
    spec.update(_type_spec(annotation, info))
    for bound in ("min", "max"):
        if getattr(param, bound, None) is not None:
            if spec["type"] not in ("int", "float"):
                raise Unsupported(f"{param.name}: {bound} on a {spec['type']}")
            spec[bound] = getattr(param, bound)
    spec["list"] = bool(desc.is_list)
    spec["required"] = bool(param.required)
    spec["default"] = _json_default(param.default)
    if param.param_type_name == "option":
        if param.nargs != 1:
            raise Unsupported(f"{param.name}: nargs={param.nargs}")
        spec["opts"] = list(param.opts)
        spec["off"] = list(param.secondary_opts)
        spec["flag"] = bool(param.is_flag)
        spec["multiple"] = bool(param.multiple)
        if spec["flag"] and (spec["type"] != "bool" or spec["multiple"]):
            raise Unsupported(f"{param.name}: a flag that is not a single bool")
        if spec["off"] and not spec["flag"]:
            raise Unsupported(f"{param.name}: secondary names on a value option")
    else:
        if param.nargs not in (1, -1):
            raise Unsupported(f"{param.name}: nargs={param.nargs}")
        spec["nargs"] = param.nargs
        if markers.get("after_dashes"):
            if param.nargs != -1:
                raise Unsupported(f"{param.name}: after_dashes on a single argument")
            spec["after_dashes"] = True
    return spec


def _command_spec(command: Any, ctx: Any) -> dict[str, Any]:
    import inspect

    func = inspect.unwrap(command.callback)
    module = sys.modules.get(func.__module__)
    if getattr(module, func.__qualname__, None) is not func:
        raise Unsupported(f"{func.__qualname__} is not at its module's top")
    if command.context_settings or not command.allow_interspersed_args:
        raise Unsupported(f"context settings {command.context_settings!r}")
    markers = _own_markers(func)
    params = [_param_spec(p, markers.get(p.name, {})) for p in command.params]
    arguments = [p for p in params if p["kind"] == "argument" and not p.get("after_dashes")]
    if any(p["nargs"] == -1 for p in arguments[:-1]):
        raise Unsupported("a variadic argument before another")
    if sum(bool(p.get("after_dashes")) for p in params) > 1:
        raise Unsupported("two after_dashes arguments")
    return {
        "function": [func.__module__, func.__qualname__],
        "usage": ctx.get_usage(),
        "help": list(ctx.help_option_names),
        "params": params,
    }


def _contexts(group: Any, ctx: Any) -> list[tuple[tuple[str, ...], Any, Any]]:
    from typer._click import Context

    found = []
    for name, sub in sorted(getattr(group, "commands", {}).items()):
        sub_ctx = Context(sub, info_name=name, parent=ctx, **sub.context_settings)
        path = (*_path_of(ctx)[1:], name)
        if getattr(sub, "commands", None) is not None:
            found += _contexts(sub, sub_ctx)
        else:
            found.append((path, sub, sub_ctx))
    return found


def _path_of(ctx: Any) -> list[str]:
    names = []
    while ctx is not None:
        names.append(ctx.info_name)
        ctx = ctx.parent
    return names[::-1]


def record_commands() -> dict[str, Any]:
    """Every command's parameter spec: {"format", "sources", "commands": {path: spec}}; a
    command the direct path cannot run exactly is {"typer": reason}."""
    import typer.main
    from typer._click import Context

    from motte.cli import build_app

    root = typer.main.get_command(build_app())
    root_ctx = Context(root, info_name="motte", **root.context_settings)
    commands: dict[str, Any] = {}
    for path, command, ctx in _contexts(root, root_ctx):
        try:
            commands[" ".join(path)] = _command_spec(command, ctx)
        except Unsupported as e:
            commands[" ".join(path)] = {"typer": str(e)}
    return {"format": FORMAT, "sources": sources_digest(), "commands": commands}


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=0, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    files = {
        SCREENS_FILE: dumps(render_screens()),
        COMMANDS_FILE: dumps(record_commands()),
    }
    if argv == ["--check"]:
        status = 0
        for name, text in files.items():
            path = Path(name)
            current = path.read_text(encoding="utf-8") if path.exists() else ""
            if current != text:
                print(f"{name}: stale; run: python -m motte.cli._helpgen", file=sys.stderr)
                status = 1
        return status
    if argv:
        print("usage: python -m motte.cli._helpgen [--check]", file=sys.stderr)
        return 2
    from motte.fsutil import atomic_write_bytes

    for name, text in files.items():
        atomic_write_bytes(Path(name), text.encode("utf-8"))
        print(f"wrote {name} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
