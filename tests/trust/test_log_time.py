"""The log's signed time: every checkpoint says when the log signed it, and never goes back.

Release and advisory times in the trust assessment come from here (an upper bound on when an
entry was logged that the entry's signer cannot backdate), so these are tested with the
trust area.
"""

from __future__ import annotations

import pytest

from motte.tlog import CheckpointBody, LocalLog, open_log, verify_logged
from motte.tlog._checkpoint import extension_time, time_line


def test_each_checkpoint_carries_the_log_clock(tmp_path):
    log = LocalLog(tmp_path / "log", origin="example.org/log")
    log.now = lambda: 1_700_000_000.9
    log.append(b"one")
    bundle = log.inclusion_bundle(0)
    cp = verify_logged(b"one", bundle, [log.verifier_key], log=log)
    assert cp.time == 1_700_000_000
    assert cp.extensions == ("time 1700000000",)


def test_a_clock_that_goes_back_does_not_move_the_time_back(tmp_path):
    log = LocalLog(tmp_path / "log", origin="example.org/log")
    log.now = lambda: 2_000
    log.append(b"one")
    log.checkpoint()
    log.now = lambda: 1_000  # the host clock jumped back
    log.append(b"two")
    log.checkpoint()
    assert [t for _, t in log.checkpoint_times()] == [2_000, 2_000]
    log.now = lambda: 3_000
    log.append(b"three")
    log.checkpoint()
    assert log.checkpoint_times() == [(1, 2_000), (2, 2_000), (3, 3_000)]


def test_entries_are_readable_in_order(tmp_path):
    log = LocalLog(tmp_path / "log", origin="example.org/log")
    for i in range(5):
        log.append(b"e%d" % i)
    assert log.read_entries(1, 4) == [b"e1", b"e2", b"e3"]


@pytest.mark.parametrize(
    ("lines", "want"),
    [
        ((), None),
        (("time 12",), 12),
        (("other", "time 0"), 0),
        (("time 012",), None),  # leading zero: not a canonical decimal
        (("time -1",), None),
        (("time ١٢",), None),  # non-ASCII digits
        (("timex 5",), None),
    ],
)
def test_the_time_line_is_strict(lines, want):
    assert extension_time(lines) == want


def test_the_time_line_round_trips_in_a_body():
    body = CheckpointBody("o", 1, b"\0" * 32, (time_line(42),))
    assert CheckpointBody.from_text(body.to_text()).time == 42


def test_the_default_log_records_time(tmp_path):
    log = open_log()
    log.append(b"x")
    note = log.checkpoint()
    log.close()
    assert b"\ntime " in note
