"""Requests and grants: a package's Motte.toml asks for host resources; the host grants them.

What a manifest can ask of the host (its *requests*):

* ``[[dir]]``: a host directory, granted by its ``name`` (``dir:NAME``);
* ``stdin``, ``stdout``, ``stderr`` = ``{ file = ... }``: a host file (``stdin``, ``stdout``,
  ``stderr``);
* ``env.X = { host = "NAME" }``: the host's environment variable NAME (``env:NAME``);
* ``[[listen]]``: a port (``listen:NAME``); where it binds is always the host's decision;
* ``[[secret]]``: a secret the Keep asks its Steward for (``secret:NAME``). The Steward's
  release policy decides too: a secret reaches the guest only when both say yes. The
  content key of an encrypted package is not a request: it decrypts the module the operator
  chose to run and never reaches the guest;
* ``[[connect]]``: a destination to call (``connect:NAME``); where the Keep connects, the CA
  bundle it verifies the server against, reaching this host's loopback and any insecure
  TLS choice the manifest names are the host's decisions;
* ``[[volume]]``: a sealed volume (``volume:NAME``), its snapshots kept in the host
  directory granted (``volume:NAME=HOSTDIR``) or in the default place under
  ``MOTTE_HOME/volumes``. The Steward releases its key too (docs/sealed-state.md).

A host grants them with ``--grant`` flags (:func:`grants_from_flags`) or in its host policy
file (:func:`load_host_policy`). :func:`apply_grants` turns a manifest's requests into what a
Keep gets:

* a **package run by reference** gets nothing it asked for that is not granted: each
  missing grant is one line of a :class:`GrantRefusedError`, with the flag that grants it
  (a listener too: even on loopback, a port is the host's to give);
* a **manifest on this host's disk** (the operator's own) is granted as written, ``--grant``
  flags overriding; its listeners, too, bind loopback unless a flag says otherwise.

Grant kinds are one table (:data:`GRANT_KINDS`): a new kind is a parser there, a reader in
:data:`POLICY_KINDS` and a request kind in :func:`apply_grants`; a kind not in the table is
refused as unknown, with the closest known kind as a hint.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from motte._record import Record
from motte.errors import ConfigError, UsageError
from motte.manifest._connect import Connect, host_port
from motte.manifest._model import Dir, Manifest, Secret, Stdio, Volume
from motte.manifest._schema import SECRET_NAME

#: Where the host policy is looked for, in this order (the first that exists is read).
HOST_POLICY_NAME = "host-policy.toml"
SYSTEM_HOST_POLICY = Path("/etc/motte") / HOST_POLICY_NAME
#: A listener below this port is named as privileged in a refusal (another port is offered).
FIRST_UNPRIVILEGED_PORT = 1024
STREAMS = ("stdin", "stdout", "stderr")


class GrantError(ConfigError):
    """A ``--grant`` flag or the host policy file is malformed, or grants what nothing asks."""


class GrantRefusedError(ConfigError):
    """A package asks for host resources this host has not granted; ``missing`` holds one
    line per request, each with the flag that would grant it."""

    def __init__(self, package: str, missing: Sequence[str], policy: Path | None) -> None:
        if policy is None:
            from motte.home import motte_home

            policy = motte_home() / HOST_POLICY_NAME
        where = f"the host policy ({policy})"
        lines = "\n".join(f"  {line}" for line in missing)
        super().__init__(
            f"{package} asks for {len(missing)} thing(s) this host has not granted:\n{lines}",
            hint=f"grant each with the flag shown, or in {where}; a package run by reference "
            'gets nothing else (docs/running.md, "Requests and grants")',
        )
        self.missing = tuple(missing)


# -- one grant -------------------------------------------------------------------------------


class Grant(Record):
    """One thing a host grants: ``kind`` (dir, env, listen, connect, secret, volume, stdin,
    stdout, stderr), the request's ``name`` (the stream's name for a stream), and what it
    grants: ``path`` and ``writable`` (dir, streams; the CA bundle of a connect; a volume's
    snapshot directory), ``address`` and ``port`` (listen, connect), ``options`` (connect:
    the insecure choices consented to). ``where`` says where the grant was written
    (``--grant ...`` or ``FILE:LINE``)."""

    __slots__ = ("address", "kind", "name", "options", "path", "port", "where", "writable")
    _uncompared = frozenset({"where"})
    kind: str
    name: str
    path: Path | None
    writable: bool
    address: str | None
    port: int | None
    options: frozenset[str]
    where: str

    def __init__(
        self,
        kind: str,
        name: str,
        *,
        path: Path | None = None,
        writable: bool = False,
        address: str | None = None,
        port: int | None = None,
        options: frozenset[str] = frozenset(),
        where: str = "",
    ) -> None:
        self._set(
            kind=kind,
            name=name,
            path=path,
            writable=writable,
            address=address,
            port=port,
            options=frozenset(options),
            where=where,
        )

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.name


class Grants(Record):
    """A set of grants, one per (kind, name)."""

    __slots__ = ("items",)
    items: Mapping[tuple[str, str], Grant]

    def __init__(self, items: Iterable[Grant] = ()) -> None:
        table: dict[tuple[str, str], Grant] = {}
        for g in items:
            if g.key in table:
                raise GrantError(
                    f"{g.where}: {_label(*g.key)} is already granted by {table[g.key].where}",
                    hint="grant each thing once",
                )
            table[g.key] = g
        self._set(items=MappingProxyType(table))

    def _key(self) -> tuple[object, ...]:
        return tuple(sorted(self.items.items()))

    def get(self, kind: str, name: str) -> Grant | None:
        return self.items.get((kind, name))

    def over(self, base: Grants) -> Grants:
        """These grants, and those of ``base`` for what these do not grant."""
        return Grants(
            [*self.items.values(), *(g for k, g in base.items.items() if k not in self.items)]
        )

    def __bool__(self) -> bool:
        return bool(self.items)


def _label(kind: str, name: str) -> str:
    return kind if kind in STREAMS else f"{kind}:{name}"


# -- --grant flags ---------------------------------------------------------------------------

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def _check_name(name: str, flag: str, what: str) -> str:
    if not name or len(name) > 63 or not set(name) <= _NAME_CHARS:
        raise UsageError(
            f"{flag}: {what} name {name!r}: use 1 to 63 letters, digits, '-' or '_'",
            hint="the names are those of the package's [[dir]] and [[listen]] entries",
        )
    return name


def _host_path(text: str, base: Path) -> Path:
    return Path(os.path.normpath((base / text).absolute()))


def _dir_flag(name: str, value: str | None, flag: str, base: Path) -> Grant:
    _check_name(name, flag, "directory")
    if not value:
        raise UsageError(f"{flag}: expected dir:NAME=HOSTPATH[:writable]")
    path, writable = value, False
    for suffix, mode in ((":writable", True), (":ro", False)):
        if value.endswith(suffix):
            path, writable = value[: -len(suffix)], mode
    if not path:
        raise UsageError(f"{flag}: the host directory is empty")
    return Grant("dir", name, path=_host_path(path, base), writable=writable, where=flag)


def _env_flag(name: str, value: str | None, flag: str, base: Path) -> Grant:
    if not name or "=" in name or "\0" in name or value is not None:
        raise UsageError(
            f"{flag}: expected env:NAME, the host variable the package asks for",
            hint="to give a value of your own, use --env NAME=VALUE",
        )
    return Grant("env", name, where=flag)


def parse_listen_value(text: str, where: str) -> tuple[str | None, int | None]:
    """``PORT``, ``ADDRESS``, ``ADDRESS:PORT`` or ``[IPv6]:PORT`` -> (address, port); the
    address an IP literal (``::`` or ``0.0.0.0`` for every interface)."""
    import ipaddress

    address: str | None
    port: str | None
    if text.isdigit():
        address, port = None, text
    elif text.startswith("["):
        inside, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise UsageError(f"{where}: expected [IPv6]:PORT, got {text!r}")
        address, port = inside, rest[1:] or None
    elif text.count(":") == 1:
        address, port = text.split(":")
    else:
        address, port = text, None
    if address is not None:
        try:
            address = str(ipaddress.ip_address(address))
        except ValueError:
            raise UsageError(
                f"{where}: {address!r} is not an IP address",
                hint="e.g. 127.0.0.1, ::1, 0.0.0.0 or :: (every interface), or a port alone",
            ) from None
    number = None
    if port is not None:
        if not port.isdigit() or int(port) > 65535:
            raise UsageError(f"{where}: port {port!r}: expected 0 to 65535 (0: any free port)")
        number = int(port)
    return address, number


def _listen_flag(name: str, value: str | None, flag: str, base: Path) -> Grant:
    _check_name(name, flag, "listener")
    address, port = parse_listen_value(value, flag) if value else (None, None)
    return Grant("listen", name, address=address, port=port, where=flag)


def check_secret_name(name: str, where: str) -> str:
    """A secret's name as the Steward spells it (lower-case words joined by ``/``)."""
    if len(name) > 128 or not SECRET_NAME.fullmatch(name):
        raise UsageError(
            f"{where}: {name!r} is not a secret name (lower-case letters, digits, . _ - "
            "joined by /)",
            hint="the names are those of the package's [[secret]] entries",
        )
    return name


