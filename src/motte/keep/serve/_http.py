"""HTTP listeners: h11 over an asyncio stream (TLS terminated by the transport), one fresh
instance per request through the CGI bridge (:mod:`motte.keep.serve._cgi`).

One coroutine per connection, keep-alive and pipelining as h11 allows. Every step that
waits on the client is bounded: an idle keep-alive connection is closed after
``keepalive_timeout``; once a request's first byte has arrived, the rest (head and body)
must arrive within ``request_timeout`` (408 otherwise), and so must the client's reading of
the answer. A head past ``max_header_bytes`` or with more than ``max_headers`` lines is a
431, a body past ``max_body`` a 413, a malformed request a 400; the connection is closed
after each. When every instance slot is taken the answer is a 503 with ``Retry-After``.

The log never holds a request's path, query, headers or body (the host running a Keep is
not trusted with them): only the listener, a request number, the status and the reason.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import ssl
import threading
import time
from typing import TYPE_CHECKING, Any

import h11

from motte.errors import MotteError
from motte.keep.serve._cgi import (
    CgiRequest,
    CgiResponse,
    CgiServer,
    cgi_environ,
    error_response,
    response_from_run,
)
from motte.keep.serve._errors import BadGatewayError, BadRequestError

if TYPE_CHECKING:
    from motte.keep import RunResult
    from motte.keep.serve._server import Serving, Tracked

log = logging.getLogger("motte.keep.serve")

READ_SIZE = 64 * 1024
#: Past its wall time, how long an instance blocked in a host call (where the limit cannot
#: reach it) is waited for before its client gets a 502.
OVERRUN_GRACE = 0.5
#: How long, once the Keep is stopping, a connection accepted before the stop has to send
#: its first request.
FRESH_GRACE = 1.0
#: What an idle connection waits for (Tracked.idle).
FRESH = "fresh"
KEEPALIVE = "keepalive"
#: Errors that mean the client has gone: nothing to answer, nobody to tell.
GONE = (ConnectionError, ssl.SSLError, EOFError, OSError)


class _Refuse(Exception):
    """Answer with a status of the Keep's own, then close the connection."""

    def __init__(self, status: int, text: str, *, log_it: bool = False) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.log_it = log_it


class _Closed(Exception):
    """The client closed the connection, or stayed idle too long: close quietly."""


_date_cache: list[Any] = [0, b""]


def unmapped(address: str) -> str:
    """An IPv4 client of a dual-stack socket as IPv4 (``::ffff:192.0.2.7`` -> ``192.0.2.7``)."""
    if address.startswith("::ffff:") and "." in address:
        return address[7:]
    return address


