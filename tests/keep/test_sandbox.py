"""A guest gets exactly what its manifest grants: it cannot read outside its preopens
(absolute paths, '..', symlinks pointing out), cannot write a read-only preopen, and sees only
the environment it was given."""

from __future__ import annotations

import os

import pytest

from motte.keep import PreparedWorkload
from motte.manifest import Dir, manifest_for_module
from tests.keep import guests
from tests.keep.conftest import EXAMPLES

FILES = EXAMPLES / "files" / "files.wasm"
HELLO = EXAMPLES / "hello" / "hello.wasm"
HELLO_COMPONENT = EXAMPLES / "hello-component" / "hello-component.wasm"
SECRET = "the host's secret"


@pytest.fixture
def tree(tmp_path):
    """tmp/data (granted) beside tmp/outside (not granted), with symlinks out of data."""
    data = tmp_path / "data"
    outside = tmp_path / "outside"
    data.mkdir()
    outside.mkdir()
    (data / "inside.txt").write_text("granted\n")
    (outside / "secret.txt").write_text(SECRET + "\n")
    (data / "abs-link").symlink_to(outside / "secret.txt")
    (data / "rel-link").symlink_to("../outside/secret.txt")
    (data / "dir-link").symlink_to(outside)
    (data / "ok-link").symlink_to("inside.txt")
    return tmp_path


def files(tree, *args, writable=False):
    m = manifest_for_module(FILES).with_overrides(
        dirs=(Dir(tree / "data", "/data", writable=writable),)
    )
    return PreparedWorkload.prepare(m).run(args=args, stdout="capture", stderr="capture")


def test_reads_inside_the_preopen(tree):
    r = files(tree, "cat", "/data/inside.txt", "/data/ok-link")
    assert (r.exit_code, r.stdout) == (0, b"granted\ngranted\n")


@pytest.mark.parametrize(
    "path",
    [
        "{outside}/secret.txt",  # the host's absolute path
        "/data/../outside/secret.txt",
        "/data/../../../../{outside}/secret.txt",
        "../outside/secret.txt",  # relative to the guest's working directory
        "/data/abs-link",  # symlinks inside the preopen that point out of it
        "/data/rel-link",
        "/data/dir-link/secret.txt",
        "/etc/passwd",
    ],
)
def test_cannot_read_outside_the_preopen(tree, path):
    path = path.format(outside=tree / "outside")
    r = files(tree, "cat", path)
    assert r.exit_code == 1
    assert SECRET.encode() not in r.stdout
    assert r.stdout == b""
    assert r.stderr.startswith(f"files: cannot open {path}: ".encode())


def test_cannot_list_the_root_or_the_host(tree):
    for path in ("/", str(tree)):
        r = files(tree, "ls", path)
        assert r.exit_code == 1, path
        assert r.stdout == b""


def test_cannot_write_a_read_only_preopen(tree):
    r = files(tree, "write", "/data/new.txt", "hi")
    assert r.exit_code == 1
    assert b"Operation not permitted" in r.stderr or b"Read-only" in r.stderr
    assert not (tree / "data" / "new.txt").exists()
    r = files(tree, "write", "/data/inside.txt", "changed")
    assert r.exit_code == 1
    assert (tree / "data" / "inside.txt").read_text() == "granted\n"


def test_writable_preopen_allows_writes_inside_only(tree):
    r = files(tree, "write", "/data/new.txt", "hi", writable=True)
    assert (r.exit_code, r.stderr) == (0, b"")
    assert (tree / "data" / "new.txt").read_text() == "hi\n"
    r = files(tree, "write", "/data/rel-link", "overwrite", writable=True)
    assert r.exit_code == 1
    assert (tree / "outside" / "secret.txt").read_text() == SECRET + "\n"
    r = files(tree, "write", "/data/../outside/new.txt", "x", writable=True)
    assert r.exit_code == 1
    assert not (tree / "outside" / "new.txt").exists()


def test_no_preopen_means_no_files(tree):
    r = PreparedWorkload.prepare(manifest_for_module(FILES)).run(
        args=("cat", str(tree / "data" / "inside.txt")), stdout="capture", stderr="capture"
    )
    assert r.exit_code == 1
    assert r.stdout == b""


@pytest.mark.parametrize("module", [HELLO, HELLO_COMPONENT], ids=["module", "component"])
def test_sees_only_the_environment_it_was_given(monkeypatch, module):
    monkeypatch.setenv("HOST_SECRET", "do not leak")
    assert "PATH" in os.environ
    m = manifest_for_module(module).with_overrides(env={"GREETING": "Hi"})
    r = PreparedWorkload.prepare(m).run(stdout="capture", env={"EXTRA": "1"})
    assert r.exit_code == 0
    assert r.stdout.decode().splitlines() == [
        "Hi, world!",
        "environment: 2 variables",
        "  GREETING=Hi",
        "  EXTRA=1",
    ]


def test_empty_grant_has_no_environment_and_no_stdin(guest):
    r = PreparedWorkload.prepare(manifest_for_module(HELLO)).run(stdout="capture")
    assert b"environment: 0 variables" in r.stdout
    echo = PreparedWorkload.prepare(manifest_for_module(guest("echo", guests.ECHO)))
    r = echo.run(stdin="null", stdout="capture")
    assert (r.exit_code, r.stdout) == (0, b"")


def test_argv0_is_the_workload_name_and_args_follow():
    r = PreparedWorkload.prepare(manifest_for_module(FILES)).run(
        args=("bogus",), stdout="capture", stderr="capture"
    )
    assert r.exit_code == 2
    assert r.stderr.startswith(b"usage: files")


def test_cli_sandbox_end_to_end(motte, tree):
    r = motte("run", FILES, "--dir", f"{tree / 'data'}:/data", "--", "cat", "/data/abs-link")
    assert r.exit_code == 1
    assert SECRET not in r.stdout
    r = motte("run", FILES, "--dir", f"{tree / 'data'}:/data", "--", "cat", "/data/inside.txt")
    assert (r.exit_code, r.stdout) == (0, "granted\n")
