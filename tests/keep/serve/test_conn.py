"""A connection's states and the watchdog's decisions, on a socket pair (no server)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from motte.keep.serve._conn import (
    FRESH,
    INSTANCE,
    KEEPALIVE,
    READING,
    WRITING,
    Conn,
    Watchdog,
    expire,
)


class _Serving:
    """What a Conn and the watchdog ask of the serving process."""

    def __init__(self) -> None:
        self.stopping = False
        self.connections: list[Conn] = []

    def snapshot(self) -> list[Conn]:
        return list(self.connections)


@pytest.fixture
def pair() -> Iterator[tuple[Conn, socket.socket]]:
    ours, theirs = socket.socketpair()
    theirs.settimeout(10)
    conn = Conn(_Serving(), ours, ("192.0.2.7", 5000), time.monotonic() + 60)  # type: ignore[arg-type]
    yield conn, theirs
    ours.close()
    theirs.close()


@pytest.mark.parametrize("state", [KEEPALIVE, FRESH, WRITING])
def test_a_wait_past_its_deadline_is_shut_down(
    pair: tuple[Conn, socket.socket], state: str
) -> None:
    conn, theirs = pair
    assert conn.enter(state, 100.0)
    expire(conn, 99.0)  # not yet
    assert not conn.expired
    expire(conn, 100.0)
    assert conn.expired
    assert theirs.recv(10) == b""  # the peer sees the end
    assert not conn.enter(READING, None)  # the thread learns it has been ended


def test_a_request_being_read_keeps_its_own_time(pair: tuple[Conn, socket.socket]) -> None:
    conn, _ = pair
    assert conn.enter(READING, None)
    expire(conn, float("inf"))
    assert not conn.expired


def test_an_instance_past_its_deadline_is_taken_over(pair: tuple[Conn, socket.socket]) -> None:
    conn, _ = pair
    answered = threading.Event()
    conn.overrun = lambda c: answered.set()
    assert conn.enter(INSTANCE, 100.0)
    expire(conn, 100.5)
    assert answered.wait(10)  # on a thread of its own
    assert conn.overran and conn.expired
    assert not conn.enter(WRITING, 200.0)  # the instance's thread leaves the socket alone


def test_a_stop_closes_keep_alive_waits_and_shortens_first_ones(
    pair: tuple[Conn, socket.socket],
) -> None:
    conn, _ = pair
    conn.serving.stopping = True  # type: ignore[attr-defined]
    assert not conn.idle(first=False, wait=15.0, grace=1.0)
    before = time.monotonic()
    assert conn.idle(first=True, wait=30.0, grace=1.0)
    assert conn.state == FRESH
    assert conn.deadline is not None and conn.deadline <= before + 1.0 + 0.5


def test_the_watchdog_ends_what_has_waited_too_long(pair: tuple[Conn, socket.socket]) -> None:
    conn, theirs = pair
    serving = conn.serving
    serving.connections.append(conn)  # type: ignore[attr-defined]
    assert conn.idle(first=False, wait=0.1, grace=1.0)
    watchdog = Watchdog(serving, tick=0.02)  # type: ignore[arg-type]
    watchdog.start()
    try:
        assert theirs.recv(10) == b""
    finally:
        watchdog.stop()
    assert conn.expired


def test_a_watchdog_never_started_stops_quietly() -> None:
    # serve() stops it in a finally: a listener that failed to set up (a bad TLS identity)
    # must report that failure, not "cannot join thread before it is started".
    Watchdog(_Serving()).stop()  # type: ignore[arg-type]