def _secret_flag(name: str, value: str | None, flag: str, base: Path) -> Grant:
    if value is not None:
        raise UsageError(
            f"{flag}: expected secret:NAME (the value comes from the Steward, never a flag)",
            hint="e.g. --grant secret:db-password",
        )
    return Grant("secret", check_secret_name(name, flag), where=flag)


#: The insecure TLS choices a host may consent to (each also named in the manifest).
UNSAFE_TLS = ("unsafe_legacy_tls", "unsafe_skip_verification")


def parse_connect_address(text: str, where: str) -> tuple[str, int | None]:
    """``HOST``, ``HOST:PORT``, ``IPv6`` or ``[IPv6]:PORT`` -> (host, port or None)."""
    from motte._toml import Invalid
    from motte.manifest._connect import check_host, check_port

    host, port = text, None
    if text.startswith("["):
        inside, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise UsageError(f"{where}: expected [IPv6]:PORT, got {text!r}")
        host, port = inside, rest[1:] or None
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        checked = check_host(host, ())
        number = None
        if port is not None:
            number = check_port(int(port) if port.isdigit() else port, ())
    except Invalid as e:
        raise UsageError(f"{where}: {e.reason}", hint=e.hint) from None
    return checked, number


def _connect_flag(name: str, value: str | None, flag: str, base: Path) -> Grant:
    """``connect:NAME[=ITEM,...]``: ITEM is where to connect (``HOST[:PORT]``), ``ca=FILE``
    (the CA bundle; default the system's roots) or an insecure choice's name."""
    _check_name(name, flag, "destination")
    address = port = path = None
    options: set[str] = set()
    for item in (value or "").split(",") if value else ():
        key, eq, rest = item.partition("=")
        if eq and key == "ca":
            if not rest or path is not None:
                raise UsageError(f"{flag}: ca= names one CA bundle file")
            path = _host_path(rest, base)
        elif item in UNSAFE_TLS:
            options.add(item)
        elif eq or not item or item.startswith("unsafe"):
            raise UsageError(
                f"{flag}: unknown item {item!r}",
                hint="connect:NAME=HOST:PORT,ca=FILE (each optional), or an insecure choice the "
                f"manifest names ({', '.join(UNSAFE_TLS)})",
            )
        elif address is not None:
            raise UsageError(f"{flag}: two addresses ({address!r} and {item!r})")
        else:
            address, port = parse_connect_address(item, flag)
    return Grant(
        "connect",
        name,
        address=address,
        port=port,
        path=path,
        options=frozenset(options),
        where=flag,
    )


