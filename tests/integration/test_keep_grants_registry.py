"""Requests and grants end to end: packages pulled from a real registry (Debian's
docker-registry on 127.0.0.1) ask for the host's /, a host stdout file, a host environment
variable and a privileged port. Run by reference they are refused item by item, each line
with the flag that grants it; with those flags they run, and get what the host chose, not
what they named. `motte run` says where each listener is bound."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from motte.oci import build_package, parse_reference, push
from tests.keep.conftest import EXAMPLES
from tests.oci.registry_server import free_port, run_registry

pytestmark = pytest.mark.integration


def _package(directory: Path, module: Path, manifest: str) -> Path:
    directory.mkdir()
    (directory / module.name).write_bytes(module.read_bytes())
    (directory / "Motte.toml").write_text(f'workload = "{module.name}"\n{manifest}')
    return directory


@pytest.fixture
def published(tmp_path, monkeypatch):
    """acme/nosy:1.0 (asks for /, a host stdout file and the host's HOME) and acme/web:1.0
    (asks for port 443) pushed to a registry by a publisher; the test is a fresh host."""
    stolen = tmp_path / "stolen.txt"
    nosy = _package(
        tmp_path / "nosy",
        EXAMPLES / "files" / "files.wasm",
        'args = ["cat", "/host/secret.txt"]\n'
        f'stdout = {{ file = "{stolen}" }}\n'
        'env = { HOME = { host = "HOME" } }\n'
        '[[dir]]\nhost = "/"\nguest = "/host"\nwritable = true\n',
    )
    web = _package(
        tmp_path / "web",
        EXAMPLES / "http-hello" / "http-hello.wasm",
        '[[listen]]\nname = "web"\nport = 443\nprotocol = "http"\n',
    )
    with run_registry(tmp_path) as registry:
        monkeypatch.setenv("MOTTE_HOME", str(tmp_path / "publisher"))
        for directory, name in ((nosy, "nosy"), (web, "web")):
            build_package(directory, parse_reference(f"acme/{name}:1.0"))
            push(parse_reference(f"{registry.url}/acme/{name}:1.0"))
        host = tmp_path / "host"
        host.mkdir()
        yield registry, host, stolen


def motte(host: Path, *args: str, **popen) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOTTE_")}
    env.update(MOTTE_HOME=str(host / "home"), HOME="/home/operator")
    return subprocess.Popen(
        [sys.executable, "-m", "motte", "run", *args],
        cwd=host,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def run(host: Path, *args: str) -> tuple[int, str, str]:
    proc = motte(host, *args)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def test_a_package_asking_for_the_host_is_refused_item_by_item(published):
    registry, host, stolen = published
    code, _, err = run(host, f"{registry.url}/acme/nosy:1.0")
    assert code == 125 and "Traceback" not in err
    assert f"{registry.url}/acme/nosy:1.0 asks for 3 thing(s) this host has not granted:" in err
    assert (
        "  dir host: a host directory at /host, writable (the package names /: choose a "
        "directory yourself): --grant dir:host=HOSTPATH:writable\n"
    ) in err
    assert (
        f"  stdout: writes a host file (the package names {stolen}: choose a file yourself): "
        "--grant stdout=FILE\n"
    ) in err
    assert "  env HOME: the host's HOME: --grant env:HOME\n" in err
    assert not stolen.exists()

    code, _, err = run(host, f"{registry.url}/acme/web:1.0")
    assert code == 125
    assert (
        "  listen web: port 443 (http), a privileged port: --grant listen:web=443 (or another "
        "port: --grant listen:web=8443)\n"
    ) in err


def test_granted_the_package_runs_with_what_the_host_chose(published):
    registry, host, stolen = published
    granted = host / "granted"
    granted.mkdir()
    (granted / "secret.txt").write_text("what the operator chose to share\n")
    code, _, err = run(
        host,
        f"{registry.url}/acme/nosy:1.0",
        "--grant",
        f"dir:host={granted}",
        "--grant",
        "stdout=out.txt",
        "--grant",
        "env:HOME",
    )
    assert code == 0, err
    assert (host / "out.txt").read_text() == "what the operator chose to share\n"
    assert not stolen.exists()  # the path the package named was never written
    # One line says the mode and what crossed the boundary (read-only: the grant said so).
    assert re.search(
        r"motte: .*acme/nosy:1\.0@sha256:[0-9a-f]{64}: a package run by reference gets only "
        r"what this host grants: dir host = granted at /host \(read-only\); stdout = out\.txt; "
        r"env HOME = the host's HOME\n",
        err,
    ), err


def _serve_until_listening(proc: subprocess.Popen) -> str:
    deadline = time.monotonic() + 60
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        if line.startswith("motte: listening: "):
            return line
    proc.kill()
    pytest.fail(f"no listening line: {proc.communicate()}")


def _get(url: str) -> str:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the self-signed Keep: what is bound is the point
    with urllib.request.urlopen(url, context=context, timeout=30) as r:
        return r.read().decode()


def _stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 0


def test_a_granted_port_and_address_are_where_it_listens(published):
    registry, host, _ = published
    proc = motte(host, f"{registry.url}/acme/web:1.0", "--grant", "listen:web=127.0.0.1:0")
    try:
        line = _serve_until_listening(proc)
        m = re.match(
            r"motte: listening: web https://127\.0\.0\.1:(\d+), bound to 127\.0\.0\.1:\1, "
            r"loopback only \(HTTP, TLS 1\.3",
            line,
        )
        assert m, line
        assert _get(f"https://127.0.0.1:{m[1]}/?name=grant") == "Hello, grant!\n"
    finally:
        _stop(proc)


def test_without_an_address_a_listener_binds_loopback_only(published):
    registry, host, _ = published
    port = free_port()
    proc = motte(host, f"{registry.url}/acme/web:1.0", "--grant", f"listen:web={port}")
    try:
        line = _serve_until_listening(proc)
        assert line.startswith(
            f"motte: listening: web https://127.0.0.1:{port}, bound to 127.0.0.1:{port}"
        ), line
        assert ", loopback only (HTTP" in line
        assert _get(f"https://127.0.0.1:{port}/?name=loopback") == "Hello, loopback!\n"
    finally:
        _stop(proc)
