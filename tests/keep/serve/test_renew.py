"""Renewal of a serving Keep's certificate: when it is tried (a pure schedule), what the
renewer logs and installs, and how a renewed identity reaches a worker process (its
standard input: the config line, then one line per renewal, end of file to stop)."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging

import pytest

from motte.keep.serve import TlsIdentity, self_signed_identity
from motte.keep.serve._handover import (
    decode_identity,
    encode_identity,
    identity_message,
    read_messages,
)
from motte.keep.serve._renew import Identities, Renewer, next_attempt

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


# -- when -----------------------------------------------------------------------------------


def test_the_first_attempt_is_at_two_thirds_of_the_validity() -> None:
    assert next_attempt(T0, T0 + DAY, T0) == pytest.approx(16 * 3600)
    assert next_attempt(T0, at(60), at(10)) == pytest.approx(30)
    assert next_attempt(T0, at(90), at(0)) == pytest.approx(60)


def test_a_late_look_at_the_schedule_renews_at_once() -> None:
    assert next_attempt(T0, at(60), at(41)) == 0
    assert next_attempt(T0, at(60), at(3600)) == 0  # expired already (a suspended machine)


def test_failures_back_off_from_30_s_doubling_to_10_min() -> None:
    delays = [next_attempt(T0, T0 + DAY, at(16 * 3600), n) for n in range(1, 9)]
    assert delays == [30, 60, 120, 240, 480, 600, 600, 600]
    assert next_attempt(T0, T0 + DAY, at(16 * 3600), 10_000) == 600  # no overflow


def test_a_retry_is_never_later_than_the_expiry() -> None:
    assert next_attempt(T0, at(60), at(50), 1) == pytest.approx(10)
    assert next_attempt(T0, T0 + DAY, T0 + DAY - dt.timedelta(seconds=100), 6) == 100
    # Once expired, the backoff alone: the Keep keeps trying.
    assert next_attempt(T0, at(60), at(61), 3) == 120


# -- the renewer ----------------------------------------------------------------------------


def identity(now: dt.datetime = T0) -> TlsIdentity:
    return self_signed_identity(now=now, lifetime=dt.timedelta(seconds=60))


class Steward:
    """A stand-in for one re-attestation: an identity, or the error a refusal raises."""

    def __init__(self) -> None:
        self.error: Exception | None = None
        self.calls = 0

    def __call__(self) -> TlsIdentity:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return identity()


def test_a_renewal_installs_the_new_identity_for_every_watcher(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = identity()
    steward = Steward()
    renewer = Renewer(first, steward, steward="http://steward.test", clock=lambda: at(40))
    seen: list[TlsIdentity] = []
    renewer.identities.watch(seen.append)
    assert seen == [first]  # the current one at once
    with caplog.at_level(logging.INFO, "motte.keep.serve"):
        assert renewer.renew_now() is True
    assert len(seen) == 2 and seen[1] is renewer.identities.current is not first
    [record] = caplog.records
    assert record.levelno == logging.INFO
    assert "renewed: the Steward http://steward.test issued certificate" in record.getMessage()
    assert "new connections get it" in record.getMessage()


def test_a_refusal_keeps_the_old_identity_and_says_why_once_per_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = identity()
    steward = Steward()
    steward.error = RuntimeError("refused this Keep:\nsan: 'localhost' is not allowed")
    renewer = Renewer(first, steward, steward="http://steward.test", clock=lambda: at(40))
    with caplog.at_level(logging.INFO, "motte.keep.serve"):
        assert renewer.renew_now() is False
        assert renewer.renew_now() is False
    assert renewer.identities.current is first
    assert renewer.failures == 2
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.WARNING]
    line = caplog.records[0].getMessage()
    assert "\n" not in line
    assert "renewal failed: the Steward http://steward.test: refused this Keep" in line
    assert "san: 'localhost' is not allowed" in line
    assert "stays in use until 2030-01-01T00:01:00+00:00; retrying in 20 s" in line
    # The second failure backs off further, still capped at the expiry (20 s away).
    assert "retrying in 20 s" in caplog.records[1].getMessage()
    # A success resets the backoff.
    steward.error = None
    assert renewer.renew_now() is True
    assert renewer.failures == 0


def test_an_expiry_without_renewal_is_one_error_and_the_keep_keeps_trying(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = identity()
    steward = Steward()
    steward.error = ConnectionRefusedError("connection refused")
    renewer = Renewer(first, steward, steward="http://steward.test", clock=lambda: at(61))
    with caplog.at_level(logging.INFO, "motte.keep.serve"):
        assert renewer.renew_now() is False
        assert renewer.renew_now() is False
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.WARNING, logging.ERROR, logging.WARNING]
    error = caplog.records[1].getMessage()
    assert "EXPIRED at 2030-01-01T00:01:00+00:00 without a renewal" in error
    assert "clients now refuse this Keep; still serving" in error
    assert renewer.delay() == 60  # two failures: 60 s, the expiry no longer caps it


def test_the_schedule_thread_renews_when_due_then_waits_and_stops() -> None:
    steward = Steward()
    renewer = Renewer(
        identity(),  # valid 60 s from T0 (and 5 min before): past two thirds at 45 s
        lambda: (steward(), self_signed_identity(now=T0, lifetime=DAY))[1],
        steward="s",
        clock=lambda: at(45),
    )
    renewed: list[TlsIdentity] = []
    renewer.identities.watch(renewed.append)
    renewer.start()
    try:
        for _ in range(100):
            if len(renewed) == 2:
                break
            renewer._stopped.wait(0.05)
        assert len(renewed) == 2
        # The new certificate is valid for a day: the next attempt is hours away.
        assert renewer.delay() > 3600
    finally:
        renewer.stop()
    assert steward.calls == 1
    assert renewer._thread is not None and not renewer._thread.is_alive()


def test_a_failing_watcher_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    identities = Identities(identity())
    seen: list[TlsIdentity] = []

    def broken(new: TlsIdentity) -> None:
        if seen:
            raise ValueError("OpenSSL said no")

    identities.watch(broken)
    identities.watch(seen.append)
    new = identity()
    with caplog.at_level(logging.INFO, "motte.keep.serve"):
        identities.update(new)
    assert seen[-1] is new
    assert "could not be installed: OpenSSL said no" in caplog.text


# -- the worker's standard input ------------------------------------------------------------


def test_an_identity_round_trips_through_json_key_included() -> None:
    own = identity()
    data = json.loads(json.dumps(encode_identity(own)))
    rebuilt = decode_identity(data)
    assert rebuilt.certificate_chain_pem == own.certificate_chain_pem
    assert rebuilt.private_key_pem == own.private_key_pem
    assert (rebuilt.attested, rebuilt.description) == (own.attested, own.description)
    assert encode_identity(None) is None and decode_identity(None) is None


def test_a_worker_reads_renewals_after_its_config_until_end_of_file(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second, third = identity(), identity(), identity()
    stdin = io.BytesIO(
        json.dumps({"index": 1, "identity": encode_identity(first)}).encode()
        + b"\n"
        + identity_message(second)
        + b"\n"  # a blank line is nothing
        + b"not json\n"  # skipped, logged: the worker keeps what it has
        + identity_message(third)
    )
    config = json.loads(stdin.readline())  # as the worker's main does
    assert decode_identity(config["identity"]).leaf_sha256 == first.leaf_sha256
    got: list[TlsIdentity] = []
    with caplog.at_level(logging.INFO, "motte.keep.serve"):
        read_messages(stdin, got.append)  # returns at end of file: the worker then stops
    assert [i.leaf_sha256 for i in got] == [second.leaf_sha256, third.leaf_sha256]
    assert "a message from the parent process was not understood" in caplog.text
    assert identity_message(second).endswith(b"\n")
    assert identity_message(second).count(b"\n") == 1


def test_a_message_with_a_broken_identity_is_refused_not_installed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = encode_identity(identity())
    assert good is not None
    other = encode_identity(identity())
    assert other is not None
    mismatched = dict(good, key=other["key"])  # the key of another certificate
    stdin = io.BytesIO(json.dumps({"identity": mismatched}).encode() + b"\n")
    got: list[TlsIdentity] = []
    with caplog.at_level(logging.INFO, "motte.keep.serve"):
        read_messages(stdin, got.append)
    assert got == []
    assert "does not belong to the first certificate" in caplog.text