_VOLUME_NAME = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")


def _check_volume_name(name: str, where: str) -> str:
    if not name or len(name) > 63 or not set(name) <= _VOLUME_NAME or name[0] in "_-":
        raise UsageError(
            f"{where}: volume name {name!r}: 1 to 63 lower-case letters, digits, '-' or '_'",
            hint="the names are those of the package's [[volume]] entries",
        )
    return name


def _volume_flag(name: str, value: str | None, flag: str, base: Path) -> Grant:
    """``volume:NAME`` (snapshots in the default place under MOTTE_HOME/volumes) or
    ``volume:NAME=HOSTDIR``."""
    _check_volume_name(name, flag)
    if value is None:
        return Grant("volume", name, where=flag)
    if not value:
        raise UsageError(f"{flag}: the host directory is empty")
    return Grant("volume", name, path=_host_path(value, base), where=flag)


def _stream_flag(stream: str) -> Callable[[str, str | None, str, Path], Grant]:
    def parse(name: str, value: str | None, flag: str, base: Path) -> Grant:
        if name or not value:
            raise UsageError(f"{flag}: expected {stream}=FILE")
        return Grant(stream, stream, path=_host_path(value, base), where=flag)

    return parse


#: ``--grant KIND[:NAME][=VALUE]``: one parser per kind (name, value, the flag, the
#: directory relative paths start from).
GRANT_KINDS: dict[str, Callable[[str, str | None, str, Path], Grant]] = {
    "dir": _dir_flag,
    "env": _env_flag,
    "listen": _listen_flag,
    "connect": _connect_flag,
    "secret": _secret_flag,
    "volume": _volume_flag,
    "stdin": _stream_flag("stdin"),
    "stdout": _stream_flag("stdout"),
    "stderr": _stream_flag("stderr"),
}


