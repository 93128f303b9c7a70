"""The sans-IO client core: requests out, replies in, every failure typed."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from motte.power.nut import (
    ERROR_CLASSES,
    NEED_DATA,
    AccessDeniedError,
    ConnectionClosed,
    ErrorReply,
    Fsd,
    GetDesc,
    GetNumLogins,
    GetType,
    GetVar,
    InstCmd,
    ListClient,
    ListCmd,
    ListEnum,
    ListRange,
    ListReply,
    ListRw,
    ListUps,
    ListVar,
    LocalProtocolError,
    Login,
    Logout,
    Master,
    NumLogins,
    NutConnection,
    NutServerConnection,
    NutServerError,
    Ok,
    Password,
    Primary,
    ProtVer,
    RemoteProtocolError,
    SetVar,
    StartTls,
    Text,
    Username,
    VarDesc,
    VarType,
    VarValue,
    Ver,
)
from motte.power.nut._messages import CmdDesc, GetCmdDesc, GetUpsDesc, UpsDesc


def reply_to(request, data: bytes):
    conn = NutConnection()
    conn.send(request)
    conn.receive_data(data)
    return conn.next_event()


@pytest.mark.parametrize(
    ("request_", "line"),
    [
        (ListUps(), "LIST UPS"),
        (ListVar("ups"), "LIST VAR ups"),
        (ListRw("ups"), "LIST RW ups"),
        (ListCmd("ups"), "LIST CMD ups"),
        (ListEnum("ups", "input.transfer.low"), "LIST ENUM ups input.transfer.low"),
        (ListRange("ups", "input.transfer.low"), "LIST RANGE ups input.transfer.low"),
        (ListClient("ups"), "LIST CLIENT ups"),
        (GetVar("ups", "ups.status"), "GET VAR ups ups.status"),
        (GetType("ups", "ups.status"), "GET TYPE ups ups.status"),
        (GetDesc("ups", "ups.status"), "GET DESC ups ups.status"),
        (GetCmdDesc("ups", "load.off"), "GET CMDDESC ups load.off"),
        (GetNumLogins("ups"), "GET NUMLOGINS ups"),
        (GetUpsDesc("ups"), "GET UPSDESC ups"),
        (SetVar("ups", "ups.id", 'my "box"'), 'SET VAR ups ups.id "my \\"box\\""'),
        (InstCmd("ups", "shutdown.return"), "INSTCMD ups shutdown.return"),
        (InstCmd("ups", "load.off.delay", "10"), 'INSTCMD ups load.off.delay "10"'),
        (Username("upsmon"), "USERNAME upsmon"),
        (Password("two words"), 'PASSWORD "two words"'),
        (Login("ups"), "LOGIN ups"),
        (Primary("ups"), "PRIMARY ups"),
        (Master("ups"), "MASTER ups"),
        (Fsd("ups"), "FSD ups"),
        (Logout(), "LOGOUT"),
        (StartTls(), "STARTTLS"),
        (Ver(), "VER"),
        (ProtVer(), "PROTVER"),
    ],
)
def test_each_request_writes_its_line(request_, line):
    assert NutConnection().send(request_) == (line + "\n").encode()


@pytest.mark.parametrize(
    ("request_", "data", "event"),
    [
        (
            GetVar("ups", "ups.status"),
            b'VAR ups ups.status "OB LB"\n',
            VarValue("ups", "ups.status", "OB LB"),
        ),
        (
            GetVar("UPS", "ups.status"),
            b'VAR UPS ups.status "OL"\r\n',
            VarValue("UPS", "ups.status", "OL"),
        ),
        (GetType("u", "v"), b"TYPE u v RW STRING:32\n", VarType("u", "v", ("RW", "STRING:32"))),
        (GetDesc("u", "v"), b'DESC u v "Battery charge"\n', VarDesc("u", "v", "Battery charge")),
        (GetCmdDesc("u", "c"), b'CMDDESC u c "Turn off"\n', CmdDesc("u", "c", "Turn off")),
        (GetUpsDesc("u"), b'UPSDESC u "Rack UPS"\n', UpsDesc("u", "Rack UPS")),
        (GetNumLogins("u"), b"NUMLOGINS u 3\n", NumLogins("u", 3)),
        (Primary("u"), b"OK PRIMARY-GRANTED\n", Ok("PRIMARY-GRANTED")),
        (Fsd("u"), b"OK FSD-SET\n", Ok("FSD-SET")),
        (
            SetVar("u", "v", "1"),
            b"OK TRACKING 1bd31808-cb49-4aec-9d75-d056e6f018d2\n",
            Ok("TRACKING 1bd31808-cb49-4aec-9d75-d056e6f018d2"),
        ),
        (Logout(), b"OK Goodbye\n", Ok("Goodbye")),
        (Logout(), b"Goodbye...\n", Ok("Goodbye")),  # servers before NUT 2.8
        (StartTls(), b"OK STARTTLS\n", Ok("STARTTLS")),
        (
            Ver(),
            b"Network UPS Tools upsd 2.8.0 - http://www.networkupstools.org/\n",
            Text("Network UPS Tools upsd 2.8.0 - http://www.networkupstools.org/"),
        ),
        (ProtVer(), b"1.3\n", Text("1.3")),
        (Ver(), b"ERR UNKNOWN-COMMAND\n", ErrorReply("UNKNOWN-COMMAND")),
        (GetVar("u", "v"), b"ERR VAR-NOT-SUPPORTED\n", ErrorReply("VAR-NOT-SUPPORTED")),
        (
            Login("u"),
            b"ERR ACCESS-DENIED extra words\n",
            ErrorReply("ACCESS-DENIED", "extra words"),
        ),
    ],
)
def test_replies_parse_by_the_shape_their_request_expects(request_, data, event):
    assert reply_to(request_, data) == event


@pytest.mark.parametrize(
    ("request_", "data", "rows"),
    [
        (
            ListUps(),
            b'BEGIN LIST UPS\nUPS dummy "Test UPS"\nUPS b ""\nEND LIST UPS\n',
            (("dummy", "Test UPS"), ("b", "")),
        ),
        (
            ListVar("d"),
            b'BEGIN LIST VAR d\nVAR d ups.status "OL"\nVAR d battery.charge "90"\nEND LIST VAR d\n',
            (("ups.status", "OL"), ("battery.charge", "90")),
        ),
        (ListRw("d"), b'BEGIN LIST RW d\nRW d ups.id "x y"\nEND LIST RW d\n', (("ups.id", "x y"),)),
        (
            ListCmd("d"),
            b"BEGIN LIST CMD d\nCMD d load.off\nCMD d shutdown.return\nEND LIST CMD d\n",
            (("load.off",), ("shutdown.return",)),
        ),
        (
            ListEnum("d", "v"),
            b'BEGIN LIST ENUM d v\nENUM d v "1"\nENUM d v "2"\nEND LIST ENUM d v\n',
            (("1",), ("2",)),
        ),
        (
            ListRange("d", "v"),
            b'BEGIN LIST RANGE d v\nRANGE d v "10" "20"\nEND LIST RANGE d v\n',
            (("10", "20"),),
        ),
        (
            ListClient("d"),
            b"BEGIN LIST CLIENT d\nCLIENT d 127.0.0.1\nCLIENT d ::1\nEND LIST CLIENT d\n",
            (("127.0.0.1",), ("::1",)),
        ),
        (ListEnum("d", "v"), b"BEGIN LIST ENUM d v\nEND LIST ENUM d v\n", ()),  # empty is legal
    ],
)
def test_list_replies_are_read_whole(request_, data, rows):
    event = reply_to(request_, data)
    assert isinstance(event, ListReply)
    assert event.rows == rows
    assert event.query == request_.query()


def test_list_reply_fed_a_byte_at_a_time():
    conn = NutConnection()
    conn.send(ListVar("d"))
    data = b'BEGIN LIST VAR d\nVAR d ups.status "OL"\nEND LIST VAR d\n'
    events = []
    for i in range(len(data)):
        conn.receive_data(data[i : i + 1])
        while (event := conn.next_event()) is not NEED_DATA:
            events.append(event)
    assert events == [ListReply(("VAR", "d"), (("ups.status", "OL"),))]


def test_pipelined_requests_get_their_replies_in_order():
    conn = NutConnection()
    conn.send(GetVar("d", "ups.status"))
    conn.send(ListCmd("d"))
    conn.send(GetNumLogins("d"))
    conn.receive_data(
        b'VAR d ups.status "OL"\nBEGIN LIST CMD d\nCMD d load.off\nEND LIST CMD d\nNUMLOGINS d 2\n'
    )
    assert conn.next_event() == VarValue("d", "ups.status", "OL")
    assert conn.next_event() == ListReply(("CMD", "d"), (("load.off",),))
    assert conn.next_event() == NumLogins("d", 2)
    assert conn.next_event() is NEED_DATA
    assert conn.pending == 0


def test_an_err_before_begin_list_ends_the_list_request():
    conn = NutConnection()
    conn.send(ListVar("nope"))
    conn.send(Ver())
    conn.receive_data(b"ERR UNKNOWN-UPS\nmotte\n")
    assert conn.next_event() == ErrorReply("UNKNOWN-UPS")
    assert conn.next_event() == Text("motte")


@pytest.mark.parametrize("code", sorted(ERROR_CLASSES))
def test_every_err_code_maps_to_its_own_error_class(code):
    event = reply_to(GetVar("u", "v"), f"ERR {code}\n".encode())
    error = event.error(GetVar("u", "v"))
    assert type(error) is ERROR_CLASSES[code]
    assert error.code == code
    assert "GET VAR u v" in str(error)


def test_an_unknown_err_code_is_still_a_server_error():
    error = reply_to(GetVar("u", "v"), b"ERR FROM-THE-FUTURE x\n").error()
    assert type(error) is NutServerError
    assert (error.code, error.extra) == ("FROM-THE-FUTURE", "x")


def test_a_refused_password_never_shows_the_password():
    error = ErrorReply("INVALID-PASSWORD").error(Password("hunter2"))
    assert "hunter2" not in str(error)
    assert "hunter2" not in repr(Password("hunter2"))


def test_access_denied_carries_a_hint():
    assert AccessDeniedError("ACCESS-DENIED").hint


@pytest.mark.parametrize(
    ("request_", "data", "match"),
    [
        (ListVar("d"), b"BEGIN LIST RW d\n", "answered LIST VAR d"),
        (ListVar("d"), b'BEGIN LIST VAR d\nVAR e x "1"\n', "bad row"),
        (ListVar("d"), b"BEGIN LIST VAR d\nVAR d x\n", "bad row"),
        (ListVar("d"), b"BEGIN LIST VAR d\nEND LIST VAR e\n", "ended with"),
        (GetVar("d", "a"), b'VAR d b "1"\n', "answered GET"),
        (GetVar("d", "a"), b'VAR d a "1\n', "unterminated quote"),
        (GetNumLogins("d"), b"NUMLOGINS d many\n", "not a number"),
        (GetNumLogins("d"), b"NUMLOGINS d -1\n", "not a number"),
        (Login("d"), b"NO\n", "answered LOGIN"),
        (Login("d"), b"ERR\n", "without a code"),
    ],
)
def test_malformed_replies_are_remote_protocol_errors(request_, data, match):
    conn = NutConnection()
    conn.send(request_)
    conn.receive_data(data)
    with pytest.raises(RemoteProtocolError, match=match):
        while conn.next_event() is not NEED_DATA:
            pass
        raise AssertionError("no error")
    with pytest.raises(LocalProtocolError, match="failed earlier"):
        conn.next_event()


def test_an_unrequested_line_is_a_protocol_error():
    conn = NutConnection()
    conn.receive_data(b"OK\n")
    with pytest.raises(RemoteProtocolError, match="unrequested"):
        conn.next_event()


def test_line_and_list_sizes_are_bounded():
    conn = NutConnection(max_line_size=64)
    conn.send(GetVar("d", "v"))
    conn.receive_data(b"V" * 65)
    with pytest.raises(RemoteProtocolError, match="longer than 64"):
        conn.next_event()
    conn = NutConnection(max_list_rows=2)
    conn.send(ListCmd("d"))
    conn.receive_data(b"BEGIN LIST CMD d\n" + b"CMD d x\n" * 3)
    with pytest.raises(RemoteProtocolError, match="over 2 rows"):
        conn.next_event()


def test_eof_cases():
    conn = NutConnection()
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed()

    conn = NutConnection()
    conn.send(GetVar("d", "v"))
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="1 request"):
        conn.next_event()

    conn = NutConnection()
    conn.send(GetVar("d", "v"))
    conn.receive_data(b'VAR d v "1')
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="middle of a line"):
        conn.next_event()

    conn = NutConnection()  # a server may close without saying goodbye
    conn.send(Logout())
    conn.receive_data(b"")
    assert conn.next_event() == ConnectionClosed()


def test_nothing_can_be_sent_after_logout():
    conn = NutConnection()
    conn.send(Logout())
    with pytest.raises(LocalProtocolError, match="closing"):
        conn.send(Ver())


def test_starttls_must_be_alone_and_refuses_queued_plaintext():
    conn = NutConnection()
    conn.send(Ver())
    with pytest.raises(LocalProtocolError, match="STARTTLS must be sent"):
        conn.send(StartTls())

    conn = NutConnection()
    conn.send(StartTls())
    with pytest.raises(LocalProtocolError, match="until the STARTTLS reply"):
        conn.send(Ver())
    conn.receive_data(b"OK STARTTLS\nVAR injected\n")
    with pytest.raises(RemoteProtocolError, match="after OK STARTTLS"):
        conn.next_event()

    conn = NutConnection()
    conn.send(StartTls())
    conn.receive_data(b"OK STARTTLS\n")
    assert conn.next_event() == Ok("STARTTLS")
    conn.send(Ver())  # after the handshake the connection carries on


@pytest.mark.parametrize(
    "build",
    [
        lambda: GetVar("two words", "v"),
        lambda: GetVar("u", 'q"uote'),
        lambda: SetVar("u", "v", "line\nLOGOUT"),
        lambda: InstCmd("u", "c", "p\r"),
        lambda: Username(""),
        lambda: Login(""),
    ],
)
def test_requests_check_their_fields_when_built(build):
    with pytest.raises(LocalProtocolError):
        build()


# -- client core <-> server core, as h11's ConnectionPair ------------------------------------

names = st.from_regex(r"[a-z][a-z0-9._-]{0,15}", fullmatch=True)
values = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\x7f"),
    max_size=30,
)


@given(ups=names, var=names, value=values, password=values.filter(bool))
def test_client_and_server_cores_agree_on_every_request_and_reply(ups, var, value, password):
    client, server = NutConnection(), NutServerConnection()
    exchanges = [
        (GetVar(ups, var), VarValue(ups, var, value)),
        (SetVar(ups, var, value), Ok()),
        (Password(password), Ok()),
        (ListVar(ups), ListReply(("VAR", ups), ((var, value), (var + "x", "")))),
        (ListRange(ups, var), ListReply(("RANGE", ups, var), ((value, value),))),
        (GetType(ups, var), VarType(ups, var, ("RW", "STRING:32"))),
        (GetDesc(ups, var), VarDesc(ups, var, value)),
        (GetNumLogins(ups), NumLogins(ups, 7)),
        (InstCmd(ups, var, value), ErrorReply("CMD-NOT-SUPPORTED")),
    ]
    for request, reply in exchanges:
        server.receive_data(client.send(request))
        assert server.next_event() == request
        client.receive_data(server.send(reply))
        assert client.next_event() == reply
