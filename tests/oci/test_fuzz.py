"""Garbage in raises only the documented error types (h11's fuzzing invariant)."""

import contextlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from motte.oci import Index, MalformedArtifactError, Manifest, ReferenceSyntaxError, parse_reference

json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=5),
    max_leaves=25,
)
manifest_keys = st.fixed_dictionaries(
    {},
    optional={
        "schemaVersion": st.sampled_from([2, 1, "2"]),
        "mediaType": st.sampled_from(["application/vnd.oci.image.manifest.v1+json", "x"]),
        "config": json_like,
        "layers": st.lists(json_like, max_size=3) | json_like,
        "subject": json_like,
        "annotations": json_like,
        "artifactType": json_like,
        "manifests": st.lists(json_like, max_size=3) | json_like,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), manifest_keys.map(lambda d: json.dumps(d).encode())))
def test_manifest_and_index_parsers(data):
    for parse in (Manifest.from_bytes, Index.from_bytes):
        with contextlib.suppress(MalformedArtifactError):
            parse(data)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_reference_parser(text):
    with contextlib.suppress(ReferenceSyntaxError):
        parse_reference(text)