def _unknown_kind(kind: str, where: str) -> GrantError:
    import difflib

    close = difflib.get_close_matches(kind, list(GRANT_KINDS), n=1)
    return GrantError(
        f"{where}: unknown grant kind {kind!r} (known: {', '.join(GRANT_KINDS)})",
        hint=f"did you mean {close[0]!r}?" if close else None,
    )


def grant_from_flag(text: str, base: Path | None = None) -> Grant:
    """One ``--grant`` value; relative host paths start at ``base`` (the working directory)."""
    flag = f"--grant {text}"
    head, eq, value = text.partition("=")
    kind, colon, name = head.partition(":")
    if kind not in GRANT_KINDS:
        raise _unknown_kind(kind, flag)
    if kind not in STREAMS and not colon:
        raise UsageError(f"{flag}: expected {kind}:NAME...", hint=_EXAMPLES[kind])
    if "\0" in text:
        raise UsageError(f"{flag}: contains a NUL character")
    return GRANT_KINDS[kind](name, value if eq else None, flag, base or Path.cwd())


_EXAMPLES = {
    "dir": "e.g. --grant dir:data=./data or --grant dir:out=/srv/out:writable",
    "env": "e.g. --grant env:LANG",
    "listen": "e.g. --grant listen:web, --grant listen:web=8443 or --grant listen:web=0.0.0.0:8443",
    "secret": "e.g. --grant secret:db-password",
    "connect": "e.g. --grant connect:api, --grant connect:api=10.0.0.7:443 or "
    "--grant connect:api=ca=./vendor-ca.pem",
    "volume": "e.g. --grant volume:data or --grant volume:data=/srv/motte/data",
}


def grants_from_flags(texts: Sequence[str], base: Path | None = None) -> Grants:
    return Grants(grant_from_flag(t, base) for t in texts)


# -- the host policy file ----------------------------------------------------------------------


class HostPolicy(Record):
    """The host's standing grants: ``everyone`` for every package run by reference, and
    ``packages`` for one package each (by repository, as in the reference, without tag or
    digest), which replace the same items of ``everyone``."""

    __slots__ = ("everyone", "packages", "source")
    everyone: Grants
    packages: Mapping[str, Grants]
    source: Path | None

    def __init__(
        self,
        everyone: Grants | None = None,
        packages: Mapping[str, Grants] | None = None,
        source: Path | None = None,
    ) -> None:
        self._set(
            everyone=everyone or Grants(),
            packages=MappingProxyType(dict(packages or {})),
            source=source,
        )

    def _key(self) -> tuple[object, ...]:
        return (self.everyone, tuple(sorted(self.packages.items())), self.source)

    def for_package(self, repository: str) -> Grants:
        own = self.packages.get(repository)
        return own.over(self.everyone) if own is not None else self.everyone


def host_policy_path() -> Path | None:
    """``$MOTTE_HOME/host-policy.toml``, else ``/etc/motte/host-policy.toml``: the first that
    exists, or None."""
    from motte.home import motte_home

    for path in (motte_home() / HOST_POLICY_NAME, SYSTEM_HOST_POLICY):
        if os.path.lexists(path):
            return path
    return None


def _absolute_path(t: Any, key: str) -> Path:
    text = t.str(key)
    if text is None:
        raise t.fail(key, "is required")
    if not text.startswith("/") or "\0" in text:
        raise t.fail(key, f"must be an absolute path, not {text!r}")
    return Path(os.path.normpath(text))


def _policy_dirs(t: Any) -> list[Grant]:
    out = []
    for name in t.data:
        sub = t.table(name)
        _check_policy_name(t, name)
        path = _absolute_path(sub, "host")
        writable = sub.bool("writable", False)
        sub.done()
        out.append(Grant("dir", name, path=path, writable=writable, where=_where(sub)))
    return out


def _policy_listen(t: Any) -> list[Grant]:
    out = []
    for name in t.data:
        sub = t.table(name)
        _check_policy_name(t, name)
        address = sub.str("address")
        port = sub.num("port", None, low=0, high=65535)
        if port is not None and port != int(port):
            raise sub.fail("port", "must be a whole number")
        if address is not None:
            try:
                address, _ = parse_listen_value(address, "address")
            except UsageError as e:
                raise sub.fail("address", e.message.split(": ", 1)[1], e.hint) from None
            if address is None:
                raise sub.fail("address", "must be an IP address, not a port")
        sub.done()
        port = None if port is None else int(port)
        out.append(Grant("listen", name, address=address, port=port, where=_where(sub)))
    return out


