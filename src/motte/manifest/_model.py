"""The validated manifest: frozen values, each field named as its key in Motte.toml.

A :class:`Manifest` is what a Keep grants a workload and nothing more. The defaults are the
empty grant: no arguments, no environment, no directories, no listeners; standard streams
inherited from the ``motte run`` process; finite limits.

``where`` fields remember where a value came from (``Motte.toml:7`` or ``--dir``) so that an
error found later, such as a preopened directory that does not exist, still names the line.
They take no part in equality.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

from motte._record import Record
from motte.errors import ConfigError

if TYPE_CHECKING:
    from motte.manifest._connect import Connect

MANIFEST_NAME = "Motte.toml"

#: WebAssembly (wasm32) memories cannot exceed 4 GiB; the limit is given in MiB.
MAX_MEMORY_MIB = 4096
#: The longest time limit accepted, in seconds (one week): anything longer is a mistake.
MAX_TIME_LIMIT = 7 * 24 * 3600.0


class Workload(Record):
    """The module or component to run: a file, or a digest looked up in the local store."""

    __slots__ = ("digest", "path", "where")
    _uncompared = frozenset({"where"})
    path: Path | None
    digest: str | None
    where: str

    def __init__(
        self, path: Path | None = None, digest: str | None = None, where: str = ""
    ) -> None:
        if (path is None) == (digest is None):
            raise ValueError("a workload is a path or a digest, exactly one")
        self._set(path=path, digest=digest, where=where)

    @property
    def name(self) -> str:
        """A short name for messages and the guest's ``argv[0]``."""
        return self.path.name if self.path is not None else str(self.digest)


class Stdio(Record):
    """Where a standard stream goes: ``inherit`` (motte's own), ``null``, or a file."""

    __slots__ = ("kind", "path", "where")
    _uncompared = frozenset({"where"})
    kind: Literal["inherit", "null", "file"]
    path: Path | None
    where: str

    def __init__(
        self, kind: Literal["inherit", "null", "file"], path: Path | None = None, where: str = ""
    ) -> None:
        if (kind == "file") != (path is not None):
            raise ValueError("a file stream needs a path, and only a file stream has one")
        self._set(kind=kind, path=path, where=where)


INHERIT = Stdio("inherit")
NULL = Stdio("null")


class Dir(Record):
    """A host directory preopened for the guest at ``guest``; read-only unless ``writable``.
    ``name`` is what a host grants it by (``--grant dir:NAME=HOSTPATH``); by default the
    guest path's last part (``/data`` -> ``data``, ``/`` -> ``root``)."""

    __slots__ = ("guest", "host", "name", "where", "writable")
    _uncompared = frozenset({"where"})
    host: Path
    guest: str
    writable: bool
    where: str
    name: str

    def __init__(
        self, host: Path, guest: str, writable: bool = False, where: str = "", name: str = ""
    ) -> None:
        self._set(
            host=host, guest=guest, writable=writable, where=where, name=name or dir_name(guest)
        )


def dir_name(guest: str) -> str:
    """The default name of a directory granted at ``guest`` (a normalised absolute path)."""
    import re

    last = guest.rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9_-]", "-", last)[:63] or "root"


class Limits(Record):
    """Limits for the whole guest. ``memory`` (MiB) counts every linear memory and every
    table; ``memories``, ``tables`` and ``instances`` bound how many the guest may hold,
    ``table_elements`` each table's size; ``output`` (MiB) bounds what it may write to each
    output file or captured stream; the times are in seconds. Outbound connections
    (``[[connect]]``): ``connections`` may be open at once and ``connections_total`` opened
    in all, each for at most ``connection_time`` seconds and ``connection_bytes`` MiB (sent
    and received together)."""

    __slots__ = (
        "connection_bytes",
        "connection_time",
        "connections",
        "connections_total",
        "cpu_time",
        "instances",
        "memories",
        "memory",
        "output",
        "table_elements",
        "tables",
        "wall_time",
    )
    memory: int
    cpu_time: float
    wall_time: float
    memories: int
    tables: int
    instances: int
    table_elements: int
    output: int
    connections: int
    connections_total: int
    connection_time: float
    connection_bytes: int

    def __init__(
        self,
        memory: int = 256,
        cpu_time: float = 60.0,
        wall_time: float = 300.0,
        memories: int = 4,
        tables: int = 8,
        instances: int = 16,
        table_elements: int = 100_000,
        output: int = 64,
        connections: int = 16,
        connections_total: int = 1000,
        connection_time: float = 60.0,
        connection_bytes: int = 64,
    ):
        self._set(
            connections=connections,
            connections_total=connections_total,
            connection_time=connection_time,
            connection_bytes=connection_bytes,
            memory=memory,
            cpu_time=cpu_time,
            wall_time=wall_time,
            memories=memories,
            tables=tables,
            instances=instances,
            table_elements=table_elements,
            output=output,
        )

    @property
    def memory_bytes(self) -> int:
        return self.memory * 1024 * 1024

    @property
    def output_bytes(self) -> int:
        return self.output * 1024 * 1024

    @property
    def connection_bytes_total(self) -> int:
        return self.connection_bytes * 1024 * 1024


