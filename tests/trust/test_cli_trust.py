"""motte trust / rebuild / advise from the command line: output, --json, exit statuses."""

from __future__ import annotations

import json

from motte.errors import ExitStatus
from motte.oci import open_repository, parse_reference
from motte.sign import Envelope, Statement, read_statements, save_key_pair
from motte.trust import TRUST_VERDICT
from tests.trust.test_scenarios import REF, good_release


def _policy_file(world, tmp_path, **kw):
    path = tmp_path / "prod.toml"
    path.write_text(world.policy_text(**kw))
    return path


def test_an_accepted_package_exits_0_with_one_line_per_area(cli, world, tmp_path):
    digest = good_release(world)
    r = cli("trust", REF, "--policy", _policy_file(world, tmp_path))
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"{REF}@{digest}"
    areas = [ln.split()[1] for ln in lines if ln.startswith("  ✔")]
    assert areas == ["build", "integrity", "responsiveness", "provenance", "expertise"]
    assert lines[-1] == "accepted: every area the policy requires is satisfied"


def test_a_refusal_exits_1_and_says_which_areas(cli, world, tmp_path):
    world.release("1.0", b"hello")
    r = cli("trust", REF, "--policy", _policy_file(world, tmp_path))
    assert r.exit_code == ExitStatus.FAILURE
    assert "  ? build          unknown       0 of the 1 required independent" in r.stdout
    assert r.stdout.splitlines()[-1] == "refused: build unknown, expertise unknown"


def test_json_carries_every_rule_and_its_evidence(cli, world, tmp_path):
    digest = good_release(world)
    r = cli("trust", REF, "--policy", _policy_file(world, tmp_path), "--json")
    doc = json.loads(r.stdout)
    assert doc["decision"] == "accepted" and doc["digest"] == digest
    assert doc["policy"]["digest"].startswith("sha256:")
    build = doc["areas"][0]
    assert build["area"] == "build" and build["status"] == "satisfied" and build["required"]
    assert {r["rule"] for r in build["rules"]} == {"build.provenance", "build.reproducible"}
    ev = build["evidence"][0]
    assert ev["signer"] == world.ci.keyid and isinstance(ev["log_index"], int)


def test_sign_turns_the_verdict_into_a_logged_statement(cli, world, tmp_path):
    digest = good_release(world)
    save_key_pair(world.stranger, "judge")
    r = cli("trust", REF, "--policy", _policy_file(world, tmp_path), "--sign", "judge", "--json")
    assert r.exit_code == 0, r.stderr
    signed = json.loads(r.stdout)["signed"]
    assert signed["keyids"] == [world.stranger.keyid] and signed["referrer"]
    ref = parse_reference(REF)
    with open_repository(ref) as repo:
        stored = {s.referrer: s for s in read_statements(repo, digest)}
    st = Statement.from_bytes(Envelope.from_bytes(stored[signed["referrer"]].envelope).payload)
    assert st.predicate_type == TRUST_VERDICT and st.about(digest)
    assert st.predicate["decision"] == "accepted"
    assert st.predicate["policy"]["name"] == "prod.toml"
    assert set(st.predicate["areas"]) == {
        "build",
        "integrity",
        "responsiveness",
        "provenance",
        "expertise",
    }
    # A signed verdict is not evidence for the next judgement, and does not break it.
    assert cli("trust", REF, "--policy", _policy_file(world, tmp_path)).exit_code == 0


def test_a_broken_policy_is_a_usage_error(cli, tmp_path, world):
    bad = tmp_path / "bad.toml"
    bad.write_text("require = ['everything']\n")
    r = cli("trust", REF, "--policy", bad)
    assert r.exit_code == ExitStatus.USAGE
    assert r.stderr.startswith(f"motte: error: {bad}:1: require[0]: 'everything' is not an area")


def test_a_missing_package_is_an_error_not_a_traceback(cli, tmp_path, world):
    r = cli("trust", "acme/nothing:1", "--policy", _policy_file(world, tmp_path))
    assert r.exit_code == ExitStatus.FAILURE and "Traceback" not in r.stderr
    assert r.stderr.startswith("motte: error: acme/nothing:1: no such tag")


