"""HTTP listeners: each connection on a thread of its own; each request is parsed, a fresh
instance answers it on the same thread through the CGI bridge (:mod:`motte.keep.serve._cgi`),
and the answer is written in one piece.

A request that arrived whole in the common form (one head, no body or a Content-Length
one) is read by :mod:`~motte.keep.serve._request`, a strict subset of h11 checked against
it; any other (chunked, ``Expect: 100-continue``, still arriving, malformed) is read by h11,
which stays the parser of record. Keep-alive and pipelining as HTTP/1.1 allows: the bytes
after one request start the next. The answer's bytes come from
:func:`~motte.keep.serve._cgi.encode_response`, from values the bridge has already
validated.

Every step that waits on the client is bounded: an idle connection is closed after
``keepalive_timeout`` (``request_timeout`` before its first request); once a request's
first byte has arrived, its head and then its body must each arrive within
``request_timeout`` (408 otherwise), and the client must take the answer within
``request_timeout``. A head past ``max_header_bytes`` or with more than ``max_headers``
lines is a 431, a body past ``max_body`` a 413, a malformed request a 400; the connection
is closed after each. When every instance slot is taken the answer is a 503 with
``Retry-After``. A guest blocked in a host call past its wall time (out of the epoch's
reach) has its client answered with a 502 by the watchdog (``_conn``).

The log never holds a request's path, query, headers or body (the host running a Keep is
not trusted with them): only the listener, a request number, the status and the reason.
"""

from __future__ import annotations

import email.utils
import logging
import socket
import ssl
import time
from functools import partial
from typing import TYPE_CHECKING, Any

import h11

from motte.errors import MotteError
from motte.keep.serve._cgi import (
    CgiRequest,
    CgiResponse,
    CgiServer,
    cgi_environ,
    encode_response,
    error_response,
    response_from_run,
)
from motte.keep.serve._conn import (
    FRESH_GRACE,
    GONE,
    INSTANCE,
    READ_SIZE,
    READING,
    WRITING,
    close_after_answer,
    tls_handshake,
)
from motte.keep.serve._errors import BadGatewayError, BadRequestError
from motte.keep.serve._request import CommonRequest, parse_common_request

if TYPE_CHECKING:
    from motte.keep import RunResult
    from motte.keep.serve._conn import Conn
    from motte.keep.serve._server import Listening, Serving

log = logging.getLogger("motte.keep.serve")

#: Past its wall time, how long an instance blocked in a host call (where the limit cannot
#: reach it) is waited for before its client gets a 502.
OVERRUN_GRACE = 0.5
#: How often a request still arriving looks for a forced stop (seconds): well inside the
#: stop's grace (FORCE_GRACE), so its client gets the 503 rather than a closed connection.
STOP_CHECK = 0.25
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _Refuse(Exception):
    """Answer with a status of the Keep's own, then close the connection."""

    def __init__(self, status: int, text: str, *, log_it: bool = False) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.log_it = log_it


class _Closed(Exception):
    """The client closed the connection, stayed idle too long, or the connection was taken
    over: close quietly."""


_date: tuple[int, bytes] = (0, b"")


def unmapped(address: str) -> str:
    """An IPv4 client of a dual-stack socket as IPv4 (``::ffff:192.0.2.7`` -> ``192.0.2.7``)."""
    if address.startswith("::ffff:") and "." in address:
        return address[7:]
    return address