def _policy_secrets(t: Any, key: str) -> list[Grant]:
    """``secret = ["db-password", ...]``, or ``[secret."db-password"]`` tables (with no keys
    today: the Steward's release policy holds the rest)."""
    value = t.raw(key)
    names: list[tuple[str, str]] = []
    if isinstance(value, dict):
        sub = t.table(key)
        for name in sub.data:
            entry = sub.table(name)
            entry.done()
            names.append((name, _where(entry)))
        sub.done()
    else:
        names = [(n, _where(t, key)) for n in t.str_list(key)]
    out = []
    for name, where in names:
        try:
            check_secret_name(name, where)
        except UsageError as e:
            raise GrantError(e.message, hint=e.hint) from None
        out.append(Grant("secret", name, where=where))
    return out


def _policy_volumes(t: Any, key: str) -> list[Grant]:
    """``volume = ["data", ...]`` (the default place), or ``[volume.data]`` tables with an
    optional ``host = "/abs/dir"``."""
    value = t.raw(key)
    out = []
    if isinstance(value, dict):
        sub = t.table(key)
        for name in sub.data:
            entry = sub.table(name)
            host = _absolute_path(entry, "host") if entry.has("host") else None
            entry.done()
            where = _where(entry)
            try:
                _check_volume_name(name, where)
            except UsageError as e:
                raise GrantError(e.message, hint=e.hint) from None
            out.append(Grant("volume", name, path=host, where=where))
        sub.done()
        return out
    for name in t.str_list(key):
        where = _where(t, key)
        try:
            _check_volume_name(name, where)
        except UsageError as e:
            raise GrantError(e.message, hint=e.hint) from None
        out.append(Grant("volume", name, where=where))
    return out


def _policy_connect(t: Any) -> list[Grant]:
    out = []
    for name in t.data:
        sub = t.table(name)
        _check_policy_name(t, name)
        address = sub.str("address")
        host = port = None
        if address is not None:
            try:
                host, port = parse_connect_address(address, "address")
            except UsageError as e:
                raise sub.fail("address", e.message.split(": ", 1)[1], e.hint) from None
        ca = _absolute_path(sub, "ca") if sub.has("ca") else None
        options = frozenset(o for o in UNSAFE_TLS if sub.bool(o, False))
        sub.done()
        out.append(
            Grant(
                "connect",
                name,
                address=host,
                port=port,
                path=ca,
                options=options,
                where=_where(sub),
            )
        )
    return out


def _policy_env(t: Any, key: str) -> list[Grant]:
    return [Grant("env", n, where=_where(t, key)) for n in t.str_list(key)]


def _policy_stream(t: Any, key: str) -> list[Grant]:
    return [Grant(key, key, path=_absolute_path(t, key), where=_where(t, key))]


def _check_policy_name(t: Any, name: str) -> None:
    if not name or len(name) > 63 or not set(name) <= _NAME_CHARS:
        raise t.fail(name, "use 1 to 63 letters, digits, '-' or '_' as a name")


def _where(t: Any, key: str | None = None) -> str:
    from motte._toml import line_of

    line = line_of(t.lines, t.key(key) if key else t.path)
    return f"{t.source}:{line}" if line else str(t.source)


#: Each key of the host policy (at the top, and in each ``[package."..."]``) and its reader:
#: tables of named grants, or values.
POLICY_KINDS: dict[str, Callable[[Any, str], list[Grant]]] = {
    "dir": lambda t, key: _policy_dirs(t.table(key)),
    "listen": lambda t, key: _policy_listen(t.table(key)),
    "connect": lambda t, key: _policy_connect(t.table(key)),
    "env": _policy_env,
    "secret": _policy_secrets,
    "volume": _policy_volumes,
    "stdin": _policy_stream,
    "stdout": _policy_stream,
    "stderr": _policy_stream,
}


def _read_grants(t: Any) -> Grants:
    out: list[Grant] = []
    for key in list(t.data):
        if key == "package" and not t.path:
            continue
        if key not in POLICY_KINDS:
            continue  # refused by done() with the known keys
        out += POLICY_KINDS[key](t, key)
    return Grants(out)


#: A host policy is a page of TOML.
MAX_HOST_POLICY_BYTES = 1024 * 1024


