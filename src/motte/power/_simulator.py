"""``motte power simulate``: a NUT server on 127.0.0.1 that plays a scenario.

It speaks the protocol through the same sans-IO core as the client (server side:
:mod:`._server_connection`), answers as upsd 2.8 does (rights from the scenario's users, the
same ERR codes, ``FSD`` latched until the load is power-cycled), and runs the UPS's side of
``shutdown.return``: after ``ups.delay.shutdown`` seconds the load goes OFF, and it comes back
``ups.delay.start`` seconds after mains has returned. ``upsc``, ``upsrw``, ``upscmd`` and
``upsmon`` from Debian's nut-client work against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass

from motte import __version__
from motte.power._scenario import Scenario, Script, User, script_at
from motte.power.nut import (
    NEED_DATA,
    BadRequest,
    CmdDesc,
    ConnectionClosed,
    ErrorReply,
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
    ListReply,
    ListRw,
    ListUps,
    ListVar,
    Login,
    Logout,
    Master,
    NetVer,
    NumLogins,
    NutServerConnection,
    Ok,
    Password,
    Primary,
    ProtVer,
    RemoteProtocolError,
    Reply,
    Request,
    SetVar,
    StartTls,
    Text,
    UpsDesc,
    Username,
    VarDesc,
    VarType,
    VarValue,
    Ver,
)

_DEFAULTS = {
    "device.type": "ups",
    "device.mfr": "motte",
    "device.model": "power simulator",
    "ups.mfr": "motte",
    "ups.model": "power simulator",
    "driver.name": "motte-simulator",
    "driver.version": __version__,
    "battery.charge.low": "20",
    "battery.runtime.low": "120",
    "ups.delay.shutdown": "20",
    "ups.delay.start": "30",
}
_DESCRIPTIONS = {
    "ups.status": "UPS status",
    "battery.charge": "Battery charge (percent of full)",
    "battery.runtime": "Battery runtime (seconds)",
    "battery.charge.low": "Remaining battery level when UPS switches to LB (percent)",
    "battery.runtime.low": "Remaining battery runtime when UPS switches to LB (seconds)",
    "ups.delay.shutdown": "Interval to wait after shutdown with delay command (seconds)",
    "ups.delay.start": "Interval to wait before (re)starting the load (seconds)",
    "shutdown.return": "Turn off the load and return when power is back",
    "shutdown.stayoff": "Turn off the load and remain off",
    "load.off": "Turn off the load immediately",
    "load.on": "Turn on the load immediately",
}
PROTOCOL_VERSION = "1.3"


@dataclass(eq=False)
class Session:
    addr: str
    username: str | None = None
    password: str | None = None
    login: str | None = None
    tls: bool = False
    writer: asyncio.StreamWriter | None = None


class SimulatedUps:
    """The UPS's state at a moment: the scenario, plus what clients did to it."""

    def __init__(self, scenario: Scenario, start: float) -> None:
        self.scenario = scenario
        self.start = start
        self.fsd = False
        self.output_on = True
        #: (kind, time) of a pending shutdown.return / shutdown.stayoff.
        self.pending: tuple[str, float] | None = None
        self.off_kind: str | None = None
        self.mains_since: float | None = None
        self._overrides: dict[str, tuple[str, int]] = {}

    def _delay(self, name: str, now: float) -> float:
        try:
            return float(self.variables(now)[name])
        except (KeyError, ValueError):
            return float(_DEFAULTS[name])

    def variables(self, now: float) -> dict[str, str]:
        script = script_at(self.scenario, now - self.start)
        values = {**_DEFAULTS, **self.scenario.variables, **script.variables}
        if "charge" in script.numbers:
            values["battery.charge"] = f"{script.numbers['charge']:.0f}"
        if "runtime" in script.numbers:
            values["battery.runtime"] = f"{script.numbers['runtime']:.0f}"
        for var, (value, at_step) in self._overrides.items():
            if self._last_step_setting(var, script.step) <= at_step:
                values[var] = value
        tokens = self._status(script, now).split()
        if not self.output_on:
            tokens = ["OFF", *(t for t in tokens if t != "OFF")]
        if self.fsd:
            tokens = ["FSD", *tokens]
        values["ups.status"] = " ".join(tokens)
        return dict(sorted(values.items()))

    def _status(self, script: Script, now: float) -> str:
        """The status the scenario says, or what a client SET (with ``ups.status`` writable,
        a test or a rehearsal drives the UPS by hand; a later step that sets a status wins)."""
        override = self._overrides.get("ups.status")
        if (
            override is not None
            and self._last_step_setting("ups.status", script.step) <= (override[1])
        ):
            return override[0]
        return script.status

    def _last_step_setting(self, var: str, upto: int) -> int:
        for i in range(upto, -1, -1):
            step = self.scenario.steps[i]
            if var in step.variables or (
                (var == "ups.status" and step.status is not None)
                or (var == "battery.charge" and step.charge is not None)
                or (var == "battery.runtime" and step.runtime is not None)
            ):
                return i
        return -1

    def set_var(self, var: str, value: str, now: float) -> None:
        self._overrides[var] = (value, script_at(self.scenario, now - self.start).step)

    def instcmd(self, cmd: str, now: float) -> str:
        if cmd in ("shutdown.return", "shutdown.stayoff"):
            delay = self._delay("ups.delay.shutdown", now)
            self.pending = (cmd, now + delay)
            return f"{cmd}: the load goes off in {delay:g}s"
        if cmd == "load.off":
            self.output_on, self.off_kind, self.pending = False, "load.off", None
            return "load off"
        if cmd == "load.on":
            self.output_on, self.off_kind = True, None
            return "load on"
        return f"{cmd}: done"

    def advance(self, now: float) -> list[str]:
        """Run the UPS's own timers; returns what happened, for the console."""
        out: list[str] = []
        if self.pending is not None and now >= self.pending[1]:
            kind, _ = self.pending
            self.pending, self.output_on, self.off_kind = None, False, kind
            self.mains_since = None
            out.append(f"load OFF ({kind})")
        if not self.output_on and self.off_kind == "shutdown.return":
            status = self._status(script_at(self.scenario, now - self.start), now).split()
            mains = "OL" in status and "OB" not in status
            if not mains:
                self.mains_since = None
            elif self.mains_since is None:
                self.mains_since = now
            elif now - self.mains_since >= self._delay("ups.delay.start", now):
                self.output_on, self.off_kind, self.fsd = True, None, False
                out.append("load back ON: mains returned and ups.delay.start passed; FSD cleared")
        return out


