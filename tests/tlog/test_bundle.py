"""Offline inclusion proofs (C2SP tlog-proof@v1): format and verification."""

from __future__ import annotations

import pytest

from motte.tlog import (
    InclusionBundle,
    LocalLog,
    ProofError,
    SignatureError,
    TlogFormatError,
    verify_inclusion_bundle,
)


@pytest.fixture
def log(tmp_path):
    with LocalLog(tmp_path / "log", origin="example.com/bundles") as log:
        log.append_many([b"entry %d" % i for i in range(21)])
        yield log


def test_bundle_text_follows_the_spec(log):
    b = log.inclusion_bundle(17)
    text = b.to_text()
    lines = text.split("\n")
    assert lines[0] == "c2sp.org/tlog-proof@v1"
    assert lines[1] == "index 17"
    assert lines[2 : 2 + len(b.proof)] and lines[2 + len(b.proof)] == ""
    assert text.endswith(log.checkpoint().decode())
    assert InclusionBundle.from_bytes(text) == b
    with_extra = InclusionBundle(b.index, b.proof, b.checkpoint, extra=b"ctx")
    assert with_extra.to_text().split("\n")[1] == "extra Y3R4"
    assert InclusionBundle.from_bytes(with_extra.to_bytes()) == with_extra


def test_verify_returns_the_checkpoint(log):
    cp = verify_inclusion_bundle(b"entry 17", log.inclusion_bundle(17), [log.verifier_key])
    assert (cp.origin, cp.size) == ("example.com/bundles", 21)


def test_changed_entry_is_named(log):
    with pytest.raises(ProofError, match=r"the entry or a proof hash was changed"):
        verify_inclusion_bundle(b"entry 18", log.inclusion_bundle(17), [log.verifier_key])


def test_changed_proof_hash_is_detected(log):
    b = log.inclusion_bundle(3)
    bad = InclusionBundle(b.index, (bytes(32), *b.proof[1:]), b.checkpoint)
    with pytest.raises(ProofError, match=r"inclusion proof for leaf 3"):
        verify_inclusion_bundle(b"entry 3", bad, [log.verifier_key])
    short = InclusionBundle(b.index, b.proof[:-1], b.checkpoint)
    with pytest.raises(ProofError, match=r"too few"):
        verify_inclusion_bundle(b"entry 3", short, [log.verifier_key])


def test_changed_checkpoint_is_detected(log):
    b = log.inclusion_bundle(3)
    forged = b.checkpoint.replace(b"\n21\n", b"\n22\n")
    with pytest.raises(SignatureError, match=r"checkpoint of example.com/bundles.*does not verify"):
        verify_inclusion_bundle(b"entry 3", InclusionBundle(3, b.proof, forged), [log.verifier_key])


def test_index_beyond_the_checkpoint(log):
    b = log.inclusion_bundle(3)
    with pytest.raises(ProofError, match=r"entry index 25 is not in the checkpoint"):
        verify_inclusion_bundle(
            b"x", InclusionBundle(25, b.proof, b.checkpoint), [log.verifier_key]
        )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("c2sp.org/tlog-proof@v2\nindex 1\n\ncp", "line 1"),
        ("c2sp.org/tlog-proof@v1\nindex 01\n\ncp", "not a decimal"),
        ("c2sp.org/tlog-proof@v1\nindex 1\nnot base64!\n\ncp", "line 3: not base64"),
        ("c2sp.org/tlog-proof@v1\nindex 1\nAAAA\n\ncp", "32 bytes"),
        ("c2sp.org/tlog-proof@v1\nextra !!\nindex 1\n\ncp", "extra"),
        ("c2sp.org/tlog-proof@v1\n1\n\ncp", "not 'index N'"),
        ("c2sp.org/tlog-proof@v1\nindex 1\n", "no blank line"),
    ],
)
def test_malformed_bundles(text, error):
    with pytest.raises(TlogFormatError, match=error):
        InclusionBundle.from_bytes(text)
