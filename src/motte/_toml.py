"""Configuration files in TOML, read one way everywhere: bounded, UTF-8, strict, and every
error naming the file, the line and the key (manifests, attestation and trust policies, the
Steward's config, power plans and scenarios).

:func:`read_toml` reads and decodes a file and parses it; :func:`key_lines` finds the line
where each key is defined. Reading a table strictly is :class:`Table` (typed getters, and
:meth:`Table.done` refuses every key nobody asked for) or, for validators that also check
command-line flags and so know no file, :func:`check_keys` raising :class:`Invalid` with
the key path, which the caller turns into its error with :func:`location`. Either way an
unknown key reads ``Motte.toml:3: limits.stack: unknown key (known here: cpu_time, memory,
wall_time)`` with a ``did you mean`` hint when one is close.

``tomllib`` returns plain dicts without positions, so an error such as "limits.memory must be
a whole number" could not say where to look. :func:`key_lines` scans the source once more and
maps every key path to the 1-based line that defines it:

    ("limits", "memory")   ->  7     (from ``[limits]`` + ``memory = ...``, ``limits.memory``
                                      or ``limits = { memory = ... }``)
    ("dir", 1, "host")     ->  15    (the second ``[[dir]]`` table, or ``dir = [{...}, {...}]``)

The scanner runs only on text ``tomllib`` has already accepted, so it may be lenient: it
tokenizes strings, comments and punctuation exactly, and treats every other run of characters
as one word. It never raises on valid TOML; :func:`line_of` falls back to the nearest
enclosing key it knows.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from motte.errors import MotteError

KeyPath = tuple[str | int, ...]

_PUNCT = frozenset("[]{}=,.")
_WORD_END = frozenset(" \t\r\n#\"'") | _PUNCT
_ESCAPE = "\\"


class _Tok(NamedTuple):
    kind: str  # "word", "str", "nl", or the punctuation character itself
    text: str
    line: int
    col: int


def _tokens(src: str) -> Iterator[_Tok]:
    i, line, col0 = 0, 1, 0
    n = len(src)
    while i < n:
        c = src[i]
        if c == "\n":
            yield _Tok("nl", "\n", line, i - col0)
            i += 1
            line += 1
            col0 = i
        elif c in " \t\r":
            i += 1
        elif c == "#":
            while i < n and src[i] != "\n":
                i += 1
        elif c in "\"'":
            start, start_line, start_col = i, line, i - col0
            triple = src.startswith(c * 3, i)
            if triple:
                i += 3
                while i < n and not src.startswith(c * 3, i):
                    if src[i] == _ESCAPE and c == '"':
                        i += 1
                    elif src[i] == "\n":
                        line += 1
                        col0 = i + 1
                    i += 1
                i += 3
                # A closing delimiter may be followed by up to two more quotes of content.
                while i < n and src[i] == c:
                    i += 1
            else:
                i += 1
                while i < n and src[i] != c and src[i] != "\n":
                    if src[i] == _ESCAPE and c == '"':
                        i += 1
                    i += 1
                i += 1
            yield _Tok("str", _unquote(src[start:i]), start_line, start_col)
        elif c in _PUNCT:
            yield _Tok(c, c, line, i - col0)
            i += 1
        else:
            start = i
            i += 1  # always progress, whatever the character
            while i < n and src[i] not in _WORD_END:
                i += 1
            yield _Tok("word", src[start:i], line, start - col0)


def _unquote(s: str) -> str:
    """The text of a single-line key string (keys cannot be multi-line strings)."""
    if s.startswith(("'''", '"""')):
        return s[3:-3]
    body = s[1:-1]
    if s[0] == "'" or _ESCAPE not in body:
        return body
    # Keys with escapes are rare; decode the common ones and keep the rest verbatim.
    simple = {"n": "\n", "t": "\t", '"': '"', _ESCAPE: _ESCAPE, "r": "\r", "b": "\b", "f": "\f"}
    out, j = [], 0
    while j < len(body):
        ch = body[j]
        if ch == _ESCAPE and j + 1 < len(body):
            nxt = body[j + 1]
            if nxt in simple:
                out.append(simple[nxt])
                j += 2
                continue
            if nxt in "uU":
                width = 4 if nxt == "u" else 8
                try:
                    out.append(chr(int(body[j + 2 : j + 2 + width], 16)))
                    j += 2 + width
                    continue
                except ValueError:
                    pass
        out.append(ch)
        j += 1
    return "".join(out)


