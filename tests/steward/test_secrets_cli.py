"""``motte secret`` on a local Steward and through the admin API (token, never anonymous),
on SQLite and PostgreSQL. Values come from files or stdin and never come back out."""

from __future__ import annotations

import io
import json
import os
import sys

import pytest

from motte.steward import AdminTokens, Steward, init_steward
from tests.steward.helpers import DIGEST
from tests.steward.servers import steward_server

pytestmark = pytest.mark.usefixtures("database")

POLICY = f'digests = ["{DIGEST}"]\nallow_insecure_sim = true\n'


@pytest.fixture
def steward_home(motte_home):
    init_steward(allow_insecure_sim=True)
    return motte_home / "steward"


@pytest.fixture
def files(tmp_path):
    value = b"canary-" + os.urandom(10).hex().encode()
    (tmp_path / "value").write_bytes(value)
    (tmp_path / "policy.toml").write_text(POLICY)
    return tmp_path, value


def no_value(value: bytes, *texts: str) -> None:
    for text in texts:
        assert value.decode() not in text


def test_local_put_list_show_rotate_rm_and_audit(cli, steward_home, files, monkeypatch):
    tmp, value = files
    r = cli("secret", "put", "db", "--from-file", tmp / "value", "--policy", tmp / "policy.toml")
    assert r.exit_code == 0, r.stderr
    assert "stored db version 1" in r.stdout
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"second-value")))
    assert cli("secret", "rotate", "db").exit_code == 0
    listed = cli("secret", "list", "--json")
    shown = cli("secret", "show", "db", "--json")
    audit = cli("secret", "audit", "--json")
    no_value(value, listed.stdout, shown.stdout, audit.stdout, r.stdout, r.stderr)
    doc = json.loads(shown.stdout)
    assert [v["size"] for v in doc["versions"]] == [len(value), 12]
    assert doc["policy"]["digests"] == [DIGEST]
    assert [a["action"] for a in json.loads(audit.stdout)] == ["put", "rotate"]
    assert cli("secret", "rm", "db", "--version", "1").exit_code == 0
    assert cli("secret", "rm", "db").exit_code == 0
    gone = cli("secret", "show", "db")
    assert gone.exit_code == 0 and "removed" not in gone.stdout  # metadata stays, no versions
    again = cli("secret", "rm", "db")
    assert again.exit_code == 1 and "was removed at" in again.stderr


def test_there_is_no_way_to_give_a_value_on_the_command_line(cli, steward_home):
    r = cli("secret", "put", "db", "hunter2")
    assert r.exit_code == 2


def test_a_malformed_policy_is_one_line_and_nothing_is_stored(cli, steward_home, files):
    tmp, _ = files
    (tmp / "bad.toml").write_text('signed = ["acme/web"]\nallowed_kinds = ["sim"]\n')
    r = cli("secret", "put", "db", "--from-file", tmp / "value", "--policy", tmp / "bad.toml")
    assert r.exit_code == 1
    assert r.stderr.splitlines()[0] == (
        f"motte: error: {tmp / 'bad.toml'}:2: allowed_kinds: sim protects nothing; it may be "
        "listed only with allow_insecure_sim = true"
    )
    assert "Traceback" not in r.stderr
    assert json.loads(cli("secret", "list", "--json").stdout) == []
    assert json.loads(cli("secret", "audit", "--json").stdout) == []


def test_a_wrong_master_key_is_one_line_and_nothing_is_written(cli, steward_home, files):
    tmp, _ = files
    assert cli("secret", "put", "db", "--from-file", tmp / "value").exit_code == 0
    key = steward_home / "secrets.key"
    key.unlink()
    from motte.steward._masterkey import create_key_file

    create_key_file(key)
    r = cli("secret", "rotate", "db", "--from-file", tmp / "value")
    assert r.exit_code == 1
    assert r.stderr.startswith("motte: error: the master key from ")
    assert "is not the one this Steward's secrets are sealed under" in r.stderr
    assert len(r.stderr.splitlines()) == 2  # the line and its hint
    with Steward(steward_home) as s:
        assert s.secrets.show("db").latest == 1


def test_a_truncated_store_is_one_line(cli, steward_home, files, database):
    if database != "sqlite":
        pytest.skip("a file to truncate: SQLite's")
    tmp, _ = files
    assert cli("secret", "put", "db", "--from-file", tmp / "value").exit_code == 0
    db = steward_home / "steward.db"
    for extra in ("-wal", "-shm"):
        (steward_home / f"steward.db{extra}").unlink(missing_ok=True)
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3])
    r = cli("secret", "list")
    assert r.exit_code != 0
    assert r.stderr.startswith("motte: error: ") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2


def test_the_admin_api_needs_a_token_and_acts_like_the_local_store(
    cli, steward_home, files, tmp_path
):
    tmp, value = files
    token_file = tmp_path / "admin.token"
    made = cli("steward", "admin-token", "new", "ci", "--out", token_file)
    assert made.exit_code == 0 and (token_file.stat().st_mode & 0o777) == 0o600
    token = token_file.read_text().strip()
    assert token not in made.stdout + made.stderr
    with Steward(steward_home) as steward, steward_server(steward) as url:
        # Never anonymous: no token, a wrong token, a token file others can read.
        anon = cli("secret", "list", "--steward", url)
        assert anon.exit_code == 1 and "never anonymous" in anon.stderr
        (tmp_path / "wrong").write_text("mat_" + "x" * 43)
        (tmp_path / "wrong").chmod(0o600)
        wrong = cli("secret", "list", "--steward", url, "--token-file", tmp_path / "wrong")
        assert wrong.exit_code == 1 and "unknown or revoked" in wrong.stderr
        token_file.chmod(0o644)
        loose = cli("secret", "list", "--steward", url, "--token-file", token_file)
        assert loose.exit_code == 1 and "only its owner can read" in loose.stderr
        token_file.chmod(0o600)
        remote = ("--steward", url, "--token-file", token_file)
        put = cli(
            "secret", "put", "db", "--from-file", tmp / "value", "--policy",
            tmp / "policy.toml", *remote,
        )  # fmt: skip
        assert put.exit_code == 0, put.stderr
        shown = cli("secret", "show", "db", "--json", *remote)
        assert json.loads(shown.stdout)["latest"] == 1
        assert cli("secret", "rotate", "db", "--from-file", tmp / "value", *remote).exit_code == 0
        explain = cli(
            "secret", "explain", "db", "--workload", DIGEST, "--json", *remote
        )  # no evidence: refused, rule by rule
        assert explain.exit_code == 1
        assert json.loads(explain.stdout)["would_release"] is False
        audit = json.loads(cli("secret", "audit", "--json", *remote).stdout)
        assert [a["actor"].split(" from ")[0] for a in audit] == ["admin token ci"] * 2
        no_value(value, put.stdout, shown.stdout, explain.stdout, json.dumps(audit))
        AdminTokens(steward.store.db).revoke("ci")
        revoked = cli("secret", "list", *remote)
        assert revoked.exit_code == 1 and "unknown or revoked" in revoked.stderr
