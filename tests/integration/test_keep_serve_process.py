"""``motte run`` on a manifest with listeners, as its own process (one serving process per
CPU): it serves until SIGTERM, finishes what is in flight, exits 0, and says loudly that a
self-signed certificate attests nothing."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.keep import guests
from tests.keep.serve import cgi_guests as g

pytestmark = pytest.mark.integration

START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Keep:
    """A ``motte run`` process; its stderr collected line by line as it comes."""

    def __init__(self, manifest: Path, *flags: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "motte", "run", *flags, str(manifest)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.stderr:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._reader.join(5)
                raise AssertionError(f"no {text!r} from motte run:\n{self.stderr}")
            time.sleep(0.02)

    def finish(self, timeout: float = 60.0) -> tuple[int, str]:
        """Wait for the exit; (status, stdout). Not communicate(): the reader owns stderr."""
        status = self.proc.wait(timeout=timeout)
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        self._reader.join(5)
        return status, out


@pytest.fixture
def keeps() -> Iterator[list[Keep]]:
    started: list[Keep] = []
    yield started
    for keep in started:  # a failed test must not leave a server behind
        if keep.proc.poll() is None:
            keep.proc.kill()
            keep.proc.wait()


def serving(
    tmp_path: Path, keeps: list[Keep], wat: str | None = None, *flags: str, wall_time: int = 60
) -> tuple[Keep, int]:
    port = free_port()
    listen = f'name = "web"\nport = {port}\nprotocol = "http"'
    if wat is None:
        text = (REPO / "examples" / "http-hello" / "Motte.toml").read_text()
        # The module beside its manifest: a workload outside the directory is refused.
        shutil.copy(REPO / "examples/http-hello/http-hello.wasm", tmp_path)
        manifest = tmp_path / "Motte.toml"
        manifest.write_text(re.sub(r"port = \d+", f"port = {port}", text))
    else:
        # A writable preopen where a guest may signal that it runs (guests.started_then).
        (tmp_path / "signals").mkdir()
        manifest = g.manifest(
            tmp_path,
            wat,
            listen=listen,
            limits=f"memory = 16\ncpu_time = {wall_time}\nwall_time = {wall_time}",
            extra=guests.SIGNALS_DIR,
        )
    keep = Keep(manifest, *flags)
    keeps.append(keep)
    keep.wait_for("motte: serving ")
    return keep, port


def refused_soon(port: int, within: float = 60.0) -> bool:
    """Whether connecting to ``port`` fails within ``within`` seconds (the worker processes
    close their copies of the listening socket a moment after the parent)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except OSError:
            return True
        time.sleep(0.05)
    return False


def unverified() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the test pins the fingerprint motte printed instead
    return ctx


def request(port: int, path: str = "/") -> tuple[int, bytes, bytes]:
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=unverified(), timeout=60)
    try:
        conn.connect()
        cert = conn.sock.getpeercert(binary_form=True)
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read(), cert
    finally:
        conn.close()


def test_serves_the_example_until_sigterm(tmp_path: Path, keeps: list[Keep]) -> None:
    keep, port = serving(tmp_path, keeps)
    answers = [request(port, f"/?name=n{i}") for i in range(6)]
    assert [a[:2] for a in answers] == [(200, f"Hello, n{i}!\n".encode()) for i in range(6)]
    keep.proc.send_signal(signal.SIGTERM)
    status, _ = keep.finish()
    err = keep.stderr
    assert status == 0
    fingerprint = re.search(r"self-signed certificate \(sha256 ([0-9a-f]{64})\)", err)
    assert fingerprint, err
    assert all(hashlib.sha256(a[2]).hexdigest() == fingerprint.group(1) for a in answers)
    assert "motte: warning: UNATTESTED KEEP" in err
    assert "SELF-SIGNED, attests nothing" in err
    assert re.search(r"stopped: .*6 requests", err), err
    assert "Traceback" not in err


def test_sigterm_finishes_the_request_in_flight(tmp_path: Path, keeps: list[Keep]) -> None:
    wat = guests.started_then_waits_for_release(b"Content-Type: a/b\n\ndone")
    keep, port = serving(tmp_path, keeps, wat)
    result: list[tuple[int, bytes, bytes]] = []
    client = threading.Thread(target=lambda: result.append(request(port)))
    client.start()
    guests.wait_for_file(tmp_path / "signals" / "started", "the request's instance")
    keep.proc.send_signal(signal.SIGTERM)  # while the request is in flight
    keep.wait_for("stopping: waiting up to")
    assert refused_soon(port)  # no new connections once every process has stopped accepting
    (tmp_path / "signals" / "release").touch()  # the instance finishes its answer
    client.join(60)
    status, _ = keep.finish()
    assert [r[:2] for r in result] == [(200, b"done")]
    assert status == 0


def test_a_second_sigterm_stops_what_is_in_flight(tmp_path: Path, keeps: list[Keep]) -> None:
    keep, port = serving(tmp_path, keeps, guests.STARTED_THEN_SPIN, wall_time=600)
    result: list[tuple[int, bytes, bytes]] = []
    client = threading.Thread(target=lambda: result.append(request(port)))
    client.start()
    guests.wait_for_file(tmp_path / "signals" / "started", "the request's instance")
    keep.proc.send_signal(signal.SIGTERM)
    keep.wait_for("stopping: waiting up to 600 s")
    keep.proc.send_signal(signal.SIGTERM)
    status, _ = keep.finish()  # long before the 600 s wall time: only the SIGTERM ends it
    client.join(60)
    assert status == 0
    assert [r[0] for r in result] == [503]
    assert "stopping their instances" in keep.stderr


def test_json_summary(tmp_path: Path, keeps: list[Keep]) -> None:
    keep, port = serving(tmp_path, keeps, None, "--json")
    assert request(port)[0] == 200
    keep.proc.send_signal(signal.SIGINT)  # Ctrl-C stops gracefully too
    status, out = keep.finish()
    summary = json.loads(out)
    assert status == 0
    assert summary["stats"]["requests"] == 1
    assert summary["identity"]["attested"] is False
    # Loopback: nothing granted it another address (issue 23).
    assert summary["listeners"][0]["url"] == f"https://127.0.0.1:{port}"
    assert summary["digest"].startswith("sha256:")


def test_a_manifest_that_serves_and_sets_stdout_is_refused(tmp_path: Path) -> None:
    manifest = g.manifest(tmp_path, g.COUNTER, extra='stdout = "null"')
    r = subprocess.run(
        [sys.executable, "-m", "motte", "run", str(manifest)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 125
    assert re.match(r"motte: error: .*Motte.toml(:\d+)?: stdout cannot be set", r.stderr), r.stderr
    assert "Traceback" not in r.stderr
