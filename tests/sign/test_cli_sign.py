"""The key, root, sign, attest and verify commands, run in-process."""

import json

import pytest

from motte.errors import ExitStatus
from tests.oci.workloads import make_workload


@pytest.fixture
def review_cmd(monkeypatch):
    """``motte attest-review``, registered here until motte.cli.COMMANDS lists it."""
    from motte.cli import COMMANDS

    monkeypatch.setitem(
        COMMANDS, "attest-review", ("motte.cli.sign", "attest_review", "Record a review or audit.")
    )


def _ok(r):
    assert r.exit_code == 0, r.stderr
    return r


def test_keys(cli):
    r = _ok(cli("key", "new", "alice", "--json"))
    doc = json.loads(r.stdout)
    assert doc["name"] == "alice" and doc["type"] == "ed25519" and len(doc["keyid"]) == 64
    _ok(cli("key", "new", "bob", "--type", "ecdsa-p256"))
    listed = json.loads(_ok(cli("key", "list", "--json")).stdout)
    assert [(k["name"], k["type"], k["private"]) for k in listed] == [
        ("alice", "ed25519", True),
        ("bob", "ecdsa-p256", True),
    ]
    shown = json.loads(_ok(cli("key", "show", "alice", "--json")).stdout)
    assert shown["keyid"] == doc["keyid"] and "BEGIN PUBLIC KEY" in shown["pem"]

    r = cli("key", "new", "alice")
    assert r.exit_code == ExitStatus.USAGE and "exists already" in r.stderr
    r = cli("key", "new", "carol", "--type", "rsa")
    assert r.exit_code == ExitStatus.USAGE and "not one of ed25519, ecdsa-p256" in r.stderr


def _root_with_acme(cli, tmp_path, threshold=1, signers=("alice",)):
    for name in ("root1", *signers):
        _ok(cli("key", "new", name))
    root = tmp_path / "acme-root"
    _ok(cli("key", "root", "init", root, "--root-key", "root1", "--key", "root1"))
    args = [a for s in signers for a in ("--signer", s)]
    _ok(
        cli(
            "key",
            "root",
            "delegate",
            root,
            "acme",
            *args,
            "--threshold",
            threshold,
            "--key",
            "root1",
        )
    )
    _ok(cli("key", "root", "trust", root))
    return root


def test_full_flow_on_the_local_store(cli, tmp_path, review_cmd):
    _root_with_acme(cli, tmp_path)
    _ok(cli("package", make_workload(tmp_path / "w"), "-t", "acme/hello:1.0"))
    signed = json.loads(_ok(cli("sign", "acme/hello:1.0", "--key", "alice", "--json")).stdout)
    assert signed["log"]["index"] == 0 and signed["reference"].startswith("acme/hello:1.0@sha256:")
    _ok(
        cli(
            "attest-build",
            "acme/hello:1.0",
            "--key",
            "alice",
            "--source",
            "https://git.example/acme/hello",
            "--commit",
            "d" * 40,
            "--command",
            "make hello.wasm",
        )
    )
    _ok(
        cli(
            "attest-review",
            "acme/hello:1.0",
            "--key",
            "alice",
            "--reviewer",
            "mailto:bob@example.org",
            "--scope",
            "full",
            "--result",
            "pass",
            "--kind",
            "audit",
        )
    )

    r = _ok(cli("verify", "acme/hello:1.0"))
    assert r.stdout.startswith("verified acme/hello:1.0@sha256:")
    assert "provenance" in r.stdout and "commit=" + "d" * 40 in r.stdout

    doc = json.loads(_ok(cli("verify", "acme/hello:1.0", "--json")).stdout)
    assert doc["verified"] is True and doc["policy"] == "trust root acme-root version 2"
    assert [s["kind"] for s in doc["statements"]] == ["publication", "provenance", "review"]
    assert doc["statements"][2]["predicate"]["kind"] == "audit"
    assert all(s["log"]["index"] == i for i, s in enumerate(doc["statements"]))

    # Pinning a key instead of using the trust roots.
    _ok(cli("verify", "acme/hello:1.0", "--key", "alice"))
    r = cli("verify", "acme/hello:1.0", "--key", "root1")
    assert r.exit_code == ExitStatus.FAILURE
    assert r.stderr.startswith("motte: error: threshold: acme/hello@sha256:")


