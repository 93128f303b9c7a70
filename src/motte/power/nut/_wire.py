"""The NUT line syntax, shared by the client core and the simulator's server core.

One request or reply per line; words are separated by blanks; a word with blanks, quotes or
backslashes goes in double quotes, where ``"`` is written ``\\"`` and ``\\`` is written
``\\\\``. This follows NUT's own parser (common/parseconf.c): a backslash escapes the next
character anywhere, a quote toggles quoting inside a word, and ``""`` is an empty word.

Nothing here touches a socket; the functions raise :class:`ValueError` and the cores turn it
into the right Local/Remote error, because only they know who sent the text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: A word that can go on the wire without quotes: printable ASCII, no blank, quote or backslash.
_BARE = re.compile(r"[!#-\[\]-~]+")
#: Characters no NUT word may carry: a newline or NUL would end or corrupt the line.
_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def quote(value: str) -> str:
    """``value`` as a quoted NUT word: always quoted, ``\\`` and ``"`` escaped."""
    check_sendable(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def word(value: str) -> str:
    """``value`` bare when it can be, quoted otherwise (an empty value is ``""``)."""
    check_sendable(value)
    return value if _BARE.fullmatch(value) else quote(value)


def check_name(value: str, what: str) -> str:
    """A UPS, variable, command or user name: one bare word, nothing to quote."""
    if not _BARE.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not a NUT name (printable, no blanks or quotes)")
    return value


def check_sendable(value: str) -> None:
    """Refuse a value that would end the line early or smuggle a second request into it."""
    m = _FORBIDDEN.search(value)
    if m:
        raise ValueError(f"value {value!r} contains control character {m.group()!r}")


@dataclass(frozen=True, slots=True)
class Line:
    """One parsed line: its words, and which of them were quoted (a reply's values are)."""

    words: tuple[str, ...]
    quoted: tuple[bool, ...]
    text: str


#: One word: quoted stretches, escaped characters and plain characters, glued together.
#: Possessive quantifiers and disjoint alternatives keep matching linear on any input (a
#: hostile server must not be able to make the regex backtrack: ReDoS).
_PIECES = r'(?:"(?:[^"\\]|\\.)*+"|\\.|[^ \t"\\])++'
_WORD = re.compile(_PIECES)
#: A whole well-formed line: words separated by blanks (checked once, in C, per line).
_LINE = re.compile(rf"[ \t]*+(?:{_PIECES}(?:[ \t]++{_PIECES})*+)?+[ \t]*+")
_UNESCAPE = re.compile(r'\\(.)|"')


def _unquote(span: str) -> tuple[str, bool]:
    if "\\" not in span:  # quotes only, as in nearly every NUT value: drop them
        return span.replace('"', ""), True
    saw_quote = False

    def undo(m: re.Match[str]) -> str:
        nonlocal saw_quote
        if m.group(1) is None:  # a quote: drop it
            saw_quote = True
            return ""
        return m.group(1)  # an escaped character: keep it

    return _UNESCAPE.sub(undo, span), saw_quote


def split_words(text: str) -> Line:
    """Split one line (without its newline) into words, undoing quotes and escapes.

    Raises :class:`ValueError` on an unterminated quote or a trailing backslash.
    """
    if _LINE.fullmatch(text) is None:
        stripped = text.rstrip(" \t")
        backslashes = len(stripped) - len(stripped.rstrip("\\"))
        raise ValueError("line ends in a backslash" if backslashes % 2 else "unterminated quote")
    words: list[str] = []
    quoted: list[bool] = []
    for span in _WORD.findall(text):
        if '"' in span or "\\" in span:
            word, was_quoted = _unquote(span)
            words.append(word)
            quoted.append(was_quoted)
        else:  # the common case: a bare name or number, nothing to undo
            words.append(span)
            quoted.append(False)
    return Line(tuple(words), tuple(quoted), text)


class LineBuffer:
    """Bytes in, complete lines out, with a bound on the bytes held for one line.

    ``max_line`` bounds memory as h11's ``max_incomplete_event_size`` does: a peer that never
    sends a newline cannot make us hold more than that.
    """

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buf = bytearray()
        self._scanned = 0  # bytes already searched for a newline (keeps scanning linear)

    def __len__(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def pop_line(self) -> str | None:
        """The next line without its LF or CRLF, or None when no complete line is held.

        Raises :class:`ValueError` when the held partial line is longer than ``max_line``.
        """
        end = self._buf.find(b"\n", self._scanned)
        if end < 0:
            self._scanned = len(self._buf)
            if len(self._buf) > self.max_line:
                raise ValueError(f"line longer than {self.max_line} bytes")
            return None
        if end > self.max_line:
            raise ValueError(f"line longer than {self.max_line} bytes")
        raw = bytes(self._buf[:end])
        del self._buf[: end + 1]
        self._scanned = 0
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        # NUT is ASCII in practice; a stray byte must not crash the reader.
        return raw.decode("utf-8", errors="replace")
