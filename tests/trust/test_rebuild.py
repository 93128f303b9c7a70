"""motte rebuild: from the recorded source, in a clean directory, compared byte for byte."""

from __future__ import annotations

import os
import time

import pytest

from motte.sign import Envelope, Statement, attest_build, read_statements
from motte.trust import REBUILD, Rebuild, RebuildError, TrustUsageError, rebuild
from tests.trust.world import BUILD_SH, BUILDER

REF = "acme/hello:1.0"


def _statement_of(referrer: str) -> Statement:
    from motte.oci import open_repository, parse_reference

    ref = parse_reference(REF)
    with open_repository(ref) as repo:
        desc, _ = repo.resolve(ref)
        for s in read_statements(repo, desc.digest):
            if s.referrer == referrer:
                return Statement.from_bytes(Envelope.from_bytes(s.envelope).payload)
    raise AssertionError("referrer not found")


def test_a_match_is_attested_and_logged(world):
    digest = world.release("1.0", b"payload")
    r = rebuild(REF, keys=[world.ci.public], attest=[world.rebuilder])
    assert r.matched and r.expected == r.rebuilt == digest
    assert r.recipe.provenance.command == "sh build.sh" and r.recipe.signer == world.ci.keyid
    assert r.attestation is not None and r.attestation.keyids == (world.rebuilder.keyid,)
    st = _statement_of(r.attestation.referrer)
    assert st.predicate_type == REBUILD and st.about(digest)
    rb = Rebuild.from_dict(st.predicate, "rebuild")
    assert rb.result == "match" and rb.commit == r.recipe.provenance.commit


def test_the_build_runs_in_a_scrubbed_environment(world, monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "do-not-leak")
    checks = (
        # 2026-01-01T00:00:00Z, the commit time world.git sets
        'test "$SOURCE_DATE_EPOCH" = 1767225600 || exit 11\n'
        'test -z "$SECRET_TOKEN" || exit 12\n'
        'test -z "$MOTTE_HOME" || exit 13\n'
        'test "$PATH" = /usr/local/bin:/usr/bin:/bin || exit 14\n'
        'test "$TZ" = UTC || exit 15\n'
        'case "$HOME" in */motte-rebuild-*/home) ;; *) exit 16 ;; esac\n'
    )
    world.release("1.0", b"payload", build_sh=checks + BUILD_SH, local_build_sh=BUILD_SH)
    assert rebuild(REF, keys=[world.ci.public]).matched


def test_a_package_that_is_not_its_source_does_not_match(world):
    # The published Motte.toml grants more than the one committed at that commit.
    world.release("1.0", b"payload", motte_toml='workload = "hello.wasm"\nargs = ["--debug"]\n')
    r = rebuild(REF, keys=[world.ci.public])
    assert not r.matched
    assert r.expected_module == r.rebuilt_module and r.expected != r.rebuilt


def test_a_failing_build_names_its_status_and_last_line(world):
    failing = BUILD_SH + "echo 'cc: error: no input'\nexit 3\n"
    world.release("1.0", b"payload", build_sh=failing, local_build_sh=BUILD_SH)
    with pytest.raises(RebuildError) as e:
        rebuild(REF, keys=[world.ci.public])
    assert (
        e.value.message == "build command 'sh build.sh' exited with status 3: cc: error: no input"
    )


def test_a_build_past_its_time_is_killed_with_its_children(world, tmp_path):
    pid_file = tmp_path / "child.pid"
    slow = BUILD_SH + f"sleep 60 &\necho $! > {pid_file}\nwait\n"
    world.release("1.0", b"payload", build_sh=slow, local_build_sh=BUILD_SH)
    started = time.monotonic()
    with pytest.raises(RebuildError) as e:
        rebuild(REF, keys=[world.ci.public], timeout=1)
    assert e.value.message == "build command 'sh build.sh' did not finish in 1 s"
    assert time.monotonic() - started < 30
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # the whole process group went with it
        for _ in range(50):
            os.kill(pid, 0)
            time.sleep(0.1)


def test_two_different_recipes_are_refused(world):
    world.release("1.0", b"payload")
    repo, commit = world.source("other", b"payload")
    attest_build(
        REF, [world.ci], source=f"file://{repo}", commit=commit, command="make", builder=BUILDER
    )
    with pytest.raises(RebuildError, match="the package has 2 different build recipes"):
        rebuild(REF, keys=[world.ci.public])


def test_no_trusted_recipe_means_no_build(world):
    world.release("1.0", b"payload", provenance=False)
    with pytest.raises(RebuildError, match="no SLSA provenance signed by a trusted key"):
        rebuild(REF, keys=[world.ci.public])
    # A recipe signed by a stranger is never run.
    marker = world.tmp / "ran"
    repo, commit = world.source("evil", b"x", f"touch {marker}\n")
    attest_build(
        REF,
        [world.stranger],
        source=f"file://{repo}",
        commit=commit,
        command="sh build.sh",
        builder=BUILDER,
    )
    with pytest.raises(RebuildError, match="no SLSA provenance signed by a trusted key"):
        rebuild(REF, keys=[world.ci.public])
    assert not marker.exists()


def test_by_default_the_recipe_must_come_from_a_delegated_key(world):
    world.release("1.0", b"payload")  # provenance signed by the CI key, not delegated
    with pytest.raises(RebuildError, match="no SLSA provenance signed by a trusted key"):
        rebuild(REF)
    repo, commit = world.source("by-alice", b"payload")
    attest_build(
        REF,
        [world.alice],
        source=f"file://{repo}",
        commit=commit,
        command="sh build.sh",
        builder=BUILDER,
    )
    assert rebuild(REF).recipe.signer == world.alice.keyid


def test_git_may_not_run_commands_for_the_source(world):
    marker = world.tmp / "pwned"
    script = world.tmp / "evil.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    world.release("1.0", b"payload", provenance=False)
    attest_build(
        REF, [world.ci], source=f"ext::{script}", commit="a" * 40, command="true", builder=BUILDER
    )
    with pytest.raises(RebuildError, match="clone: git exited"):
        rebuild(REF, keys=[world.ci.public])
    assert not marker.exists()


def test_a_source_that_is_gone_is_a_clear_error(world):
    world.release("1.0", b"payload", provenance=False)
    attest_build(
        REF,
        [world.ci],
        source=f"file://{world.tmp}/nowhere",
        commit="b" * 40,
        command="make",
        builder=BUILDER,
    )
    with pytest.raises(RebuildError, match=r"^clone: git exited with status 128"):
        rebuild(REF, keys=[world.ci.public])


def test_a_recipe_without_a_command(world):
    world.release("1.0", b"payload", provenance=False)
    attest_build(
        REF, [world.ci], source="https://git.example.org/x", commit="c" * 40, builder=BUILDER
    )
    with pytest.raises(RebuildError, match="records no build command"):
        rebuild(REF, keys=[world.ci.public])


def test_the_timeout_must_be_positive(world):
    with pytest.raises(TrustUsageError):
        rebuild(REF, timeout=0)
