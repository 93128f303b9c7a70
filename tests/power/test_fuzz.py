"""Fuzzing: whatever a server (or client) sends, the cores raise only their protocol errors.

The invariant h11's fuzzer checks: arbitrary bytes, fed whole or a byte at a time, end in an
event, NEED_DATA, or RemoteProtocolError, never in any other exception (that would be a bug).
"""

from hypothesis import given, settings
from hypothesis import strategies as st

from motte.power.nut import (
    NEED_DATA,
    ConnectionClosed,
    GetNumLogins,
    GetType,
    GetVar,
    ListRange,
    ListUps,
    ListVar,
    Logout,
    NutConnection,
    NutServerConnection,
    RemoteProtocolError,
    StartTls,
    Ver,
)

REQUESTS = [
    GetVar("ups", "ups.status"),
    ListVar("ups"),
    ListUps(),
    ListRange("ups", "v"),
    GetType("ups", "v"),
    GetNumLogins("ups"),
    Ver(),
    StartTls(),
    Logout(),
]

# Bytes that look like NUT, so the fuzzer reaches deep into the parser, mixed with noise.
fragments = st.sampled_from(
    [
        b"OK",
        b"ERR",
        b" ",
        b"\n",
        b"\r\n",
        b'"',
        b"\\",
        b"BEGIN LIST ",
        b"END LIST ",
        b"VAR ",
        b"UPS ",
        b"ups ",
        b"ups.status ",
        b"RANGE ",
        b"TYPE ",
        b"NUMLOGINS ",
        b"Goodbye",
        b"1",
        b"-",
        b"\xff",
        b"\x00",
        b"STARTTLS",
    ]
)
junk = st.one_of(st.binary(max_size=300), st.lists(fragments, max_size=60).map(b"".join))


def drain(conn):
    """Pull events until NEED_DATA or the end; any exception but RemoteProtocolError fails."""
    events = []
    for _ in range(10_000):
        try:
            event = conn.next_event()
        except RemoteProtocolError:
            return events, True
        if event is NEED_DATA or isinstance(event, ConnectionClosed):
            return events, False
        events.append(event)
    raise AssertionError("next_event never settled")


@settings(max_examples=400, deadline=None)
@given(
    requests=st.lists(st.sampled_from(REQUESTS), min_size=1, max_size=4),
    data=junk,
    eof=st.booleans(),
)
def test_client_core_never_crashes_on_server_bytes(requests, data, eof):
    conn = NutConnection(max_line_size=128, max_list_rows=20)
    for request in requests:
        try:
            conn.send(request)
        except Exception as e:  # only misuse by us, e.g. a request after LOGOUT
            assert type(e).__name__ == "LocalProtocolError"
    conn.receive_data(data)
    if eof:
        conn.receive_data(b"")
    drain(conn)


@settings(max_examples=200, deadline=None)
@given(requests=st.lists(st.sampled_from(REQUESTS[:6]), min_size=1, max_size=3), data=junk)
def test_client_core_gives_the_same_answer_fed_a_byte_at_a_time(requests, data):
    if not data:
        return  # b"" means end of connection, not "no bytes yet"
    whole, trickled = NutConnection(max_line_size=128), NutConnection(max_line_size=128)
    for request in requests:
        whole.send(request)
        trickled.send(request)
    whole.receive_data(data)
    expected, expected_error = drain(whole)
    got, got_error = [], False
    for i in range(len(data)):
        trickled.receive_data(data[i : i + 1])
        events, got_error = drain(trickled)
        got += events
        if got_error:
            break
    if expected_error:
        # Whole or trickled, the same bad line fails; trickled may fail on the same bytes.
        assert got_error
    else:
        assert got == expected


@settings(max_examples=300, deadline=None)
@given(data=junk)
def test_server_core_never_crashes_on_client_bytes(data):
    conn = NutServerConnection(max_line_size=128)
    conn.receive_data(data)
    drain(conn)