def test_help_teaches(cli):
    r = cli("trust", "--help")
    assert r.exit_code == 0 and "--policy" in r.stdout and "Exit status" in r.stdout


# -- rebuild ---------------------------------------------------------------------------------


def test_rebuild_reports_and_attests(cli, world):
    digest = world.release("1.0", b"payload")
    save_key_pair(world.rebuilder, "rb")
    save_key_pair(world.ci, "ci")
    r = cli("rebuild", REF, "--key", "ci", "--attest", "rb")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.startswith(f"reproduced {REF}@{digest} byte for byte\n")
    assert "  command  sh build.sh\n" in r.stdout and "  attested " in r.stdout
    assert "rebuild: cloning file://" in r.stderr and "rebuild: building: sh build.sh" in r.stderr


def test_rebuild_json_and_a_mismatch_exits_1(cli, world):
    from tests.trust.world import STAMPED_BUILD_SH

    world.release("1.0", b"payload", build_sh=STAMPED_BUILD_SH)
    save_key_pair(world.ci, "ci")
    r = cli("rebuild", REF, "--key", "ci", "--json")
    assert r.exit_code == ExitStatus.FAILURE and r.stderr == ""
    doc = json.loads(r.stdout)
    assert doc["reproduced"] is False
    assert doc["module"]["expected"] != doc["module"]["rebuilt"]


def test_rebuild_takes_the_policy_builders(cli, world, tmp_path):
    world.release("1.0", b"payload")
    r = cli("rebuild", REF, "--policy", _policy_file(world, tmp_path))
    assert r.exit_code == 0, r.stderr
    r = cli("rebuild", REF)  # the CI key is no publisher key: its recipe is not trusted
    assert r.exit_code == ExitStatus.FAILURE
    assert "no SLSA provenance signed by a trusted key" in r.stderr


# -- advise ----------------------------------------------------------------------------------


def test_advise_publishes_and_trust_refuses(cli, world, tmp_path):
    good_release(world)
    save_key_pair(world.alice, "alice")
    r = cli(
        "advise",
        REF,
        "--key",
        "alice",
        "--id",
        "MOTTE-2026-0001",
        "--severity",
        "high",
        "--summary",
        "reads any file",
        "--alias",
        "CVE-2026-0001",
        "--json",
    )
    assert r.exit_code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["advisory"]["affected"][0]["version"] == "1.0"
    assert doc["advisory"]["aliases"] == ["CVE-2026-0001"] and len(doc["referrers"]) == 1
    r = cli("trust", REF, "--policy", _policy_file(world, tmp_path))
    assert r.exit_code == ExitStatus.FAILURE
    assert "✘ responsiveness not satisfied advisory MOTTE-2026-0001 (high) affects" in r.stdout


def test_advise_refuses_two_packages_in_one_advisory(cli, world):
    save_key_pair(world.alice, "alice")
    r = cli("advise", REF, "acme/other:1.0", "--key", "alice", "--id", "X-1")
    assert r.exit_code == ExitStatus.USAGE
    assert "an advisory is about one package" in r.stderr


def test_advise_withdraw(cli, world, tmp_path):
    good_release(world)
    save_key_pair(world.alice, "alice")
    assert cli("advise", REF, "--key", "alice", "--id", "X-2").exit_code == 0
    r = cli("advise", REF, "--key", "alice", "--id", "X-2", "--withdraw")
    assert r.exit_code == 0 and r.stdout.startswith("withdrew advisory X-2 for acme/hello")
    assert cli("trust", REF, "--policy", _policy_file(world, tmp_path)).exit_code == 0


def test_verbose_lists_every_rule(cli, world, tmp_path):
    good_release(world)
    policy = _policy_file(world, tmp_path)
    quiet = cli("trust", REF, "--policy", policy).stdout
    r = cli("trust", REF, "--policy", policy, "-v")
    assert "satisfied: reproduced byte for byte by 1 independent rebuilder(s)" in r.stdout
    assert "reproduced byte for byte" not in quiet
    assert len(r.stdout.splitlines()) > len(quiet.splitlines())
