"""The in-process API the listeners build on: prepare once, run fresh instances from many
threads, each with its own stdin, environment, captured output and limits."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from motte.errors import NotFoundError, UsageError
from motte.keep import KeepError, PreparedWorkload, WorkloadError, detect_kind, workload_digest
from motte.manifest import Dir, manifest_for_digest, manifest_for_module, parse_manifest
from tests.keep import guests
from tests.keep.conftest import EXAMPLES

HELLO = EXAMPLES / "hello" / "hello.wasm"
HELLO_COMPONENT = EXAMPLES / "hello-component" / "hello-component.wasm"


def test_concurrent_runs_are_isolated(guest):
    echo = PreparedWorkload.prepare(manifest_for_module(guest("echo", guests.ECHO)))
    hello = PreparedWorkload.prepare(manifest_for_module(HELLO))

    def one(i: int):
        payload = f"request {i} ".encode() * (i + 1)
        r = echo.run(stdin=payload, stdout="capture")
        assert (r.exit_code, r.stdout) == (len(payload) % 100, payload)
        r = hello.run(env={"GREETING": f"G{i}"}, args=(f"n{i}",), stdout="capture")
        assert r.stdout.decode().splitlines()[:3] == [
            f"G{i}, n{i}!",
            "environment: 1 variable",
            f"  GREETING=G{i}",
        ]
        return i

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sorted(pool.map(one, range(64))) == list(range(64))


def test_a_runaway_instance_does_not_stop_its_neighbours(guest):
    spin = PreparedWorkload.prepare(
        manifest_for_module(guest("spin", guests.SPIN)).with_overrides(cpu_time=0.3)
    )
    hello = PreparedWorkload.prepare(manifest_for_module(HELLO))
    results = {}

    def spinner():
        results["spin"] = spin.run()

    t = threading.Thread(target=spinner)
    t.start()
    outs = [hello.run(stdout="capture") for _ in range(20)]
    t.join()
    assert results["spin"].trap.kind == "cpu_time"
    assert all(r.exit_code == 0 and r.stdout.startswith(b"Hello") for r in outs)


def test_cancel_stops_a_running_instance(guest):
    spin = PreparedWorkload.prepare(manifest_for_module(guest("spin", guests.SPIN)))
    cancel = threading.Event()
    timer = threading.Timer(0.2, cancel.set)
    timer.start()
    r = spin.run(cancel=cancel)
    assert r.trap.kind == "interrupted"
    assert r.status == 130
    assert r.wall_time < 30


def test_components_run_concurrently_too():
    w = PreparedWorkload.prepare(manifest_for_module(HELLO_COMPONENT))
    assert w.kind == "component"

    def one(i):
        return w.run(args=(str(i),), stdout="capture").stdout

    with ThreadPoolExecutor(max_workers=4) as pool:
        outs = list(pool.map(one, range(16)))
    assert [o.splitlines()[0] for o in outs] == [f"Hello, {i}!".encode() for i in range(16)]


def test_stdio_to_files_and_descriptors(tmp_path, guest):
    echo = PreparedWorkload.prepare(manifest_for_module(guest("echo", guests.ECHO)))
    src = tmp_path / "in.txt"
    src.write_bytes(b"from a file")
    out = tmp_path / "out.txt"
    out.write_bytes(b"old content that is longer")
    r = echo.run(stdin=src, stdout=out)
    assert (r.exit_code, r.stdout) == (len(b"from a file") % 100, None)
    assert out.read_bytes() == b"from a file"
    rfd, wfd = os.pipe()
    in_r, in_w = os.pipe()
    os.write(in_w, b"through a pipe")
    os.close(in_w)
    try:
        r = echo.run(stdin=in_r, stdout=wfd)
    finally:
        os.close(wfd)
        os.close(in_r)
    assert os.read(rfd, 100) == b"through a pipe"
    os.close(rfd)


def test_stdio_from_the_manifest(tmp_path, guest):
    mod = guest("echo", guests.ECHO)
    (tmp_path / "in.txt").write_bytes(b"manifest stdin")
    m = parse_manifest(
        f'workload = "{mod.name}"\nstdin = {{ file = "in.txt" }}\nstdout = {{ file = "o.txt" }}',
        base_dir=tmp_path,
    )
    r = PreparedWorkload.prepare(m).run()
    assert r.exit_code == len(b"manifest stdin") % 100
    assert (tmp_path / "o.txt").read_bytes() == b"manifest stdin"


def test_large_stdin_and_capture(guest):
    echo = PreparedWorkload.prepare(manifest_for_module(guest("echo", guests.ECHO)))
    data = os.urandom(65536)
    r = echo.run(stdin=data, stdout="capture")
    assert r.stdout == data


def test_nul_in_arguments_or_environment_is_refused():
    w = PreparedWorkload.prepare(manifest_for_module(HELLO))
    with pytest.raises(UsageError):
        w.run(args=("a\0b",))
    with pytest.raises(UsageError):
        w.run(env={"A": "x\0y"})


def test_result_reports_times_and_memory():
    r = PreparedWorkload.prepare(manifest_for_module(HELLO)).run(stdout="null")
    assert r.exit_code == 0 and r.stdout is None
    assert 0 < r.wall_time < 5 and 0 <= r.cpu_time < 5
    import wasmtime

    (memory,) = [
        e.type
        for e in wasmtime.Module.from_file(wasmtime.Engine(), HELLO).exports
        if isinstance(e.type, wasmtime.MemoryType)
    ]
    # Its declared memory, plus the page or two that libc's start-up allocates.
    assert memory.limits.min * 65536 <= r.memory <= (memory.limits.min + 2) * 65536
    assert r.memory_limit == 256 * 2**20


# -- preparing ----------------------------------------------------------------------------------


def test_detect_kind():
    assert detect_kind(HELLO.read_bytes(), "x") == "module"
    assert detect_kind(HELLO_COMPONENT.read_bytes(), "x") == "component"
    with pytest.raises(WorkloadError, match="not a WebAssembly binary"):
        detect_kind(b"\x7fELF....", "x")
    with pytest.raises(WorkloadError, match="unsupported WebAssembly version 2"):
        detect_kind(b"\0asm\x02\0\0\0", "x")


@pytest.mark.parametrize(
    ("wat", "message"),
    [
        (guests.NO_START, "not a WASI command: it exports no _start function"),
        (guests.UNKNOWN_IMPORT, "cannot link: unknown import: `env::launch_missiles`"),
    ],
)
def test_modules_a_keep_cannot_run(guest, wat, message):
    with pytest.raises(WorkloadError, match=message) as e:
        PreparedWorkload.prepare(manifest_for_module(guest("bad", wat)))
    assert e.value.exit_status == 125


def test_invalid_module(tmp_path):
    bad = tmp_path / "bad.wasm"
    bad.write_bytes(b"\0asm\x01\0\0\0\xff\xff")
    with pytest.raises(WorkloadError, match=r"bad.wasm: invalid module: "):
        PreparedWorkload.prepare(manifest_for_module(bad))


def test_missing_grants_are_named_before_anything_runs(tmp_path):
    shutil.copy(HELLO, tmp_path / "hello.wasm")
    m = parse_manifest(
        'workload = "hello.wasm"\n\n[[dir]]\nhost = "nope"\nguest = "/x"', base_dir=tmp_path
    )
    with pytest.raises(KeepError, match=r"Motte.toml:3: dir.host .*/nope: no such directory"):
        PreparedWorkload.prepare(m)
    m = parse_manifest('workload = "hello.wasm"\nstdin = { file = "in" }', base_dir=tmp_path)
    with pytest.raises(KeepError, match=r"Motte.toml:2: stdin.file .*/in: no such file"):
        PreparedWorkload.prepare(m)
    m = manifest_for_module(tmp_path / "missing.wasm")
    with pytest.raises(NotFoundError, match=r"missing\.wasm: no such file"):
        PreparedWorkload.prepare(m)


def test_preopen_removed_after_prepare_is_a_clear_error(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    w = PreparedWorkload.prepare(
        manifest_for_module(HELLO).with_overrides(dirs=(Dir(d, "/d", where="--dir d:/d"),))
    )
    d.rmdir()
    with pytest.raises(KeepError, match=r"--dir d:/d: cannot open directory"):
        w.run()


def _store_blob(motte_home: Path, data: bytes) -> str:
    digest = workload_digest(data)
    blob = motte_home / "oci" / "blobs" / "sha256" / digest.split(":")[1]
    blob.parent.mkdir(parents=True)
    blob.write_bytes(data)
    return digest


def test_workload_by_digest_from_the_local_store(motte_home):
    digest = _store_blob(motte_home, HELLO.read_bytes())
    w = PreparedWorkload.prepare(manifest_for_digest(digest))
    assert w.digest == digest
    assert w.run(stdout="capture").stdout.startswith(b"Hello, world!")


def test_workload_by_digest_is_verified(motte_home):
    digest = _store_blob(motte_home, HELLO.read_bytes())
    blob = motte_home / "oci" / "blobs" / "sha256" / digest.split(":")[1]
    blob.write_bytes(HELLO.read_bytes() + b"\0")
    with pytest.raises(WorkloadError, match="has digest sha256:.*, not " + digest):
        PreparedWorkload.prepare(manifest_for_digest(digest))
    with pytest.raises(NotFoundError, match="not in the local store") as e:
        PreparedWorkload.prepare(manifest_for_digest("sha256:" + "0" * 64))
    assert "motte pull" in e.value.hint


def test_digest_is_sha256_of_the_bytes():
    data = HELLO.read_bytes()
    w = PreparedWorkload.prepare(manifest_for_module(HELLO))
    assert w.digest == "sha256:" + hashlib.sha256(data).hexdigest() == workload_digest(data)
