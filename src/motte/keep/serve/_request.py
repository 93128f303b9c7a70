"""The common request, read without h11: a whole head in the buffer, CRLF line ends, and
no body or a Content-Length one, all of it received. Pure: bytes in, values out.

h11 stays the parser of record. :func:`parse_common_request` accepts a strict subset of
what h11 accepts and returns None for anything else (chunked bodies, ``Expect``,
``Upgrade``, ``CONNECT``, a head or body still arriving, repeated or malformed
Content-Length, obsolete line folding, bare LF, control bytes, HTTP versions other than
1.0 and 1.1, a missing or repeated Host): the listener then hands the same bytes to h11,
which reads them or refuses them with its own status. What it accepts it reads as h11
does: the same method, target, version, headers (names in lower case, values without the
surrounding whitespace), body and keep-alive, and the same bytes left over for the next
request (tests/keep/serve/test_request.py checks this against h11 on generated requests).

Why: h11 validates each request through a general state machine, events and regular
expressions per line, which costs a request served by a Keep about as much CPU as its TLS;
most requests are one short head that this reads with two expressions.
"""

from __future__ import annotations

import re

from motte._record import Record

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/1\.([01])")
# A field value: visible bytes (and obs-text) in runs separated by spaces or tabs.
_HEADER = re.compile(
    rb"(" + _TOKEN + rb"):[ \t]*([\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?[ \t]*"
)
_LENGTH = re.compile(rb"[0-9]{1,18}")
#: Headers that change a request's framing or protocol: h11's business.
_FOR_H11 = frozenset({b"transfer-encoding", b"expect", b"upgrade"})


class CommonRequest(Record):
    """A request read whole: its head (as h11's Request has it), body and keep-alive."""

    __slots__ = ("body", "headers", "http_version", "keep_alive", "method", "target")
    method: bytes
    target: bytes
    #: b"1.0" or b"1.1".
    http_version: bytes
    #: (lower-case name, value) in arrival order.
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    #: Whether the client lets the connection carry another request after this one.
    keep_alive: bool

    def __init__(
        self,
        method: bytes,
        target: bytes,
        http_version: bytes,
        headers: tuple[tuple[bytes, bytes], ...],
        body: bytes,
        keep_alive: bool,
    ) -> None:
        self._set(
            method=method,
            target=target,
            http_version=http_version,
            headers=headers,
            body=body,
            keep_alive=keep_alive,
        )


def parse_common_request(data: bytes) -> tuple[CommonRequest, bytes] | None:
    """The request at the start of ``data`` and the bytes after it, or None when it is not
    a common one (see the module docstring): h11 then reads ``data``."""
    end = data.find(b"\r\n\r\n")
    if end == -1:
        return None
    lines = data[:end].split(b"\r\n")
    line = _REQUEST_LINE.fullmatch(lines[0])
    if line is None:
        return None
    method, target, minor = line.groups()
    if method == b"CONNECT":
        return None
    keep_alive = minor == b"1"
    length = -1
    hosts = 0
    headers = []
    for raw in lines[1:]:
        header = _HEADER.fullmatch(raw)
        if header is None:  # malformed, folded, or with control bytes
            return None
        name = header.group(1).lower()
        value = header.group(2) or b""
        if name in _FOR_H11:
            return None
        if name == b"content-length":
            if length >= 0 or _LENGTH.fullmatch(value) is None:
                return None
            length = int(value)
        elif name == b"host":
            hosts += 1
        elif name == b"connection" and keep_alive:
            keep_alive = b"close" not in (t.strip().lower() for t in value.split(b","))
        headers.append((name, value))
    if hosts > 1 or (hosts == 0 and minor == b"1"):  # h11 answers 400
        return None
    start = end + 4
    stop = start + max(length, 0)
    if len(data) < stop:  # the body is still arriving: h11 reads it, with its timeouts
        return None
    request = CommonRequest(
        method, target, b"1." + minor, tuple(headers), data[start:stop], keep_alive
    )
    return request, data[stop:]
