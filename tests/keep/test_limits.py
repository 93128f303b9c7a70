"""Limits that hold: CPU time, wall time and memory stop a guest with the right message and
exit status; traps are named; a guest's own exit status passes through."""

from __future__ import annotations

import pytest

from motte.errors import ExitStatus
from motte.keep import MemoryLimitError, PreparedWorkload
from motte.manifest import manifest_for_module
from tests.keep import guests


def prepare(path, **overrides):
    return PreparedWorkload.prepare(manifest_for_module(path).with_overrides(**overrides))


def test_infinite_loop_is_stopped_by_the_cpu_limit(guest):
    r = prepare(guest("spin", guests.SPIN), cpu_time=0.2).run()
    assert r.exit_code is None
    assert r.trap.kind == "cpu_time"
    assert r.status == ExitStatus.CPU_TIME == 152
    assert r.trap.message == "CPU time limit reached: 0.2 s (limits.cpu_time, --cpu-time)"
    assert r.cpu_time >= 0.2


def test_infinite_loop_is_stopped_by_the_wall_limit_when_it_comes_first(guest):
    r = prepare(guest("spin", guests.SPIN), cpu_time=60, wall_time=0.2).run()
    assert r.trap.kind == "wall_time"
    assert r.status == ExitStatus.WALL_TIME == 142
    assert "wall-clock time limit reached: 0.2 s (limits.wall_time" in r.trap.message
    assert r.wall_time >= 0.2


def test_cpu_limit_counts_cpu_not_waiting(guest):
    # 0.4 s asleep in the host costs no CPU: a 0.2 s CPU limit must not stop it.
    r = prepare(guest("nap", guests.sleep_then_exit(400)), cpu_time=0.2).run()
    assert (r.exit_code, r.trap) == (0, None)
    assert r.wall_time >= 0.4
    assert r.cpu_time < 0.2


def test_memory_bomb_is_refused_and_its_trap_names_the_full_memory(guest):
    r = prepare(guest("bomb", guests.BOMB_TRAP), memory=16).run()
    assert r.trap.kind == "unreachable"
    assert r.status == ExitStatus.TRAP
    assert r.memory <= 16 * 2**20
    assert r.memory_full
    assert "its memory was nearly full (15.1 of 16 MiB, limits.memory" in r.memory_note()


def test_memory_bomb_that_ignores_refusal_is_stopped_by_cpu_with_the_memory_note(guest):
    r = prepare(guest("bomb", guests.BOMB_SPIN), memory=16, cpu_time=0.2).run()
    assert r.trap.kind == "cpu_time"
    assert r.memory == (1 + 15 * 16) * 65536  # 1 MiB steps until the next would not fit
    assert r.memory_note() is not None


def test_module_needing_more_memory_than_the_limit_fails_to_prepare(guest):
    with pytest.raises(MemoryLimitError) as e:
        prepare(guest("big", guests.BIG_MEMORY), memory=16)
    assert e.value.exit_status == ExitStatus.MEMORY_LIMIT == 137
    assert "needs 18.8 MiB of memory at start, more than limits.memory = 16 MiB" in str(e.value)


def test_memory_limit_is_not_a_note_when_memory_is_not_full(guest):
    r = prepare(guest("unreachable", guests.UNREACHABLE), memory=16).run()
    assert not r.memory_full
    assert r.memory_note() is None


def test_deep_recursion_is_a_stack_overflow(guest):
    r = prepare(guest("recurse", guests.RECURSE)).run()
    assert r.trap.kind == "stack_overflow"
    assert r.status == ExitStatus.TRAP == 134
    assert r.trap.message.startswith("stack overflow")


@pytest.mark.parametrize(
    ("wat", "kind", "text"),
    [
        (guests.UNREACHABLE, "unreachable", "unreachable instruction executed"),
        (guests.DIV_ZERO, "integer_division_by_zero", "integer division by zero"),
        (guests.START_TRAPS, "unreachable", "unreachable instruction executed"),
        (guests.exit_with(126), "invalid_exit_status", "exited with a status outside 0..125"),
    ],
)
def test_traps_are_named(guest, wat, kind, text):
    r = prepare(guest("trap", wat)).run()
    assert r.trap.kind == kind
    assert r.trap.message.startswith(text)
    assert r.status == ExitStatus.TRAP
    assert r.trap.detail  # wasmtime's own text, for MOTTE_DEBUG and --json


