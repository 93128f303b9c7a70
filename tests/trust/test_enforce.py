"""enforce() (what motte run and a Keep call) and motte run --trust-policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from motte.errors import ExitStatus, VerificationError
from motte.trust import (
    TrustRefusedError,
    TrustUsageError,
    enforce,
)
from tests.keep.conftest import only_the_grant_line
from tests.trust.test_scenarios import REF, good_release


def test_an_accepted_package_returns_its_verdict(world):
    digest = good_release(world)
    v = enforce(REF, world.policy())
    assert v.accepted and v.digest == digest


def test_a_bare_digest_is_named_from_the_local_store(world):
    digest = good_release(world)
    assert enforce(digest, world.policy()).reference == f"acme/hello@{digest}"


def test_a_digest_the_store_does_not_hold_is_a_usage_error(world):
    with pytest.raises(TrustUsageError, match="no package in the local store"):
        enforce("sha256:" + "0" * 64, world.policy())


def test_a_refusal_names_every_failing_area_and_its_rule(world, tmp_path):
    world.release("1.0", b"hello")  # no rebuild, no audit
    path = tmp_path / "prod.toml"
    path.write_text(world.policy_text())
    with pytest.raises(TrustRefusedError) as e:
        enforce(REF, path)
    err = e.value
    assert isinstance(err, VerificationError) and err.exit_status == ExitStatus.FAILURE
    assert err.message.startswith(f"trust: acme/hello:1.0@{err.verdict.digest} refused under")
    assert f"policy {path} (sha256:" in err.message
    assert "build unknown: 0 of the 1 required independent rebuild(s)" in err.message
    assert "expertise unknown: no fresh passing audit(s)" in err.message
    assert "integrity" not in err.message.split("refused under", 1)[1].split("):", 1)[1]
    assert (
        err.hint
        == f"motte trust {err.verdict.reference} --policy {path} shows the evidence for each area"
    )
    assert [a.area for a in err.verdict.failing()] == ["build", "expertise"]


def test_refusals_are_not_remembered_acceptances_are(world):
    from motte.trust._memory import load_memory

    world.release("1.0", b"hello")
    with pytest.raises(TrustRefusedError):
        enforce(REF, world.policy())
    assert load_memory("acme/hello").signers == {}
    enforce(REF, world.policy(require='["integrity"]'))
    assert set(load_memory("acme/hello").signers) == {world.alice.keyid}


# -- motte run enforces it ---------------------------------------------------------------------

#: A WASI command that exits 0, minus the 8-byte header world.release's build prepends.
COMMAND_BODY = __import__("wasmtime").wat2wasm('(module (func (export "_start")))')[8:]


def _policy_file(world, tmp_path) -> Path:
    path = tmp_path / "prod.toml"
    path.write_text(world.policy_text())
    return path


def test_run_refuses_a_package_the_policy_refuses_naming_the_area(world, tmp_path, cli):
    world.release("1.0", COMMAND_BODY)  # signed and logged; no rebuild, no audit
    r = cli("run", REF, "--trust-policy", _policy_file(world, tmp_path))
    assert r.exit_code == ExitStatus.RUN_ERROR
    assert "refused under policy" in r.stderr
    assert "build unknown" in r.stderr and "expertise unknown" in r.stderr


def test_run_runs_a_package_the_policy_accepts(world, tmp_path, cli):
    good_release(world, payload=COMMAND_BODY)
    r = cli("run", REF, "--trust-policy", _policy_file(world, tmp_path))
    assert r.exit_code == 0, r.stderr
    assert only_the_grant_line(r.stderr)


def test_the_hosts_policy_applies_to_every_run(world, tmp_path, cli, motte_home):
    world.release("1.0", COMMAND_BODY)
    assert cli("run", REF).exit_code == 0  # no policy configured: nothing to enforce
    host = motte_home / "trust" / "policy.toml"
    host.parent.mkdir(parents=True, exist_ok=True)
    host.write_text(world.policy_text())
    r = cli("run", REF)
    assert r.exit_code == ExitStatus.RUN_ERROR and "build unknown" in r.stderr


def test_a_local_workload_cannot_run_under_a_trust_policy(world, tmp_path, cli):
    module = tmp_path / "m.wasm"
    module.write_bytes(b"\0asm\x01\0\0\0" + COMMAND_BODY)
    assert cli("run", module).exit_code == 0
    r = cli("run", module, "--trust-policy", _policy_file(world, tmp_path))
    assert r.exit_code == ExitStatus.RUN_ERROR
    assert "a local workload is not a package it can judge" in r.stderr


# -- one verified package: opened once, judged and run without reading it again ---------------


def test_a_package_opened_once_is_judged_as_its_reference_is(world):
    from motte.oci import open_package

    digest = good_release(world)
    package = open_package(REF)
    assert package.digest == digest and package.attachments  # its signed statements
    by_value = enforce(package, world.policy())
    by_reference = enforce(REF, world.policy())
    assert by_value.accepted and by_reference.accepted
    assert [a.status for a in by_value.areas] == [a.status for a in by_reference.areas]
    assert by_value.reference == by_reference.reference


def test_run_reads_and_hashes_each_blob_of_the_package_once(world, tmp_path, cli, monkeypatch):
    """pull, load and trust each read the package before; now one open feeds both the
    judgement and the Keep (the registry pull, which checks bytes as they come, aside)."""
    from collections import Counter

    from motte.oci import LocalStore

    digest = good_release(world, payload=COMMAND_BODY)
    reads: Counter[str] = Counter()
    original, original_iter = LocalStore.read_blob, LocalStore.iter_blob

    def counting(self, desc, what, *, limit=None):
        reads[desc.digest] += 1
        return original(self, desc, what, limit=limit)

    def counting_iter(self, desc, what, **kw):
        reads[desc.digest] += 1
        return original_iter(self, desc, what, **kw)

    monkeypatch.setattr(LocalStore, "read_blob", counting)
    monkeypatch.setattr(LocalStore, "iter_blob", counting_iter)
    # By digest: a tag would be resolved (its manifest read) before attesting, as it must.
    r = cli("run", f"acme/hello@{digest}", "--trust-policy", _policy_file(world, tmp_path))
    assert r.exit_code == 0, r.stderr
    assert only_the_grant_line(r.stderr)
    assert reads[digest] == 1 and max(reads.values()) == 1, reads
