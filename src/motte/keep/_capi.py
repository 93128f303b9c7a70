"""The per-instance hot path, straight through wasmtime's C API.

The Python classes of wasmtime-py are convenient but costly per call: each wraps a
pointer in an object, each call goes through a Python wrapper and ctypes' checks of typed
pointer arguments, ``Instance.exports`` enumerates every export, ``Func.__call__`` fetches
the function type. A request-serving Keep starts an instance per request, so everything
an instance's life needs is called here through function objects of our own over the
bindings' library: untyped pointers (``c_void_p``, passed as integers), no wrapper
objects, the argv and environment arrays built once per prepared workload where they can
be. The semantics are those of the wrapped classes: a trap raises ``wasmtime.Trap``, an
error (a WASI exit included) raises ``wasmtime.WasmtimeError`` / ``wasmtime.ExitTrap``.

wasmtime is pinned to one major version (pyproject.toml); every function here runs on every
instance, so any change in the C API fails the test suite at once.
"""

from __future__ import annotations

import array
import ctypes
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

_vp = ctypes.c_void_p
_TRAP_OUT = ctypes.POINTER(ctypes.POINTER(ffi.wasm_trap_t))


#: The same library, its functions called without releasing the interpreter lock.
_dll_keeping_gil = ctypes.PyDLL(ffi.dll._name)


def _c(name: str, restype: Any, *argtypes: Any, release_gil: bool = False) -> Any:
    """A function object of our own for ``name`` (the bindings' own keep their types).

    Most of these calls take a microsecond or two: releasing the interpreter lock around
    each would let another thread take it, and this one wait to get it back (two context
    switches and a wake-up, many times per instance, on a server with a thread per
    connection). So only calls that may run guest code or block on a file or a device
    (``release_gil=True``) let other threads run meanwhile.
    """
    fn = (ffi.dll if release_gil else _dll_keeping_gil)[name]
    fn.restype = restype
    fn.argtypes = argtypes
    return fn


# A typed store pointer: motte.keep._limits hands it to the bindings' own functions.
_store_new = _c("wasmtime_store_new", ctypes.POINTER(ffi.wasmtime_store_t), _vp, _vp, _vp)
_store_context = _c("wasmtime_store_context", _vp, _vp)
# Frees the store's memory (unmaps it: tens of microseconds, never blocking).
_store_delete = _c("wasmtime_store_delete", None, _vp)
_store_limiter = _c("wasmtime_store_limiter", None, _vp, *[ctypes.c_int64] * 5)
_set_wasi = _c("wasmtime_context_set_wasi", _vp, _vp, _vp)
_set_epoch_deadline = _c("wasmtime_context_set_epoch_deadline", None, _vp, ctypes.c_uint64)
_wasi_new = _c("wasi_config_new", _vp)
_wasi_delete = _c("wasi_config_delete", None, _vp)
_wasi_argv = _c("wasi_config_set_argv", ctypes.c_bool, _vp, ctypes.c_size_t, _vp)
_wasi_env = _c("wasi_config_set_env", ctypes.c_bool, _vp, ctypes.c_size_t, _vp, _vp)
_wasi_stdin_bytes = _c("wasi_config_set_stdin_bytes", None, _vp, _vp)
# Opening a file: a user's may block (a FIFO, a network filesystem), a memfd never does.
_wasi_stdio_file = {
    (stream, release): _c(
        f"wasi_config_set_{stream}_file", ctypes.c_bool, _vp, ctypes.c_char_p, release_gil=release
    )
    for stream in ("stdin", "stdout", "stderr")
    for release in (True, False)
}
_wasi_inherit = {
    "stdin": _c("wasi_config_inherit_stdin", None, _vp),
    "stdout": _c("wasi_config_inherit_stdout", None, _vp),
    "stderr": _c("wasi_config_inherit_stderr", None, _vp),
}
_wasi_preopen_dir = _c(
    "wasi_config_preopen_dir",
    ctypes.c_bool,
    _vp,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_bool,
    release_gil=True,
)
_byte_vec_new = _c("wasm_byte_vec_new", None, _vp, ctypes.c_size_t, ctypes.c_char_p)
# Instantiation runs guest code only when the module has a start function.
_pre_instantiate = {
    release: _c(
        "wasmtime_instance_pre_instantiate",
        _vp,
        _vp,
        _vp,
        ctypes.POINTER(ffi.wasmtime_instance_t),
        _TRAP_OUT,
        release_gil=release,
    )
    for release in (True, False)
}
_export_get = _c(
    "wasmtime_instance_export_get",
    ctypes.c_bool,
    _vp,
    ctypes.POINTER(ffi.wasmtime_instance_t),
    ctypes.c_char_p,
    ctypes.c_size_t,
    ctypes.POINTER(ffi.wasmtime_extern_t),
)
_func_call = _c(
    "wasmtime_func_call",
    _vp,
    _vp,
    ctypes.POINTER(ffi.wasmtime_func_t),
    _vp,
    ctypes.c_size_t,
    _vp,
    ctypes.c_size_t,
    _TRAP_OUT,
    release_gil=True,
)
_memory_data_size = _c(
    "wasmtime_memory_data_size", ctypes.c_size_t, _vp, ctypes.POINTER(ffi.wasmtime_memory_t)
)
_table_size = _c("wasmtime_table_size", ctypes.c_uint64, _vp, ctypes.POINTER(ffi.wasmtime_table_t))
_EXTERN_FUNC = ffi.WASMTIME_EXTERN_FUNC.value
_EXTERN_TABLE = ffi.WASMTIME_EXTERN_TABLE.value
_EXTERN_MEMORY = ffi.WASMTIME_EXTERN_MEMORY.value


