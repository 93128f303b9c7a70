"""The client side of a NUT connection as a sans-IO state machine (bytes in, events out).

As with h11: :meth:`NutConnection.send` turns a :class:`Request` into bytes for the caller to
write; :meth:`NutConnection.receive_data` buffers what the caller read (``b""`` means the
server closed); :meth:`NutConnection.next_event` returns the next reply, :data:`NEED_DATA`,
or :class:`ConnectionClosed`. Requests may be pipelined: replies come back in order, and
each is parsed by the shape its request expects, LIST replies whole (BEGIN, rows, END).

Every bad byte the server can send ends in :class:`RemoteProtocolError` and moves the
connection to ``ERROR``; misuse by the caller raises :class:`LocalProtocolError` and sends
nothing. Any other exception escaping this module is a bug (the fuzz tests hold us to it).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from motte.power.nut._errors import LocalProtocolError, RemoteProtocolError
from motte.power.nut._messages import (
    CMDDESC,
    DESC,
    LIST,
    LIST_ARGS,
    LIST_FIELDS,
    NUMLOGINS,
    OK,
    TEXT,
    TYPE,
    UPSDESC,
    VAR,
    CmdDesc,
    ErrorReply,
    ListReply,
    ListRequest,
    Logout,
    NumLogins,
    Ok,
    Reply,
    Request,
    StartTls,
    Text,
    UpsDesc,
    VarDesc,
    VarType,
    VarValue,
)
from motte.power.nut._wire import LineBuffer, split_words

#: Longest line we hold before giving up on the peer (NUT values are at most a few hundred).
DEFAULT_MAX_LINE = 8 * 1024
#: Most rows one LIST reply may carry (a large UPS has a few hundred variables).
DEFAULT_MAX_LIST_ROWS = 10_000


class NeedData:
    """Sentinel: feed more bytes before asking for the next event."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The server closed the connection with nothing left unanswered."""


class State(enum.Enum):
    OPEN = "open"
    #: LOGOUT was sent: nothing more may be sent.
    CLOSING = "closing"
    CLOSED = "closed"
    ERROR = "error"


