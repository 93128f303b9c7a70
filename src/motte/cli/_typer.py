"""What the command modules declare through, instead of Typer itself: ``from motte.cli
import _typer as typer``, then ``typer.Typer``, ``typer.Option``, ``typer.Argument``,
``typer.BadParameter``, ``typer.echo`` as with Typer.

Why: importing Typer (with Rich and pydantic) costs 150 to 400 ms, more than most commands
do. Here ``Option(...)`` and ``Argument(...)`` only record their arguments, and ``Typer()``
only records its commands, so importing a command module costs next to nothing. Two readers
turn the records into a command line:

- Typer, for ``--help`` rendering (:mod:`motte.cli._helpgen`) and every command line the
  direct path declines: :func:`to_typer` replays each record as the real ``typer.Option``
  / ``typer.Typer`` call, so Typer sees exactly what it would have been given;
- :mod:`motte.cli._direct`, which parses a plain command line from the parameter spec that
  :mod:`motte.cli._helpgen` recorded from Typer's own click objects, and calls the command
  function itself.

One declaration, read by both; the spec is used only while it was made from these sources
(a checksum, as the help screens). This module imports nothing but ``sys``.

One addition Typer does not have: ``Argument(..., after_dashes=True)`` on a variadic argument
means it takes exactly the words after ``--`` (all of them, options or not; ``--`` alone
gives an empty list), and any other extra word is a usage error. A command declaring one
runs a guest whose exit status is its own, so its usage errors exit 125 in one line (see
:mod:`motte.cli._direct`). Typer ignores the marker.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing's: this module stays as cheap as an empty one
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "Abort",
    "Argument",
    "BadParameter",
    "Exit",
    "Option",
    "Typer",
    "echo",
    "prompt",
    "to_typer",
]

#: Keyword arguments of ours that are not Typer's (removed before Typer sees them).
_OWN_KWARGS = ("after_dashes",)


class Param:
    """A recorded ``typer.Option(...)`` or ``typer.Argument(...)`` call."""

    __slots__ = ("args", "kind", "kwargs")

    def __init__(self, kind: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.kind = kind
        self.args = args
        self.kwargs = kwargs

    def __repr__(self) -> str:
        return f"{self.kind}(*{self.args!r}, **{self.kwargs!r})"


def Option(*args: Any, **kwargs: Any) -> Any:
    return Param("Option", args, kwargs)


def Argument(*args: Any, **kwargs: Any) -> Any:
    return Param("Argument", args, kwargs)


class Typer:
    """A recorded ``typer.Typer(...)``: its settings, commands, sub-apps and callback."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.commands: list[tuple[str | None, Any, dict[str, Any]]] = []
        self.groups: list[tuple[Typer, dict[str, Any]]] = []
        self.callback_info: tuple[Any, dict[str, Any]] | None = None

    def command(self, name: str | None = None, **kwargs: Any) -> Any:
        def register(func: Any) -> Any:
            self.commands.append((name, func, kwargs))
            return func

        return register

    def add_typer(self, app: Typer, **kwargs: Any) -> None:
        self.groups.append((app, kwargs))

    def callback(self, **kwargs: Any) -> Any:
        def register(func: Any) -> Any:
            self.callback_info = (func, kwargs)
            return func

        return register


class BadParameter(Exception):
    """A parameter's value is wrong: reported as Typer reports it (usage, exit 2)."""

    def __init__(self, message: str, param_hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param_hint = param_hint

    def format_message(self) -> str:
        """click's words for it."""
        if self.param_hint is None:
            return f"Invalid value: {self.message}"
        return f"Invalid value for {self.param_hint}: {self.message}"


class Exit(Exception):
    def __init__(self, code: int = 0) -> None:
        super().__init__(code)
        self.exit_code = code


class Abort(Exception):
    pass


def echo(
    message: Any = None, file: Any = None, nl: bool = True, err: bool = False, color: Any = None
) -> None:
    """``typer.echo`` (click's): the message and a newline, flushed."""
    out = file if file is not None else (sys.stderr if err else sys.stdout)
    if isinstance(message, bytes | bytearray):
        out.flush()
        out.buffer.write(bytes(message) + (b"\n" if nl else b""))
        out.buffer.flush()
        return
    text = "" if message is None else str(message)
    out.write(text + "\n" if nl else text)
    out.flush()


def prompt(*args: Any, **kwargs: Any) -> Any:
    """``typer.prompt``: interactive, so Typer's start-up does not matter here."""
    import typer

    try:
        return typer.prompt(*args, **kwargs)
    except typer.Abort:
        raise Abort() from None


# -- for Typer: the records replayed as Typer's own objects ---------------------------------


def to_typer(obj: Any) -> Any:
    """A real ``typer.Typer`` for a recorded one; a function Typer can read for a command
    function (its annotations evaluated, recorded parameters made Typer's)."""
    import typer

    if isinstance(obj, typer.Typer):
        return obj  # a module that still declares through Typer itself
    if not isinstance(obj, Typer):
        return typer_function(obj)
    app = typer.Typer(**obj.kwargs)
    if obj.callback_info is not None:
        func, kwargs = obj.callback_info
        app.callback(**kwargs)(typer_function(func))
    for name, func, kwargs in obj.commands:
        app.command(name, **kwargs)(typer_function(func))
    for sub, kwargs in obj.groups:
        app.add_typer(to_typer(sub), **kwargs)
    return app


def real_param(param: Param) -> Any:
    import typer

    kwargs = {k: v for k, v in param.kwargs.items() if k not in _OWN_KWARGS}
    return getattr(typer, param.kind)(*param.args, **kwargs)


def _real_annotation(annotation: Any) -> Any:
    from typing import Annotated, get_args, get_origin

    if get_origin(annotation) is not Annotated:
        return annotation
    base, *meta = get_args(annotation)
    meta = [real_param(m) if isinstance(m, Param) else m for m in meta]
    return Annotated[(base, *meta)]


def typer_function(func: Any) -> Any:
    """``func`` as Typer should see it: the same name, docstring and parameters, with the
    annotations evaluated and our records replaced by Typer's objects; our exceptions raised
    inside become Typer's (so Typer reports them as it reports its own)."""
    import functools
    import inspect
    from typing import get_type_hints

    import typer

    hints = get_type_hints(func, include_extras=True)
    signature = inspect.signature(func)
    params = []
    for p in signature.parameters.values():
        default = real_param(p.default) if isinstance(p.default, Param) else p.default
        annotation = _real_annotation(hints.get(p.name, p.annotation))
        params.append(p.replace(annotation=annotation, default=default))
    returns = hints.get("return", signature.return_annotation)

    @functools.wraps(func)
    def command(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except BadParameter as e:
            raise typer.BadParameter(e.message, param_hint=e.param_hint) from None
        except Exit as e:
            raise typer.Exit(e.exit_code) from None
        except Abort:
            raise typer.Abort() from None

    command.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=params, return_annotation=returns
    )
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__annotations__["return"] = returns
    return command
