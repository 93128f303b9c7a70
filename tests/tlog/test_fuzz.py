"""Garbage in, a TlogError out: no parser lets any other exception escape."""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from motte.tlog import (
    CheckpointBody,
    InclusionBundle,
    Signer,
    TlogError,
    Verifier,
    open_note,
    parse_note,
    parse_tile_path,
    verify_inclusion_bundle,
)
from motte.tlog._tiles import decode_entry_bundle
from motte.tlog._witness import parse_add_checkpoint

KEY = Signer.generate("fuzz.example/log")
# Inputs that look almost right reach deeper than random bytes.
PIECES = st.sampled_from(
    [b"\n", b"\n\n", "— ".encode(), b"fuzz.example/log ", b"c2sp.org/tlog-proof@v1\n",
     b"index 3\n", b"old 2\n", b"AAAA", b"=", b"+", b"0", b"12", b"x001/", b".p/", b"\xff"]
)  # fmt: skip
FUZZ = st.one_of(st.binary(max_size=300), st.lists(PIECES, max_size=30).map(b"".join))


def only_tlog_errors(f, *args):
    with contextlib.suppress(TlogError):
        f(*args)


@settings(max_examples=300, deadline=None)
@given(FUZZ)
def test_parsers_raise_only_tlog_errors(data):
    only_tlog_errors(parse_note, data)
    only_tlog_errors(open_note, data, [KEY.verifier])
    only_tlog_errors(CheckpointBody.from_text, data)
    only_tlog_errors(InclusionBundle.from_bytes, data)
    only_tlog_errors(parse_add_checkpoint, data)
    only_tlog_errors(decode_entry_bundle, data)
    only_tlog_errors(verify_inclusion_bundle, b"entry", data, [KEY.verifier.vkey])
    text = data.decode("utf-8", "replace")
    only_tlog_errors(parse_tile_path, text)
    only_tlog_errors(Verifier.from_vkey, text)
    only_tlog_errors(Signer.from_skey, text)