class NutConnection:
    """One client connection to a NUT server (upsd, or ``motte power simulate``)."""

    def __init__(
        self,
        *,
        max_line_size: int = DEFAULT_MAX_LINE,
        max_list_rows: int = DEFAULT_MAX_LIST_ROWS,
    ) -> None:
        self.state = State.OPEN
        self._buf = LineBuffer(max_line_size)
        self._max_list_rows = max_list_rows
        self._pending: deque[Request] = deque()
        self._rows: list[tuple[str, ...]] | None = None  # the LIST being read, after BEGIN
        self._eof = False

    @property
    def pending(self) -> int:
        """Requests sent whose replies have not been returned yet."""
        return len(self._pending)

    def send(self, request: Request) -> bytes:
        """The bytes to write for ``request``; records that a reply is due."""
        if self.state is not State.OPEN:
            raise LocalProtocolError(
                f"cannot send {type(request).__name__}: connection is {self.state.value}"
            )
        if any(isinstance(r, StartTls) for r in self._pending):
            raise LocalProtocolError("nothing may be sent until the STARTTLS reply is read")
        if isinstance(request, StartTls) and self._pending:
            raise LocalProtocolError("STARTTLS must be sent with no other request unanswered")
        data = (request.to_line() + "\n").encode("utf-8")
        self._pending.append(request)
        if isinstance(request, Logout):
            self.state = State.CLOSING
        return data

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes read from the server; ``b""`` means it closed the connection."""
        if self._eof and data:
            raise LocalProtocolError("received data after the end of the connection")
        if data:
            self._buf.feed(data)
        else:
            self._eof = True

    def next_event(self) -> Reply | NeedData | ConnectionClosed:
        """The next whole reply, :data:`NEED_DATA`, or :class:`ConnectionClosed`."""
        if self.state is State.ERROR:
            raise LocalProtocolError("the connection failed earlier; open a new one")
        try:
            return self._next_event()
        except RemoteProtocolError:
            self.state = State.ERROR
            raise

    def _next_event(self) -> Reply | NeedData | ConnectionClosed:
        while True:
            try:
                line = self._buf.pop_line()
            except ValueError as e:
                raise RemoteProtocolError(f"NUT server sent a {e}") from None
            if line is None:
                return self._at_end() if self._eof else NEED_DATA
            event = self._on_line(line)
            if event is not None:
                return event

    def _at_end(self) -> ConnectionClosed:
        if len(self._buf):
            raise RemoteProtocolError("NUT server closed the connection in the middle of a line")
        unanswered = [r for r in self._pending if not isinstance(r, Logout)]
        if unanswered:
            raise RemoteProtocolError(
                f"NUT server closed the connection with {len(unanswered)} request(s) "
                f"unanswered (first: {unanswered[0].to_line().split()[0]})"
            )
        self._pending.clear()
        self.state = State.CLOSED
        return ConnectionClosed()

    def _on_line(self, line: str) -> Reply | None:
        if not self._pending:
            raise RemoteProtocolError(f"NUT server sent an unrequested line: {line[:80]!r}")
        request = self._pending[0]
        if request.reply == LIST:
            assert isinstance(request, ListRequest)
            event = self._on_list_line(request, line)
            if event is None:
                return None
        else:
            event = _parse_reply(request, line)
        self._pending.popleft()
        if isinstance(request, StartTls) and isinstance(event, Ok) and len(self._buf):
            # Bytes queued before the handshake would be read as if they came over TLS:
            # the plaintext-injection attack on STARTTLS (as in SMTP, CVE-2011-0411).
            raise RemoteProtocolError("NUT server sent data after OK STARTTLS, before TLS")
        return event

    def _on_list_line(self, request: ListRequest, line: str) -> Reply | None:
        words = _words(line)
        query = request.query()
        if self._rows is None:
            if words[:1] == ("ERR",):
                return _error(words, line)
            if not _same(words, ("BEGIN", "LIST", *query)):
                raise RemoteProtocolError(
                    f"NUT server answered LIST {' '.join(query)} with {line[:80]!r}"
                )
            self._rows = []
            return None
        if words[:2] == ("END", "LIST"):
            if not _same(words, ("END", "LIST", *query)):
                raise RemoteProtocolError(f"LIST {' '.join(query)} ended with {line[:80]!r}")
            rows, self._rows = tuple(self._rows), None
            return ListReply(query, rows)
        kind, nargs = query[0], LIST_ARGS[query[0]]
        nfields = LIST_FIELDS[kind]
        head = (kind, *query[1 : 1 + nargs])
        if len(words) != len(head) + nfields or not _same(words[: len(head)], head):
            raise RemoteProtocolError(f"LIST {' '.join(query)} has a bad row: {line[:80]!r}")
        if len(self._rows) >= self._max_list_rows:
            raise RemoteProtocolError(f"LIST {' '.join(query)} has over {self._max_list_rows} rows")
        self._rows.append(words[len(head) :])
        return None


def _words(line: str) -> tuple[str, ...]:
    try:
        return split_words(line).words
    except ValueError as e:
        raise RemoteProtocolError(f"NUT server sent a line with {e}: {line[:80]!r}") from None


def _same(got: tuple[str, ...], want: tuple[str, ...]) -> bool:
    """Word lists equal, ignoring case (upsd echoes names in the client's case)."""
    if got == want:  # the usual case, decided in C
        return True
    return len(got) == len(want) and all(
        a.casefold() == b.casefold() for a, b in zip(got, want, strict=True)
    )


def _error(words: tuple[str, ...], line: str) -> ErrorReply:
    if len(words) < 2:
        raise RemoteProtocolError(f"NUT server sent ERR without a code: {line[:80]!r}")
    return ErrorReply(words[1], " ".join(words[2:]))


def _parse_reply(request: Request, line: str) -> Reply:
    """Parse a one-line reply to ``request`` by the shape the request expects."""
    if request.reply == TEXT:
        if line.startswith("ERR "):
            return _error(_words(line), line)
        return Text(line)
    words = _words(line)
    if words[:1] == ("ERR",):
        return _error(words, line)
    shape = request.reply
    if shape == OK:
        if words[:1] == ("OK",):
            return Ok(line[2:].strip())
        if isinstance(request, Logout) and line.startswith("Goodbye"):
            return Ok("Goodbye")  # servers before NUT 2.8 said "Goodbye..." without OK
    else:
        parsed = _parse_value_reply(request, shape, words)
        if parsed is not None:
            return parsed
    raise RemoteProtocolError(
        f"NUT server answered {request.to_line().split()[0]} with {line[:80]!r}"
    )


def _parse_value_reply(request: Request, shape: str, words: tuple[str, ...]) -> Reply | None:
    ups = getattr(request, "ups", "")
    name = getattr(request, "var", None) or getattr(request, "cmd", "")
    keyword = {VAR: "VAR", TYPE: "TYPE", DESC: "DESC", CMDDESC: "CMDDESC"}.get(shape)
    if keyword is not None:
        if not _same(words[:3], (keyword, ups, name)):
            return None
        if shape == TYPE:
            return VarType(words[1], words[2], words[3:]) if len(words) >= 4 else None
        if len(words) != 4:
            return None
        cls = {VAR: VarValue, DESC: VarDesc, CMDDESC: CmdDesc}[shape]
        return cls(words[1], words[2], words[3])
    if len(words) != 3 or not _same(words[:2], (words[0], ups)):
        return None
    if shape == UPSDESC and words[0] == "UPSDESC":
        return UpsDesc(words[1], words[2])
    if shape == NUMLOGINS and words[0] == "NUMLOGINS":
        if not (words[2].isascii() and words[2].isdigit()) or len(words[2]) > 9:
            raise RemoteProtocolError(f"NUMLOGINS count is not a number: {words[2][:20]!r}")
        return NumLogins(words[1], int(words[2]))
    return None
