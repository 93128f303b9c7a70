"""A thin asyncio client over the sans-IO core: one TCP connection to upsd (or the simulator).

All protocol knowledge lives in :mod:`motte.power._connection`; this module only moves bytes,
applies timeouts, upgrades to TLS when asked, and turns ``ERR`` replies into typed errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from typing import Literal, TypeVar

from motte.power.nut._connection import NEED_DATA, ConnectionClosed, NutConnection
from motte.power.nut._errors import (
    FeatureNotConfiguredError,
    FeatureNotSupportedError,
    InvalidArgumentError,
    NutConnectionError,
    RemoteProtocolError,
    UnknownCommandError,
)
from motte.power.nut._messages import (
    CmdDesc,
    ErrorReply,
    Fsd,
    GetCmdDesc,
    GetDesc,
    GetNumLogins,
    GetType,
    GetVar,
    InstCmd,
    ListClient,
    ListCmd,
    ListEnum,
    ListRange,
    ListReply,
    ListRw,
    ListUps,
    ListVar,
    Login,
    Logout,
    Master,
    NetVer,
    NumLogins,
    Ok,
    Password,
    Primary,
    ProtVer,
    Reply,
    Request,
    SetVar,
    StartTls,
    Text,
    Username,
    VarDesc,
    VarType,
    VarValue,
    Ver,
)

DEFAULT_PORT = 3493
#: "off": never; "if-offered": upgrade when the server offers STARTTLS (and verify it);
#: "required": refuse a server that does not offer it.
TlsMode = Literal["off", "if-offered", "required"]
_R = TypeVar("_R", bound=Reply)


@dataclass(frozen=True, slots=True)
class UpsAddress:
    """``ups@host[:port]``, NUT's way of naming a UPS on a server (RFC 9271)."""

    ups: str
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT

    @classmethod
    def parse(cls, text: str) -> UpsAddress:
        ups, at, rest = text.partition("@")
        if not ups or (at and not rest):
            raise ValueError(f"{text!r} is not a UPS address (ups@host[:port])")
        if not at:
            return cls(ups)
        host, port = rest, DEFAULT_PORT
        if rest.startswith("["):  # [IPv6]:port
            host, _, tail = rest[1:].partition("]")
            if tail:
                port = _port(tail.removeprefix(":"), text)
        elif rest.count(":") == 1:
            host, _, p = rest.partition(":")
            port = _port(p, text)
        return cls(ups, host, port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.ups}@{host}:{self.port}"


def _reason(error: BaseException, timeout: float) -> str:
    """Why a request failed, never empty (``str(TimeoutError())`` is "")."""
    if isinstance(error, TimeoutError):
        return f"no complete answer within {timeout:g}s"
    return str(error) or type(error).__name__


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{whole!r}: port {text!r} is not a TCP port")
    return int(text)


