"""enforce() (what motte run and a Keep call), the policy a run applies, [trust] in Motte.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from motte.errors import ExitStatus, VerificationError
from motte.trust import (
    TrustRefusedError,
    TrustUsageError,
    enforce,
    host_policy_path,
    policy_for_run,
    trust_from_manifest,
)
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


def test_which_policy_applies_to_a_run(tmp_path, world):
    flag, manifest = tmp_path / "flag.toml", tmp_path / "manifest.toml"
    flag.write_text('require = ["integrity"]\n')
    manifest.write_text('require = ["provenance"]\n')
    assert policy_for_run(None, None) is None
    host = host_policy_path()
    host.parent.mkdir(parents=True, exist_ok=True)
    host.write_text('require = ["responsiveness"]\n')
    assert policy_for_run(None, None).require == {"responsiveness"}
    assert policy_for_run(None, manifest).require == {"provenance"}
    assert policy_for_run(flag, manifest).require == {"integrity"}


# -- [trust] in Motte.toml -------------------------------------------------------------------


def _validate(text: str, base: Path):
    import tomllib

    from motte.manifest._locate import key_lines
    from motte.manifest._schema import _Context

    ctx = _Context(base, "Motte.toml", key_lines(text))
    return trust_from_manifest(tomllib.loads(text)["trust"], ("trust",), ctx)


def test_the_manifest_names_a_policy_relative_to_itself(tmp_path):
    t = _validate('workload = "x.wasm"\n[trust]\npolicy = "p/prod.toml"\n', tmp_path)
    assert t.policy == tmp_path / "p" / "prod.toml" and t.where == "Motte.toml:3"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[trust]\npolicy = 3\n", "expected a path to a trust policy file, got an integer"),
        ("[trust]\npolcy = 'x'\n", "unknown key"),
        ("[trust]\n", "missing required key 'policy'"),
        ("[trust]\npolicy = ' '\n", "is empty"),
        ("trust = 'x.toml'\n", "expected a table"),
    ],
)
def test_a_bad_trust_table_is_refused_with_its_key(tmp_path, text, reason):
    from motte.manifest._schema import Invalid

    with pytest.raises(Invalid) as e:
        _validate(text, tmp_path)
    assert e.value.path[0] == "trust" and reason in e.value.reason
