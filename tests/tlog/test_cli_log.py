"""``motte log``: the commands a user runs, in-process."""

from __future__ import annotations

import json
import sqlite3

import pytest

from motte.errors import ExitStatus


@pytest.fixture
def files(tmp_path):
    paths = []
    for i in range(3):
        p = tmp_path / f"stmt{i}.json"
        p.write_bytes(b'{"statement": %d}' % i)
        paths.append(p)
    return paths


def test_init_append_prove_verify(cli, files, tmp_path):
    r = cli("log", "init", "--origin", "example.com/cli")
    assert r.exit_code == 0 and r.stdout.startswith("example.com/cli+")
    r = cli("log", "append", *files, "--json")
    assert [row["index"] for row in json.loads(r.stdout)] == [0, 1, 2]
    proof = tmp_path / "stmt1.tlog-proof"
    assert cli("log", "prove", "1", "-o", proof).exit_code == 0
    assert proof.read_text().startswith("c2sp.org/tlog-proof@v1\nindex 1\n")
    r = cli("log", "verify", files[1], proof)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == "OK: entry 1 is in example.com/cli at size 3\n"
    r = cli("log", "verify", files[1], proof, "--json")
    assert json.loads(r.stdout)["verified"] is True


def test_verify_reports_a_changed_entry_and_exits_1(cli, files, tmp_path):
    cli("log", "append", *files)
    proof = tmp_path / "p"
    cli("log", "prove", "1", "-o", proof)
    r = cli("log", "verify", files[2], proof)
    assert r.exit_code == ExitStatus.FAILURE
    assert "the entry or a proof hash was changed" in r.stderr
    assert "Traceback" not in r.stderr
    forged = proof.read_text().replace("\n3\n", "\n4\n")
    proof.write_text(forged)
    r = cli("log", "verify", files[1], proof)
    assert r.exit_code == 1 and "does not verify" in r.stderr


def test_verify_refuses_an_untrusted_log(cli, files, tmp_path):
    other = tmp_path / "other"
    cli("log", "init", "--dir", other, "--origin", "example.com/other")
    cli("log", "append", "--dir", other, files[0])
    proof = tmp_path / "p"
    cli("log", "prove", "0", "--dir", other, "-o", proof)
    r = cli("log", "verify", files[0], proof)
    assert r.exit_code == ExitStatus.USAGE and "no trusted log key" in r.stderr
    cli("log", "init")  # now the embedded log's key is trusted, but not the other log's
    r = cli("log", "verify", files[0], proof)
    assert r.exit_code == 1
    assert "no signature by a trusted key" in r.stderr and "motte log trust" in r.stderr
    vkey = cli("log", "init", "--dir", other).stdout.strip()
    assert cli("log", "verify", files[0], proof, "--key", vkey).exit_code == 0
    assert cli("log", "trust", vkey).exit_code == 0
    assert cli("log", "verify", files[0], proof).exit_code == 0


def test_checkpoint_json(cli, files):
    cli("log", "append", files[0])
    out = json.loads(cli("log", "checkpoint", "--json").stdout)
    assert out["size"] == 1 and out["note"].startswith(out["origin"] + "\n1\n")


