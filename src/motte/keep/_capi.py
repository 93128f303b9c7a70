"""The per-instance hot path, straight through wasmtime's C API.

The Python classes of wasmtime-py are convenient but costly per call: ``Instance.exports``
enumerates every export, ``Func.__call__`` fetches the function type and builds argument
arrays, ``WasiConfig.argv`` re-encodes every string. A request-serving Keep starts an
instance per request, so these few calls go to the C functions the classes wrap (through
the bindings' own ``_ffi`` module), with the argv and environment arrays built once per
prepared workload. The semantics are those of the wrapped classes: a trap raises
``wasmtime.Trap``, an error (including a WASI exit) raises ``wasmtime.WasmtimeError`` /
``wasmtime.ExitTrap``.

wasmtime is pinned to one major version (pyproject.toml); every function here runs on every
instance, so any change in the bindings fails the test suite at once.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import wasmtime
from wasmtime import _ffi as ffi

if TYPE_CHECKING:
    from wasmtime import Store, WasiConfig


class CStrings:
    """A ``char **`` built once and reused for every instance (wasmtime copies it)."""

    __slots__ = ("_bufs", "array", "count")

    def __init__(self, strings: Sequence[str]) -> None:
        self._bufs = [ctypes.c_char_p(s.encode("utf-8")) for s in strings]
        arr = (ctypes.c_char_p * len(self._bufs))(*self._bufs)
        self.array = ctypes.cast(arr, ctypes.POINTER(ctypes.POINTER(ctypes.c_char)))
        self._bufs.append(arr)  # keep the array alive with its strings
        self.count = len(strings)


def set_argv(wasi: WasiConfig, argv: CStrings) -> None:
    if not ffi.wasi_config_set_argv(wasi.ptr(), argv.count, argv.array):
        raise wasmtime.WasmtimeError("failed to configure argv")


def set_env(wasi: WasiConfig, names: CStrings, values: CStrings) -> None:
    if not ffi.wasi_config_set_env(wasi.ptr(), names.count, names.array, values.array):
        raise wasmtime.WasmtimeError("failed to configure the environment")


def _export(store: Store, instance: Any, name: bytes) -> Any:
    item = ffi.wasmtime_extern_t()
    found = ffi.wasmtime_instance_export_get(
        store._context(), ctypes.byref(instance._instance), name, len(name), ctypes.byref(item)
    )
    return item if found else None


def call_export(store: Store, instance: Any, name: bytes) -> None:
    """Call a ``() -> ()`` export, as ``instance.exports(store)[name](store)`` would."""
    item = _export(store, instance, name)
    if item is None or item.kind != ffi.WASMTIME_EXTERN_FUNC.value:
        raise wasmtime.WasmtimeError(f"no function export {name.decode()!r}")
    trap = ctypes.POINTER(ffi.wasm_trap_t)()
    error = ffi.wasmtime_func_call(
        store._context(), ctypes.byref(item.of.func), None, 0, None, 0, ctypes.byref(trap)
    )
    if error:
        raise wasmtime.WasmtimeError._from_ptr(error)
    if trap:
        raise wasmtime.Trap._from_ptr(trap)


def memory_size(store: Store, instance: Any, name: bytes = b"memory") -> int | None:
    """Size in bytes of an exported linear memory, or None without one."""
    item = _export(store, instance, name)
    if item is None or item.kind != ffi.WASMTIME_EXTERN_MEMORY.value:
        return None
    return int(ffi.wasmtime_memory_data_size(store._context(), ctypes.byref(item.of.memory)))
