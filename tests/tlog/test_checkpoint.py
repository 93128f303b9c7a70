"""Checkpoint bodies (C2SP tlog-checkpoint) and verification under a trust policy."""

from __future__ import annotations

import base64

import pytest

from motte.tlog import (
    CheckpointBody,
    SignatureError,
    Signer,
    TlogFormatError,
    TlogUsageError,
    TrustedLogs,
    verify_checkpoint,
)
from motte.tlog._note import COSIGNATURE_ED25519, sign_note

ROOT = base64.b64encode(bytes(range(32))).decode()


def body(origin="example.com/log", size=20852163, root=bytes(range(32))):
    return CheckpointBody(origin, size, root).to_text()


def test_body_round_trips_with_extensions():
    b = CheckpointBody("example.com/log", 0, bytes(32), ("ext one",))
    assert (
        b.to_text()
        == f"example.com/log\n0\n{base64.b64encode(bytes(32)).decode()}\next one\n".encode()
    )
    assert CheckpointBody.from_text(b.to_text()) == b


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (f"o\n012\n{ROOT}\n", "leading zeros"),
        (f"o\n-1\n{ROOT}\n", "not a decimal"),
        (f"o\n１\n{ROOT}\n", "not a decimal"),
        ("o\n1\nnot-base64\n", "not base64"),
        (f"o\n1\n{base64.b64encode(b'x' * 31).decode()}\n", "31 bytes"),
        ("o\n1\n", "2 lines"),
        (f"o\n1\n{ROOT}", "does not end with a newline"),
        (f"\n1\n{ROOT}\n", "line 1 is empty"),
        (f"o\n1\n{ROOT}\n\n", "line 4 is empty"),
    ],
)
def test_malformed_bodies_are_rejected(text, error):
    with pytest.raises(TlogFormatError, match=error):
        CheckpointBody.from_text(text.encode())


def test_verify_requires_a_trusted_log_key():
    log = Signer.generate("example.com/log")
    note = sign_note(body(), [log])
    cp = verify_checkpoint(note, [log.verifier.vkey])
    assert (cp.origin, cp.size, cp.log_key) == ("example.com/log", 20852163, log.verifier.vkey)
    with pytest.raises(SignatureError, match=r"no signature by a trusted key"):
        verify_checkpoint(note, [Signer.generate("example.com/log").verifier.vkey])
    with pytest.raises(TlogUsageError, match=r"no trusted log key"):
        verify_checkpoint(note, [])


def test_key_name_need_not_match_origin():
    # Rekor v1 signs origin "rekor.sigstore.dev - <id>" with key name "rekor.sigstore.dev".
    log = Signer.generate("rekor.sigstore.dev")
    note = sign_note(body(origin="rekor.sigstore.dev - 1193050959916656506"), [log])
    assert verify_checkpoint(note, [log.verifier.vkey]).origin.endswith("656506")


def test_changed_checkpoint_is_detected_with_which_key():
    log = Signer.generate("example.com/log")
    note = sign_note(body(size=10), [log])
    with pytest.raises(SignatureError, match=r"signature by example.com/log\+[0-9a-f]{8} does not"):
        verify_checkpoint(note.replace(b"\n10\n", b"\n11\n"), [log.verifier.vkey])


def test_witness_quorum():
    log = Signer.generate("example.com/log")
    w1 = Signer.generate("w1.example", COSIGNATURE_ED25519)
    w2 = Signer.generate("w2.example", COSIGNATURE_ED25519)
    text = body()
    note = sign_note(text, [log]) + w1.signature_line(text, timestamp=1000).encode()
    keys = [log.verifier.vkey, w1.verifier.vkey, w2.verifier.vkey]
    with pytest.raises(
        SignatureError, match=r"cosigned by 1 trusted witnesses \(w1.example\), the"
    ):
        verify_checkpoint(note, keys)  # default quorum: all trusted witnesses
    cp = verify_checkpoint(note, TrustedLogs.from_keys(keys, witness_quorum=1))
    assert [c.timestamp for c in cp.cosignatures] == [1000]
    # a cosignature from the future (beyond the allowed skew) does not count
    with pytest.raises(SignatureError, match=r"cosigned by 0"):
        verify_checkpoint(note, TrustedLogs.from_keys(keys, witness_quorum=1), now=100)
    # cosignatures alone are not a log signature
    only_w = text + b"\n" + w1.signature_line(text, timestamp=5).encode()
    with pytest.raises(SignatureError, match=r"not signed by a trusted log key"):
        verify_checkpoint(only_w, keys)


def test_trust_policy_is_checked():
    log = Signer.generate("l")
    w = Signer.generate("w", COSIGNATURE_ED25519)
    with pytest.raises(TlogUsageError, match=r"cannot be met"):
        TrustedLogs((log.verifier.vkey,), (w.verifier.vkey,), witness_quorum=2)
    with pytest.raises(TlogUsageError, match=r"not a log key"):
        TrustedLogs((w.verifier.vkey,))
    with pytest.raises(TlogUsageError, match=r"not a witness"):
        TrustedLogs((), (log.verifier.vkey,))