def address(pointer: Any) -> int:
    """The address a wasmtime-py object's typed pointer holds (for the functions here)."""
    return ctypes.cast(pointer, _vp).value or 0


def _error(pointer: int) -> wasmtime.WasmtimeError:
    """The exception for a ``wasmtime_error_t *`` (an ExitTrap for a WASI exit)."""
    return wasmtime.WasmtimeError._from_ptr(
        ctypes.cast(pointer, ctypes.POINTER(ffi.wasmtime_error_t))
    )


class CStrings:
    """A ``char **`` (NULL-terminated) over ``strings``, built in one piece: the strings in
    one buffer, their addresses in one array of machine words, no ctypes object per string
    (a request's environment is a few dozen strings). wasmtime copies what it is given."""

    __slots__ = ("_buffer", "_pointers", "array", "count")

    def __init__(self, strings: Sequence[str]) -> None:
        joined = "\0".join(strings)
        buffer = bytearray(joined.encode("utf-8"))
        buffer.append(0)
        sizes = [len(s) + 1 for s in strings]
        if len(buffer) != len(joined) + 1:  # not all ASCII: lengths in bytes differ
            sizes = [len(s.encode("utf-8")) + 1 for s in strings]
        start = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
        # The address of each string, then (in place of the end of the last) NULL.
        pointers = array.array(_WORD, itertools.accumulate(sizes, initial=start))
        pointers[-1] = 0
        self._buffer = buffer  # both stay alive (and unmoved) while this object is
        self._pointers = pointers
        #: The address of the first pointer.
        self.array: int = pointers.buffer_info()[0]
        self.count = len(sizes)


_WORD = "Q" if ctypes.sizeof(ctypes.c_void_p) == 8 else "I"
_WORD_BYTES = ctypes.sizeof(ctypes.c_void_p)


# -- a store ---------------------------------------------------------------------------------


def store_new(engine: int) -> tuple[Any, int]:
    """A new store of ``engine``: (store, its context)."""
    store = _store_new(engine, None, None)
    return store, _store_context(store)


def store_delete(store: Any) -> None:
    _store_delete(store)


def store_limits(
    store: Any, *, memory_size: int, table_elements: int, instances: int, tables: int, memories: int
) -> None:
    _store_limiter(store, memory_size, table_elements, instances, tables, memories)


def set_wasi(context: int, wasi: int) -> None:
    """Give the store its WASI configuration (which it takes over, even on error)."""
    error = _set_wasi(context, wasi)
    if error:
        raise _error(error)


def set_epoch_deadline(context: int, ticks: int) -> None:
    _set_epoch_deadline(context, ticks)


# -- a WASI configuration --------------------------------------------------------------------


def wasi_new() -> int:
    return _wasi_new()  # type: ignore[no-any-return]


def wasi_delete(wasi: int) -> None:
    """Free a WASI configuration no store has taken over."""
    _wasi_delete(wasi)


