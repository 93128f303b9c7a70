"""decide() as a pure function: statements nobody trusted signed never change a decision.

Anyone can attach a statement to a package or append one to a log. Whatever such statements
say (advisories, audits, rebuilds, provenance, garbage), a judgement must come out the same:
the areas' statuses are unchanged and only notes may be added (in-toto's rule that ignoring
an extension never turns a denial into an acceptance, applied to whole statements).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from motte.sign import PUBLICATION, REVIEW, SLSA_PROVENANCE
from motte.trust import ADVISORY, REBUILD, FoundStatement, LogPlace, decide, gather
from tests.trust.test_scenarios import REF, good_release
from tests.trust.world import make_world

TYPES = [PUBLICATION, REVIEW, SLSA_PROVENANCE, ADVISORY, REBUILD, "https://example.org/x"]
HEX = st.text("0123456789abcdef", min_size=64, max_size=64)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    """Evidence for an accepted package, a refused one and one without provenance, gathered
    once for all examples."""
    import os

    home = tmp_path_factory.mktemp("home")
    old = os.environ.get("MOTTE_HOME")
    os.environ["MOTTE_HOME"] = str(home)
    try:
        w = make_world(tmp_path_factory.mktemp("world"))
        good_release(w)
        policy = w.policy()
        now = dt.datetime.now(dt.UTC)
        good = gather(REF, policy, now=now)
        w.release("2.0", b"unaudited")
        bad = gather("acme/hello:2.0", policy, now=now)
        w.release("3.0", b"bare", provenance=False)
        bare = gather("acme/hello:3.0", policy, now=now)
    finally:
        if old is None:
            os.environ.pop("MOTTE_HOME", None)
        else:
            os.environ["MOTTE_HOME"] = old
    return policy, now, good, bad, bare


@st.composite
def untrusted(draw, digest: str):
    subjects = draw(
        st.sets(
            st.sampled_from([digest, "sha256:" + "1" * 64]) | HEX.map("sha256:".__add__), max_size=2
        )
    )
    logged = draw(st.booleans())
    predicate = draw(st.dictionaries(st.text(max_size=10), JSON, max_size=5))
    if draw(st.booleans()):
        predicate = {
            "package": {"namespace": "acme", "name": "hello"},
            "id": "X-1",
            "affected": [{"digest": digest}],
            **predicate,
        }
    return FoundStatement(
        envelope_digest="sha256:" + draw(HEX),
        predicate_type=draw(st.sampled_from(TYPES)),
        predicate=predicate,
        subjects=frozenset(subjects),
        signers=(),
        unknown_keyids=(draw(HEX),),
        log=LogPlace("o", draw(st.integers(0, 10**6)), None) if logged else None,
        log_problem=None if logged else "not in a transparency log (no inclusion proof)",
    )


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_untrusted_statements_never_change_a_decision(judged, data):
    policy, now, good, bad, bare = judged
    for ev in (good, bad, bare):
        junk = data.draw(st.lists(untrusted(ev.digest), max_size=6))
        before = decide(ev, policy, now)
        after = decide(dataclasses.replace(ev, statements=(*ev.statements, *junk)), policy, now)
        assert after.accepted == before.accepted
        assert [a.status for a in after.areas] == [a.status for a in before.areas]
        assert [a.deciding.rule for a in after.areas] == [a.deciding.rule for a in before.areas]
    assert decide(good, policy, now).accepted and not decide(bad, policy, now).accepted


def test_decide_is_pure_and_needs_an_aware_time(judged):
    policy, now, good, *_ = judged
    assert decide(good, policy, now) == decide(good, policy, now)
    with pytest.raises(ValueError):
        decide(good, policy, now.replace(tzinfo=None))