class NutClient:
    """An open connection; use :meth:`connect` and ``async with``."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        where: str,
        timeout: float,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._conn = NutConnection()
        self._lock = asyncio.Lock()
        self._broken = False
        self.where = where
        self.timeout = timeout
        self.tls = False

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int = DEFAULT_PORT,
        *,
        timeout: float = 5.0,
        tls: TlsMode = "if-offered",
        ssl_context: ssl.SSLContext | None = None,
    ) -> NutClient:
        where = f"{host}:{port}"
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(host, port)
        except (OSError, TimeoutError) as e:
            raise NutConnectionError(
                f"cannot connect to NUT server {where}: {_reason(e, timeout)}",
                hint="is upsd (or motte power simulate) running and listening there?",
            ) from None
        client = cls(reader, writer, where=where, timeout=timeout)
        if tls != "off":
            try:
                await client._start_tls(host, tls, ssl_context)
            except BaseException:
                await client.close()
                raise
        return client

    async def _start_tls(self, host: str, mode: TlsMode, ctx: ssl.SSLContext | None) -> None:
        try:
            await self.request(StartTls())
        except (FeatureNotConfiguredError, FeatureNotSupportedError, UnknownCommandError):
            if mode == "required":
                raise NutConnectionError(
                    f"NUT server {self.where} does not offer STARTTLS",
                    hint='configure CERTFILE in upsd.conf, or set tls = "if-offered"',
                ) from None
            return
        context = ctx if ctx is not None else ssl.create_default_context()
        try:
            async with asyncio.timeout(self.timeout):
                await self._writer.start_tls(context, server_hostname=host)
        except (OSError, TimeoutError, ssl.SSLError) as e:
            self._broken = True
            raise NutConnectionError(
                f"TLS with NUT server {self.where} failed: {_reason(e, self.timeout)}",
                hint="give the plan the CA that signed upsd's certificate (ups.ca_file)",
            ) from None
        self.tls = True

    async def __aenter__(self) -> NutClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Say LOGOUT when the connection is healthy, then close it."""
        if not self._broken and not self._writer.is_closing():
            # Closing anyway: a goodbye is a courtesy, not a requirement.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(min(self.timeout, 1.0)):
                    await self.request(Logout())
        self._broken = True
        self._writer.close()
        with contextlib.suppress(Exception):  # the peer may already be gone
            async with asyncio.timeout(1.0):
                await self._writer.wait_closed()

    async def request(self, request: Request) -> Reply:
        """Send one request and return its reply; ``ERR`` raises the code's typed error.

        The whole request has one deadline (``timeout``), not each read: a server that drips
        a byte now and then must not hold the caller (and a monitor's COMMBAD) forever.
        """
        async with self._lock:
            if self._broken:
                raise NutConnectionError(f"connection to NUT server {self.where} is closed")
            data = self._conn.send(request)
            try:
                async with asyncio.timeout(self.timeout):
                    self._writer.write(data)
                    await self._writer.drain()
                    event = self._conn.next_event()
                    while event is NEED_DATA:
                        chunk = await self._reader.read(65536)
                        if not chunk and not isinstance(request, Logout):
                            # The server went away before answering: a lost link, not a bad peer.
                            raise ConnectionResetError("the server closed the connection")
                        self._conn.receive_data(chunk)
                        event = self._conn.next_event()
            except (OSError, TimeoutError) as e:
                self._broken = True
                raise NutConnectionError(
                    f"NUT server {self.where} did not answer {request.to_line().split()[0]}: "
                    f"{_reason(e, self.timeout)}"
                ) from None
            except RemoteProtocolError:
                self._broken = True
                raise
        if isinstance(event, ConnectionClosed):
            self._broken = True
            raise NutConnectionError(f"NUT server {self.where} closed the connection")
        if isinstance(event, ErrorReply):
            raise event.error(request)
        assert isinstance(event, Reply)
        return event

    async def _expect(self, request: Request, cls: type[_R]) -> _R:
        reply = await self.request(request)
        if not isinstance(reply, cls):  # the core parses by shape; this would be our bug
            raise RemoteProtocolError(f"unexpected reply {reply!r} to {request.to_line()!r}")
        return reply

    async def _list(self, request: Request) -> ListReply:
        return await self._expect(request, ListReply)

    async def _text(self, request: Request) -> str:
        return (await self._expect(request, Text)).text

    async def _ok(self, request: Request) -> str:
        return (await self._expect(request, Ok)).detail

    # -- reading ---------------------------------------------------------------------------

    async def list_ups(self) -> dict[str, str]:
        """UPS name -> description."""
        return (await self._list(ListUps())).as_dict()

    async def list_var(self, ups: str) -> dict[str, str]:
        return (await self._list(ListVar(ups))).as_dict()

    async def list_rw(self, ups: str) -> dict[str, str]:
        return (await self._list(ListRw(ups))).as_dict()

    async def list_cmd(self, ups: str) -> list[str]:
        return [row[0] for row in (await self._list(ListCmd(ups))).rows]

    async def list_enum(self, ups: str, var: str) -> list[str]:
        return [row[0] for row in (await self._list(ListEnum(ups, var))).rows]

    async def list_range(self, ups: str, var: str) -> list[tuple[str, str]]:
        return [(row[0], row[1]) for row in (await self._list(ListRange(ups, var))).rows]

    async def list_client(self, ups: str) -> list[str]:
        return [row[0] for row in (await self._list(ListClient(ups))).rows]

    async def get_var(self, ups: str, var: str) -> str:
        return (await self._expect(GetVar(ups, var), VarValue)).value

    async def get_type(self, ups: str, var: str) -> tuple[str, ...]:
        return (await self._expect(GetType(ups, var), VarType)).types

    async def get_desc(self, ups: str, var: str) -> str:
        return (await self._expect(GetDesc(ups, var), VarDesc)).desc

    async def get_cmd_desc(self, ups: str, cmd: str) -> str:
        return (await self._expect(GetCmdDesc(ups, cmd), CmdDesc)).desc

    async def get_num_logins(self, ups: str) -> int:
        return (await self._expect(GetNumLogins(ups), NumLogins)).count

    async def ver(self) -> str:
        return await self._text(Ver())

    async def protver(self) -> str:
        """The protocol version (``PROTVER``, or ``NETVER`` on servers before NUT 2.8)."""
        try:
            return await self._text(ProtVer())
        except (UnknownCommandError, InvalidArgumentError):
            return await self._text(NetVer())

    # -- acting ----------------------------------------------------------------------------

    async def set_var(self, ups: str, var: str, value: str) -> None:
        await self._ok(SetVar(ups, var, value))

    async def instcmd(self, ups: str, cmd: str, param: str | None = None) -> None:
        await self._ok(InstCmd(ups, cmd, param))

    async def authenticate(self, username: str, password: str) -> None:
        """USERNAME and PASSWORD; upsd checks the password only at LOGIN or the first action."""
        await self._ok(Username(username))
        await self._ok(Password(password))

    async def login(self, ups: str) -> None:
        """LOGIN: count as a client of ``ups`` in NUMLOGINS (what upsmon does)."""
        await self._ok(Login(ups))

    async def primary(self, ups: str) -> str:
        """Claim the primary role; falls back to ``MASTER`` on servers before NUT 2.8."""
        try:
            return await self._ok(Primary(ups))
        except (UnknownCommandError, InvalidArgumentError):
            return await self._ok(Master(ups))

    async def fsd(self, ups: str) -> None:
        """Set forced shutdown on ``ups``: every secondary shuts down; upsd latches it."""
        await self._ok(Fsd(ups))
