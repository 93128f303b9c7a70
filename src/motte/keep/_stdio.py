"""Standard streams for one instance, as files and descriptors (never Python callbacks).

wasmtime's WASI config takes stdio as *paths*, so in-memory streams are ``memfd``s named by
``/proc/self/fd/N``: stdin bytes are written to one before the run, captured output is read
back from one after it. A callback per write costs ~50 µs and leaves a Rust panic at exit
(feasibility §1.6-1.7); a memfd costs one syscall per write, like a file.

What each stream accepts (``StdinSpec`` / ``OutputSpec``):

    "inherit"          motte's own stream
    "null"             nothing in, output discarded
    bytes (stdin)      exactly these bytes, then end of file
    "capture"          (stdout/stderr) kept in memory and returned in the RunResult
    pathlib.Path       a file: stdin reads it, output creates or truncates it
    int                an open file descriptor (a pipe or a file) the caller owns
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import wasmtime

    from motte.manifest import Stdio

StdinSpec = Literal["inherit", "null"] | bytes | Path | int
OutputSpec = Literal["inherit", "null", "capture"] | Path | int

#: Default bound on captured output per stream (in-process API); checked on every tick.
DEFAULT_MAX_OUTPUT = 64 * 1024 * 1024


def _fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def from_manifest(stdio: Stdio) -> StdinSpec | OutputSpec:
    if stdio.kind == "file":
        assert stdio.path is not None
        return stdio.path
    return stdio.kind


class Streams:
    """Applies three stream specs to a WasiConfig; owns the memfds it creates."""

    def __init__(self, stdin: StdinSpec, stdout: OutputSpec, stderr: OutputSpec) -> None:
        self._stdin = stdin
        self._stdout = stdout
        self._stderr = stderr
        self._owned: list[int] = []
        self.capture_fds: dict[str, int] = {}

    def _memfd(self, name: str) -> int:
        fd = os.memfd_create(f"motte-{name}", os.MFD_CLOEXEC)
        self._owned.append(fd)
        return fd

    def configure(self, wasi: wasmtime.WasiConfig) -> None:
        stdin = self._stdin
        if stdin == "inherit":
            wasi.inherit_stdin()
        elif isinstance(stdin, bytes):
            if stdin:
                fd = self._memfd("stdin")
                view = memoryview(stdin)
                while view:
                    view = view[os.write(fd, view) :]
                wasi.stdin_file = _fd_path(fd)
        elif isinstance(stdin, Path):
            wasi.stdin_file = stdin
        elif isinstance(stdin, int) and not isinstance(stdin, bool):
            wasi.stdin_file = _fd_path(stdin)
        elif stdin != "null":
            raise TypeError(f"stdin: unsupported value {stdin!r}")
        for name, spec in (("stdout", self._stdout), ("stderr", self._stderr)):
            if spec == "inherit":
                getattr(wasi, f"inherit_{name}")()
            elif spec == "capture":
                fd = self._memfd(name)
                self.capture_fds[name] = fd
                setattr(wasi, f"{name}_file", _fd_path(fd))
            elif isinstance(spec, Path):
                setattr(wasi, f"{name}_file", str(spec))
            elif isinstance(spec, int) and not isinstance(spec, bool):
                setattr(wasi, f"{name}_file", _fd_path(spec))
            elif spec != "null":
                raise TypeError(f"{name}: unsupported value {spec!r}")

    def captured(self, name: str, limit: int) -> bytes | None:
        """What the guest wrote to a captured stream (at most ``limit`` bytes)."""
        fd = self.capture_fds.get(name)
        if fd is None:
            return None
        size = min(os.fstat(fd).st_size, limit) if limit else os.fstat(fd).st_size
        chunks, offset = [], 0
        while offset < size:
            chunk = os.pread(fd, size - offset, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        for fd in self._owned:
            os.close(fd)
        self._owned.clear()
