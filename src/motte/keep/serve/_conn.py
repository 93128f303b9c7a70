"""One connection as the other threads see it (:class:`Conn`), the :class:`Watchdog`
that enforces the deadlines its own thread cannot while it blocks, and what every
protocol does with its socket first and last (:func:`tls_handshake`,
:func:`close_after_answer`).

Each connection has a thread of its own that reads and writes its socket in blocking mode
(TLS in OpenSSL, in C, as the standard library's servers do) and runs its instances inline.
A blocking read has no timeout of its own: socket timeouts would turn every read into a
non-blocking attempt, a poll and a second attempt, each releasing and retaking the
interpreter lock, on the path every request takes. So the thread publishes what it waits
for (its :attr:`Conn.state`) and until when (:attr:`Conn.deadline`), and one watchdog
thread per process wakes every :data:`TICK` seconds and ends what has waited too long:

- a TLS handshake, an idle connection (before its first request or between requests), or
  an answer the client does not read: the socket is shut down under the blocked call,
  which returns; the connection closes without an answer (nobody is reading one);
- an HTTP instance past its wall time plus a grace (a guest blocked in a host call, out
  of the epoch's reach): the connection is taken over, and its client answered with a 502
  from another thread while the instance finishes on its own.

A request that has started to arrive is read with socket timeouts (the slow path: its
client is slow anyway), so it can still be answered with a 408. Every change of state goes
through :meth:`Conn.enter` under the connection's lock, so the watchdog and a stop never
act on a state the thread has already left.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from motte.keep.serve._server import Serving

#: How often the watchdog checks the deadlines: the resolution of every timeout.
TICK = 0.05
#: How long, once the Keep is stopping, a connection accepted before the stop has to send
#: its first request.
FRESH_GRACE = 1.0
#: How much a connection's thread reads from its socket at once.
READ_SIZE = 64 * 1024
#: How long closing a connection after an answer may wait for the client to take it (the
#: TLS close_notify, then the client's own close), so unread input does not reset it.
CLOSE_TIMEOUT = 1.0
#: Errors that mean the client has gone: nothing to answer, nobody to tell.
GONE = (ConnectionError, ssl.SSLError, EOFError, OSError)

#: What a connection's thread is doing (Conn.state).
HANDSHAKE = "handshake"
#: Waiting for the first byte of its first request.
FRESH = "fresh"
#: Waiting for the first byte of a next request.
KEEPALIVE = "keepalive"
#: A request arriving: read with socket timeouts of its own (no watchdog deadline).
READING = "reading"
#: An HTTP instance running for the request.
INSTANCE = "instance"
#: The answer being written.
WRITING = "writing"
#: A TCP connection streaming to and from its instance (it keeps its own time).
STREAM = "stream"

#: States the watchdog ends by shutting the socket down.
_SHUT_DOWN_AT_DEADLINE = frozenset({HANDSHAKE, FRESH, KEEPALIVE, WRITING})


class Conn:
    """An accepted connection, shared by its thread, the watchdog and the stop."""

    __slots__ = (
        "cancel",
        "deadline",
        "expired",
        "force",
        "lock",
        "overran",
        "overrun",
        "peer",
        "serving",
        "sock",
        "state",
    )

    def __init__(self, serving: Serving, sock: socket.socket, peer: Any, deadline: float) -> None:
        self.serving = serving
        self.sock = sock
        self.peer = peer
        self.lock = threading.Lock()
        self.state = HANDSHAKE
        #: time.monotonic() by which the current state must end, or None.
        self.deadline: float | None = deadline
        #: Set once the watchdog or a stop has ended the connection under its thread.
        self.expired = False
        #: Set when the watchdog answered for an instance that overran (see INSTANCE).
        self.overran = False
        #: Set to stop the connection's instance (a forced stop).
        self.cancel = threading.Event()
        #: Called (on a new thread) when an HTTP instance overruns: answers its client.
        self.overrun: Callable[[Conn], None] | None = None
        #: Called by a forced stop, besides setting ``cancel`` (TCP: close the pipes).
        self.force: Callable[[], None] | None = None

    def enter(self, state: str, deadline: float | None) -> bool:
        """Move to ``state`` until ``deadline``; False if the connection has been ended
        under its thread (the thread then closes it, or leaves it to whoever took it over)."""
        with self.lock:
            if self.expired:
                return False
            self.state = state
            self.deadline = deadline
            return True

    def idle(self, first: bool, wait: float, grace: float) -> bool:
        """Start waiting for a request (``first``: the connection's first) for ``wait``
        seconds; False when the connection must close instead: it has been ended, or the
        Keep is stopping and this is a keep-alive wait (a first request still gets
        ``grace`` seconds: it may be on its way)."""
        now = time.monotonic()
        with self.lock:
            if self.expired:
                return False
            if self.serving.stopping:
                if not first:
                    return False
                wait = min(wait, grace)
            self.state = FRESH if first else KEEPALIVE
            self.deadline = now + wait
            return True

    def shut_down(self) -> None:
        """End the connection under its thread: the blocked call returns. Called with the
        lock held. The socket itself stays open (its thread closes it): a descriptor
        number must not be reused under a thread that still uses it."""
        self.expired = True
        self.deadline = None
        # socket.socket's own shutdown: an SSLSocket's would drop its TLS state.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)


class Watchdog:
    """The thread that ends connections whose deadline has passed (see the module doc)."""

    def __init__(self, serving: Serving, tick: float = TICK) -> None:
        self._serving = serving
        self._tick = tick
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="motte-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread.ident is not None:  # started
            self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(self._tick):
            now = time.monotonic()
            for conn in self._serving.snapshot():
                deadline = conn.deadline
                if deadline is not None and now >= deadline:
                    expire(conn, now)


def expire(conn: Conn, now: float) -> None:
    """End ``conn`` if its deadline has passed (checked again under its lock)."""
    with conn.lock:
        if conn.expired or conn.deadline is None or now < conn.deadline:
            return
        if conn.state in _SHUT_DOWN_AT_DEADLINE:
            conn.shut_down()
        elif conn.state == INSTANCE and conn.overrun is not None:
            conn.expired = conn.overran = True
            conn.deadline = None
            threading.Thread(
                target=conn.overrun, args=(conn,), name="motte-overrun", daemon=True
            ).start()


def tls_handshake(conn: Conn, context: ssl.SSLContext) -> bool:
    """Wrap the connection's socket in TLS and handshake (bounded by the watchdog); False
    if the client failed it, went away or was too slow."""
    with conn.lock:
        if conn.expired:
            return False
        conn.sock = context.wrap_socket(conn.sock, server_side=True, do_handshake_on_connect=False)
    try:
        conn.sock.do_handshake()  # type: ignore[attr-defined]
    except (OSError, ssl.SSLError, ValueError):
        return False
    return True


def close_after_answer(sock: socket.socket) -> None:
    """Before the close: the TLS close_notify, the end of our side, then whatever the client
    still sends, read and dropped until it closes (at most CLOSE_TIMEOUT): closing with
    unread input would reset the connection and could destroy the answer in flight."""
    with contextlib.suppress(*GONE, ValueError):
        if isinstance(sock, ssl.SSLSocket):
            sock.settimeout(0.0)  # send our close_notify; do not wait for the client's
            with contextlib.suppress(*GONE):
                sock.unwrap()
        socket.socket.shutdown(sock, socket.SHUT_WR)
        deadline = time.monotonic() + CLOSE_TIMEOUT
        while (remaining := deadline - time.monotonic()) > 0:
            sock.settimeout(remaining)
            if not socket.socket.recv(sock, READ_SIZE):  # raw bytes: TLS has ended
                return
