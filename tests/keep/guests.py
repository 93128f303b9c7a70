"""Small WASI guests written in WebAssembly text, one behaviour each, for the Keep tests.

They are compiled with wasmtime.wat2wasm into a test's temporary directory, so every test
exercises a real module under the real runtime.
"""

from __future__ import annotations

from pathlib import Path

_WASI = "wasi_snapshot_preview1"

SPIN = """(module (memory (export "memory") 1)
  (func (export "_start") (loop $l (br $l))))"""

#: The same loop as a WASI 0.2 command component (wasi:cli/run, no imports): the Keep's
#: limits must hold for components as for modules.
SPIN_COMPONENT = """(component
  (core module $m
    (func (export "run") (result i32) (loop $l (br $l)) (i32.const 0)))
  (core instance $i (instantiate $m))
  (func $run (result (result)) (canon lift (core func $i "run")))
  (instance $cli (export "run" (func $run)))
  (export "wasi:cli/run@0.2.0" (instance $cli)))"""


def exit_with(code: int) -> str:
    return f"""(module
  (import "{_WASI}" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const {code}))))"""


#: Grows memory 1 MiB at a time until refused, then aborts (what a C allocator failure does).
BOMB_TRAP = """(module (memory (export "memory") 1)
  (func (export "_start")
    (loop $grow
      (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    unreachable))"""

#: Grows until refused, then spins: only the CPU limit ends it.
BOMB_SPIN = """(module (memory (export "memory") 1)
  (func (export "_start")
    (loop $grow
      (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    (loop $l (br $l))))"""

RECURSE = """(module (memory (export "memory") 1)
  (func $down (param i64) (result i64)
    (i64.add (call $down (i64.add (local.get 0) (i64.const 1))) (i64.const 1)))
  (func (export "_start") (drop (call $down (i64.const 0)))))"""

UNREACHABLE = """(module (memory (export "memory") 1)
  (func (export "_start") unreachable))"""

DIV_ZERO = """(module (memory (export "memory") 1)
  (func (export "_start") (drop (i32.div_s (i32.const 1) (i32.const 0)))))"""

#: 300 pages = 18.75 MiB of memory before the first instruction.
BIG_MEMORY = """(module (memory (export "memory") 300)
  (func (export "_start")))"""

NO_START = """(module (memory (export "memory") 1)
  (func (export "run")))"""

UNKNOWN_IMPORT = """(module
  (import "env" "launch_missiles" (func $f))
  (memory (export "memory") 1)
  (func (export "_start") (call $f)))"""

START_TRAPS = """(module (memory (export "memory") 1)
  (func $init unreachable)
  (start $init)
  (func (export "_start")))"""


def sleep_then_exit(milliseconds: int) -> str:
    """Sleeps in the host (poll_oneoff on the monotonic clock), then exits 0."""
    ns = milliseconds * 1_000_000
    return f"""(module
  (import "{_WASI}" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    ;; subscription at 0: userdata u64 @0, tag u8 @8 (0 = clock), clock id u32 @16
    ;; (1 = monotonic), timeout u64 @24, precision u64 @32, flags u16 @40 (0 = relative)
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const {ns}))
    (drop (call $poll (i32.const 0) (i32.const 128) (i32.const 1) (i32.const 256)))))"""


#: The guest directory a signalling guest's manifest grants, writable (its first preopen,
#: so fd 3): the guest creates ``started`` there, and a waiting guest waits for ``release``.
SIGNALS = "/signals"

#: A manifest's grant of ``signals`` beside it as :data:`SIGNALS` (the directory must exist).
SIGNALS_DIR = f'[[dir]]\nhost = "signals"\nguest = "{SIGNALS}"\nwritable = true\n'

# WASI preview1 path_open(dirfd, dirflags, path, path_len, oflags, rights_base,
# rights_inheriting, fdflags, &fd) -> errno; oflags 1 = O_CREAT; rights 0x42 = fd_read|fd_write.
_PATH_OPEN = (
    f'(import "{_WASI}" "path_open" '
    "(func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))"
)


