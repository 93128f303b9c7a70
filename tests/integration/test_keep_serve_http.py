"""HTTP listeners on 127.0.0.1: real TLS 1.3, real h11, a real instance per request.

Each test serves a manifest in this process (tests.keep.serve.harness) and talks to it
with the standard library's clients or raw sockets.
"""

from __future__ import annotations

import http.client
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime

from motte.keep import PreparedWorkload
from motte.keep.serve import ServeError, ServeOptions, self_signed_identity, serve
from motte.keep.serve._server import bind
from motte.keep.serve._workers import Workers
from motte.manifest import Listen, load_manifest
from tests.conftest import REPO
from tests.keep import guests
from tests.keep.serve import cgi_guests as g
from tests.keep.serve.harness import Running, get, read_all

pytestmark = pytest.mark.integration

HELLO = REPO / "examples" / "http-hello" / "Motte.toml"
LOGGER = "motte.keep.serve"


def _held(directory: Path, wat: str, *, limits: str = "cpu_time = 30\nwall_time = 60") -> Path:
    """A manifest for a guest that signals ``started`` in ``directory/signals`` (and may wait
    there for ``release``): the test acts once the instance runs, not after a sleep."""
    (directory / "signals").mkdir()
    return g.manifest(directory, wat, extra=guests.SIGNALS_DIR, limits="memory = 16\n" + limits)


def _refused_soon(port: int, within: float = 60.0) -> bool:
    """Whether connecting to ``port`` fails within ``within`` seconds (the Keep closes its
    listening sockets a moment after the stop is asked for)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=10).close()
        except OSError:
            return True
        time.sleep(0.02)
    return False


@pytest.fixture(scope="module")
def hello(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """examples/http-hello served once for the tests that only read from it."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOTTE_HOME", str(tmp_path_factory.mktemp("motte-home")))
        with Running(HELLO) as keep:
            yield keep


def test_hello_over_tls13_with_the_identity(hello: Running) -> None:
    conn = hello.https()
    conn.request("GET", "/?name=Alice")
    response = conn.getresponse()
    assert (response.status, response.read()) == (200, b"Hello, Alice!\n")
    assert response.getheader("Content-Type") == "text/plain; charset=utf-8"
    assert response.getheader("Date")
    tls = conn.sock
    assert tls.version() == "TLSv1.3"
    assert tls.selected_alpn_protocol() == "http/1.1"
    assert tls.getpeercert(binary_form=True) == hello.identity.leaf_der
    conn.close()


def test_tls12_is_refused(hello: Running) -> None:
    ctx = hello.client_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        socket.create_connection(("127.0.0.1", hello.port())) as raw,
        pytest.raises(ssl.SSLError),
    ):
        ctx.wrap_socket(raw, server_hostname="localhost")


def test_the_guest_sees_the_cgi_environment(hello: Running) -> None:
    status, _, body = get(hello, "/env?x=1&y=%20", headers={"X-Thing": "t1", "X_Sneaky": "no"})
    assert status == 200
    env = dict(line.split("=", 1) for line in body.decode().splitlines())
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/env"
    assert env["QUERY_STRING"] == "x=1&y=%20"
    assert env["HTTP_X_THING"] == "t1"
    assert "HTTP_X_SNEAKY" not in env
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(hello.port())
    assert env["SERVER_NAME"] == "localhost"
    assert env["HTTPS"] == "on"
    assert env["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert "CONTENT_LENGTH" not in env


def test_the_body_is_stdin(hello: Running) -> None:
    payload = bytes(range(256)) * 400
    status, headers, body = get(
        hello, "/echo", method="POST", body=payload, headers={"Content-Type": "app/x"}
    )
    assert (status, body) == (200, payload)
    assert headers["Content-Type"] == "app/x"


def test_a_chunked_body_is_stdin(hello: Running) -> None:
    with hello.tls_socket() as s:
        s.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: t/t\r\nConnection: close\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        answer = read_all(s)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"\r\n\r\nhello world")


def test_head_has_the_length_but_no_body(hello: Running) -> None:
    conn = hello.https()
    conn.request("HEAD", "/")
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Length") == str(len(b"Hello, world!\n"))
    assert response.read() == b""
    conn.close()


def test_routes_and_statuses_of_the_example(hello: Running) -> None:
    assert get(hello, "/nope")[0] == 404
    status, headers, _ = get(hello, "/", method="DELETE")
    assert (status, headers["Allow"]) == (405, "GET, HEAD")


