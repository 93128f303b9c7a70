"""Small guests for the listener tests, in WebAssembly text: CGI answers written verbatim,
a counter that shows whether an instance is fresh, sleepers, spinners and stream echoers.

They are compiled into a test's temporary directory (tests.keep.guests.compile_to) and
served through real sockets by the real runtime.
"""

from __future__ import annotations

from pathlib import Path

from tests.keep import guests

_WASI = "wasi_snapshot_preview1"


def _data(payload: bytes) -> str:
    """A WAT string literal for arbitrary bytes."""
    return "".join(f"\\{b:02x}" for b in payload)


def writes(output: bytes, *, exit_code: int = 0) -> str:
    """Writes ``output`` to stdout verbatim, then exits with ``exit_code``."""
    return f"""(module
  (import "{_WASI}" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "{_WASI}" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 2)
  (data (i32.const 1024) "{_data(output)}")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const {len(output)}))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $exit (i32.const {exit_code}))))"""


#: Increments a global that starts at 0 and prints it: "1" on every fresh instance.
COUNTER = f"""(module
  (import "{_WASI}" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $count (mut i32) (i32.const 0))
  (data (i32.const 1024) "Content-Type: text/plain\\0a\\0a")
  (func (export "_start")
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (i32.store8 (i32.const 1050) (i32.add (i32.const 48) (global.get $count)))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 27))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""


def sleeps_then_writes(milliseconds: int, output: bytes) -> str:
    """Sleeps in the host (poll_oneoff), then writes ``output``."""
    ns = milliseconds * 1_000_000
    return f"""(module
  (import "{_WASI}" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "{_WASI}" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 1024) "{_data(output)}")
  (func (export "_start")
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const {ns}))
    (drop (call $poll (i32.const 0) (i32.const 128) (i32.const 1) (i32.const 256)))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const {len(output)}))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""


#: Copies each chunk of stdin to stdout as soon as it is read, until end of file.
STREAM_ECHO = f"""(module
  (import "{_WASI}" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "{_WASI}" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "_start")
    (loop $more
      (i32.store (i32.const 0) (i32.const 1024))
      (i32.store (i32.const 4) (i32.const 4096))
      (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
      (if (i32.ne (i32.load (i32.const 8)) (i32.const 0)) (then
        (i32.store (i32.const 4) (i32.load (i32.const 8)))
        (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
        (br $more))))))"""

#: Writes a line to stderr and a valid answer to stdout.
STDERR_AND_ANSWER = f"""(module
  (import "{_WASI}" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 1024) "guest says hi\\0a")
  (data (i32.const 2048) "Content-Type: text/plain\\0a\\0aok\\0a")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 14))
    (drop (call $write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.store (i32.const 0) (i32.const 2048))
    (i32.store (i32.const 4) (i32.const 29))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""

SPIN = guests.SPIN
UNREACHABLE = guests.UNREACHABLE
#: Reads stdin to end of file, then writes it back (exit status: bytes mod 100).
ECHO_AT_EOF = guests.ECHO
CHATTY = guests.CHATTY


def manifest(
    directory: Path,
    wat: str,
    *,
    listen: str = 'name = "web"\nport = 8443\nprotocol = "http"',
    limits: str = "memory = 16\ncpu_time = 2\nwall_time = 5",
    extra: str = "",
) -> Path:
    """A Motte.toml in ``directory`` serving ``wat`` (compiled beside it)."""
    guests.compile_to(directory / "guest.wasm", wat)
    path = directory / "Motte.toml"
    path.write_text(
        f'workload = "guest.wasm"\n{extra}\n[limits]\n{limits}\n\n[[listen]]\n{listen}\n'
    )
    return path
