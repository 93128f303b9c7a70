"""The shutdown plan: which UPSes, when to act, and how to stop and start each host.

A plan is a TOML file (see docs/power.md and examples/power/homelab.toml). Loading it checks
its structure (types, ranges, unknown keys, passwords kept out of it); :mod:`._plancheck`
then checks it as a whole (cycles, unknown hosts, a shutdown longer than the battery lasts)
and derives the order. Both are pure: no host is contacted.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from motte._toml import KeyPath, Table, load_table
from motte.errors import MotteError
from motte.power._errors import PlanError
from motte.power._status import NOTIFY_EVENTS
from motte.power.nut import TlsMode, UpsAddress

Command = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UpsConfig:
    address: UpsAddress
    username: str | None = None
    password_file: Path | None = None
    password_env: str | None = None
    tls: TlsMode = "if-offered"
    ca_file: Path | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The context that verifies upsd's certificate: ``ca_file``, or the system's CAs."""
        if self.ca_file is None:
            return None
        try:
            return ssl.create_default_context(cafile=str(self.ca_file))
        except (OSError, ssl.SSLError) as e:
            raise PlanError(f"ups.ca_file: cannot load {self.ca_file}: {e}") from None

    def password(self) -> str | None:
        """Read the NUT password from its file or environment variable (never the plan)."""
        if self.password_file is not None:
            path = self.password_file
            try:
                mode = path.stat().st_mode
                text = path.read_text(encoding="utf-8").strip()
            except OSError as e:
                raise PlanError(f"ups.password_file: cannot read {path}: {e.strerror}") from None
            if mode & 0o077:  # anyone who can read it can FSD the UPS: shut everything down
                raise PlanError(
                    f"ups.password_file: {path} can be read by other users",
                    hint=f"chmod 600 {path}",
                )
            return text
        if self.password_env is not None:
            value = os.environ.get(self.password_env)
            if value is None:
                raise PlanError(
                    f"ups.password_env: environment variable {self.password_env} is not set"
                )
            return value
        return None


@dataclass(frozen=True, slots=True)
class Policy:
    """When to act. Times are seconds; charge is percent."""

    #: Seconds on battery before the plan runs (cuts shorter than this are ridden out).
    ride_through: float = 60.0
    #: Seconds mains must stay back before a cut counts as over (debounces flapping power).
    mains_stable: float = 10.0
    #: Run the plan at once when battery.charge falls below this while on battery.
    charge_below: float | None = None
    #: ... or when battery.runtime falls below this many seconds.
    runtime_below: float | None = None
    #: NUT's DEADTIME: a UPS unheard-from this long, last seen on battery, counts as LB.
    dead_after: float = 15.0
    #: Seconds of runtime kept in hand when deadlines are sized from the remaining runtime.
    reserve: float = 30.0
    #: After mains returns: battery.charge needed before stopped hosts are started again.
    restart_charge: float = 50.0
    #: Set FSD on the UPS, so NUT secondaries (upsmon) shut down.
    fsd: bool = True
    #: When: "end" (once the plan's hosts are down, before the coordinator) or "start" (as
    #: soon as the shutdown starts, as upsmon's primary does; the shutdown then goes all the
    #: way even if mains returns, FSD being latched).
    fsd_at: str = "end"
    #: Seconds to wait for NUT secondaries to log out after FSD (upsmon's HOSTSYNC).
    secondaries_wait: float = 15.0
    #: Finally ask the UPS to cut the load and restore it when mains returns (shutdown.return).
    cut_power: bool = False
    #: Seconds between polls of the UPS (NUT has no push; a poll is one small request).
    poll_interval: float = 0.5
    #: upsmon's NOCOMMWARNTIME: a UPS unreachable this long raises NOCOMM (notify only).
    nocomm_after: float = 300.0


@dataclass(frozen=True, slots=True)
class Agent:
    url: str
    secret_file: Path


