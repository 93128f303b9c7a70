"""CPU and wall time limits, checked on every epoch tick by a deadline callback.

wasmtime checks a store's epoch deadline at function entries and loop back-edges. Each run
sets its deadline one tick ahead and registers :func:`_on_deadline`, which wasmtime calls on
the guest's own thread whenever the deadline passes. The callback:

- stops the guest when the wall-clock deadline has passed;
- stops it when the thread's CPU time (``time.thread_time``, which counts exactly the thread
  the guest runs on, host calls included) exceeds the CPU limit;
- stops it when an output file or captured stream has grown past its bound (checked by
  its size: a guest stops within one tick of passing it);
- stops it when the caller's ``cancel`` event is set (``motte run`` sets it on Ctrl-C), or
  when a KeyboardInterrupt arrives while the guest runs on the main thread;
- otherwise extends the deadline by one tick.

It stops a guest by returning a wasmtime error, which unwinds the guest like a trap. The
reason is recorded on the :class:`Watch`, so classification never parses error text.

The Python bindings expose ``wasmtime_store_epoch_deadline_callback`` only through their FFI
module; it is part of wasmtime's C API and wasmtime is pinned to one major version.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import threading
import time
from typing import TYPE_CHECKING

from wasmtime import _ffi as ffi

if TYPE_CHECKING:
    import wasmtime

_CONTINUE = 0  # WASMTIME_UPDATE_DEADLINE_CONTINUE
_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_size_t,
    ctypes.POINTER(ffi.wasmtime_context_t),
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_uint64),
    ctypes.POINTER(ctypes.c_uint8),
)
# Registering the callback never blocks: called keeping the interpreter lock (the bindings'
# own function releases it, one hand-off to another thread per instance on a busy server),
# with an untyped store pointer.
_register = ctypes.PyDLL(ffi.dll._name).wasmtime_store_epoch_deadline_callback
_register.restype = None
_register.argtypes = (ctypes.c_void_p, _CALLBACK, ctypes.c_void_p, ctypes.c_void_p)

#: Limit reasons a Watch records (the ``kind`` of the resulting stop).
CPU_TIME = "cpu_time"
WALL_TIME = "wall_time"
OUTPUT_LIMIT = "output_limit"
INTERRUPTED = "interrupted"


class Watch:
    """The time and output limits of one run, checked on every tick."""

    __slots__ = (
        "cancel",
        "cpu_limit",
        "cpu_start",
        "id",
        "output_fds",
        "output_hit",
        "stopped",
        "wall_deadline",
        "wall_limit",
        "wall_start",
    )

    def __init__(
        self,
        *,
        cpu_time: float,
        wall_time: float,
        output_fds: tuple[tuple[str, int, int, bool], ...] = (),
        cancel: threading.Event | None = None,
    ) -> None:
        self.id = next(_ids)
        self.cancel = cancel
        self.cpu_limit = cpu_time
        self.wall_limit = wall_time
        #: (stream name, descriptor, most bytes it may hold, whether it is a file rather than
        #: a capture) for each bounded output.
        self.output_fds = output_fds
        #: The output that passed its bound: (stream name, the bound, whether a file).
        self.output_hit: tuple[str, int, bool] | None = None
        self.wall_start = self.wall_deadline = self.cpu_start = 0.0
        #: Why the guest was stopped, or None while it may run.
        self.stopped: str | None = None

    def arm(self, store: wasmtime.Store) -> None:
        """Register with ``store`` and start the clocks; call it on the thread that will run
        the guest, right before instantiation (the start function counts too)."""
        _watches[self.id] = self
        _register(store.ptr(), _CALLBACK_FN, self.id, None)
        store.set_epoch_deadline(1)
        self.wall_start = time.monotonic()
        self.wall_deadline = self.wall_start + self.wall_limit
        self.cpu_start = time.thread_time()

    def disarm(self) -> None:
        _watches.pop(self.id, None)

    def elapsed(self) -> tuple[float, float]:
        """(wall seconds, CPU seconds) since :meth:`arm`."""
        return time.monotonic() - self.wall_start, time.thread_time() - self.cpu_start

    def check(self) -> str | None:
        """The limit that has been reached now, if any."""
        if self.cancel is not None and self.cancel.is_set():
            return INTERRUPTED
        if time.monotonic() >= self.wall_deadline:
            return WALL_TIME
        if time.thread_time() - self.cpu_start >= self.cpu_limit:
            return CPU_TIME
        for name, fd, bound, file in self.output_fds:
            if os.fstat(fd).st_size > bound:
                self.output_hit = (name, bound, file)
                return OUTPUT_LIMIT
        return None


_ids = itertools.count(1)
_watches: dict[int, Watch] = {}


def _stop(reason: str) -> int:
    err = ffi.wasmtime_error_new(f"motte: {reason}".encode())
    return ctypes.cast(err, ctypes.c_void_p).value or 0


def _on_deadline(context, data, delta, kind) -> int:  # type: ignore[no-untyped-def]
    watch = None
    try:
        watch = _watches.get(data or 0)
        reason = watch.check() if watch is not None else None
    except KeyboardInterrupt:
        reason = INTERRUPTED
    except BaseException:  # never let an exception escape into wasmtime: keep running
        reason = None
    if reason is not None:
        if watch is not None:
            watch.stopped = reason
        return _stop(reason)
    delta[0] = 1
    kind[0] = _CONTINUE
    return 0


_CALLBACK_FN = _CALLBACK(_on_deadline)