#: The largest value each count limit takes (what the pooling allocator of a serving Keep is
#: configured for: motte.keep._engine).
MAX_COUNT_LIMITS = {
    "memories": 100,
    "tables": 100,
    "instances": 100,
    "table_elements": 1_000_000,
    # Outbound connections of one instance: at once, and in all.
    "connections": 1000,
    "connections_total": 1_000_000,
}
#: The most output a guest may be allowed to write to one stream, in MiB (1 TiB).
MAX_OUTPUT_MIB = 1024 * 1024


_DEFAULT_LIMITS = Limits()


class Listen(Record):
    """A listener the Keep owns and serves (declared here, served by ``motte.keep.serve``).

    ``address`` is where it binds: the host's decision, never the manifest's (a grant or a
    flag sets it, ``motte.manifest.apply_grants``). None is loopback: 127.0.0.1 and, where
    the host has it, ::1. ``port`` 0 (only from a grant) binds any free port."""

    __slots__ = ("address", "name", "port", "protocol", "tls", "where")
    _uncompared = frozenset({"where"})
    name: str
    port: int
    protocol: Literal["http", "tcp"]
    tls: bool
    where: str
    address: str | None

    def __init__(
        self,
        name: str,
        port: int,
        protocol: Literal["http", "tcp"],
        tls: bool = True,
        where: str = "",
        address: str | None = None,
    ) -> None:
        self._set(name=name, port=port, protocol=protocol, tls=tls, where=where, address=address)


class Secret(Record):
    """A secret the workload asks the Steward for (``[[secret]]``): released only to an
    attested Keep whose workload the secret's release policy accepts, and delivered as a
    file under a memory-backed guest directory (``file``) or an environment variable
    (``env``), exactly one. ``version`` pins one; None takes the latest."""

    __slots__ = ("env", "file", "name", "version", "where")
    _uncompared = frozenset({"where"})
    name: str
    file: str | None
    env: str | None
    version: int | None
    where: str

    def __init__(
        self,
        name: str,
        *,
        file: str | None = None,
        env: str | None = None,
        version: int | None = None,
        where: str = "",
    ) -> None:
        if (file is None) == (env is None):
            raise ValueError("a secret goes to a file or an environment variable, exactly one")
        self._set(name=name, file=file, env=env, version=version, where=where)


class Volume(Record):
    """A sealed volume (``[[volume]]``, docs/sealed-state.md): a directory the guest sees at
    ``guest``, writable, held in the Keep's memory and persisted to the host only as
    encrypted, versioned snapshots whose key the Steward releases to an attested Keep of
    this workload: any signed version of its ``namespace/name`` (``sealed_to =
    "namespace"``) or exactly this package (``"digest"``). ``size`` bounds it (MiB);
    ``snapshot_interval`` is how often (seconds) a changed volume is persisted while the
    Keep runs (0: only at stop, drain and when the guest asks). ``host`` is where the host
    keeps its snapshots, as granted (``--grant volume:NAME=HOSTDIR``); None: the default
    place under MOTTE_HOME/volumes. A manifest never names it."""

    __slots__ = ("guest", "host", "name", "sealed_to", "size", "snapshot_interval", "where")
    _uncompared = frozenset({"where"})
    name: str
    guest: str
    sealed_to: Literal["namespace", "digest"]
    size: int
    snapshot_interval: float
    host: Path | None
    where: str

    def __init__(
        self,
        name: str,
        guest: str,
        sealed_to: Literal["namespace", "digest"],
        *,
        size: int = 64,
        snapshot_interval: float = 60.0,
        host: Path | None = None,
        where: str = "",
    ) -> None:
        self._set(
            name=name,
            guest=guest,
            sealed_to=sealed_to,
            size=size,
            snapshot_interval=snapshot_interval,
            host=host,
            where=where,
        )

    @property
    def size_bytes(self) -> int:
        return self.size * 1024 * 1024


def check_unique_guest_paths(dirs: tuple[Dir, ...]) -> None:
    seen: dict[str, Dir] = {}
    for d in dirs:
        if d.guest in seen:
            first = seen[d.guest]
            raise ConfigError(
                f"{d.where}: guest path {d.guest} is already granted by {first.where}",
                hint="grant each guest path once",
            )
        seen[d.guest] = d


def _frozen_env(env: Mapping[str, str]) -> Mapping[str, str]:
    return env if isinstance(env, MappingProxyType) else MappingProxyType(dict(env))


_EMPTY: Mapping[str, str] = MappingProxyType({})


