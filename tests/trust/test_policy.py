"""Trust policies: what parses, and errors that name the file, the line and the key."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from motte.errors import ExitStatus
from motte.sign import generate_key
from motte.trust import AREAS, PolicyError, load_policy, parse_policy
from tests.trust.world import pem_body

KEY = generate_key()
OTHER = generate_key(key_type="ecdsa-p256")


def policy(text: str):
    return parse_policy(text, name="p.toml")


def error(text: str) -> str:
    with pytest.raises(PolicyError) as e:
        policy(text)
    assert e.value.exit_status == ExitStatus.USAGE
    return e.value.message


def test_the_default_requires_every_area():
    text = f"""
[[build.builders]]
id = "https://ci.example.org/b"
keys = ["{pem_body(KEY)}"]
[[expertise.auditors]]
name = "a"
keys = ["{pem_body(KEY)}"]
"""
    p = policy(text)
    assert p.require == frozenset(AREAS)
    assert p.refuse_open_advisories is True and p.max_audit_age_days == 365
    assert p.digest == "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_a_hobbyist_policy():
    p = policy('require = ["integrity"]\n')
    assert p.require == {"integrity"} and p.builders == () and p.keys() == []


def test_keys_as_base64_der_or_pem_ed25519_or_p256():
    pem = OTHER.public.to_pem().decode()
    p = policy(
        f'''require = []
[[build.rebuilders]]
name = "r"
keys = ["{pem_body(KEY)}", """{pem}"""]
'''
    )
    assert [k.keyid for k in p.rebuilders[0].keys] == [KEY.keyid, OTHER.keyid]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("requires = []", "p.toml:1: requires: unknown key"),
        ('require = ["bild"]', "p.toml:1: require[0]: 'bild' is not an area"),
        ("require = []\n[build]\nreproducable = true", "p.toml:3: build.reproducable: unknown key"),
        ("require = []\n[build]\nreproducible = 1", "p.toml:3: build.reproducible: expected true"),
        (
            "require = []\n[responsiveness]\nmax_advisory_age_days = -3",
            "p.toml:3: responsiveness.max_advisory_age_days: expected a whole number",
        ),
        (
            'require = []\n\n[[expertise.auditors]]\nname = "a"\nkeys = ["bm90IGEga2V5"]',
            "p.toml:5: expertise.auditors[0].keys[0]: ",
        ),
        (
            'require = []\n[[expertise.auditors]]\nname = "a"\nkeys = ["%%%"]',
            "p.toml:4: expertise.auditors[0].keys[0]: not a public key",
        ),
        (
            'require = []\n[[build.builders]]\nid = "not a uri"\nkeys = []',
            "p.toml:3: build.builders[0].id: builder id 'not a uri' is not a URI",
        ),
        ("require = []\n[[build.builders]]\nkeys = []", "p.toml:2: build.builders[0]: missing"),
        ("require = []\n[integrity]\nx = 1", "p.toml:3: integrity.x: unknown key"),
        ('require = ["build"]', "p.toml:1: require: build is required but no [[build.builders]]"),
        (
            "require = []\n[build]\nreproducible = true",
            "p.toml:3: build.reproducible: needs 1 independent rebuild(s) but the policy names 0",
        ),
        (
            "require = ['expertise']\n[expertise]\nmin_audits = 2",
            "p.toml:2: expertise: expertise is required (2 audit(s)) but the policy names 0",
        ),
        (
            "require = []\n[build]\nfailed_rebuild = 'ignore'",
            "p.toml:3: build.failed_rebuild: expected one of 'refuse', 'unknown', 'note', got",
        ),
        (
            "require = []\n[integrity]\nunchecked_source = true",
            "p.toml:3: integrity.unchecked_source: expected one of 'unknown', 'note', got True",
        ),
        ("require = [\n", "p.toml:1: invalid TOML"),
        ("[provenance]\nsensitive = 'Motte.toml'", "p.toml:2: provenance.sensitive: expected an"),
    ],
)
def test_errors_name_line_and_key(text, message):
    assert error(text).startswith(message)


def test_failures_and_unchecked_sources_are_not_satisfied_or_unknown_by_default():
    p = policy("require = []")
    assert (p.failed_rebuild, p.unchecked_source) == ("refuse", "unknown")
    p = policy(
        "require = []\n[build]\nfailed_rebuild = 'note'\n[integrity]\nunchecked_source = 'note'"
    )
    assert (p.failed_rebuild, p.unchecked_source) == ("note", "note")


def test_unknown_keys_suggest_the_right_one():
    with pytest.raises(PolicyError) as e:
        policy("require = []\n[expertise]\nmax_audit_age = 3")
    assert e.value.hint == "did you mean 'max_audit_age_days'?"


def test_load_policy_reads_a_file(tmp_path):
    path = tmp_path / "prod.toml"
    path.write_text('require = ["integrity"]\n')
    p = load_policy(path)
    assert p.path == path and p.name == str(path)
    assert p.digest == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_load_policy_refuses_what_it_cannot_read(tmp_path):
    with pytest.raises(PolicyError, match="no such trust policy"):
        load_policy(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"require = []\n# \xff\n")
    with pytest.raises(PolicyError, match=r"bad.toml:2: not UTF-8"):
        load_policy(bad)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_parses_or_raises_policy_error(text):
    try:
        policy(text)
    except PolicyError as e:
        assert e.message.startswith("p.toml")


@pytest.mark.parametrize("name", ["production", "hobbyist", "staging"])
def test_the_example_policies_parse(name):
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "trust" / f"{name}.toml"
    p = load_policy(path)
    assert p.require and p.digest.startswith("sha256:")
