"""The server side of a NUT connection, sans-IO: request lines in, reply bytes out.

The simulator (``motte power simulate``) is built on this, so it shares the client's quoting
and message classes: a request parsed here is the same :class:`Request` value a client sent,
and a :class:`Reply` is written with the same escaping the client core undoes.
"""

from __future__ import annotations

from dataclasses import dataclass

from motte.power.nut._connection import DEFAULT_MAX_LINE, NEED_DATA, ConnectionClosed, NeedData
from motte.power.nut._errors import LocalProtocolError, RemoteProtocolError
from motte.power.nut._messages import (
    Fsd,
    GetCmdDesc,
    GetDesc,
    GetNumLogins,
    GetType,
    GetUpsDesc,
    GetVar,
    Help,
    InstCmd,
    ListClient,
    ListCmd,
    ListEnum,
    ListRange,
    ListRw,
    ListUps,
    ListVar,
    Login,
    Logout,
    Master,
    NetVer,
    Password,
    Primary,
    ProtVer,
    Reply,
    Request,
    SetVar,
    StartTls,
    Username,
    Ver,
)
from motte.power.nut._wire import LineBuffer, split_words


@dataclass(frozen=True, slots=True)
class BadRequest:
    """A line that is not a request we serve; answer it with ``ERR <code>``."""

    code: str
    line: str


_LIST = {
    "UPS": (ListUps, 0),
    "VAR": (ListVar, 1),
    "RW": (ListRw, 1),
    "CMD": (ListCmd, 1),
    "CLIENT": (ListClient, 1),
    "ENUM": (ListEnum, 2),
    "RANGE": (ListRange, 2),
}
_GET = {
    "VAR": (GetVar, 2),
    "TYPE": (GetType, 2),
    "DESC": (GetDesc, 2),
    "CMDDESC": (GetCmdDesc, 2),
    "NUMLOGINS": (GetNumLogins, 1),
    "UPSDESC": (GetUpsDesc, 1),
}
_ONE_ARG = {
    "USERNAME": Username,
    "PASSWORD": Password,
    "LOGIN": Login,
    "PRIMARY": Primary,
    "MASTER": Master,
    "FSD": Fsd,
}
_NO_ARG = {
    "LOGOUT": Logout,
    "STARTTLS": StartTls,
    "VER": Ver,
    "NETVER": NetVer,
    "PROTVER": ProtVer,
    "HELP": Help,
}


def parse_request(line: str) -> Request | BadRequest:
    """One request line -> the :class:`Request` it names, or the ERR code to answer."""
    try:
        words = split_words(line).words
    except ValueError:
        return BadRequest("INVALID-ARGUMENT", line)
    if not words:
        return BadRequest("UNKNOWN-COMMAND", line)
    verb, args = words[0].upper(), words[1:]
    try:
        if verb in ("LIST", "GET"):
            table = _LIST if verb == "LIST" else _GET
            if not args or args[0].upper() not in table:
                return BadRequest("INVALID-ARGUMENT", line)
            cls, nargs = table[args[0].upper()]
            if len(args) - 1 != nargs:
                return BadRequest("INVALID-ARGUMENT", line)
            return cls(*args[1:])
        if verb == "SET":
            if len(args) != 4 or args[0].upper() != "VAR":
                return BadRequest("INVALID-ARGUMENT", line)
            return SetVar(args[1], args[2], args[3])
        if verb == "INSTCMD":
            if len(args) not in (2, 3):
                return BadRequest("INVALID-ARGUMENT", line)
            return InstCmd(*args)
        if verb in _ONE_ARG:
            if len(args) != 1:
                return BadRequest("INVALID-ARGUMENT", line)
            return _ONE_ARG[verb](args[0])
        if verb in _NO_ARG:
            return _NO_ARG[verb]()
    except LocalProtocolError:
        return BadRequest("INVALID-ARGUMENT", line)
    return BadRequest("UNKNOWN-COMMAND", line)


class NutServerConnection:
    """One client's connection, seen from the server."""

    def __init__(self, *, max_line_size: int = DEFAULT_MAX_LINE) -> None:
        self._buf = LineBuffer(max_line_size)
        self._eof = False

    def receive_data(self, data: bytes) -> None:
        if data:
            self._buf.feed(data)
        else:
            self._eof = True

    def next_event(self) -> Request | BadRequest | NeedData | ConnectionClosed:
        while True:
            try:
                line = self._buf.pop_line()
            except ValueError as e:
                raise RemoteProtocolError(f"NUT client sent a {e}") from None
            if line is None:
                return ConnectionClosed() if self._eof else NEED_DATA
            if line.strip():  # upsd ignores blank lines
                return parse_request(line)

    def ready_for_tls(self) -> bool:
        """True when no plaintext is queued, so a TLS handshake may start (see STARTTLS)."""
        return len(self._buf) == 0

    @staticmethod
    def send(reply: Reply) -> bytes:
        return "".join(line + "\n" for line in reply.to_lines()).encode("utf-8")