@dataclass(frozen=True, slots=True)
class Supply:
    """One UPS feeding a host, and what it counts for (upsmon's MONITOR power value)."""

    #: The UPS's address, as the plan's ``[[ups]]`` names it (``str(UpsAddress)``).
    ups: str
    #: How much of the host's need this UPS covers (1 for each power supply it feeds).
    power: int = 1


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    description: str = ""
    depends_on: tuple[str, ...] = ()
    #: Network gear (a switch, the router): never stopped, kept up for the others.
    never_stop: bool = False
    coordinator: bool = False
    #: Where drain and stop run: over SSH to this target, through a motte agent, or locally.
    ssh: str | None = None
    agent: Agent | None = None
    drain: Command | None = None
    stop: Command | None = None
    #: Run on the coordinator until it exits 0: the host is down.
    confirm: Command | None = None
    #: Run on the coordinator to bring the host back (wake-on-LAN, IPMI, a smart plug).
    start: Command | None = None
    #: Run on the coordinator until it exits 0: the host (and its Keeps) are serving again.
    ready: Command | None = None
    drain_time: float = 30.0
    stop_time: float = 60.0
    start_time: float = 300.0
    #: The UPSes that feed this host (``supplies``); none: every UPS, each one required.
    supplies: tuple[Supply, ...] = ()
    #: upsmon's MINSUPPLIES: the power it needs; None: every supply (the sum of the values).
    min_supplies: int | None = None

    @property
    def needed(self) -> int:
        """The power this host needs from its supplies (``supplies`` given)."""
        total = sum(s.power for s in self.supplies)
        return total if self.min_supplies is None else self.min_supplies

    @property
    def transport(self) -> str:
        return "agent" if self.agent else "ssh" if self.ssh else "local"

    @property
    def needs(self) -> float:
        """Seconds this host needs to drain and stop."""
        return (self.drain_time if self.drains else 0.0) + self.stop_time

    @property
    def drains(self) -> bool:
        return self.drain is not None or self.agent is not None


@dataclass(frozen=True, slots=True)
class Notify:
    command: Command | None = None
    events: tuple[str, ...] = NOTIFY_EVENTS
    log: Path | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    source: Path
    #: Every UPS the plan watches (``[ups]`` or ``[[ups]]``), each named by its address.
    #: All are required supplies: the plan acts when any one of them is critical.
    upses: tuple[UpsConfig, ...]
    policy: Policy
    notify: Notify
    hosts: dict[str, Host] = field(default_factory=dict)

    @property
    def coordinator(self) -> Host | None:
        return next((h for h in self.hosts.values() if h.coordinator), None)

    @property
    def redundant(self) -> bool:
        """Some host says which UPSes feed it: each UPS is then judged on its own."""
        return any(h.supplies for h in self.hosts.values())

    def feeds(self, name: str) -> tuple[dict[str, int], int]:
        """The UPSes that feed host ``name`` (address: power value) and the power it needs.

        A host without ``supplies`` is fed by every UPS and needs them all, as a plan without
        redundancy treats every host."""
        host = self.hosts[name]
        if not host.supplies:
            return {str(u.address): 1 for u in self.upses}, len(self.upses)
        return {s.ups: s.power for s in host.supplies}, host.needed

    def powered(self, name: str, lost: set[str] | frozenset[str]) -> bool:
        """Host ``name`` still has the power it needs with the UPSes in ``lost`` gone."""
        fed, needed = self.feeds(name)
        return sum(power for ups, power in fed.items() if ups not in lost) >= needed