#: Creates ``started`` in fd 3 (the path is at 512, 7 bytes).
_SIGNAL_STARTED = """
    (drop (call $open (i32.const 3) (i32.const 0) (i32.const 512) (i32.const 7)
      (i32.const 1) (i64.const 0x42) (i64.const 0x42) (i32.const 0) (i32.const 600)))"""


#: poll_oneoff on a relative 10 ms monotonic clock (subscription at 128, event at 256).
_SLEEP_10MS = """
        (i32.store (i32.const 144) (i32.const 1))
        (i64.store (i32.const 152) (i64.const 10000000))
        (drop (call $poll (i32.const 128) (i32.const 256) (i32.const 1) (i32.const 320)))"""


def started_then(rest: str, imports: str = "") -> str:
    """A guest that first creates ``started`` in its writable preopen (fd 3), the sign a
    test waits for that the guest runs, then runs the instructions ``rest``."""
    return f"""(module
  {_PATH_OPEN}
  {imports}
  (memory (export "memory") 2)
  (data (i32.const 512) "started")
  (func (export "_start")
    {_SIGNAL_STARTED}
    {rest}))"""


#: Signals ``started``, then spins until a limit or a stop ends it.
STARTED_THEN_SPIN = started_then("(loop $l (br $l))")

#: Signals ``started``, then sleeps 20 s in the host (poll_oneoff, out of the epoch's reach).
STARTED_THEN_SLEEP = started_then(
    """(i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 20000000000))
    (drop (call $poll (i32.const 0) (i32.const 128) (i32.const 1) (i32.const 256)))""",
    f'(import "{_WASI}" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))',
)


def started_then_waits_for_release(output: bytes) -> str:
    """Signals ``started``, waits (10 ms sleeps in the host) until ``release`` exists in the
    same directory, then writes ``output`` to stdout: a request a test holds in flight for
    exactly as long as it needs, however slow the machine."""
    data = "".join(f"\\{b:02x}" for b in output)
    return f"""(module
  {_PATH_OPEN}
  (import "{_WASI}" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "{_WASI}" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 512) "started")
  (data (i32.const 544) "release")
  (data (i32.const 1024) "{data}")
  (func (export "_start")
    {_SIGNAL_STARTED}
    (block $released
      (loop $wait
        (br_if $released (i32.eqz (call $open (i32.const 3) (i32.const 0) (i32.const 544)
          (i32.const 7) (i32.const 0) (i64.const 0x2) (i64.const 0x2) (i32.const 0)
          (i32.const 600))))
        {_SLEEP_10MS}
        (br $wait)))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const {len(output)}))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""


def wait_for_file(path: Path, what: str, timeout: float = 60.0) -> None:
    """Until ``path`` exists (a guest's ``started``): a generous deadline, polled."""
    import time

    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{what}: no {path.name} after {timeout:g} s"
        time.sleep(0.01)


#: Copies stdin to stdout (up to 64 KiB), then exits with the number of bytes mod 100.
ECHO = f"""(module
  (import "{_WASI}" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "{_WASI}" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "{_WASI}" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 2)
  (func (export "_start") (local $total i32)
    (loop $more
      (i32.store (i32.const 0) (i32.add (i32.const 1024) (local.get $total)))
      (i32.store (i32.const 4) (i32.sub (i32.const 65536) (local.get $total)))
      (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
      (local.set $total (i32.add (local.get $total) (i32.load (i32.const 8))))
      (br_if $more (i32.and (i32.ne (i32.load (i32.const 8)) (i32.const 0))
                            (i32.lt_u (local.get $total) (i32.const 65536)))))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (local.get $total))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
    (call $exit (i32.rem_u (local.get $total) (i32.const 100)))))"""

#: Writes 64 KiB to stdout forever.
CHATTY = f"""(module
  (import "{_WASI}" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 65536))
    (loop $l
      (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (br $l))))"""


def compile_to(path: Path, wat: str) -> Path:
    import wasmtime

    path.write_bytes(wasmtime.wat2wasm(wat))
    return path
