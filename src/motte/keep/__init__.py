"""Keeps: run WebAssembly workloads with exactly the capabilities their manifest grants.

The in-process API, for ``motte run`` and for the listeners that serve a workload (a fresh
instance per HTTP request or TCP connection):

    from motte.manifest import load_manifest
    from motte.keep import PreparedWorkload

    workload = PreparedWorkload.prepare(load_manifest("Motte.toml"))   # once
    result = workload.run(                                             # per instance,
        stdin=b"request body",                                         # from any thread
        env={"REQUEST_METHOD": "POST"},        # merged over the manifest's env
        stdout="capture", stderr="capture",    # memfds, not callbacks; or a Path or an fd
    )
    result.exit_code      # the guest's exit status (0..125), or None if it trapped
    result.trap           # None, or Trap(kind="cpu_time" | "stack_overflow" | ..., message)
    result.stdout         # captured bytes (bounded by max_output, default 64 MiB)
    result.status         # what `motte run` exits with

``prepare`` reads the workload (a path, or a ``sha256:`` digest looked up in the local OCI
store and verified), detects a WASI preview1 command module or a WASI 0.2 command component,
loads its compiled artifact from the HMAC-authenticated cache or compiles it, and links it
once (``InstancePre`` for modules). ``run`` creates a new Store with the manifest's limits:
memory (store limits), CPU and wall time (epoch deadlines checked every 10 ms on the guest's
own thread). Concurrent ``run`` calls share nothing but the compiled code.

Limits a guest cannot escape by blocking: none of the above interrupts a guest that waits
inside a host call (a WASI ``poll_oneoff`` sleep, a read from an inherited terminal). The time
limits take effect when it returns to wasm; ``motte run`` additionally ends its own process
at the wall-time limit. Callers of ``run`` should give stdin as bytes, a file or a pipe they
feed.

:func:`workload_digest` is the one function that names a workload by content.

Attested Keeps build on this: :mod:`motte.keep.backends` produces a TEE's evidence, and
:func:`launch` (what ``motte run`` calls) attests to a Steward before it fetches the
workload by the attested digest (docs/keeps.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from motte._digest import check_digest, file_digest, is_digest, workload_digest
from motte._lazy import lazy_exports

if TYPE_CHECKING:
    from motte.keep._cache import CacheInfo, CacheKeyError, CompiledCache, cache_info, clear_cache
    from motte.keep._engine import EngineSettings
    from motte.keep._launch import Launched, launch
    from motte.keep._outcome import RunResult, Trap, limit_trap
    from motte.keep._registry import drain_keeps, record_drain, register_keep
    from motte.keep._snapshot import SNAPSHOT_FILE, SnapshotError, peek_header
    from motte.keep._volumes import (
        VolumeError,
        VolumeNotPersisted,
        Volumes,
        default_host_dir,
        open_volumes,
    )
    from motte.keep._workload import (
        KeepError,
        MemoryLimitError,
        PreparedWorkload,
        WorkloadError,
        detect_kind,
    )

__all__ = [
    "SNAPSHOT_FILE",
    "CacheInfo",
    "CacheKeyError",
    "CompiledCache",
    "EngineSettings",
    "KeepError",
    "Launched",
    "MemoryLimitError",
    "PreparedWorkload",
    "RunResult",
    "SnapshotError",
    "Trap",
    "VolumeError",
    "VolumeNotPersisted",
    "Volumes",
    "WorkloadError",
    "cache_info",
    "check_digest",
    "clear_cache",
    "default_host_dir",
    "detect_kind",
    "drain_keeps",
    "file_digest",
    "is_digest",
    "launch",
    "limit_trap",
    "open_volumes",
    "peek_header",
    "record_drain",
    "register_keep",
    "workload_digest",
]

# The runtime imports wasmtime (~100 ms); load it on first use so that importing
# motte.keep for workload_digest stays cheap.
_LAZY = {
    "CacheInfo": "motte.keep._cache",
    "CacheKeyError": "motte.keep._cache",
    "CompiledCache": "motte.keep._cache",
    "cache_info": "motte.keep._cache",
    "clear_cache": "motte.keep._cache",
    "EngineSettings": "motte.keep._engine",
    "Launched": "motte.keep._launch",
    "launch": "motte.keep._launch",
    "RunResult": "motte.keep._outcome",
    "Trap": "motte.keep._outcome",
    "limit_trap": "motte.keep._outcome",
    "KeepError": "motte.keep._workload",
    "MemoryLimitError": "motte.keep._workload",
    "PreparedWorkload": "motte.keep._workload",
    "WorkloadError": "motte.keep._workload",
    "detect_kind": "motte.keep._workload",
    "drain_keeps": "motte.keep._registry",
    "record_drain": "motte.keep._registry",
    "register_keep": "motte.keep._registry",
    "SNAPSHOT_FILE": "motte.keep._snapshot",
    "SnapshotError": "motte.keep._snapshot",
    "peek_header": "motte.keep._snapshot",
    "VolumeError": "motte.keep._volumes",
    "VolumeNotPersisted": "motte.keep._volumes",
    "Volumes": "motte.keep._volumes",
    "default_host_dir": "motte.keep._volumes",
    "open_volumes": "motte.keep._volumes",
}


__getattr__ = lazy_exports(__name__, _LAZY, globals())