class _Collecting(Table):
    """A table that notes each bad value and goes on with the default, so that one reading
    of a plan lists every problem in it (``problems``, shared by every sub-table)."""

    def __init__(self, *args: Any, problems: list[MotteError], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.problems = problems

    def note(self, error: MotteError) -> None:
        self.problems.append(error)

    def _try(self, read: Callable[[], Any], default: Any) -> Any:
        try:
            return read()
        except PlanError as e:
            self.note(e)
            return default

    def table(self, name: str, *, required: bool = False) -> Table | None:
        value = self.raw(name)
        if value is None:
            if required:
                self.note(self.fail(name, "is required"))
            return None
        return self._try(lambda: self.sub(value, self.key(name)), None)

    def sub(self, value: Any, path: KeyPath) -> _Collecting:
        return _Collecting(value, path, self.source, self.error, self.lines, problems=self.problems)

    def str(self, name: str, default: str | None = None, **kw: Any) -> Any:
        return self._try(lambda: Table.str(self, name, default, **kw), default)

    def num(self, name: str, default: float | None = None, **kw: Any) -> Any:
        return self._try(lambda: Table.num(self, name, default, **kw), default)

    def bool(self, name: str, default: bool) -> bool:
        return bool(self._try(lambda: Table.bool(self, name, default), default))

    def str_list(self, name: str) -> tuple[str, ...]:
        return tuple(self._try(lambda: Table.str_list(self, name), ()))

    def command(self, name: str) -> tuple[str, ...] | None:
        return self._try(lambda: Table.command(self, name), None)

    def done(self) -> None:
        for key in sorted(set(self.data) - self._seen):
            self.note(self.fail(key, "unknown key", hint=f"known keys here: {self._known()}"))


def load_plan(path: str | os.PathLike[str]) -> Plan:
    """Read and structurally validate a plan; raises :class:`PlanError` naming file and key.

    Every problem is found in one reading: the error's ``problems`` lists them all (its
    message is the first, and says how many more).
    """
    source = Path(path)
    # Relative paths in the plan are taken from its folder, as an absolute path: with a plan
    # given as "plan.toml", Path(".") / "./stop.sh" would be "stop.sh", looked up on PATH.
    base = source.absolute().parent
    first = load_table(source, PlanError, what="shutdown plan")
    problems: list[MotteError] = []
    top = _Collecting(first.data, (), source, PlanError, first.lines, problems=problems)

    def section(read: Callable[[], Any], default: Any) -> Any:
        """One part of the plan; a problem that stops it is noted, and the rest still read."""
        try:
            return read()
        except PlanError as e:
            problems.append(e)
            return default

    name = top.str("name", source.stem)
    if not name.replace("-", "").replace("_", "").isalnum():
        top.note(top.fail("name", f"must be letters, digits, - and _ only, not {name!r}"))
    upses = section(lambda: _upses(top, base), ())
    policy_table = top.table("policy")
    policy = section(lambda: _policy(policy_table), Policy()) if policy_table else Policy()
    notify_table = top.table("notify")
    notify = section(lambda: _notify(notify_table, base), Notify()) if notify_table else Notify()
    hosts_table = top.table("hosts", required=True)
    hosts = {}
    for host_name in hosts_table.data if hosts_table is not None else {}:
        assert hosts_table is not None
        host_table = hosts_table.table(host_name)
        if host_table is not None:
            host = section(lambda t=host_table, n=host_name: _host(n, t, base, upses), None)
            if host is not None:
                hosts[host_name] = host
    if hosts_table is not None:
        hosts_table.done()
        if not hosts_table.data:
            problems.append(PlanError(f"{source}: hosts: the plan has no hosts"))
    top.done()
    if problems:
        raise PlanError(
            problems[0].message
            + (f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""),
            hint=problems[0].hint
            if len(problems) == 1
            else f"`motte power plan check {source}` lists them all",
            problems=tuple(p.message for p in problems),
        )
    return Plan(name, source, upses, policy, notify, hosts)


def _command(t: Table, name: str, base: Path) -> Command | None:
    """A command; a relative program path (``hosts/stop.sh``) is taken from the plan's folder."""
    argv = t.command(name)
    if argv is None or "/" not in argv[0] or argv[0].startswith("/"):
        return argv
    return (str(base / argv[0]), *argv[1:])


def _path(value: str | None, base: Path) -> Path | None:
    if value is None:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _upses(top: Table, base: Path) -> tuple[UpsConfig, ...]:
    """``[ups]`` (one table) or ``[[ups]]`` (several); no two may name the same address."""
    raw = top.raw("ups")
    if raw is None:
        raise top.fail("ups", "is required (ups@host[:port] of the UPS to watch)")
    if isinstance(raw, list):
        if not raw:
            raise top.fail("ups", "lists no UPS")
        tables = [((*top.key("ups"), i), item) for i, item in enumerate(raw)]
    else:
        tables = [(top.key("ups"), raw)]
    upses: list[UpsConfig] = []
    seen: dict[UpsAddress, int] = {}
    for i, (key, item) in enumerate(tables):
        t = (
            top.sub(item, key)
            if isinstance(top, _Collecting)
            else Table(item, key, top.source, top.error, top.lines)
        )
        config = _ups(t, base)
        if config.address in seen:
            raise t.fail(
                "address",
                f"{config.address} is already watched by ups[{seen[config.address]}]",
                hint="each UPS is named by its address: list it once",
            )
        seen[config.address] = i
        upses.append(config)
    return tuple(upses)


def _ups(t: Table, base: Path) -> UpsConfig:
    address_text = t.str("address")
    if address_text is None:
        raise t.fail("address", "is required (ups@host[:port])")
    try:
        address = UpsAddress.parse(address_text)
    except ValueError as e:
        raise t.fail("address", str(e)) from None
    if t.has("password"):
        raise t.fail(
            "password",
            "a password may not be written in the plan",
            hint="put it in a file readable only by the coordinator (password_file) "
            "or an environment variable (password_env)",
        )
    username = t.str("username")
    password_file = _path(t.str("password_file"), base)
    password_env = t.str("password_env")
    if password_file and password_env:
        raise t.fail("password_env", "give password_file or password_env, not both")
    if username and not (password_file or password_env):
        raise t.fail("username", "needs password_file or password_env")
    if (password_file or password_env) and not username:
        raise t.fail("username", "is required when a password is given")
    config = UpsConfig(
        address=address,
        username=username,
        password_file=password_file,
        password_env=password_env,
        tls=t.str("tls", "if-offered", choices=("off", "if-offered", "required")),
        ca_file=_path(t.str("ca_file"), base),
    )
    t.done()
    return config


def _policy(t: Table) -> Policy:
    d = Policy()
    policy = Policy(
        ride_through=t.num("ride_through", d.ride_through),
        mains_stable=t.num("mains_stable", d.mains_stable),
        charge_below=t.num("charge_below", None, high=100),
        runtime_below=t.num("runtime_below", None),
        dead_after=t.num("dead_after", d.dead_after, low=1),
        reserve=t.num("reserve", d.reserve),
        restart_charge=t.num("restart_charge", d.restart_charge, high=100),
        fsd=t.bool("fsd", d.fsd),
        fsd_at=t.str("fsd_at", d.fsd_at, choices=("end", "start")),
        secondaries_wait=t.num("secondaries_wait", d.secondaries_wait),
        cut_power=t.bool("cut_power", d.cut_power),
        poll_interval=t.num("poll_interval", d.poll_interval, low=0.05, high=5),
        nocomm_after=t.num("nocomm_after", d.nocomm_after, low=1),
    )
    t.done()
    return policy


def _notify(t: Table, base: Path) -> Notify:
    events = t.str_list("events") or NOTIFY_EVENTS
    for event in events:
        if event not in NOTIFY_EVENTS:
            raise t.fail("events", f"unknown event {event!r}", hint=", ".join(NOTIFY_EVENTS))
    notify = Notify(
        command=_command(t, "command", base), events=events, log=_path(t.str("log"), base)
    )
    t.done()
    return notify


def _problem(t: Table, error: MotteError) -> None:
    """Note ``error`` and read on when ``t`` collects problems; else raise it."""
    if isinstance(t, _Collecting):
        t.note(error)
    else:
        raise error


def _supplies(t: Table, upses: tuple[UpsConfig, ...]) -> tuple[tuple[Supply, ...], int | None]:
    """``supplies`` (UPS names, or UPS name: power value) and ``min_supplies``.

    A supply names a watched UPS by its address or, when no other watched UPS has that
    name, by its UPS name alone (``rack``)."""
    raw = t.raw("supplies")
    minimum = t.raw("min_supplies")
    if raw is None:
        if minimum is not None:
            raise t.fail("min_supplies", "needs supplies: the UPSes that feed this host")
        return (), None
    if isinstance(raw, list) and all(isinstance(v, str) and v for v in raw):
        given: list[tuple[str, Any]] = [(v, 1) for v in raw]
    elif isinstance(raw, dict):
        given = list(raw.items())
    else:
        raise t.fail(
            "supplies",
            "must be a list of UPS names, or a table of UPS name = power value",
            hint='supplies = ["rack", "aux"], or supplies = { rack = 1, aux = 1 }',
        )
    if not given:
        raise t.fail("supplies", "names no UPS (leave it out: every UPS then feeds the host)")
    by_name: dict[str, list[str]] = {}
    for u in upses:
        by_name.setdefault(u.address.ups, []).append(str(u.address))
    supplies: list[Supply] = []
    seen: dict[str, str] = {}
    for ref, power in given:
        if isinstance(power, bool) or not isinstance(power, int) or power < 1:
            raise t.fail(
                "supplies",
                f"{ref}: the power value must be a whole number of at least 1, not {power!r}",
            )
        address = _resolve_ups(ref, upses, by_name)
        if address is None:
            known = ", ".join(str(u.address) for u in upses)
            raise t.fail(
                "supplies", f"{ref}: not a UPS of this plan", hint=f"the plan watches {known}"
            )
        if address.startswith("?"):
            raise t.fail(
                "supplies",
                f"{ref}: several watched UPSes are named {ref}",
                hint=f"name it by its address: {address[1:]}",
            )
        if address in seen:
            raise t.fail("supplies", f"{ref}: the same UPS as {seen[address]}")
        seen[address] = ref
        supplies.append(Supply(address, power))
    total = sum(s.power for s in supplies)
    if minimum is None:
        return tuple(supplies), None
    if isinstance(minimum, bool) or not isinstance(minimum, int) or minimum < 1:
        raise t.fail(
            "min_supplies",
            f"must be a whole number of at least 1, not {minimum!r}",
            hint="a host that needs no supply is never stopped: make it never_stop",
        )
    if minimum > total:
        raise t.fail(
            "min_supplies",
            f"needs {minimum} but its supplies give at most {total}: it could never run",
        )
    return tuple(supplies), minimum


def _resolve_ups(
    ref: str, upses: tuple[UpsConfig, ...], by_name: dict[str, list[str]]
) -> str | None:
    """The address ``ref`` names; "?addresses" when the name is ambiguous; None: unknown."""
    if "@" in ref:
        try:
            address = str(UpsAddress.parse(ref))
        except ValueError:
            return None
        return address if any(str(u.address) == address for u in upses) else None
    matches = by_name.get(ref, [])
    if len(matches) > 1:
        return "?" + " or ".join(matches)
    return matches[0] if matches else None


def _host(name: str, t: Table, base: Path, upses: tuple[UpsConfig, ...] = ()) -> Host:
    agent = None
    agent_table = t.table("agent")
    if agent_table is not None:
        url, secret = agent_table.str("url"), agent_table.str("secret_file")
        if not url or not url.startswith(("http://", "https://")):
            raise agent_table.fail("url", "is required: http(s)://host:port of the agent")
        if not secret:
            raise agent_table.fail("secret_file", "is required: the agent's shared secret")
        agent_table.done()
        secret_path = _path(secret, base)
        assert secret_path is not None
        agent = Agent(url.rstrip("/"), secret_path)
    host = Host(
        name=name,
        description=t.str("description", ""),
        depends_on=t.str_list("depends_on"),
        never_stop=t.bool("never_stop", False),
        coordinator=t.bool("coordinator", False),
        ssh=t.str("ssh"),
        agent=agent,
        drain=_command(t, "drain", base),
        stop=_command(t, "stop", base),
        confirm=_command(t, "confirm", base),
        start=_command(t, "start", base),
        ready=_command(t, "ready", base),
        drain_time=t.num("drain_time", 30.0),
        stop_time=t.num("stop_time", 60.0),
        start_time=t.num("start_time", 300.0, low=1),
    )
    if upses or not t.has("supplies"):  # no UPS read (already an error): nothing to name
        try:
            supplies, minimum = _supplies(t, upses)
        except PlanError as e:
            _problem(t, e)
            supplies, minimum = (), None
        host = replace(host, supplies=supplies, min_supplies=minimum)
    else:
        t.raw("supplies"), t.raw("min_supplies")
    if host.never_stop and host.supplies:
        _problem(
            t,
            t.fail("supplies", "a never_stop host is never stopped: its supplies decide nothing"),
        )
    if host.ssh and host.agent:
        _problem(t, t.fail("agent", "give ssh or agent, not both"))
    if host.agent and (host.drain or host.stop):
        _problem(
            t,
            t.fail(
                "stop" if host.stop else "drain",
                "the agent runs its own drain and stop commands; remove this key",
            ),
        )
    if host.never_stop:
        for key in ("drain", "stop", "ssh", "agent", "start", "confirm"):
            if t.has(key):
                _problem(t, t.fail(key, "a never_stop host is never drained, stopped or started"))
        if host.coordinator:
            _problem(
                t,
                t.fail("never_stop", "the coordinator is stopped last, so it cannot be never_stop"),
            )
    elif not host.coordinator and not (host.stop or host.agent):
        _problem(
            t, t.fail("stop", "is required: how to stop this host (or give agent, or never_stop)")
        )
    if host.coordinator and (host.ssh or host.agent):
        _problem(t, t.fail("ssh" if host.ssh else "agent", "the coordinator stops itself locally"))
    t.done()
    return host