@pytest.mark.parametrize("code", [0, 1, 3, 42, 124, 125])
def test_guest_exit_code_passes_through(guest, code):
    r = prepare(guest("exit", guests.exit_with(code))).run()
    assert (r.exit_code, r.trap, r.status) == (code, None, code)


def test_captured_output_is_bounded(guest):
    r = prepare(guest("chatty", guests.CHATTY)).run(stdout="capture", max_output=1 << 20)
    assert r.trap.kind == "output_limit"
    assert len(r.stdout) == 1 << 20


def test_limits_apply_to_each_run_not_to_the_prepared_workload(guest):
    w = prepare(guest("spin", guests.SPIN), cpu_time=0.1)
    first, second = w.run(), w.run()
    assert first.trap.kind == second.trap.kind == "cpu_time"
    assert second.cpu_time < 1.0  # the second run got its own 0.1 s, not the remainder


# -- the same through the command line ---------------------------------------------------------


def test_cli_infinite_loop_prints_one_line_and_exits_152(motte, guest):
    r = motte("run", guest("spin", guests.SPIN), "--cpu-time", "0.2")
    assert r.exit_code == 152
    assert r.stderr == (
        "motte: guest stopped: CPU time limit reached: 0.2 s (limits.cpu_time, --cpu-time)\n"
    )


def test_cli_memory_bomb_names_the_memory_limit(motte, guest):
    r = motte("run", guest("bomb", guests.BOMB_TRAP), "--memory", "16")
    assert r.exit_code == 134
    assert r.stderr.count("\n") == 1
    assert r.stderr.startswith("motte: guest trapped: unreachable instruction executed")
    assert "its memory was nearly full (15.1 of 16 MiB, limits.memory / --memory)" in r.stderr


def test_cli_deep_recursion(motte, guest):
    r = motte("run", guest("recurse", guests.RECURSE))
    assert r.exit_code == 134
    assert r.stderr.startswith("motte: guest trapped: stack overflow")
    assert "Traceback" not in r.stderr


def test_cli_memory_at_start_exits_137(motte, guest):
    r = motte("run", guest("big", guests.BIG_MEMORY), "--memory", "16")
    assert r.exit_code == 137
    assert "more than limits.memory = 16 MiB" in r.stderr


def test_cli_exit_code_passes_through(motte, guest):
    r = motte("run", guest("exit", guests.exit_with(42)))
    assert (r.exit_code, r.stderr) == (42, "")


def test_component_needing_more_memory_than_the_limit_fails_to_prepare():
    from tests.keep.conftest import EXAMPLES

    comp = EXAMPLES / "hello-component" / "hello-component.wasm"
    with pytest.raises(MemoryLimitError) as e:
        prepare(comp, memory=1)
    assert e.value.exit_status == ExitStatus.MEMORY_LIMIT
    # Two memories share the limit, after the tables' worst case (3 tables of 25 elements).
    assert (
        "the component needs 1.1 MiB at start in one of its 2 linear memories: limits.memory "
        "= 1 MiB, less its 3 tables (up to 600 bytes), leaves 511.7 KiB to each memory"
    ) in e.value.message


@pytest.mark.parametrize(
    ("limits", "kind", "status"),
    [
        ({"cpu_time": 0.2}, "cpu_time", ExitStatus.CPU_TIME),
        ({"cpu_time": 60, "wall_time": 0.2}, "wall_time", ExitStatus.WALL_TIME),
    ],
)
def test_a_looping_component_is_stopped_like_a_module(guest, limits, kind, status):
    path = guest("spin-component", guests.SPIN_COMPONENT)
    workload = prepare(path, **limits)
    assert workload.kind == "component"
    r = workload.run()
    assert r.exit_code is None
    assert (r.trap.kind, r.status) == (kind, status)
