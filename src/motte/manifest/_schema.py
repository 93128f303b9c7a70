"""Motte.toml as parsed TOML (a dict) -> :class:`Manifest`, or an error naming key and line.

Each top-level key has one validator in :data:`TOP_LEVEL`; adding a key to the manifest is
one entry there and one field on :class:`Manifest`. Validators raise :class:`Invalid` with the
key path they reject; :func:`manifest_from_dict` turns it into a :class:`ManifestError` that
names the file, the line and the key. Unknown keys are errors at every level, with a
"did you mean" hint.

The same value checks serve the ``motte run`` flags (``--env``, ``--dir``, the limits), so a
flag and its manifest key accept exactly the same values.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from motte._digest import check_digest, is_digest
from motte._net import is_loopback_host
from motte._toml import Invalid, KeyPath, check_keys, format_path, line_of
from motte.errors import ConfigError, UsageError
from motte.manifest._connect import Connect, connect_entries
from motte.manifest._errors import ManifestError
from motte.manifest._model import (
    INHERIT,
    MAX_COUNT_LIMITS,
    MAX_MEMORY_MIB,
    MAX_OUTPUT_MIB,
    MAX_TIME_LIMIT,
    NULL,
    Dir,
    Limits,
    Listen,
    Manifest,
    Overrides,
    Secret,
    Stdio,
    Volume,
    Workload,
    check_unique_guest_paths,
)


class _Context:
    """What validators need: where relative paths start and how to name a location."""

    def __init__(
        self, base_dir: Path, name: str, lines: Mapping[KeyPath, int], package: bool = False
    ) -> None:
        self.base_dir = base_dir
        self.name = name
        self.lines = lines
        #: A package's manifest (its paths name nothing on this host's disk yet).
        self.package = package

    def where(self, path: KeyPath) -> str:
        line = line_of(dict(self.lines), path)
        return f"{self.name}:{line}" if line is not None else self.name

    def host_path(self, text: str) -> Path:
        if self.package:
            # A request: kept as the package wrote it (normalised), never resolved here.
            return Path(posixpath.normpath(text))
        return _absolute(self.base_dir / Path(text))


def _absolute(path: Path) -> Path:
    """Absolute and normalised, without resolving symlinks (the host may swap them later;
    the runtime opens directories once, at instantiation)."""
    import os

    return Path(os.path.normpath(path.absolute()))


def _describe(value: Any) -> str:
    kind = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)
    shown = repr(value) if not isinstance(value, (list, dict)) else ""
    return f"{kind} {shown}".strip() if len(shown) <= 40 else kind


def _expect_str(value: Any, path: KeyPath, what: str = "a string") -> str:
    if not isinstance(value, str):
        raise Invalid(path, f"expected {what}, got {_describe(value)}")
    if "\0" in value:
        raise Invalid(path, "contains a NUL character")
    return value


def _expect_table(value: Any, path: KeyPath) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(path, f"expected a table, got {_describe(value)}")
    return value


def _require(table: Mapping[str, Any], key: str, path: KeyPath) -> Any:
    if key not in table:
        raise Invalid(path, f"missing required key {key!r}")
    return table[key]


# ---------------------------------------------------------------------------------------------
# Value checks shared with the command line


def check_memory(value: Any, path: KeyPath = ("limits", "memory")) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(path, f"expected a whole number of MiB, got {_describe(value)}")
    if not 1 <= value <= MAX_MEMORY_MIB:
        raise Invalid(path, f"must be from 1 to {MAX_MEMORY_MIB} MiB, got {value}")
    return value


def check_seconds(value: Any, path: KeyPath) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(path, f"expected a number of seconds, got {_describe(value)}")
    if not math.isfinite(value) or value <= 0 or value > MAX_TIME_LIMIT:
        raise Invalid(path, f"must be more than 0 and at most {MAX_TIME_LIMIT:g} s, got {value}")
    return float(value)


_ENV_NAME = re.compile(r"[^=\0]+")


def check_env_name(name: str, path: KeyPath) -> str:
    if not _ENV_NAME.fullmatch(name):
        raise Invalid(path, f"invalid environment variable name {name!r}: empty or contains '='")
    return name


def check_guest_path(value: Any, path: KeyPath) -> str:
    guest = _expect_str(value, path)
    if not guest.startswith("/"):
        raise Invalid(path, f"guest path {guest!r} must be absolute (start with '/')")
    if posixpath.normpath(guest) != guest or guest.startswith("//"):
        raise Invalid(
            path,
            f"guest path {guest!r} must be normalised (no '.', '..', '//' or trailing '/')",
            hint=f"write {posixpath.normpath(guest)!r}",
        )
    return guest


# ---------------------------------------------------------------------------------------------
# Top-level keys


def _workload(value: Any, path: KeyPath, ctx: _Context) -> Workload:
    text = _expect_str(value, path, "a path to a .wasm file or a sha256: digest")
    where = ctx.where(path)
    if text.startswith("sha256:") or is_digest(text):
        try:
            return Workload(digest=check_digest(text), where=where)
        except ValueError as e:
            raise Invalid(path, str(e)) from None
    if not text:
        raise Invalid(path, "is empty")
    # The module is part of the package: beside Motte.toml or below it, never a host file
    # elsewhere (a manifest from someone else's directory would have motte read it).
    rel = posixpath.normpath(text.replace("\\", "/"))
    if text.startswith("/") or rel == ".." or rel.startswith("../"):
        raise Invalid(
            path,
            f"{text!r} is outside the manifest's directory: the workload must be a relative "
            "path inside it",
            hint="put the module beside Motte.toml (or below it) and name it relatively",
        )
    # A symbolic link out of the directory is refused when the module is read
    # (motte.keep checks every path a manifest names before anything runs).
    return Workload(path=ctx.host_path(text), where=where)


def _args(value: Any, path: KeyPath, ctx: _Context) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise Invalid(path, f"expected an array of strings, got {_describe(value)}")
    return tuple(_expect_str(v, (*path, i)) for i, v in enumerate(value))


def _env(value: Any, path: KeyPath, ctx: _Context) -> tuple[dict[str, str], dict[str, str]]:
    """(the values given, the variables asked for from the host: guest name -> host name)."""
    table = _expect_table(value, path)
    out, host = {}, {}
    for name, v in table.items():
        check_env_name(name, (*path, name))
        if isinstance(v, dict):
            check_keys(v, {"host"}, (*path, name))
            wanted = _expect_str(_require(v, "host", (*path, name)), (*path, name, "host"))
            host[name] = check_env_name(wanted, (*path, name, "host"))
        else:
            out[name] = _expect_str(v, (*path, name), 'a string or { host = "NAME" }')
    return out, host


def _stdio(value: Any, path: KeyPath, ctx: _Context) -> Stdio:
    what = 'expected "inherit", "null" or { file = "PATH" }'
    if value == "inherit":
        return INHERIT
    if value == "null":
        return NULL
    if isinstance(value, dict):
        check_keys(value, {"file"}, path)
        text = _expect_str(_require(value, "file", path), (*path, "file"))
        if not text:
            raise Invalid((*path, "file"), "is empty")
        return Stdio("file", ctx.host_path(text), where=ctx.where(path))
    raise Invalid(path, f"{what}, got {_describe(value)}")


def _array_of_tables(value: Any, path: KeyPath) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise Invalid(path, f"expected an array of tables ([[{path[-1]}]]), got {_describe(value)}")
    return [_expect_table(v, (*path, i)) for i, v in enumerate(value)]


def _dirs(value: Any, path: KeyPath, ctx: _Context) -> tuple[Dir, ...]:
    out = []
    for i, table in enumerate(_array_of_tables(value, path)):
        p = (*path, i)
        check_keys(table, {"host", "guest", "writable", "name"}, p)
        host = _expect_str(_require(table, "host", p), (*p, "host"))
        if not host:
            raise Invalid((*p, "host"), "is empty")
        guest = check_guest_path(_require(table, "guest", p), (*p, "guest"))
        writable = table.get("writable", False)
        if not isinstance(writable, bool):
            raise Invalid((*p, "writable"), f"expected true or false, got {_describe(writable)}")
        name = table.get("name", "")
        if "name" in table and not (
            isinstance(name, str) and _LISTENER_NAME.fullmatch(name) is not None
        ):
            raise Invalid((*p, "name"), f"{name!r}: use 1 to 63 letters, digits, '-' or '_'")
        d = Dir(ctx.host_path(host), guest, writable, where=ctx.where(p), name=name)
        for j, other in enumerate(out):
            if other.guest == d.guest:
                break  # reported below, as a guest path granted twice
            if other.name == d.name:
                raise Invalid(
                    (*p, "name" if "name" in table else "guest"),
                    f"directory name {d.name!r} is already used by dir[{j}]",
                    hint="give each [[dir]] its own name = ...: a host grants it by that name",
                )
        out.append(d)
    result = tuple(out)
    try:
        check_unique_guest_paths(result)
    except ConfigError as e:
        dup = next(i for i, d in enumerate(result) if d.guest in {x.guest for x in result[:i]})
        raise Invalid((*path, dup, "guest"), e.message.split(": ", 1)[1], e.hint) from None
    return result


def check_count(value: Any, path: KeyPath) -> int:
    """A count limit (``limits.memories``, ``tables``, ``instances``, ``table_elements``)."""
    high = MAX_COUNT_LIMITS[str(path[-1])]
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(path, f"expected a whole number, got {_describe(value)}")
    if not 1 <= value <= high:
        raise Invalid(path, f"must be from 1 to {high}, got {value}")
    return value


def check_output(value: Any, path: KeyPath = ("limits", "output")) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(path, f"expected a whole number of MiB, got {_describe(value)}")
    if not 1 <= value <= MAX_OUTPUT_MIB:
        raise Invalid(path, f"must be from 1 to {MAX_OUTPUT_MIB} MiB, got {value}")
    return value


_LIMIT_CHECKS: dict[str, Callable[[Any, KeyPath], Any]] = {
    "memory": check_memory,
    "cpu_time": check_seconds,
    "wall_time": check_seconds,
    "memories": check_count,
    "tables": check_count,
    "instances": check_count,
    "table_elements": check_count,
    "output": check_output,
    "connections": check_count,
    "connections_total": check_count,
    "connection_time": check_seconds,
    "connection_bytes": check_output,
}


def _limits(value: Any, path: KeyPath, ctx: _Context) -> Limits:
    table = _expect_table(value, path)
    check_keys(table, _LIMIT_CHECKS, path)
    return Limits(**{k: _LIMIT_CHECKS[k](v, (*path, k)) for k, v in table.items()})


_LISTENER_NAME = re.compile(r"[A-Za-z0-9_-]{1,63}")


def _listen(value: Any, path: KeyPath, ctx: _Context) -> tuple[Listen, ...]:
    out: list[Listen] = []
    for i, table in enumerate(_array_of_tables(value, path)):
        p = (*path, i)
        check_keys(table, {"name", "port", "protocol", "tls"}, p)
        name = _expect_str(_require(table, "name", p), (*p, "name"))
        if not _LISTENER_NAME.fullmatch(name):
            raise Invalid((*p, "name"), f"{name!r}: use 1 to 63 letters, digits, '-' or '_'")
        port = _require(table, "port", p)
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise Invalid((*p, "port"), f"expected a port from 1 to 65535, got {_describe(port)}")
        protocol = _require(table, "protocol", p)
        if protocol not in ("http", "tcp"):
            raise Invalid((*p, "protocol"), f'expected "http" or "tcp", got {_describe(protocol)}')
        tls = table.get("tls", True)
        if not isinstance(tls, bool):
            raise Invalid((*p, "tls"), f"expected true or false, got {_describe(tls)}")
        for j, other in enumerate(out):
            if other.name == name:
                raise Invalid((*p, "name"), f"listener name {name!r} is already used by [{j}]")
            if other.port == port:
                raise Invalid(
                    (*p, "port"), f"port {port} is already used by listener {other.name!r}"
                )
        out.append(Listen(name, port, protocol, tls, where=ctx.where(p)))
    return tuple(out)


#: A secret's name: lower-case words of letters, digits, ``.``, ``_``, ``-``, joined by ``/``.
SECRET_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*(?:/[a-z0-9][a-z0-9._-]*)*")


def _secrets(value: Any, path: KeyPath, ctx: _Context) -> tuple[Secret, ...]:
    """``[[secret]]``: name = "db-password", and file = "/run/secrets/db" or env = "DB"."""
    out: list[Secret] = []
    for i, table in enumerate(_array_of_tables(value, path)):
        p = (*path, i)
        check_keys(table, ("name", "file", "env", "version"), p)
        name = _expect_str(_require(table, "name", p), (*p, "name"))
        if len(name) > 128 or not SECRET_NAME.fullmatch(name):
            raise Invalid(
                (*p, "name"),
                f"{name!r} is not a secret name (lower-case letters, digits, . _ - and /)",
            )
        if ("file" in table) == ("env" in table):
            raise Invalid(p, 'give file = "/guest/path" or env = "NAME", exactly one')
        file = env = None
        if "file" in table:
            file = check_guest_path(table["file"], (*p, "file"))
            if file == "/":
                raise Invalid((*p, "file"), "a secret file needs a name below a directory")
        else:
            env = check_env_name(_expect_str(table["env"], (*p, "env")), (*p, "env"))
        version = table.get("version")
        if version is not None and (
            isinstance(version, bool) or not isinstance(version, int) or version < 1
        ):
            raise Invalid((*p, "version"), f"expected a version number from 1, got {version!r}")
        for j, other in enumerate(out):
            if other.name == name and other.version != version:
                raise Invalid(
                    (*p, "version"), f"secret {name} is asked for at another version by [{j}]"
                )
            if (file and other.file == file) or (env and other.env == env):
                raise Invalid(p, f"secret [{j}] already goes to {file or env}")
        out.append(Secret(name, file=file, env=env, version=version, where=ctx.where(p)))
    return tuple(out)


_VOLUME_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
#: A volume's size bound, in MiB: it lives in the Keep's memory.
MAX_VOLUME_MIB = 16384


def _volumes(value: Any, path: KeyPath, ctx: _Context) -> tuple[Volume, ...]:
    """``[[volume]]``: name = "data", guest = "/data", sealed_to = "namespace" | "digest",
    and optionally size (MiB) and snapshot_interval (seconds, 0 for none)."""
    out: list[Volume] = []
    for i, table in enumerate(_array_of_tables(value, path)):
        p = (*path, i)
        check_keys(table, ("name", "guest", "sealed_to", "size", "snapshot_interval"), p)
        name = _expect_str(_require(table, "name", p), (*p, "name"))
        if not _VOLUME_NAME.fullmatch(name):
            raise Invalid((*p, "name"), f"{name!r}: 1 to 63 lower-case letters, digits, '-' or '_'")
        guest = check_guest_path(_require(table, "guest", p), (*p, "guest"))
        if guest == "/":
            raise Invalid((*p, "guest"), "a volume needs a directory below /")
        sealed_to = _require(table, "sealed_to", p)
        if sealed_to not in ("namespace", "digest"):
            raise Invalid(
                (*p, "sealed_to"),
                f'expected "namespace" (any signed version of this package) or "digest" '
                f"(exactly these bytes), got {_describe(sealed_to)}",
            )
        size = table.get("size", 64)
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_VOLUME_MIB:
            raise Invalid((*p, "size"), f"expected MiB from 1 to {MAX_VOLUME_MIB}, got {size!r}")
        interval = table.get("snapshot_interval", 60)
        if interval != 0:
            interval = check_seconds(interval, (*p, "snapshot_interval"))
        for j, other in enumerate(out):
            if other.name == name:
                raise Invalid((*p, "name"), f"volume {name!r} is already declared by [{j}]")
            if other.guest == guest:
                raise Invalid((*p, "guest"), f"{guest} is already volume {other.name!r}")
        out.append(
            Volume(
                name,
                guest,
                sealed_to,
                size=size,
                snapshot_interval=float(interval),
                where=ctx.where(p),
            )
        )
    return tuple(out)


def _connect(value: Any, path: KeyPath, ctx: _Context) -> tuple[Connect, ...]:
    return connect_entries(value, path, ctx.where)


def _steward(value: Any, path: KeyPath, ctx: _Context) -> str:
    from urllib.parse import urlsplit

    url = _expect_str(value, path, "an https URL")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError on a malformed port
    except ValueError as e:
        raise Invalid(path, f"not a URL: {e}") from None
    loopback = parts.scheme == "http" and is_loopback_host(parts.hostname or "")
    if (parts.scheme != "https" and not loopback) or not parts.hostname:
        raise Invalid(
            path,
            f"{url!r} must be an https:// URL with a host",
            hint="plain http:// is accepted only to a loopback address (a local Steward)",
        )
    if parts.username or parts.password:
        raise Invalid(path, "must not carry credentials (user:password@)")
    if parts.query or parts.fragment:
        raise Invalid(path, "must not have a query or fragment")
    del port
    return url


Validator = Callable[[Any, KeyPath, _Context], Any]

#: Every top-level key -> (Manifest field, validator). One entry per key a manifest may have.
TOP_LEVEL: dict[str, tuple[str, Validator]] = {
    "workload": ("workload", _workload),
    "args": ("args", _args),
    "env": ("env", _env),
    "stdin": ("stdin", _stdio),
    "stdout": ("stdout", _stdio),
    "stderr": ("stderr", _stdio),
    "dir": ("dir", _dirs),
    "limits": ("limits", _limits),
    "listen": ("listen", _listen),
    "connect": ("connect", _connect),
    "steward": ("steward", _steward),
    "secret": ("secret", _secrets),
    "volume": ("volume", _volumes),
}
REQUIRED = ("workload",)


def manifest_from_dict(
    data: Mapping[str, Any],
    *,
    base_dir: Path,
    name: str,
    lines: Mapping[KeyPath, int],
    source: Path | None = None,
    package: bool = False,
) -> Manifest:
    """Validate parsed TOML into a Manifest; raise :class:`ManifestError` naming key and line."""
    ctx = _Context(base_dir, name, lines, package)
    try:
        check_keys(data, TOP_LEVEL, ())
        for key in REQUIRED:
            if key not in data:
                raise Invalid((), f"missing required key {key!r}", _REQUIRED_HINTS.get(key))
        fields = {TOP_LEVEL[k][0]: TOP_LEVEL[k][1](v, (k,), ctx) for k, v in data.items()}
        if "env" in fields:
            fields["env"], fields["host_env"] = fields["env"]
        _check_serving_streams(fields, ctx)
    except Invalid as e:
        where = ctx.where(e.path)
        key = format_path(e.path)
        raise ManifestError(
            f"{where}: {key}: {e.reason}" if key else f"{where}: {e.reason}", hint=e.hint
        ) from None
    return Manifest(**fields, source=source)


def _check_serving_streams(fields: Mapping[str, Any], ctx: _Context) -> None:
    """A served workload's stdin and stdout are each request's and answer's."""
    if not fields.get("listen"):
        return
    for name, what in (("stdin", "request"), ("stdout", "answer")):
        stdio = fields.get(name)
        if stdio is not None and stdio.kind != "inherit":
            raise ManifestError(
                f"{ctx.where((name,))}: {name} cannot be set for a workload with [[listen]] "
                f"entries: each instance's {name} is its client's {what}",
                hint=f"remove the {name} key",
            )


