import json

import pytest

from motte.sign import (
    EnvelopeFormatError,
    Provenance,
    Publication,
    Review,
    SigningUsageError,
    Statement,
    Subject,
)
from motte.sign._predicates import describe

DIGEST = "sha256:" + "ab" * 32


def test_statement_round_trip_and_subject_matching():
    s = Statement((Subject.for_digest("acme/hello", DIGEST),), "https://example/p", {"k": "v"})
    doc = json.loads(s.to_bytes())
    assert doc["_type"] == "https://in-toto.io/Statement/v1"
    assert doc["subject"] == [{"name": "acme/hello", "digest": {"sha256": "ab" * 32}}]
    back = Statement.from_bytes(s.to_bytes())
    assert back == s
    assert back.about(DIGEST) and not back.about("sha256:" + "cd" * 32)


def test_unknown_fields_are_ignored_and_matching_is_by_digest_only():
    doc = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "some/other-name", "digest": {"sha256": "ab" * 32}, "uri": "x"}],
        "predicateType": "https://example/p",
        "extra": True,
    }
    assert Statement.from_bytes(json.dumps(doc).encode()).about(DIGEST)


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"_type": "https://in-toto.io/Statement/v0.1"}, "not an in-toto Statement v1"),
        ({"subject": []}, "non-empty list"),
        ({"subject": [{"digest": {}}]}, "non-empty object"),
        ({"subject": [{"digest": {"sha256": "AB"}}]}, "lowercase hex"),
        ({"predicateType": ""}, "predicateType"),
        ({"predicate": []}, "'predicate' must be an object"),
    ],
)
def test_malformed_statements(doc, needle):
    base = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"digest": {"sha256": "ab" * 32}}],
        "predicateType": "https://example/p",
    }
    base.update(doc)
    with pytest.raises(EnvelopeFormatError, match=needle):
        Statement.from_bytes(json.dumps(base).encode())


def test_provenance_is_slsa_v1_shaped():
    p = Provenance("https://git.example/acme/hello", "a" * 40, "make", "https://builder.example/v1")
    d = p.to_dict()
    assert d["buildDefinition"]["buildType"] == "https://motte.dev/build/command/v1"
    assert d["buildDefinition"]["externalParameters"] == {
        "source": "https://git.example/acme/hello",
        "commit": "a" * 40,
        "command": "make",
    }
    assert d["buildDefinition"]["resolvedDependencies"][0]["digest"] == {"gitCommit": "a" * 40}
    assert d["runDetails"]["builder"] == {"id": "https://builder.example/v1"}
    assert Provenance.from_dict(d, "p") == p


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"source": "not a uri"}, "not a URI"),
        ({"commit": "abc123"}, "full git commit"),
        ({"builder": "local"}, "builder"),
    ],
)
def test_provenance_inputs_are_checked(kwargs, needle):
    args = {"source": "https://g/x", "commit": "b" * 40, "command": None, "builder": "https://b/1"}
    args.update(kwargs)
    with pytest.raises(SigningUsageError, match=needle):
        Provenance(**args)


def test_provenance_with_unknown_external_parameters_is_refused():
    d = Provenance("https://g/x", "b" * 40, None, "https://b/1").to_dict()
    d["buildDefinition"]["externalParameters"]["env"] = {"X": "1"}
    with pytest.raises(EnvelopeFormatError, match="unknown external parameter 'env'"):
        Provenance.from_dict(d, "p")


def test_review_predicate():
    r = Review(
        "mailto:bob@example.org", "full", "pass", "2026-01-01T00:00:00Z", "audit", "https://r/1"
    )
    assert Review.from_dict(r.to_dict(), "r") == r
    assert describe("https://motte.dev/attestation/review/v1", r.to_dict())["result"] == "pass"
    with pytest.raises(SigningUsageError, match="result"):
        Review("bob", "full", "maybe", "2026-01-01T00:00:00Z")
    with pytest.raises(SigningUsageError, match="kind"):
        Review("bob", "full", "pass", "2026-01-01T00:00:00Z", kind="vibe")


def test_publication_and_unknown_predicates():
    assert Publication.from_dict({"namespace": "acme", "name": "x"}, "p") == Publication(
        "acme", "x"
    )
    with pytest.raises(EnvelopeFormatError):
        Publication.from_dict({"namespace": "acme"}, "p")
    assert describe("https://example/unknown", {"anything": 1}) == {}
