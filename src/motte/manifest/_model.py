"""The validated manifest: frozen values, each field named as its key in Motte.toml.

A :class:`Manifest` is what a Keep grants a workload and nothing more. The defaults are the
empty grant: no arguments, no environment, no directories, no listeners; standard streams
inherited from the ``motte run`` process; finite limits.

``where`` fields remember where a value came from (``Motte.toml:7`` or ``--dir``) so that an
error found later, such as a preopened directory that does not exist, still names the line.
They take no part in equality.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from motte.errors import ConfigError

MANIFEST_NAME = "Motte.toml"

#: WebAssembly (wasm32) memories cannot exceed 4 GiB; the limit is given in MiB.
MAX_MEMORY_MIB = 4096
#: The longest time limit accepted, in seconds (one week): anything longer is a mistake.
MAX_TIME_LIMIT = 7 * 24 * 3600.0


@dataclass(frozen=True)
class Workload:
    """The module or component to run: a file, or a digest looked up in the local store."""

    path: Path | None = None
    digest: str | None = None
    where: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if (self.path is None) == (self.digest is None):
            raise ValueError("a workload is a path or a digest, exactly one")

    @property
    def name(self) -> str:
        """A short name for messages and the guest's ``argv[0]``."""
        return self.path.name if self.path is not None else str(self.digest)


@dataclass(frozen=True)
class Stdio:
    """Where a standard stream goes: ``inherit`` (motte's own), ``null``, or a file."""

    kind: Literal["inherit", "null", "file"]
    path: Path | None = None
    where: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if (self.kind == "file") != (self.path is not None):
            raise ValueError("a file stream needs a path, and only a file stream has one")


INHERIT = Stdio("inherit")
NULL = Stdio("null")


@dataclass(frozen=True)
class Dir:
    """A host directory preopened for the guest at ``guest``; read-only unless ``writable``."""

    host: Path
    guest: str
    writable: bool = False
    where: str = field(default="", compare=False)


@dataclass(frozen=True)
class Limits:
    """Per-instance limits. ``memory`` is in MiB, the times in seconds."""

    memory: int = 256
    cpu_time: float = 60.0
    wall_time: float = 300.0

    @property
    def memory_bytes(self) -> int:
        return self.memory * 1024 * 1024


@dataclass(frozen=True)
class Listen:
    """A listener the Keep owns and serves (declared here, served by ``motte.keep.serve``)."""

    name: str
    port: int
    protocol: Literal["http", "tcp"]
    tls: bool = True
    where: str = field(default="", compare=False)


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
    return MappingProxyType(dict(env))


@dataclass(frozen=True)
class Manifest:
    """Everything a Keep grants one workload. Build it with :func:`load_manifest` or
    :func:`manifest_for_module`; derive variants with :meth:`with_overrides`."""

    workload: Workload
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    stdin: Stdio = INHERIT
    stdout: Stdio = INHERIT
    stderr: Stdio = INHERIT
    dir: tuple[Dir, ...] = ()
    limits: Limits = Limits()
    listen: tuple[Listen, ...] = ()
    steward: str | None = None
    #: The Motte.toml this came from, or None for a bare module run with the empty grant.
    source: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.env, MappingProxyType):
            object.__setattr__(self, "env", _frozen_env(self.env))

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
        limits = dataclasses.replace(
            self.limits,
            **{
                k: v
                for k, v in (("memory", memory), ("cpu_time", cpu_time), ("wall_time", wall_time))
                if v is not None
            },
        )
        merged_dirs = self.dir + tuple(dirs)
        check_unique_guest_paths(merged_dirs)
        return dataclasses.replace(
            self,
            args=self.args if args is None else tuple(args),
            env=_frozen_env({**self.env, **(env or {})}),
            dir=merged_dirs,
            limits=limits,
        )