def load_host_policy(path: Path | None = None) -> HostPolicy:
    """The host policy at ``path`` (default :func:`host_policy_path`); the empty policy when
    there is none. Strict, like every motte file: an unknown key is an error naming the
    file, the line and the key."""
    from motte._toml import load_table

    path = path if path is not None else host_policy_path()
    if path is None:
        return HostPolicy()
    top = load_table(path, GrantError, what="host policy", max_bytes=MAX_HOST_POLICY_BYTES)
    everyone = _read_grants(top)
    packages = {}
    table = top.table("package")
    if table is not None:
        for repository in table.data:
            sub = table.table(repository)
            packages[repository] = _read_grants(sub)
            sub.done()
        table.done()
    top.done()
    return HostPolicy(everyone, packages, path)


# -- requests, and what is granted -------------------------------------------------------------


class Granted(Record):
    """What :func:`apply_grants` decided: the ``manifest`` a Keep runs (every request
    resolved, nothing left for the Keep to look up on the host), the ``mode`` (``package``:
    only what is granted; ``local``: this host's own manifest, granted as written) and one
    line per thing granted (``granted``)."""

    __slots__ = ("granted", "manifest", "mode")
    manifest: Manifest
    mode: str
    granted: tuple[str, ...]

    def __init__(self, manifest: Manifest, mode: str, granted: Sequence[str] = ()) -> None:
        self._set(manifest=manifest, mode=mode, granted=tuple(granted))


def _shown(path: Path, cwd: Path) -> str:
    rel = os.path.relpath(path, cwd)
    return rel if not rel.startswith("..") and len(rel) < len(str(path)) else str(path)


def _suggest(path: Path, cwd: Path) -> str | None:
    """The host path a package names (relative, as it wrote it), as a value to copy into a
    flag, when it stays inside the working directory: not absolute, not ``..``, not the
    directory itself, no symbolic link out of it. Else None: the operator chooses."""
    if path.is_absolute() or path.parts[:1] in (("..",), ()) or str(path) == ".":
        return None
    base = os.path.realpath(cwd)
    real = os.path.realpath(cwd / path)
    if real == base or os.path.commonpath([real, base]) != base:
        return None
    return f"./{path}"


def _dir_line(d: Dir, cwd: Path) -> str:
    mode = "writable" if d.writable else "read-only"
    suggestion = _suggest(d.host, cwd)
    value = suggestion or "HOSTPATH"
    note = "" if suggestion else f" (the package names {d.host}: choose a directory yourself)"
    flag = f"--grant dir:{d.name}={value}{':writable' if d.writable else ''}"
    return f"dir {d.name}: a host directory at {d.guest}, {mode}{note}: {flag}"


def _stream_line(name: str, stdio: Stdio, cwd: Path) -> str:
    assert stdio.path is not None
    suggestion = _suggest(stdio.path, cwd)
    what = "reads" if name == "stdin" else "writes"
    note = "" if suggestion else f" (the package names {stdio.path}: choose a file yourself)"
    return f"{name}: {what} a host file{note}: --grant {name}={suggestion or 'FILE'}"


def _volume_line(vol: Volume) -> str:
    return (
        f"volume {vol.name}: sealed state at {vol.guest} (sealed to its {vol.sealed_to}): "
        f"--grant volume:{vol.name} (snapshots under MOTTE_HOME/volumes) or "
        f"--grant volume:{vol.name}=HOSTDIR"
    )


def _secret_line(name: str, asked: Sequence[Secret]) -> str:
    to = ", ".join(s.file or f"${s.env}" for s in asked)
    version = asked[0].version
    at = f" (version {version})" if version is not None else ""
    return f"secret {name}{at}: from the Steward, to {to}: --grant secret:{name}"


