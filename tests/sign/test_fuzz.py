"""Garbage in raises only the documented error types (h11's fuzzing invariant)."""

import base64
import contextlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from motte.sign import Envelope, EnvelopeFormatError, RootDocument, Statement

json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=5),
    max_leaves=25,
)
b64 = st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode())


def _docs(keys: dict) -> st.SearchStrategy[bytes]:
    return st.fixed_dictionaries({}, optional=keys).map(lambda d: json.dumps(d).encode())


envelopes = _docs(
    {
        "payload": b64 | json_like,
        "payloadType": st.text(max_size=10) | json_like,
        "signatures": st.lists(
            st.fixed_dictionaries({}, optional={"keyid": json_like, "sig": b64 | json_like}),
            max_size=3,
        )
        | json_like,
    }
)
statements = _docs(
    {
        "_type": st.sampled_from(["https://in-toto.io/Statement/v1", "x"]),
        "subject": st.lists(
            st.fixed_dictionaries({}, optional={"name": json_like, "digest": json_like}), max_size=2
        )
        | json_like,
        "predicateType": json_like,
        "predicate": json_like,
    }
)
roots = _docs(
    {
        "signed": st.fixed_dictionaries(
            {},
            optional={
                "_type": st.just("https://motte.dev/trust-root/v1"),
                "version": json_like,
                "expires": st.sampled_from(["2030-01-01T00:00:00Z", "soon"]) | json_like,
                "keys": st.dictionaries(
                    st.text(max_size=8),
                    st.fixed_dictionaries({}, optional={"keytype": json_like, "public": b64}),
                    max_size=2,
                )
                | json_like,
                "root": json_like,
                "namespaces": json_like,
            },
        )
        | json_like,
        "signatures": st.lists(json_like, max_size=2) | json_like,
    }
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=100), envelopes))
def test_envelope_parser(data):
    with contextlib.suppress(EnvelopeFormatError):
        Envelope.from_bytes(data)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=100), statements))
def test_statement_parser(data):
    with contextlib.suppress(EnvelopeFormatError):
        Statement.from_bytes(data)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=100), roots))
def test_root_parser(data):
    from motte.sign import KeyFileError

    with contextlib.suppress(EnvelopeFormatError, KeyFileError):
        RootDocument.from_bytes(data, "root.json")
