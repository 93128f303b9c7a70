"""The wasmtime Engine every Keep in this process shares, and the epoch ticker that drives
its time limits.

One configuration, chosen for the sandbox and measured (docs/performance.md):

- ``epoch_interruption``: CPU and wall time are enforced by epoch deadlines, not fuel. On the
  example workloads epochs cost next to nothing, fuel costs 15-25 % (bench/compute.py).
- ``max_wasm_stack`` 512 KiB: deep recursion traps with ``stack overflow``.
- Cranelift at ``speed``; parallel compilation; the component model for WASI 0.2 commands.
- No garbage-collected heap (the GC proposal): its objects would live outside the memories
  and tables whose sum ``limits.memory`` bounds (``motte.keep._declared``). Shared memories
  stay off too (wasmtime's default): a store's limits do not govern them.

Compiled artifacts are only valid for the engine configuration and wasmtime build that made
them, so :func:`engine_fingerprint` names both and is part of every cache key.

A process that starts many short instances (a Keep serving requests) asks for a *pooling*
runtime (``runtime(settings, pooling=True)``): wasmtime's pooling allocator reserves the
address space of :data:`POOL_INSTANCES` instances once and reuses it, so an instance costs
no mmap, mprotect or munmap (each of which, in a process with many threads, takes the
whole process's memory-map lock and interrupts the other CPUs to flush their TLBs). Its
bounds per module are set to the store limits of ``motte.keep._workload``, so a workload
that runs on its own also runs pooled; compiled artifacts are the same for both allocators
(the cache key does not change).
"""

from __future__ import annotations

import os
import platform
import threading
import time
from functools import cache
from typing import TYPE_CHECKING

from motte._record import Record

if TYPE_CHECKING:
    import wasmtime

#: How often the ticker advances the epoch: the resolution of the time limits, and how often
#: a running instance pays for one limit check (a few microseconds).
TICK_SECONDS = 0.010
MAX_WASM_STACK = 512 * 1024
#: Instances (and linear memories, tables) alive at once in a pooling runtime: wasmtime's
#: own default. Each memory slot reserves 4 GiB of address space plus guard pages (never
#: memory until used): about 4 TiB in all, of the 128 TiB a 64-bit Linux process has.
POOL_INSTANCES = 1000
#: Per module, as the store limits of motte.keep._workload allow (pooling's own defaults
#: are 1 memory, 1 table of 20,000 elements).
POOL_MEMORIES_PER_MODULE = 100
POOL_TABLES_PER_MODULE = 100
POOL_TABLE_ELEMENTS = 1_000_000
#: Bound on an instance's runtime metadata (wasmtime's VMContext; default 1 MiB).
POOL_INSTANCE_METADATA = 16 * 1024 * 1024
#: The start of a linear memory a slot keeps mapped between instances, zeroed with memset
#: instead of being given back to the kernel and faulted in again, page by page, by the
#: next instance. A guest built with a small stack (wasm-ld's default of 64 KiB) keeps its
#: stack, data and first allocations there: ~25 % less per instance for such a build of
#: examples/http-hello (docs/performance.md), no difference for the 1 MiB-stack one.
POOL_KEEP_RESIDENT = 256 * 1024


class EngineSettings(Record):
    """The engine configuration. Every field is part of the compiled-artifact cache key."""

    __slots__ = (
        "component_model",
        "cranelift_opt_level",
        "epoch_interruption",
        "gc",
        "max_wasm_stack",
    )
    epoch_interruption: bool
    max_wasm_stack: int
    cranelift_opt_level: str
    component_model: bool
    gc: bool

    def __init__(
        self,
        epoch_interruption: bool = True,
        max_wasm_stack: int = MAX_WASM_STACK,
        cranelift_opt_level: str = "speed",
        component_model: bool = True,
        gc: bool = False,
    ) -> None:
        self._set(
            epoch_interruption=epoch_interruption,
            max_wasm_stack=max_wasm_stack,
            cranelift_opt_level=cranelift_opt_level,
            component_model=component_model,
            gc=gc,
        )

    def config(self) -> wasmtime.Config:
        import wasmtime

        cfg = wasmtime.Config()
        cfg.epoch_interruption = self.epoch_interruption
        cfg.max_wasm_stack = self.max_wasm_stack
        cfg.cranelift_opt_level = self.cranelift_opt_level
        cfg.wasm_component_model = self.component_model
        cfg.wasm_gc = self.gc
        cfg.parallel_compilation = True
        return cfg


DEFAULT_SETTINGS = EngineSettings()