def http_date() -> bytes:
    """The Date header's value, formatted at most once a second."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        _date = (now, email.utils.formatdate(now, usegmt=True).encode("ascii"))
    return _date[1]


def serve_http(conn: Conn, lst: Listening) -> None:
    """Answer requests on one connection until it closes, idles out or the Keep stops."""
    if lst.context is not None and not tls_handshake(conn, lst.context):
        return
    serving = conn.serving
    sock = conn.sock
    try:
        local = sock.getsockname()
    except OSError:
        return
    server = CgiServer(lst.listen.name, lst.bound.port, lst.listen.tls, unmapped(str(local[0])))
    remote = (unmapped(str(conn.peer[0])), int(conn.peer[1]))
    pending, closed, first = b"", False, True
    while True:
        if not pending:
            if closed:
                return
            try:
                pending = _wait_for_request(conn, first)
            except _Closed:
                return
        elif not conn.enter(READING, None):
            return
        number = None
        head = False
        try:
            common = parse_common_request(pending)
            if common is not None:
                request, pending = common
                _check_head(conn.serving.options, request.target, request.headers)
                first = False
                number = serving.next_request_number()
                head = request.method == b"HEAD"
                response, close = _handle_common(conn, server, request, remote, number, head)
                close = close or not request.keep_alive
            else:
                parser = h11.Connection(
                    h11.SERVER, max_incomplete_event_size=serving.options.max_header_bytes
                )
                parser.receive_data(pending)
                if closed:
                    parser.receive_data(b"")
                event = _h11_request(conn, parser)
                first = False
                number = serving.next_request_number()
                head = event.method == b"HEAD"
                response, close = _handle_h11(conn, server, parser, event, remote, number, head)
                pending, closed = parser.trailing_data
                close = close or closed or parser.their_state is h11.MUST_CLOSE
        except _Closed:
            return
        except _Refuse as e:
            if e.log_it:  # the reason is the Keep's business; the client gets the number
                log.warning("%s #%s: %d: %s", server.listener, number, e.status, e.text)
                e = _Refuse(e.status, f"request {number} failed; the reason is in the Keep's log")
            if e.status < 500:
                serving.count("client_errors")
            elif conn.cancel.is_set():
                serving.count("interrupted")
            _answer_and_close(conn, e, head=head)
            return
        close = close or serving.stopping
        try:
            sock.sendall(encode_response(response, close=close, date=http_date()))
        except GONE:
            return
        if close:
            close_after_answer(sock)
            return


def _event(parser: h11.Connection) -> Any:
    try:
        return parser.next_event()
    except h11.RemoteProtocolError as e:
        raise _Refuse(e.error_status_hint, str(e)) from None


def _wait_for_request(conn: Conn, first: bool) -> bytes:
    """The first bytes of the next request. Waiting for them is idle time (the watchdog's
    deadline: request_timeout for a connection's first request, keepalive_timeout for the
    next ones; a stop closes a keep-alive connection then, and gives a new one FRESH_GRACE
    to send its request)."""
    opts = conn.serving.options
    wait = opts.request_timeout if first else opts.keepalive_timeout
    if not conn.idle(first, wait, FRESH_GRACE):
        raise _Closed
    try:
        data = conn.sock.recv(READ_SIZE)
    except GONE:
        data = b""
    if not conn.enter(READING, None) or not data:
        raise _Closed
    return data


def _h11_request(conn: Conn, parser: h11.Connection) -> h11.Request:
    """The request's head through h11, read on within request_timeout (408 past it)."""
    opts = conn.serving.options
    event = _event(parser)
    if event is h11.NEED_DATA:
        deadline = time.monotonic() + opts.request_timeout
        try:
            event = _read_slowly(conn, parser, deadline, "head")
        finally:
            _blocking(conn.sock)
    if isinstance(event, h11.ConnectionClosed):
        raise _Closed
    if not isinstance(event, h11.Request):  # h11 yields a Request first on a server
        raise _Refuse(400, "expected a request")
    _check_head(opts, event.target, event.headers)
    return event


def _check_head(opts: Any, target: bytes, headers: Any) -> None:
    if len(headers) > opts.max_headers:
        raise _Refuse(431, f"more than {opts.max_headers} header lines")
    # h11 bounds only a head still arriving; one that arrived whole is measured here.
    size = len(target) + sum(len(n) + len(v) + 4 for n, v in headers)
    if size > opts.max_header_bytes:
        raise _Refuse(431, f"the request head is larger than {opts.max_header_bytes} bytes")


def _read_slowly(conn: Conn, parser: h11.Connection, deadline: float, what: str) -> Any:
    """The next event, reading with socket timeouts until ``deadline`` (408 past it), and a
    503 when a forced stop comes meanwhile: a request still arriving is answered like one
    whose instance was stopped. The socket keeps its timeout: the caller makes it blocking
    again (:func:`_blocking`)."""
    sock = conn.sock
    while True:
        event = _event(parser)
        if event is not h11.NEED_DATA:
            return event
        if conn.cancel.is_set():
            raise _Refuse(503, "the Keep is stopping")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Refuse(408, f"the request {what} did not arrive in time")
        sock.settimeout(min(remaining, STOP_CHECK))
        try:
            data = sock.recv(READ_SIZE)
        except TimeoutError:
            continue  # the deadline and a stop are looked at again above
        except GONE:
            raise _Closed from None
        parser.receive_data(data)