def test_verify_failures_are_one_line_with_exit_status_1(cli, tmp_path):
    _root_with_acme(cli, tmp_path)
    _ok(cli("package", make_workload(tmp_path / "w"), "-t", "acme/hello:1.0"))
    r = cli("verify", "acme/hello:1.0")
    assert r.exit_code == ExitStatus.FAILURE
    assert r.stderr.count("\n") <= 2 and "Traceback" not in r.stderr
    assert "hint: sign it with a delegated key" in r.stderr

    r = cli("verify", "other/thing:1")
    assert r.exit_code == ExitStatus.FAILURE
    assert "namespace 'other': no trust root" in r.stderr

    r = cli("verify", "acme/hello:1.0", "--key", "alice", "--keys-dir", tmp_path)
    assert r.exit_code == ExitStatus.USAGE


def test_root_threshold_and_rotation(cli, tmp_path):
    for name in ("r1", "r2", "r3", "alice"):
        _ok(cli("key", "new", name))
    root = tmp_path / "root"
    r = _ok(
        cli(
            "key",
            "root",
            "init",
            root,
            "--root-key",
            "r1",
            "--root-key",
            "r2",
            "--threshold",
            "2",
            "--key",
            "r1",
            "--json",
        )
    )
    assert json.loads(r.stdout)["complete"] is False
    assert json.loads(r.stdout)["missing"] == ["1 more of its own root keys"]
    r = _ok(cli("key", "root", "sign", root, "--key", "r2", "--json"))
    assert json.loads(r.stdout)["version"] == 1
    assert (root / "1.root.json").exists()

    # Rotate to r3 alone: needs 2 of the old (r1, r2) and 1 of the new (r3).
    r = _ok(cli("key", "root", "rotate", root, "--root-key", "r3", "--key", "r3", "--key", "r1"))
    assert "staged" in r.stdout and "1 more of version 1's root keys" in r.stdout
    r = cli("key", "root", "delegate", root, "acme", "--signer", "alice", "--key", "r3")
    assert r.exit_code == ExitStatus.USAGE and "waits for signatures already" in r.stderr
    _ok(cli("key", "root", "sign", root, "--key", "r2"))
    _ok(cli("key", "root", "delegate", root, "acme", "--signer", "alice", "--key", "r3"))
    shown = json.loads(_ok(cli("key", "root", "show", root, "--json")).stdout)
    assert shown["version"] == 3 and list(shown["namespaces"]) == ["acme"]
    r = cli("key", "root", "delegate", root, "acme", "--signer", "alice", "--key", "r1")
    assert r.exit_code == ExitStatus.USAGE and "not a root key" in r.stderr


def test_root_delegate_names_keyless_identities_and_show_prints_them(cli, tmp_path):
    gh = "https://github.com/acme/hello/.github/workflows/release.yml@refs/heads/main"
    iss = "https://token.actions.githubusercontent.com"
    root = tmp_path / "root"
    _ok(cli("key", "new", "r1"))
    _ok(cli("key", "new", "alice"))
    _ok(cli("key", "root", "init", root, "--root-key", "r1", "--key", "r1"))
    # Identities and issuers pair up in order; a lone issuer serves all.
    r = cli("key", "root", "delegate", root, "acme", "--identity", gh, "--key", "r1")
    assert r.exit_code == ExitStatus.USAGE and "--issuer" in r.stderr
    r = cli("key", "root", "delegate", root, "acme", "--key", "r1")
    assert r.exit_code == ExitStatus.USAGE and "name the publishers" in r.stderr
    r = cli(
        "key",
        "root",
        "delegate",
        root,
        "acme",
        "--identity",
        gh,
        "--issuer",
        "http://x",
        "--key",
        "r1",
    )
    assert r.exit_code == ExitStatus.USAGE and "https://" in r.stderr
    args = ["--signer", "alice", "--identity", gh, "--issuer", iss, "--threshold", "2"]
    doc = json.loads(
        _ok(cli("key", "root", "delegate", root, "acme", *args, "--key", "r1", "--json")).stdout
    )
    assert doc["complete"] and list(doc["identities"].values()) == [{"identity": gh, "issuer": iss}]
    shown = _ok(cli("key", "root", "show", root)).stdout
    assert "namespace acme (2 of 2 must sign)" in shown
    assert f"identity  {gh}" in shown and f"issuer {iss}" in shown