class _Scanner:
    def __init__(self, src: str) -> None:
        self.toks = list(_tokens(src))
        self.pos = 0
        self.lines: dict[KeyPath, int] = {}
        #: Index of the last table of each array of tables (``[[dir]]``), by its key path.
        self.array_tables: dict[KeyPath, int] = {}

    def peek(self, offset: int = 0) -> _Tok | None:
        j = self.pos + offset
        return self.toks[j] if j < len(self.toks) else None

    def take(self) -> _Tok:
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def skip_newlines(self) -> None:
        while (tok := self.peek()) is not None and tok.kind == "nl":
            self.pos += 1

    def record(self, path: KeyPath, line: int) -> None:
        self.lines.setdefault(path, line)

    def key(self) -> list[str]:
        """A dotted key: ``a``, ``a.b``, ``"quoted".b``."""
        parts = []
        while (tok := self.peek()) is not None and tok.kind in ("word", "str"):
            self.pos += 1
            # A bare word such as ``1.5`` never reaches here as a key; words are split on '.'.
            parts.append(tok.text)
            if (dot := self.peek()) is not None and dot.kind == ".":
                self.pos += 1
                continue
            break
        return parts

    def resolve(self, parts: list[str]) -> KeyPath:
        """A header's key path, with the current index of every array of tables it passes."""
        path: KeyPath = ()
        for part in parts:
            path = (*path, part)
            if path in self.array_tables:
                path = (*path, self.array_tables[path])
        return path

    def document(self) -> None:
        table: KeyPath = ()
        while (tok := self.peek()) is not None:
            if tok.kind == "nl":
                self.pos += 1
            elif tok.kind == "[":
                nxt = self.peek(1)
                is_array = nxt is not None and nxt.kind == "[" and nxt.col == tok.col + 1
                self.pos += 2 if is_array else 1
                parts = self.key()
                while (end := self.peek()) is not None and end.kind == "]":
                    self.pos += 1
                if is_array:
                    base = (*self.resolve(parts[:-1]), parts[-1])
                    index = self.array_tables.get(base, -1) + 1
                    self.array_tables[base] = index
                    self.record(base, tok.line)
                    table = (*base, index)
                else:
                    table = self.resolve(parts)
                self.record(table, tok.line)
            else:
                self.pair(table)

    def pair(self, table: KeyPath) -> None:
        start = self.peek()
        parts = self.key()
        if start is None or not parts:
            self.pos += 1  # not a key: step over it rather than loop
            return
        path = table
        for part in parts:
            path = (*path, part)
            self.record(path, start.line)
        if (eq := self.peek()) is not None and eq.kind == "=":
            self.pos += 1
            self.value(path)

    def value(self, path: KeyPath) -> None:
        tok = self.peek()
        if tok is None:
            return
        if tok.kind == "{":
            self.pos += 1
            while (t := self.peek()) is not None and t.kind != "}":
                if t.kind in (",", "nl"):
                    self.pos += 1
                else:
                    self.pair(path)
            self.pos += 1
        elif tok.kind == "[":
            self.pos += 1
            index = 0
            while True:
                self.skip_newlines()
                t = self.peek()
                if t is None or t.kind == "]":
                    self.pos += 1
                    return
                if t.kind == ",":
                    self.pos += 1
                    index += 1
                    continue
                self.record((*path, index), t.line)
                self.value((*path, index))
        else:
            # A scalar: one string, or words and dots (``3.14``, ``1979-05-27 07:32:00``).
            while (t := self.peek()) is not None and t.kind in ("word", "str", "."):
                self.pos += 1


def key_lines(src: str) -> dict[KeyPath, int]:
    """Every key path defined in ``src`` (TOML that ``tomllib`` accepted) -> its line."""
    scanner = _Scanner(src)
    scanner.document()
    return scanner.lines