def _blocking(sock: socket.socket) -> None:
    if sock.gettimeout() is not None:
        sock.settimeout(None)


def _declared_length(headers: Any) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            return int(value)
    return None


def _has_body(headers: Any) -> bool:
    """Whether the request carries a body (possibly empty): RFC 3875's test for setting
    CONTENT_LENGTH."""
    return any(name in (b"content-length", b"transfer-encoding") for name, _ in headers)


def _admit(conn: Conn, headers: Any) -> None:
    """Refuse a body past max_body by its declared length, and a request past every
    instance slot; otherwise take a slot (the caller releases it)."""
    serving = conn.serving
    declared = _declared_length(headers)
    if declared is not None and declared > serving.options.max_body:
        raise _Refuse(413, f"the body is larger than {serving.options.max_body} bytes")
    if not serving.slots.admit():
        serving.count("rejected")
        raise _Refuse(503, "every instance is busy; try again shortly")


def _handle_common(
    conn: Conn,
    server: CgiServer,
    request: CommonRequest,
    remote: tuple[str, int],
    number: str,
    head: bool,
) -> tuple[CgiResponse, bool]:
    """Answer a request the fast path read whole (or raise :class:`_Refuse`)."""
    _admit(conn, request.headers)
    try:
        cgi = CgiRequest(
            request.method.decode("ascii"),
            request.target,
            request.http_version.decode("ascii"),
            request.headers,
            len(request.body) if _has_body(request.headers) else None,
            remote,
        )
        return _answer(conn, server, cgi, request.body, number, head)
    finally:
        conn.serving.slots.release()


def _handle_h11(
    conn: Conn,
    server: CgiServer,
    parser: h11.Connection,
    request: h11.Request,
    remote: tuple[str, int],
    number: str,
    head: bool,
) -> tuple[CgiResponse, bool]:
    """Read the body through h11, then answer (or raise :class:`_Refuse`)."""
    _admit(conn, request.headers)
    try:
        if parser.they_are_waiting_for_100_continue:
            try:
                conn.sock.sendall(CONTINUE)
            except GONE:
                raise _Closed from None
        body = _read_body(conn, parser)
        cgi = CgiRequest(
            request.method.decode("ascii"),
            bytes(request.target),
            request.http_version.decode("ascii"),
            request.headers,
            len(body) if _has_body(request.headers) else None,
            remote,
        )
        return _answer(conn, server, cgi, body, number, head)
    finally:
        conn.serving.slots.release()


def _answer(
    conn: Conn, server: CgiServer, request: CgiRequest, body: bytes, number: str, head: bool
) -> tuple[CgiResponse, bool]:
    """Run an instance for the request and make its answer: (response, close after it)."""
    serving = conn.serving
    opts = serving.options
    try:
        env = cgi_environ(request, server)
    except BadRequestError as e:
        raise _Refuse(e.status, e.message) from None
    result = _run(conn, env, body, number, head, server.listener)
    if result is None:  # a forced stop came while it waited for a slot
        serving.count("interrupted")
        if not conn.enter(WRITING, time.monotonic() + opts.request_timeout):
            raise _Closed
        return error_response(503, "the Keep is stopping", head=head), True
    serving.count("requests")
    if result.stderr:
        serving.guest_stderr(f"{server.listener} #{number}", result.stderr)
    if conn.cancel.is_set():
        serving.count("interrupted")
        return error_response(503, "the Keep is stopping", head=head), True
    try:
        response, note = response_from_run(result, head=head)
    except BadGatewayError as e:
        serving.count("bad_gateway")
        log.warning("%s #%s: 502 bad gateway: %s", server.listener, number, e.message)
        text = f"the workload's answer was invalid (request {number}; reason in the Keep's log)"
        return error_response(502, text, head=head), False
    if note:
        log.info("%s #%s: %d, but %s", server.listener, number, response.status, note)
    return response, False


