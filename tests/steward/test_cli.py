"""``motte steward init`` and ``motte steward audit``."""

from __future__ import annotations

import json

import pytest

from motte.steward import Steward
from tests.steward.helpers import OTHER_DIGEST, keep_csr

# Every case on the embedded SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("database")


def test_init_then_audit(cli, motte_home):
    r = cli("steward", "init", "--allow-insecure-sim")
    assert r.exit_code == 0, r.stderr
    assert "created a Steward in" in r.stdout and "INSECURE sim keeps" in r.stderr
    with Steward() as steward:
        steward.attest(keep_csr(steward.new_nonce().nonce), client="127.0.0.1:1")
        steward.attest(
            keep_csr(steward.new_nonce().nonce, bound_digest=OTHER_DIGEST), client="127.0.0.1:2"
        )
    r = cli("steward", "audit")
    assert r.exit_code == 0
    lines = r.stdout.splitlines()
    assert "ACCEPTED" in lines[0] and "127.0.0.1:1" in lines[0]
    assert any("REJECTED" in line and "127.0.0.1:2" in line for line in lines)
    assert any(line.strip().startswith("report-data: REPORT_DATA") for line in lines)
    # Each decision shows the launch measurement, to compare with `motte measure`.
    assert lines[1].strip().startswith("measurement ") and len(lines[1].split()[1]) == 96
    doc = json.loads(cli("steward", "audit", "--json", "--rejected").stdout)
    assert [d["client"] for d in doc] == ["127.0.0.1:2"]
    assert doc[0]["verdict"]["rules"] and doc[0]["reason"].startswith("report-data")


def test_init_twice_and_conflicting_options_are_errors(cli, tmp_path):
    assert cli("steward", "init", "--json").exit_code == 0
    r = cli("steward", "init")
    assert r.exit_code == 1 and "already exists" in r.stderr
    policy = tmp_path / "p.toml"
    policy.write_text('name = "x"\n')
    r = cli("steward", "init", "--policy", policy, "--allow-insecure-sim")
    assert r.exit_code == 2 and "choose one" in r.stderr


def test_init_refuses_a_bad_policy_or_name_before_writing(cli, motte_home, tmp_path):
    policy = tmp_path / "p.toml"
    policy.write_text("allow_insecure_sim = 3\n")
    r = cli("steward", "init", "--policy", policy)
    assert r.exit_code == 1 and "allow_insecure_sim" in r.stderr
    r = cli("steward", "init", "--san-allow", "*.com")
    assert r.exit_code == 2 and "wildcard" in r.stderr
    assert not (motte_home / "steward").exists()


def test_serve_without_init_says_what_to_do(cli):
    r = cli("steward", "serve", "--listen", "127.0.0.1:0")
    assert r.exit_code == 1 and "motte steward init" in r.stderr


def test_every_command_has_help(cli):
    for argv in (
        ("connect", "--help"),
        ("steward", "--help"),
        ("steward", "init", "--help"),
        ("steward", "serve", "--help"),
        ("steward", "audit", "--help"),
        ("platform", "info", "--help"),
        ("run", "--help"),
    ):
        r = cli(*argv)
        assert r.exit_code == 0, (argv, r.stderr)
        assert "Usage: motte" in r.stdout and "internal error" not in r.stderr


def test_a_database_url_with_a_password_is_refused_before_anything_is_written(cli, motte_home):
    r = cli("steward", "init", "--db", "postgresql://steward:hunter2@db.example/motte")
    assert r.exit_code == 2
    assert "holds a password" in r.stderr and "hunter2" not in r.stderr + r.stdout
    assert not (motte_home / "steward").exists()
