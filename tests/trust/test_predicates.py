"""Advisory and rebuild predicates: exact round trips, strict reading, only typed errors."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from motte.sign import EnvelopeFormatError
from motte.trust import Advisory, Rebuild, RebuildFailure, TrustUsageError, Version

D1, D2, D3 = ("sha256:" + c * 64 for c in "123")


def test_an_advisory_round_trips():
    a = Advisory(
        "MOTTE-2026-0001",
        "acme",
        "hello",
        (Version(D1, "1.0"), Version(D2)),
        Version(D3, "1.1"),
        "high",
        "reads any file",
        ("CVE-2026-1",),
    )
    assert Advisory.from_dict(a.to_dict(), "a") == a
    assert a.affects(D1) and not a.affects(D3)
    withdrawn = Advisory("X-1", "acme", "hello", (Version(D1),), withdrawn=True)
    assert Advisory.from_dict(withdrawn.to_dict(), "a") == withdrawn
    assert not withdrawn.affects(D1)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"id": "no spaces allowed"}, "advisory id"),
        ({"affected": ()}, "at least one affected version"),
        ({"severity": "apocalyptic"}, "severity 'apocalyptic'"),
        ({"fixed": Version(D1)}, "cannot be both affected and the fix"),
    ],
)
def test_a_bad_advisory_is_refused_before_signing(kw, message):
    args = {"id": "X-1", "namespace": "acme", "name": "hello", "affected": (Version(D1),), **kw}
    with pytest.raises(TrustUsageError, match=message):
        Advisory(**args)


def test_a_rebuild_result_must_follow_from_its_digests():
    r = Rebuild("file:///src", "a" * 40, "make", D1, D1, D2, D2, D3, "2026-01-01T00:00:00Z")
    assert r.result == "match" and Rebuild.from_dict(r.to_dict(), "r") == r
    lying = {**r.to_dict(), "package": {"expected": D1, "rebuilt": D3}}
    with pytest.raises(EnvelopeFormatError, match="contradicts the digests"):
        Rebuild.from_dict(lying, "r")


def test_a_failed_rebuild_has_a_failure_and_no_rebuilt_digests():
    failure = RebuildFailure("commit", "checkout: git exited with status 128: fatal: bad")
    when = "2026-01-01T00:00:00Z"
    r = Rebuild("file:///src", "a" * 40, "make", D1, None, D2, None, D3, when, failure)
    d = r.to_dict()
    assert d["result"] == "failed" and d["failure"] == failure.to_dict()
    assert d["package"] == {"expected": D1} and d["module"] == {"expected": D2}
    assert Rebuild.from_dict(d, "r") == r
    for lying, message in [
        ({**d, "package": {"expected": D1, "rebuilt": D1}}, "no rebuilt digests"),
        ({**d, "failure": {"stage": "lunch", "reason": "x"}}, "failure stage 'lunch'"),
        ({**d, "failure": {"stage": "build", "reason": "a\nb"}}, "one line"),
        ({**d, "failure": None}, "'failure' must be an object"),
        ({**d, "result": "match"}, "only a failed rebuild has a 'failure'"),
    ]:
        with pytest.raises(EnvelopeFormatError, match=message):
            Rebuild.from_dict(lying, "r")
    with pytest.raises(TrustUsageError):
        Rebuild("file:///src", "a" * 40, "make", D1, D1, D2, D2, D3, "t", failure)
    with pytest.raises(TrustUsageError):
        Rebuild("file:///src", "a" * 40, "make", D1, None, D2, None, D3, "t")


PREDICATE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12) | st.just(D1),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        k: PREDICATE
        for k in (
            "id",
            "package",
            "affected",
            "fixed",
            "severity",
            "aliases",
            "result",
            "source",
            "commit",
            "command",
            "module",
            "provenance",
            "finishedOn",
            "failure",
        )
    },
)


@settings(max_examples=300, deadline=None)
@given(FIELDS)
def test_reading_anything_raises_only_format_errors(obj):
    for parse in (Advisory.from_dict, Rebuild.from_dict):
        with contextlib.suppress(EnvelopeFormatError):
            parse(obj, "x")
