"""Signed notes (C2SP signed-note) and Ed25519 cosignatures (C2SP tlog-cosignature)."""

from __future__ import annotations

import base64
import struct

import pytest

from motte.tlog import SignatureError, Signer, TlogFormatError, Verifier, open_note, parse_note
from motte.tlog._note import COSIGNATURE_ED25519, ED25519, cosignature_message, sign_note

# Published vectors: the C2SP signed-note example key, and the example note of Go's
# golang.org/x/mod/sumdb/note package documentation (key, note and signature).
C2SP_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    b"If you think cryptography is the answer to your problem,\n"
    b"then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT
    + (
        "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKv"
        "qfqdngotpRZb6KE6RyyBwJnAM=\n"
    ).encode()
)


def test_c2sp_vkey_key_id_recomputes():
    v = Verifier.from_vkey(C2SP_VKEY)
    assert (v.name, v.key_type, f"{v.key_id:08x}") == ("example.com/foo", ED25519, "530d903a")
    assert v.vkey == C2SP_VKEY


def test_go_example_note_opens():
    opened = open_note(GO_NOTE, [Verifier.from_vkey(GO_VKEY)])
    assert opened.text == GO_TEXT
    assert [s.verifier.name for s in opened.verified] == ["PeterNeumann"]


def test_go_private_key_signs_the_same_bytes_as_go():
    signer = Signer.from_skey(GO_SKEY)
    assert signer.verifier.vkey == GO_VKEY
    assert signer.skey == GO_SKEY
    assert sign_note(GO_TEXT, [signer]) == GO_NOTE  # Ed25519 is deterministic


def test_unknown_keys_are_ignored_and_known_ones_must_all_verify():
    a, b = Signer.generate("a.example/log"), Signer.generate("b.example/log")
    note = sign_note(b"hello\n", [a, b])
    assert len(open_note(note, [a.verifier]).verified) == 1
    # a key with the same name but another ID is unknown, not a failure
    other = Signer.generate("a.example/log")
    with pytest.raises(SignatureError, match=r"no signature by a trusted key"):
        open_note(note, [other.verifier])
    # a known key whose signature fails rejects the whole note even if another verifies
    forged = note.replace(b"hello", b"hellO")
    with pytest.raises(SignatureError, match=r"does not verify"):
        open_note(forged, [a.verifier, b.verifier])


def test_signature_line_changed_is_detected():
    s = Signer.generate("a.example/log")
    note = bytearray(sign_note(b"x\n", [s]))
    sig_at = note.rindex(b" ") + 10
    note[sig_at] = ord("A") if note[sig_at] != ord("A") else ord("B")
    with pytest.raises((SignatureError, TlogFormatError)):
        open_note(bytes(note), [s.verifier])


def test_duplicate_signatures_count_once():
    s = Signer.generate("a.example/log")
    note = sign_note(b"x\n", [s])
    line = note[note.index("—".encode()) :]
    assert len(open_note(note + line, [s.verifier]).verified) == 1


@pytest.mark.parametrize(
    ("msg", "error"),
    [
        (b"text\n\xff\n\n\xe2\x80\x94 a AAAAAAA=\n", "not UTF-8"),
        (b"text\x01\n\n\xe2\x80\x94 a AAAAAAA=\n", "control character"),
        (b"text\n\xe2\x80\x94 a AAAAAAA=\n", "no blank line"),
        (b"text\n\n", "no signature lines"),
        (b"text\n\n\xe2\x80\x94 a AAAAAAA=", "no signature lines"),
        (b"text\n\n- a AAAAAAA=\n", "line 3 is not a signature line"),
        (b"text\n\n\xe2\x80\x94 a+b AAAAAAA=\n", "malformed signature line"),
        (b"text\n\n\xe2\x80\x94 a !!!!\n", "not standard base64"),
        (b"text\n\n\xe2\x80\x94 a AAAA\n", "signature too short"),
        (b"text\n\n" + "— a AAAAAAA=\n".encode() * 101, "more than 100"),
    ],
)
def test_malformed_notes_are_rejected_with_a_reason(msg, error):
    with pytest.raises(TlogFormatError, match=error):
        parse_note(msg)


def test_text_may_contain_blank_lines():
    s = Signer.generate("a.example/log")
    note = sign_note(b"para one\n\npara two\n", [s])
    assert open_note(note, [s.verifier]).text == b"para one\n\npara two\n"


@pytest.mark.parametrize(
    ("vkey", "error"),
    [
        ("example.com/foo+530d903a", "three parts"),
        ("example.com/foo+530d903b+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "does not match"),
        ("example.com/foo+530D903A+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "8 hex"),
        ("exa mple+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "invalid key name"),
        ("example.com/foo+530d903a+AkyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k", "base64"),
        ("example.com/foo+530d903a+" + base64.b64encode(b"\2" + bytes(32)).decode(), "0x02 is not"),
        ("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2kAA==", "32 bytes"),
    ],
)
def test_bad_vkeys_are_rejected(vkey, error):
    with pytest.raises(TlogFormatError, match=error):
        Verifier.from_vkey(vkey)


def test_cosignature_signs_header_time_and_text():
    w = Signer.generate("witness.example/w1", COSIGNATURE_ED25519)
    text = b"example.com/log\n5\n" + base64.b64encode(b"\1" * 32) + b"\n"
    line = w.signature_line(text, timestamp=1679315147)
    blob = base64.b64decode(line.split()[-1])
    assert struct.unpack(">I", blob[:4])[0] == w.verifier.key_id
    assert struct.unpack(">Q", blob[4:12])[0] == 1679315147
    w.verifier.verify(text, blob[4:])  # raises if wrong
    assert cosignature_message(text, 7) == b"cosignature/v1\ntime 7\n" + text
    opened = open_note(text + b"\n" + line.encode(), [w.verifier])
    assert opened.verified[0].timestamp == 1679315147
    # the same Ed25519 key as a log key (type 0x01) has another key ID: not confused
    assert w.verifier.key_id != Verifier(w.name, ED25519, w.verifier.public_key).key_id


def test_cosignature_with_changed_timestamp_fails():
    w = Signer.generate("witness.example/w1", COSIGNATURE_ED25519)
    text = b"o\n1\n" + base64.b64encode(b"\1" * 32) + b"\n"
    blob = bytearray(base64.b64decode(w.signature_line(text, timestamp=100).split()[-1]))
    blob[11] ^= 1
    with pytest.raises(SignatureError, match=r"does not verify"):
        w.verifier.verify(text, bytes(blob[4:]))


def test_signer_rejects_invalid_names():
    with pytest.raises(TlogFormatError, match=r"key name"):
        Signer.generate("has space")
    with pytest.raises(TlogFormatError, match=r"key name"):
        Signer.generate("a+b")
