"""The WAGI/CGI bridge without sockets: requests to environments, guest output to
responses, and every way a guest's output is refused (each a 502 with a reason)."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from motte.keep.serve._cgi import (
    CgiRequest,
    CgiServer,
    cgi_environ,
    encode_response,
    error_response,
    parse_cgi_response,
)
from motte.keep.serve._errors import BadGatewayError, BadRequestError

SERVER = CgiServer("web", 8443, True, "127.0.0.1")


def request(
    target: bytes = b"/",
    headers: list[tuple[bytes, bytes]] | None = None,
    method: str = "GET",
    body_length: int | None = None,
) -> CgiRequest:
    hdrs = [(b"host", b"keep.example:8443")] if headers is None else headers
    return CgiRequest(method, target, "1.1", hdrs, body_length, ("192.0.2.7", 50123))


# -- request -> environment ---------------------------------------------------------------


def test_rfc3875_variables() -> None:
    env = cgi_environ(request(b"/a%20b/c?x=1&y=%41", method="POST", body_length=5), SERVER)
    assert env["GATEWAY_INTERFACE"] == "CGI/1.1"
    assert env["SERVER_SOFTWARE"].startswith("motte/")
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REQUEST_METHOD"] == "POST"
    assert env["PATH_INFO"] == "/a b/c"
    assert env["X_RAW_PATH_INFO"] == "/a%20b/c"
    assert env["QUERY_STRING"] == "x=1&y=%41"  # as sent: the guest decodes it
    assert env["SCRIPT_NAME"] == ""
    assert env["SERVER_NAME"] == "keep.example"
    assert env["SERVER_PORT"] == "8443"
    assert env["REMOTE_ADDR"] == env["REMOTE_HOST"] == "192.0.2.7"
    assert env["REMOTE_PORT"] == "50123"
    assert env["CONTENT_LENGTH"] == "5"
    assert env["HTTPS"] == "on"
    assert env["HTTP_HOST"] == "keep.example:8443"
    assert env["X_FULL_URL"] == "https://keep.example:8443/a%20b/c?x=1&y=%41"
    assert env["MOTTE_LISTENER"] == "web"


def test_no_body_no_content_length_and_plain_http_has_no_https() -> None:
    env = cgi_environ(request(), CgiServer("plain", 8080, False, "10.0.0.1"))
    assert "CONTENT_LENGTH" not in env
    assert "CONTENT_TYPE" not in env
    assert "HTTPS" not in env
    assert env["X_FULL_URL"] == "http://keep.example:8443/"


def test_without_host_the_local_address_names_the_server() -> None:
    env = cgi_environ(request(headers=[]), CgiServer("web", 8443, True, "::1"))
    assert env["SERVER_NAME"] == "::1"
    assert env["X_FULL_URL"] == "https://[::1]:8443/"


def test_ipv6_host_header() -> None:
    env = cgi_environ(request(headers=[(b"host", b"[::1]:8443")]), SERVER)
    assert env["SERVER_NAME"] == "::1"


def test_headers_become_http_variables() -> None:
    env = cgi_environ(
        request(
            headers=[
                (b"host", b"h"),
                (b"accept", b"text/html"),
                (b"x-thing", b"a"),
                (b"x-thing", b"b"),
                (b"cookie", b"a=1"),
                (b"cookie", b"b=2"),
                (b"content-type", b"application/json"),
                (b"content-length", b"2"),
                (b"user-agent", "caf\u00e9".encode()),
            ],
            body_length=2,
        ),
        SERVER,
    )
    assert env["HTTP_ACCEPT"] == "text/html"
    assert env["HTTP_X_THING"] == "a, b"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["CONTENT_TYPE"] == "application/json"
    assert env["HTTP_USER_AGENT"] == "caf\u00e9"  # UTF-8 reaches the guest as sent
    assert "HTTP_CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env


@pytest.mark.parametrize(
    "name",
    [b"connection", b"keep-alive", b"transfer-encoding", b"te", b"upgrade", b"trailer", b"proxy"],
)
def test_hop_by_hop_and_proxy_headers_never_reach_the_guest(name: bytes) -> None:
    env = cgi_environ(request(headers=[(b"host", b"h"), (name, b"x")]), SERVER)
    key = "HTTP_" + name.decode().upper().replace("-", "_")
    assert key not in env


def test_underscore_headers_cannot_spoof_dashed_ones() -> None:
    env = cgi_environ(request(headers=[(b"host", b"h"), (b"x_forwarded_for", b"6.6.6.6")]), SERVER)
    assert "HTTP_X_FORWARDED_FOR" not in env


def test_request_overrides_nothing_it_should_not() -> None:
    """A client cannot set CGI variables through headers (they all get the HTTP_ prefix)."""
    env = cgi_environ(request(headers=[(b"host", b"h"), (b"request-method", b"DELETE")]), SERVER)
    assert env["REQUEST_METHOD"] == "GET"
    assert env["HTTP_REQUEST_METHOD"] == "DELETE"


@pytest.mark.parametrize(
    ("target", "path", "query"),
    [
        (b"*", "*", ""),
        (b"https://keep.example/x/y?q=1", "/x/y", "q=1"),
        (b"http://keep.example", "/", ""),
        (b"/only?", "/only", ""),
    ],
)
def test_target_forms(target: bytes, path: str, query: str) -> None:
    env = cgi_environ(request(target), SERVER)
    assert (env["PATH_INFO"], env["QUERY_STRING"]) == (path, query)


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (request(b"/%ff"), "path .* not UTF-8"),
        (request(b"/a%00b"), "path .* NUL"),
        (request(b"ftp://x/y"), "not a path or an http"),
        (request(headers=[(b"x-bin", b"\xff\xfe")]), "x-bin header is not UTF-8"),
        (request(headers=[(b"content-type", b"\xff")]), "Content-Type header is not UTF-8"),
    ],
)
def test_requests_a_guest_cannot_be_given(req: CgiRequest, message: str) -> None:
    with pytest.raises(BadRequestError, match=message) as info:
        cgi_environ(req, SERVER)
    assert info.value.status == 400


# -- guest output -> response -------------------------------------------------------------


def test_minimal_document_response() -> None:
    r = parse_cgi_response(b"Content-Type: text/plain\n\nhello\n")
    assert (r.status, r.reason, r.body, r.content_length) == (200, b"OK", b"hello\n", 6)
    assert r.headers == ((b"Content-Type", b"text/plain"),)


def test_crlf_lines_status_and_extra_headers() -> None:
    r = parse_cgi_response(
        b"Status: 404 Gone Fishing\r\nContent-Type: text/html\r\nX-A:  v  \r\n\r\n<p>no</p>"
    )
    assert (r.status, r.reason) == (404, b"Gone Fishing")
    assert r.headers == ((b"Content-Type", b"text/html"), (b"X-A", b"v"))
    assert r.body == b"<p>no</p>"


def test_status_without_reason_gets_the_standard_one() -> None:
    r = parse_cgi_response(b"Status: 201\nContent-Type: text/plain\n\nmade")
    assert (r.status, r.reason) == (201, b"Created")


def test_location_alone_is_a_redirect() -> None:
    r = parse_cgi_response(b"Location: https://elsewhere.example/\n\n")
    assert r.status == 302
    assert r.headers == ((b"Location", b"https://elsewhere.example/"),)
    assert r.body == b""


def test_status_only_with_no_body_is_enough() -> None:
    r = parse_cgi_response(b"Status: 204 No Content\n\n")
    assert (r.status, r.body, r.content_length) == (204, b"", 0)


def test_matching_content_length_is_accepted_and_reframed() -> None:
    r = parse_cgi_response(b"Content-Type: a/b\nContent-Length: 3\n\nabc")
    assert r.body == b"abc"
    assert all(name.lower() != b"content-length" for name, _ in r.headers)


def test_head_drops_the_body_but_keeps_its_length() -> None:
    r = parse_cgi_response(b"Content-Type: a/b\n\nabcdef", head=True)
    assert (r.body, r.content_length) == (b"", 6)
    r = parse_cgi_response(b"Content-Type: a/b\nContent-Length: 99\n\n", head=True)
    assert (r.body, r.content_length) == (b"", 99)


def test_body_may_contain_blank_lines_and_anything() -> None:
    body = b"\n\n\r\n\x00\xffStatus: 500\n"
    r = parse_cgi_response(b"Content-Type: application/octet-stream\n\n" + body)
    assert r.body == body


BAD_OUTPUT = [
    (b"", "wrote nothing"),
    (b"Content-Type: text/plain\nhello", "no blank line after the headers"),
    (b"hello world, no headers at all", "no blank line"),
    (b"\nhello", "no Content-Type, Location or Status"),
    (b"X-Only: 1\n\n", "no Content-Type, Location or Status"),
    (b"Status: 200\n\nbody", "body without a Content-Type"),
    (b"Status: abc\nContent-Type: a/b\n\n", "not 'NNN reason'"),
    (b"Status: 2000\nContent-Type: a/b\n\n", "not 'NNN reason'"),
    (b"Status: 100 Continue\nContent-Type: a/b\n\n", "not a final status"),
    (b"Status: 101\n\n", "not a final status"),
    (b"Status: 600\nContent-Type: a/b\n\n", "not a final status"),
    (b"Status: 204\nContent-Type: a/b\n\nbody", "204 cannot have a body"),
    (b"Status: 304\nContent-Type: a/b\n\nbody", "304 cannot have a body"),
    (b"Status: 200\nStatus: 404\nContent-Type: a/b\n\n", "second Status"),
    (b"Content-Type: a/b\nContent-type: c/d\n\n", "second Content-type"),
    (b"Location: /a\nLocation: /b\n\n", "second Location"),
    (b"Location:\n\n", "empty Location"),
    (b"Content-Type: a/b\n folded\n\n", "line folding"),
    (b"Content-Type a/b\n\n", "no ':'"),
    (b"Bad Name: x\nContent-Type: a/b\n\n", "bad header name"),
    (b": x\nContent-Type: a/b\n\n", "bad header name"),
    (b"X-A: a\x00b\nContent-Type: a/b\n\n", "control character"),
    (b"X-A: a\rb\nContent-Type: a/b\n\n", "control character"),
    (b"X-A: a\x7fb\nContent-Type: a/b\n\n", "control character"),
    (b"Status: 200 O\x01K\nContent-Type: a/b\n\n", "Status: control character"),
    (b"Status: 200 a\rb\nContent-Type: a/b\n\n", "Status: control character"),
    (b"Content-Type: a/b\nContent-Length: 10\n\nshort", "says 10 bytes but the body has 5"),
    (b"Content-Type: a/b\nContent-Length: -1\n\n", "Content-Length '-1'"),
    (b"Content-Type: a/b\nConnection: close\n\n", "Connection is a hop-by-hop header"),
    (b"Content-Type: a/b\nTransfer-Encoding: chunked\n\n", "hop-by-hop"),
    (b"Content-Type: a/b\nKeep-Alive: timeout=5\n\n", "hop-by-hop"),
    (b"Content-Type: a/b\nUpgrade: websocket\n\n", "hop-by-hop"),
    (b"Content-Type: a/b\nTrailer: X\n\n", "hop-by-hop"),
    (b"Content-Type: a/b\nTE: trailers\n\n", "hop-by-hop"),
    (b"Content-Type: a/b\nProxy-Connection: close\n\n", "hop-by-hop"),
]


@pytest.mark.parametrize(("output", "reason"), BAD_OUTPUT)
def test_malformed_guest_output_is_a_bad_gateway(output: bytes, reason: str) -> None:
    with pytest.raises(BadGatewayError, match=reason):
        parse_cgi_response(output)


def test_oversized_header_block() -> None:
    output = b"Content-Type: a/b\n" + b"X-Pad: " + b"p" * 70_000 + b"\n\nbody"
    with pytest.raises(BadGatewayError, match="within the first 65536 bytes"):
        parse_cgi_response(output)


def test_no_newline_at_all_in_a_long_output() -> None:
    with pytest.raises(BadGatewayError, match="within the first 100 bytes"):
        parse_cgi_response(b"x" * 500, max_header_bytes=100)


def test_too_many_header_lines() -> None:
    output = b"Content-Type: a/b\n" + b"X-A: 1\n" * 100 + b"\n"
    with pytest.raises(BadGatewayError, match="more than 100 header lines"):
        parse_cgi_response(output)
    assert parse_cgi_response(b"Content-Type: a/b\n" + b"X-A: 1\n" * 99 + b"\n").status == 200


def test_header_line_numbers_count_every_line() -> None:
    output = b"Status: 200\nContent-Length: 0\nContent-Type: a/b\nX: \x01\n\n"
    with pytest.raises(BadGatewayError, match="header line 4:"):
        parse_cgi_response(output)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_any_output_is_a_response_or_a_bad_gateway(output: bytes, head: bool) -> None:
    """Garbage from a guest raises only BadGatewayError (h11's fuzz invariant)."""
    try:
        r = parse_cgi_response(output, head=head)
    except BadGatewayError as e:
        assert "\n" not in e.message
        return
    assert 200 <= r.status <= 599
    assert not head or r.body == b""


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.from_regex(rb"\A[A-Za-z][A-Za-z0-9-]{0,20}\Z"),
            st.from_regex(rb"\A[\x21-\x7e]([\x20-\x7e]{0,30}[\x21-\x7e])?\Z"),
        ),
        max_size=10,
    ),
    st.binary(max_size=200),
)
def test_well_formed_output_round_trips(headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    special = {b"status", b"content-type", b"location", b"content-length"}
    headers = [(n, v) for n, v in headers if n.lower() not in special | _hop()]
    lines = [b"Content-Type: a/b", *(n + b": " + v for n, v in headers)]
    r = parse_cgi_response(b"\r\n".join(lines) + b"\r\n\r\n" + body)
    assert r.headers == ((b"Content-Type", b"a/b"), *headers)
    assert r.body == body


def _hop() -> set[bytes]:
    from motte.keep.serve._cgi import HOP_BY_HOP

    return set(HOP_BY_HOP)


def test_error_response_is_plain_text() -> None:
    r = error_response(413, "the body is larger than 1 MiB")
    assert r.status == 413
    assert r.body.startswith(b"413 ")
    assert r.body.endswith(b": the body is larger than 1 MiB\n")
    assert r.headers == ((b"Content-Type", b"text/plain; charset=utf-8"),)
    head = error_response(413, "x", head=True)
    assert head.body == b"" and head.content_length > 0


# -- response -> bytes --------------------------------------------------------------------

DATE = b"Thu, 26 Nov 2026 21:00:00 GMT"


def test_encoded_response() -> None:
    r = parse_cgi_response(b"Status: 404 Gone Fishing\nContent-Type: text/plain\nX-A: 1\n\nno\n")
    assert encode_response(r, close=False, date=DATE) == (
        b"HTTP/1.1 404 Gone Fishing\r\nContent-Type: text/plain\r\nX-A: 1\r\n"
        b"Date: " + DATE + b"\r\nContent-Length: 3\r\n\r\nno\n"
    )


def test_encoded_response_that_closes_the_connection() -> None:
    r = parse_cgi_response(b"Content-Type: a/b\n\nx")
    assert b"\r\nConnection: close\r\n\r\nx" in encode_response(r, close=True, date=DATE)


def test_no_content_length_for_204_and_a_head_announces_its_length() -> None:
    no_content = encode_response(parse_cgi_response(b"Status: 204\n\n"), close=False, date=DATE)
    assert b"Content-Length" not in no_content
    assert no_content.endswith(b"\r\n\r\n")
    head = parse_cgi_response(b"Content-Type: a/b\n\nabcdef", head=True)
    assert encode_response(head, close=False, date=DATE).endswith(b"Content-Length: 6\r\n\r\n")


def _read_as_client(data: bytes, method: bytes = b"GET") -> tuple[h11.Response, bytes]:
    """What h11, as the client that sent a request, makes of ``data`` (it raises on
    anything that breaks HTTP/1.1)."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    response = client.next_event()
    body = b""
    while True:
        event = client.next_event()
        if isinstance(event, h11.Data):
            body += event.data
        else:
            assert isinstance(event, h11.EndOfMessage), event
            return response, body


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.booleans(), st.booleans())
def test_whatever_the_bridge_accepts_encodes_to_valid_http(
    output: bytes, head: bool, close: bool
) -> None:
    """Nothing a guest wrote reaches the wire unchecked: every response the bridge accepts
    is one h11, as a client, reads back whole, with the same status, headers and body."""
    try:
        r = parse_cgi_response(output, head=head)
    except BadGatewayError:
        return
    response, body = _read_as_client(
        encode_response(r, close=close, date=DATE), b"HEAD" if head else b"GET"
    )
    assert (response.status_code, bytes(response.reason)) == (r.status, r.reason)
    got = [(bytes(n), bytes(v)) for n, v in response.headers.raw_items()]
    assert got[: len(r.headers)] == list(r.headers)
    assert body == r.body


@settings(max_examples=200, deadline=None)
@given(
    st.integers(200, 599),
    st.binary(max_size=40),
    st.lists(
        st.tuples(st.from_regex(rb"\A[A-Za-z][A-Za-z0-9-]{0,10}\Z"), st.binary(max_size=20)),
        max_size=5,
    ),
)
def test_status_lines_and_headers_from_a_guest_are_checked(
    status: int, reason: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    lines = [b"Status: %d %s" % (status, reason)] + [n + b": " + v for n, v in headers]
    output = b"\n".join(lines) + b"\n\n"
    try:
        r = parse_cgi_response(output)
    except BadGatewayError:
        return
    response, _ = _read_as_client(encode_response(r, close=False, date=DATE))
    assert response.status_code == status