@cache
def wasmtime_build() -> str:
    """Which wasmtime this is: the installed distribution's version plus the identity of its
    shared library (size and mtime), cheap to compute (importlib.metadata costs ~100 ms)."""
    import wasmtime

    package_dir = os.path.dirname(wasmtime.__file__)
    site = os.path.dirname(package_dir)
    version = "unknown"
    try:
        for name in os.listdir(site):
            if name.startswith("wasmtime-") and name.endswith(".dist-info"):
                version = name[len("wasmtime-") : -len(".dist-info")]
                break
    except OSError:
        pass
    lib = os.path.join(package_dir, f"{platform.system().lower()}-{platform.machine()}")
    ident = ""
    try:
        for name in sorted(os.listdir(lib)):
            st = os.stat(os.path.join(lib, name))
            ident += f"{name}:{st.st_size}:{st.st_mtime_ns};"
    except OSError:
        pass
    return f"wasmtime {version} [{ident}]"


def engine_fingerprint(settings: EngineSettings = DEFAULT_SETTINGS) -> str:
    """A string that changes whenever a compiled artifact could stop being valid."""
    return (
        f"{wasmtime_build()}; {platform.machine()}; epoch={int(settings.epoch_interruption)}; "
        f"stack={settings.max_wasm_stack}; opt={settings.cranelift_opt_level}; "
        f"cm={int(settings.component_model)}; gc={int(settings.gc)}"
    )


class EpochTicker:
    """Advances an engine's epoch every :data:`TICK_SECONDS` while any instance runs.

    Each running store has an epoch deadline one tick ahead and a callback (see
    ``motte.keep._limits``) that, on every tick, checks its CPU and wall time and either
    extends the deadline or stops the guest. The thread sleeps while nothing runs.
    """

    def __init__(self, engine: wasmtime.Engine, interval: float = TICK_SECONDS) -> None:
        self._engine = engine
        self._interval = interval
        self._active = 0
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> EpochTicker:
        with self._cond:
            self._active += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="motte-epoch-ticker", daemon=True
                )
                self._thread.start()
            elif self._active == 1:
                self._cond.notify()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._active -= 1

    def _loop(self) -> None:
        interval = self._interval
        while True:
            with self._cond:
                while self._active == 0:
                    self._cond.wait()
            # Sleep outside the lock so entering and leaving runs never wait for a tick.
            time.sleep(interval)
            self._engine.increment_epoch()


def pooling_possible() -> bool:
    """Whether this process may reserve a pool's address space: not under an address-space
    limit (``ulimit -v``), where wasmtime would abort the process instead of failing."""
    import resource

    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    except (OSError, ValueError):
        return False
    return soft == resource.RLIM_INFINITY


def _use_pooling(cfg: wasmtime.Config) -> None:
    from wasmtime import _ffi as ffi

    pool = ffi.wasmtime_pooling_allocation_config_new()
    try:
        for name, value in (
            ("total_core_instances", POOL_INSTANCES),
            ("total_component_instances", POOL_INSTANCES),
            ("total_memories", POOL_INSTANCES),
            ("total_tables", POOL_INSTANCES),
            ("max_memories_per_module", POOL_MEMORIES_PER_MODULE),
            ("max_tables_per_module", POOL_TABLES_PER_MODULE),
            ("table_elements", POOL_TABLE_ELEMENTS),
            ("max_core_instance_size", POOL_INSTANCE_METADATA),
            ("max_component_instance_size", POOL_INSTANCE_METADATA),
            ("linear_memory_keep_resident", POOL_KEEP_RESIDENT),
        ):
            getattr(ffi, f"wasmtime_pooling_allocation_config_{name}_set")(pool, value)
        ffi.wasmtime_pooling_allocation_strategy_set(cfg.ptr(), pool)
    finally:
        ffi.wasmtime_pooling_allocation_config_delete(pool)


class Runtime:
    """The shared engine and its ticker (one per settings and allocator per process)."""

    def __init__(self, settings: EngineSettings, *, pooling: bool = False) -> None:
        import wasmtime

        self.settings = settings
        self.pooling = pooling
        cfg = settings.config()
        if pooling:
            _use_pooling(cfg)
        self.engine = wasmtime.Engine(cfg)
        self.ticker = EpochTicker(self.engine)
        self.fingerprint = engine_fingerprint(settings)


_runtimes: dict[tuple[EngineSettings, bool], Runtime] = {}
_runtimes_lock = threading.Lock()


def runtime(settings: EngineSettings = DEFAULT_SETTINGS, *, pooling: bool = False) -> Runtime:
    """The process-wide :class:`Runtime` for ``settings``, created on first use; with
    ``pooling``, one whose engine pools instances (the plain one where the process cannot
    reserve a pool: see :func:`pooling_possible`)."""
    pooling = pooling and pooling_possible()
    rt = _runtimes.get((settings, pooling))
    if rt is None:
        with _runtimes_lock:
            rt = _runtimes.get((settings, pooling))
            if rt is None:
                rt = _runtimes[settings, pooling] = Runtime(settings, pooling=pooling)
    return rt
