"""ServeOptions refuse nonsense; BoundListener names a usable URL; counters add up."""

from __future__ import annotations

import pytest

from motte.keep.serve import BoundListener, ServeOptions, ServeStats
from motte.keep.serve._options import default_instances


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"processes": 0}, "processes"),
        ({"max_instances": 0}, "max_instances"),
        ({"max_body": -1}, "max_body"),
        ({"request_timeout": 0}, "request_timeout"),
        ({"keepalive_timeout": -1}, "keepalive_timeout"),
        ({"stop_timeout": -1}, "stop_timeout"),
    ],
)
def test_bad_options(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ServeOptions(**kwargs)  # type: ignore[arg-type]


def test_defaults_bound_everything() -> None:
    options = ServeOptions()
    assert options.processes == 1
    assert options.max_body > 0 and options.max_header_bytes > 0
    assert options.request_timeout > 0 and options.stop_timeout is None
    assert default_instances(1) >= default_instances(4) >= 2


@pytest.mark.parametrize(
    ("listener", "url"),
    [
        (BoundListener("web", "http", True, 8443, (("::", 8443),)), "https://localhost:8443"),
        (BoundListener("web", "http", False, 80, (("127.0.0.1", 80),)), "http://127.0.0.1:80"),
        (BoundListener("raw", "tcp", True, 9000, (("::1", 9000),)), "tls://[::1]:9000"),
        (BoundListener("raw", "tcp", False, 9000, (("0.0.0.0", 9000),)), "tcp://localhost:9000"),
    ],
)
def test_bound_listener_url(listener: BoundListener, url: str) -> None:
    assert listener.url == url


def test_stats_add() -> None:
    stats = ServeStats()
    stats.requests = 2
    stats.add({"requests": 3, "connections": 1})
    assert stats.as_dict()["requests"] == 5
    assert stats.as_dict()["connections"] == 1