def test_keep_alive_and_a_fresh_instance_per_request(tmp_path: Path) -> None:
    with Running(g.manifest(tmp_path, g.COUNTER)) as keep:
        conn = keep.https()
        answers = []
        for _ in range(4):
            conn.request("GET", "/")
            answers.append(conn.getresponse().read())
        conn.close()
        stats = keep.stop_and_wait()
    assert answers == [b"1"] * 4  # a reused instance would count 1, 2, 3, 4
    assert stats is not None
    assert (stats.connections, stats.requests) == (1, 4)


def test_bad_guest_output_is_a_502_with_the_reason_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    with Running(g.manifest(tmp_path, g.writes(b"no headers at all"))) as keep:
        status, _, body = get(keep, "/")
        conn = keep.https()  # the connection stays usable after a 502
        conn.request("GET", "/")
        assert conn.getresponse().status == 502
        conn.close()
        stats = keep.stop_and_wait()
    assert status == 502
    assert b"no blank line" not in body  # the reason is for the log, not the client
    assert b"reason in the Keep's log" in body
    assert "502 bad gateway: no blank line after the headers" in caplog.text
    assert stats is not None and stats.bad_gateway == 2


@pytest.mark.parametrize(
    ("wat", "limits", "reason"),
    [
        (g.UNREACHABLE, "cpu_time = 2\nwall_time = 5", "unreachable instruction"),
        # The wall time is far away: a loaded machine reaches the CPU limit first all the same.
        (g.SPIN, "cpu_time = 0.2\nwall_time = 60", "CPU time limit reached: 0.2 s"),
        (g.SPIN, "cpu_time = 5\nwall_time = 0.2", "wall-clock time limit reached: 0.2 s"),
        (
            g.writes(b"Content-Type: a/b\nConnection: close\n\n"),
            "cpu_time = 2\nwall_time = 5",
            "Connection is a hop-by-hop header",
        ),
    ],
)
def test_guests_that_fail_get_a_502(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, wat: str, limits: str, reason: str
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    with Running(g.manifest(tmp_path, wat, limits="memory = 16\n" + limits)) as keep:
        status, _, _ = get(keep, "/")
    assert status == 502
    assert reason in caplog.text


def test_a_guest_blocked_past_its_wall_time_is_answered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Blocked in a host call, the guest cannot be stopped; its client is not left hanging."""
    caplog.set_level(logging.INFO, LOGGER)
    wat = g.sleeps_then_writes(4000, b"Content-Type: a/b\n\nlate")
    manifest = g.manifest(tmp_path, wat, limits="memory = 16\ncpu_time = 5\nwall_time = 0.3")
    with Running(manifest, options=ServeOptions(stop_timeout=0)) as keep:
        status, _, _ = get(keep, "/")
    assert status == 502
    assert "did not finish within its wall time of 0.3 s" in caplog.text


def test_guest_stderr_goes_to_the_keeps_stderr(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    with Running(g.manifest(tmp_path, g.STDERR_AND_ANSWER)) as keep:
        assert get(keep, "/")[2] == b"ok\n"
    assert "guest says hi" in capfd.readouterr().err


def test_guest_stderr_file_is_appended_per_request(tmp_path: Path) -> None:
    manifest = g.manifest(tmp_path, g.STDERR_AND_ANSWER, extra='stderr = { file = "err.log" }')
    with Running(manifest) as keep:
        get(keep, "/")
        get(keep, "/")
    assert (tmp_path / "err.log").read_text() == "guest says hi\n" * 2


@pytest.mark.parametrize(
    ("request_bytes", "options", "status"),
    [
        (b"GARBAGE\r\n\r\n", ServeOptions(), 400),
        (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n",
            ServeOptions(max_body=1000),
            413,
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"400\r\n"
            + b"x" * 1024
            + b"\r\n" * 2,
            ServeOptions(max_body=1000),
            413,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: 1\r\n" * 20 + b"\r\n",
            ServeOptions(max_headers=10),
            431,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 4000 + b"\r\n\r\n",
            ServeOptions(max_header_bytes=1024),
            431,
        ),
        (b"GET /%ff HTTP/1.1\r\nHost: x\r\n\r\n", ServeOptions(), 400),
    ],
    ids=["malformed", "content-length", "chunked", "header-count", "header-bytes", "not-utf8"],
)
def test_requests_the_keep_refuses(
    request_bytes: bytes, options: ServeOptions, status: int
) -> None:
    with Running(HELLO, options=options) as keep, keep.tls_socket() as s:
        s.sendall(request_bytes)
        answer = read_all(s)  # and the Keep closes the connection
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:80]


def test_a_slow_client_gets_408() -> None:
    with Running(HELLO, options=ServeOptions(request_timeout=0.3)) as keep:
        with keep.tls_socket() as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # ... and never the blank line
            answer = read_all(s)
        stats = keep.stop_and_wait()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert stats is not None and stats.client_errors == 1


def test_an_idle_keep_alive_connection_is_closed() -> None:
    with (
        Running(HELLO, options=ServeOptions(keepalive_timeout=0.2)) as keep,
        keep.tls_socket() as s,
    ):
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = read_all(s)  # returns when the Keep closes the idle connection
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"Hello, world!\n")


def test_saturation_is_a_503_with_retry_after(tmp_path: Path) -> None:
    wat = guests.started_then_waits_for_release(b"Content-Type: a/b\n\nslow")
    options = ServeOptions(max_instances=1, max_queued=0)
    with Running(_held(tmp_path, wat), options=options) as keep:
        first: list[tuple[int, dict[str, str], bytes]] = []
        client = threading.Thread(target=lambda: first.append(get(keep, "/")))
        client.start()
        guests.wait_for_file(tmp_path / "signals" / "started", "the first request's instance")
        busy = get(keep, "/")  # while the first holds the only slot, until released
        (tmp_path / "signals" / "release").touch()
        client.join(60)
        stats = keep.stop_and_wait()
    assert [(a[0], a[2]) for a in first] == [(200, b"slow")]
    assert (busy[0], busy[1]["Retry-After"]) == (503, "1")
    assert stats is not None and stats.rejected == 1


def _answer_to(keep: Running, pieces: list[bytes]) -> bytes:
    with keep.tls_socket() as s:
        for piece in pieces:
            s.sendall(piece)
            time.sleep(0.2)  # each piece arrives on its own
        return read_all(s).split(b"\r\n\r\n", 1)[1]


def test_a_request_reads_the_same_whole_or_in_pieces(hello: Running) -> None:
    """Whole, a request is read by the fast path; in pieces (its head or body still
    arriving), by h11: the guest sees the same environment and body either way."""
    env = (
        b"GET /env?q=1 HTTP/1.1\r\nHost: keep.example\r\nX-Thing:  t1 \r\n"
        b"Cookie: a=1\r\nCookie: b=2\r\nConnection: close\r\n\r\n"
    )
    whole, split = (_answer_to(hello, p) for p in ([env], [env[:40], env[40:]]))
    seen = dict(line.split("=", 1) for line in whole.decode().splitlines())
    assert (seen["HTTP_X_THING"], seen["HTTP_COOKIE"], seen["QUERY_STRING"]) == (
        "t1",
        "a=1; b=2",
        "q=1",
    )

    def without_port(answer: bytes) -> list[bytes]:
        return [ln for ln in answer.split(b"\n") if not ln.startswith(b"REMOTE_PORT=")]

    assert without_port(whole) == without_port(split)
    echo = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: t/t\r\nContent-Length: 4\r\n"
        b"Connection: close\r\n\r\nbody"
    )
    assert _answer_to(hello, [echo]) == _answer_to(hello, [echo[:-2], echo[-2:]]) == b"body"


def test_pipelined_requests_are_answered_in_order(tmp_path: Path) -> None:
    with Running(HELLO) as keep, keep.tls_socket() as s:
        s.sendall(
            b"GET /?name=one HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /?name=two HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        answer = read_all(s)
    assert answer.count(b"HTTP/1.1 200 ") == 2
    assert answer.index(b"Hello, one!") < answer.index(b"Hello, two!")
    assert answer.endswith(b"Hello, two!\n")


def test_expect_100_continue(hello: Running) -> None:
    with hello.tls_socket() as s:
        s.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: t/t\r\nContent-Length: 4\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        interim = s.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        s.sendall(b"ping")
        answer = interim[len(b"HTTP/1.1 100 Continue\r\n\r\n") :] + read_all(s)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"\r\n\r\nping")


def test_past_max_connections_a_new_connection_gets_503_at_once(tmp_path: Path) -> None:
    # The first connection's keep-alive outlasts the client's 30 s timeout: a 503 that
    # waited for it would fail the test, however fast or slow the machine.
    options = ServeOptions(max_connections=1, keepalive_timeout=600)
    with Running(HELLO, options=options) as keep:
        with keep.tls_socket() as first:
            first.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert first.recv(65536).startswith(b"HTTP/1.1 200 ")  # holds the only slot
            status, headers, _ = get(keep, "/")
        stats = keep.stop_and_wait()
    assert (status, headers["Retry-After"]) == (503, "1")
    assert stats is not None and stats.rejected == 1


def test_a_client_that_never_handshakes_is_closed() -> None:
    with (
        Running(HELLO, options=ServeOptions(handshake_timeout=0.3)) as keep,
        keep.plain_socket() as s,
    ):
        s.settimeout(60)
        assert s.recv(1024) == b""  # closed by the Keep, with nothing sent


def test_an_idle_connection_closes_at_once_when_the_keep_stops() -> None:
    # A keep-alive far past stop_and_wait's 60 s: a stop that waited for it fails the test.
    with (
        Running(HELLO, options=ServeOptions(keepalive_timeout=600)) as keep,
        keep.tls_socket() as s,
    ):
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
        keep.stop_and_wait(timeout=60)  # the connection is idle: no wait for its keep-alive
        assert read_all(s) == b""


def test_a_client_that_does_not_read_its_answer_is_dropped(tmp_path: Path) -> None:
    chatty = g.writes(b"Content-Type: a/b\n\n" + b"z" * 60000)
    # One connection at a time: a new one is served (not refused) only once the Keep has
    # dropped the one that does not read. Its keep-alive is far past the client's 30 s
    # timeout: a connection left open rather than dropped fails the test.
    options = ServeOptions(request_timeout=0.5, max_connections=1, keepalive_timeout=600)
    with Running(g.manifest(tmp_path, chatty), options=options) as keep:
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting
        raw.settimeout(30)
        raw.connect(("127.0.0.1", keep.port()))
        with keep.client_context().wrap_socket(raw, server_hostname="localhost") as s:
            # 200 answers of 60 kB, pipelined and never read: more than the socket buffers
            # hold, so the Keep's writes stall.
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 200)
            deadline = time.monotonic() + 60
            while (status := get(keep, "/")[0]) == 503:  # the only connection slot is taken
                assert time.monotonic() < deadline, "the Keep never dropped the stalled client"
                time.sleep(0.05)
            answer = read_all(s)  # what was buffered, then the end
    assert status == 200
    assert answer.count(b"HTTP/1.1 200 ") < 200


def test_plain_http_listener(tmp_path: Path) -> None:
    manifest = g.manifest(
        tmp_path,
        g.COUNTER,
        listen='name = "plain"\nport = 8080\nprotocol = "http"\ntls = false',
    )
    with Running(manifest) as keep, keep.plain_socket() as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = read_all(s)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b"\r\n\r\n1")


def test_worker_processes_serve_and_report(tmp_path: Path) -> None:
    with Running(g.manifest(tmp_path, g.COUNTER), options=ServeOptions(processes=2)) as keep:
        for _ in range(6):
            assert get(keep, "/")[2] == b"1"
        stats = keep.stop_and_wait()
    assert stats is not None
    assert (stats.connections, stats.requests) == (6, 6)  # summed over both processes


def _worker_only(tmp_path: Path, wat: str) -> tuple[Workers, int, PreparedWorkload]:
    """A worker process alone on a bound socket: whatever answers, the worker did."""
    workload = PreparedWorkload.prepare(load_manifest(g.manifest(tmp_path, wat)))
    listeners = (Listen("web", 0, "http"),)
    sockets = [bind(listeners[0], "127.0.0.1")]
    identity = self_signed_identity()
    workers = Workers(workload, listeners, identity, ServeOptions(processes=2), sockets)
    return workers, sockets[0][0].getsockname()[1], workload


def test_a_worker_process_serves_the_same_sockets(tmp_path: Path) -> None:
    workers, port, _ = _worker_only(tmp_path, g.COUNTER)
    workers.start()
    try:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=60, context=_insecure())
        for _ in range(3):
            conn.request("GET", "/")
            assert conn.getresponse().read() == b"1"
        conn.close()
    finally:
        counts = workers.finish()
    assert (counts["connections"], counts["requests"]) == (1, 3)


def test_a_worker_refuses_a_workload_changed_on_disk(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    workers, _, workload = _worker_only(tmp_path, g.COUNTER)
    assert workload.manifest.workload.path is not None
    workload.manifest.workload.path.write_bytes(
        wasmtime.wat2wasm(g.writes(b"Content-Type: a/b\n\nswapped"))
    )
    workers.start()
    counts = workers.finish()
    assert counts == {}
    assert "worker process 1 could not start (the workload changed on disk" in caplog.text


def _insecure() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# -- stopping -----------------------------------------------------------------------------


def test_stop_finishes_in_flight_requests(tmp_path: Path) -> None:
    wat = guests.started_then_waits_for_release(b"Content-Type: a/b\n\nfinished")
    with Running(_held(tmp_path, wat)) as keep:
        result: list[tuple[int, bytes]] = []
        client = threading.Thread(target=lambda: result.append(get(keep, "/")[::2]))
        client.start()
        guests.wait_for_file(tmp_path / "signals" / "started", "the request's instance")
        keep.stop.set()  # while the request is in flight
        assert _refused_soon(keep.port())  # no longer accepting
        (tmp_path / "signals" / "release").touch()  # the instance finishes its answer
        client.join(60)
        stats = keep.stop_and_wait()
    assert result == [(200, b"finished")]
    assert stats is not None and stats.interrupted == 0


def test_stop_past_the_deadline_stops_the_instance(tmp_path: Path) -> None:
    manifest = _held(tmp_path, guests.STARTED_THEN_SPIN)
    with Running(manifest, options=ServeOptions(stop_timeout=0.3)) as keep:
        result: list[int] = []
        client = threading.Thread(target=lambda: result.append(get(keep, "/")[0]))
        client.start()
        guests.wait_for_file(tmp_path / "signals" / "started", "the request's instance")
        stats = keep.stop_and_wait()  # the instance spins: only the stop ends it
        client.join(60)
    assert result == [503]
    assert stats is not None and stats.interrupted == 1


def test_a_request_still_sending_its_body_when_the_stop_runs_out_gets_a_503(tmp_path: Path):
    """The docs promise a 503 to every request a stop cuts short, not only to one whose
    instance runs: a body still arriving past the stop's wait is answered, then closed."""
    manifest = g.manifest(tmp_path, g.COUNTER)
    options = ServeOptions(stop_timeout=0.3, request_timeout=600)
    with Running(manifest, options=options) as keep, keep.tls_socket(timeout=60) as s:
        s.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n"
        )
        # The 100 says the Keep has read the head and waits for the body: the request is in
        # flight. Then half the body; the Keep reads on (request_timeout is far off).
        assert s.recv(4096).startswith(b"HTTP/1.1 100 Continue\r\n")
        s.sendall(b"x" * 10)
        stats = keep.stop_and_wait()
        answer = read_all(s)
    assert answer.startswith(b"HTTP/1.1 503 "), answer
    assert b"the Keep is stopping" in answer
    assert stats is not None and stats.interrupted == 1 and stats.requests == 0


