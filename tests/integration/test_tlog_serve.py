"""A served log with a served witness, used the way a user would: real processes, real HTTP."""

from __future__ import annotations

import json

import httpx
import pytest

from motte.tlog import (
    LocalLog,
    TrustedLogs,
    check_and_remember,
    open_log,
    verify_checkpoint,
    verify_inclusion_bundle,
)
from motte.tlog._witness import init_witness
from tests.tlog._servers import start

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A witness process and a log process that asks it to cosign every checkpoint."""
    tmp_path = tmp_path_factory.mktemp("served")
    home = tmp_path / "home"
    log_dir, w_dir = tmp_path / "log", tmp_path / "witness"
    with LocalLog(log_dir, origin="motte.example/served") as log:
        log_key = log.verifier_key
    witness_key = init_witness(w_dir, name="witness.example/w").verifier.vkey
    witness = start(
        ["log", "witness", "serve", "--dir", str(w_dir), "--log", log_key], env_home=home
    )
    (log_dir / "witnesses").write_text(f"# our one witness\n{witness_key} {witness.url}\n")
    server = start(["log", "serve", "--dir", str(log_dir)], env_home=home)
    yield server, witness, log_key, witness_key, tmp_path
    server.stop()
    witness.stop()


def test_appends_come_back_with_cosigned_inclusion_proofs(served):
    server, _, log_key, witness_key, _ = served
    trusted = TrustedLogs((log_key,), (witness_key,))
    with open_log(server.url) as log:
        assert log.verifier_key == log_key
        got = [log.append(b"statement %d" % i) for i in range(5)]
        assert [g.index for g in got] == [0, 1, 2, 3, 4]
        for i in (0, 4):
            cp = verify_inclusion_bundle(b"statement %d" % i, log.inclusion_bundle(i), trusted)
            assert cp.size == 5 and cp.cosignatures[0].witness == witness_key
        assert check_and_remember(cp, log) == cp
        log.append(b"one more")
        cp2 = verify_checkpoint(log.checkpoint(), trusted)
        assert check_and_remember(cp2, log).size == 6


def test_the_witness_refuses_to_go_back(served):
    server, witness, *_ = served
    with open_log(server.url) as log:
        size = log.append(b"x").index + 1
        note = log.checkpoint()
    from motte.tlog._witness import format_add_checkpoint

    r = httpx.post(witness.url + "/add-checkpoint", content=format_add_checkpoint(0, [], note))
    assert (r.status_code, r.headers["content-type"]) == (409, "text/x.tlog.size")
    assert r.text == f"{size}\n"  # the witness already cosigned this size, pushed by the log
    r = httpx.post(witness.url + "/add-checkpoint", content=format_add_checkpoint(size, [], note))
    assert r.status_code == 200 and r.text.startswith("— witness.example/w ")


def test_cli_against_the_served_log(served, cli, tmp_path):
    server, _, log_key, witness_key, _ = served
    stmt = tmp_path / "stmt.json"
    stmt.write_text('{"_type": "statement"}')
    r = cli("log", "append", "--log", server.url, stmt, "--json")
    assert r.exit_code == 0, r.stderr
    index = json.loads(r.stdout)[0]["index"]
    proof = tmp_path / "stmt.tlog-proof"
    assert cli("log", "prove", str(index), "--log", server.url, "-o", proof).exit_code == 0
    r = cli("log", "verify", stmt, proof, "--key", log_key, "--key", witness_key)
    assert r.exit_code == 0, r.stderr
    assert "cosigned by 1 witnesses" in r.stdout
    # the log grows; a proof against the bigger checkpoint needs a consistency proof from the
    # one remembered above, fetched over HTTP (tiles) from the log. (Another entry: the same
    # bytes again would keep their index, as in Rekor.)
    stmt2 = tmp_path / "stmt2.json"
    stmt2.write_text('{"_type": "statement", "n": 2}')
    index2 = json.loads(cli("log", "append", "--log", server.url, stmt2, "--json").stdout)[0]
    proof2 = tmp_path / "stmt2.tlog-proof"
    cli("log", "prove", str(index2["index"]), "--log", server.url, "-o", proof2)
    r = cli("log", "verify", stmt2, proof2, "--key", log_key, "--key", witness_key)
    assert r.exit_code == 1 and "no URL is known" in r.stderr
    r = cli("log", "verify", stmt2, proof2, "--key", log_key, "--key", witness_key,
            "--log", server.url)  # fmt: skip
    assert r.exit_code == 0, r.stderr
    cp = json.loads(cli("log", "checkpoint", "--log", server.url, "--json").stdout)
    assert cp["size"] == index2["index"] + 1 and "witness.example/w" in cp["signers"]


def test_serving_a_directory_without_a_log_says_it_created_a_new_one(tmp_path):
    fresh = start(["log", "serve", "--dir", str(tmp_path / "typo")], env_home=tmp_path / "home")
    try:
        said = [line for line in fresh.stderr if "created a NEW one" in line]
        assert len(said) == 1 and str(tmp_path / "typo") in said[0]
    finally:
        fresh.stop()
    again = start(["log", "serve", "--dir", str(tmp_path / "typo")], env_home=tmp_path / "home")
    try:
        assert not [line for line in again.stderr if "NEW" in line]  # the same log, reopened
    finally:
        again.stop()