def set_argv(wasi: int, argv: CStrings) -> None:
    if not _wasi_argv(wasi, argv.count, argv.array):
        raise wasmtime.WasmtimeError("failed to configure argv")


def env_strings(env: Mapping[str, str]) -> CStrings:
    """The environment as :func:`set_env` takes it: the names, then the values."""
    return CStrings([*env, *env.values()])


def set_env(wasi: int, env: CStrings) -> None:
    """Set the environment from :func:`env_strings`."""
    count = env.count // 2
    if not _wasi_env(wasi, count, env.array, env.array + count * _WORD_BYTES):
        raise wasmtime.WasmtimeError("failed to configure the environment")


def inherit(wasi: int, stream: str) -> None:
    """``stream`` (stdin, stdout or stderr) is motte's own."""
    _wasi_inherit[stream](wasi)


def stdin_bytes(wasi: int, data: bytes) -> None:
    """The guest reads exactly ``data`` on stdin, then end of file (no file, no descriptor:
    wasmtime keeps a copy in memory)."""
    vec = ffi.wasm_byte_vec_t()
    _byte_vec_new(ctypes.byref(vec), len(data), data)
    _wasi_stdin_bytes(wasi, ctypes.byref(vec))  # takes the copy over


def stdio_file(wasi: int, stream: str, path: bytes, *, may_block: bool = True) -> None:
    """``stream`` reads (stdin) or creates and truncates (stdout, stderr) the file ``path``;
    ``may_block=False`` for a file whose opening cannot block (a memfd of motte's own)."""
    if not _wasi_stdio_file[stream, may_block](wasi, path):
        raise wasmtime.WasmtimeError(f"failed to set {stream} file")


def preopen_dir(wasi: int, host: str, guest: str, writable: bool) -> bool:
    return bool(_wasi_preopen_dir(wasi, host.encode(), guest.encode(), writable))


# -- a module instance -----------------------------------------------------------------------


def instantiate(pre: int, context: int, *, runs_guest: bool = True) -> ffi.wasmtime_instance_t:
    """Instantiate a linked module (``InstancePre``) in the store of ``context``;
    ``runs_guest=False`` when the module has no start function (see :func:`has_start`)."""
    instance = ffi.wasmtime_instance_t()
    trap = ctypes.POINTER(ffi.wasm_trap_t)()
    error = _pre_instantiate[runs_guest](pre, context, ctypes.byref(instance), ctypes.byref(trap))
    if error:
        raise _error(error)
    if trap:
        raise wasmtime.Trap._from_ptr(trap)
    return instance


def has_start(module: bytes) -> bool:
    """Whether a core module's bytes have a start section (a function that runs when it is
    instantiated). Reads the section headers only; a malformed module says True."""
    pos = 8  # magic and version
    try:
        while pos < len(module):
            section = module[pos]
            size, pos = _leb128(module, pos + 1)
            if section == _START_SECTION:
                return True
            pos += size
    except IndexError:
        return True
    return False


_START_SECTION = 8


def _leb128(data: bytes, pos: int) -> tuple[int, int]:
    """An unsigned LEB128 number at ``pos``: (value, position after it)."""
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
        if shift > 35:
            raise IndexError("LEB128 number too long")


def _export(context: int, instance: ffi.wasmtime_instance_t, name: bytes) -> Any:
    item = ffi.wasmtime_extern_t()
    found = _export_get(context, ctypes.byref(instance), name, len(name), ctypes.byref(item))
    return item if found else None


def call_export(context: int, instance: ffi.wasmtime_instance_t, name: bytes) -> None:
    """Call a ``() -> ()`` export, as ``instance.exports(store)[name](store)`` would."""
    item = _export(context, instance, name)
    if item is None or item.kind != _EXTERN_FUNC:
        raise wasmtime.WasmtimeError(f"no function export {name.decode()!r}")
    trap = ctypes.POINTER(ffi.wasm_trap_t)()
    error = _func_call(context, ctypes.byref(item.of.func), None, 0, None, 0, ctypes.byref(trap))
    if error:
        raise _error(error)
    if trap:
        raise wasmtime.Trap._from_ptr(trap)


def memory_size(
    context: int, instance: ffi.wasmtime_instance_t, name: bytes = b"memory"
) -> int | None:
    """Size in bytes of an exported linear memory, or None without one."""
    item = _export(context, instance, name)
    if item is None or item.kind != _EXTERN_MEMORY:
        return None
    return int(_memory_data_size(context, ctypes.byref(item.of.memory)))