# -- refusals before serving --------------------------------------------------------------


def test_a_manifest_that_sets_stdout_is_refused(tmp_path: Path) -> None:
    from motte.manifest import ManifestError, Stdio

    manifest = g.manifest(tmp_path, g.COUNTER, extra='stdout = { file = "out.txt" }')
    with pytest.raises(ManifestError, match=r"Motte.toml:\d+: stdout cannot be set .* answer"):
        load_manifest(manifest)  # refused where it is written, naming the line
    # serve() refuses one built another way too.
    manifest = g.manifest(tmp_path, g.COUNTER)
    built = load_manifest(manifest).replace(
        stdout=Stdio("file", tmp_path / "out.txt", where="Motte.toml:2")
    )
    workload = PreparedWorkload.prepare(built)
    with pytest.raises(ServeError, match=r"Motte.toml:\d+: stdout cannot be set .* answer"):
        serve(workload, workload.manifest.listen, None)


def test_tls_needs_an_identity() -> None:
    workload = PreparedWorkload.prepare(load_manifest(HELLO))
    with pytest.raises(ServeError, match="'web' needs TLS but no identity"):
        serve(workload, workload.manifest.listen, None)


def test_a_port_in_use_is_a_clear_error() -> None:
    workload = PreparedWorkload.prepare(load_manifest(HELLO))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        listen = Listen("web", port, "http", where="Motte.toml:17")
        with pytest.raises(ServeError, match=f"Motte.toml:17: listener 'web'.*:{port}") as info:
            serve(
                workload,
                (listen,),
                self_signed_identity(),
                options=ServeOptions(host="127.0.0.1"),
            )
    assert info.value.hint is not None and "another process" in info.value.hint
