"""Hostile guests against a real ``motte run`` process: each attack ends with a non-zero exit
and a named reason, no traceback, the process's peak RSS under its memory limit plus the
documented overhead (docs/running.md, "Limits and exit statuses"), and nothing outside the
grant read or written.

Peak RSS is the process's own high-water mark (``ru_maxrss`` from ``os.wait4``), measured by
the kernel: no timing is involved. It is read by a small launcher that forks and execs
``motte run`` and waits for it: a process started straight from pytest (by vfork) would be
charged pytest's own peak as well, since Linux keeps the high-water mark of the memory a
process had before exec. The guests are WebAssembly text (tests/keep/hostile.py), compiled
with wasmtime.wat2wasm.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.keep import guests, hostile

#: docs/running.md: with limits.memory = L MiB, a `motte run` process stays under L + this
#: (measured: 29 MiB for a trivial module, 45 MiB for a component; the rest is headroom).
RSS_OVERHEAD_MIB = 64
SECRET = "the host's secret: 4f1c"


class Outcome:
    def __init__(self, code: int, stdout: str, stderr: str, rss_mib: float) -> None:
        self.code = code
        self.stdout = stdout
        self.stderr = stderr
        self.rss_mib = rss_mib

    def __repr__(self) -> str:
        return f"Outcome({self.code}, rss={self.rss_mib:.1f} MiB, stderr={self.stderr!r})"

    def stopped(self, status: int, reason: str, *, memory: int) -> None:
        """Exited with ``status``, said ``reason`` on one line, no traceback, and stayed
        under ``memory`` MiB plus the overhead."""
        assert self.code == status, self
        assert reason in self.stderr, self
        assert "Traceback" not in self.stderr
        assert self.rss_mib < memory + RSS_OVERHEAD_MIB, self


#: Forks (from a small process), execs the command, waits: "STATUS MAXRSS_KIB" to argv[1].
LAUNCHER = """import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss}")
"""


def motte_run(tmp_path: Path, *args: object, env: dict[str, str] | None = None) -> Outcome:
    """``python -m motte run ARGS`` as its own process; its exit status, output and peak RSS."""
    out, err, measured = tmp_path / "out.log", tmp_path / "err.log", tmp_path / "rusage.log"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("MOTTE_")}
    child_env.update(MOTTE_HOME=str(tmp_path / "home"), **(env or {}))
    with out.open("wb") as o, err.open("wb") as e:
        subprocess.run(
            [sys.executable, "-c", LAUNCHER, measured, "-m", "motte", "run", *map(str, args)],
            stdout=o,
            stderr=e,
            stdin=subprocess.DEVNULL,
            env=child_env,
            cwd=tmp_path,
            check=True,
            timeout=300,
        )
    status, maxrss_kib = measured.read_text().split()
    return Outcome(
        int(status),
        out.read_text(errors="replace"),
        err.read_text(errors="replace"),
        int(maxrss_kib) / 1024,
    )


@pytest.fixture
def wasm(tmp_path):
    def make(name: str, wat: str) -> Path:
        return guests.compile_to(tmp_path / f"{name}.wasm", wat)

    return make


# -- time ----------------------------------------------------------------------------------


@pytest.mark.parametrize("wat", [hostile.SPIN, hostile.TAIL_CALL_LOOP], ids=["loop", "tail-call"])
def test_an_endless_guest_is_stopped_by_its_cpu_time(tmp_path, wasm, wat):
    r = motte_run(tmp_path, wasm("spin", wat), "--memory", 16, "--cpu-time", 0.3)
    r.stopped(152, "motte: guest stopped: CPU time limit reached: 0.3 s", memory=16)


def test_deep_recursion_is_a_stack_overflow(tmp_path, wasm):
    r = motte_run(tmp_path, wasm("recurse", hostile.RECURSE), "--memory", 16)
    r.stopped(134, "motte: guest trapped: stack overflow", memory=16)


# -- memory, counted for the whole guest ---------------------------------------------------


def test_a_memory_bomb_fills_its_limit_and_no_more(tmp_path, wasm):
    r = motte_run(tmp_path, wasm("bomb", hostile.MEMORY_BOMB), "--memory", 64)
    r.stopped(134, "its memory was nearly full (64.0 of 64 MiB", memory=64)
    assert r.rss_mib > 64  # it really held its 64 MiB: the measurement sees a bomb


def test_many_memories_share_one_limit(tmp_path, wasm):
    # Four memories, each filled until refused: with a limit per memory this held 4 x 64 MiB.
    r = motte_run(tmp_path, wasm("memories", hostile.many_memories(4)), "--memory", 64)
    r.stopped(134, "unreachable instruction executed", memory=64)
    assert r.rss_mib > 64


def test_more_memories_than_allowed_are_refused_naming_the_limit(tmp_path, wasm):
    r = motte_run(tmp_path, wasm("memories", hostile.many_memories(5)), "--memory", 64)
    r.stopped(137, "declares 5 linear memories, more than limits.memories = 4", memory=64)


def test_tables_cannot_grow_past_their_limit(tmp_path, wasm):
    # Eight tables of 900,000 elements would be 57 MiB; limits.table_elements (100,000) and
    # the memory budget refuse the growth, and the guest aborts.
    r = motte_run(tmp_path, wasm("tables", hostile.many_tables(8, 900_000)), "--memory", 16)
    r.stopped(134, "unreachable instruction executed", memory=16)


def test_more_tables_than_allowed_are_refused_naming_the_limit(tmp_path, wasm):
    r = motte_run(tmp_path, wasm("tables", hostile.many_tables(9, 1)), "--memory", 16)
    r.stopped(137, "declares 9 tables, more than limits.tables = 8", memory=16)


def test_a_huge_initial_memory_is_refused_before_it_is_mapped(tmp_path, wasm):
    r = motte_run(tmp_path, wasm("huge", hostile.HUGE_INITIAL_MEMORY), "--memory", 16)
    r.stopped(137, "needs 3750.0 MiB at start in one of its 2 linear memories", memory=16)
    assert "limits.memory = 16 MiB" in r.stderr


# -- output ----------------------------------------------------------------------------------


def _manifest(directory: Path, wasm_path: Path, body: str) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / wasm_path.name).write_bytes(wasm_path.read_bytes())
    (directory / "Motte.toml").write_text(f'workload = "{wasm_path.name}"\n{body}')
    return directory


def test_a_stdout_flood_into_a_file_stops_at_limits_output(tmp_path, wasm):
    app = _manifest(
        tmp_path / "app",
        wasm("flood", hostile.STDOUT_FLOOD),
        'stdout = { file = "out.txt" }\n[limits]\nmemory = 16\noutput = 1\n',
    )
    r = motte_run(tmp_path, app)
    r.stopped(134, "more than 1 MiB written to the stdout file (limits.output)", memory=16)
    assert (app / "out.txt").stat().st_size > 2**20


def test_a_captured_stdout_flood_is_bounded(tmp_path, wasm):
    app = _manifest(
        tmp_path / "app", wasm("flood", hostile.STDOUT_FLOOD), "[limits]\nmemory = 16\noutput = 1\n"
    )
    r = motte_run(tmp_path, "--json", app)
    assert r.code == 134 and "Traceback" not in r.stderr
    doc = json.loads(r.stdout)
    assert doc["trap"]["kind"] == "output_limit"
    assert "more than 1 MiB on stdout" in doc["trap"]["message"]
    assert len(doc["stdout"]) == 2**20
    assert r.rss_mib < 16 + RSS_OVERHEAD_MIB


# -- files: nothing outside the grant read or written ----------------------------------------


@pytest.fixture
def host(tmp_path):
    """A preopen (``data``) beside a host secret, with links out of it."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.txt").write_text("inside")
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    os.symlink(secret, tmp_path / "data" / "link")
    os.symlink(tmp_path, tmp_path / "data" / "up")
    return tmp_path