def apply_grants(
    manifest: Manifest,
    *,
    package: str | None,
    flags: Grants | None = None,
    policy: Grants | None = None,
    policy_source: Path | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Granted:
    """The manifest a Keep runs for ``manifest``'s requests.

    ``package`` names a package run by reference (its repository, for messages): then each
    request needs a grant, from ``flags`` (``--grant``) or ``policy`` (the host policy's
    grants for this package), and :class:`GrantRefusedError` lists every one that has none.
    With ``package`` None the manifest is this host's own: granted as written, ``flags``
    overriding (``policy`` is not consulted). A flag that grants nothing asked for is a
    :class:`GrantError` (a typo must not pass for a grant).
    """
    flags = flags or Grants()
    policy = (policy or Grants()) if package is not None else Grants()
    grants = flags.over(policy)
    environ = os.environ if environ is None else environ
    cwd = cwd or Path.cwd()
    used: set[tuple[str, str]] = set()
    missing: list[str] = []
    granted: list[str] = []

    def find(kind: str, name: str) -> Grant | None:
        g = grants.get(kind, name)
        if g is not None:
            used.add(g.key)
        return g

    dirs = []
    for d in manifest.dir:
        g = find("dir", d.name)
        if g is not None:
            assert g.path is not None
            d = d.replace(host=g.path, writable=g.writable, where=g.where)
        elif package is not None:
            missing.append(_dir_line(d, cwd))
            continue
        dirs.append(d)
        mode = "writable" if d.writable else "read-only"
        granted.append(f"dir {d.name} = {_shown(d.host, cwd)} at {d.guest} ({mode})")

    streams = {}
    for name in STREAMS:
        stdio: Stdio = getattr(manifest, name)
        if stdio.kind != "file":
            continue
        g = find(name, name)
        if g is not None:
            stdio = Stdio("file", g.path, where=g.where)
        elif package is not None:
            missing.append(_stream_line(name, stdio, cwd))
            continue
        streams[name] = stdio
        assert stdio.path is not None
        granted.append(f"{name} = {_shown(stdio.path, cwd)}")

    env = dict(manifest.env)
    for guest, host in manifest.host_env.items():
        g = find("env", host)
        if g is None and package is not None:
            missing.append(f"env {guest}: the host's {host}: --grant env:{host}")
            continue
        if host in environ:
            env[guest] = environ[host]
            granted.append(f"env {guest} = the host's {host}")
        else:
            granted.append(f"env {guest}: the host's {host} is not set")

    listen = []
    for lst in manifest.listen:
        g = find("listen", lst.name)
        port = lst.port if g is None or g.port is None else g.port
        if g is None and package is not None:
            if lst.port < FIRST_UNPRIVILEGED_PORT:
                missing.append(
                    f"listen {lst.name}: port {lst.port} ({lst.protocol}), a privileged port: "
                    f"--grant listen:{lst.name}={lst.port} (or another port: "
                    f"--grant listen:{lst.name}=8{lst.port:03d})"
                )
            else:
                missing.append(
                    f"listen {lst.name}: port {lst.port} ({lst.protocol}): "
                    f"--grant listen:{lst.name} (loopback), or "
                    f"--grant listen:{lst.name}=ADDRESS:PORT"
                )
            continue
        lst = lst.replace(port=port, address=None if g is None else g.address)
        listen.append(lst)
        where = "loopback" if lst.address is None else lst.address
        granted.append(f"listen {lst.name} on {where}, port {lst.port or 'any free'}")

    # A secret asked for twice (a file and a variable) is one request, one grant. Refused
    # here, before the Keep asks its Steward: an ungranted secret is never even requested.
    by_name: dict[str, list[Secret]] = {}
    for sec in manifest.secret:
        by_name.setdefault(sec.name, []).append(sec)
    for name, asked in by_name.items():
        if find("secret", name) is None and package is not None:
            missing.append(_secret_line(name, asked))
            continue
        to = ", ".join(s.file or f"${s.env}" for s in asked)
        granted.append(f"secret {name} to {to} (if the Steward releases it)")

    connects = []
    for c in manifest.connect:
        g = find("connect", c.name)
        if g is None and package is not None:
            missing.append(_connect_line(c))
            continue
        resolved, problem = _grant_connect(c, g, package is not None)
        if problem is not None:
            if package is None:
                raise GrantError(f"{(g.where if g else None) or c.where}: {problem}")
            missing.append(problem)
            continue
        connects.append(resolved)
        granted.append(_connect_granted(resolved, cwd))

    # A sealed volume's snapshots are kept where the host says (None: the default place);
    # its key and its content are still the Steward's to release (docs/sealed-state.md).
    volumes = []
    for vol in manifest.volume:
        g = find("volume", vol.name)
        if g is None and package is not None:
            missing.append(_volume_line(vol))
            continue
        if g is not None:
            vol = vol.replace(host=g.path)
        volumes.append(vol)
        place = _shown(vol.host, cwd) if vol.host is not None else "the default place"
        granted.append(
            f"volume {vol.name} at {vol.guest}, sealed to its {vol.sealed_to}, snapshots in "
            f"{place} (if the Steward releases its key)"
        )

    unused = [g for k, g in flags.items.items() if k not in used]
    if unused:
        g = unused[0]
        asked = _asked(manifest)
        raise GrantError(
            f"{g.where}: the workload asks for no {_label(*g.key)}"
            + (f" (it asks for: {', '.join(asked)})" if asked else " (it asks for nothing)"),
            hint="a grant answers a request of the workload's Motte.toml; "
            "--dir and --env add what it did not ask for",
        )
    if package is not None and missing:
        raise GrantRefusedError(package, missing, policy_source)
    resolved = manifest.replace(
        dir=tuple(dirs),
        env=env,
        host_env={},
        listen=tuple(listen),
        connect=tuple(connects),
        volume=tuple(volumes),
        **streams,
    )
    return Granted(resolved, "package" if package is not None else "local", granted)


def _asked(manifest: Manifest) -> list[str]:
    out = [f"dir:{d.name}" for d in manifest.dir]
    out += [n for n in STREAMS if getattr(manifest, n).kind == "file"]
    out += [f"env:{h}" for h in manifest.host_env.values()]
    out += [f"listen:{lst.name}" for lst in manifest.listen]
    out += list(dict.fromkeys(f"secret:{s.name}" for s in manifest.secret))
    out += [f"connect:{c.name}" for c in manifest.connect]
    out += [f"volume:{v.name}" for v in manifest.volume]
    return out


def _connect_line(c: Connect) -> str:
    """The refusal line of a destination a package asks for and the host has not granted."""
    from motte._net import is_loopback_host

    asked = c.describe()
    unsafe = c.tls.unsafe if c.tls is not None else ()
    extra = f", INSECURE: {', '.join(unsafe)}" if unsafe else ""
    value = ",".join(unsafe)
    if is_loopback_host(c.host):
        # This host's loopback is never reached by a bare grant: the address says so.
        value = ",".join([host_port(c.host, c.port), *unsafe])
    flag = f"--grant connect:{c.name}" + (f"={value}" if value else "")
    return f"connect {c.name}: calls {asked}{extra}: {flag}"


def _grant_connect(c: Connect, g: Grant | None, package: bool) -> tuple[Connect, str | None]:
    """The destination as granted, or a line saying what the grant lacks.

    This host's loopback (and the other addresses that reach this host or its link: the
    unspecified and link-local ones) is reached only by an address written as such: in the
    grant, or (a manifest on this host's disk) in the manifest's ``host``. A DNS name that
    resolves there is refused by the Keep when it connects. Insecure TLS choices need the
    host's consent by name, in either mode; plain text only to loopback."""
    from motte._net import is_loopback_host

    address = g.address if g is not None else None
    port = g.port if g is not None and g.port is not None else c.port
    target = address if address is not None else c.host
    loopback = is_loopback_host(target) or _is_local_address(target)
    if loopback and address is None and package:
        return c, (
            f"connect {c.name}: calls this host's loopback ({host_port(c.host, c.port)}), "
            f"which only the host's own grant of the address reaches: --grant "
            f"connect:{c.name}={host_port(c.host, c.port)}"
        )
    wanted = frozenset(c.tls.unsafe if c.tls is not None else ())
    consented = g.options if g is not None else frozenset()
    if wanted - consented:
        lacking = ", ".join(sorted(wanted - consented))
        return c, (
            f"connect {c.name}: asks for INSECURE TLS ({lacking}), which the host must grant "
            f"too: --grant connect:{c.name}={','.join(sorted(wanted | consented))}"
        )
    if consented - wanted:
        extra = ", ".join(sorted(consented - wanted))
        return c, (
            f"connect {c.name}: the grant consents to {extra}, which the manifest does not ask "
            "for (an insecure choice is granted only where it is asked for)"
        )
    if c.tls is None and not loopback:
        return c, (
            f"connect {c.name}: tls = false (PLAIN TEXT) reaches only a loopback test peer, "
            f"not {target}"
        )
    resolved = c.replace(
        address=address,
        port=port,
        ca=g.path if g is not None else None,
        loopback=loopback,
        unsafe=wanted,
    )
    return resolved, None


def _is_local_address(host: str) -> bool:
    """An IP literal that reaches this host or its link: unspecified (0.0.0.0, ::) or
    link-local (169.254.0.0/16, fe80::/10: cloud metadata services live there)."""
    import ipaddress

    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    ip = mapped or ip
    return ip.is_loopback or ip.is_unspecified or ip.is_link_local


def _connect_granted(c: Connect, cwd: Path) -> str:
    parts = [f"connect {c.name} = {c.describe()}"]
    if c.ca is not None:
        parts.append(f"CA {_shown(c.ca, cwd)}")
    if c.unsafe:
        parts.append(f"INSECURE: {', '.join(sorted(c.unsafe))}")
    return ", ".join(parts)
