"""Keep a process that holds secrets out of core dumps (and other users' debuggers).

:func:`forbid_core_dumps` sets RLIMIT_CORE to 0 (no core file, whatever the kernel's
``core_pattern`` says for files) and clears the dumpable flag (``prctl(PR_SET_DUMPABLE,
0)``): then the kernel hands no core to a ``core_pattern`` pipe either, and ptrace and
``/proc/PID/mem`` or ``environ`` are closed to every non-root process, the same user's
included. Both are inherited by threads, not across ``exec``: a worker process calls it
again. Called where motte holds a released secret, a content key or the Steward's master
key. Best effort off Linux (RLIMIT_CORE only).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import resource
import sys

PR_SET_DUMPABLE = 4
_done = False


def forbid_core_dumps() -> None:
    global _done
    if _done:
        return
    # Already lower, or not allowed: the dumpable flag below still holds.
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    _done = True


def dumpable() -> bool:
    """Whether this process may still be dumped (for tests and ``motte platform``)."""
    if not sys.platform.startswith("linux"):
        return resource.getrlimit(resource.RLIMIT_CORE)[0] != 0
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return bool(libc.prctl(3, 0, 0, 0, 0))  # PR_GET_DUMPABLE
