"""``serve``: the Keep's listeners, a thread per connection that runs its instances inline,
optionally in several processes, and a graceful stop.

In each serving process one thread accepts on every listening socket; each accepted
connection gets a thread of its own (at most ``max_connections``), which does the TLS
handshake and reads and writes in blocking mode (TLS in OpenSSL's C, never pumped through
Python), parses with h11, and runs each request's instance on itself: no hand-off between
threads on the path of a request. A watchdog thread enforces the deadlines a blocking call
cannot (``_conn``). The worker processes (``_worker``) each do the same on the same
listening sockets; the kernel hands each new connection to one of them.

Stopping (SIGTERM or SIGINT in the main thread, or the caller's ``stop`` event):

1. the listening sockets close: no new connections;
2. idle keep-alive connections close; a connection that has not sent its first request
   gets ``FRESH_GRACE`` seconds to send it, and its answer says ``Connection: close``;
3. in-flight instances (HTTP requests, TCP connections) get ``stop_timeout`` seconds (the
   manifest's wall time unless set) to finish;
4. then whatever still runs is stopped (at the guest's next epoch tick, its pipes closed),
   its HTTP client gets a 503, and serve returns. A guest blocked in a host call cannot be
   stopped before the call returns: its thread is a daemon and does not keep the process.

A second SIGTERM or SIGINT skips the wait of step 3. Worker processes stop the same way,
told by the parent.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from motte.keep.serve._accept import Acceptor
from motte.keep.serve._conn import FRESH, FRESH_GRACE, HANDSHAKE, KEEPALIVE, Conn, Watchdog
from motte.keep.serve._errors import ServeError
from motte.keep.serve._identity import TlsIdentity, server_context
from motte.keep.serve._options import BoundListener, ServeOptions, ServeStats, default_instances
from motte.keep.serve._pool import InstanceSlots
from motte.keep.serve._renew import Identities, Renewer

if TYPE_CHECKING:
    import ssl

    from motte.keep import PreparedWorkload, RunResult
    from motte.manifest import Listen

log = logging.getLogger("motte.keep.serve")

#: How long, after a forced stop, instances get to notice it (one epoch tick is 10 ms).
FORCE_GRACE = 1.0
#: How often the main thread looks at the stop flags and, while stopping, at the
#: connections still open.
STOP_POLL = 0.02
#: Bound on a guest's stderr written to the log per instance.
MAX_LOGGED_STDERR = 4096
BACKLOG = 1024
#: Connections past max_connections answered 503 at once (each on a short-lived thread
#: bounded by ``_accept.REFUSE_TIMEOUT``); beyond this many at a time they are closed unanswered.
MAX_REFUSING = 16


class Listening:
    """One listener as this process serves it: its sockets, its TLS context (None for
    plain text) and what a caller is told about it."""

    __slots__ = ("bound", "context", "http", "listen", "sockets")

    def __init__(
        self, listen: Listen, sockets: list[socket.socket], context: ssl.SSLContext | None
    ) -> None:
        self.listen = listen
        self.sockets = sockets
        self.context = context
        self.http = listen.protocol == "http"
        addresses = tuple((str(s.getsockname()[0]), int(s.getsockname()[1])) for s in sockets)
        self.bound = BoundListener(
            listen.name, listen.protocol, listen.tls, addresses[0][1], addresses
        )


class Serving:
    """What every connection of this process shares: the workload, the options, the
    instance slots, the open connections, the counters and the stop state."""

    def __init__(self, prepared: PreparedWorkload, options: ServeOptions, tag: str = "") -> None:
        self.prepared = prepared
        self.options = options
        running = options.max_instances or default_instances(options.processes)
        self.slots = InstanceSlots(running, options.max_queued)
        self.stats = ServeStats()
        #: Set once a stop has begun (read without the lock: a plain flag).
        self.stopping = False
        self.connections: set[Conn] = set()
        self.refusing = 0
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._tag = tag
        manifest = prepared.manifest
        self._stderr_file: int | None = None
        if manifest.stderr.kind == "file":
            assert manifest.stderr.path is not None
            try:
                self._stderr_file = os.open(
                    manifest.stderr.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
                )
            except OSError as e:
                raise ServeError(
                    f"{manifest.stderr.where}: stderr.file {manifest.stderr.path}: {e.strerror}"
                ) from None
        # "inherit": the guest writes to the Keep's stderr itself (no copy, no capture);
        # "null": nothing is captured; a file is appended to by the Keep (each instance
        # would truncate it otherwise).
        self._stderr_spec = {"inherit": "inherit", "null": "null"}.get(
            manifest.stderr.kind, "capture"
        )

    # -- shared state ---------------------------------------------------------------------

    def count(self, name: str) -> None:
        """Add one to a counter of :class:`ServeStats`."""
        with self._lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    def add(self, conn: Conn) -> None:
        with self._lock:
            self.connections.add(conn)
            self.stats.connections += 1

    def remove(self, conn: Conn) -> None:
        with self._lock:
            self.connections.discard(conn)

    def refusing_one(self) -> bool:
        """Take one of the MAX_REFUSING places for answering a connection with a 503."""
        with self._lock:
            if self.refusing >= MAX_REFUSING:
                return False
            self.refusing += 1
            return True

    def refused(self) -> None:
        with self._lock:
            self.refusing -= 1

    def snapshot(self) -> list[Conn]:
        with self._lock:
            return list(self.connections)

    def busy(self) -> int:
        """Connections still open, not counting those whose client was answered for an
        instance that overran (they wait only for their instance to return)."""
        return sum(1 for conn in self.snapshot() if not conn.overran)

    def next_request_number(self) -> str:
        """A label for the log: ``17``, or ``w1.17`` in worker process 1."""
        number = next(self._numbers)
        return f"{self._tag}.{number}" if self._tag else str(number)

    # -- instances ------------------------------------------------------------------------

    def run_instance(self, env: dict[str, str], body: bytes, cancel: threading.Event) -> RunResult:
        """One HTTP request's instance: the request on stdin, the answer captured. With
        sealed volumes, under their shared gate; a flush the guest asked for is done before
        this returns, so the answer acknowledges it (VolumeNotPersisted if it failed)."""
        volumes = self.prepared.volumes
        with volumes.instance() if volumes is not None else contextlib.nullcontext():
            result = self.prepared.run(
                env=env,
                stdin=body,
                stdout="capture",
                stderr=self._stderr_spec,  # type: ignore[arg-type]
                max_output=self.options.max_response,
                cancel=cancel,
            )
        if volumes is not None:
            volumes.after_instance()
        return result

    def run_stream(self, stdin_fd: int, stdout_fd: int, cancel: threading.Event) -> RunResult:
        """One TCP connection's instance: stdin and stdout are the guest's pipe ends."""
        volumes = self.prepared.volumes
        with volumes.instance() if volumes is not None else contextlib.nullcontext():
            result = self.prepared.run(
                stdin=stdin_fd,
                stdout=stdout_fd,
                stderr=self._stderr_spec,  # type: ignore[arg-type]
                max_output=self.options.max_response,
                cancel=cancel,
            )
        if volumes is not None:
            volumes.after_instance()
        return result

    def guest_stderr(self, label: str, data: bytes | None) -> None:
        """A captured stderr goes to the manifest's stderr file (appended) or to the log."""
        if not data:
            return
        if self._stderr_file is not None:
            with contextlib.suppress(OSError):
                os.write(self._stderr_file, data)
            return
        shown = data[:MAX_LOGGED_STDERR].decode("utf-8", errors="replace")
        for line in shown.splitlines():
            log.info("%s: guest stderr: %s", label, line)
        if len(data) > MAX_LOGGED_STDERR:
            log.info("%s: guest stderr: (%d more bytes)", label, len(data) - MAX_LOGGED_STDERR)

    def close(self) -> None:
        if self._stderr_file is not None:
            os.close(self._stderr_file)
            self._stderr_file = None


