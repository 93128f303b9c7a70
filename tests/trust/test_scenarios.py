"""The issue's scenarios, built from real signing, logging and rebuilding, judged end to end.

Each scenario starts from the same good package (reproducible, signed by a delegated key,
built by a trusted builder, rebuilt by a trusted rebuilder, freshly audited) and breaks one
thing; the verdict must name the area, the outcome and why.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest

from motte.oci import LocalStore, load_workload
from motte.sign import attest_review, generate_key
from motte.trust import Status, assess, publish_advisory, rebuild
from tests.trust.world import STAMPED_BUILD_SH, World

S, N, U = Status.SATISFIED, Status.NOT_SATISFIED, Status.UNKNOWN
REF = "acme/hello:1.0"


def good_release(w: World, tag: str = "1.0", payload: bytes = b"hello") -> str:
    digest = w.release(tag, payload)
    rebuild(f"acme/hello:{tag}", keys=[w.ci.public], attest=[w.rebuilder])
    w.audit(tag)
    return digest


def statuses(v) -> dict[str, Status]:
    return {a.area: a.status for a in v.areas}


def test_a_reproducible_signed_audited_package_is_accepted(world):
    digest = good_release(world)
    v = assess(REF, world.policy())
    assert statuses(v) == dict.fromkeys(statuses(v), S)
    assert v.accepted and v.digest == digest and v.failing() == ()
    build = v.area("build")
    assert {r.rule for r in build.rules} == {"build.provenance", "build.reproducible"}
    assert "reproduced byte for byte by 1 independent rebuilder(s): our-rebuilder" in [
        r.message for r in build.rules
    ]
    # The verdict names the policy and package by digest, and cites log entries and signers.
    assert v.policy_digest.startswith("sha256:") and v.reference.endswith(digest)
    ev = v.area("expertise").deciding.evidence[0]
    assert ev.signer == world.auditor.keyid and ev.log_index is not None and ev.time


def test_a_build_that_stamps_the_time_is_not_reproducible(world):
    world.release("1.0", b"hello", build_sh=STAMPED_BUILD_SH)
    result = rebuild(REF, keys=[world.ci.public], attest=[world.rebuilder])
    assert not result.matched and result.expected_module != result.rebuilt_module
    world.audit("1.0")
    v = assess(REF, world.policy())
    build = v.area("build")
    assert build.status == N and not v.accepted
    assert build.deciding.rule == "build.reproducible"
    assert build.deciding.message.startswith("not reproducible: our-rebuilder rebuilt file://")
    assert "got different bytes (module sha256:" in build.deciding.message


def test_a_changed_layer_fails_integrity(world):
    digest = good_release(world)
    module = load_workload(REF).module
    blob = LocalStore().blob_path("sha256:" + hashlib.sha256(module).hexdigest())
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))
    v = assess(REF, world.policy())
    integ = v.area("integrity")
    assert integ.status == N and integ.deciding.rule == "integrity.digest"
    assert integ.deciding.message.startswith(
        f"layer hello.wasm of acme/hello@{digest}: digest mismatch: expected sha256:"
    )
    assert not v.accepted


def test_an_open_advisory_is_refused_and_the_fix_is_timed(world):
    good_release(world)
    fixed = good_release(world, "1.1", b"hello, fixed")
    publish_advisory(
        [REF],
        [world.alice],
        id="MOTTE-2026-0001",
        severity="high",
        summary="path traversal in /files",
        fixed="acme/hello:1.1",
    )
    v = assess(REF, world.policy())
    resp = v.area("responsiveness")
    assert resp.status == N and resp.deciding.rule == "responsiveness.open"
    msg = resp.deciding.message
    assert msg.startswith("advisory MOTTE-2026-0001 (high) affects this version: path traversal")
    assert "fixed in 1.1, released " in msg
    assert resp.deciding.evidence[0].signer == world.alice.keyid
    # The fixed version is not affected; its answer cites the advisory and the time to fix.
    v11 = assess(f"acme/hello@{fixed}", world.policy())
    assert v11.area("responsiveness").status == S
    assert "MOTTE-2026-0001 fixed in" in v11.area("responsiveness").deciding.message


def test_a_policy_may_accept_open_advisories(world):
    good_release(world)
    publish_advisory([REF], [world.alice], id="MOTTE-2026-0002")
    text = world.policy_text().replace(
        "refuse_open_advisories = true", "refuse_open_advisories = false"
    )
    from motte.trust import parse_policy

    v = assess(REF, parse_policy(text, name="lenient.toml"))
    resp = v.area("responsiveness")
    assert resp.status == S
    assert any(r.status == Status.NOTE and "MOTTE-2026-0002" in r.message for r in resp.rules)


def test_an_advisory_left_unfixed_too_long_fails_every_version(world):
    good_release(world)
    other = good_release(world, "1.1", b"other")
    publish_advisory([REF], [world.alice], id="MOTTE-2026-0003")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=40)
    v = assess(f"acme/hello@{other}", world.policy(), now=later)
    resp = v.area("responsiveness")
    assert resp.status == N and resp.deciding.rule == "responsiveness.age"
    assert "MOTTE-2026-0003 has gone 40 days without a fixed release" in resp.deciding.message
    assert "(policy allows 30 days)" in resp.deciding.message


def test_an_advisory_by_a_stranger_does_not_count(world):
    good_release(world)
    publish_advisory([REF], [world.stranger], id="FAKE-1", severity="critical")
    v = assess(REF, world.policy())
    resp = v.area("responsiveness")
    assert resp.status == S
    assert any("advisory not counted" in n.message for n in resp.notes)


def test_a_new_signer_changing_a_sensitive_layer_fails_provenance(world):
    good_release(world)
    assert assess(REF, world.policy()).accepted  # the consumer has used 1.0: alice is known
    mallory = generate_key()
    world.delegate(world.alice, mallory)  # a rotation adds a key that never signed acme/hello
    digest = world.release(
        "1.1",
        b"hello",
        signer=mallory,
        motte_toml='workload = "hello.wasm"\nenv = { EXFIL = "https://evil.example" }\n',
    )
    rebuild("acme/hello:1.1", keys=[world.ci.public], attest=[world.rebuilder])
    world.audit("1.1")
    v = assess("acme/hello:1.1", world.policy())
    prov = v.area("provenance")
    assert prov.status == N and not v.accepted
    assert prov.deciding.rule == "provenance.new-signer"
    msg = prov.deciding.message
    assert msg.startswith(f"{mallory.keyid[:16]} is new to acme/hello")
    assert "delegated since root version 3" in msg
    assert "changed sensitive layer(s) Motte.toml since sha256:" in msg
    # Refused verdicts are not remembered: judging again does not make mallory "seen".
    assert assess("acme/hello:1.1", world.policy()).area("provenance").status == N
    # Rebuild mismatch aside, everything else about 1.1 is fine.
    assert v.area("integrity").status == S and v.digest == digest


def test_a_new_signer_touching_nothing_sensitive_is_a_note(world):
    good_release(world)
    assert assess(REF, world.policy()).accepted
    bob = generate_key()
    world.delegate(world.alice, bob)
    good_release_by = world.release("1.1", b"new module only", signer=bob)
    rebuild("acme/hello:1.1", keys=[world.ci.public], attest=[world.rebuilder])
    world.audit("1.1")
    v = assess(f"acme/hello@{good_release_by}", world.policy())
    prov = v.area("provenance")
    assert prov.status == S
    assert any("changed no sensitive layer" in n.message for n in prov.notes)


def test_an_audit_by_an_untrusted_party_does_not_count(world):
    world.release("1.0", b"hello")
    rebuild(REF, keys=[world.ci.public], attest=[world.rebuilder])
    world.audit("1.0", key=world.stranger)
    v = assess(REF, world.policy())
    exp = v.area("expertise")
    assert exp.status == U and not v.accepted
    assert exp.deciding.message == (
        "no fresh passing audit(s) by auditors the policy names (1 not counted)"
    )
    assert any(
        f"audit by mailto:audits@example.org (unverified) not counted: signed by "
        f"{world.stranger.keyid[:16]}" in n.message
        for n in exp.notes
    )


def test_a_stale_audit_does_not_count(world):
    world.release("1.0", b"hello")
    rebuild(REF, keys=[world.ci.public], attest=[world.rebuilder])
    world.audit("1.0", days_ago=400)
    v = assess(REF, world.policy())
    exp = v.area("expertise")
    assert exp.status == N and exp.deciding.rule == "expertise.age"
    assert "audit by audits.example.org (scope full," in exp.deciding.message
    assert exp.deciding.message.endswith("is stale: 400 days old, the policy allows 365")


def test_a_fresh_audit_goes_stale_with_time(world):
    good_release(world)
    assert assess(REF, world.policy()).area("expertise").status == S
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=360)
    assert assess(REF, world.policy(), now=later).area("expertise").status == N


def test_an_audit_cannot_be_dated_after_it_was_logged(world):
    world.release("1.0", b"hello")
    # The auditor claims a date a year ahead; the log says when the statement existed.
    attest_review(
        REF,
        [world.auditor],
        reviewer="x",
        scope="full",
        result="pass",
        kind="audit",
        now=dt.datetime.now(dt.UTC) + dt.timedelta(days=365),
    )
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=370)
    assert assess(REF, world.policy(), now=later).area("expertise").status == N


def test_a_failed_audit_fails_expertise(world):
    good_release(world)
    attest_review(REF, [world.auditor], reviewer="x", scope="crypto", result="fail", kind="audit")
    exp = assess(REF, world.policy()).area("expertise")
    assert exp.status == N and exp.deciding.message.endswith("failed")


def test_no_provenance_is_unknown_not_bad(world):
    world.release("1.0", b"hello", provenance=False)
    build = assess(REF, world.policy()).area("build")
    assert build.status == U
    assert build.deciding.message == "no SLSA provenance: how it was built is not known"


def test_provenance_from_an_untrusted_builder_is_not_satisfied(world):
    from motte.sign import attest_build

    world.release("1.0", b"hello", provenance=False)
    attest_build(
        REF,
        [world.alice],
        source="https://git.example.org/acme/hello",
        commit="a" * 40,
        command="make",
        builder="https://motte.dev/builders/local/v1",
    )
    build = assess(REF, world.policy()).area("build")
    assert build.status == N
    assert "not a signer-builder pair the policy trusts" in build.deciding.message


def test_areas_not_required_do_not_decide(world):
    world.release("1.0", b"hello", provenance=False)
    v = assess(REF, world.policy(require='["integrity", "provenance"]'))
    assert v.accepted
    assert v.area("build").status == U and not v.area("build").required


@pytest.mark.parametrize("area", ["integrity", "provenance"])
def test_an_unsigned_package_is_unknown_or_refused(world, area):
    from motte.oci import build_package, parse_reference
    from tests.oci.workloads import make_workload

    build_package(make_workload(world.tmp / "w"), parse_reference(REF))
    v = assess(REF, world.policy(require=f'["{area}"]'))
    assert not v.accepted
    if area == "integrity":
        assert v.area(area).status == N
        assert "0 of the 1 required publisher signature(s)" in v.area(area).deciding.message
    else:
        assert v.area(area).status == U


def test_a_statement_changed_after_signing_is_ignored_never_decisive(world):
    """A statement whose payload was edited after alice signed it, logged and attached as
    it is: the signature no longer covers it. It names alice's key, but a keyid is only a
    hint anyone can write (issue 19: a stranger must not deny the genuine package)."""
    import base64
    import json

    from motte.oci import open_repository, parse_reference
    from motte.sign._attach import attach_statement
    from motte.sign._dsse import INTOTO_PAYLOAD_TYPE, sign_envelope
    from motte.sign._logging import log_envelope
    from motte.sign._statement import Statement, Subject

    good_release(world)
    baseline = statuses(assess(REF, world.policy()))
    ref = parse_reference(REF)
    with open_repository(ref) as repo:
        desc, _ = repo.resolve(ref)
        statement = Statement(
            (Subject.for_digest(ref.repository, desc.digest),),
            "https://motte.dev/review/v1",
            {"reviewer": "mailto:x@example.org", "result": "fail"},
        )
        envelope = json.loads(
            sign_envelope(INTOTO_PAYLOAD_TYPE, statement.to_bytes(), [world.alice]).to_bytes()
        )
        payload = json.loads(base64.b64decode(envelope["payload"]))
        payload["predicate"]["result"] = "pass"  # the edit the signature does not cover
        envelope["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
        forged = json.dumps(envelope).encode()
        _, bundle, _ = log_envelope(forged)
        attach_statement(
            repo,
            desc,
            forged,
            bundle,
            predicate_type=statement.predicate_type,
            keyids=[world.alice.keyid],
            now=world.now,
        )
    v = assess(REF, world.policy())
    assert statuses(v) == baseline
    integ = v.area("integrity")
    # A keyid is only a hint: the forged statement counts for nothing and decides nothing
    # (anyone could attach it), and -v lists it as ignored with the reason.
    ignored = [r for r in integ.rules if r.rule == "integrity.ignored"]
    assert len(ignored) == 1
    assert ignored[0].status == Status.NOTE
    assert "does not verify (the statement or signature was changed" in ignored[0].message
    assert integ.deciding.rule != "integrity.ignored"


def test_a_publication_by_a_key_outside_the_roots_rotation_is_a_note_not_a_signer(world):
    from motte.sign import sign_artifact

    good_release(world)
    eve = generate_key()
    sign_artifact(REF, [eve])  # a valid, logged signature by a key nobody delegated
    v = assess(REF, world.policy())
    assert v.accepted  # alice's publication still carries it; eve's adds nothing
    notes = [r for r in v.area("provenance").rules if r.rule == "provenance.rotation"]
    assert len(notes) == 1 and notes[0].status == Status.NOTE
    assert f"signed by {eve.keyid[:16]}, which" in notes[0].message
    assert "outside its rotation): not counted" in notes[0].message


def test_provenance_that_names_no_exact_commit_fails_integrity_source(world):
    """A signed, logged provenance whose commit is a branch name: the bytes cannot be tied
    to a source, whatever else the statement says."""
    from motte.sign import sign_statement
    from motte.sign._predicates import BUILD_TYPE, SLSA_PROVENANCE

    world.release("1.0", b"hello", provenance=False)
    sign_statement(
        REF,
        [world.ci],
        SLSA_PROVENANCE,
        {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "source": "https://example.org/acme/hello",
                    "commit": "main",
                },
                "resolvedDependencies": [],
            },
            "runDetails": {"builder": {"id": "https://ci.example.org/builder"}},
        },
    )
    source = [
        r
        for r in assess(REF, world.policy()).area("integrity").rules
        if r.rule == "integrity.source"
    ]
    assert [r.status for r in source] == [N]
    assert "does not name an exact source" in source[0].message
    assert "'main' is not a full git commit id" in source[0].message
