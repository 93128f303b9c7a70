"""Failed rebuilds leave a trace, and the policy says what it means; the source is asked.

Each failure kind is a real rebuild (git, the build command, its time limit) whose failure
is signed and logged by a rebuilder the policy names, then judged: not satisfied by default,
unknown or a note when the policy says so. integrity.source asks the recorded source (a real
git repository, a closed port, an ssh URL) whether it has the recorded commit.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from motte.sign import attest_build
from motte.trust import Status, decide, gather, parse_policy, rebuild
from tests.trust.world import BUILD_SH, BUILDER, World, git, pem_body

S, N, U, NOTE = Status.SATISFIED, Status.NOT_SATISFIED, Status.UNKNOWN, Status.NOTE
REF = "acme/hello:1.0"


def _recipe(w: World, source: str, commit: str) -> None:
    """A package whose only provenance (by the trusted CI builder) names source at commit."""
    w.release("1.0", b"payload", provenance=False)
    attest_build(REF, [w.ci], source=source, commit=commit, command="sh build.sh", builder=BUILDER)


def nonexistent_commit(w: World) -> float:
    repo, _ = w.source("real", b"payload")
    _recipe(w, f"file://{repo}", "b" * 40)
    return 600


def not_a_repository(w: World) -> float:
    plain = w.tmp / "plain"
    plain.mkdir()
    _recipe(w, f"file://{plain}", "b" * 40)
    return 600


def failing_build(w: World) -> float:
    failing = BUILD_SH + "echo 'cc: error: no input'\nexit 3\n"
    w.release("1.0", b"payload", build_sh=failing, local_build_sh=BUILD_SH)
    return 600


def timed_out_build(w: World) -> float:
    w.release("1.0", b"payload", build_sh=BUILD_SH + "sleep 60\n", local_build_sh=BUILD_SH)
    return 1  # far shorter than the build: the outcome, not the timing, is asserted


KINDS = {
    nonexistent_commit: ("commit", "checkout: git exited with status 128: fatal: reference is"),
    not_a_repository: ("source", "clone: git exited with status 128: fatal: '"),
    failing_build: ("build", "build command 'sh build.sh' exited with status 3: cc: error"),
    timed_out_build: ("timeout", "build command 'sh build.sh' did not finish in 1 s"),
}


def _policy(w: World, build: str = "", extra: str = "", reproducible: bool = True):
    text = w.policy_text(extra=extra).replace(
        "reproducible = true", f"reproducible = {str(reproducible).lower()}\n{build}"
    )
    return parse_policy(text, name="policy.toml")


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.__name__)
def test_each_failure_is_attested_and_judged_by_the_policy(world, kind):
    stage, reason = KINDS[kind]
    timeout = kind(world)
    r = rebuild(REF, keys=[world.ci.public], attest=[world.rebuilder], timeout=timeout)
    assert r.failure is not None and r.attestation is not None
    assert (r.failure.stage, r.failure.reason[: len(reason)]) == (stage, reason)

    ev = gather(REF, _policy(world), now=world.now)
    said = f"could not rebuild: our-rebuilder tried file://{world.tmp}/"
    # The default: a failure by a rebuilder you named refuses build, with its reason...
    build = decide(ev, _policy(world), world.now).area("build")
    assert build.status == N and build.deciding.rule == "build.reproducible"
    assert build.deciding.message.startswith(said)
    assert f"failed at the {stage} step: {reason}" in build.deciding.message
    assert build.deciding.evidence[0].signer == world.rebuilder.keyid
    assert build.deciding.evidence[0].log_index is not None
    # ...even when reproducible builds are not required (the rebuilder's word counts).
    lax = _policy(world, reproducible=False)
    assert decide(ev, lax, world.now).area("build").status == N
    # failed_rebuild = "unknown": build is unknown, for that reason.
    build = decide(ev, _policy(world, 'failed_rebuild = "unknown"'), world.now).area("build")
    assert build.status == U and build.deciding.message.startswith(said)
    # failed_rebuild = "note": only the missing match decides.
    noted = _policy(world, 'failed_rebuild = "note"')
    build = decide(ev, noted, world.now).area("build")
    assert build.status == U and build.deciding.message.startswith("0 of the 1 required")
    assert any(r.status == NOTE and r.message.startswith(said) for r in build.rules)
    noted_lax = _policy(world, 'failed_rebuild = "note"', reproducible=False)
    assert decide(ev, noted_lax, world.now).area("build").status == S


def test_a_commit_that_does_not_exist_fails_integrity_even_without_reproducible_builds(world):
    """The issue's case: reproducible = false, a provenance naming a commit its source does
    not have. Build was satisfied; now integrity.source says the commit does not exist, and
    a named rebuilder's failed attempt refuses build too."""
    nonexistent_commit(world)
    lax = _policy(world, reproducible=False)
    v = decide(gather(REF, lax, now=world.now), lax, world.now)
    integrity = v.area("integrity")
    assert integrity.status == N and integrity.deciding.rule == "integrity.source"
    assert integrity.deciding.message.startswith(
        f"the recorded commit {'b' * 40} does not exist in file://{world.tmp}/real"
    )
    assert "not our ref" in integrity.deciding.message
    assert v.area("build").status == S  # nobody tried to rebuild it yet

    rebuild(REF, keys=[world.ci.public], attest=[world.rebuilder])
    v = decide(gather(REF, lax, now=world.now), lax, world.now)
    assert v.area("build").status == N and not v.accepted


