"""The example workloads run as their READMEs say, and give the right answers."""

from __future__ import annotations

import hashlib

import pytest

from motte.keep import PreparedWorkload, detect_kind
from motte.manifest import load_manifest
from tests.keep.conftest import EXAMPLES

NAMES = ["hello", "files", "sha256", "hello-component", "runaway"]


def prepare(name: str) -> PreparedWorkload:
    return PreparedWorkload.prepare(load_manifest(EXAMPLES / name / "Motte.toml"))


def block() -> bytes:
    return bytes(((i * 2654435761) % 2**32) >> 24 for i in range(1 << 20))


@pytest.mark.parametrize("name", NAMES)
def test_every_example_has_a_manifest_and_a_built_workload(name):
    m = load_manifest(EXAMPLES / name / "Motte.toml")
    assert m.workload.path is not None and m.workload.path.is_file()
    kind = detect_kind(m.workload.path.read_bytes(), name)
    assert kind == ("component" if name == "hello-component" else "module")


def test_hello():
    r = prepare("hello").run(stdout="capture")
    assert r.exit_code == 0
    assert r.stdout == b"Hello, world!\nenvironment: 1 variable\n  GREETING=Hello\n"


def test_hello_component_matches_the_module():
    r = prepare("hello-component").run(stdout="capture")
    assert r.exit_code == 0
    assert r.stdout == b"Hello, component model!\nenvironment: 1 variable\n  GREETING=Hello\n"


def test_files_counts_the_poem():
    r = prepare("files").run(stdout="capture")
    text = (EXAMPLES / "files" / "data" / "poem.txt").read_bytes()
    lines, words = text.count(b"\n"), len(text.split())
    assert r.stdout == f"{lines:8} {words:8} {len(text):8} /data/poem.txt\n".encode()


@pytest.mark.parametrize("mib", [0, 1, 3])
def test_sha256_agrees_with_hashlib(mib):
    r = prepare("sha256").run(args=(str(mib),), stdout="capture")
    expected = hashlib.sha256(block() * mib).hexdigest()
    assert r.stdout == f"{expected}  {mib} MiB\n".encode()


def test_sha256_rejects_a_bad_size():
    r = prepare("sha256").run(args=("lots",), stdout="capture", stderr="capture")
    assert r.exit_code == 2
    assert r.stderr.startswith(b"usage: sha256")


def test_runaway_is_stopped_by_its_cpu_limit():
    r = prepare("runaway").run()
    assert r.trap.kind == "cpu_time"
    assert r.status == 152


def test_runaway_bomb_and_recursion_stop_as_documented():
    from motte.manifest import manifest_for_module

    bomb = manifest_for_module(EXAMPLES / "runaway" / "bomb.wasm").with_overrides(memory=16)
    r = PreparedWorkload.prepare(bomb).run()
    assert (r.trap.kind, r.memory_full) == ("unreachable", True)
    r = PreparedWorkload.prepare(manifest_for_module(EXAMPLES / "runaway" / "recurse.wasm")).run()
    assert r.trap.kind == "stack_overflow"
