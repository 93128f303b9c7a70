"""The trust judgement across parties, against real servers on 127.0.0.1.

A publisher, a CI builder, an independent rebuilder and an auditor each work in their own
MOTTE_HOME and log into the publisher's served transparency log (`motte log serve`); the
packages and every statement live in Debian's docker-registry. A consumer who trusts only
the root, the log key and its own policy judges the registry references directly: the
history (advisories, earlier signers) is read from the served log over HTTP and checked
against its checkpoint.
"""

from __future__ import annotations

import json

import pytest

from motte.oci import build_package, parse_reference, push
from motte.sign import attest_build, attest_review, install_root, sign_artifact
from motte.tlog import open_log
from motte.trust import publish_advisory, rebuild
from tests.oci.registry_server import run_registry
from tests.tlog._servers import start
from tests.trust.world import BUILDER, World

pytestmark = pytest.mark.integration


def test_a_consumer_judges_registry_packages_with_the_served_log(
    cli, tmp_path, monkeypatch, request
):
    homes = {n: tmp_path / n for n in ("publisher", "ci", "rebuilder", "auditor", "consumer")}
    w = World(tmp_path / "acme-root", tmp_path)
    with run_registry(tmp_path) as reg:
        # -- the publisher: a root, a served log, two releases ---------------------------------
        monkeypatch.setenv("MOTTE_HOME", str(homes["publisher"]))
        w.delegate(w.alice)
        log = open_log()
        vkey = log.verifier_key
        log.close()
        served = start(["log", "serve"], env_home=homes["publisher"])
        request.addfinalizer(served.stop)
        url = served.url
        refs = {}
        for tag, payload in (("1.0", b"first"), ("1.1", b"second, fixed")):
            repo, commit = w.source(f"src-{tag}", payload)
            import subprocess

            subprocess.run(["sh", "build.sh"], cwd=repo, check=True)
            build_package(repo, parse_reference(f"acme/hello:{tag}"))
            ref = f"{reg.url}/acme/hello:{tag}"
            push(parse_reference(ref))
            sign_artifact(ref, [w.alice], log_url=url)
            refs[tag] = (ref, repo, commit)

        # -- the CI builder records provenance ---------------------------------------------------
        monkeypatch.setenv("MOTTE_HOME", str(homes["ci"]))
        for ref, repo, commit in refs.values():
            attest_build(
                ref,
                [w.ci],
                source=f"file://{repo}",
                commit=commit,
                command="sh build.sh",
                builder=BUILDER,
                log_url=url,
            )

        # -- an independent rebuilder and an auditor ---------------------------------------------
        monkeypatch.setenv("MOTTE_HOME", str(homes["rebuilder"]))
        for ref, _, _ in refs.values():
            assert rebuild(ref, keys=[w.ci.public], attest=[w.rebuilder], log_url=url).matched
        monkeypatch.setenv("MOTTE_HOME", str(homes["auditor"]))
        for ref, _, _ in refs.values():
            attest_review(
                ref,
                [w.auditor],
                reviewer="https://audits.example.org",
                scope="full",
                result="pass",
                kind="audit",
                log_url=url,
            )

        # -- the publisher announces a problem in 1.0, fixed in 1.1 ------------------------------
        monkeypatch.setenv("MOTTE_HOME", str(homes["publisher"]))
        publish_advisory(
            [refs["1.0"][0]],
            [w.alice],
            id="MOTTE-2026-0007",
            severity="medium",
            fixed=refs["1.1"][0],
            log_url=url,
        )

        # -- the consumer ------------------------------------------------------------------------
        monkeypatch.setenv("MOTTE_HOME", str(homes["consumer"]))
        install_root(w.root, now=w.now)
        assert cli("log", "trust", vkey, url).exit_code == 0
        policy = tmp_path / "prod.toml"
        policy.write_text(w.policy_text())

        r = cli("trust", refs["1.1"][0], "--policy", policy, "--json")
        assert r.exit_code == 0, r.stdout + r.stderr
        doc = json.loads(r.stdout)
        assert doc["decision"] == "accepted"
        resp = next(a for a in doc["areas"] if a["area"] == "responsiveness")
        # Read from the served log: the advisory attached to 1.0 only, and its time to fix.
        assert "1 advisory about acme/hello in " in resp["message"]
        assert "MOTTE-2026-0007 fixed in" in resp["message"]
        prov = next(a for a in doc["areas"] if a["area"] == "provenance")
        assert (
            prov["status"] == "satisfied"
            and "has signed acme/hello since log entry 0" in (prov["message"])
        )

        r = cli("trust", refs["1.0"][0], "--policy", policy)
        assert r.exit_code == 1
        assert "advisory MOTTE-2026-0007 (medium) affects this version" in r.stdout
        assert "fixed in 1.1, released " in r.stdout

        # Without the log's URL the consumer can neither check for forks nor read history.
        other = tmp_path / "offline-consumer"
        monkeypatch.setenv("MOTTE_HOME", str(other))
        install_root(w.root, now=w.now)
        assert cli("log", "trust", vkey).exit_code == 0
        r = cli("trust", refs["1.1"][0], "--policy", policy, "--json")
        doc = json.loads(r.stdout)
        integ = next(a for a in doc["areas"] if a["area"] == "integrity")
        assert integ["status"] == "not satisfied" and "fork check: cannot check" in integ["message"]
        resp = next(a for a in doc["areas"] if a["area"] == "responsiveness")
        assert resp["status"] == "unknown"