def check_serveable(
    prepared: PreparedWorkload, listeners: Sequence[Listen], identity: TlsIdentity | None
) -> None:
    """Refuse what cannot be served: no listener, TLS without an identity, or a manifest that
    sets stdin or stdout (each instance's stdin and stdout are its client's)."""
    if not listeners:
        raise ServeError("nothing to serve: the manifest declares no [[listen]] entry")
    manifest = prepared.manifest
    for name in ("stdin", "stdout"):
        stdio = getattr(manifest, name)
        if stdio.kind != "inherit":
            where = stdio.where or str(manifest.source or "the manifest")
            what = "request" if name == "stdin" else "answer"
            raise ServeError(
                f"{where}: {name} cannot be set for a workload with [[listen]] entries: "
                f"each instance's {name} is its client's {what}",
                hint=f"remove the {name} key",
            )
    if identity is None and any(listen.tls for listen in listeners):
        names = ", ".join(repr(lst.name) for lst in listeners if lst.tls)
        raise ServeError(
            f"listener {names} needs TLS but no identity was given",
            hint="pass self_signed_identity() or a Steward-issued TlsIdentity",
        )


def bind(listen: Listen, host: str | None) -> list[socket.socket]:
    """The listening socket(s) for one listener, at ``host`` if given, else at the address
    the host granted it (``listen.address``): loopback when none (127.0.0.1 and, where the
    host has IPv6, ::1 on the same port); ``::`` is every interface (IPv6 and IPv4 on one
    dual-stack socket where the host has one)."""
    if host is None:
        host = listen.address
    try:
        if host is None:
            return _bind_loopback(listen.port)
        if host == "::":
            if socket.has_dualstack_ipv6():
                return [
                    socket.create_server(
                        ("::", listen.port),
                        family=socket.AF_INET6,
                        dualstack_ipv6=True,
                        backlog=BACKLOG,
                    )
                ]
            return [socket.create_server(("0.0.0.0", listen.port), backlog=BACKLOG)]
        family, _, _, _, address = socket.getaddrinfo(
            host, listen.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        return [socket.create_server(address[:2], family=family, backlog=BACKLOG)]
    except OSError as e:
        where = f"{listen.where}: " if listen.where else ""
        hints = {
            errno.EADDRINUSE: "another process listens there; stop it or choose another port",
            errno.EACCES: "ports below 1024 need privileges; choose a port above 1023",
        }
        raise ServeError(
            f"{where}listener {listen.name!r}: cannot listen on {host or 'loopback'}:"
            f"{listen.port}: {e.strerror or e}",
            hint=hints.get(e.errno or 0),
        ) from None


def _bind_loopback(port: int) -> list[socket.socket]:
    first = socket.create_server(("127.0.0.1", port), backlog=BACKLOG)
    if not socket.has_ipv6:
        return [first]
    try:
        # The same port (the first may have been any free one) on the IPv6 loopback, so a
        # client that resolves localhost to ::1 reaches this Keep and no other.
        second = socket.create_server(
            ("::1", first.getsockname()[1]), family=socket.AF_INET6, backlog=BACKLOG
        )
    except OSError as e:
        if e.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
            return [first]  # no IPv6 loopback on this host
        first.close()
        raise
    return [first, second]


def serve(
    prepared: PreparedWorkload,
    listeners: Sequence[Listen],
    identity: TlsIdentity | None,
    *,
    ready: Callable[[list[BoundListener]], None] | None = None,
    stop: threading.Event | None = None,
    options: ServeOptions | None = None,
    renewer: Renewer | None = None,
) -> ServeStats:
    """Serve ``listeners`` until a signal or ``stop``; return the counters (summed over the
    worker processes) after a graceful stop.

    ``identity`` is required when any listener has ``tls = true``. ``ready`` is called with
    the bound listeners once every socket listens, in every process. Signals are handled
    only when called from the main thread; elsewhere set ``stop``. A ``renewer`` (an
    attested identity's: :mod:`motte.keep.serve._renew`) runs while serving, and each
    identity it installs is what every process's new TLS handshakes use from then on;
    ``identity`` is then ignored for its ``renewer.identities.current``.
    """
    from motte.keep.serve._workers import Workers

    options = options or ServeOptions()
    identities = None
    if renewer is not None:
        identities = renewer.identities
        identity = identities.current
    elif identity is not None:
        identities = Identities(identity)
    check_serveable(prepared, listeners, identity)
    sockets: list[list[socket.socket]] = []
    try:
        for listen in listeners:
            sockets.append(bind(listen, options.host))
        workers = Workers(prepared, listeners, identity, options, sockets)
        if identities is not None:
            # Before start: the workers' first config carries the newest identity, and
            # every later one follows on their standard input.
            identities.watch(workers.send_identity)
        workers.start()
        if renewer is not None:
            renewer.start()
        try:
            stats = serve_sockets(
                prepared,
                listeners,
                identity,
                sockets,
                options=options,
                ready=ready,
                stop=stop,
                on_stop=workers.stop,
                on_force=workers.force,
                identities=identities,
            )
        finally:
            if renewer is not None:
                renewer.stop()
            if identities is not None:
                identities.unwatch(workers.send_identity)
            worker_stats = workers.finish()
        stats.add(worker_stats)
    finally:
        for socks in sockets:
            for sock in socks:
                sock.close()
    return stats


class _StopRequest:
    """The stop flags: set by a signal handler or the caller's event, read by the main
    thread (plain booleans: a signal handler must not take locks)."""

    def __init__(self, stop: threading.Event | None, on_force: Callable[[], None] | None) -> None:
        self.requested = False
        self.forced = False
        self._stop = stop
        self._on_force = on_force

    def asked(self) -> bool:
        return self.requested or (self._stop is not None and self._stop.is_set())

    def on_signal(self, signum: int, frame: Any) -> None:
        if self.asked():
            self.forced = True
            if self._on_force is not None:
                self._on_force()
        self.requested = True


def serve_sockets(
    prepared: PreparedWorkload,
    listeners: Sequence[Listen],
    identity: TlsIdentity | None,
    sockets: list[list[socket.socket]],
    *,
    options: ServeOptions,
    ready: Callable[[list[BoundListener]], None] | None = None,
    stop: threading.Event | None = None,
    on_stop: Callable[[], None] | None = None,
    on_force: Callable[[], None] | None = None,
    signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT),
    tag: str = "",
    identities: Identities | None = None,
    on_renewed: Callable[[TlsIdentity], None] | None = None,
) -> ServeStats:
    """Serve on already bound sockets (one list per listener) in this process. With
    ``identities``, new TLS handshakes use its current identity, swapped on each update
    (``on_renewed`` is told of each one installed); ``identity`` is then only the first."""
    # An instance per request: the pooling allocator makes each one cheaper.
    serving = Serving(prepared.for_many_instances(), options, tag)
    request = _StopRequest(stop, on_force)
    previous: dict[int, Any] = {}
    watchdog = Watchdog(serving)
    acceptor: Acceptor | None = None
    swap: Callable[[TlsIdentity], None] | None = None
    client: Callable[[TlsIdentity], None] | None = None
    try:
        if identities is None:
            listening = [
                Listening(listen, socks, _context(listen, identity))
                for listen, socks in zip(listeners, sockets, strict=True)
            ]
        else:
            listening = [
                Listening(listen, socks, None)
                for listen, socks in zip(listeners, sockets, strict=True)
            ]
            swap = _swapper(listening, identity, on_renewed)
            identities.watch(swap)  # installs the current identity at once
            client = _outbound_client(prepared)
            if client is not None:
                # Outbound connections present the renewed certificate too (mutual TLS).
                identities.watch(client)
        if threading.current_thread() is threading.main_thread():
            for sig in signals:
                previous[sig] = signal.signal(sig, request.on_signal)
        watchdog.start()
        acceptor = Acceptor(serving, listening)
        acceptor.start()
        if ready is not None:
            ready([lst.bound for lst in listening])
        while not request.asked():
            time.sleep(STOP_POLL)
        if on_stop is not None:
            on_stop()
        _stop(serving, acceptor, request)
    finally:
        if identities is not None and swap is not None:
            identities.unwatch(swap)
            if client is not None:
                identities.unwatch(client)
        if acceptor is not None:
            acceptor.stop()
        watchdog.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        serving.close()
    return serving.stats


