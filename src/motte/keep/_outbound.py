"""Outbound connections: a guest opens a granted destination by name and gets a stream.

**How a guest sees it.** WASI preview1 has no socket a guest can create, and wasmtime's
Python bindings hand a guest no descriptor but its three standard streams and preopened
directories. A FIFO or a socket put in a preopened directory does not work either:
wasmtime reads and writes preopened files at positions (``pread``/``pwrite``), which a FIFO
refuses (``ESPIPE``), and a socket cannot be opened by path at all. So the Keep offers the
stream through five functions a module imports from ``motte_connect`` (C declarations in
``examples/outbound/motte_connect.h``), like Enarx's connect by name but without a
descriptor of the host's:

    int32 open(name, name_len)         -> a handle >= 0, or -errno
    int32 read(handle, buf, len)       -> bytes read (0: the server closed), or -errno
    int32 write(handle, buf, len)      -> len (all of it is sent), or -errno
    int32 close(handle)                -> 0, or -errno
    int32 last_error(buf, len)         -> the length of a one-line reason for the last
                                          failure (copied up to len), 0 if none

Errors are negative WASI errno values, the numbers of wasi-libc's ``errno.h``: ``EACCES``
(not a granted destination), ``EMFILE`` (``limits.connections`` open at once), ``EDQUOT``
(``limits.connections_total`` reached), ``ECONNREFUSED``, ``EHOSTUNREACH`` (no address the
Keep may reach), ``ETIMEDOUT`` (``limits.connection_time`` or the instance's wall time),
``EPROTO`` (the TLS handshake or the server's verification failed), ``EFBIG``
(``limits.connection_bytes``), ``ECONNRESET``, ``EBADF``, ``EFAULT``.

**What the Keep enforces itself.** A guest names a destination, never an address: the
Keep resolves only a granted destination's host (no other DNS), connects only to what it
resolves to or the address the grant names, and refuses, without a connection attempt, an
ungranted name and a name that resolves to this host's loopback or link (unless the grant
or the operator's own manifest wrote such an address). The Keep speaks TLS (or, to a
loopback test peer, plain text when asked) and the guest sees plain text.

One :class:`Outbound` per prepared workload (its destinations, their TLS contexts, the
client identity); one :class:`Session` per instance (its connections and counters), found
by the instance's store when the guest calls in.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from motte.keep._tls_client import OutboundError, PinMismatchError, check_pins, client_context

if TYPE_CHECKING:
    from motte.manifest import Connect, Limits

#: The import module a guest's functions come from.
IMPORT_MODULE = "motte_connect"

# WASI errno values (wasi-libc's errno.h uses the same numbers).
EACCES = 2
EBADF = 8
ECONNREFUSED = 14
ECONNRESET = 15
EDQUOT = 19
EFAULT = 21
EFBIG = 22
EHOSTUNREACH = 23
EINVAL = 28
EMFILE = 33
EPROTO = 65
ETIMEDOUT = 73

#: Longest wait in one blocking call before the instance's cancel is looked at again.
POLL_SECONDS = 0.25
#: Largest single read handed to a guest.
MAX_READ = 64 * 1024
#: Refusals and failures a session logs one by one; more are counted in one last line.
LOGGED_FAILURES = 3


def _is_local(ip: str) -> bool:
    """An address of this host or its link: loopback, unspecified, link-local."""
    import ipaddress

    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    addr = getattr(addr, "ipv4_mapped", None) or addr
    return addr.is_loopback or addr.is_unspecified or addr.is_link_local


class _Refused(Exception):
    """An open, read or write the Keep refuses or that failed: errno and a one-line reason."""

    def __init__(self, errno: int, reason: str) -> None:
        super().__init__(reason)
        self.errno = errno
        self.reason = reason


class Destination:
    """One granted destination, ready to dial: where, and with which TLS context."""

    def __init__(self, connect: Connect, context: ssl.SSLContext | None) -> None:
        self.connect = connect
        self.context = context

    def addresses(self) -> list[tuple[int, str]]:
        """(family, address) to try, in order: the granted address, ``localhost`` as
        127.0.0.1 and ::1 (never looked up), or the host's resolution (the only DNS a guest
        causes). An address of this host or its link is kept only where the grant allows."""
        import ipaddress

        c = self.connect
        host = c.dial_host
        if host == "localhost":
            found = [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]
        else:
            try:
                ip = ipaddress.ip_address(host)
                family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
                found = [(family, str(ip))]
            except ValueError:
                try:
                    infos = socket.getaddrinfo(host, c.port, type=socket.SOCK_STREAM)
                except socket.gaierror as e:
                    raise _Refused(EHOSTUNREACH, f"{host}: cannot resolve ({e.strerror})") from None
                found = list(dict.fromkeys((info[0], str(info[4][0])) for info in infos))
        allowed = [(f, a) for f, a in found if c.loopback or not _is_local(a)]
        if not allowed:
            shown = ", ".join(a for _, a in found)
            raise _Refused(
                EHOSTUNREACH,
                f"{host} resolves to {shown}: this host or its link, which the grant does not "
                "reach (grant the address itself to call a peer there)",
            )
        return allowed

    def dial(self, deadline: float) -> socket.socket:
        """A connected stream (TLS done and checked), or :class:`_Refused`."""
        c = self.connect
        last: _Refused | None = None
        for family, address in self.addresses():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Refused(ETIMEDOUT, f"connecting to {c.dial_host}: timed out")
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(remaining)
                sock.connect((address, c.port))
            except TimeoutError:
                sock.close()
                raise _Refused(ETIMEDOUT, f"connecting to {address}:{c.port}: timed out") from None
            except OSError as e:
                sock.close()
                last = _Refused(ECONNREFUSED, f"{address}:{c.port}: {e.strerror or e}")
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.context is None:
                return sock
            return self._handshake(sock, deadline)
        assert last is not None
        raise last

    def _handshake(self, sock: socket.socket, deadline: float) -> ssl.SSLSocket:
        c = self.connect
        assert self.context is not None and c.tls is not None
        name = c.server_name
        try:
            tls = self.context.wrap_socket(sock, server_hostname=name)
        except (ssl.SSLError, OSError) as e:
            sock.close()
            raise _tls_failure(c, e) from None
        if c.tls.pin_spki or c.tls.pin_certificate:
            # Before any byte of the guest's is sent.
            try:
                check_pins(c.tls, tls.getpeercert(binary_form=True))
            except (ssl.SSLError, OSError) as e:
                tls.close()
                raise _tls_failure(c, e) from None
        return tls


def _tls_failure(c: Connect, e: BaseException) -> _Refused:
    if isinstance(e, TimeoutError):
        return _Refused(ETIMEDOUT, f"TLS handshake with {c.server_name}: timed out")
    if isinstance(e, PinMismatchError):
        return _Refused(EPROTO, f"TLS: {c.server_name}: {e.args[0]}")
    if isinstance(e, ssl.SSLCertVerificationError):
        return _Refused(EPROTO, f"TLS: {c.server_name}: server not verified: {e.verify_message}")
    reason = getattr(e, "reason", None) or str(e)
    return _Refused(EPROTO, f"TLS handshake with {c.server_name} failed: {reason}")


class Outbound:
    """The destinations a workload's instances may open, by name, and their limits."""

    def __init__(
        self,
        connects: tuple[Connect, ...],
        limits: Limits,
        *,
        client_identity: tuple[bytes, bytes] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.limits = limits
        self._connects = connects
        self.log = log or _stderr
        self.destinations: dict[str, Destination] = {}
        self.set_client_identity(client_identity)

    def set_client_identity(self, client_identity: tuple[bytes, bytes] | None) -> None:
        """(Re)build every TLS context, with this client certificate chain and key (the
        Keep's attested identity; a renewed one replaces it for new connections)."""
        destinations = {}
        for c in self._connects:
            if c.tls is None and not c.loopback:
                raise OutboundError(f"connect {c.name}: tls = false outside loopback")
            ctx = None if c.tls is None else client_context(c, client_identity=client_identity)
            destinations[c.name] = Destination(c, ctx)
        self.destinations = destinations
        self.mutual = client_identity is not None

    def warnings(self) -> list[str]:
        """One line per destination that is less than verified TLS (printed at start)."""
        out = []
        for d in self.destinations.values():
            c = d.connect
            if c.tls is None:
                out.append(
                    f"connect {c.name}: PLAIN TEXT to {c.describe()} (tls = false): for a "
                    "loopback test peer only; anyone on this host can read and change it"
                )
            elif c.tls.unsafe:
                out.append(
                    f"connect {c.name}: INSECURE TLS to {c.describe()}: "
                    + ", ".join(
                        {
                            "unsafe_skip_verification": "the server is NOT verified (anyone "
                            "can pose as it)",
                            "unsafe_legacy_tls": "broken protocol versions or suites allowed",
                        }[u]
                        for u in sorted(c.tls.unsafe)
                    )
                )
        return out

    def session(self, *, wall_time: float, cancel: threading.Event | None = None) -> Session:
        return Session(self, time.monotonic() + wall_time, cancel)


def _stderr(line: str) -> None:
    sys.stderr.write(f"motte: {line}\n")
    sys.stderr.flush()


class _Conn:
    __slots__ = ("bytes", "deadline", "name", "sock", "timeout")

    def __init__(self, name: str, sock: socket.socket, deadline: float) -> None:
        self.name = name
        self.sock = sock
        self.deadline = deadline
        self.bytes = 0
        #: The socket's timeout now (set again only when it must change: each change
        #: costs system calls).
        self.timeout = -1.0


class Session:
    """One instance's connections: its handles, counters and last failure."""

    def __init__(self, outbound: Outbound, deadline: float, cancel: threading.Event | None) -> None:
        self.outbound = outbound
        self.deadline = deadline
        self.cancel = cancel
        self.conns: dict[int, _Conn] = {}
        self.opened = 0
        self.refused = 0
        self.last_error = ""
        #: The guest's exported memory, found on its first call.
        self.memory: Any = None

    # -- the guest's calls ------------------------------------------------------------------

    def open(self, name: str) -> int:
        try:
            return self._open(name)
        except _Refused as e:
            return self._fail(f"connect {name}: {e.reason}", e.errno)

    def _open(self, name: str) -> int:
        dest = self.outbound.destinations.get(name)
        limits = self.outbound.limits
        if dest is None:
            raise _Refused(EACCES, "not a destination this Keep was granted")
        if len(self.conns) >= limits.connections:
            raise _Refused(
                EMFILE, f"{limits.connections} connections already open (limits.connections)"
            )
        if self.opened >= limits.connections_total:
            raise _Refused(
                EDQUOT,
                f"{limits.connections_total} connections opened already (limits.connections_total)",
            )
        self.opened += 1
        deadline = min(self.deadline, time.monotonic() + limits.connection_time)
        sock = dest.dial(deadline)
        handle = next(i for i in range(len(self.conns) + 1) if i not in self.conns)
        self.conns[handle] = _Conn(name, sock, deadline)
        return handle

    def read(self, handle: int, size: int) -> bytes | int:
        conn = self.conns.get(handle)
        if conn is None:
            return self._fail(f"read: no connection {handle}", EBADF)
        allowance = self.outbound.limits.connection_bytes_total - conn.bytes
        if allowance <= 0:
            return self._fail(f"connect {conn.name}: {self._bytes_reason()}", EFBIG)
        try:
            data = self._blocking(conn, lambda: conn.sock.recv(min(size, MAX_READ, allowance)))
        except _Refused as e:
            return self._fail(f"connect {conn.name}: {e.reason}", e.errno)
        conn.bytes += len(data)
        return data

    def write(self, handle: int, data: bytes) -> int:
        conn = self.conns.get(handle)
        if conn is None:
            return self._fail(f"write: no connection {handle}", EBADF)
        if conn.bytes + len(data) > self.outbound.limits.connection_bytes_total:
            return self._fail(f"connect {conn.name}: {self._bytes_reason()}", EFBIG)
        view = memoryview(data)
        try:
            while view:
                sent = self._blocking(conn, lambda chunk=view: conn.sock.send(chunk))
                conn.bytes += sent
                view = view[sent:]
        except _Refused as e:
            return self._fail(f"connect {conn.name}: {e.reason}", e.errno)
        return len(data)

    def close(self, handle: int) -> int:
        conn = self.conns.pop(handle, None)
        if conn is None:
            return self._fail(f"close: no connection {handle}", EBADF)
        _close(conn.sock)
        return 0

    def close_all(self) -> None:
        for conn in self.conns.values():
            _close(conn.sock)
        self.conns.clear()
        if self.refused > LOGGED_FAILURES:
            self.outbound.log(
                f"connect: {self.refused - LOGGED_FAILURES} more refused or failed "
                f"({self.refused} in all; the last: {self.last_error})"
            )

    # -- helpers -----------------------------------------------------------------------------

    def _bytes_reason(self) -> str:
        limit = self.outbound.limits.connection_bytes
        return f"{limit} MiB sent and received (limits.connection_bytes)"

    def _fail(self, reason: str, errno: int) -> int:
        self.refused += 1
        self.last_error = reason
        if self.refused <= LOGGED_FAILURES:
            self.outbound.log(reason)
        return -errno

    def _blocking(self, conn: _Conn, call: Callable[[], Any]) -> Any:
        """``call`` on ``conn``'s socket until it returns, within the connection's deadline,
        looking at the instance's cancel every POLL_SECONDS."""
        while True:
            remaining = conn.deadline - time.monotonic()
            if remaining <= 0:
                raise _Refused(ETIMEDOUT, self._time_reason(conn))
            if self.cancel is not None and self.cancel.is_set():
                raise _Refused(ETIMEDOUT, "the instance is stopping")
            timeout = POLL_SECONDS if remaining > POLL_SECONDS else remaining
            if timeout != conn.timeout:
                conn.sock.settimeout(timeout)
                conn.timeout = timeout
            try:
                return call()
            except TimeoutError:
                continue
            except ssl.SSLEOFError:
                raise _Refused(
                    ECONNRESET, "the server closed without TLS close_notify (data may be cut)"
                ) from None
            except ssl.SSLError as e:
                raise _Refused(EPROTO, f"TLS: {getattr(e, 'reason', None) or e}") from None
            except OSError as e:
                raise _Refused(ECONNRESET, e.strerror or str(e)) from None

    def _time_reason(self, conn: _Conn) -> str:
        limits = self.outbound.limits
        if conn.deadline >= self.deadline:
            return f"the instance's wall time ({limits.wall_time:g} s) ran out"
        return f"open for {limits.connection_time:g} s (limits.connection_time)"


def _close(sock: socket.socket) -> None:
    try:
        if isinstance(sock, ssl.SSLSocket):
            # close_notify, without waiting for the server's.
            sock.settimeout(0)
            with contextlib.suppress(ssl.SSLError, OSError, ValueError):
                sock.unwrap()
        sock.close()
    except OSError:
        pass


# -- the guest's imports ---------------------------------------------------------------------


def define_imports(linker: Any, sessions: dict[int, Session]) -> list[Any]:
    """Define ``motte_connect``'s functions on a module linker; each finds its instance's
    session in ``sessions`` by the calling store's context address. Returns what must stay
    alive while the linker's instances run."""
    import ctypes

    from motte.keep import _capi

    def guest(caller: int, ptr: int, length: int) -> tuple[Session | None, int]:
        """The caller's session and the address of [ptr, ptr + length) in its memory (0
        when that range is not in it)."""
        session = sessions.get(_capi.caller_context(caller))
        if session is None:
            return None, 0
        context = _capi.caller_context(caller)
        session.memory, data, size = _capi.caller_memory(caller, context, session.memory)
        if not data or ptr < 0 or length < 0 or ptr + length > size:
            return session, 0
        return session, data + ptr

    def open_(caller: int, ptr: int, length: int) -> int:
        session, at = guest(caller, ptr, length)
        if session is None or not at:
            return -EACCES if session is None else -EFAULT
        if length > 255:
            return -EINVAL
        try:
            name = ctypes.string_at(at, length).decode("ascii")
        except UnicodeDecodeError:
            return -EINVAL
        return session.open(name)

    def read(caller: int, handle: int, ptr: int, length: int) -> int:
        session, at = guest(caller, ptr, length)
        if session is None or not at:
            return -EBADF if session is None else -EFAULT
        data = session.read(handle, length)
        if isinstance(data, int):
            return data
        # The memory cannot have moved: only the guest grows it, and it waits on this call.
        ctypes.memmove(at, data, len(data))
        return len(data)

    def write(caller: int, handle: int, ptr: int, length: int) -> int:
        session, at = guest(caller, ptr, length)
        if session is None or not at:
            return -EBADF if session is None else -EFAULT
        return session.write(handle, ctypes.string_at(at, length))

    def close(caller: int, handle: int) -> int:
        session = sessions.get(_capi.caller_context(caller))
        return -EBADF if session is None else session.close(handle)

    def last_error(caller: int, ptr: int, length: int) -> int:
        session, at = guest(caller, ptr, length)
        if session is None or (length and not at):
            return -EFAULT
        reason = session.last_error.encode()
        if reason and length:
            ctypes.memmove(at, reason, min(length, len(reason)))
        return len(reason)

    return _capi.define_i32_functions(
        linker,
        IMPORT_MODULE,
        {
            "open": (2, open_),
            "read": (3, read),
            "write": (3, write),
            "close": (1, close),
            "last_error": (2, last_error),
        },
    )


def imports_outbound(module: Any) -> bool:
    """Whether a compiled module imports anything from ``motte_connect``."""
    return any(imp.module == IMPORT_MODULE for imp in module.imports)
