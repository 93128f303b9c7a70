"""Where a listener binds is the host's decision (issue 23): the address a grant gives it,
else loopback only; never every interface unless a grant says so."""

from __future__ import annotations

import socket

import pytest

from motte.keep.serve._server import bind
from motte.manifest import Listen, apply_grants, grants_from_flags, parse_manifest


def _bound(listen: Listen, host: str | None = None) -> list[tuple[str, int]]:
    sockets = bind(listen, host)
    try:
        return [s.getsockname()[:2] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_by_default_a_listener_binds_loopback_only():
    bound = _bound(Listen("web", 0, "http"))
    hosts = [h for h, _ in bound]
    assert hosts[0] == "127.0.0.1"
    assert set(hosts) <= {"127.0.0.1", "::1"}
    assert len({p for _, p in bound}) == 1  # ::1 on the same port as 127.0.0.1


def test_a_granted_address_is_where_it_binds():
    assert [h for h, _ in _bound(Listen("web", 0, "http", address="127.0.0.1"))] == ["127.0.0.1"]


def test_every_interface_only_when_granted():
    bound = _bound(Listen("web", 0, "http", address="::"))
    assert bound[0][0] in ("::", "0.0.0.0")


@pytest.mark.parametrize(
    ("flags", "address"),
    [
        (("listen:web",), None),
        (("listen:web=127.0.0.1:0",), "127.0.0.1"),
        (("listen:web=::",), "::"),
    ],
)
def test_the_address_comes_from_the_grant_or_the_default(tmp_path, flags, address):
    manifest = parse_manifest(
        'workload = "a.wasm"\n[[listen]]\nname = "web"\nport = 8443\nprotocol = "http"\n',
        base_dir=tmp_path,
        package=True,
    )
    granted = apply_grants(manifest, package="acme/web:1", flags=grants_from_flags(flags))
    assert granted.manifest.listen[0].address == address
    if address is None:
        # What the default binds cannot be reached from another interface of this host.
        listen = granted.manifest.listen[0].replace(port=0)
        for host, _ in _bound(listen):
            assert host in ("127.0.0.1", "::1")


def test_a_port_in_use_is_named(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        from motte.keep.serve import ServeError

        with pytest.raises(ServeError, match=rf"cannot listen on loopback:{port}"):
            bind(Listen("web", port, "http", where="Motte.toml:3"), None)
