"""``motte run`` as its own process: exit statuses reach the shell, a guest blocked in a host
call still ends at its wall-time limit, Ctrl-C stops a guest, and no traceback ever shows."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tests.keep import guests
from tests.keep.conftest import EXAMPLES

pytestmark = pytest.mark.integration


def motte(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "motte", "run", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        **kw,
    )


def test_exit_status_reaches_the_shell(tmp_path):
    mod = guests.compile_to(tmp_path / "exit.wasm", guests.exit_with(42))
    r = motte(mod)
    assert (r.returncode, r.stdout, r.stderr) == (42, "", "")


def test_stdin_is_inherited_by_default(tmp_path):
    mod = guests.compile_to(tmp_path / "echo.wasm", guests.ECHO)
    r = motte(mod, input="piped into the Keep\n")
    assert (r.returncode, r.stdout) == (len("piped into the Keep\n") % 100, "piped into the Keep\n")


def test_hello_through_the_console_script():
    r = motte(EXAMPLES / "hello", "--env", "X=1", "--", "Keep")
    assert r.returncode == 0
    assert r.stdout == "Hello, Keep!\nenvironment: 2 variables\n  GREETING=Hello\n  X=1\n"


@pytest.mark.parametrize(
    ("wat", "flags", "status", "line"),
    [
        (guests.SPIN, ["--cpu-time", "0.2"], 152, "motte: guest stopped: CPU time limit"),
        (guests.SPIN, ["--wall-time", "0.2"], 142, "motte: guest stopped: wall-clock time"),
        (guests.RECURSE, [], 134, "motte: guest trapped: stack overflow"),
        (guests.BOMB_TRAP, ["--memory", "16"], 134, "motte: guest trapped: unreachable"),
        (guests.BIG_MEMORY, ["--memory", "16"], 137, "motte: error: "),
    ],
)
def test_limits_and_traps_as_a_process(tmp_path, wat, flags, status, line):
    mod = guests.compile_to(tmp_path / "g.wasm", wat)
    r = motte(*flags, mod)
    assert r.returncode == status
    assert r.stderr.startswith(line)
    assert "Traceback" not in r.stderr and "panicked" not in r.stderr


@pytest.mark.parametrize(
    "wat", [guests.ECHO, guests.sleep_then_exit(20_000)], ids=["read", "sleep"]
)
def test_guest_blocked_in_a_host_call_still_ends_at_its_wall_time(tmp_path, wat):
    mod = guests.compile_to(tmp_path / "g.wasm", wat)
    proc = subprocess.Popen(
        [sys.executable, "-m", "motte", "run", "--wall-time", "0.5", str(mod)],
        stdin=subprocess.PIPE,  # never written, never closed: the guest waits in fd_read
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        proc.wait(timeout=30)  # not communicate(): that would close stdin
        err = proc.stderr.read()
    finally:
        proc.kill()
        proc.stdin.close()
    assert proc.returncode == 142
    assert err == (
        "motte: guest stopped: wall-clock time limit reached: 0.5 s "
        "(limits.wall_time, --wall-time)\n"
    )


@pytest.mark.parametrize(
    "wat", [guests.STARTED_THEN_SPIN, guests.STARTED_THEN_SLEEP], ids=["spin", "sleep"]
)
def test_ctrl_c_stops_the_guest(tmp_path, wat):
    mod = guests.compile_to(tmp_path / "g.wasm", wat)
    signals = tmp_path / "signals"
    signals.mkdir()
    grant = f"{signals}:{guests.SIGNALS}:writable"
    proc = subprocess.Popen(
        [sys.executable, "-m", "motte", "run", "--dir", grant, str(mod)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The guest runs (so motte's Ctrl-C handler, installed before it starts, is in place).
        guests.wait_for_file(signals / "started", "the guest")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert (proc.returncode, out) == (130, "")
    assert err == "motte: guest stopped: interrupted\n"


def test_json_from_a_process():
    r = motte("--json", EXAMPLES / "sha256", "--", "1")
    assert r.returncode == 0
    import json

    doc = json.loads(r.stdout)
    assert doc["stdout"].endswith("  1 MiB\n")
    assert doc["cache"] in ("hit", "compiled")
