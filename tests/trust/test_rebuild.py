"""motte rebuild: from the recorded source, in a clean directory, compared byte for byte."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from motte.oci import build_package, parse_reference
from motte.sign import (
    Envelope,
    PrivateKey,
    Statement,
    attest_build,
    read_statements,
    save_key_pair,
    sign_artifact,
)
from motte.trust import (
    REBUILD,
    Rebuild,
    RebuildError,
    RebuildFailure,
    RebuildResult,
    TrustUsageError,
    rebuild,
)
from tests.trust.world import BUILD_SH, BUILDER, git

REF = "acme/hello:1.0"
WASM = b"\0asm\1\0\0\0"


def _statement_of(referrer: str) -> Statement:
    from motte.oci import open_repository, parse_reference

    ref = parse_reference(REF)
    with open_repository(ref) as repo:
        desc, _ = repo.resolve(ref)
        for s in read_statements(repo, desc.digest):
            if s.referrer == referrer:
                return Statement.from_bytes(Envelope.from_bytes(s.envelope).payload)
    raise AssertionError("referrer not found")


def _attested(r: RebuildResult) -> tuple[str, str, RebuildFailure | None]:
    """What the signed, attached rebuild statement says: type, result, failure."""
    assert r.attestation is not None
    st = _statement_of(r.attestation.referrer)
    assert st.about(r.expected)
    rb = Rebuild.from_dict(st.predicate, "rebuild")
    return st.predicate_type, rb.result, rb.failure


def _rebuild_recipe(world, source: str, commit: str, command: str = "sh build.sh"):
    """Rebuild a package whose only provenance names ``source`` at ``commit``, attested."""
    world.release("1.0", b"payload", provenance=False)
    attest_build(REF, [world.ci], source=source, commit=commit, command=command, builder=BUILDER)
    return rebuild(REF, keys=[world.ci.public], attest=[world.rebuilder])


def _saved(key: PrivateKey, name: str) -> str:
    save_key_pair(key, name)
    return name


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


def test_a_failing_build_is_attested_as_a_failure_with_its_status_and_last_line(world):
    failing = BUILD_SH + "echo 'cc: error: no input'\nexit 3\n"
    world.release("1.0", b"payload", build_sh=failing, local_build_sh=BUILD_SH)
    r = rebuild(REF, keys=[world.ci.public], attest=[world.rebuilder])
    assert not r.matched and r.result == "failed" and r.rebuilt is None
    assert r.failure == RebuildFailure(
        "build", "build command 'sh build.sh' exited with status 3: cc: error: no input"
    )
    assert _attested(r) == (REBUILD, "failed", r.failure)


def test_a_build_past_its_time_is_killed_with_its_children(world, tmp_path):
    pid_file = tmp_path / "child.pid"
    # The child and its pid come first, and the timeout is far longer than starting a shell
    # takes on a busy machine: the build never finishes (the child sleeps 600 s), and the
    # pid is written before the timeout ends it.
    slow = f"sleep 600 &\necho $! > {pid_file}\n" + BUILD_SH + "wait\n"
    world.release("1.0", b"payload", build_sh=slow, local_build_sh=BUILD_SH)
    r = rebuild(REF, keys=[world.ci.public], attest=[world.rebuilder], timeout=5)
    assert r.failure == RebuildFailure(
        "timeout", "build command 'sh build.sh' did not finish in 5 s"
    )
    assert _attested(r) == (REBUILD, "failed", r.failure)
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # the whole process group went with it
        for _ in range(600):  # a condition waited for, generously: not a timing assertion
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
    r = _rebuild_recipe(world, f"ext::{script}", "a" * 40, command="true")
    assert r.failure is not None and r.failure.stage == "source"
    assert r.failure.reason.startswith("clone: git exited with status 128: fatal: ")
    assert not marker.exists()


def test_a_source_that_is_gone_is_a_failure_named_by_gits_first_fatal_line(world):
    gone = world.tmp / "nowhere"
    r = _rebuild_recipe(world, f"file://{gone}", "b" * 40)
    # git's last line ("and the repository exists.") says nothing; its first fatal: does.
    assert r.failure == RebuildFailure(
        "source",
        f"clone: git exited with status 128: fatal: '{gone}' does not appear to be a git "
        "repository",
    )
    assert _attested(r) == (REBUILD, "failed", r.failure)


def test_a_source_that_is_not_a_repository_is_a_failure(world):
    plain = world.tmp / "plain"
    plain.mkdir()
    (plain / "Motte.toml").write_text('workload = "hello.wasm"\n')
    r = _rebuild_recipe(world, f"file://{plain}", "b" * 40)
    assert r.failure == RebuildFailure(
        "source",
        f"clone: git exited with status 128: fatal: '{plain}' does not appear to be a git "
        "repository",
    )
    assert _attested(r) == (REBUILD, "failed", r.failure)


def test_a_commit_that_does_not_exist_is_a_failure(world):
    repo, _ = world.source("real", b"payload")
    r = _rebuild_recipe(world, f"file://{repo}", "b" * 40)
    assert r.failure == RebuildFailure(
        "commit",
        f"checkout: git exited with status 128: fatal: reference is not a tree: {'b' * 40}",
    )
    assert _attested(r) == (REBUILD, "failed", r.failure)


# -- the build command must make the module -------------------------------------------------


def test_a_committed_module_the_command_does_not_write_is_not_reproduced(world, cli):
    """The issue's case: hello.wasm is committed beside its source, the command writes
    out/hello.wasm. Packaging the checkout as it stands would 'reproduce' the committed
    binary; the rebuild deletes it first, so the command's failure to make it shows."""
    elsewhere = "mkdir -p out\n" + BUILD_SH.replace("hello.wasm", "out/hello.wasm")
    world.release("1.0", b"payload", build_sh=elsewhere, committed=WASM + b"payload")
    r = rebuild(REF, keys=[world.ci.public], attest=[world.rebuilder])
    assert not r.matched
    assert r.failure == RebuildFailure("output", "the build command did not produce hello.wasm")
    assert _attested(r) == (REBUILD, "failed", r.failure)

    out = cli("rebuild", REF, "--key", _saved(world.ci, "ci"))
    assert out.exit_code == 1
    assert out.stdout.splitlines()[0] == (
        f"NOT reproduced: could not rebuild {r.reference}: the build command did not produce "
        "hello.wasm"
    )
    assert "rebuild: removed the committed hello.wasm: the build must make it" in out.stderr
    out = cli("rebuild", REF, "--key", "ci", "--json")
    assert out.exit_code == 1
    got = json.loads(out.stdout)
    assert (got["reproduced"], got["result"]) == (False, "failed")
    assert got["failure"] == {
        "stage": "output",
        "reason": "the build command did not produce hello.wasm",
    }
    assert got["package"] == {"expected": r.expected, "rebuilt": None}


