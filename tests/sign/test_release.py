"""Release freshness: the pure check, the memory, and signing a release."""

from __future__ import annotations

import datetime as dt

import pytest

from motte.sign import (
    EnvelopeFormatError,
    Release,
    ReleaseMemory,
    SignedRelease,
    SigningUsageError,
    check_release,
    load_release_memory,
    remember_release,
)
from motte.sign._release import SeenRelease, next_version

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
LATER = NOW + dt.timedelta(days=30)
A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def rel(tag: str, version: int, expires: dt.datetime = LATER) -> Release:
    return Release("acme", "hello", tag, version, expires)


def signed(*releases: Release, keys: tuple[str, ...] = ("k1",)) -> list[SignedRelease]:
    return [SignedRelease(r, keys) for r in releases]


def mem(**tags: tuple[int, str]) -> ReleaseMemory:
    seen = {
        t: SeenRelease(v, d, "2027-01-01T00:00:00Z", "2026-11-01T00:00:00Z")
        for t, (v, d) in tags.items()
    }
    return ReleaseMemory("acme/hello", max((v for v, _ in tags.values()), default=0), seen)


def check(found, memory=None, *, tag="1.0", digest=A, threshold=1, **kw):
    return check_release(
        "acme/hello", tag, digest, found, memory or mem(), threshold=threshold, now=NOW, **kw
    )


def test_the_current_release_is_fresh():
    c = check(signed(rel("1.0", 3)), mem(**{"1.0": (2, B)}))
    assert c.status == "fresh" and c.release == rel("1.0", 3)
    assert "version 3, current" in c.message and "version 2 seen before" in c.message


def test_no_release_anywhere_is_unbound_not_refused():
    c = check([])
    assert c.status == "unbound" and "motte release" in c.message


@pytest.mark.parametrize(
    ("found", "memory", "why"),
    [
        (signed(rel("1.0", 1)), mem(**{"1.0": (2, B)}), "is older than version 2"),
        (signed(rel("1.0", 2)), mem(**{"1.0": (2, B)}), "two releases with one version"),
        (signed(rel("1.0", 4)), mem(**{"2.0": (4, B)}), "accepted before for :2.0"),
        (signed(rel("1.0", 1, NOW)), mem(), "expired at 2026-12-01T00:00:00Z"),
        ([], mem(**{"1.0": (2, B)}), "names sha256:bbbbbbbbbbbb: the tag was moved"),
        (signed(rel("0.9", 1)), mem(), "released as :0.9 (version 1), not :1.0"),
        ([], mem(**{"2.0": (5, B)}), "which no release binds"),
    ],
)
def test_refusals(found, memory, why):
    c = check(found, memory)
    assert c.refused and why in c.message
    allowed = check(found, memory, allow_rollback=True)
    assert allowed.status == "fresh" and allowed.overridden == c.message
    assert allowed.message.startswith("ALLOWED BY --allow-rollback: ")


def test_a_release_counts_only_at_the_threshold_of_distinct_keys():
    one = signed(rel("1.0", 1), keys=("k1",))
    assert check(one, threshold=2).status == "unbound"
    two = one + signed(rel("1.0", 1), keys=("k2",))
    assert check(two, threshold=2).status == "fresh"


def test_another_packages_release_does_not_count():
    other = [SignedRelease(Release("acme", "other", "1.0", 1, LATER), ("k1",))]
    assert check(other).status == "unbound"


def test_memory_only_goes_up_and_survives(motte_home):
    remember_release(rel("1.0", 2), A, now=NOW)
    remember_release(rel("1.0", 1), B, now=NOW)  # never lowers what is remembered
    m = load_release_memory("acme/hello")
    assert m.highest == 2 and m.tags["1.0"].digest == A
    assert next_version("acme/hello", None) == 3
    with pytest.raises(SigningUsageError, match="not above version 2"):
        next_version("acme/hello", 2)


def test_a_malformed_release_predicate_is_named():
    with pytest.raises(EnvelopeFormatError, match="release version 0 must be an integer >= 1"):
        Release.from_dict(
            {
                "namespace": "acme",
                "name": "hello",
                "tag": "1.0",
                "version": 0,
                "expires": "2027-01-01T00:00:00Z",
            },
            "release",
        )
    with pytest.raises(EnvelopeFormatError, match="RFC 3339"):
        Release.from_dict(
            {"namespace": "acme", "name": "hello", "tag": "1.0", "version": 1, "expires": "soon"},
            "release",
        )