def test_a_later_completed_rebuild_by_the_same_rebuilder_supersedes_its_failure(world):
    flag = world.tmp / "network-up"
    flaky = f"test -f {flag} || {{ echo 'network down'; exit 3; }}\n" + BUILD_SH
    world.release("1.0", b"payload", build_sh=flaky, local_build_sh=BUILD_SH)
    assert rebuild(REF, keys=[world.ci.public], attest=[world.rebuilder]).failure is not None
    flag.touch()
    assert rebuild(REF, keys=[world.ci.public], attest=[world.rebuilder]).matched
    policy = _policy(world)
    build = decide(gather(REF, policy, now=world.now), policy, world.now).area("build")
    assert build.status == S
    assert any(
        r.status == NOTE and "not counted: our-rebuilder also completed a rebuild" in r.message
        for r in build.rules
    )


def test_a_failure_by_one_named_rebuilder_outweighs_a_match_by_another(world):
    flag = world.tmp / "network-up"
    flaky = f"test -f {flag} || {{ echo 'network down'; exit 3; }}\n" + BUILD_SH
    world.release("1.0", b"payload", build_sh=flaky, local_build_sh=BUILD_SH)
    rebuild(REF, keys=[world.ci.public], attest=[world.stranger])  # fails: no flag
    flag.touch()
    rebuild(REF, keys=[world.ci.public], attest=[world.rebuilder])  # matches
    community = f'[[build.rebuilders]]\nname = "community"\nkeys = ["{pem_body(world.stranger)}"]\n'
    text = world.policy_text().replace("[responsiveness]", community + "\n[responsiveness]")
    policy = parse_policy(text, name="policy.toml")
    build = decide(gather(REF, policy, now=world.now), policy, world.now).area("build")
    assert build.status == N
    assert build.deciding.message.startswith("could not rebuild: community tried")
    assert build.deciding.message.endswith("exited with status 3: network down")


# -- integrity.source ----------------------------------------------------------------------


def test_a_source_that_has_the_commit_satisfies_integrity_source(world):
    world.release("1.0", b"payload")
    policy = _policy(world)
    rule = _source_rule(decide(gather(REF, policy, now=world.now), policy, world.now))
    assert rule.status == S
    assert rule.message.endswith(": the source has it")


def test_a_commit_seen_at_its_source_is_remembered(world):
    world.release("1.0", b"payload")
    policy = _policy(world)
    assert _source_rule(decide(gather(REF, policy, now=world.now), policy, world.now)).status == S
    shutil.rmtree(world.tmp / "src-1.0")  # the source is gone, or this machine is offline
    rule = _source_rule(decide(gather(REF, policy, now=world.now), policy, world.now))
    assert rule.status == S and "the source had it when asked on 20" in rule.message


def test_a_missing_commit_is_asked_for_again(world):
    repo, _ = world.source("published", b"payload")
    clone = world.tmp / "unpushed"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    (clone / "payload.bin").write_bytes(b"later")
    git(clone, "commit", "-q", "-am", "not pushed yet")
    commit = git(clone, "rev-parse", "HEAD")
    _recipe(world, f"file://{repo}", commit)
    policy = _policy(world)
    assert _source_rule(decide(gather(REF, policy, now=world.now), policy, world.now)).status == N
    git(
        repo, "fetch", "-q", str(clone), "main:refs/heads/later"
    )  # the publisher pushes it after all
    assert _source_rule(decide(gather(REF, policy, now=world.now), policy, world.now)).status == S


@pytest.mark.parametrize(
    ("source", "why"),
    [
        # a closed port on this machine: unreachable, without leaving it
        ("https://127.0.0.1:1/acme/hello", "fetch: git exited with status 128: fatal: unable"),
        ("ssh://git@127.0.0.1:1/acme/hello", "only file, http, https and git sources"),
    ],
)
def test_a_source_that_cannot_be_asked_is_unknown_not_satisfied(world, source, why):
    _recipe(world, source, "a" * 40)
    ev = gather(REF, _policy(world), now=world.now)
    rule = _source_rule(decide(ev, _policy(world), world.now))
    assert rule.status == U
    assert rule.message.startswith(f"cannot check that {source} has the recorded commit aaaa")
    assert why in rule.message
    # The policy may accept that: a note, and integrity stands on its other rules.
    relaxed = _policy(world, extra='\n[integrity]\nunchecked_source = "note"\n')
    v = decide(ev, relaxed, world.now)
    assert _source_rule(v).status == NOTE and v.area("integrity").status == S


def test_a_source_that_is_not_a_repository_cannot_be_checked(world):
    not_a_repository(world)
    policy = _policy(world)
    rule = _source_rule(decide(gather(REF, policy, now=world.now), policy, world.now))
    assert rule.status == U and "does not appear to be a git repository" in rule.message


def _source_rule(verdict):
    (rule,) = [r for r in verdict.area("integrity").rules if r.rule == "integrity.source"]
    return rule
