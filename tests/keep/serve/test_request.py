"""The common-request fast path reads what it accepts exactly as h11 does, and leaves to
h11 everything else (a differential test on generated requests)."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from motte.keep.serve._request import parse_common_request

H = b"Host: keep.example\r\n"


def _h11(data: bytes) -> tuple[h11.Request, bytes, bool, bytes] | None:
    """What h11, as a server, reads from ``data``: (head, body, keep-alive, bytes left),
    or None if it needs more bytes or refuses them."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=1 << 20)
    conn.receive_data(data)
    body = b""
    try:
        head = conn.next_event()
        if not isinstance(head, h11.Request):
            return None
        while True:
            event = conn.next_event()
            if isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                return None
    except h11.RemoteProtocolError:
        return None
    left, _ = conn.trailing_data
    return head, body, conn.their_state is not h11.MUST_CLOSE, bytes(left)


def _same_as_h11(data: bytes) -> None:
    ours = parse_common_request(data)
    if ours is None:
        return
    theirs = _h11(data)
    assert theirs is not None, f"h11 refuses what the fast path accepted: {data!r}"
    request, rest = ours
    head, body, keep_alive, left = theirs
    assert (request.method, request.target, request.http_version) == (
        head.method,
        head.target,
        head.http_version,
    )
    assert list(request.headers) == [(n, v) for n, v in head.headers]
    assert (request.body, request.keep_alive, rest) == (body, keep_alive, left)


def test_a_plain_get() -> None:
    request, rest = parse_common_request(b"GET /a?b=c HTTP/1.1\r\n" + H + b"\r\nGET")  # type: ignore[misc]
    assert (request.method, request.target, request.http_version) == (b"GET", b"/a?b=c", b"1.1")
    assert request.headers == ((b"host", b"keep.example"),)
    assert (request.body, request.keep_alive, rest) == (b"", True, b"GET")


def test_a_body_with_its_length() -> None:
    data = b"POST /echo HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nConnection: close\r\n\r\nhello"
    request, rest = parse_common_request(data)  # type: ignore[misc]
    assert (request.body, request.keep_alive, rest) == (b"hello", False, b"")
    _same_as_h11(data)


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\n" + H,  # the head is still arriving
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 9\r\n\r\nshort",  # so is the body
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
        b"GET / HTTP/1.1\r\n" + H + b"Upgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        b"CONNECT keep.example:443 HTTP/1.1\r\n" + H + b"\r\n",
        b"GET / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        b"GET / HTTP/1.1\r\n" + H + b"Content-Length: 1, 1\r\n\r\nx",
        b"GET / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\n" + b"Host: x\n\n",  # bare LF
        b"GET / HTTP/1.1\r\n" + H + b"X: a\x01b\r\n\r\n",
        b"GET / HTTP/2.0\r\n" + H + b"\r\n",
        b"GET / HTTP/1.1\r\n\r\n",  # no Host
        b"GET / HTTP/1.1\r\n" + H + H + b"\r\n",  # two
        b"\r\nGET / HTTP/1.1\r\n" + H + b"\r\n",
        b"GET  / HTTP/1.1\r\n" + H + b"\r\n",
        b"GET / HTTP/1.1\r\n" + H + b"Bad Name: x\r\n\r\n",
    ],
)
def test_what_is_left_to_h11(data: bytes) -> None:
    assert parse_common_request(data) is None


@pytest.mark.parametrize(
    ("data", "keep_alive"),
    [
        (b"GET / HTTP/1.0\r\n\r\n", False),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", False),
        (b"GET / HTTP/1.1\r\n" + H + b"Connection: keep-alive, CLOSE\r\n\r\n", False),
        (b"GET / HTTP/1.1\r\n" + H + b"Connection: closed\r\n\r\n", True),
    ],
)
def test_keep_alive_as_h11_decides_it(data: bytes, keep_alive: bool) -> None:
    result = parse_common_request(data)
    assert result is not None and result[0].keep_alive is keep_alive
    _same_as_h11(data)


