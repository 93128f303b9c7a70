"""The fork check is denied by default: a checkpoint that cannot be shown consistent fails.

A consumer who trusts a publisher's log key but cannot reach the log can check each inclusion
proof, yet not that the second checkpoint extends the first. That must fail ``motte verify``
unless the verifier says, loudly, that it accepts the risk.
"""

from __future__ import annotations

import shutil

import pytest

from motte.errors import VerificationError
from motte.home import motte_home
from motte.sign import (
    ArtifactVerificationError,
    attest_review,
    policy_from_keys,
    sign_artifact,
    verify_artifact,
)
from motte.tlog import add_trusted, open_log
from tests.sign.test_verify import REF, publisher_setup


def _consumer_of(tmp_path, monkeypatch, *, statements: int) -> tuple:
    (alice,), _ = publisher_setup(tmp_path)
    sign_artifact(REF, [alice])
    for _ in range(statements - 1):
        attest_review(REF, [alice], reviewer="mailto:r@example.org", scope="full", result="pass")
    log = open_log()
    vkey = log.verifier_key
    log.close()
    consumer = tmp_path / "consumer"
    shutil.copytree(motte_home() / "oci", consumer / "oci")
    shutil.copytree(motte_home() / "trust-roots", consumer / "trust-roots")
    monkeypatch.setenv("MOTTE_HOME", str(consumer))
    add_trusted(vkey)  # the key, but no URL: the log cannot be asked for consistency proofs
    return alice, vkey


def test_one_checkpoint_is_trusted_on_first_use(tmp_path, monkeypatch):
    alice, _ = _consumer_of(tmp_path, monkeypatch, statements=1)
    v = verify_artifact(REF, policy_from_keys([alice.public]))
    assert v.statements[0].log.fork_check == "first checkpoint seen from this log"


def test_a_second_checkpoint_that_cannot_be_joined_fails(tmp_path, monkeypatch):
    alice, _ = _consumer_of(tmp_path, monkeypatch, statements=2)
    with pytest.raises(ArtifactVerificationError) as e:
        verify_artifact(REF, policy_from_keys([alice.public]))
    assert e.value.check == "log" and isinstance(e.value, VerificationError)
    assert "fork check: cannot check that the checkpoint" in e.value.message
    assert "--unsafe-skip-fork-check" in (e.value.hint or "")


def test_the_unsafe_opt_out_says_what_it_skipped(tmp_path, monkeypatch):
    alice, _ = _consumer_of(tmp_path, monkeypatch, statements=2)
    v = verify_artifact(REF, policy_from_keys([alice.public]), unsafe_skip_fork_check=True)
    checks = [s.log.fork_check for s in v.statements]
    assert checks[0] == "first checkpoint seen from this log"
    assert checks[1].startswith("skipped (unsafe_skip_fork_check): cannot check")


def test_the_cli_flag_is_the_only_way_past(cli, tmp_path, monkeypatch):
    _consumer_of(tmp_path, monkeypatch, statements=2)
    r = cli("verify", REF)
    assert r.exit_code == 1 and "fork check" in r.stderr
    r = cli("verify", REF, "--unsafe-skip-fork-check")
    assert r.exit_code == 0, r.stderr
    assert "skipped (unsafe_skip_fork_check)" in r.stdout