def _read_body(conn: Conn, parser: h11.Connection) -> bytes:
    opts = conn.serving.options
    parts: list[bytes] = []
    size = 0
    deadline: float | None = None
    try:
        while True:
            event = _event(parser)
            if event is h11.NEED_DATA:
                if deadline is None:
                    deadline = time.monotonic() + opts.request_timeout
                event = _read_slowly(conn, parser, deadline, "body")
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > opts.max_body:
                    raise _Refuse(413, f"the body is larger than {opts.max_body} bytes")
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(parts)
            elif isinstance(event, h11.ConnectionClosed):
                raise _Closed
    finally:
        _blocking(conn.sock)


def _run(
    conn: Conn, env: dict[str, str], body: bytes, number: str, head: bool, listener: str
) -> RunResult | None:
    """Run the request's instance on this thread; None when a forced stop came first.

    It may outlive its wall time blocked in a host call: the watchdog then answers the
    client (:func:`_answer_overrun`) and this returns, once the instance has, into
    :class:`_Closed`."""
    serving = conn.serving
    slots = serving.slots
    cancel = conn.cancel
    slots.start()
    try:
        if cancel.is_set():
            return None
        wall = serving.prepared.manifest.limits.wall_time
        conn.overrun = partial(_answer_overrun, number, head, listener, wall)
        if not conn.enter(INSTANCE, time.monotonic() + wall + OVERRUN_GRACE):
            raise _Closed
        error = None
        try:
            result = serving.run_instance(env, body, cancel)
        except MotteError as e:
            error = e
        if not conn.enter(WRITING, time.monotonic() + serving.options.request_timeout):
            raise _Closed  # taken over: its client has had its answer
    finally:
        slots.finish()
    if error is not None:
        from motte.keep._volumes import VolumeNotPersisted

        if isinstance(error, VolumeNotPersisted):
            # The guest asked for its sealed volume to be persisted: no acknowledgement.
            raise _Refuse(503, error.message, log_it=True)
        serving.count("bad_gateway")
        raise _Refuse(502, f"the instance could not start: {error.message}", log_it=True)
    return result


def _answer_overrun(number: str, head: bool, listener: str, wall: float, conn: Conn) -> None:
    """On a thread of its own: answer the client of an instance blocked past its wall time
    (the instance's thread no longer touches the connection), then close it."""
    serving = conn.serving
    serving.count("bad_gateway")
    log.warning(
        "%s #%s: 502: the guest did not finish within its wall time of %g s (blocked in a "
        "host call); it is stopped when the call returns",
        listener,
        number,
        wall,
    )
    refusal = _Refuse(502, f"request {number} failed; the reason is in the Keep's log")
    try:
        conn.sock.settimeout(serving.options.request_timeout)
        conn.sock.sendall(_refusal_bytes(refusal, head))
        close_after_answer(conn.sock)
    except GONE:
        pass
    finally:
        conn.sock.close()


def _refusal_bytes(refusal: _Refuse, head: bool) -> bytes:
    response = error_response(refusal.status, refusal.text, head=head)
    if refusal.status == 503:
        response = response.replace(headers=(*response.headers, (b"Retry-After", b"1")))
    return encode_response(response, close=True, date=http_date())


def _answer_and_close(conn: Conn, refusal: _Refuse, *, head: bool = False) -> None:
    """Send the Keep's own answer (the connection closes next)."""
    timeout = conn.serving.options.request_timeout
    if not conn.enter(WRITING, time.monotonic() + timeout):
        return
    try:
        conn.sock.sendall(_refusal_bytes(refusal, head))
    except GONE:
        return
    close_after_answer(conn.sock)


def refuse_connection(
    serving: Serving, raw: socket.socket, context: ssl.SSLContext | None, timeout: float
) -> None:
    """A connection past max_connections: answer 503 within ``timeout``, then close."""
    sock = raw
    try:
        raw.settimeout(timeout)
        if context is not None:
            sock = context.wrap_socket(raw, server_side=True)
        sock.recv(READ_SIZE)  # the request (its head at least), so the close resets nothing
        sock.sendall(
            _refusal_bytes(_Refuse(503, "every connection slot is busy; try again shortly"), False)
        )
        close_after_answer(sock)
    except (*GONE, ValueError):
        pass
    finally:
        sock.close()
        serving.refused()
