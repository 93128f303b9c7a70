"""The WAGI/CGI bridge: an HTTP request becomes a guest's environment and standard input,
the guest's standard output becomes the HTTP response. Pure: values in, values out; no
socket, no clock, no wasmtime (``_http`` does the I/O).

What a guest sees (RFC 3875 section 4, with WAGI's additions):

    GATEWAY_INTERFACE  CGI/1.1              SERVER_SOFTWARE  motte/<version>
    REQUEST_METHOD     GET                  SERVER_PROTOCOL  HTTP/1.1
    PATH_INFO          /a b  (decoded)      X_RAW_PATH_INFO  /a%20b  (as sent)
    QUERY_STRING       x=1   (as sent)      SCRIPT_NAME      ""  (the workload serves /)
    SERVER_NAME        the Host header's name, else the address the client connected to
    SERVER_PORT        the listener's port  HTTPS            on  (TLS listeners only)
    REMOTE_ADDR, REMOTE_HOST, REMOTE_PORT   the client's address (no reverse DNS)
    CONTENT_TYPE, CONTENT_LENGTH            only when the request has them / has a body
    X_FULL_URL         https://host/a%20b?x=1   MOTTE_LISTENER  the listener's name
    HTTP_<NAME>        each other header, '-' -> '_', upper case; repeats joined by ", "
                       (cookies by "; ")

Request headers that never reach a guest: hop-by-hop ones (Connection, Transfer-Encoding,
...: the Keep owns the connection), ``Proxy`` (an ``HTTP_PROXY`` variable would redirect a
guest's outbound client: "httpoxy"), and any header whose name has an underscore (it would
be indistinguishable from a dash, so a client could spoof ``X-Forwarded-For`` as
``X_Forwarded_For``). Header values and the decoded path reach the guest byte for byte, so
they must be UTF-8 (environment strings are); anything else is a 400.

What a guest answers (RFC 3875 section 6): header lines, a blank line, then the body.
Lines may end in LF or CRLF. ``Status: 404 Not Found`` sets the status (default 200, or 302
with ``Location``); ``Content-Type`` is required when there is a body. The guest's output
is refused with a :class:`BadGatewayError` (a 502, reason logged) when there is no blank
line, the header block is too long or has too many lines, a name or value is malformed,
Status/Content-Type/Location repeat, the status is not a final 200..599 one, a body comes
with 204/304, the guest sets a hop-by-hop header, or its Content-Length disagrees with the
body. The Keep frames the response itself (:func:`encode_response`: Content-Length from
the body, Date, Connection) from the values checked here: nothing a guest wrote reaches the
wire unchecked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes, urlsplit

from motte import __version__
from motte._record import Record
from motte.keep.serve._errors import BadGatewayError, BadRequestError

if TYPE_CHECKING:
    from motte.keep._outcome import RunResult

#: Bounds on a guest's header block: generous for real programs, finite for broken ones.
MAX_RESPONSE_HEADER_BYTES = 64 * 1024
MAX_RESPONSE_HEADERS = 100

#: Connection-level headers (RFC 9110 section 7.6.1): the Keep's, never a guest's, in
#: either direction. Proxy-Connection and Keep-Alive are the common non-standard ones.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_OWN_VARIABLES = frozenset({b"content-type", b"content-length"})
_NO_BODY_STATUSES = frozenset({204, 304})
#: Headers a guest may send once: the CGI fields, and the length the Keep checks.
_SINGLE = frozenset({b"content-type", b"location", b"content-length"})
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_STATUS = re.compile(rb"([0-9]{3})(?:[ \t]+(.*))?")
_SOFTWARE = f"motte/{__version__}"


class CgiServer(Record):
    """The listener a request arrived on."""

    __slots__ = ("address", "listener", "port", "tls")
    listener: str
    port: int
    tls: bool
    #: The local address the client connected to (SERVER_NAME when there is no Host).
    address: str

    def __init__(self, listener: str, port: int, tls: bool, address: str) -> None:
        self._set(listener=listener, port=port, tls=tls, address=address)


class CgiRequest(Record):
    """An HTTP request's metadata as the adapter parsed it (h11 has validated the syntax).

    ``headers`` are (lower-case name, value) pairs in arrival order; ``body_length`` is
    None when the request carries no body at all (no Content-Length, not chunked).
    """

    __slots__ = ("body_length", "headers", "http_version", "method", "remote", "target")
    method: str
    target: bytes
    http_version: str
    headers: tuple[tuple[bytes, bytes], ...]
    body_length: int | None
    remote: tuple[str, int]

    def __init__(
        self,
        method: str,
        target: bytes,
        http_version: str,
        headers: Sequence[tuple[bytes, bytes]],
        body_length: int | None,
        remote: tuple[str, int],
    ) -> None:
        self._set(
            method=method,
            target=target,
            http_version=http_version,
            headers=tuple(headers),
            body_length=body_length,
            remote=remote,
        )


class CgiResponse(Record):
    """What to send: status, reason, headers (as the guest wrote them) and the body.

    ``content_length`` is what the Content-Length header says: the body's length, except
    for an answer to HEAD, which has no body and may announce the length of one.
    """

    __slots__ = ("body", "content_length", "headers", "reason", "status")
    status: int
    reason: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    content_length: int

    def __init__(
        self,
        status: int,
        reason: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        body: bytes,
        content_length: int | None = None,
    ) -> None:
        self._set(
            status=status,
            reason=reason,
            headers=tuple(headers),
            body=body,
            content_length=len(body) if content_length is None else content_length,
        )


# -- request -> environment ---------------------------------------------------------------


def _text(value: bytes, what: str) -> str:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequestError(f"{what} is not UTF-8") from None
    if "\0" in text:
        raise BadRequestError(f"{what} contains NUL")
    return text


def _split_target(target: bytes) -> tuple[bytes, bytes]:
    """(raw path, raw query) of an origin-form, absolute-form or asterisk-form target."""
    if target == b"*":
        return b"*", b""
    if not target.startswith(b"/"):
        if not target[:8].lower().startswith((b"http://", b"https://")):
            raise BadRequestError("request target is not a path or an http(s) URL")
        parts = urlsplit(target)
        return parts.path or b"/", parts.query
    path, _, query = target.partition(b"?")
    return path, query


def cgi_environ(request: CgiRequest, server: CgiServer) -> dict[str, str]:
    """The environment variables a guest gets for ``request`` (see the module docstring).

    Raises :class:`BadRequestError` for a path or header value that cannot be given to a
    guest as text (not UTF-8, or NUL after percent-decoding).
    """
    raw_path, query = _split_target(request.target)
    path = _text(unquote_to_bytes(raw_path), "the path (percent-decoded)")
    raw_path_text = raw_path.decode("ascii")  # h11 allows only visible ASCII in targets
    query_text = query.decode("ascii")
    env = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": _SOFTWARE,
        "SERVER_PROTOCOL": f"HTTP/{request.http_version}",
        "SERVER_PORT": str(server.port),
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "X_RAW_PATH_INFO": raw_path_text,
        "QUERY_STRING": query_text,
        "REMOTE_ADDR": request.remote[0],
        "REMOTE_HOST": request.remote[0],
        "REMOTE_PORT": str(request.remote[1]),
        "MOTTE_LISTENER": server.listener,
    }
    if server.tls:
        env["HTTPS"] = "on"
    if request.body_length is not None:
        env["CONTENT_LENGTH"] = str(request.body_length)
    joined: dict[bytes, list[bytes]] = {}
    for name, value in request.headers:
        joined.setdefault(name.lower(), []).append(value)
    for name, values in joined.items():
        if name == b"content-type":
            env["CONTENT_TYPE"] = _text(values[-1], "the Content-Type header")
            continue
        if name in _OWN_VARIABLES or name in HOP_BY_HOP or name == b"proxy" or b"_" in name:
            continue
        separator = b"; " if name == b"cookie" else b", "
        key = "HTTP_" + name.decode("ascii").upper().replace("-", "_")
        env[key] = _text(separator.join(values), f"the {name.decode('ascii')} header")
    host = env.get("HTTP_HOST", "")
    env["SERVER_NAME"] = _host_name(host) or server.address
    scheme = "https" if server.tls else "http"
    authority = host or _authority(server.address, server.port)
    full = f"{scheme}://{authority}{raw_path_text}"
    env["X_FULL_URL"] = f"{full}?{query_text}" if query_text else full
    return env


def _host_name(host: str) -> str:
    """The name part of a Host header value (``[::1]:8443`` -> ``::1``)."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else ""
    return host.rsplit(":", 1)[0] if ":" in host else host


