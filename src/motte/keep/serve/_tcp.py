"""TCP listeners: each connection a fresh instance whose standard input and output are the
connection's two directions, streamed through pipes as the bytes come.

Semantics (docs/keeps.md, "Listeners"):

- The guest reads what the client sends as it arrives (an interactive protocol works: a
  line in, a line out). It reads end of file when the client closes its side: a TCP
  half-close, or TLS's close_notify (TLS 1.3 lets the other side go on writing).
- What the guest writes is sent to the client as it is written; the connection closes
  when the guest exits (after everything it wrote has been sent) or when it is stopped.
  Once the guest no longer reads, what the client still sends is dropped.
- The manifest's limits hold per connection. A guest blocked in a read or a write when its
  wall time runs out is released by closing its pipes (end of file, EPIPE), so it returns
  to wasm, where the limit stops it.

The instance runs on the connection's thread; a second thread, the pump, moves the bytes
between the socket and the pipes, all non-blocking around one poll (a TLS connection is
used by one thread only: OpenSSL's objects are not for two at once). Pipes, not memory:
wasmtime opens a guest's stdio by path, and ``/proc/self/fd/N`` of a pipe gives it its own
blocking end while the Keep's end is non-blocking.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import ssl
import threading
import time
from typing import TYPE_CHECKING

from motte.errors import MotteError
from motte.keep.serve._conn import GONE, READ_SIZE, STREAM, close_after_answer, tls_handshake

if TYPE_CHECKING:
    from motte.keep import RunResult
    from motte.keep.serve._conn import Conn
    from motte.keep.serve._server import Listening

log = logging.getLogger("motte.keep.serve")

#: After the wall-time limit, how long a guest gets to stop at a tick by itself before its
#: pipes are closed under it.
UNBLOCK_GRACE = 0.05
#: Bytes buffered in the Keep per direction before it stops reading that direction.
BUFFERED = 256 * 1024


def serve_tcp(conn: Conn, lst: Listening) -> None:
    """Run one instance for this connection, with the connection as its stdin and stdout."""
    serving = conn.serving
    listener = lst.listen.name
    if not serving.slots.admit():
        serving.count("rejected")
        log.warning("%s: connection refused: every instance is busy", listener)
        return
    try:
        if lst.context is not None and not tls_handshake(conn, lst.context):
            return
        if not conn.enter(STREAM, None):
            return
        _stream(conn, listener)
    finally:
        serving.slots.release()


def _stream(conn: Conn, listener: str) -> None:
    serving = conn.serving
    label = f"{listener} #{serving.next_request_number()}"
    wall = serving.prepared.manifest.limits.wall_time
    guest_in, keep_in = os.pipe()
    keep_out, guest_out = os.pipe()
    pump = _Pump(conn.sock, keep_in, keep_out, serving.options.request_timeout)
    conn.force = pump.force
    result: RunResult | None = None
    serving.slots.start()
    try:
        if not conn.cancel.is_set():
            pump.start(time.monotonic() + wall + UNBLOCK_GRACE)
            try:
                result = serving.run_stream(guest_in, guest_out, conn.cancel)
            except MotteError as e:
                serving.count("bad_gateway")
                log.warning("%s: the instance could not start: %s", label, e.message)
    finally:
        # Closed only after the instance ran, so a descriptor number can never be reused
        # under a guest about to open it; the pump then reads end of file.
        os.close(guest_in)
        os.close(guest_out)
        serving.slots.finish()
        pump.join()
    if pump.sent_everything:
        close_after_answer(conn.sock)
    if result is None:
        if conn.cancel.is_set():
            serving.count("interrupted")
        return
    serving.guest_stderr(label, result.stderr)
    if conn.cancel.is_set():
        serving.count("interrupted")
    elif pump.timed_out and (result.trap is None or result.trap.kind != "wall_time"):
        # Released from a blocked read or write by closing its pipes: it may have ended
        # on its own before its next tick noticed the limit.
        serving.count("bad_gateway")
        log.warning("%s: the guest was stopped: wall-clock time limit reached: %g s", label, wall)
    elif result.trap is not None:
        serving.count("bad_gateway")
        log.warning("%s: the guest was stopped: %s", label, result.trap.message)
    elif result.exit_code:
        log.info("%s: the guest exited with %d", label, result.exit_code)


class _Pump:
    """Client -> guest stdin and guest stdout -> client, on a thread of its own, until the
    guest's output has ended and been sent (or cannot be: the client is gone, or does not
    read for ``write_timeout`` seconds)."""

    def __init__(
        self, sock: socket.socket, to_guest: int, from_guest: int, write_timeout: float
    ) -> None:
        self._sock = sock
        self._in: int | None = to_guest
        self._out: int | None = from_guest
        os.set_blocking(to_guest, False)
        os.set_blocking(from_guest, False)
        self._write_timeout = write_timeout
        self._wake_r, self._wake_w = os.pipe()
        self._wake_lock = threading.Lock()  # force() never writes to a closed descriptor
        self._forced = False
        self._unblock_at = 0.0
        self._thread: threading.Thread | None = None
        #: Set when the guest's pipes were closed at its wall time.
        self.timed_out = False
        #: Set when everything the guest wrote reached the client's socket.
        self.sent_everything = False

    def start(self, unblock_at: float) -> None:
        self._unblock_at = unblock_at
        self._thread = threading.Thread(target=self._run, name="motte-pump", daemon=True)
        self._thread.start()

    def force(self) -> None:
        """Close the guest's pipes now (a forced stop)."""
        self._forced = True
        with self._wake_lock, contextlib.suppress(OSError):
            if self._wake_w >= 0:
                os.write(self._wake_w, b"x")

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()
        self._close_pipes()
        with self._wake_lock:
            os.close(self._wake_r)
            os.close(self._wake_w)
            self._wake_r = self._wake_w = -1

    def _close_pipes(self) -> None:
        for name in ("_in", "_out"):
            fd = getattr(self, name)
            if fd is not None:
                setattr(self, name, None)
                os.close(fd)

    def _run(self) -> None:
        with contextlib.suppress(*GONE):
            self._sock.setblocking(False)
            self._pump()
        with contextlib.suppress(*GONE):
            self._sock.setblocking(True)

    def _pump(self) -> None:
        sock = self._sock
        from_client = b""  # read from the client, not yet written to the guest
        to_client = b""  # written by the guest, not yet sent
        client_done = False
        waiting_since: float | None = None  # when sending to the client last stalled
        poller = select.poll()
        while True:
            progress = False
            sock_events = 0
            if (self._forced or time.monotonic() >= self._unblock_at) and self._out is not None:
                self.timed_out = not self._forced
                self._close_pipes()  # the guest reads end of file, or writes into EPIPE
            # 1. client -> buffer (dropped once the guest no longer reads)
            if not client_done and len(from_client) < BUFFERED:
                try:
                    data = sock.recv(READ_SIZE)
                except (ssl.SSLWantReadError, BlockingIOError):
                    sock_events |= select.POLLIN
                except ssl.SSLWantWriteError:
                    sock_events |= select.POLLOUT
                except GONE:
                    client_done = True
                    progress = True
                else:
                    progress = True
                    if not data:
                        client_done = True
                    elif self._in is not None:
                        from_client += data
            # 2. buffer -> guest stdin; its end of file once the client's side has ended
            if from_client and self._in is not None:
                try:
                    from_client = from_client[os.write(self._in, from_client) :]
                    progress = True
                except BlockingIOError:
                    pass
                except OSError:  # the guest has exited or closed its stdin
                    from_client = b""
                    self._close_in()
            if self._in is None:
                from_client = b""
            elif client_done and not from_client:
                self._close_in()
            # 3. guest stdout -> buffer
            if self._out is not None and len(to_client) < BUFFERED:
                try:
                    data = os.read(self._out, READ_SIZE)
                except BlockingIOError:
                    pass
                else:
                    progress = True
                    if not data:
                        os.close(self._out)
                        self._out = None
                    else:
                        to_client += data
            # 4. buffer -> client
            if to_client:
                try:
                    to_client = to_client[sock.send(to_client) :]
                    progress = True
                    waiting_since = None
                except (ssl.SSLWantWriteError, BlockingIOError):
                    sock_events |= select.POLLOUT
                except ssl.SSLWantReadError:
                    sock_events |= select.POLLIN
                except GONE:
                    self._close_pipes()  # nobody to send to: the guest gets EPIPE
                    return
            if self._out is None and not to_client:
                self.sent_everything = True
                return
            if progress:
                continue
            now = time.monotonic()
            if to_client and sock_events & select.POLLOUT:
                waiting_since = waiting_since or now
                if now - waiting_since >= self._write_timeout:
                    self._close_pipes()  # the client does not read: give up
                    return
            self._wait(poller, sock_events, from_client, to_client, now, waiting_since)

    def _wait(
        self,
        poller: select.poll,
        sock_events: int,
        from_client: bytes,
        to_client: bytes,
        now: float,
        waiting_since: float | None,
    ) -> None:
        """Poll until one of the four steps can progress, the wall time, a force, or the
        send deadline."""
        fds = {self._sock.fileno(): sock_events, self._wake_r: select.POLLIN}
        if self._in is not None and from_client:
            fds[self._in] = select.POLLOUT
        if self._out is not None and len(to_client) < BUFFERED:
            fds[self._out] = select.POLLIN
        for fd, events in fds.items():
            if events:
                poller.register(fd, events)
        timeouts = []
        if self._out is not None:
            timeouts.append(self._unblock_at - now)
        if waiting_since is not None:
            timeouts.append(waiting_since + self._write_timeout - now)
        timeout = max(0.0, min(timeouts)) if timeouts else None
        try:
            for fd, _ in poller.poll(None if timeout is None else timeout * 1000 + 1):
                if fd == self._wake_r:
                    os.read(self._wake_r, 64)
        finally:
            for fd, events in fds.items():
                if events:
                    poller.unregister(fd)

    def _close_in(self) -> None:
        if self._in is not None:
            os.close(self._in)
            self._in = None