def http_date() -> bytes:
    """The Date header's value, formatted at most once a second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = email.utils.formatdate(now, usegmt=True).encode("ascii")
    return _date_cache[1]


async def serve_http(
    serving: Serving,
    server: CgiServer,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    tracked: Tracked,
) -> None:
    """Answer requests on one connection until it closes, idles out or the Keep stops."""
    opts = serving.options
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=opts.max_header_bytes)
    peer = writer.get_extra_info("peername") or ("", 0)
    remote = (unmapped(str(peer[0])), int(peer[1]))
    first = True
    while True:
        try:
            request = await _next_request(serving, conn, reader, tracked, first)
        except _Closed:
            return
        except _Refuse as e:
            serving.stats.client_errors += 1
            await _answer_and_close(conn, writer, e, opts.request_timeout)
            return
        first = False
        number = serving.next_request_number()
        try:
            response, close = await _handle(
                serving, server, conn, reader, writer, request, remote, number
            )
        except _Refuse as e:
            if e.log_it:  # the reason is the Keep's business; the client gets the number
                log.warning("%s #%s: %d: %s", server.listener, number, e.status, e.text)
                e = _Refuse(e.status, f"request {number} failed; the reason is in the Keep's log")
            if e.status < 500:
                serving.stats.client_errors += 1
            await _answer_and_close(conn, writer, e, opts.request_timeout, head=_is_head(request))
            return
        except _Closed:
            return
        close = close or serving.stopping
        try:
            data = _encode(conn, response, close=close)
        except h11.LocalProtocolError as e:  # the bridge let through what h11 refuses: a bug
            log.error("%s #%s: cannot send the answer (%s)", server.listener, number, e)
            return
        if not await _write(writer, data, opts.request_timeout):
            return
        if close or conn.our_state is h11.MUST_CLOSE:
            return
        try:
            conn.start_next_cycle()
        except h11.LocalProtocolError:
            return


async def _next_request(
    serving: Serving,
    conn: h11.Connection,
    reader: asyncio.StreamReader,
    tracked: Tracked,
    first: bool,
) -> h11.Request:
    """The next request's head. Waiting for its first byte is idle time: a stop closes a
    keep-alive connection then, and gives a new one FRESH_GRACE to send its request (it
    may have been accepted just before the stop). From the first byte on, the head must
    arrive within request_timeout."""
    opts = serving.options
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError as e:
        raise _Refuse(e.error_status_hint, str(e)) from None
    if event is h11.NEED_DATA:
        if serving.stopping and not first:
            raise _Closed
        wait = opts.request_timeout if first else opts.keepalive_timeout
        if serving.stopping:
            wait = min(wait, FRESH_GRACE)
        tracked.idle = FRESH if first else KEEPALIVE
        try:
            async with asyncio.timeout(wait):
                data = await reader.read(READ_SIZE)
        except TimeoutError:
            raise _Closed from None
        except GONE:
            raise _Closed from None
        finally:
            tracked.idle = None
        if not data:
            raise _Closed
        conn.receive_data(data)
    try:
        async with asyncio.timeout(opts.request_timeout):
            event = await _event(conn, reader)
    except TimeoutError:
        raise _Refuse(408, "the request head did not arrive in time") from None
    if isinstance(event, h11.ConnectionClosed):
        raise _Closed
    if not isinstance(event, h11.Request):  # h11 yields a Request first on a server
        raise _Refuse(400, "expected a request")
    if len(event.headers) > opts.max_headers:
        raise _Refuse(431, f"more than {opts.max_headers} header lines")
    # h11 bounds only a head still arriving; one that arrived whole is measured here.
    size = len(event.target) + sum(len(n) + len(v) + 4 for n, v in event.headers)
    if size > opts.max_header_bytes:
        raise _Refuse(431, f"the request head is larger than {opts.max_header_bytes} bytes")
    return event


async def _event(conn: h11.Connection, reader: asyncio.StreamReader) -> Any:
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as e:
            raise _Refuse(e.error_status_hint, str(e)) from None
        if event is not h11.NEED_DATA:
            return event
        try:
            data = await reader.read(READ_SIZE)
        except GONE:
            raise _Closed from None
        conn.receive_data(data)


def _declared_length(request: h11.Request) -> int | None:
    for name, value in request.headers:
        if name == b"content-length":
            return int(value)
    return None


def _has_body(request: h11.Request) -> bool:
    """Whether the request carries a body (possibly empty): RFC 3875's test for setting
    CONTENT_LENGTH."""
    return any(name in (b"content-length", b"transfer-encoding") for name, _ in request.headers)


def _is_head(request: h11.Request) -> bool:
    return request.method == b"HEAD"


async def _handle(
    serving: Serving,
    server: CgiServer,
    conn: h11.Connection,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    request: h11.Request,
    remote: tuple[str, int],
    number: int,
) -> tuple[CgiResponse, bool]:
    """Read the body, run an instance, and return its answer (or raise :class:`_Refuse`)."""
    opts = serving.options
    declared = _declared_length(request)
    if declared is not None and declared > opts.max_body:
        raise _Refuse(413, f"the body is larger than {opts.max_body} bytes")
    if not serving.pool.admit():
        serving.stats.rejected += 1
        raise _Refuse(503, "every instance is busy; try again shortly")
    submitted = False
    try:
        if conn.they_are_waiting_for_100_continue:
            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
        body = await _read_body(conn, reader, opts.max_body, opts.request_timeout)
        try:
            env = cgi_environ(
                CgiRequest(
                    request.method.decode("ascii"),
                    bytes(request.target),
                    request.http_version.decode("ascii"),
                    request.headers,
                    len(body) if _has_body(request) else None,
                    remote,
                ),
                server,
            )
        except BadRequestError as e:
            raise _Refuse(e.status, e.message) from None
        head = _is_head(request)
        cancel = threading.Event()
        submitted = True
        try:
            result = await _run(serving, env, body, cancel)
        except MotteError as e:
            serving.stats.bad_gateway += 1
            raise _Refuse(502, f"the instance could not start: {e.message}", log_it=True) from None
        except _Overran:
            serving.stats.bad_gateway += 1
            wall = serving.prepared.manifest.limits.wall_time
            raise _Refuse(
                502,
                f"the guest did not finish within its wall time of {wall:g} s "
                "(blocked in a host call); it is stopped when the call returns",
                log_it=True,
            ) from None
    finally:
        if not submitted:
            serving.pool.release()
    serving.stats.requests += 1
    serving.guest_stderr(f"{server.listener} #{number}", result.stderr)
    if cancel.is_set():
        serving.stats.interrupted += 1
        return error_response(503, "the Keep is stopping", head=head), True
    try:
        response, note = response_from_run(result, head=head)
    except BadGatewayError as e:
        serving.stats.bad_gateway += 1
        log.warning("%s #%s: 502 bad gateway: %s", server.listener, number, e.message)
        text = f"the workload's answer was invalid (request {number}; reason in the Keep's log)"
        return error_response(502, text, head=head), False
    if note:
        log.info("%s #%s: %d, but %s", server.listener, number, response.status, note)
    return response, False


class _Overran(Exception):
    """The instance ran past its wall time plus OVERRUN_GRACE without returning."""


async def _run(
    serving: Serving, env: dict[str, str], body: bytes, cancel: threading.Event
) -> RunResult:
    """Run the request's instance; its admission slot is released when it ends, which may
    be after this returns: a guest blocked in a host call past its wall time is answered
    for (:class:`_Overran`) but still holds its slot."""
    loop = asyncio.get_running_loop()
    started: list[float] = []

    def instance() -> RunResult:
        started.append(time.monotonic())
        return serving.run_instance(env, body, cancel)

    job = serving.pool.submit(instance)
    serving.cancels.add(cancel)

    def finished(fut: asyncio.Future[RunResult]) -> None:
        serving.cancels.discard(cancel)
        serving.pool.release()
        if not fut.cancelled():
            fut.exception()  # retrieved: nobody may be waiting any more

    job.add_done_callback(finished)
    waiter = asyncio.shield(job)
    limit = serving.prepared.manifest.limits.wall_time + OVERRUN_GRACE
    overran: list[bool] = []

    def check() -> None:
        # Armed at submission; an instance still queued has not started its clock.
        remaining = (started[0] + limit - time.monotonic()) if started else limit
        if job.done():
            return
        if remaining > 0:
            handle[0] = loop.call_later(remaining, check)
            return
        overran.append(True)
        cancel.set()
        waiter.cancel()

    handle = [loop.call_later(limit, check)]
    try:
        return await waiter
    except asyncio.CancelledError:
        if overran:
            raise _Overran from None
        raise
    finally:
        handle[0].cancel()


async def _read_body(
    conn: h11.Connection, reader: asyncio.StreamReader, limit: int, timeout: float
) -> bytes:
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            while True:
                event = await _event(conn, reader)
                if isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > limit:
                        raise _Refuse(413, f"the body is larger than {limit} bytes")
                    parts.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    return b"".join(parts)
                elif isinstance(event, h11.ConnectionClosed):
                    raise _Closed
    except TimeoutError:
        raise _Refuse(408, "the request body did not arrive in time") from None


def _encode(conn: h11.Connection, response: CgiResponse, *, close: bool) -> bytes:
    headers = list(response.headers)
    headers.append((b"Date", http_date()))
    if response.status not in (204, 304):
        headers.append((b"Content-Length", b"%d" % response.content_length))
    if close:
        headers.append((b"Connection", b"close"))
    data = conn.send(
        h11.Response(status_code=response.status, headers=headers, reason=response.reason)
    )
    assert data is not None
    if response.body:
        data += conn.send(h11.Data(data=response.body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    return data


async def _write(writer: asyncio.StreamWriter, data: bytes, timeout: float) -> bool:
    """Write and wait until the client has taken it; False if it has gone or is too slow."""
    try:
        writer.write(data)
        async with asyncio.timeout(timeout):
            await writer.drain()
    except (TimeoutError, *GONE):
        return False
    return True


async def _answer_and_close(
    conn: h11.Connection,
    writer: asyncio.StreamWriter,
    refusal: _Refuse,
    timeout: float,
    *,
    head: bool = False,
) -> None:
    """Send the Keep's own answer if the connection still allows one (it closes next)."""
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    response = error_response(refusal.status, refusal.text, head=head)
    headers_extra = [(b"Retry-After", b"1")] if refusal.status == 503 else []
    response = CgiResponse(
        response.status,
        response.reason,
        [*response.headers, *headers_extra],
        response.body,
        response.content_length,
    )
    try:
        data = _encode(conn, response, close=True)
    except h11.LocalProtocolError:
        return
    await _write(writer, data, timeout)
