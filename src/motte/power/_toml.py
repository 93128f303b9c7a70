"""Strict reading of TOML tables: every key checked, every unknown key refused.

A typo in a shutdown plan (``depend_on``) must fail loudly, not silently leave a host out of
the order. Errors name the file, the line and the key, as
``plan.toml:12: hosts.nas.stop_time``.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from motte._toml import KeyPath, key_lines, location, read_toml
from motte.errors import MotteError

#: A plan or scenario is a page of TOML, not a data file.
MAX_TOML_BYTES = 1024 * 1024


def load_table(path: Path, error: type[MotteError], *, what: str) -> Table:
    """The top table of the TOML file at ``path``; ``error`` names the file and line."""
    data, text = read_toml(path, what=what, max_bytes=MAX_TOML_BYTES, error=error)
    return Table(data, (), path, error, key_lines(text))


class Table:
    """One TOML table being read; :meth:`done` refuses keys nobody asked for."""

    def __init__(
        self,
        data: Any,
        path: KeyPath,
        source: Path,
        error: type[MotteError],
        lines: dict[KeyPath, int] | None = None,
    ) -> None:
        self.path = path
        self.source = source
        self.error = error
        self.lines = lines or {}
        if not isinstance(data, dict):
            raise self._fail(path, f"must be a table, not {_kind(data)}")
        self.data: dict[str, Any] = data
        self._seen: set[str] = set()

    def _fail(self, path: KeyPath, message: str, hint: str | None = None) -> MotteError:
        return self.error(f"{location(str(self.source), self.lines, path)}: {message}", hint=hint)

    def key(self, name: str | int) -> KeyPath:
        return (*self.path, name)

    def fail(self, name: str | int, message: str, hint: str | None = None) -> MotteError:
        return self._fail(self.key(name), message, hint)

    def has(self, name: str) -> bool:
        return name in self.data

    def raw(self, name: str) -> Any:
        self._seen.add(name)
        return self.data.get(name)

    def table(self, name: str, *, required: bool = False) -> Table | None:
        value = self.raw(name)
        if value is None:
            if required:
                raise self.fail(name, "is required")
            return None
        return Table(value, self.key(name), self.source, self.error, self.lines)

    def str(self, name: str, default: str | None = None, *, choices: tuple[str, ...] = ()) -> Any:
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, str) or not value:
            raise self.fail(name, f"must be a non-empty string, not {_kind(value)}")
        if choices and value not in choices:
            raise self.fail(name, f"must be one of {', '.join(choices)}, not {value!r}")
        return value

    def num(
        self, name: str, default: float | None = None, *, low: float = 0, high: float | None = None
    ) -> Any:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(name, f"must be a number, not {_kind(value)}")
        if value != value or value in (float("inf"), float("-inf")):  # TOML has nan and inf
            raise self.fail(name, f"must be a finite number, not {value}")
        if value < low or (high is not None and value > high):
            span = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
            raise self.fail(name, f"must be {span}, not {value:g}")
        return float(value)

    def bool(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.fail(name, f"must be true or false, not {_kind(value)}")
        return value

    def str_list(self, name: str) -> tuple[str, ...]:
        value = self.raw(name)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self.fail(name, "must be a list of non-empty strings")
        return tuple(value)

    def command(self, name: str) -> tuple[str, ...] | None:
        """A command: an argv list, or a string split as a POSIX shell would (no shell runs)."""
        value = self.raw(name)
        if value is None:
            return None
        if isinstance(value, str):
            try:
                argv = shlex.split(value)
            except ValueError as e:
                raise self.fail(name, f"cannot split command: {e}") from None
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            argv = list(value)
        else:
            raise self.fail(name, "must be a command: a string or a list of strings")
        if not argv or not argv[0]:
            raise self.fail(name, "is an empty command")
        return tuple(argv)

    def done(self) -> None:
        unknown = sorted(set(self.data) - self._seen)
        if unknown:
            raise self.fail(unknown[0], "unknown key", hint=f"known keys here: {self._known()}")

    def _known(self) -> str:
        return ", ".join(sorted(self._seen)) or "(none)"


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)
