"""Accepting connections: the thread that accepts on every listening socket of a serving
process (:class:`Acceptor`), and a thread per accepted connection running the listener's
protocol (``_http`` or ``_tcp``), or a 503 when every slot is taken (see ``_server``)."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from motte.keep.serve._conn import Conn
from motte.keep.serve._http import refuse_connection, serve_http
from motte.keep.serve._tcp import serve_tcp

if TYPE_CHECKING:
    from motte.keep.serve._server import Listening, Serving

log = logging.getLogger("motte.keep.serve")

#: Connections accepted at most per wake-up of the accepting thread, per socket.
ACCEPT_BATCH = 32
#: How long a connection past max_connections may take to receive its 503.
REFUSE_TIMEOUT = 1.0


class Acceptor:
    """The thread that accepts on every listening socket of this process and starts a
    thread per connection; :meth:`stop` closes the sockets (no new connections)."""

    def __init__(self, serving: Serving, listening: list[Listening]) -> None:
        self._serving = serving
        self._listening = listening
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="motte-accept", daemon=True)
        self._stopped = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        os.write(self._wake_w, b"x")
        self._thread.join()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        try:
            for lst in self._listening:
                for sock in lst.sockets:
                    sock.setblocking(False)
                    selector.register(sock, selectors.EVENT_READ, lst)
            selector.register(self._wake_r, selectors.EVENT_READ, None)
            while True:
                for key, _ in selector.select():
                    if key.data is None:
                        return
                    self._accept(key.fileobj, key.data)  # type: ignore[arg-type]
        finally:
            selector.close()
            for lst in self._listening:
                for sock in lst.sockets:
                    sock.close()  # this process's copy; the kernel refuses once all are closed

    def _accept(self, sock: socket.socket, lst: Listening) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                raw, peer = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # out of descriptors, or a connection reset in the queue
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.warning("%s: cannot accept: %s", lst.listen.name, e.strerror)
                    time.sleep(0.1)  # let connections close before trying again
                return
            start_connection(self._serving, raw, peer, lst)


def start_connection(serving: Serving, raw: socket.socket, peer: Any, lst: Listening) -> None:
    """Give an accepted connection its thread, or refuse it when every slot is taken."""
    options = serving.options
    if len(serving.connections) >= options.max_connections:
        serving.count("rejected")
        if lst.http and serving.refusing_one():
            threading.Thread(
                target=refuse_connection,
                args=(serving, raw, lst.context, REFUSE_TIMEOUT),
                name="motte-refuse",
                daemon=True,
            ).start()
            return
        if not lst.http:
            log.warning("%s: connection refused: every connection slot is busy", lst.listen.name)
        raw.close()
        return
    with contextlib.suppress(OSError):
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = Conn(serving, raw, peer, time.monotonic() + options.handshake_timeout)
    serving.add(conn)
    handler = serve_http if lst.http else serve_tcp
    thread = threading.Thread(
        target=_connection, args=(handler, conn, lst), name="motte-conn", daemon=True
    )
    try:
        thread.start()
    except RuntimeError:  # no thread to be had (a process limit): refuse, keep serving
        serving.remove(conn)
        raw.close()
        log.warning("%s: cannot start a thread for a connection", lst.listen.name)


def _connection(handler: Callable[[Conn, Listening], None], conn: Conn, lst: Listening) -> None:
    try:
        handler(conn, lst)
    except Exception:  # a bug: log it, keep serving the other connections
        log.exception("%s: internal error on a connection", lst.listen.name)
    finally:
        # A connection taken over by the watchdog is closed by whoever answers for it.
        if not conn.overran:
            with contextlib.suppress(OSError):
                conn.sock.close()
        conn.serving.remove(conn)