_names = st.sampled_from(
    [
        *(b"Host", b"host", b"HOST", b"Content-Length", b"content-length", b"Connection"),
        *(b"X-A", b"Transfer-Encoding", b"Expect", b"Upgrade", b"User-Agent", b"Bad Name"),
        *(b"", b"X_Y"),
    ]
)
_values = st.one_of(
    st.sampled_from([b"", b"0", b"5", b"12", b"close", b"keep-alive", b" x ", b"a, close"]),
    st.sampled_from([b"chunked", b"100-continue", b"1, 1", b"-1", b"\tv\t", b"a\x01b"]),
    st.binary(max_size=12),
)
_lines = st.lists(st.tuples(_names, _values), max_size=6)


@settings(max_examples=600, deadline=None)
@given(
    st.sampled_from([b"GET", b"POST", b"HEAD", b"CONNECT", b"G T", b""]),
    st.sampled_from([b"/", b"/a%20b?c=d", b"*", b"http://x/y", b"/\x7f", b""]),
    st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.10", b"http/1.1"]),
    _lines,
    st.sampled_from([b"\r\n", b"\n"]),
    st.binary(max_size=24),
)
def test_whatever_the_fast_path_reads_h11_reads_the_same(
    method: bytes,
    target: bytes,
    version: bytes,
    headers: list[tuple[bytes, bytes]],
    newline: bytes,
    after: bytes,
) -> None:
    head = method + b" " + target + b" " + version + newline
    head += b"".join(name + b": " + value + newline for name, value in headers)
    _same_as_h11(head + newline + after)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_is_left_to_h11_or_read_as_h11_reads_it(data: bytes) -> None:
    _same_as_h11(data)
    _same_as_h11(b"GET / HTTP/1.1\r\n" + H + data)


_token = st.from_regex(rb"\A[-!#$%&'*+.^_`|~0-9a-zA-Z]{1,8}\Z")
_field_value = st.one_of(
    st.from_regex(rb"\A[\x21-\x7e\x80-\xff]{0,6}([ \t]{1,2}[\x21-\x7e\x80-\xff]{1,6}){0,2}\Z"),
    st.sampled_from([b"close", b"keep-alive", b"Keep-Alive, Close", b" spaced "]),
)


@st.composite
def _requests(draw: st.DrawFn) -> bytes:
    """A valid request (pipelined bytes after it), sometimes with one change h11 may or
    may not accept: most of them are read by the fast path."""
    version = draw(st.sampled_from([b"1.1", b"1.0"]))
    body = draw(st.binary(max_size=20))
    headers = [(b"Host", b"keep.example")] if version == b"1.1" else []
    headers += draw(st.lists(st.tuples(_token, _field_value), max_size=4))
    if body or draw(st.booleans()):
        headers.append(
            (draw(st.sampled_from([b"Content-Length", b"content-LENGTH"])), b"%d" % len(body))
        )
    headers = draw(st.permutations(headers))
    lines = [
        draw(_token) + b" " + draw(st.sampled_from([b"/", b"/x?y", b"*"])) + b" HTTP/" + version
    ]
    lines += [n + b":" + draw(st.sampled_from([b"", b" ", b"\t"])) + v for n, v in headers]
    data = b"\r\n".join(lines) + b"\r\n\r\n" + body + draw(st.binary(max_size=10))
    if draw(st.booleans()):  # one change, anywhere
        at = draw(st.integers(0, len(data)))
        change = draw(st.sampled_from([b"", b"\r\n", b"\n", b" ", b"\x00", b":", b",", b"\x7f"]))
        data = data[:at] + change + data[at + draw(st.integers(0, 2)) :]
    return data


@settings(max_examples=600, deadline=None)
@given(_requests())
def test_valid_and_nearly_valid_requests_read_as_h11_reads_them(data: bytes) -> None:
    _same_as_h11(data)
