"""``serve``: the Keep's listeners on an asyncio loop, their instances on a bounded pool of
threads, optionally in several processes, and a graceful stop.

Stopping (SIGTERM or SIGINT in the main thread, or the caller's ``stop`` event):

1. the listening sockets close: no new connections;
2. idle keep-alive connections close; a request already arriving is still answered, with
   ``Connection: close``;
3. in-flight instances (HTTP requests, TCP connections) get ``stop_timeout`` seconds (the
   manifest's wall time unless set) to finish;
4. then whatever still runs is stopped (at the guest's next epoch tick, its pipes closed),
   its HTTP client gets a 503, and serve returns.

A second SIGTERM or SIGINT skips the wait of step 3. Worker processes (``processes > 1``)
stop the same way, told by the parent (see ``_worker``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from motte.keep.serve._cgi import CgiServer
from motte.keep.serve._errors import ServeError
from motte.keep.serve._http import FRESH_GRACE, serve_http, unmapped
from motte.keep.serve._identity import TlsIdentity, server_context
from motte.keep.serve._options import BoundListener, ServeOptions, ServeStats, default_instances
from motte.keep.serve._pool import InstancePool

if TYPE_CHECKING:
    from motte.keep import PreparedWorkload, RunResult
    from motte.manifest import Listen

log = logging.getLogger("motte.keep.serve")

#: How long, after a forced stop, instances get to notice it (one epoch tick is 10 ms).
FORCE_GRACE = 1.0
#: How often the caller's ``stop`` event is polled.
STOP_POLL = 0.05
#: How long closing a connection may wait for the TLS close_notify exchange.
CLOSE_TIMEOUT = 1.0
#: Bound on a guest's stderr written to the log per instance.
MAX_LOGGED_STDERR = 4096
BACKLOG = 1024


class Tracked:
    """One open connection: whether it waits idle for a request (``"fresh"``: its first,
    ``"keepalive"``: a next one), and how to force it."""

    __slots__ = ("force", "idle", "task")

    def __init__(self, task: asyncio.Task[Any] | None) -> None:
        self.task = task
        self.idle: str | None = None
        self.force: Callable[[], None] | None = None


class Serving:
    """What every connection handler shares: the workload, the options, the pool, the
    counters and the stop state. Used on the event loop's thread, except the two
    ``run_*`` methods, which the pool's workers call."""

    def __init__(self, prepared: PreparedWorkload, options: ServeOptions, tag: str = "") -> None:
        self.prepared = prepared
        self.options = options
        workers = options.max_instances or default_instances(options.processes)
        self.pool = InstancePool(workers, options.max_queued)
        self.stats = ServeStats()
        self.stopping = False
        self.connections: set[Tracked] = set()
        self.cancels: set[threading.Event] = set()
        self._numbers = 0
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
        # a file is appended to by the Keep (each instance would truncate it otherwise).
        self._stderr_spec = {"inherit": "inherit", "null": "null"}.get(
            manifest.stderr.kind, "capture"
        )

    def next_request_number(self) -> str:
        """A label for the log: ``17``, or ``w1.17`` in worker process 1."""
        self._numbers += 1
        return f"{self._tag}.{self._numbers}" if self._tag else str(self._numbers)

    # -- on a worker thread ---------------------------------------------------------------

    def run_instance(self, env: dict[str, str], body: bytes, cancel: threading.Event) -> RunResult:
        """One HTTP request's instance: the request on stdin, the answer captured."""
        return self.prepared.run(
            env=env,
            stdin=body,
            stdout="capture",
            stderr=self._stderr_spec,  # type: ignore[arg-type]
            max_output=self.options.max_response,
            cancel=cancel,
        )

    def run_stream(self, stdin_fd: int, stdout_fd: int, cancel: threading.Event) -> RunResult:
        """One TCP connection's instance: stdin and stdout are the guest's pipe ends."""
        return self.prepared.run(
            stdin=stdin_fd,
            stdout=stdout_fd,
            stderr=self._stderr_spec,  # type: ignore[arg-type]
            max_output=self.options.max_response,
            cancel=cancel,
        )

    # -- on the loop ----------------------------------------------------------------------

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
    """The listening socket(s) for one listener: all interfaces (IPv6 and IPv4 on one
    dual-stack socket where the host has one), or ``host``."""
    try:
        if host is None:
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
            f"{where}listener {listen.name!r}: cannot listen on {host or '*'}:{listen.port}: "
            f"{e.strerror or e}",
            hint=hints.get(e.errno or 0),
        ) from None


def serve(
    prepared: PreparedWorkload,
    listeners: Sequence[Listen],
    identity: TlsIdentity | None,
    *,
    ready: Callable[[list[BoundListener]], None] | None = None,
    stop: threading.Event | None = None,
    options: ServeOptions | None = None,
) -> ServeStats:
    """Serve ``listeners`` until a signal or ``stop``; return the counters (summed over the
    worker processes) after a graceful stop.

    ``identity`` is required when any listener has ``tls = true``. ``ready`` is called with
    the bound listeners once every socket listens, in every process. Signals are handled
    only when called from the main thread; elsewhere set ``stop``.
    """
    from motte.keep.serve._worker import Workers

    options = options or ServeOptions()
    check_serveable(prepared, listeners, identity)
    sockets: list[list[socket.socket]] = []
    try:
        for listen in listeners:
            sockets.append(bind(listen, options.host))
        workers = Workers(prepared, listeners, identity, options, sockets)
        workers.start()
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
            )
        finally:
            worker_stats = workers.finish()
        stats.add(worker_stats)
    finally:
        for socks in sockets:
            for sock in socks:
                sock.close()
    return stats


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
) -> ServeStats:
    """Serve on already bound sockets (one list per listener) in this process."""
    serving = Serving(prepared, options, tag)
    try:
        coro = _main(serving, listeners, identity, sockets, ready, stop, on_stop, on_force, signals)
        return asyncio.run(coro)
    finally:
        serving.close()