def _swapper(
    listening: list[Listening],
    started_with: TlsIdentity | None,
    on_renewed: Callable[[TlsIdentity], None] | None,
) -> Callable[[TlsIdentity], None]:
    """What installs a (renewed) identity: a new SSLContext per TLS listener, each swapped
    in by one attribute assignment (atomic), so a new handshake gets the old context or
    the new one, never a mix; a connection already open keeps the context it was
    handshaken with. Every context is built before any is swapped: a chain OpenSSL refuses
    changes nothing.

    ``on_renewed`` (a worker's: it tells its parent, who logs it) is called once an
    identity other than the one serving started with is installed, even if the renewal
    came before listening (the first install is then the renewed one)."""

    def swap(identity: TlsIdentity) -> None:
        contexts = [_context(lst.listen, identity) for lst in listening]
        for lst, context in zip(listening, contexts, strict=True):
            lst.context = context
        if on_renewed is not None and identity is not started_with:
            on_renewed(identity)

    return swap


def _context(listen: Listen, identity: TlsIdentity | None) -> ssl.SSLContext | None:
    if not listen.tls:
        return None
    assert identity is not None
    return server_context(identity, alpn=["http/1.1"] if listen.protocol == "http" else [])


def _stop(serving: Serving, acceptor: Acceptor, request: _StopRequest) -> None:
    serving.stopping = True
    acceptor.stop()
    now = time.monotonic()
    for conn in serving.snapshot():
        with conn.lock:
            if conn.expired:
                continue
            if conn.state == KEEPALIVE:
                conn.shut_down()
            elif conn.state in (FRESH, HANDSHAKE) and conn.deadline is not None:
                # Accepted before the stop: its request may be on its way.
                conn.deadline = min(conn.deadline, now + FRESH_GRACE)
    limit = serving.options.stop_timeout
    if limit is None:
        limit = serving.prepared.manifest.limits.wall_time
    busy = serving.busy()
    if busy:
        log.info("stopping: waiting up to %g s for %d connection(s) to finish", limit, busy)
    if not _until_drained(serving, limit, request):
        log.warning(
            "stopping: %d connection(s) still busy; stopping their instances", serving.busy()
        )
        for conn in serving.snapshot():
            conn.cancel.set()
            if conn.force is not None:
                conn.force()
        _until_drained(serving, FORCE_GRACE, None)
        for conn in serving.snapshot():
            with conn.lock:
                if not conn.expired:
                    conn.shut_down()
        _until_drained(serving, FORCE_GRACE, None)
    # Instances still running for clients already answered (they overran their wall time,
    # blocked in a host call): stopped when the call returns; waited for a moment only.
    leftover = serving.snapshot()
    for conn in leftover:
        conn.cancel.set()
    deadline = time.monotonic() + FORCE_GRACE
    while serving.connections and leftover and time.monotonic() < deadline:
        time.sleep(STOP_POLL)


def _until_drained(serving: Serving, limit: float, request: _StopRequest | None) -> bool:
    """Wait until no connection is busy (True), ``limit`` passes or a forced stop."""
    deadline = time.monotonic() + limit
    while serving.busy():
        if request is not None and request.forced:
            return False
        if time.monotonic() >= deadline:
            return False
        time.sleep(STOP_POLL)
    return True


def _outbound_client(prepared: Any) -> Callable[[TlsIdentity], None] | None:
    """What installs an attested identity as the client certificate of the workload's
    outbound connections (motte.keep._outbound), or None when it has none."""
    outbound = getattr(prepared, "outbound", None)
    if outbound is None:
        return None

    def install(identity: TlsIdentity) -> None:
        if identity.attested:
            outbound.set_client_identity((identity.certificate_chain_pem, identity.private_key_pem))

    return install
