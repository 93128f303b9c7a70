"""Real servers on 127.0.0.1 inside the test process: the Steward's app under uvicorn, and a
plain TLS server presenting a given chain (a stand-in Keep for the client's checks)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from motte.steward import Steward


@contextlib.contextmanager
def steward_server(steward: Steward, *, tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    """Serve ``steward`` on a free loopback port (HTTPS with ``tls`` = (cert, key)); yields
    its URL."""
    import uvicorn

    from motte.steward._server import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(steward),
        log_level="error",
        access_log=False,
        lifespan="off",
        ssl_certfile=str(tls[0]) if tls else None,
        ssl_keyfile=str(tls[1]) if tls else None,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the Steward did not start")
        time.sleep(0.01)
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextlib.contextmanager
def tls_server(chain_pem: bytes, key_pem: bytes, *, body: bytes | None = None) -> Iterator[int]:
    """A TLS 1.3 server presenting ``chain_pem`` that answers one HTTP response per
    connection (``body``, or the request line it received); yields its port."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    with tempfile.TemporaryDirectory() as d:
        cert, key = Path(d, "c.pem"), Path(d, "k.pem")
        cert.write_bytes(chain_pem)
        key.write_bytes(key_pem)
        ctx.load_cert_chain(cert, key)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                conn.settimeout(5)
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    request = b""
                    while b"\r\n\r\n" not in request:
                        chunk = tls.recv(4096)
                        if not chunk:
                            break
                        request += chunk
                    if request:
                        answer = body if body is not None else request.split(b"\r\n")[0]
                        tls.sendall(
                            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                            + f"Content-Length: {len(answer)}\r\nConnection: close\r\n\r\n".encode()
                            + answer
                        )
            except (OSError, ssl.SSLError):
                pass  # the client refused us: that is what several tests want

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()
        thread.join(5)
