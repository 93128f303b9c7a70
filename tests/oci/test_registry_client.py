"""Pieces of the registry client that need no server (the server tests are integration)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from motte.oci._registry import _next_link, _rechunk, fallback_tag


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.binary(max_size=40), max_size=12), size=st.integers(1, 25))
def test_rechunk_gives_exact_pieces_and_loses_nothing(chunks, size):
    out = list(_rechunk(chunks, size))
    assert b"".join(out) == b"".join(chunks)
    assert all(len(piece) == size for piece in out[:-1])
    assert all(isinstance(piece, bytes) and piece for piece in out)
    if out:
        assert len(out[-1]) <= size


def test_referrers_tag_schema_tag():
    assert fallback_tag("sha256:" + "ab" * 32) == "sha256-" + "ab" * 32


def test_next_link():
    assert _next_link('</v2/a/b/referrers/sha256:x?n=2&last=y>; rel="next"') == (
        "/v2/a/b/referrers/sha256:x?n=2&last=y"
    )
    assert _next_link('<https://r/x>; rel="prev", <https://r/y>; rel="next"') == "https://r/y"
    assert _next_link("") is None