async def _main(
    serving: Serving,
    listeners: Sequence[Listen],
    identity: TlsIdentity | None,
    sockets: list[list[socket.socket]],
    ready: Callable[[list[BoundListener]], None] | None,
    stop: threading.Event | None,
    on_stop: Callable[[], None] | None,
    on_force: Callable[[], None] | None,
    signals: tuple[int, ...],
) -> ServeStats:
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    force_requested = asyncio.Event()

    def on_signal() -> None:
        if stop_requested.is_set() or (stop is not None and stop.is_set()):
            force_requested.set()
            if on_force is not None:
                on_force()
        stop_requested.set()

    handled: list[int] = []
    if threading.current_thread() is threading.main_thread():
        for sig in signals:
            loop.add_signal_handler(sig, on_signal)
            handled.append(sig)
    servers: list[asyncio.base_events.Server] = []
    try:
        bound = []
        for listen, socks in zip(listeners, sockets, strict=True):
            server, info = await _listen(serving, listen, identity, socks)
            servers.append(server)
            bound.append(info)
        if ready is not None:
            ready(bound)
        await _wait_for_stop(stop_requested, stop)
        if on_stop is not None:
            on_stop()
        await _stop(serving, servers, force_requested)
    finally:
        for server in servers:
            server.close()
        for sig in handled:
            loop.remove_signal_handler(sig)
    return serving.stats


async def _wait_for_stop(stop_requested: asyncio.Event, stop: threading.Event | None) -> None:
    if stop is None:
        await stop_requested.wait()
        return
    while not stop_requested.is_set() and not stop.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_POLL):
                await stop_requested.wait()


async def _listen(
    serving: Serving,
    listen: Listen,
    identity: TlsIdentity | None,
    socks: list[socket.socket],
) -> tuple[asyncio.base_events.Server, BoundListener]:
    from motte.keep.serve._tcp import serve_tcp

    addresses = tuple((str(s.getsockname()[0]), int(s.getsockname()[1])) for s in socks)
    port = addresses[0][1]
    ssl_context = None
    if listen.tls:
        assert identity is not None
        alpn = ["http/1.1"] if listen.protocol == "http" else []
        ssl_context = server_context(identity, alpn=alpn)

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tracked = Tracked(asyncio.current_task())
        serving.connections.add(tracked)
        serving.stats.connections += 1
        try:
            if listen.protocol == "http":
                sockname = writer.get_extra_info("sockname") or ("", 0)
                server = CgiServer(listen.name, port, listen.tls, unmapped(str(sockname[0])))
                await serve_http(serving, server, reader, writer, tracked)
            else:
                await serve_tcp(serving, listen.name, reader, writer, tracked)
        except asyncio.CancelledError:
            pass
        except Exception:  # a bug: log it, keep serving the other connections
            log.exception("%s: internal error on a connection", listen.name)
        finally:
            writer.close()
            # Never end cancelled: asyncio's stream callback would log the cancellation.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await writer.wait_closed()
            serving.connections.discard(tracked)

    servers = [
        await asyncio.start_server(
            on_connection,
            sock=sock,
            ssl=ssl_context,
            ssl_handshake_timeout=serving.options.handshake_timeout if ssl_context else None,
            limit=64 * 1024,
        )
        for sock in socks
    ]
    server = servers[0] if len(servers) == 1 else _Servers(servers)
    return server, BoundListener(listen.name, listen.protocol, listen.tls, port, addresses)


class _Servers:
    """Several asyncio servers closed as one (a listener bound on more than one socket)."""

    def __init__(self, servers: list[Any]) -> None:
        self._servers = servers

    def close(self) -> None:
        for server in self._servers:
            server.close()


async def _stop(serving: Serving, servers: list[Any], force: asyncio.Event) -> None:
    serving.stopping = True
    for server in servers:
        server.close()
    loop = asyncio.get_running_loop()
    for tracked in list(serving.connections):
        if tracked.task is None:
            continue
        if tracked.idle == "keepalive":
            tracked.task.cancel()
        elif tracked.idle == "fresh":  # accepted before the stop: its request may be coming
            loop.call_later(FRESH_GRACE, _cancel_if_still_waiting, tracked)
    limit = serving.options.stop_timeout
    if limit is None:
        limit = serving.prepared.manifest.limits.wall_time
    busy = len(serving.connections)
    if busy:
        log.info("stopping: waiting up to %g s for %d connection(s) to finish", limit, busy)
    if not await _until_drained(serving, limit, force):
        left = len(serving.connections)
        log.warning("stopping: %d connection(s) still busy; stopping their instances", left)
        for cancel in list(serving.cancels):
            cancel.set()
        for tracked in list(serving.connections):
            if tracked.force is not None:
                tracked.force()
        await _until_drained(serving, FORCE_GRACE, None)
        for tracked in list(serving.connections):
            if tracked.task is not None:
                tracked.task.cancel()
        await _until_drained(serving, FORCE_GRACE, None)
    await asyncio.get_running_loop().run_in_executor(None, partial(serving.pool.close, FORCE_GRACE))


def _cancel_if_still_waiting(tracked: Tracked) -> None:
    if tracked.idle == "fresh" and tracked.task is not None:
        tracked.task.cancel()


async def _until_drained(serving: Serving, limit: float, force: asyncio.Event | None) -> bool:
    """Wait until no connection is open (True), ``limit`` passes or ``force`` is set."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while serving.connections:
        if force is not None and force.is_set():
            return False
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.02)
    return True
