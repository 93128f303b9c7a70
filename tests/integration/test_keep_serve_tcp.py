"""TCP listeners on 127.0.0.1: each connection a fresh instance, stdin and stdout streamed
through pipes (real TLS, the real runtime)."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from motte.keep.serve import ServeOptions
from tests.keep.serve import cgi_guests as g
from tests.keep.serve.harness import Running, read_all

pytestmark = pytest.mark.integration

LOGGER = "motte.keep.serve"
TLS = 'name = "raw"\nport = 9000\nprotocol = "tcp"'
PLAIN = 'name = "raw"\nport = 9000\nprotocol = "tcp"\ntls = false'


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def test_the_stream_is_interactive_over_tls(tmp_path: Path) -> None:
    """Each chunk comes back before the client sends the next: stdin and stdout stream."""
    with Running(g.manifest(tmp_path, g.STREAM_ECHO, listen=TLS)) as keep:
        with keep.tls_socket() as s:
            for line in (b"hello\n", b"world\n", b"x" * 3000):
                s.sendall(line)
                assert _recv_exactly(s, len(line)) == line
        stats = keep.stop_and_wait()
    assert stats is not None and stats.connections == 1


def test_half_close_gives_the_guest_end_of_file(tmp_path: Path) -> None:
    manifest = g.manifest(tmp_path, g.ECHO_AT_EOF, listen=PLAIN)
    with Running(manifest) as keep, keep.plain_socket() as s:
        s.sendall(b"all of the request")
        s.shutdown(socket.SHUT_WR)  # the guest reads end of file, then answers
        assert read_all(s) == b"all of the request"


def test_a_tls_close_notify_gives_the_guest_end_of_file(tmp_path: Path) -> None:
    """TLS 1.3 lets a side that has sent close_notify go on reading: the guest reads end of
    file and its answer still reaches the client (driven through memory BIOs: the standard
    library's SSLSocket cannot read after its own close_notify)."""
    with Running(g.manifest(tmp_path, g.ECHO_AT_EOF, listen=TLS)) as keep:
        raw = keep.plain_socket()
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = keep.client_context().wrap_bio(incoming, outgoing, server_hostname="localhost")

        def flush() -> None:
            if outgoing.pending:
                raw.sendall(outgoing.read())

        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                flush()
                incoming.write(raw.recv(65536))
        tls.write(b"all of the request")
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.unwrap()  # our close_notify; the Keep's comes after the answer
        flush()
        answer = b""
        while data := raw.recv(65536):
            incoming.write(data)
            with contextlib.suppress(ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                while chunk := tls.read(65536):
                    answer += chunk
        raw.close()
    assert answer == b"all of the request"


def test_past_max_connections_a_connection_is_closed_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    options = ServeOptions(max_connections=1)
    with Running(g.manifest(tmp_path, g.STREAM_ECHO, listen=PLAIN), options=options) as keep:
        with keep.plain_socket() as first:
            first.sendall(b"a")
            assert _recv_exactly(first, 1) == b"a"  # holds the only connection slot
            with keep.plain_socket() as second:
                assert read_all(second) == b""
        stats = keep.stop_and_wait()
    assert "every connection slot is busy" in caplog.text
    assert stats is not None and stats.rejected == 1


def test_each_connection_gets_a_fresh_instance(tmp_path: Path) -> None:
    with Running(g.manifest(tmp_path, g.COUNTER, listen=PLAIN)) as keep:
        answers = []
        for _ in range(3):
            with keep.plain_socket() as s:
                answers.append(read_all(s))
    assert answers == [b"Content-Type: text/plain\n\n1"] * 3


def test_an_idle_client_is_ended_at_the_wall_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The guest is blocked reading stdin (a host call, out of the epoch's reach): the Keep
    closes its pipes at the limit, and the connection ends. (The client sends nothing: an
    echo it waited for could come after the short wall time on a loaded machine.)"""
    caplog.set_level(logging.INFO, LOGGER)
    manifest = g.manifest(
        tmp_path, g.STREAM_ECHO, listen=TLS, limits="memory = 16\ncpu_time = 5\nwall_time = 0.4"
    )
    with Running(manifest) as keep:
        with keep.tls_socket() as s:
            assert read_all(s) == b""  # closed by the Keep, not by us
        stats = keep.stop_and_wait()
    assert "wall-clock time limit reached: 0.4 s" in caplog.text
    assert stats is not None and stats.bad_gateway == 1


def test_a_guest_that_stops_reading_does_not_hang_the_client(tmp_path: Path) -> None:
    manifest = g.manifest(tmp_path, g.writes(b"bye\n"), listen=PLAIN)
    with Running(manifest) as keep, keep.plain_socket() as s:
        s.settimeout(10)  # a hang fails the test (socket.timeout)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(b"z" * (4 * 1024 * 1024))  # far more than the pipes hold
        answer = read_all(s)
    # The Keep stops reading once the guest has exited: a reset may overtake the answer.
    assert answer in (b"bye\n", b"")


def test_a_trapping_guest_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    with Running(g.manifest(tmp_path, g.UNREACHABLE, listen=PLAIN)) as keep:
        with keep.plain_socket() as s:
            assert read_all(s) == b""
        stats = keep.stop_and_wait()
    assert "the guest was stopped: unreachable instruction" in caplog.text
    assert stats is not None and stats.bad_gateway == 1


def test_saturation_closes_new_connections(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    options = ServeOptions(max_instances=1, max_queued=0)
    with Running(g.manifest(tmp_path, g.STREAM_ECHO, listen=PLAIN), options=options) as keep:
        with keep.plain_socket() as first:
            first.sendall(b"a")
            assert _recv_exactly(first, 1) == b"a"  # holds the only slot
            with keep.plain_socket() as second:
                assert read_all(second) == b""
        stats = keep.stop_and_wait()
    assert "every instance is busy" in caplog.text
    assert stats is not None and stats.rejected == 1


def _echoing(tmp_path: Path) -> Path:
    return g.manifest(
        tmp_path, g.STREAM_ECHO, listen=PLAIN, limits="memory = 16\ncpu_time = 60\nwall_time = 60"
    )


def test_stop_waits_for_an_open_connection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    with Running(_echoing(tmp_path), options=ServeOptions(stop_timeout=600)) as keep:
        s = keep.plain_socket(timeout=60)
        s.sendall(b"a")
        assert _recv_exactly(s, 1) == b"a"
        stopped = threading.Thread(target=keep.stop_and_wait)
        stopped.start()
        deadline = time.monotonic() + 60
        while "stopping: waiting up to 600 s for 1 connection(s)" not in caplog.text:
            assert time.monotonic() < deadline, "the stop did not begin"
            time.sleep(0.02)
        s.sendall(b"b")  # still served while the stop waits
        assert _recv_exactly(s, 1) == b"b"
        s.shutdown(socket.SHUT_WR)  # the guest reads end of file and exits
        assert read_all(s) == b""
        s.close()
        stopped.join(60)  # long before the 600 s stop_timeout: the connection ended
        assert not stopped.is_alive()
    assert keep.stats is not None and keep.stats.interrupted == 0


def test_stop_ends_an_open_connection_at_its_deadline(tmp_path: Path) -> None:
    with Running(_echoing(tmp_path), options=ServeOptions(stop_timeout=0.3)) as keep:
        s = keep.plain_socket(timeout=60)
        s.sendall(b"a")
        assert _recv_exactly(s, 1) == b"a"  # the instance runs, blocked reading its stdin
        stopped = threading.Thread(target=keep.stop_and_wait)
        stopped.start()
        assert read_all(s) == b""  # ended at the deadline (the client never closes it)
        stopped.join(60)
        s.close()
    assert keep.stats is not None and keep.stats.interrupted == 1
