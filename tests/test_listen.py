import socket

import pytest

from motte._listen import bind_listener, parse_listen
from motte._net import is_loopback_host
from motte.errors import UsageError

EXAMPLE = "127.0.0.1:8470"


def test_parse_listen():
    assert parse_listen("127.0.0.1:8470", example=EXAMPLE) == ("127.0.0.1", 8470)
    assert parse_listen(":0", example=EXAMPLE) == ("127.0.0.1", 0)  # loopback unless asked
    assert parse_listen("[::1]:9", example=EXAMPLE) == ("::1", 9)
    for bad in ("8470", "host:port", "127.0.0.1:65536", "127.0.0.1:-1"):
        with pytest.raises(UsageError, match=r"HOST:PORT \(e\.g\. 127\.0\.0\.1:8470\)"):
            parse_listen(bad, example=EXAMPLE)


def test_loopback_hosts():
    assert all(is_loopback_host(h) for h in ("127.0.0.1", "127.9.9.9", "::1", "localhost"))
    assert not any(is_loopback_host(h) for h in ("0.0.0.0", "::", "192.0.2.1", "example.org"))


def test_bind_listener_picks_a_port_and_says_where():
    sock, where = bind_listener("127.0.0.1:0", example=EXAMPLE)
    with sock:
        port = sock.getsockname()[1]
        assert port != 0 and where == f"127.0.0.1:{port}"
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass


def test_bind_listener_names_an_address_in_use():
    taken, where = bind_listener("127.0.0.1:0", example=EXAMPLE)
    with taken, pytest.raises(UsageError, match=rf"--listen {where}: cannot listen: "):
        bind_listener(where, example=EXAMPLE)
