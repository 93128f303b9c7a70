"""The walk-through of docs/supply-chain.md, from the command line, against a real registry.

A publisher packages, signs, attests the build, and pushes; a consumer who trusts the
publisher's root and log pulls and verifies. Then the registry is tampered with.
"""

from __future__ import annotations

import hashlib
import json

import pytest

from motte.errors import ExitStatus
from motte.oci import load_workload
from tests.oci.registry_server import run_registry
from tests.oci.workloads import make_workload
from tests.tlog._servers import start

pytestmark = pytest.mark.integration


def ok(r):
    assert r.exit_code == 0, r.stderr
    return r


def test_package_sign_push_pull_verify(cli, tmp_path, monkeypatch, request):
    publisher, consumer = tmp_path / "publisher", tmp_path / "consumer"
    with run_registry(tmp_path) as reg:
        ref = f"{reg.url}/acme/hello:1.0"

        # -- publisher ---------------------------------------------------------------------
        monkeypatch.setenv("MOTTE_HOME", str(publisher))
        ok(cli("key", "new", "acme-root"))
        ok(cli("key", "new", "alice", "--type", "ecdsa-p256"))
        root = tmp_path / "acme-root"
        ok(cli("key", "root", "init", root, "--root-key", "acme-root", "--key", "acme-root"))
        ok(cli("key", "root", "delegate", root, "acme", "--signer", "alice", "--key", "acme-root"))
        log_vkey = ok(cli("log", "init")).stdout.strip()

        workload = make_workload(tmp_path / "hello", size=200_000)
        digest = json.loads(ok(cli("package", workload, "-t", "acme/hello:1.0", "--json")).stdout)[
            "digest"
        ]
        ok(cli("sign", "acme/hello:1.0", "--key", "alice"))
        ok(
            cli(
                "attest-build",
                "acme/hello:1.0",
                "--key",
                "alice",
                "--source",
                "https://git.example/acme/hello",
                "--commit",
                "0123456789abcdef0123456789abcdef01234567",
                "--command",
                "make hello.wasm",
            )
        )
        pushed = json.loads(ok(cli("push", ref, "--json")).stdout)
        assert pushed["digest"] == digest and len(pushed["referrers"]) == 2

        # The publisher serves its log, so consumers can check that checkpoints do not fork
        # (without the URL, the second statement's checkpoint could not be shown consistent
        # with the first, and verify would fail: tests/sign/test_fork_check_denied.py).
        served = start(["log", "serve"], env_home=publisher)
        request.addfinalizer(served.stop)

        # -- consumer ----------------------------------------------------------------------
        monkeypatch.setenv("MOTTE_HOME", str(consumer))
        ok(cli("key", "root", "trust", root))
        ok(cli("log", "trust", log_vkey, served.url))
        pulled = json.loads(ok(cli("pull", ref, "--json")).stdout)
        assert pulled["digest"] == digest and len(pulled["referrers"]) == 2

        v = json.loads(ok(cli("verify", "acme/hello:1.0", "--json")).stdout)
        assert v["digest"] == digest
        assert [s["kind"] for s in v["statements"]] == ["publication", "provenance"]
        assert v["statements"][1]["predicate"]["command"] == "make hello.wasm"
        # Verifying straight from the registry works too (nothing written to the store).
        ok(cli("verify", ref))

        # -- the registry is tampered with ---------------------------------------------------
        # 1. The tag now points at a package nobody signed: verify by tag refuses it.
        monkeypatch.setenv("MOTTE_HOME", str(tmp_path / "attacker"))
        evil = make_workload(tmp_path / "evil", size=1000, seed=666)
        ok(cli("package", evil, "-t", "acme/hello:1.0"))
        ok(cli("push", ref))
        monkeypatch.setenv("MOTTE_HOME", str(consumer))
        r = cli("verify", ref)
        assert r.exit_code == ExitStatus.FAILURE
        assert "threshold: acme/hello@sha256:" in r.stderr and digest not in r.stderr
        # ... while the signed digest still verifies when pinned.
        ok(cli("verify", f"{reg.url}/acme/hello@{digest}"))

        # 2. A layer's bytes change in storage: a pull by digest names the layer and keeps nothing.
        module = load_workload(f"acme/hello@{digest}").module
        module_layer = "sha256:" + hashlib.sha256(module).hexdigest()
        blob = reg.blob_file(module_layer)
        data = bytearray(blob.read_bytes())
        data[-1] ^= 1
        blob.write_bytes(bytes(data))
        monkeypatch.setenv("MOTTE_HOME", str(tmp_path / "second-consumer"))
        r = cli("pull", f"{reg.url}/acme/hello@{digest}")
        assert r.exit_code == ExitStatus.FAILURE
        assert f"hello.wasm of acme/hello@{digest}: digest mismatch" in r.stderr
        assert not (tmp_path / "second-consumer" / "oci" / "index.json").exists()
