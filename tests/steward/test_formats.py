"""The DER values under motte's arc, the config file and the SAN patterns."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from motte.attest.errors import EvidenceParseError
from motte.steward import MOTTE_ARC, KeepEvidence, SanPattern, VerdictSummary
from motte.steward._config import parse_config
from motte.steward._csr import parse_csr_request
from motte.steward.errors import StewardConfigError

DIGEST = "sha256:" + "0f" * 32


def test_the_arc_is_the_uuid_one():
    import uuid

    assert f"2.25.{uuid.UUID('cca1ab20-4ddf-44dc-a6ae-a34f15e7f8e7').int}" == MOTTE_ARC


@pytest.mark.parametrize("certs", [None, b"", b"\x01" * 300])
def test_keep_evidence_round_trips(certs):
    value = KeepEvidence("snp", b"\x02" * 1184, DIGEST, b"n" * 32, certs)
    assert KeepEvidence.from_der(value.to_der()) == value


def test_keep_evidence_is_strict():
    good = KeepEvidence("sim", b"e", DIGEST, b"n" * 16).to_der()
    with pytest.raises(EvidenceParseError, match="trailing"):
        KeepEvidence.from_der(good + b"\x00")
    bad_kind = good.replace(b"sim", b"kvm")
    with pytest.raises(EvidenceParseError, match="'kvm' is not one of"):
        KeepEvidence.from_der(bad_kind)
    short = KeepEvidence("sim", b"e", DIGEST, b"n" * 16).to_der().replace(b"n" * 16, b"n" * 15)
    with pytest.raises(EvidenceParseError):
        KeepEvidence.from_der(short)
    with pytest.raises(ValueError, match="nonce"):
        KeepEvidence("sim", b"e", DIGEST, b"n" * 8)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_garbage_raises_only_parse_errors(data):
    for parse in (KeepEvidence.from_der, VerdictSummary.from_der, parse_csr_request):
        with contextlib.suppress(EvidenceParseError):
            parse(data)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 200), st.integers(0, 255))
def test_a_flipped_byte_of_a_valid_value_raises_only_parse_errors(pos, value):
    der = KeepEvidence("tdx", b"q" * 100, DIGEST, b"n" * 32, b"c" * 20).to_der()
    mutated = bytearray(der)
    mutated[pos % len(der)] = value
    with contextlib.suppress(EvidenceParseError):
        KeepEvidence.from_der(bytes(mutated))


def test_verdict_summary_round_trips():
    when = datetime(2025, 6, 1, 12, 0, 5, tzinfo=UTC)
    v = VerdictSummary("prod", b"\x01" * 32, when, b"\x02" * 32)
    assert VerdictSummary.from_der(v.to_der()) == v


# -- SAN patterns ------------------------------------------------------------------------------

MATCHES = [
    ("localhost", "dns", "localhost", True),
    ("keep.example.com", "dns", "keep.example.com", True),
    ("keep.example.com", "dns", "other.example.com", False),
    ("*.keeps.example.com", "dns", "a.keeps.example.com", True),
    ("*.keeps.example.com", "dns", "keeps.example.com", False),
    ("*.keeps.example.com", "dns", "a.b.keeps.example.com", False),
    ("127.0.0.1", "ip", "127.0.0.1", True),
    ("127.0.0.1", "dns", "127.0.0.1", False),
    ("::1", "ip", "::1", True),
    ("localhost", "ip", "127.0.0.1", False),
]


@pytest.mark.parametrize(("pattern", "kind", "value", "ok"), MATCHES)
def test_san_patterns_match_exactly_what_they_say(pattern, kind, value, ok):
    assert SanPattern.parse(pattern).matches(kind, value) is ok


@pytest.mark.parametrize("bad", ["", "*", "*.com", "a.*.com", "foo_bar.com", "x" * 300, "-a.com"])
def test_malformed_san_patterns(bad):
    with pytest.raises(ValueError):
        SanPattern.parse(bad)


# -- config.toml -------------------------------------------------------------------------------


def test_config_defaults_and_round_trip():
    from motte.steward import StewardConfig

    config = StewardConfig()
    assert parse_config(config.to_toml(), source="c") == config
    assert config.certificate_lifetime == 86400 and config.nonce_lifetime == 60
    assert not config.unsafe_allow_unbound_enarx_csrs and not config.online_collateral


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nonce_lifetim = 5\n", r"c:1: nonce_lifetim: unknown key"),
        ("\nnonce_lifetime = 0\n", r"c:2: nonce_lifetime: must be a whole number of seconds"),
        ("certificate_lifetime = 10\n", "from 60 to 604800"),
        ("certificate_lifetime = true\n", "not True"),
        ('san_allow = ["*.com"]\n', "a wildcard is"),
        ("san_allow = []\n", "non-empty list"),
        ('online_collateral = "yes"\n', "true or false"),
        ("= broken", ":1: invalid TOML"),
    ],
)
def test_config_errors_name_the_key_and_line(text, message):
    with pytest.raises(StewardConfigError, match=message):
        parse_config(text, source="c")