def _untouched(host: Path) -> None:
    assert (host / "secret.txt").read_text() == SECRET
    assert sorted(p.name for p in host.iterdir() if not p.name.endswith((".log", ".wasm"))) == [
        "data",
        "home",
        "secret.txt",
    ]
    assert sorted(p.name for p in (host / "data").iterdir()) == ["in.txt", "link", "up"]


def test_the_grant_is_readable(host, wasm):
    r = motte_run(host, wasm("cat", hostile.cat("in.txt")), "--dir", "data:/data", "--memory", 16)
    assert (r.code, r.stdout) == (0, "inside")


@pytest.mark.parametrize(
    "path",
    ["../secret.txt", "/etc/passwd", str(Path("/") / "tmp"), "link", "up/secret.txt", ".."],
    ids=["dotdot", "absolute", "absolute-dir", "symlink-file", "symlink-dir", "parent"],
)
def test_escapes_are_refused_by_the_sandbox(host, wasm, path):
    r = motte_run(host, wasm("cat", hostile.cat(path)), "--dir", "data:/data", "--memory", 16)
    # The guest's own exit: the WASI errno it was refused with (EPERM), named here.
    assert hostile.ERRNO.get(r.code) == "perm", r
    assert SECRET not in r.stdout and "Traceback" not in r.stderr
    assert r.rss_mib < 16 + RSS_OVERHEAD_MIB
    _untouched(host)


@pytest.mark.parametrize(
    ("path", "writable"),
    [("new.txt", False), ("in.txt", False), ("../secret.txt", True), ("link", True)],
    ids=["create-read-only", "overwrite-read-only", "dotdot-writable", "symlink-writable"],
)
def test_writes_outside_the_grant_are_refused(host, wasm, path, writable):
    grant = "data:/data:writable" if writable else "data:/data"
    r = motte_run(host, wasm("write", hostile.write(path)), "--dir", grant, "--memory", 16)
    assert hostile.ERRNO.get(r.code) == "perm", r
    assert (host / "data" / "in.txt").read_text() == "inside"
    _untouched(host)


# -- the host's environment -------------------------------------------------------------------


def test_a_bare_guest_sees_no_host_environment(tmp_path, wasm):
    r = motte_run(tmp_path, wasm("env", hostile.ENV_PROBE), env={"PROBE_SECRET": SECRET})
    assert (r.code, r.stdout) == (0, "")  # it counted no variable at all


def test_a_guest_sees_exactly_the_variables_granted(tmp_path, wasm):
    app = _manifest(
        tmp_path / "app",
        wasm("env", hostile.ENV_PROBE),
        'env = { MINE = "1", LANG = { host = "PROBE_LANG" } }\n',
    )
    r = motte_run(tmp_path, app, env={"PROBE_SECRET": SECRET, "PROBE_LANG": "C.UTF-8"})
    assert r.code == 2
    assert sorted(r.stdout.split("\0")[:-1]) == ["LANG=C.UTF-8", "MINE=1"]
    assert "env LANG = the host's PROBE_LANG" in r.stderr  # this host's own manifest
