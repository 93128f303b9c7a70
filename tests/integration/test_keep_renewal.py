"""A serving Keep renews its certificate by attesting again: a real Steward on 127.0.0.1, a
real Keep serving examples/http-hello in two processes (this one and a worker), the sim
backend, and TLS clients that read the certificate each new connection gets.

The renewal is triggered through the renewer's own hook (``Renewer.renew_now``, what its
schedule calls at two thirds of the lifetime), so the test does not wait 40 s, and the
schedule is kept from firing on its own (a slow machine once let it, and the test counted a
third decision); the schedule itself is tested in tests/keep/serve/test_renew.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

import motte.keep.serve
from motte.keep import PreparedWorkload
from motte.keep._attest import attest_keep
from motte.keep.backends import get_backend
from motte.keep.serve import ServeOptions, serve
from motte.keep.serve._renew import Renewer
from motte.manifest import load_manifest
from motte.steward import Steward
from tests.keep.conftest import EXAMPLES
from tests.steward.helpers import make_steward

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def steward_at(steward: Steward, sock: socket.socket) -> Iterator[str]:
    """Serve ``steward`` on an already bound socket (so a restarted Steward keeps its URL)."""
    import uvicorn

    from motte.steward._server import create_app

    server = uvicorn.Server(
        uvicorn.Config(create_app(steward), log_level="error", access_log=False, lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the Steward did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)


def bound_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Client:
    """One TLS connection to the Keep, verified against the Steward's CA."""

    def __init__(self, port: int, ca: Path) -> None:
        ctx = ssl.create_default_context(cafile=str(ca))
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        der = self.sock.getpeercert(binary_form=True)
        assert der is not None
        self.leaf = x509.load_der_x509_certificate(der)

    def get(self, name: str) -> bytes:
        self.sock.sendall(f"GET /?name={name} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            assert chunk, "the Keep closed the connection"
            head += chunk
        head, _, body = head.partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        while len(body) < length:
            body += self.sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 200"), head
        return body

    def close(self) -> None:
        self.sock.close()


def new_serials(port: int, ca: Path, count: int) -> set[int]:
    """The serials ``count`` new connections are served (each answers a request)."""
    serials = set()
    for i in range(count):
        client = Client(port, ca)
        try:
            assert client.get(f"n{i}") == f"Hello, n{i}!\n".encode()
            serials.add(client.leaf.serial_number)
        finally:
            client.close()
    return serials


class Keep:
    """http-hello served in this process and one worker process, with a renewer."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        d = tmp_path / "http-hello"
        shutil.copytree(EXAMPLES / "http-hello", d)
        self.port = free_port()
        text = (d / "Motte.toml").read_text()
        (d / "Motte.toml").write_text(re.sub(r"(?m)^port = \d+", f"port = {self.port}", text))
        manifest = load_manifest(d / "Motte.toml")
        self.workload = PreparedWorkload.prepare(manifest)
        backend = get_backend("sim", allow_insecure_sim=True)
        self.identity = attest_keep(url, self.workload.digest, backend)
        # The renewer's clock runs a day behind, so its own schedule (two thirds of a 60 s
        # certificate) never comes due however slowly this machine runs the test: every
        # renewal here is one the test asked for with renew_now().
        self.renewer = Renewer(
            self.identity.tls_identity(),
            lambda: self.identity.reattest(timeout=5).tls_identity(),
            steward=url,
            clock=lambda: dt.datetime.now(dt.UTC) - dt.timedelta(days=1),
        )
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(
            target=serve,
            args=(self.workload, manifest.listen, None),
            kwargs={
                "ready": lambda _bound: self.ready.set(),
                "stop": self.stop,
                "options": ServeOptions(processes=2, host="127.0.0.1", stop_timeout=2),
                "renewer": self.renewer,
            },
            daemon=True,
        )

    def __enter__(self) -> Keep:
        self.thread.start()
        assert self.ready.wait(60)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def wait_for(condition: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"waited {timeout:g} s for {what}"
        time.sleep(0.05)


@pytest.fixture
def steward(tmp_path):
    """A development Steward (sim allowed) issuing the shortest certificates it may: 60 s."""
    s = make_steward(tmp_path / "steward", config={"certificate_lifetime": "60"})
    sock = bound_socket()
    try:
        yield s, sock
    finally:
        s.close()
        sock.close()


def test_a_renewal_gives_new_connections_a_new_certificate_and_spares_open_ones(
    tmp_path, steward, caplog
):
    s, sock = steward
    ca = s.paths.ca_cert
    ca_cert = x509.load_pem_x509_certificate(ca.read_bytes())
    caplog.set_level(logging.INFO, "motte.keep.serve")
    with steward_at(s, sock) as url, Keep(tmp_path, url) as keep:
        first = Client(keep.port, ca)
        assert first.get("before") == b"Hello, before!\n"
        old = first.leaf
        assert old.not_valid_after_utc - old.not_valid_before_utc <= dt.timedelta(seconds=360)
        assert new_serials(keep.port, ca, 4) == {old.serial_number}

        # The parent serves before its worker does; on a busy machine the worker may still
        # be starting, and a renewal it gets in its config is not one it says it took.
        wait_for(lambda: "worker process 1 serves too" in caplog.text, "the worker to serve")
        assert keep.renewer.renew_now() is True
        assert f"renewed: the Steward {url} issued certificate" in caplog.text
        # Both processes serve new connections: the worker says it has the new one too.
        wait_for(
            lambda: "worker process 1: new connections get the renewed certificate" in caplog.text,
            "the worker to take the renewed certificate",
        )

        serials = new_serials(keep.port, ca, 12)
        assert len(serials) == 1 and old.serial_number not in serials
        renewed = Client(keep.port, ca)
        try:
            leaf = renewed.leaf
            # From the same Steward CA (ssl verified the chain; the issuer says which).
            assert leaf.issuer == old.issuer == ca_cert.subject
            leaf.verify_directly_issued_by(ca_cert)
            assert leaf.public_key() != old.public_key()  # a fresh key, as at start
        finally:
            renewed.close()

        # The Steward judged it like the first: a second accepted decision, same workload.
        rows = s.store.audit()
        assert [r.decision for r in rows].count("accepted") == 2
        assert {r.workload_digest for r in rows} == {keep.workload.digest}

        # The connection opened before the renewal keeps its certificate and still works.
        assert first.get("after") == b"Hello, after!\n"
        assert first.sock.getpeercert(binary_form=True) == old.public_bytes(Encoding.DER)
        first.close()


def test_a_refused_or_failed_renewal_keeps_the_old_certificate_and_says_why(
    tmp_path, steward, caplog
):
    s, sock = steward
    ca = s.paths.ca_cert
    port = sock.getsockname()[1]
    with steward_at(s, sock) as url:
        keep = Keep(tmp_path, url)
    # The Steward is down: the Keep keeps serving its certificate and logs why.
    with keep:
        [serial] = new_serials(keep.port, ca, 2)
        with caplog.at_level(logging.INFO, "motte.keep.serve"):
            assert keep.renewer.renew_now() is False
        [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert line.startswith(f"renewal failed: Steward {url}/nonce: ")
        assert "stays in use until" in line and "retrying in 30 s" in line
        assert new_serials(keep.port, ca, 4) == {serial}

        # The Steward is back, with a narrower policy: 'localhost' is no longer allowed.
        caplog.clear()
        path = s.paths.config
        path.write_text(
            re.sub(r"(?m)^san_allow = .*$", 'san_allow = ["127.0.0.1"]', path.read_text())
        )
        narrowed = Steward(s.paths.root)
        sock2 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock2.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock2.bind(("127.0.0.1", port))
        sock2.listen(16)
        try:
            with steward_at(narrowed, sock2) as same_url:
                assert same_url == url
                with caplog.at_level(logging.INFO, "motte.keep.serve"):
                    assert keep.renewer.renew_now() is False
        finally:
            sock2.close()
            narrowed.close()
        [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert f"renewal failed: the Steward at {url} refused this Keep: san: localhost" in line
        # The second failure in a row: 60 s, or less if the certificate expires sooner.
        assert re.search(r"retrying in (60|[1-5][0-9]|[0-9]) s$", line)
        assert keep.renewer.failures == 2
        assert new_serials(keep.port, ca, 4) == {serial}
        # The Steward audited the refusal.
        decisions = [r.decision for r in s.store.audit()]
        assert decisions.count("accepted") == 1
        assert len(decisions) == 2 and decisions[-1] != "accepted"


def test_motte_run_serves_an_attested_identity_with_a_renewer(tmp_path, steward, monkeypatch):
    """``motte run``'s path: the renewer it hands the listeners re-attests through the
    Steward that issued the first certificate, for the same workload and names."""
    import motte.keep.serve._run as run_module
    from motte.cli._run_fast import RunOptions, _serve

    s, sock = steward
    given: dict[str, object] = {}

    def fake_serve_workload(workload, *, identity, renewer):
        given.update(identity=identity, renewer=renewer)
        return 0

    # motte.cli._run_fast imports it from the package, which caches it once loaded.
    monkeypatch.setattr(run_module, "serve_workload", fake_serve_workload)
    monkeypatch.setattr(motte.keep.serve, "serve_workload", fake_serve_workload, raising=False)
    with steward_at(s, sock) as url:
        keep = Keep(tmp_path, url)  # attested, not serving
        assert _serve(keep.workload, RunOptions(str(tmp_path)), keep.identity) == 0
        renewer = given["renewer"]
        assert isinstance(renewer, Renewer)
        assert renewer.steward == url
        assert renewer.identities.current is given["identity"]
        assert renewer.renew_now() is True
    new = x509.load_pem_x509_certificates(renewer.identities.current.certificate_chain_pem)[0]
    assert format(new.serial_number, "x") != keep.identity.certificate.serial
    rows = s.store.audit()
    assert [r.decision for r in rows] == ["accepted", "accepted"]
    assert rows[0].sans == rows[1].sans
    assert {r.workload_digest for r in rows} == {keep.workload.digest}


def test_a_keep_without_a_steward_has_no_renewer(tmp_path, monkeypatch):
    import motte.keep.serve._run as run_module
    from motte.cli._run_fast import RunOptions, _serve

    given: dict[str, object] = {}

    def fake_serve_workload(workload, **kw):
        given.update(kw)
        return 0

    monkeypatch.setattr(run_module, "serve_workload", fake_serve_workload)
    monkeypatch.setattr(motte.keep.serve, "serve_workload", fake_serve_workload, raising=False)
    workload = PreparedWorkload.prepare(load_manifest(EXAMPLES / "http-hello" / "Motte.toml"))
    assert _serve(workload, RunOptions("x")) == 0
    assert given["identity"] is None and given["renewer"] is None
