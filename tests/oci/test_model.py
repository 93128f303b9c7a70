import json

import pytest

from motte.oci import (
    Descriptor,
    DigestMismatchError,
    Index,
    MalformedArtifactError,
    Manifest,
    TooLargeError,
)
from motte.oci._digest import DigestVerifier, check_digest, sha256_digest

EMPTY = Descriptor.of("application/vnd.oci.empty.v1+json", b"{}")


def test_manifest_round_trips_and_is_deterministic():
    layer = Descriptor.of("application/wasm", b"\0asm", annotations={"k": "v"})
    m = Manifest(
        EMPTY, (layer,), artifact_type="application/x", subject=layer, annotations={"a": "b"}
    )
    data = m.to_bytes()
    assert Manifest.from_bytes(data) == m
    assert Manifest.from_bytes(data).to_bytes() == data
    assert b" " not in data  # canonical: no insignificant whitespace


def test_unknown_fields_are_ignored():
    doc = json.loads(Manifest(EMPTY, ()).to_bytes())
    doc["futureField"] = {"x": 1}
    doc["config"]["urls"] = ["https://example.com"]
    assert Manifest.from_bytes(json.dumps(doc).encode()).config == EMPTY


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d.update(schemaVersion=1), "schemaVersion must be 2"),
        (
            lambda d: d.update(mediaType="application/vnd.docker.distribution.manifest.v2+json"),
            "not an OCI image manifest",
        ),
        (lambda d: d.update(layers="x"), "'layers' must be a list"),
        (lambda d: d["config"].update(digest="sha256:xyz"), "manifest.config.digest"),
        (lambda d: d["config"].update(digest="sha512:" + "a" * 128), "only sha256"),
        (lambda d: d["config"].update(size=-1), "'size' must be a non-negative integer"),
        (lambda d: d["config"].update(size=True), "'size'"),
        (lambda d: d.update(annotations={"a": 1}), "annotations"),
    ],
)
def test_malformed_manifests_name_the_field(mutate, needle):
    doc = json.loads(Manifest(EMPTY, ()).to_bytes())
    mutate(doc)
    with pytest.raises(MalformedArtifactError) as e:
        Manifest.from_bytes(json.dumps(doc).encode())
    assert needle in e.value.message


@pytest.mark.parametrize("data", [b"", b"[]", b"{", "\udc80".encode("utf-8", "surrogatepass")])
def test_garbage_raises_only_malformed(data):
    with pytest.raises(MalformedArtifactError):
        Manifest.from_bytes(data)
    with pytest.raises(MalformedArtifactError):
        Index.from_bytes(data)


def test_index_round_trips():
    idx = Index(
        (
            Descriptor(
                "application/vnd.oci.image.manifest.v1+json", EMPTY.digest, 2, "t", {"x": "y"}
            ),
        )
    )
    assert Index.from_bytes(idx.to_bytes()) == idx


def test_check_digest():
    d = sha256_digest(b"x")
    assert check_digest(d, "here") == d
    with pytest.raises(MalformedArtifactError, match="here"):
        check_digest(d.upper(), "here")


def test_verifier_catches_size_and_content():
    data = b"hello world"
    v = DigestVerifier(sha256_digest(data), len(data), "layer x", limit=1 << 20)
    v.update(data)
    v.finish()

    v = DigestVerifier(sha256_digest(data), len(data), "layer x", limit=1 << 20)
    v.update(b"hello there")
    with pytest.raises(DigestMismatchError) as e:
        v.finish()
    assert e.value.message.startswith("layer x: digest mismatch")

    v = DigestVerifier(sha256_digest(data), len(data), "layer x", limit=1 << 20)
    with pytest.raises(DigestMismatchError, match="more than 11 bytes"):
        v.update(data + b"!")  # cut off on the chunk that overruns, not at the end

    v = DigestVerifier(sha256_digest(data), len(data), "layer x", limit=1 << 20)
    v.update(data[:5])
    with pytest.raises(DigestMismatchError, match="5 bytes"):
        v.finish()

    v = DigestVerifier(sha256_digest(data), None, "layer x", limit=4)
    with pytest.raises(TooLargeError):
        v.update(data)