def table_size(context: int, instance: ffi.wasmtime_instance_t, name: bytes) -> int | None:
    """Elements of an exported table, or None without one."""
    item = _export(context, instance, name)
    if item is None or item.kind != _EXTERN_TABLE:
        return None
    return int(_table_size(context, ctypes.byref(item.of.table)))


# -- host functions --------------------------------------------------------------------------

#: ``wasmtime_func_unchecked_callback_t``: (env, caller, args and results, their count) ->
#: a trap or NULL. Values are ``wasmtime_val_raw_t``, 16 bytes each; an i32 at offset 0.
_RAW_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_size_t, _vp, _vp, _vp, ctypes.c_size_t)
_FINALIZER = ctypes.CFUNCTYPE(None, _vp)
_RAW_VALUE_BYTES = 16
_define_unchecked = _c(
    "wasmtime_linker_define_func_unchecked",
    _vp,
    _vp,
    ctypes.c_char_p,
    ctypes.c_size_t,
    ctypes.c_char_p,
    ctypes.c_size_t,
    _vp,
    _RAW_CALLBACK,
    _vp,
    _FINALIZER,
)
_caller_context = _c("wasmtime_caller_context", _vp, _vp)
_caller_export_get = _c(
    "wasmtime_caller_export_get",
    ctypes.c_bool,
    _vp,
    ctypes.c_char_p,
    ctypes.c_size_t,
    ctypes.POINTER(ffi.wasmtime_extern_t),
)
_memory_data = _c("wasmtime_memory_data", _vp, _vp, ctypes.POINTER(ffi.wasmtime_memory_t))
_trap_new = _c("wasmtime_trap_new", _vp, ctypes.c_char_p, ctypes.c_size_t)
_I32 = ctypes.c_int32


def define_i32_functions(
    linker: wasmtime.Linker, module: str, functions: Mapping[str, tuple[int, Any]]
) -> list[Any]:
    """Define host functions of i32 parameters and one i32 result on ``linker``, called
    without wasmtime-py's value conversions (a ValType object per value per call: most of
    a host call's cost there). ``functions`` maps each name to (parameter count,
    ``fn(caller, *params) -> int``); ``caller`` is the raw ``wasmtime_caller_t *`` for
    :func:`caller_context` and :func:`caller_memory`. An exception in ``fn`` becomes a trap
    naming the function. Returns what must stay alive as long as the linker's instances."""
    keep: list[Any] = []
    for name, (count, fn) in functions.items():
        ty = wasmtime.FuncType([wasmtime.ValType.i32()] * count, [wasmtime.ValType.i32()])

        def callback(
            env: Any, caller: int, values: int, n: int, fn: Any = fn, count: int = count
        ) -> int:
            try:
                params = [
                    _I32.from_address(values + i * _RAW_VALUE_BYTES).value for i in range(count)
                ]
                _I32.from_address(values).value = fn(caller, *params)
                return 0
            except BaseException as e:  # never unwind through wasmtime's frames
                message = f"motte: host function {fn.__name__} failed: {e!r}".encode()
                return int(_trap_new(message, len(message)) or 0)

        raw = _RAW_CALLBACK(callback)
        error = _define_unchecked(
            address(linker.ptr()),
            module.encode(),
            len(module),
            name.encode(),
            len(name),
            address(ty.ptr()),
            raw,
            None,
            _FINALIZER(0),
        )
        if error:
            raise _error(error)
        keep += [raw, ty]
    return keep


def caller_context(caller: int) -> int:
    """The store context of the instance calling a host function."""
    return _caller_context(caller) or 0


def caller_memory(caller: int, context: int, cached: Any = None) -> tuple[Any, int, int]:
    """The calling instance's exported ``memory``: (its extern, to pass back as ``cached``
    on later calls from the same store; the address of its bytes now; their length).
    (None, 0, 0) without one."""
    item = cached
    if item is None:
        item = ffi.wasmtime_extern_t()
        found = _caller_export_get(caller, b"memory", 6, ctypes.byref(item))
        if not found or item.kind != _EXTERN_MEMORY:
            return None, 0, 0
    memory = ctypes.byref(item.of.memory)
    return item, _memory_data(context, memory) or 0, int(_memory_data_size(context, memory))
