"""Requests and replies of the NUT network protocol as frozen values.

Both directions share these classes: the client core writes a :class:`Request` with
:meth:`Request.to_line` and reads replies into :class:`Reply` values; the simulator's server
core parses request lines back into the same :class:`Request` values (:func:`parse_request`)
and writes :class:`Reply` values with :meth:`Reply.to_lines`. A request checks its fields
when it is built, so a name with a blank or a value with a newline never reaches the wire.

Reference: networkupstools/nut docs/net-protocol.txt and RFC 9271.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from motte.power.nut._errors import LocalProtocolError, NutServerError, server_error
from motte.power.nut._wire import check_name, check_sendable, quote, word

# -- requests ------------------------------------------------------------------------------

#: What shape of reply a request expects; the client core parses by it.
OK = "ok"
VAR = "var"
TYPE = "type"
DESC = "desc"
CMDDESC = "cmddesc"
UPSDESC = "upsdesc"
NUMLOGINS = "numlogins"
TEXT = "text"
LIST = "list"


def _name(value: str, what: str) -> None:
    try:
        check_name(value, what)
    except ValueError as e:
        raise LocalProtocolError(str(e)) from None


def _value(value: str) -> None:
    try:
        check_sendable(value)
    except ValueError as e:
        raise LocalProtocolError(str(e)) from None


@dataclass(frozen=True, slots=True)
class Request:
    """Base of every request. ``reply`` names the reply shape the server answers with."""

    reply: ClassVar[str] = OK

    def to_line(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class ListRequest(Request):
    """``LIST <kind> [args]``: the reply is framed by ``BEGIN LIST ...`` / ``END LIST ...``."""

    reply: ClassVar[str] = LIST
    kind: ClassVar[str] = ""

    def query(self) -> tuple[str, ...]:
        """The words after ``LIST``, repeated by the BEGIN and END lines."""
        return (self.kind,)

    def to_line(self) -> str:
        return "LIST " + " ".join(self.query())


@dataclass(frozen=True, slots=True)
class ListUps(ListRequest):
    kind: ClassVar[str] = "UPS"


@dataclass(frozen=True, slots=True)
class _ListOfUps(ListRequest):
    ups: str

    def __post_init__(self) -> None:
        _name(self.ups, "UPS name")

    def query(self) -> tuple[str, ...]:
        return (self.kind, self.ups)


@dataclass(frozen=True, slots=True)
class ListVar(_ListOfUps):
    kind: ClassVar[str] = "VAR"


@dataclass(frozen=True, slots=True)
class ListRw(_ListOfUps):
    kind: ClassVar[str] = "RW"


@dataclass(frozen=True, slots=True)
class ListCmd(_ListOfUps):
    kind: ClassVar[str] = "CMD"


@dataclass(frozen=True, slots=True)
class ListClient(_ListOfUps):
    kind: ClassVar[str] = "CLIENT"


@dataclass(frozen=True, slots=True)
class _ListOfVar(ListRequest):
    ups: str
    var: str

    def __post_init__(self) -> None:
        _name(self.ups, "UPS name")
        _name(self.var, "variable name")

    def query(self) -> tuple[str, ...]:
        return (self.kind, self.ups, self.var)


@dataclass(frozen=True, slots=True)
class ListEnum(_ListOfVar):
    kind: ClassVar[str] = "ENUM"


@dataclass(frozen=True, slots=True)
class ListRange(_ListOfVar):
    kind: ClassVar[str] = "RANGE"


@dataclass(frozen=True, slots=True)
class _GetOfVar(Request):
    ups: str
    var: str
    what: ClassVar[str] = ""

    def __post_init__(self) -> None:
        _name(self.ups, "UPS name")
        _name(self.var, "variable name")

    def to_line(self) -> str:
        return f"GET {self.what} {self.ups} {self.var}"


@dataclass(frozen=True, slots=True)
class GetVar(_GetOfVar):
    reply: ClassVar[str] = VAR
    what: ClassVar[str] = "VAR"


@dataclass(frozen=True, slots=True)
class GetType(_GetOfVar):
    reply: ClassVar[str] = TYPE
    what: ClassVar[str] = "TYPE"


@dataclass(frozen=True, slots=True)
class GetDesc(_GetOfVar):
    reply: ClassVar[str] = DESC
    what: ClassVar[str] = "DESC"


@dataclass(frozen=True, slots=True)
class GetCmdDesc(Request):
    reply: ClassVar[str] = CMDDESC
    ups: str
    cmd: str

    def __post_init__(self) -> None:
        _name(self.ups, "UPS name")
        _name(self.cmd, "command name")

    def to_line(self) -> str:
        return f"GET CMDDESC {self.ups} {self.cmd}"


@dataclass(frozen=True, slots=True)
class _GetOfUps(Request):
    ups: str
    what: ClassVar[str] = ""

    def __post_init__(self) -> None:
        _name(self.ups, "UPS name")

    def to_line(self) -> str:
        return f"GET {self.what} {self.ups}"


@dataclass(frozen=True, slots=True)
class GetNumLogins(_GetOfUps):
    reply: ClassVar[str] = NUMLOGINS
    what: ClassVar[str] = "NUMLOGINS"


@dataclass(frozen=True, slots=True)
class GetUpsDesc(_GetOfUps):
    reply: ClassVar[str] = UPSDESC
    what: ClassVar[str] = "UPSDESC"


@dataclass(frozen=True, slots=True)
class SetVar(Request):
    ups: str
    var: str
    value: str

    def __post_init__(self) -> None:
        _name(self.ups, "UPS name")
        _name(self.var, "variable name")
        _value(self.value)

    def to_line(self) -> str:
        return f"SET VAR {self.ups} {self.var} {quote(self.value)}"


@dataclass(frozen=True, slots=True)
class InstCmd(Request):
    ups: str
    cmd: str
    param: str | None = None

    def __post_init__(self) -> None:
        _name(self.ups, "UPS name")
        _name(self.cmd, "command name")
        if self.param is not None:
            _value(self.param)

    def to_line(self) -> str:
        tail = "" if self.param is None else " " + quote(self.param)
        return f"INSTCMD {self.ups} {self.cmd}{tail}"


@dataclass(frozen=True, slots=True)
class Username(Request):
    name: str

    def __post_init__(self) -> None:
        _value(self.name)
        if not self.name:
            raise LocalProtocolError("NUT username is empty")

    def to_line(self) -> str:
        return f"USERNAME {word(self.name)}"


@dataclass(frozen=True, slots=True)
class Password(Request):
    password: str

    def __post_init__(self) -> None:
        _value(self.password)

    def __repr__(self) -> str:  # never put a password in a log or a traceback
        return "Password(password=<hidden>)"

    def to_line(self) -> str:
        return f"PASSWORD {word(self.password)}"


@dataclass(frozen=True, slots=True)
class _UpsCommand(Request):
    ups: str
    verb: ClassVar[str] = ""

    def __post_init__(self) -> None:
        _name(self.ups, "UPS name")

    def to_line(self) -> str:
        return f"{self.verb} {self.ups}"


@dataclass(frozen=True, slots=True)
class Login(_UpsCommand):
    verb: ClassVar[str] = "LOGIN"


@dataclass(frozen=True, slots=True)
class Primary(_UpsCommand):
    """``PRIMARY ups`` (protocol 1.3); older servers know it only as ``MASTER``."""

    verb: ClassVar[str] = "PRIMARY"


@dataclass(frozen=True, slots=True)
class Master(_UpsCommand):
    verb: ClassVar[str] = "MASTER"


@dataclass(frozen=True, slots=True)
class Fsd(_UpsCommand):
    verb: ClassVar[str] = "FSD"


@dataclass(frozen=True, slots=True)
class _Bare(Request):
    verb: ClassVar[str] = ""

    def to_line(self) -> str:
        return self.verb


@dataclass(frozen=True, slots=True)
class Logout(_Bare):
    verb: ClassVar[str] = "LOGOUT"


@dataclass(frozen=True, slots=True)
class StartTls(_Bare):
    verb: ClassVar[str] = "STARTTLS"


@dataclass(frozen=True, slots=True)
class Ver(_Bare):
    reply: ClassVar[str] = TEXT
    verb: ClassVar[str] = "VER"


@dataclass(frozen=True, slots=True)
class ProtVer(_Bare):
    """``PROTVER`` (protocol 1.3); older servers know it only as ``NETVER``."""

    reply: ClassVar[str] = TEXT
    verb: ClassVar[str] = "PROTVER"


@dataclass(frozen=True, slots=True)
class NetVer(_Bare):
    reply: ClassVar[str] = TEXT
    verb: ClassVar[str] = "NETVER"


@dataclass(frozen=True, slots=True)
class Help(_Bare):
    reply: ClassVar[str] = TEXT
    verb: ClassVar[str] = "HELP"


# -- replies -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Reply:
    """Base of every reply; :meth:`to_lines` gives the lines a server writes for it."""

    def to_lines(self) -> list[str]:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Ok(Reply):
    """``OK`` with its optional detail: ``PRIMARY-GRANTED``, ``FSD-SET``, ``Goodbye``..."""

    detail: str = ""

    def to_lines(self) -> list[str]:
        return [f"OK {self.detail}" if self.detail else "OK"]


@dataclass(frozen=True, slots=True)
class ErrorReply(Reply):
    """``ERR <code> [extra]``; :meth:`error` gives the typed exception for the code."""

    code: str
    extra: str = ""

    def to_lines(self) -> list[str]:
        return [f"ERR {self.code} {self.extra}" if self.extra else f"ERR {self.code}"]

    def error(self, request: Request | None = None) -> NutServerError:
        shown = "" if request is None else _redacted(request)
        return server_error(self.code, self.extra, request=shown)


def _redacted(request: Request) -> str:
    return "PASSWORD <hidden>" if isinstance(request, Password) else request.to_line()


@dataclass(frozen=True, slots=True)
class VarValue(Reply):
    ups: str
    var: str
    value: str

    def to_lines(self) -> list[str]:
        return [f"VAR {self.ups} {self.var} {quote(self.value)}"]


@dataclass(frozen=True, slots=True)
class VarType(Reply):
    """``TYPE ups var RW NUMBER`` and the like (RW, ENUM, STRING:n, RANGE, NUMBER)."""

    ups: str
    var: str
    types: tuple[str, ...]

    def to_lines(self) -> list[str]:
        return [" ".join(("TYPE", self.ups, self.var, *self.types))]


@dataclass(frozen=True, slots=True)
class VarDesc(Reply):
    ups: str
    var: str
    desc: str

    def to_lines(self) -> list[str]:
        return [f"DESC {self.ups} {self.var} {quote(self.desc)}"]


@dataclass(frozen=True, slots=True)
class CmdDesc(Reply):
    ups: str
    cmd: str
    desc: str

    def to_lines(self) -> list[str]:
        return [f"CMDDESC {self.ups} {self.cmd} {quote(self.desc)}"]


@dataclass(frozen=True, slots=True)
class UpsDesc(Reply):
    ups: str
    desc: str

    def to_lines(self) -> list[str]:
        return [f"UPSDESC {self.ups} {quote(self.desc)}"]


@dataclass(frozen=True, slots=True)
class NumLogins(Reply):
    ups: str
    count: int

    def to_lines(self) -> list[str]:
        return [f"NUMLOGINS {self.ups} {self.count}"]


@dataclass(frozen=True, slots=True)
class Text(Reply):
    """A free-text line (the answer to VER, PROTVER, NETVER, HELP)."""

    text: str

    def to_lines(self) -> list[str]:
        return [self.text]


@dataclass(frozen=True, slots=True)
class ListReply(Reply):
    """A whole LIST answer: ``query`` repeats the request, ``rows`` hold each entry's fields.

    A row is the entry's words after the query's own (for ``LIST VAR ups``: name and value;
    for ``LIST CMD ups``: the command; for ``LIST RANGE ups var``: min and max).
    """

    query: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]

    def to_lines(self) -> list[str]:
        head = " ".join(self.query)
        kind, args = self.query[0], self.query[1:]
        quoted_fields = LIST_QUOTED[kind]
        lines = [f"BEGIN LIST {head}"]
        for row in self.rows:
            fields = [quote(f) if i in quoted_fields else word(f) for i, f in enumerate(row)]
            lines.append(" ".join((kind, *args, *fields)))
        lines.append(f"END LIST {head}")
        return lines

    def as_dict(self) -> dict[str, str]:
        """For two-field rows (UPS, VAR, RW): first field -> second."""
        return {row[0]: row[1] for row in self.rows}


#: LIST kind -> how many fields each entry carries after the repeated query words.
LIST_FIELDS: dict[str, int] = {
    "UPS": 2,
    "VAR": 2,
    "RW": 2,
    "CMD": 1,
    "ENUM": 1,
    "RANGE": 2,
    "CLIENT": 1,
}
#: LIST kind -> which of its fields a server writes quoted.
LIST_QUOTED: dict[str, frozenset[int]] = {
    "UPS": frozenset({1}),
    "VAR": frozenset({1}),
    "RW": frozenset({1}),
    "CMD": frozenset(),
    "ENUM": frozenset({0}),
    "RANGE": frozenset({0, 1}),
    "CLIENT": frozenset(),
}
#: LIST kind -> how many words follow the kind in the query (``LIST VAR ups`` -> 1).
LIST_ARGS: dict[str, int] = {
    "UPS": 0,
    "VAR": 1,
    "RW": 1,
    "CMD": 1,
    "ENUM": 2,
    "RANGE": 2,
    "CLIENT": 1,
}