#: Connections served at once; more are closed at once (upsd's MAXCONN is the same idea).
#: Well below the usual 1024 open files, so a flood never exhausts them.
DEFAULT_MAX_CONNECTIONS = 256


class Simulator:
    def __init__(
        self,
        scenario: Scenario,
        *,
        host: str = "127.0.0.1",
        port: int = 3493,
        tls: ssl.SSLContext | None = None,
        on_event: Callable[[float, str], None] | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.scenario = scenario
        self.host = host
        self.port = port
        self.tls = tls
        self.on_event = on_event
        self.max_connections = max_connections
        #: Connections closed because ``max_connections`` were open (said once per burst).
        self.refused = 0
        self._refusing = False
        self.sessions: set[Session] = set()
        self.ups: SimulatedUps | None = None
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def _say(self, text: str) -> None:
        if self.on_event is not None and self.ups is not None:
            self.on_event(self._now() - self.ups.start, text)

    async def start(self) -> int:
        """Listen, start the scenario clock, and return the port (useful with port 0)."""
        self._loop = asyncio.get_running_loop()
        self.ups = SimulatedUps(self.scenario, self._now())
        await self._listen()
        return self.port

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for session in list(self.sessions):
            if session.writer is not None:
                session.writer.close()

    async def run(self, *, until_end: float | None = None) -> None:
        """Play the scenario; return ``until_end`` seconds after its last step (None: never)."""
        assert self.ups is not None
        shown: tuple[object, ...] | None = None
        offline = False
        try:
            while True:
                now = self._now()
                for text in self.ups.advance(now):
                    self._say(text)
                script = script_at(self.scenario, now - self.ups.start)
                if script.offline != offline:
                    offline = script.offline
                    if offline:
                        await self._stop_listening()
                        self._say("server OFFLINE: connections closed, new ones refused")
                    else:
                        await self._listen()
                        self._say(f"server back online on {self.host}:{self.port}")
                values = self.ups.variables(now)
                # Say each step and each status change once (a ramp's charge moves every tick).
                key = (values["ups.status"], script.step, script.stale)
                if key != shown:
                    self._say(_describe(values, script.stale))
                    shown = key
                end = self.scenario.length + (until_end or 0.0)
                if until_end is not None and now - self.ups.start >= end:
                    return
                await asyncio.sleep(0.1)
        finally:
            await self._stop_listening()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.sessions) >= self.max_connections:
            self.refused += 1
            if not self._refusing:  # one line per burst, not one per connection
                self._refusing = True
                self._say(
                    f"{self.max_connections} connections open: closing new ones until one ends "
                    "(--max-connections)"
                )
            writer.close()
            return
        if self._refusing:
            self._refusing = False
            self._say(f"accepting connections again ({self.refused} refused so far)")
        peer = writer.get_extra_info("peername")
        session = Session(addr=str(peer[0]) if peer else "?", writer=writer)
        self.sessions.add(session)
        conn = NutServerConnection()
        try:
            while True:
                try:
                    event = conn.next_event()
                except RemoteProtocolError:
                    writer.write(conn.send(ErrorReply("TOO-LONG")))
                    return
                if event is NEED_DATA:
                    conn.receive_data(await reader.read(65536))
                    continue
                if isinstance(event, ConnectionClosed):
                    return
                assert isinstance(event, Request | BadRequest)
                reply = self.handle(session, event)
                writer.write(conn.send(reply))
                await writer.drain()
                if isinstance(event, Logout):
                    return
                if isinstance(event, StartTls) and isinstance(reply, Ok):
                    if not conn.ready_for_tls():  # plaintext queued before the handshake
                        return
                    assert self.tls is not None
                    await writer.start_tls(self.tls)
                    session.tls = True
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            if session.login:
                self._say(f"{session.username}@{session.addr} logged out of {session.login}")
            self.sessions.discard(session)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # -- answering ---------------------------------------------------------------------------

    def handle(self, session: Session, request: Request | BadRequest) -> Reply:
        """The reply upsd would give ``session`` for ``request``."""
        assert self.ups is not None
        if isinstance(request, BadRequest):
            return ErrorReply(request.code)
        now = self._now()
        name = self.scenario.ups
        ups = getattr(request, "ups", None)
        if ups is not None and ups != name:
            return ErrorReply("UNKNOWN-UPS")
        script = script_at(self.scenario, now - self.ups.start)
        reads = (ListVar, ListRw, GetVar, GetType, GetDesc, ListEnum, ListRange)
        if script.stale and isinstance(request, reads):
            return ErrorReply("DATA-STALE")
        values = self.ups.variables(now)
        match request:
            case ListUps():
                return ListReply(("UPS",), ((name, self.scenario.description),))
            case ListVar():
                return ListReply(("VAR", name), tuple(values.items()))
            case ListRw():
                rows = tuple((k, v) for k, v in values.items() if k in self.scenario.writable)
                return ListReply(("RW", name), rows)
            case ListCmd():
                return ListReply(("CMD", name), tuple((c,) for c in self.scenario.commands))
            case ListClient():
                rows = tuple((s.addr,) for s in self.sessions if s.login == name)
                return ListReply(("CLIENT", name), rows)
            case ListEnum() | ListRange():
                if request.var not in values:
                    return ErrorReply("VAR-NOT-SUPPORTED")
                return ListReply((request.kind, name, request.var), ())
            case GetVar():
                if request.var not in values:
                    return ErrorReply("VAR-NOT-SUPPORTED")
                return VarValue(name, request.var, values[request.var])
            case GetType():
                if request.var not in values:
                    return ErrorReply("VAR-NOT-SUPPORTED")
                kind = "NUMBER" if _is_number(values[request.var]) else "STRING:32"
                rw = ("RW",) if request.var in self.scenario.writable else ()
                return VarType(name, request.var, (*rw, kind))
            case GetDesc():
                if request.var not in values:
                    return ErrorReply("VAR-NOT-SUPPORTED")
                desc = _DESCRIPTIONS.get(request.var, "Description unavailable")
                return VarDesc(name, request.var, desc)
            case GetCmdDesc():
                if request.cmd not in self.scenario.commands:
                    return ErrorReply("CMD-NOT-SUPPORTED")
                desc = _DESCRIPTIONS.get(request.cmd, "Description unavailable")
                return CmdDesc(name, request.cmd, desc)
            case GetNumLogins():
                return NumLogins(name, sum(1 for s in self.sessions if s.login == name))
            case GetUpsDesc():
                return UpsDesc(name, self.scenario.description)
            case Ver():
                return Text(
                    f"motte power simulator {__version__} (NUT network protocol {PROTOCOL_VERSION})"
                )
            case NetVer() | ProtVer():
                return Text(PROTOCOL_VERSION)
            case Help():
                return Text(
                    "Commands: HELP VER GET LIST SET INSTCMD LOGIN LOGOUT USERNAME "
                    "PASSWORD STARTTLS"
                )
            case Username():
                if session.username is not None:
                    return ErrorReply("ALREADY-SET-USERNAME")
                session.username = request.name
                return Ok()
            case Password():
                if session.password is not None:
                    return ErrorReply("ALREADY-SET-PASSWORD")
                session.password = request.password
                return Ok()
            case StartTls():
                if session.tls:
                    return ErrorReply("ALREADY-SSL-MODE")
                if self.tls is None:
                    return ErrorReply("FEATURE-NOT-CONFIGURED")
                return Ok("STARTTLS")
            case Logout():
                return Ok("Goodbye")
        return self._privileged(session, request, values, now)

    def _privileged(
        self, session: Session, request: Request, values: dict[str, str], now: float
    ) -> Reply:
        """Requests that need USERNAME and PASSWORD, and a right in the user's entry."""
        assert self.ups is not None
        if session.username is None:
            return ErrorReply("USERNAME-REQUIRED")
        if session.password is None:
            return ErrorReply("PASSWORD-REQUIRED")
        user = self.scenario.users.get(session.username)
        name = self.scenario.ups
        match request:
            case Login():
                if session.login is not None:
                    return ErrorReply("ALREADY-LOGGED-IN")
                if not _allowed(user, session, "LOGIN"):
                    return ErrorReply("ACCESS-DENIED")
                session.login = name
                self._say(f"{session.username}@{session.addr} logged in to {name}")
                return Ok()
            case Primary() | Master():
                if not _allowed(user, session, "MASTER"):
                    return ErrorReply("ACCESS-DENIED")
                return Ok("PRIMARY-GRANTED" if isinstance(request, Primary) else "MASTER-GRANTED")
            case Fsd():
                if not _allowed(user, session, "FSD"):
                    return ErrorReply("ACCESS-DENIED")
                if not self.ups.fsd:
                    self.ups.fsd = True
                    self._say(f"FSD set by {session.username}@{session.addr}")
                return Ok("FSD-SET")
            case SetVar():
                if not _allowed(user, session, "SET"):
                    return ErrorReply("ACCESS-DENIED")
                if request.var not in values:
                    return ErrorReply("VAR-NOT-SUPPORTED")
                if request.var not in self.scenario.writable:
                    return ErrorReply("READONLY")
                if len(request.value) > 32 and not _is_number(values[request.var]):
                    return ErrorReply("TOO-LONG")
                self.ups.set_var(request.var, request.value, now)
                self._say(f"{session.username} set {request.var} = {request.value!r}")
                return Ok()
            case InstCmd():
                if request.cmd not in self.scenario.commands:
                    return ErrorReply("CMD-NOT-SUPPORTED")
                if user is None or not _password_ok(user, session) or not user.may_run(request.cmd):
                    return ErrorReply("ACCESS-DENIED")
                self._say(f"{session.username}: {self.ups.instcmd(request.cmd, now)}")
                return Ok()
        return ErrorReply("UNKNOWN-COMMAND")


def _password_ok(user: User, session: Session) -> bool:
    import hmac

    return hmac.compare_digest(user.password.encode(), (session.password or "").encode())


def _allowed(user: User | None, session: Session, action: str) -> bool:
    return user is not None and _password_ok(user, session) and user.may(action)


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _describe(values: dict[str, str], stale: bool) -> str:
    parts = [values.get("ups.status", "")]
    if "battery.charge" in values:
        parts.append(f"charge {values['battery.charge']}%")
    if "battery.runtime" in values:
        parts.append(f"runtime {values['battery.runtime']}s")
    if stale:
        parts.append("DATA-STALE (driver silent)")
    return ", ".join(parts)
