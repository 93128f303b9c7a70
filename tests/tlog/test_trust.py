"""Trusted logs and fork detection: remember the last checkpoint, refuse one that forks."""

from __future__ import annotations

import shutil

import pytest

from motte.tlog import (
    ForkError,
    LocalLog,
    LogBehindError,
    LogNotFoundError,
    TlogFormatError,
    add_trusted,
    check_and_remember,
    forks_dir,
    last_seen,
    load_trusted,
    verify_checkpoint,
    verify_logged,
)
from motte.tlog._note import COSIGNATURE_ED25519, Signer


def forked_pair(tmp_path, common: int = 10, extra_a: int = 5, extra_b: int = 5):
    """Two logs with one key and origin that share ``common`` entries, then diverge."""
    a = LocalLog(tmp_path / "a", origin="example.com/forky")
    a.append_many([b"c%d" % i for i in range(common)])
    (tmp_path / "b").mkdir(mode=0o700)
    shutil.copy2(tmp_path / "a" / "log.key", tmp_path / "b" / "log.key")
    b = LocalLog(tmp_path / "b")
    b.append_many([b"c%d" % i for i in range(common)])
    a.append_many([b"a%d" % i for i in range(extra_a)])
    b.append_many([b"b%d" % i for i in range(extra_b)])
    return a, b


def cp_of(log: LocalLog):
    return verify_checkpoint(log.checkpoint(), [log.verifier_key])


def test_first_checkpoint_is_remembered_then_growth_is_accepted(tmp_path):
    with LocalLog(tmp_path / "l", origin="example.com/grow") as log:
        log.append_many([b"%d" % i for i in range(5)])
        first = cp_of(log)
        assert check_and_remember(first, log) == first
        assert last_seen(first.origin, first.log_key)[0] == 5
        log.append_many([b"%d" % i for i in range(5, 12)])
        second = cp_of(log)
        check_and_remember(second, log)
        assert last_seen(first.origin, first.log_key)[0] == 12
        # an older checkpoint that is a prefix of what we saw is fine, and changes nothing
        assert check_and_remember(first, log).size == 12
        assert check_and_remember(second, log).size == 12


@pytest.mark.parametrize(("extra_a", "extra_b"), [(5, 5), (5, 9), (9, 5)])
def test_a_fork_is_detected_from_two_checkpoints(tmp_path, extra_a, extra_b):
    a, b = forked_pair(tmp_path, extra_a=extra_a, extra_b=extra_b)
    seen, other = cp_of(a), cp_of(b)
    check_and_remember(seen, a)
    # Proofs come from whichever branch holds the larger tree: the other one is behind it.
    server = b if other.size >= seen.size else a
    with pytest.raises(ForkError) as e:
        check_and_remember(other, server)  # no proof joins them
    err = e.value
    assert (err.old_size, err.new_size) == (seen.size, other.size)
    assert (err.old_root, err.new_root) == (seen.root_hash, other.root_hash)
    assert f"size {seen.size}" in err.message and f"size {other.size}" in err.message
    assert "forked" in err.message
    assert last_seen(seen.origin, seen.log_key)[0] == seen.size  # the fork was not remembered
    # Both signed checkpoints are kept, byte for byte, in a file the message names.
    assert err.evidence is not None and str(err.evidence) in err.message
    kept = err.evidence.read_bytes()
    assert seen.note in kept and other.note in kept
    assert err.evidence.parent == forks_dir()
    a.close()
    b.close()


def test_a_log_that_is_merely_behind_is_not_a_fork(tmp_path):
    """Issue 19: a server behind the checkpoint seen (a tile not found) cannot prove
    anything either way; it is "cannot check", never a fork, and no evidence is written."""
    with LocalLog(tmp_path / "l", origin="example.com/lag") as log:
        log.append_many([b"%d" % i for i in range(10)])
        old = cp_of(log)
        log.close()
        shutil.copytree(tmp_path / "l", tmp_path / "stale")  # a mirror stuck at size 10
        log = LocalLog(tmp_path / "l")
        log.append_many([b"%d" % i for i in range(10, 12)])
        check_and_remember(cp_of(log), log)  # saw size 12
        with (
            LocalLog(tmp_path / "stale", create=False) as stale,
            pytest.raises(LogBehindError) as e,
        ):
            check_and_remember(old, stale)  # proving 10 -> 12 needs the tree of 12
        assert not isinstance(e.value, ForkError)
        assert e.value.message.startswith("cannot check: the log example.com/lag is behind")
        assert "serves a tree of 10 entries" in e.value.message
        assert "needs 12" in e.value.message
        assert not forks_dir().exists()
        check_and_remember(old, log)  # the up-to-date log shows they are consistent


def test_fork_before_the_seen_checkpoint_is_detected(tmp_path):
    a, b = forked_pair(tmp_path, extra_a=8, extra_b=2)
    check_and_remember(cp_of(a), a)  # saw size 18
    with pytest.raises(ForkError, match=r"size 18 .* size 12"):
        check_and_remember(cp_of(b), a)  # b's 12 is not a prefix of a's 18
    a.close()
    b.close()


def test_consistency_needs_a_way_to_reach_the_log(tmp_path):
    with LocalLog(tmp_path / "l", origin="example.com/far") as log:
        log.append(b"1")
        check_and_remember(cp_of(log), log)
        log.append(b"2")
        with pytest.raises(LogNotFoundError, match=r"no URL is known") as e:
            check_and_remember(cp_of(log))
        assert "--log URL" in e.value.hint


def test_verify_logged_uses_the_embedded_log_and_remembers(motte_home):
    with LocalLog(motte_home / "tlog") as log:  # the embedded log
        log.append_many([b"x", b"y"])
        b1 = log.inclusion_bundle(1)
        assert verify_logged(b"y", b1).size == 2
        log.append(b"z")
        b2 = log.inclusion_bundle(2)
    # the embedded log is trusted and reachable without saying so
    assert verify_logged(b"z", b2).size == 3
    assert verify_logged(b"y", b1).size == 2  # older bundle, consistent: fine
    origin = log.origin
    assert last_seen(origin, log.verifier_key)[0] == 3


def test_trusted_file(motte_home):
    log_key = Signer.generate("example.com/log").verifier.vkey
    w = Signer.generate("w.example", COSIGNATURE_ED25519).verifier.vkey
    assert add_trusted(log_key, "http://127.0.0.1:8470/")
    assert not add_trusted(log_key)
    add_trusted(w)
    with open(motte_home / "tlog" / "trusted", "a") as f:
        f.write("# comment\nwitness-quorum 1\n")
    t = load_trusted(include_embedded=False)
    assert t.log_keys == (log_key,) and t.witness_keys == (w,) and t.quorum == 1
    assert t.urls == {log_key: "http://127.0.0.1:8470"}
    assert load_trusted(witness_quorum=0, include_embedded=False).quorum == 0
    with open(motte_home / "tlog" / "trusted", "a") as f:
        f.write("not-a-key\n")
    with pytest.raises(TlogFormatError, match=r"trusted:5: verifier key"):
        load_trusted()
