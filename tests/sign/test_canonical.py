import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from motte.sign import EnvelopeFormatError, canonical_json


def test_rfc8785_shapes():
    assert canonical_json({"b": [1, True, None], "a": "x"}) == b'{"a":"x","b":[1,true,null]}'
    assert canonical_json('é\n\x01"\\') == '"é\\n\\u0001\\"\\\\"'.encode()


def test_keys_sort_by_utf16_code_units():
    # U+1F600 is the surrogate pair D83D DE00, which sorts before U+FB01 in UTF-16 (RFC 8785
    # section 3.2.3) although its code point is larger.
    out = canonical_json({"\ufb01": 1, "\U0001f600": 2})
    assert out == '{"\U0001f600":2,"\ufb01":1}'.encode()


@pytest.mark.parametrize("value", [1.5, {"a": 0.0}, 2**53, {1: "x"}, object(), "\ud800"])
def test_refuses_what_it_cannot_canonicalise(value):
    with pytest.raises(EnvelopeFormatError):
        canonical_json(value)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_canonical_is_a_fixed_point_and_parses_back(value):
    out = canonical_json(value)
    assert json.loads(out) == value
    assert canonical_json(json.loads(out)) == out