def line_of(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    """The line of ``path``, or of the nearest enclosing key that has one."""
    for end in range(len(path), 0, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


def format_path(path: KeyPath) -> str:
    """``("dir", 1, "host")`` -> ``dir[1].host``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def location(source: str, lines: dict[KeyPath, int], path: KeyPath) -> str:
    """``source:line: key`` (or ``source: key`` when the line is unknown) for an error."""
    line = line_of(lines, path)
    where = f"{source}:{line}" if line else source
    return f"{where}: {format_path(path)}" if path else where


def read_text(
    path: str | os.PathLike[str],
    *,
    what: str,
    max_bytes: int,
    error: type[MotteError],
    name: str | None = None,
    missing: type[MotteError] | None = None,
) -> str:
    """The UTF-8 text of a configuration file of at most ``max_bytes``.

    Failures raise ``error`` (``missing`` for a file that does not exist, when given) naming
    the file as ``name`` (default: the path) and, for a byte that is not UTF-8, its line.
    ``what`` names the kind of file in messages ("manifest", "trust policy").
    """
    from motte._regular_file import read_regular

    name = str(path) if name is None else name
    try:
        # A FIFO or a device fails at once instead of blocking the reader.
        raw = read_regular(path, max_bytes)
    except FileNotFoundError:
        raise (missing or error)(f"{name}: no such {what}") from None
    except IsADirectoryError:
        raise error(f"{name}: is a directory, not a {what}") from None
    except OSError as e:
        raise error(f"{name}: cannot read: {e.strerror or e}") from None
    if len(raw) > max_bytes:
        raise error(f"{name}: larger than {max_bytes // 1024} KiB for a {what}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise error(f"{name}:{line}: not UTF-8 text (byte {e.start})") from None


_TOML_POSITION = re.compile(r"^(?P<msg>.*?)\s*\(at line (?P<line>\d+), column (?P<col>\d+)\)$")
_TOML_AT_END = re.compile(r"^(?P<msg>.*?)\s*\(at end of document\)$")


def parse_toml(text: str, *, source: str, error: type[MotteError]) -> dict[str, Any]:
    """``tomllib.loads`` with its error turned into ``error`` naming ``source`` and the line."""
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = _TOML_POSITION.match(str(e))
        if m:
            raise error(
                f"{source}:{m['line']}: invalid TOML: {m['msg']} (column {m['col']})"
            ) from None
        m = _TOML_AT_END.match(str(e))
        if m:
            last = text.count("\n") + (0 if text.endswith("\n") else 1)
            raise error(
                f"{source}:{last}: invalid TOML: {m['msg']} (at the end of the file)"
            ) from None
        raise error(f"{source}: invalid TOML: {e}") from None


def read_toml(
    path: str | os.PathLike[str], *, what: str, max_bytes: int, error: type[MotteError]
) -> tuple[dict[str, Any], str]:
    """The parsed document and its text (for :func:`key_lines`)."""
    source = str(path)
    text = read_text(path, what=what, max_bytes=max_bytes, error=error)
    return parse_toml(text, source=source, error=error), text


# -- strict tables -----------------------------------------------------------------------


class Invalid(Exception):
    """The value at ``path`` is wrong: the one-line ``reason`` and an optional ``hint``.

    Raised by validators that know the key path but not the file (a manifest value and the
    ``motte run`` flag that sets it are checked by one function); the reader that knows the
    file turns it into its own error with :func:`location`.
    """

    def __init__(self, path: KeyPath, reason: str, hint: str | None = None) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason
        self.hint = hint


def check_keys(
    table: Mapping[str, Any], known: Iterable[str], path: KeyPath, *, hint: str | None = None
) -> None:
    """Raise :class:`Invalid` at the first key of ``table`` (at ``path``) not in ``known``.

    The reason lists the known keys; the hint is ``hint`` when given, else the closest
    known key ("did you mean ...?") when one is close.
    """
    names = sorted(known)
    for key in table:
        if key not in names:
            if hint is None:
                import difflib

                close = difflib.get_close_matches(key, names, n=1)
                hint = f"did you mean {close[0]!r}?" if close else None
            listed = f"known here: {', '.join(names)}" if names else "this table takes no keys"
            raise Invalid((*path, key), f"unknown key ({listed})", hint)


def _kind(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


class Table:
    """One TOML table being read strictly; :meth:`done` refuses keys nobody asked for.

    Errors are ``error`` (the file's :class:`MotteError` kind) naming ``source``, the line
    (from ``lines``, :func:`key_lines` of the file's text) and the key path.
    """

    def __init__(
        self,
        data: Any,
        path: KeyPath,
        source: str | os.PathLike[str],
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
        """The error to raise for the value of ``name`` in this table."""
        return self._fail(self.key(name), message, hint)

    def invalid(self, e: Invalid) -> MotteError:
        """The error to raise for an :class:`Invalid` whose path is in this file."""
        return self._fail(e.path, e.reason, e.hint)

    def sub(self, data: Any, path: KeyPath) -> Table:
        """``data`` read as the table at key ``path`` of the same file."""
        return Table(data, path, self.source, self.error, self.lines)

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
        return self.sub(value, self.key(name))

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

    def check_keys(self, known: Iterable[str], *, hint: str | None = None) -> None:
        """Refuse any key not in ``known`` (for a reader that walks a schema, not getters)."""
        try:
            check_keys(self.data, known, self.path, hint=hint)
        except Invalid as e:
            raise self.invalid(e) from None

    def done(self) -> None:
        """Refuse any key none of the getters above asked for."""
        self.check_keys(self._seen)

    def _known(self) -> str:
        """The keys read so far, for a message."""
        return ", ".join(sorted(self._seen)) or "(none)"


#: A plan or scenario is a page of TOML, not a data file.
MAX_TABLE_BYTES = 1024 * 1024


def load_table(
    path: Path, error: type[MotteError], *, what: str, max_bytes: int = MAX_TABLE_BYTES
) -> Table:
    """The top table of the TOML file at ``path``; ``error`` names the file and line."""
    data, text = read_toml(path, what=what, max_bytes=max_bytes, error=error)
    return Table(data, (), path, error, key_lines(text))


def parse_table(text: str, *, source: str, error: type[MotteError]) -> Table:
    """The top table of TOML ``text`` read from ``source``."""
    return Table(parse_toml(text, source=source, error=error), (), source, error, key_lines(text))


__all__ = [
    "Invalid",
    "KeyPath",
    "Path",
    "Table",
    "check_keys",
    "format_path",
    "key_lines",
    "line_of",
    "load_table",
    "location",
    "parse_table",
    "parse_toml",
    "read_text",
    "read_toml",
]
