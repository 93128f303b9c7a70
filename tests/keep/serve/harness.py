"""Serve a manifest in this process on 127.0.0.1 (ephemeral ports) for a test, and talk
to it: real sockets, real TLS, the real runtime."""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from motte.keep import PreparedWorkload
from motte.keep.serve import (
    BoundListener,
    ServeOptions,
    ServeStats,
    TlsIdentity,
    self_signed_identity,
    serve,
)
from motte.manifest import Listen, load_manifest

START_TIMEOUT = 60.0


class Running:
    """``with Running(manifest_path) as keep: keep.https().request(...)``; after the block,
    ``keep.stats`` holds the counters serve returned (the block stops it gracefully)."""

    def __init__(
        self,
        manifest: Path,
        *,
        options: ServeOptions | None = None,
        listeners: Sequence[Listen] | None = None,
        identity: TlsIdentity | None = None,
    ) -> None:
        self.workload = PreparedWorkload.prepare(load_manifest(manifest))
        # Port 0: the kernel picks a free port for each listener.
        self.listeners = tuple(
            listeners or (lst.replace(port=0) for lst in self.workload.manifest.listen)
        )
        self.identity = identity or self_signed_identity()
        self.options = (options or ServeOptions()).replace(host="127.0.0.1")
        self.stop = threading.Event()
        self.stats: ServeStats | None = None
        self.error: BaseException | None = None
        self.bound: dict[str, BoundListener] = {}
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="test-keep", daemon=True)

    def _serve(self) -> None:
        def ready(bound: list[BoundListener]) -> None:
            self.bound = {b.name: b for b in bound}
            self._ready.set()

        try:
            self.stats = serve(
                self.workload,
                self.listeners,
                self.identity,
                ready=ready,
                stop=self.stop,
                options=self.options,
            )
        except BaseException as e:
            self.error = e
        finally:
            self._ready.set()

    def __enter__(self) -> Running:
        self._thread.start()
        self._ready.wait(START_TIMEOUT)
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_and_wait()

    def stop_and_wait(self, timeout: float = 60.0) -> ServeStats | None:
        self.stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "serve did not return after stop"
        if self.error is not None:
            raise self.error
        return self.stats

    def port(self, name: str | None = None) -> int:
        bound = self.bound[name] if name else next(iter(self.bound.values()))
        return bound.port

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=self.identity.certificate_chain_pem.decode())
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def https(self, name: str | None = None, timeout: float = 30.0) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            "localhost", self.port(name), context=self.client_context(), timeout=timeout
        )

    def tls_socket(self, name: str | None = None, timeout: float = 30.0) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", self.port(name)), timeout=timeout)
        return self.client_context().wrap_socket(raw, server_hostname="localhost")

    def plain_socket(self, name: str | None = None, timeout: float = 30.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port(name)), timeout=timeout)


def get(keep: Running, path: str, **kw: Any) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection: (status, headers, body)."""
    conn = keep.https()
    try:
        conn.request(kw.pop("method", "GET"), path, **kw)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def read_all(sock: socket.socket) -> bytes:
    """Everything the peer sends until it closes."""
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)
