"""Motte.toml: the one source of a workload's configuration, and of what a Keep grants it.

A manifest names the workload (a ``.wasm`` path or a ``sha256:`` digest) and everything it
may touch: arguments, environment variables, standard streams, preopened directories
(read-only unless ``writable = true``), limits, listeners and the Steward that attests it.
Anything not granted is denied. A bare ``.wasm`` runs with the empty grant
(:func:`manifest_for_module`).

    workload = "hello.wasm"
    args = ["world"]
    env = { GREETING = "Hello" }

    [[dir]]
    host = "data"          # relative to this file
    guest = "/data"

    [limits]
    memory = 64            # MiB
    cpu_time = 5           # seconds

Unknown keys and wrong types are errors naming the file, the line and the key
(``Motte.toml:7: limits.memory: expected a whole number of MiB, got 'lots'``).
The reference for every key is docs/running.md.
"""

from motte._lazy import lazy_exports
from motte.manifest._errors import ManifestError
from motte.manifest._load import (
    MAX_MANIFEST_BYTES,
    load_manifest,
    manifest_for_digest,
    manifest_for_module,
    parse_manifest,
    resolve_target,
)
from motte.manifest._model import (
    INHERIT,
    MANIFEST_NAME,
    MAX_MEMORY_MIB,
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
)

__all__ = [
    "GRANT_KINDS",
    "INHERIT",
    "MANIFEST_NAME",
    "MAX_MANIFEST_BYTES",
    "MAX_MEMORY_MIB",
    "MAX_TIME_LIMIT",
    "NULL",
    "Connect",
    "Dir",
    "Grant",
    "GrantError",
    "GrantRefusedError",
    "Granted",
    "Grants",
    "HostPolicy",
    "Limits",
    "Listen",
    "Manifest",
    "ManifestError",
    "Overrides",
    "Secret",
    "Stdio",
    "TlsSettings",
    "Volume",
    "Workload",
    "apply_grants",
    "dir_from_flag",
    "env_from_flag",
    "grant_from_flag",
    "grants_from_flags",
    "host_policy_path",
    "limit_from_flag",
    "load_host_policy",
    "load_manifest",
    "manifest_for_digest",
    "manifest_for_module",
    "overrides_from_flags",
    "parse_manifest",
    "resolve_target",
]

# The validators (and the TOML key locator) load only when a manifest or a flag is parsed:
# a bare module runs without them.
_LAZY = dict.fromkeys(
    ("dir_from_flag", "env_from_flag", "limit_from_flag", "overrides_from_flags"),
    "motte.manifest._schema",
)

_LAZY.update(dict.fromkeys(("Connect", "TlsSettings"), "motte.manifest._connect"))
_LAZY.update(
    dict.fromkeys(
        (
            "GRANT_KINDS",
            "Grant",
            "GrantError",
            "GrantRefusedError",
            "Granted",
            "Grants",
            "HostPolicy",
            "apply_grants",
            "grant_from_flag",
            "grants_from_flags",
            "host_policy_path",
            "load_host_policy",
        ),
        "motte.manifest._grants",
    )
)

__getattr__ = lazy_exports(__name__, _LAZY, globals())