_REQUIRED_HINTS = {"workload": 'add workload = "main.wasm" (a path) or a sha256: digest'}


# ---------------------------------------------------------------------------------------------
# Command-line flags, checked with the same rules


def _flag_error(flag: str, e: Invalid) -> UsageError:
    return UsageError(f"{flag}: {e.reason}", hint=e.hint)


def env_from_flag(text: str) -> tuple[str, str]:
    """``--env KEY=VALUE`` -> (KEY, VALUE)."""
    name, sep, value = text.partition("=")
    if not sep:
        raise UsageError(f"--env {text!r}: expected KEY=VALUE")
    try:
        check_env_name(name, ())
        _expect_str(value, ())
    except Invalid as e:
        raise _flag_error(f"--env {text!r}", e) from None
    return name, value


def dir_from_flag(text: str) -> Dir:
    """``--dir HOST:GUEST`` (read-only) or ``--dir HOST:GUEST:writable``."""
    parts = text.split(":")
    writable = len(parts) == 3 and parts[2] == "writable"
    if len(parts) not in (2, 3) or (len(parts) == 3 and not writable) or not parts[0]:
        raise UsageError(
            f"--dir {text!r}: expected HOST:GUEST or HOST:GUEST:writable",
            hint="e.g. --dir ./data:/data (read-only) or --dir ./out:/out:writable",
        )
    try:
        guest = check_guest_path(parts[1], ())
    except Invalid as e:
        raise _flag_error(f"--dir {text!r}", e) from None
    return Dir(_absolute(Path(parts[0])), guest, writable, where=f"--dir {text}")


def limit_from_flag(flag: str, value: Any) -> int | float:
    try:
        if flag == "--memory":
            return check_memory(value, ())
        return check_seconds(value, ())
    except Invalid as e:
        raise _flag_error(f"{flag} {value!r}", e) from None


def overrides_from_flags(
    *,
    args: Sequence[str] | None = None,
    env: Sequence[str] = (),
    dirs: Sequence[str] = (),
    memory: Any = None,
    cpu_time: Any = None,
    wall_time: Any = None,
) -> Overrides:
    """``motte run``'s ``-- ARGS``, ``--env``, ``--dir`` and limit flags as one value, each
    checked with the rule its manifest key follows."""
    limits = {
        name: limit_from_flag(flag, value)
        for name, flag, value in (
            ("memory", "--memory", memory),
            ("cpu_time", "--cpu-time", cpu_time),
            ("wall_time", "--wall-time", wall_time),
        )
        if value is not None
    }
    return Overrides(
        args=None if args is None else tuple(args),
        env=dict(env_from_flag(e) for e in env),
        dirs=tuple(dir_from_flag(d) for d in dirs),
        **limits,
    )