def test_a_command_that_writes_nothing_is_not_reproduced(world):
    world.release("1.0", b"payload", build_sh="echo nothing to do\n", committed=WASM + b"p")
    r = rebuild(REF, keys=[world.ci.public])
    assert r.failure == RebuildFailure("output", "the build command did not produce hello.wasm")


def test_a_link_to_a_committed_module_is_not_produced(world):
    repo, _ = world.source("src-link", b"p", build_sh="ln -s prebuilt/x.wasm hello.wasm\n")
    (repo / "prebuilt").mkdir()
    (repo / "prebuilt" / "x.wasm").write_bytes(WASM + b"p")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "prebuilt")
    commit = git(repo, "rev-parse", "HEAD")
    subprocess.run(["sh", "build.sh"], cwd=repo, check=True)
    build_package(repo, parse_reference(REF))
    sign_artifact(REF, [world.alice])
    attest_build(
        REF,
        [world.ci],
        source=f"file://{repo}",
        commit=commit,
        command="sh build.sh",
        builder=BUILDER,
    )
    r = rebuild(REF, keys=[world.ci.public])
    assert r.failure == RebuildFailure(
        "output",
        f"the build command did not produce hello.wasm: it is the file committed at "
        f"{commit[:12]} (hello.wasm is prebuilt/x.wasm)",
    )


def test_a_committed_module_the_command_rewrites_is_reproduced(world):
    steps: list[str] = []
    world.release("1.0", b"payload", committed=WASM + b"payload")
    r = rebuild(REF, keys=[world.ci.public], progress=steps.append)
    assert r.matched and r.failure is None
    assert "removed the committed hello.wasm: the build must make it" in steps


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