def test_audit_finds_tampering(cli, files, motte_home):
    cli("log", "append", *files)
    cli("log", "checkpoint")
    r = cli("log", "audit", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["ok"] is True
    conn = sqlite3.connect(motte_home / "tlog" / "log.db", isolation_level=None)
    conn.execute("DROP TRIGGER entries_no_update")
    conn.execute("UPDATE entries SET data = x'00' WHERE idx = 2")
    r = cli("log", "audit")
    assert r.exit_code == 1 and "entry 2 hashes to" in r.stderr


def test_user_errors_are_one_line(cli, files, tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"x" * 70000)
    r = cli("log", "append", big)
    assert r.exit_code == ExitStatus.USAGE and "70000 bytes is larger" in r.stderr
    r = cli("log", "append", tmp_path / "missing")
    assert r.exit_code == 1 and "No such file" in r.stderr
    r = cli("log", "checkpoint", "--dir", tmp_path / "none")
    assert r.exit_code == 1 and "motte log init" in r.stderr
    r = cli("log", "checkpoint", "--dir", tmp_path, "--log", "http://x")
    assert r.exit_code == ExitStatus.USAGE
    r = cli("log", "prove", "7")
    assert r.exit_code == 1 and "no log at" in r.stderr
    cli("log", "append", files[0])
    r = cli("log", "prove", "7")
    assert r.exit_code == 1 and "has no entry 7 (size 1)" in r.stderr
    r = cli("log", "verify", files[0], files[1])
    assert r.exit_code == 1 and "tlog-proof" in r.stderr


def test_witness_init_prints_a_cosigner_key(cli, tmp_path):
    r = cli("log", "witness", "init", "--dir", tmp_path / "w", "--name", "w.example/1")
    assert r.exit_code == 0
    from motte.tlog import Verifier

    assert Verifier.from_vkey(r.stdout.strip()).is_cosigner
    r = cli("log", "witness", "serve", "--dir", tmp_path / "w")
    assert r.exit_code == ExitStatus.USAGE and "trusts no log" in r.stderr


def test_help_teaches(cli):
    r = cli("log", "--help")
    assert r.exit_code == 0
    for word in ("init", "append", "prove", "verify", "serve", "witness", "audit"):
        assert word in r.stdout


def _refusing_store(directory) -> None:
    """Make the store refuse to sign: a checkpoint row claims more entries than it holds."""
    conn = sqlite3.connect(directory / "log.db")
    conn.execute("INSERT INTO checkpoints (size, note) VALUES (100, x'00')")
    conn.commit()
    conn.close()


def test_append_to_a_store_that_refuses_to_sign_fails_and_adds_nothing(cli, files, tmp_path):
    """Issue 19: ``log append --dir D`` exited 0 where ``POST /add`` answered 500."""
    d = tmp_path / "log"
    assert cli("log", "init", "--dir", d, "--origin", "example.com/refuse").exit_code == 0
    assert cli("log", "append", "--dir", d, files[0]).exit_code == 0
    _refusing_store(d)
    r = cli("log", "append", "--dir", d, files[1])
    assert r.exit_code != 0
    assert "refusing to sign" in r.stderr and "Traceback" not in r.stderr
    rows = sqlite3.connect(d / "log.db").execute("SELECT count(*) FROM entries").fetchone()
    assert rows == (1,)  # the refusal came before anything was appended


def test_append_served_to_a_store_that_refuses_to_sign_fails(cli, files, tmp_path):
    from tests.tlog._servers import start

    home = tmp_path / "served-home"
    d = home / "tlog"
    cli("log", "init", "--dir", d, "--origin", "example.com/refuse-http")
    served = start(["log", "serve"], env_home=home)
    try:
        assert cli("log", "append", "--log", served.url, files[0]).exit_code == 0
        _refusing_store(d)
        r = cli("log", "append", "--log", served.url, files[1])
        assert r.exit_code != 0 and "HTTP 500" in r.stderr
    finally:
        served.stop()
    rows = sqlite3.connect(d / "log.db").execute("SELECT count(*) FROM entries").fetchone()
    assert rows == (1,)


def test_identical_entries_are_logged_once(cli, files, tmp_path):
    """Content dedup, as Rekor does: the same bytes get the index they already have."""
    cli("log", "init", "--origin", "example.com/dedup")
    r = cli("log", "append", files[0], files[1], files[0], "--json")
    assert [row["index"] for row in json.loads(r.stdout)] == [0, 1, 0]
    r = cli("log", "append", files[1], files[2], "--json")
    assert [row["index"] for row in json.loads(r.stdout)] == [1, 2]
    r = cli("log", "checkpoint", "--json")
    assert json.loads(r.stdout)["size"] == 3


def test_identical_entries_are_logged_once_by_a_served_log(cli, files, tmp_path):
    from tests.tlog._servers import start

    home = tmp_path / "served-home"
    cli("log", "init", "--dir", home / "tlog", "--origin", "example.com/dedup-http")
    served = start(["log", "serve"], env_home=home)
    try:
        first = cli("log", "append", "--log", served.url, files[0], files[1], "--json")
        again = cli("log", "append", "--log", served.url, files[0], "--json")
        assert [row["index"] for row in json.loads(first.stdout)] == [0, 1]
        assert [row["index"] for row in json.loads(again.stdout)] == [0]
        r = cli("log", "checkpoint", "--log", served.url, "--json")
        assert json.loads(r.stdout)["size"] == 2
    finally:
        served.stop()


def test_a_database_url_with_a_password_makes_nothing(cli, tmp_path):
    r = cli("log", "init", "--dir", tmp_path / "log", "--db", "postgresql://u:hunter2@db/x")
    assert r.exit_code == 2 and "holds a password" in r.stderr and "hunter2" not in r.stderr
    assert not (tmp_path / "log").exists()
