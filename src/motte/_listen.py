"""``--listen HOST:PORT`` for the HTTP services motte runs under uvicorn (the Steward, a
transparency log, a witness): parsed, bound and shown the same way by each."""

from __future__ import annotations

import socket

from motte.errors import UsageError


def parse_listen(listen: str, *, example: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too; an empty host is 127.0.0.1; port 0 picks one)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageError(f"--listen {listen!r}: expected HOST:PORT (e.g. {example})")
    return host.strip("[]") or "127.0.0.1", int(port)


def bind_listener(listen: str, *, example: str) -> tuple[socket.socket, str]:
    """A listening TCP socket for ``listen`` and the ``host:port`` it is bound to, as a URL
    shows it (``[::1]:8440``). Raises :class:`UsageError` naming ``listen`` when the
    address is malformed or cannot be bound."""
    host, port = parse_listen(listen, example=example)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when the
    # listening socket says TCP, and without it keep-alive responses wait ~40 ms (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UsageError(f"--listen {listen}: cannot listen: {e.strerror}") from None
    sock.listen(1024)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    return sock, f"{shown}:{bound}"