def _authority(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


# -- guest output -> response -------------------------------------------------------------


def parse_cgi_response(
    output: bytes,
    *,
    head: bool = False,
    max_header_bytes: int = MAX_RESPONSE_HEADER_BYTES,
    max_headers: int = MAX_RESPONSE_HEADERS,
) -> CgiResponse:
    """The response a guest wrote on standard output; :class:`BadGatewayError` says why not.

    ``head`` says the request was HEAD: the body is dropped, and a guest that wrote none may
    announce the length of one with Content-Length.
    """
    if not output:
        raise BadGatewayError("the guest wrote nothing on standard output")
    headers: list[tuple[bytes, bytes]] = []
    status: int | None = None
    reason = b""
    single: dict[bytes, bytes] = {}
    pos = number = 0
    while True:
        nl = output.find(b"\n", pos, max_header_bytes + 1)
        if nl == -1:
            if len(output) > max_header_bytes:
                raise BadGatewayError(
                    f"no blank line within the first {max_header_bytes} bytes of output "
                    "(the header block is too long, or there is none)"
                )
            raise BadGatewayError("no blank line after the headers (the output ends first)")
        line = output[pos:nl]
        if line.endswith(b"\r"):
            line = line[:-1]
        pos = nl + 1
        if not line:
            break
        number += 1
        if number > max_headers:
            raise BadGatewayError(f"more than {max_headers} header lines")
        name, value = _header_line(line, number)
        lower = name.lower()
        if lower in HOP_BY_HOP:
            raise BadGatewayError(
                f"header line {number}: {name.decode()} is a hop-by-hop header the Keep owns"
            )
        if lower == b"status":
            if status is not None:
                raise BadGatewayError(f"header line {number}: a second Status header")
            status, reason = _status(value, number)
            continue
        if lower in _SINGLE:
            if lower in single:
                raise BadGatewayError(f"header line {number}: a second {name.decode()} header")
            single[lower] = value
            if lower == b"location" and not value:
                raise BadGatewayError(f"header line {number}: an empty Location")
            if lower == b"content-length":
                _content_length(value, number)
                continue  # the Keep sends its own, from the body it frames
        headers.append((name, value))
    body = output[pos:]
    content_type, location = single.get(b"content-type"), single.get(b"location")
    content_length = single.get(b"content-length")
    if status is None and content_type is None and location is None:
        raise BadGatewayError("no Content-Type, Location or Status header before the blank line")
    if status is None:
        status = 302 if location is not None else 200
    if body and content_type is None:
        raise BadGatewayError(f"a {len(body)}-byte body without a Content-Type header")
    if body and status in _NO_BODY_STATUSES:
        raise BadGatewayError(f"status {status} cannot have a body ({len(body)} bytes)")
    announced = len(body)
    if content_length is not None and int(content_length) != len(body):
        if not (head and not body):
            raise BadGatewayError(
                f"Content-Length says {int(content_length)} bytes but the body has {len(body)}"
            )
        announced = int(content_length)
    if head:
        body = b""
    if status in _NO_BODY_STATUSES:
        announced = 0
    return CgiResponse(status, reason or _reason(status), headers, body, announced)


def _header_line(line: bytes, number: int) -> tuple[bytes, bytes]:
    if line[:1] in (b" ", b"\t"):
        raise BadGatewayError(f"header line {number}: starts with whitespace (line folding)")
    name, colon, value = line.partition(b":")
    if not colon:
        raise BadGatewayError(f"header line {number}: no ':' ({_show(line)})")
    if not _TOKEN.fullmatch(name):
        raise BadGatewayError(f"header line {number}: bad header name {_show(name)}")
    value = value.strip(b" \t")
    if not _FIELD_VALUE.fullmatch(value):
        raise BadGatewayError(
            f"header line {number}: {name.decode()}: control character in the value"
        )
    return name, value


def _status(value: bytes, number: int) -> tuple[int, bytes]:
    match = _STATUS.fullmatch(value)
    if match is None:
        raise BadGatewayError(f"header line {number}: Status {_show(value)} is not 'NNN reason'")
    code = int(match.group(1))
    if not 200 <= code <= 599:
        raise BadGatewayError(
            f"header line {number}: Status {code} is not a final status (200 to 599)"
        )
    return code, (match.group(2) or b"").strip(b" \t")


def _content_length(value: bytes, number: int) -> None:
    if not value.isdigit() or len(value) > 18:
        raise BadGatewayError(f"header line {number}: Content-Length {_show(value)}")


_REASONS = {int(status): status.phrase.encode("ascii") for status in HTTPStatus}


def _reason(status: int) -> bytes:
    return _REASONS.get(status, b"")


def _show(data: bytes, limit: int = 40) -> str:
    """A short, printable rendering of guest bytes for the log."""
    text = repr(data[:limit])[2:-1]
    return f"'{text}...'" if len(data) > limit else f"'{text}'"


# -- an instance's outcome -> response ----------------------------------------------------


def response_from_run(result: RunResult, *, head: bool = False) -> tuple[CgiResponse, str | None]:
    """The response for a finished instance, and a note for the log (a guest that exited
    with a non-zero status but still answered). A trap or limit is a :class:`BadGatewayError`.
    """
    if result.trap is not None:
        raise BadGatewayError(f"the guest was stopped: {result.trap.message}")
    try:
        response = parse_cgi_response(result.stdout or b"", head=head)
    except BadGatewayError as e:
        if result.exit_code:
            raise BadGatewayError(f"the guest exited with {result.exit_code}; {e}") from None
        raise
    note = f"the guest exited with {result.exit_code}" if result.exit_code else None
    return response, note


def encode_response(response: CgiResponse, *, close: bool, date: bytes) -> bytes:
    """The bytes of ``response`` on an HTTP/1.1 connection: the status line, the headers
    (as :func:`parse_cgi_response` validated them), ``Date``, ``Content-Length`` (none for
    204 and 304) and ``Connection: close`` when the connection closes after it."""
    parts = [b"HTTP/1.1 %d %s\r\n" % (response.status, response.reason)]
    parts.extend(b"%s: %s\r\n" % header for header in response.headers)
    parts.append(b"Date: %s\r\n" % date)
    if response.status not in _NO_BODY_STATUSES:
        parts.append(b"Content-Length: %d\r\n" % response.content_length)
    if close:
        parts.append(b"Connection: close\r\n")
    parts.append(b"\r\n")
    parts.append(response.body)
    return b"".join(parts)


def error_response(status: int, text: str, *, head: bool = False) -> CgiResponse:
    """A short plain-text answer from the Keep itself (400, 408, 413, 502, 503, ...)."""
    body = f"{status} {_reason(status).decode()}: {text}\n".encode()
    headers = [(b"Content-Type", b"text/plain; charset=utf-8")]
    return CgiResponse(status, _reason(status), headers, b"" if head else body, len(body))
