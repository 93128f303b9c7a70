"""Hostile WASI guests in WebAssembly text, for tests/keep/test_hostile.py: each tries one
way out of the Keep or one way to take the host down."""

from __future__ import annotations

_WASI = "wasi_snapshot_preview1"
_IMPORTS = f"""
 (import "{_WASI}" "path_open"
   (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
 (import "{_WASI}" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
 (import "{_WASI}" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
 (import "{_WASI}" "environ_sizes_get" (func $env_sizes (param i32 i32) (result i32)))
 (import "{_WASI}" "environ_get" (func $env_get (param i32 i32) (result i32)))
 (import "{_WASI}" "proc_exit" (func $exit (param i32)))"""

#: WASI errno values a refused escape ends with (the guest exits with the errno).
ERRNO = {2: "acces", 8: "badf", 44: "noent", 54: "notdir", 63: "perm", 76: "notcapable"}

SPIN = """(module (memory (export "memory") 1)
  (func (export "_start") (loop $l (br $l))))"""

#: A loop made of tail calls: no stack grows, no loop instruction; only the epoch deadline
#: at each function entry can stop it.
TAIL_CALL_LOOP = """(module (memory (export "memory") 1)
  (func $again (param i64) (return_call $again (i64.add (local.get 0) (i64.const 1))))
  (func (export "_start") (call $again (i64.const 0))))"""

RECURSE = """(module (memory (export "memory") 1)
  (func $down (param i64) (result i64)
    (i64.add (call $down (i64.add (local.get 0) (i64.const 1))) (i64.const 1)))
  (func (export "_start") (drop (call $down (i64.const 0)))))"""

#: Grows its memory a page at a time and writes every byte of each page (so the host's
#: memory really holds it), until refused; then aborts.
MEMORY_BOMB = """(module (memory (export "memory") 1)
  (func (export "_start") (local $p i32)
    (loop $grow
      (if (i32.ne (memory.grow (i32.const 1)) (i32.const -1))
        (then
          (local.set $p (i32.add (local.get $p) (i32.const 65536)))
          (memory.fill (local.get $p) (i32.const 1) (i32.const 65536))
          (br $grow))))
    unreachable))"""


def many_memories(count: int) -> str:
    """``count`` memories (only the first exported), each grown and filled until refused:
    with a limit per memory only, ``count`` times the limit."""
    decls = "".join(f" (memory $m{i} 1)" for i in range(count))
    fills = "".join(
        f"""
    (local.set $p (i32.const 0))
    (loop $g{i}
      (if (i32.ne (memory.grow $m{i} (i32.const 1)) (i32.const -1))
        (then
          (local.set $p (i32.add (local.get $p) (i32.const 65536)))
          (memory.fill $m{i} (local.get $p) (i32.const 1) (i32.const 65536))
          (br $g{i}))))"""
        for i in range(count)
    )
    return f"""(module{decls} (export "memory" (memory $m0))
  (func (export "_start") (local $p i32){fills}
    unreachable))"""


def many_tables(count: int, grow: int) -> str:
    """``count`` growable tables, each grown by ``grow`` elements (filled with a function
    reference so the host's memory holds them), then abort."""
    decls = "".join(f" (table $t{i} 1 funcref)" for i in range(count))
    grows = "".join(
        f"""
    (if (i32.ne (table.grow $t{i} (ref.func $f) (i32.const {grow})) (i32.const -1))
      (then (table.fill $t{i} (i32.const 0) (ref.func $f) (i32.const {grow}))))"""
        for i in range(count)
    )
    return f"""(module{decls} (memory (export "memory") 1)
  (func $f) (elem declare func $f)
  (func (export "_start"){grows}
    unreachable))"""


#: 60,000 pages (3.7 GiB) before the first instruction, in a memory it does not export.
HUGE_INITIAL_MEMORY = """(module (memory 60000) (memory (export "memory") 1)
  (func (export "_start")))"""

#: Writes 64 KiB to standard output forever.
STDOUT_FLOOD = f"""(module{_IMPORTS}
  (memory (export "memory") 2)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 65536)) (i32.store (i32.const 4) (i32.const 65536))
    (loop $l (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
      (br $l))))"""


def _data(text: str) -> str:
    return "".join(f"\\{b:02x}" for b in text.encode())


def cat(path: str) -> str:
    """Opens ``path`` relative to the first preopen (fd 3), following symbolic links, and
    copies up to 4 KiB of it to stdout; exits with the WASI errno when refused."""
    return f"""(module{_IMPORTS}
  (memory (export "memory") 1)
  (data (i32.const 1024) "{_data(path)}")
  (func (export "_start") (local $e i32)
    (local.set $e (call $open (i32.const 3) (i32.const 1) (i32.const 1024)
      (i32.const {len(path.encode())}) (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0)
      (i32.const 16)))
    (if (local.get $e) (then (call $exit (local.get $e))))
    (i32.store (i32.const 0) (i32.const 4096)) (i32.store (i32.const 4) (i32.const 4096))
    (local.set $e (call $read (i32.load (i32.const 16)) (i32.const 0) (i32.const 1)
      (i32.const 20)))
    (if (local.get $e) (then (call $exit (local.get $e))))
    (i32.store (i32.const 4) (i32.load (i32.const 20)))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20)))
    (call $exit (i32.const 0))))"""


def write(path: str, text: str = "graffiti") -> str:
    """Creates (or truncates) ``path`` under the first preopen and writes ``text``; exits
    with the WASI errno when refused."""
    return f"""(module{_IMPORTS}
  (memory (export "memory") 1)
  (data (i32.const 1024) "{_data(path)}")
  (data (i32.const 2048) "{_data(text)}")
  (func (export "_start") (local $e i32)
    (local.set $e (call $open (i32.const 3) (i32.const 1) (i32.const 1024)
      (i32.const {len(path.encode())}) (i32.const 9) (i64.const 64) (i64.const 0)
      (i32.const 0) (i32.const 16)))
    (if (local.get $e) (then (call $exit (local.get $e))))
    (i32.store (i32.const 0) (i32.const 2048))
    (i32.store (i32.const 4) (i32.const {len(text.encode())}))
    (local.set $e (call $write (i32.load (i32.const 16)) (i32.const 0) (i32.const 1)
      (i32.const 20)))
    (call $exit (local.get $e))))"""


#: Prints every environment variable it can see (NUL-separated) and exits with their count.
ENV_PROBE = f"""(module{_IMPORTS}
  (memory (export "memory") 2)
  (func (export "_start") (local $e i32)
    (local.set $e (call $env_sizes (i32.const 0) (i32.const 4)))
    (if (local.get $e) (then (call $exit (local.get $e))))
    (local.set $e (call $env_get (i32.const 8192) (i32.const 65536)))
    (if (local.get $e) (then (call $exit (local.get $e))))
    (i32.store (i32.const 16) (i32.const 65536)) (i32.store (i32.const 20) (i32.load (i32.const 4)))
    (drop (call $write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))
    (call $exit (i32.load (i32.const 0)))))"""
