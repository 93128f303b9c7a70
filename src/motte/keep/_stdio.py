"""Standard streams for one instance, as files and descriptors (never Python callbacks).

wasmtime's WASI config takes output as *paths*, so captured output goes to a ``memfd``
named by ``/proc/self/fd/N`` (one per thread and stream, reused: wasmtime truncates it when
it opens it) and is read back after the run. A callback per write costs ~50 µs and leaves a
Rust panic at exit (feasibility §1.6-1.7); a memfd costs one syscall per write, like a file.
Stdin bytes are handed to wasmtime, which keeps a copy in memory.

What each stream accepts (``StdinSpec`` / ``OutputSpec``):

    "inherit"          motte's own stream
    "null"             nothing in, output discarded
    bytes (stdin)      exactly these bytes, then end of file
    "capture"          (stdout/stderr) kept in memory and returned in the RunResult
    pathlib.Path       a file: stdin reads it, output creates or truncates it (opened here,
                       so that its size can be watched: limits.output)
    int                an open file descriptor (a pipe or a file) the caller owns
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from motte.keep import _capi

if TYPE_CHECKING:
    from motte.manifest import Stdio

StdinSpec = Literal["inherit", "null"] | bytes | Path | int
OutputSpec = Literal["inherit", "null", "capture"] | Path | int

#: Default bound on captured output per stream (in-process API); checked on every tick.
DEFAULT_MAX_OUTPUT = 64 * 1024 * 1024
#: The first read of a captured stream: most answers fit, and need no fstat.
READ_CHUNK = 64 * 1024


def _fd_path(fd: int) -> bytes:
    return b"/proc/self/fd/%d" % fd


def from_manifest(stdio: Stdio) -> StdinSpec | OutputSpec:
    if stdio.kind == "file":
        assert stdio.path is not None
        return stdio.path
    return stdio.kind


#: The C library's pread, called without releasing the interpreter lock: reading a memfd
#: never blocks, and a thread that released the lock for it would often wait to get it
#: back behind another (os.pread always releases it).
_libc = ctypes.PyDLL(None, use_errno=True)
_pread = _libc.pread
_pread.restype = ctypes.c_ssize_t
_pread.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int64)


class _Memfds:
    """A thread's capture memfds, one per stream name, reused by every instance the thread
    runs (wasmtime truncates one when it opens it): two system calls fewer per instance.
    Closed when the thread ends (its thread-local storage is released). Beside them, the
    buffer a captured stream's first bytes are read into."""

    def __init__(self) -> None:
        self.fds: dict[str, int] = {}
        self.buffer = ctypes.create_string_buffer(READ_CHUNK)

    def pread_start(self, fd: int, size: int) -> bytes:
        """Up to ``size`` (at most READ_CHUNK) bytes from the start of ``fd``."""
        n = _pread(fd, self.buffer, size, 0)
        if n < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))
        return ctypes.string_at(self.buffer, n)

    def get(self, name: str) -> int:
        fd = self.fds.get(name)
        if fd is None:
            fd = self.fds[name] = os.memfd_create(f"motte-{name}", os.MFD_CLOEXEC)
        return fd

    def __del__(self) -> None:
        for fd in self.fds.values():
            os.close(fd)


class _ThreadMemfds(threading.local):
    def __init__(self) -> None:
        self.memfds = _Memfds()


_thread = _ThreadMemfds()


class Streams:
    """Applies three stream specs to a WASI configuration; owns the memfds it creates."""

    def __init__(self, stdin: StdinSpec, stdout: OutputSpec, stderr: OutputSpec) -> None:
        self._stdin = stdin
        self._stdout = stdout
        self._stderr = stderr
        self.capture_fds: dict[str, int] = {}
        #: Output files this instance opened (and closes), by stream name.
        self.file_fds: dict[str, int] = {}

    def configure(self, wasi: int) -> None:
        """Configure the raw ``wasi_config_t *`` ``wasi`` (see ``motte.keep._capi``)."""
        stdin = self._stdin
        if stdin == "inherit":
            _capi.inherit(wasi, "stdin")
        elif isinstance(stdin, bytes):
            if stdin:
                _capi.stdin_bytes(wasi, stdin)
        elif isinstance(stdin, Path):
            _capi.stdio_file(wasi, "stdin", os.fsencode(stdin))
        elif isinstance(stdin, int) and not isinstance(stdin, bool):
            _capi.stdio_file(wasi, "stdin", _fd_path(stdin))
        elif stdin != "null":
            raise TypeError(f"stdin: unsupported value {stdin!r}")
        for name, spec in (("stdout", self._stdout), ("stderr", self._stderr)):
            if spec == "inherit":
                _capi.inherit(wasi, name)
            elif spec == "capture":
                fd = _thread.memfds.get(name)
                self.capture_fds[name] = fd
                _capi.stdio_file(wasi, name, _fd_path(fd), may_block=False)
            elif isinstance(spec, Path):
                # Opened here, then by wasmtime through /proc: the Keep keeps a descriptor
                # to watch the file's size by (limits.output).
                # Non-blocking: a FIFO nobody reads fails at once (ENXIO) instead of hanging.
                flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NONBLOCK
                try:
                    fd = os.open(spec, flags, 0o666)
                except OSError as e:
                    why = "a FIFO that no process reads" if e.errno == errno.ENXIO else e.strerror
                    raise OSError(e.errno, f"{name} file {spec}: {why}") from None
                self.file_fds[name] = fd
                _capi.stdio_file(wasi, name, _fd_path(fd))
            elif isinstance(spec, int) and not isinstance(spec, bool):
                _capi.stdio_file(wasi, name, _fd_path(spec))
            elif spec != "null":
                raise TypeError(f"{name}: unsupported value {spec!r}")

    def captured(self, name: str, limit: int) -> bytes | None:
        """What the guest wrote to a captured stream (at most ``limit`` bytes, if set)."""
        fd = self.capture_fds.get(name)
        if fd is None:
            return None
        # Most answers are small: one read, no fstat, unless the first fills its buffer.
        want = min(limit, READ_CHUNK) if limit else READ_CHUNK
        first = _thread.memfds.pread_start(fd, want)
        if len(first) < want or (limit and len(first) >= limit):
            return first
        size = os.fstat(fd).st_size
        if limit:
            size = min(size, limit)
        chunks, offset = [first], len(first)
        while offset < size:
            chunk = os.pread(fd, size - offset, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        os.ftruncate(fd, 0)  # a large output is not kept until the thread's next instance
        return b"".join(chunks)

    def close(self) -> None:
        """Close the output files opened here (capture memfds belong to their thread and are
        reused)."""
        self.capture_fds.clear()
        for fd in self.file_fds.values():
            os.close(fd)
        self.file_fds.clear()
