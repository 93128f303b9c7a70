"""What a serving parent and its worker processes say to each other, one JSON line each.

On a worker's standard input: first its config (:func:`worker_config`): the manifest
(every field, so the command line's overrides hold), the workload digest the parent
prepared, the TLS identity (the key travels through the pipe, never a file), the options
and the listening sockets' descriptor numbers (inherited). Then messages: today only
``{"identity": {...}}``, a renewed identity (:func:`identity_message`,
:func:`read_messages`). End of file means stop. On its standard output: ``ready``, an
``{"error": ...}`` line if it cannot start, and ``{"stats": ...}`` when it has stopped.

Only the manifest's own value types are rebuilt from a config (:data:`_RECORD_TYPES`):
nothing else is constructed from what comes through the pipe.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from motte._record import Record

log = logging.getLogger("motte.keep.serve")

#: The manifest's value types a worker may rebuild, by name (nothing else is constructed).
_RECORD_TYPES = (
    "Manifest",
    "Workload",
    "Stdio",
    "Dir",
    "Limits",
    "Listen",
    "Connect",
    "TlsSettings",
    "Secret",
)


def encode_record(value: Any) -> Any:
    """A manifest (or any of its parts) as JSON-able data that :func:`decode_record` rebuilds."""
    if isinstance(value, Record):
        name = type(value).__name__
        if name not in _RECORD_TYPES:
            raise TypeError(f"cannot send a {name} to a worker")
        return {"$record": name, **{f: encode_record(getattr(value, f)) for f in value._fields()}}
    if isinstance(value, Path):
        return {"$path": str(value)}
    if isinstance(value, tuple | list):
        return [encode_record(v) for v in value]
    if isinstance(value, frozenset):
        return [encode_record(v) for v in sorted(value)]
    if isinstance(value, Mapping):
        return {"$map": {str(k): encode_record(v) for k, v in value.items()}}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot send a {type(value).__name__} to a worker")


def decode_record(data: Any) -> Any:
    import motte.manifest as manifest_types

    if isinstance(data, list):
        return tuple(decode_record(v) for v in data)
    if isinstance(data, dict):
        if "$path" in data:
            return Path(data["$path"])
        if "$map" in data:
            return MappingProxyType({k: decode_record(v) for k, v in data["$map"].items()})
        name = data.get("$record")
        if name not in _RECORD_TYPES:
            raise ValueError(f"unknown record type {name!r}")
        cls = getattr(manifest_types, name)
        return cls(**{k: decode_record(v) for k, v in data.items() if k != "$record"})
    return data


def worker_config(
    prepared: Any,
    listeners: Any,
    identity: Any,
    options: Any,
    fds: list[list[int]],
    index: int,
) -> bytes:
    """The JSON document a worker reads on its standard input."""
    return json.dumps(
        {
            "index": index,
            "manifest": encode_record(prepared.manifest),
            "digest": prepared.digest,
            "listeners": encode_record(tuple(listeners)),
            "identity": encode_identity(identity),
            "options": {f: getattr(options, f) for f in options._fields()},
            "fds": fds,
            # Secrets and a content key (motte.keep._secrets): through the pipe, never a file.
            "confidential": prepared.confidential.handover()
            if getattr(prepared, "confidential", None) is not None
            else None,
        }
    ).encode()


def encode_identity(identity: Any) -> dict[str, Any] | None:
    """A TlsIdentity as JSON-able data (the key included: it travels through the pipe)."""
    if identity is None:
        return None
    return {
        "chain": identity.certificate_chain_pem.decode("ascii"),
        "key": identity.private_key_pem.decode("ascii"),
        "attested": identity.attested,
        "description": identity.description,
    }


def decode_identity(data: Any) -> Any:
    from motte.keep.serve._identity import TlsIdentity

    if data is None:
        return None
    return TlsIdentity(
        data["chain"].encode(),
        data["key"].encode(),
        attested=data["attested"],
        description=data["description"],
    )


def identity_message(identity: Any) -> bytes:
    """The line that tells a running worker to serve a renewed identity."""
    return json.dumps({"identity": encode_identity(identity)}).encode() + b"\n"


def read_messages(stream: Any, on_identity: Any) -> None:
    """A worker's standard input after its config line: one JSON message per line, until
    end of file (the parent closed it to stop the worker, or died). ``{"identity": ...}``
    calls ``on_identity`` with the decoded TlsIdentity. A line that cannot be read is
    logged and skipped: the worker keeps the identity it has."""
    for line in stream:
        if not line.strip():
            continue
        try:
            message = json.loads(line)
            identity = decode_identity(message["identity"])
        except Exception as e:
            log.warning("a message from the parent process was not understood: %s", e)
            continue
        if identity is not None:
            on_identity(identity)
