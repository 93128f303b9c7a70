"""A running Steward reloads config.toml and policy.toml (``motte steward serve`` on SIGHUP
calls :meth:`Steward.reload`): later requests are judged by the new files, a file that does
not load changes nothing, and the audit log says which policy judged from when."""

from __future__ import annotations

import re
import threading

import pytest

from motte.steward._setup import DEFAULT_POLICY
from tests.steward.helpers import Clock, keep_csr, make_steward

# On the embedded SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("database")


@pytest.fixture
def steward(tmp_path):
    with make_steward(tmp_path / "steward", clock=Clock()) as s:
        yield s


def production_policy(tmp_path) -> str:
    """The policy `motte steward init` writes without --allow-insecure-sim: no sim."""
    return DEFAULT_POLICY


def attest(steward) -> bool:
    return steward.attest(keep_csr(steward.new_nonce().nonce), client="t").accepted


def test_a_reload_judges_later_requests_by_the_new_policy(steward, tmp_path):
    steward.record_loaded()
    assert attest(steward)
    old = steward.policy
    steward.paths.policy.write_text(production_policy(tmp_path))

    result = steward.reload()

    assert result.reloaded and result.error is None
    assert result.before.sha256 == old.sha256 and result.after.sha256 != old.sha256
    assert not steward.policy.allow_insecure_sim
    assert not attest(steward)  # the sim keep the old policy accepted
    loaded, reloaded = steward.store.policy_events()
    assert (loaded.event, loaded.policy_sha256) == ("loaded", old.sha256)
    assert (reloaded.event, reloaded.policy_sha256) == ("reloaded", result.after.sha256)
    assert reloaded.detail == f"was {old.name} (sha256 {old.sha256[:16]}...)"
    rejected = steward.store.audit()[-1]
    assert rejected.decision == "rejected"
    assert rejected.verdict["policy"]["sha256"] == result.after.sha256


def test_a_policy_that_does_not_load_changes_nothing(steward):
    old = steward.policy
    steward.paths.policy.write_text("[snp]\nmeasurment = 'x'\n")

    result = steward.reload()

    assert not result.reloaded
    assert result.error.startswith(f"{steward.paths.policy}:2: ")
    assert "unknown key" in result.error
    assert steward.policy is old
    assert attest(steward)
    [event] = steward.store.policy_events()
    assert (event.event, event.policy_sha256, event.detail) == (
        "reload-refused",
        old.sha256,
        result.error,
    )


def test_a_config_outside_the_cas_names_changes_nothing(steward):
    config = steward.paths.config
    config.write_text(config.read_text().replace("san_allow = [", 'san_allow = ["evil.example", '))
    result = steward.reload()
    assert not result.reloaded and "outside the CA's name constraints" in result.error
    assert [e.event for e in steward.store.policy_events()] == ["reload-refused"]


def test_a_config_naming_another_database_changes_nothing(steward, database):
    config = steward.paths.config
    text = config.read_text()
    other = 'database = "postgresql://somewhere.example/motte"'
    config.write_text(
        re.sub(r"(?m)^database = .*$", other, text)
        if "\ndatabase = " in text
        else f"{text}\n{other}\n"
    )
    result = steward.reload()
    if database == "postgresql":  # MOTTE_DB names the database, over what config.toml says
        assert result.reloaded
        return
    assert not result.reloaded
    assert "a running Steward keeps its database" in result.error
    assert [e.event for e in steward.store.policy_events()] == ["reload-refused"]


def test_a_request_in_flight_is_judged_wholly_by_the_settings_it_started_with(steward, tmp_path):
    """The settings are read once per request: a reload meanwhile does not reach it."""
    seen: list[bool] = []
    inside, reloaded = threading.Event(), threading.Event()

    def request() -> None:
        with steward._one_settings():
            inside.set()
            assert reloaded.wait(30)
            seen.append(steward.policy.allow_insecure_sim)
        seen.append(steward.policy.allow_insecure_sim)

    thread = threading.Thread(target=request)
    thread.start()
    assert inside.wait(30)
    steward.paths.policy.write_text(production_policy(tmp_path))
    assert steward.reload().reloaded
    reloaded.set()
    thread.join(30)
    assert seen == [True, False]