class Manifest(Record):
    """Everything a Keep grants one workload. Build it with :func:`load_manifest` or
    :func:`manifest_for_module`; derive variants with :meth:`with_overrides`."""

    __slots__ = (
        "args",
        "connect",
        "dir",
        "env",
        "host_env",
        "limits",
        "listen",
        "secret",
        "source",
        "stderr",
        "stdin",
        "stdout",
        "steward",
        "volume",
        "workload",
    )
    _uncompared = frozenset({"source"})
    workload: Workload
    args: tuple[str, ...]
    env: Mapping[str, str]
    #: Variables asked for from the host's environment: the guest's name -> the host's.
    #: Requests only: :func:`motte.manifest.apply_grants` turns the granted ones into
    #: ``env`` values; a Keep never reads the host's environment itself.
    host_env: Mapping[str, str]
    stdin: Stdio
    stdout: Stdio
    stderr: Stdio
    dir: tuple[Dir, ...]
    limits: Limits
    listen: tuple[Listen, ...]
    #: Destinations the workload may open (``motte.manifest._connect``); what it reaches is
    #: what the host grants (:func:`motte.manifest.apply_grants`).
    connect: tuple[Connect, ...]
    steward: str | None
    #: The secrets it asks the Steward for (names and where they go; never a value).
    secret: tuple[Secret, ...]
    #: Its sealed volumes (docs/sealed-state.md).
    volume: tuple[Volume, ...]
    #: The Motte.toml this came from, or None for a bare module run with the empty grant.
    source: Path | None

    def __init__(
        self,
        workload: Workload,
        args: tuple[str, ...] = (),
        env: Mapping[str, str] = _EMPTY,
        stdin: Stdio = INHERIT,
        stdout: Stdio = INHERIT,
        stderr: Stdio = INHERIT,
        dir: tuple[Dir, ...] = (),
        limits: Limits = _DEFAULT_LIMITS,
        listen: tuple[Listen, ...] = (),
        steward: str | None = None,
        source: Path | None = None,
        secret: tuple[Secret, ...] = (),
        host_env: Mapping[str, str] = _EMPTY,
        volume: tuple[Volume, ...] = (),
        connect: tuple[Connect, ...] = (),
    ) -> None:
        self._set(
            workload=workload,
            connect=tuple(connect),
            args=tuple(args),
            env=_frozen_env(env),
            host_env=_frozen_env(host_env),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            dir=tuple(dir),
            limits=limits,
            listen=tuple(listen),
            steward=steward,
            source=source,
            secret=tuple(secret),
            volume=tuple(volume),
        )

    def with_overrides(
        self,
        *,
        args: tuple[str, ...] | None = None,
        env: Mapping[str, str] | None = None,
        dirs: tuple[Dir, ...] = (),
        memory: int | None = None,
        cpu_time: float | None = None,
        wall_time: float | None = None,
    ) -> Manifest:
        """A copy with command-line choices applied: ``args`` replace the manifest's, ``env``
        is merged over it, ``dirs`` are added (a guest path may be granted only once), and
        each given limit replaces the manifest's."""
        changes = {
            k: v
            for k, v in (("memory", memory), ("cpu_time", cpu_time), ("wall_time", wall_time))
            if v is not None
        }
        merged_dirs = self.dir + tuple(dirs)
        check_unique_guest_paths(merged_dirs)
        env = env or {}
        return self.replace(
            args=self.args if args is None else tuple(args),
            env={**self.env, **env},
            # A value given on the command line replaces the host's that was asked for.
            host_env={k: v for k, v in self.host_env.items() if k not in env},
            dir=merged_dirs,
            limits=self.limits.replace(**changes) if changes else self.limits,
        )


class Overrides(Record):
    """What a command line changes in a manifest, as a value (``motte run``'s flags):
    ``args`` replace the manifest's (None: keep them), ``env`` is merged over it, ``dirs``
    are added, and each limit given replaces the manifest's. :meth:`apply` makes the
    changed manifest; the empty value changes nothing."""

    __slots__ = ("args", "cpu_time", "dirs", "env", "memory", "wall_time")
    args: tuple[str, ...] | None
    env: Mapping[str, str]
    dirs: tuple[Dir, ...]
    memory: int | None
    cpu_time: float | None
    wall_time: float | None

    def __init__(
        self,
        *,
        args: tuple[str, ...] | None = None,
        env: Mapping[str, str] | None = None,
        dirs: tuple[Dir, ...] = (),
        memory: int | None = None,
        cpu_time: float | None = None,
        wall_time: float | None = None,
    ) -> None:
        self._set(
            args=None if args is None else tuple(args),
            env=MappingProxyType(dict(env or {})),
            dirs=tuple(dirs),
            memory=memory,
            cpu_time=cpu_time,
            wall_time=wall_time,
        )

    def _key(self) -> tuple[object, ...]:
        return (self.args, tuple(self.env.items()), self.dirs, *self._limits().items())

    def _limits(self) -> dict[str, int | float]:
        limits = (("memory", self.memory), ("cpu_time", self.cpu_time))
        return {k: v for k, v in (*limits, ("wall_time", self.wall_time)) if v is not None}

    def __bool__(self) -> bool:
        return self.args is not None or bool(self.env or self.dirs or self._limits())

    def apply(self, manifest: Manifest) -> Manifest:
        if not self:
            return manifest
        return manifest.with_overrides(
            args=self.args, env=self.env, dirs=self.dirs, **self._limits()
        )
