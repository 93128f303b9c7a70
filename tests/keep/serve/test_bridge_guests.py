"""The bridge on real instances: what a guest that answers, fails, traps or runs into a
limit becomes (the same code the HTTP listener runs, without sockets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from motte.keep import PreparedWorkload
from motte.keep.serve._cgi import response_from_run
from motte.keep.serve._errors import BadGatewayError
from motte.manifest import load_manifest
from tests.keep.serve import cgi_guests as g


def run(tmp_path: Path, wat: str, limits: str = "memory = 16\ncpu_time = 2\nwall_time = 5", **kw):  # type: ignore[no-untyped-def]
    workload = PreparedWorkload.prepare(load_manifest(g.manifest(tmp_path, wat, limits=limits)))
    return workload.run(stdout="capture", stderr="capture", **kw)


def test_a_valid_answer(tmp_path: Path) -> None:
    result = run(tmp_path, g.writes(b"Status: 201 Made\nContent-Type: text/plain\n\nnew\n"))
    response, note = response_from_run(result)
    assert (response.status, response.reason, response.body) == (201, b"Made", b"new\n")
    assert note is None


def test_a_failing_exit_with_an_answer_is_sent_with_a_note(tmp_path: Path) -> None:
    result = run(
        tmp_path, g.writes(b"Status: 500\nContent-Type: text/plain\n\nsorry\n", exit_code=3)
    )
    response, note = response_from_run(result)
    assert response.status == 500
    assert note == "the guest exited with 3"


def test_a_failing_exit_without_an_answer_names_the_exit(tmp_path: Path) -> None:
    result = run(tmp_path, g.writes(b"oops", exit_code=7))
    with pytest.raises(BadGatewayError, match="exited with 7; no blank line"):
        response_from_run(result)


def test_a_trap_is_a_bad_gateway(tmp_path: Path) -> None:
    result = run(tmp_path, g.UNREACHABLE)
    with pytest.raises(BadGatewayError, match="stopped: unreachable instruction"):
        response_from_run(result)


def test_the_cpu_limit_is_a_bad_gateway(tmp_path: Path) -> None:
    result = run(tmp_path, g.SPIN, limits="memory = 16\ncpu_time = 0.1\nwall_time = 5")
    with pytest.raises(BadGatewayError, match=r"CPU time limit reached: 0\.1 s"):
        response_from_run(result)


def test_the_wall_time_limit_is_a_bad_gateway(tmp_path: Path) -> None:
    result = run(tmp_path, g.SPIN, limits="memory = 16\ncpu_time = 5\nwall_time = 0.1")
    with pytest.raises(BadGatewayError, match=r"wall-clock time limit reached: 0\.1 s"):
        response_from_run(result)


def test_output_past_its_bound_is_a_bad_gateway(tmp_path: Path) -> None:
    result = run(tmp_path, g.CHATTY, max_output=256 * 1024)
    with pytest.raises(BadGatewayError, match="captured output exceeded its bound"):
        response_from_run(result)


def test_the_request_body_is_stdin(tmp_path: Path) -> None:
    result = run(tmp_path, g.ECHO_AT_EOF, stdin=b"Content-Type: a/b\n\nbody")
    response, _ = response_from_run(result)
    assert response.body == b"body"


#: Two memories and a table past the pooling allocator's own default bounds (1 memory, a
#: table of 20,000 elements): a served workload runs what a single run runs.
BIG_TABLE_TWO_MEMORIES = """(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (memory $second 3)
  (table 100000 funcref)
  (data (i32.const 1024) "Content-Type: a/b\\0a\\0aok")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 21))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""


def test_a_pooled_workload_runs_what_a_plain_one_runs(tmp_path: Path) -> None:
    workload = PreparedWorkload.prepare(load_manifest(g.manifest(tmp_path, BIG_TABLE_TWO_MEMORIES)))
    pooled = workload.for_many_instances()
    assert pooled is not workload and pooled.digest == workload.digest
    for w in (workload, pooled):
        response, _ = response_from_run(w.run(stdout="capture", stderr="capture"))
        assert response.body == b"ok"
    assert pooled.for_many_instances() is pooled


#: Increments a byte of its linear memory (start 0) at ``address`` and answers it (a digit).
def memory_counter(address: int) -> str:
    return f"""(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 64)
  (data (i32.const 1024) "Content-Type: text/plain\\0a\\0a")
  (func (export "_start")
    (i32.store8 (i32.const {address}) (i32.add (i32.load8_u (i32.const {address})) (i32.const 1)))
    (i32.store8 (i32.const 1050) (i32.add (i32.const 48) (i32.load8_u (i32.const {address}))))
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 27))
    (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"""


@pytest.mark.parametrize("address", [2048, 200 * 1024, 3 * 1024 * 1024])
def test_a_pooled_slot_starts_from_fresh_memory(tmp_path: Path, address: int) -> None:
    """Inside and beyond the part of memory a pool slot keeps mapped between instances:
    each instance sees the module's own initial memory, never the previous one's."""
    manifest = g.manifest(tmp_path, memory_counter(address), limits="memory = 8")
    pooled = PreparedWorkload.prepare(load_manifest(manifest)).for_many_instances()
    assert [pooled.run(stdout="capture").stdout for _ in range(4)] == [
        b"Content-Type: text/plain\n\n1"
    ] * 4


def test_pooled_instances_are_fresh_and_limited(tmp_path: Path) -> None:
    pooled = PreparedWorkload.prepare(load_manifest(g.manifest(tmp_path, g.COUNTER)))
    pooled = pooled.for_many_instances()
    assert [pooled.run(stdout="capture").stdout for _ in range(3)] == [
        b"Content-Type: text/plain\n\n1"
    ] * 3  # a reused slot starts from the module's own globals
    spin = PreparedWorkload.prepare(
        load_manifest(g.manifest(tmp_path, g.SPIN, limits="memory = 16\ncpu_time = 0.1"))
    ).for_many_instances()
    assert spin.run(stdout="capture").trap.kind == "cpu_time"  # type: ignore[union-attr]
