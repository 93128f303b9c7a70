"""How the listeners bound their clients and their instances (:class:`ServeOptions`), what a
caller learns once they listen (:class:`BoundListener`) and when they stop
(:class:`ServeStats`).

The per-instance limits are the manifest's (memory, CPU time, wall time); these options
bound what the manifest cannot know: how much a client may send, how long it may take,
and how many instances run at once.
"""

from __future__ import annotations

import os

from motte._record import Record


def default_instances(processes: int = 1) -> int:
    """Instances that run at once in each of ``processes`` processes: four per CPU in all
    (at least two per process). wasm runs without the interpreter lock, and a TCP instance
    spends most of its time waiting for its client."""
    return max(2, 4 * cpus() // max(1, processes))


def cpus() -> int:
    """The CPUs this process may run on (its affinity mask, which a container's cpuset
    narrows; os.cpu_count() would count the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class ServeOptions(Record):
    """Bounds on clients and concurrency. Sizes in bytes, times in seconds.

    ``processes``: how many processes serve (each with its own interpreter lock: one
    process serves about one core's worth of short requests). ``max_connections``: open
    connections in each process, each served by a thread of its own; beyond it a new HTTP
    connection is answered 503 and a TCP one closed at once. ``max_instances``: instances
    running at once in each process (None: four per CPU in all). ``max_queued``: admitted
    requests or connections waiting for one; beyond both, HTTP answers 503 and TCP closes at
    once. ``max_header_bytes``: a request's head (request line and headers), 431
    past it; ``max_headers``: header lines, 431 past it. ``max_body``: a request body, 413
    past it. ``max_response``: a guest's standard output per HTTP request; a guest that
    writes more is stopped (502). ``request_timeout``: from the first byte of a request to
    its last (408 past it), and for writing the response. ``keepalive_timeout``: how long an
    idle keep-alive connection is kept. ``handshake_timeout``: the TLS handshake.
    ``stop_timeout``: how long a graceful stop waits for in-flight work (None: the
    manifest's wall_time) before stopping it. ``host``: the address every listener binds,
    replacing each one's own (None: each listener's ``address``, which the host's grant
    sets; loopback when none does).
    """

    __slots__ = (
        "handshake_timeout",
        "host",
        "keepalive_timeout",
        "max_body",
        "max_connections",
        "max_header_bytes",
        "max_headers",
        "max_instances",
        "max_queued",
        "max_response",
        "processes",
        "request_timeout",
        "stop_timeout",
    )
    processes: int
    max_connections: int
    max_instances: int | None
    max_queued: int
    max_header_bytes: int
    max_headers: int
    max_body: int
    max_response: int
    request_timeout: float
    keepalive_timeout: float
    handshake_timeout: float
    stop_timeout: float | None
    host: str | None

    def __init__(
        self,
        *,
        processes: int = 1,
        max_connections: int = 512,
        max_instances: int | None = None,
        max_queued: int = 256,
        max_header_bytes: int = 16 * 1024,
        max_headers: int = 100,
        max_body: int = 8 * 1024 * 1024,
        max_response: int = 64 * 1024 * 1024,
        request_timeout: float = 30.0,
        keepalive_timeout: float = 15.0,
        handshake_timeout: float = 10.0,
        stop_timeout: float | None = None,
        host: str | None = None,
    ) -> None:
        for name, value in (
            ("max_queued", max_queued),
            ("max_header_bytes", max_header_bytes),
            ("max_headers", max_headers),
            ("max_body", max_body),
            ("max_response", max_response),
        ):
            if value < 0:
                raise ValueError(f"{name} must not be negative")
        if processes < 1:
            raise ValueError("processes must be at least 1")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if max_instances is not None and max_instances < 1:
            raise ValueError("max_instances must be at least 1")
        for name, seconds in (
            ("request_timeout", request_timeout),
            ("keepalive_timeout", keepalive_timeout),
            ("handshake_timeout", handshake_timeout),
        ):
            if not seconds > 0:
                raise ValueError(f"{name} must be positive")
        if stop_timeout is not None and stop_timeout < 0:
            raise ValueError("stop_timeout must not be negative")
        self._set(
            processes=processes,
            max_connections=max_connections,
            max_instances=max_instances,
            max_queued=max_queued,
            max_header_bytes=max_header_bytes,
            max_headers=max_headers,
            max_body=max_body,
            max_response=max_response,
            request_timeout=request_timeout,
            keepalive_timeout=keepalive_timeout,
            handshake_timeout=handshake_timeout,
            stop_timeout=stop_timeout,
            host=host,
        )


class BoundListener(Record):
    """A listener as it listens: its manifest entry's name, protocol and TLS, and the
    addresses (host, port) it is bound to."""

    __slots__ = ("addresses", "name", "port", "protocol", "tls")
    name: str
    protocol: str
    tls: bool
    port: int
    addresses: tuple[tuple[str, int], ...]

    def __init__(
        self,
        name: str,
        protocol: str,
        tls: bool,
        port: int,
        addresses: tuple[tuple[str, int], ...],
    ) -> None:
        self._set(name=name, protocol=protocol, tls=tls, port=port, addresses=tuple(addresses))

    @property
    def url(self) -> str:
        """``https://host:port`` (or ``http``, ``tls``, ``tcp``) for the first address;
        ``localhost`` when it listens on every interface."""
        host, port = self.addresses[0] if self.addresses else ("localhost", self.port)
        if host in ("::", "0.0.0.0"):
            host = "localhost"
        scheme = {("http", True): "https", ("http", False): "http"}.get(
            (self.protocol, self.tls), "tls" if self.tls else "tcp"
        )
        shown = f"[{host}]" if ":" in host else host
        return f"{scheme}://{shown}:{port}"


class ServeStats:
    """Counters (a serving process updates them under a lock); serve returns them summed
    over its processes once it has stopped."""

    __slots__ = (
        "bad_gateway",
        "client_errors",
        "connections",
        "interrupted",
        "rejected",
        "requests",
    )

    def __init__(self) -> None:
        #: Connections accepted (HTTP and TCP).
        self.connections = 0
        #: HTTP requests answered by an instance (any status, 502 included).
        self.requests = 0
        #: HTTP answers that were 502 because of the guest; TCP instances that trapped.
        self.bad_gateway = 0
        #: Requests and connections refused because every instance slot and queue place,
        #: or every connection slot, was taken (HTTP 503, TCP closed at once).
        self.rejected = 0
        #: Requests the Keep answered itself with a 4xx (malformed, too large, too slow).
        self.client_errors = 0
        #: Instances stopped by a forced stop (the graceful-stop deadline passed).
        self.interrupted = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}

    def add(self, counts: dict[str, int]) -> None:
        """Add another process's counters."""
        for name in self.__slots__:
            setattr(self, name, getattr(self, name) + int(counts.get(name, 0)))
