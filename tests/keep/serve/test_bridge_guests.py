"""The bridge on real instances: what a guest that answers, fails, traps or runs into a
limit becomes (the same code the HTTP listener runs, without sockets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from motte.keep import PreparedWorkload
from motte.keep.serve._cgi import response_from_run
from motte.keep.serve._errors import BadGatewayError
from motte.manifest import load_manifest
from tests.keep.serve import cgi_guests as g


def run(tmp_path: Path, wat: str, limits: str = "memory = 16\ncpu_time = 2\nwall_time = 5", **kw):  # type: ignore[no-untyped-def]
    workload = PreparedWorkload.prepare(load_manifest(g.manifest(tmp_path, wat, limits=limits)))
    return workload.run(stdout="capture", stderr="capture", **kw)


def test_a_valid_answer(tmp_path: Path) -> None:
    result = run(tmp_path, g.writes(b"Status: 201 Made\nContent-Type: text/plain\n\nnew\n"))
    response, note = response_from_run(result)
    assert (response.status, response.reason, response.body) == (201, b"Made", b"new\n")
    assert note is None


def test_a_failing_exit_with_an_answer_is_sent_with_a_note(tmp_path: Path) -> None:
    result = run(
        tmp_path, g.writes(b"Status: 500\nContent-Type: text/plain\n\nsorry\n", exit_code=3)
    )
    response, note = response_from_run(result)
    assert response.status == 500
    assert note == "the guest exited with 3"


def test_a_failing_exit_without_an_answer_names_the_exit(tmp_path: Path) -> None:
    result = run(tmp_path, g.writes(b"oops", exit_code=7))
    with pytest.raises(BadGatewayError, match="exited with 7; no blank line"):
        response_from_run(result)


def test_a_trap_is_a_bad_gateway(tmp_path: Path) -> None:
    result = run(tmp_path, g.UNREACHABLE)
    with pytest.raises(BadGatewayError, match="stopped: unreachable instruction"):
        response_from_run(result)


def test_the_cpu_limit_is_a_bad_gateway(tmp_path: Path) -> None:
    result = run(tmp_path, g.SPIN, limits="memory = 16\ncpu_time = 0.1\nwall_time = 5")
    with pytest.raises(BadGatewayError, match=r"CPU time limit reached: 0\.1 s"):
        response_from_run(result)


def test_the_wall_time_limit_is_a_bad_gateway(tmp_path: Path) -> None:
    result = run(tmp_path, g.SPIN, limits="memory = 16\ncpu_time = 5\nwall_time = 0.1")
    with pytest.raises(BadGatewayError, match=r"wall-clock time limit reached: 0\.1 s"):
        response_from_run(result)


def test_output_past_its_bound_is_a_bad_gateway(tmp_path: Path) -> None:
    result = run(tmp_path, g.CHATTY, max_output=256 * 1024)
    with pytest.raises(BadGatewayError, match="captured output exceeded its bound"):
        response_from_run(result)


def test_the_request_body_is_stdin(tmp_path: Path) -> None:
    result = run(tmp_path, g.ECHO_AT_EOF, stdin=b"Content-Type: a/b\n\nbody")
    response, _ = response_from_run(result)
    assert response.body == b"body"
