"""DSSE: PAE exactly per the spec, signing and (t, n) verification."""

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from motte.sign import (
    Envelope,
    EnvelopeFormatError,
    PublicKey,
    SignatureError,
    generate_key,
    pae,
    sign_envelope,
    verify_envelope,
)

# RFC 8032 section 7.1 TEST 1 and TEST 2 keys, as used by DSSE's published test vectors
# (secure-systems-lab/dsse testvectors/vectors.json); Ed25519 is deterministic, so those
# signatures are fixed values another implementation produced.
KEY_A = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
KEY_B = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"
STATEMENT_B64 = "eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjEifQ=="
SIG_A = "2WAfaHm5jluo0w+0rk8uVkluELJYWjSmU9x7EUzx+AyteDGJ4/nqyJXfmAUVFIAoQafWm7AxBZNw5M9ixNHiCA=="
SIG_B = "c1+67/aT0yqEpwx8PsVY3MLHsj9D0CZ014/Fv/QlG59P+9CobUZ7xECJ/V3USG0Ob9CiE5LjReEZUzNF2l7eBw=="
INTOTO = "application/vnd.in-toto+json"
SIG_URLSAFE = (
    "P-_KHICeR7tI6S_YyejJTRtrXhcQyQ2LYPaL8h90KjC9qN8HU_svOQ6TuDOT1HIrsGW886DbWNWcCmX5twLrAw=="
)
SIG_NONASCII = (
    "xmSk/ug66ysT7ayhkCIjhAq42zgZXSsEWuzUaNL7w2eGAdF/NU6/fRXPtmfN+5DNSAs5/i2lUnHjbbjPsu0tAw=="
)
SIG_EMPTY = (
    "gSggCAaTLTYyRH6FIDBem6meyIynsYy8RTHVzwx9tnTb7Bg/1jMWnuVgI/gffqmbsC2VX5/jHfkkDqsj7CDbDg=="
)


def _ed25519(hexkey: str) -> PublicKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(hexkey))
    return PublicKey.from_spki_der(
        key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )


A, B = _ed25519(KEY_A), _ed25519(KEY_B)


def _envelope(payload: str, ptype: str, sigs: list[dict]) -> Envelope:
    return Envelope.from_bytes(
        json.dumps({"payload": payload, "payloadType": ptype, "signatures": sigs}).encode()
    )


def test_pae_vector_from_the_spec():
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_bytes_not_characters_and_handles_empty():
    assert pae("application/vnd.exämple+json", b"").startswith(b"DSSEv1 29 ")
    assert pae(INTOTO, b"") == b"DSSEv1 28 application/vnd.in-toto+json 0 "


@pytest.mark.parametrize(
    ("payload", "ptype", "sigs", "trusted", "threshold", "accept"),
    [
        (STATEMENT_B64, INTOTO, [{"keyid": "A", "sig": SIG_A}], [A], 1, True),
        (
            "-_-_Pj8=",
            INTOTO,
            [
                {
                    "keyid": "A",
                    "sig": SIG_URLSAFE,
                }
            ],
            [A],
            1,
            True,
        ),
        (
            STATEMENT_B64,
            "application/vnd.example.other+json",
            [{"keyid": "A", "sig": SIG_A}],
            [A],
            1,
            False,
        ),
        (
            STATEMENT_B64,
            "application/vnd.exämple+json",
            [
                {
                    "keyid": "A",
                    "sig": SIG_NONASCII,
                }
            ],
            [A],
            1,
            True,
        ),
        (
            "",
            INTOTO,
            [
                {
                    "keyid": "A",
                    "sig": SIG_EMPTY,
                }
            ],
            [A],
            1,
            True,
        ),
        (
            STATEMENT_B64,
            INTOTO,
            [{"keyid": "A", "sig": SIG_A}, {"keyid": "B", "sig": SIG_B}],
            [A, B],
            2,
            True,
        ),
        (
            STATEMENT_B64,
            INTOTO,
            [{"keyid": "A", "sig": SIG_A}, {"keyid": "A", "sig": SIG_A}],
            [A, B],
            2,
            False,
        ),
        (STATEMENT_B64, INTOTO, [{"sig": SIG_A}, {"sig": SIG_B}], [A, B], 2, True),
        (STATEMENT_B64, INTOTO, [{"keyid": "A", "sig": SIG_A}], [B], 1, False),
    ],
)
def test_published_vectors(payload, ptype, sigs, trusted, threshold, accept):
    env = _envelope(payload, ptype, sigs)
    if accept:
        assert len(verify_envelope(env, trusted, threshold=threshold).keys) == threshold
    else:
        with pytest.raises(SignatureError):
            verify_envelope(env, trusted, threshold=threshold)


def test_empty_payload_type_is_refused_at_parse():
    with pytest.raises(EnvelopeFormatError, match="payloadType"):
        _envelope(STATEMENT_B64, "", [{"keyid": "A", "sig": SIG_A}])


@pytest.mark.parametrize("key_type", ["ed25519", "ecdsa-p256"])
def test_sign_and_verify_round_trip(key_type):
    key = generate_key(key_type)
    env = sign_envelope(INTOTO, b'{"x":1}', [key])
    back = Envelope.from_bytes(env.to_bytes())
    assert back == env
    result = verify_envelope(back, [key.public])
    assert result.payload == b'{"x":1}' and result.keys == (key.public,)


def test_changed_payload_or_type_fails():
    key = generate_key()
    env = sign_envelope(INTOTO, b"payload", [key])
    for changed in (
        Envelope(env.payload_type, b"pAyload", env.signatures),
        Envelope("text/plain", env.payload, env.signatures),
    ):
        with pytest.raises(SignatureError):
            verify_envelope(changed, [key.public])


def test_a_bad_signature_named_by_a_trusted_keyid_is_reported():
    good, other = generate_key(), generate_key()
    env = sign_envelope(INTOTO, b"p", [good, other])
    broken = Envelope(
        env.payload_type,
        env.payload,
        (env.signatures[0], type(env.signatures[1])(other.keyid, b"\0" * 64)),
    )
    result = verify_envelope(broken, [good.public, other.public])
    assert result.keys == (good.public,) and result.bad_keyids == (other.keyid,)
    with pytest.raises(
        SignatureError, match=f"signature by key {other.keyid[:16]} does not verify"
    ):
        verify_envelope(broken, [good.public, other.public], threshold=2)


@pytest.mark.parametrize(
    "doc",
    [
        b"not json",
        b"[]",
        b'{"payloadType": "t", "payload": "!!", "signatures": [{"sig": ""}]}',
        b'{"payloadType": "t", "payload": "", "signatures": []}',
        b'{"payloadType": "t", "payload": "", "signatures": [1]}',
        b'{"payloadType": "t", "payload": "", "signatures": [{"keyid": 5, "sig": ""}]}',
    ],
)
def test_malformed_envelopes(doc):
    with pytest.raises(EnvelopeFormatError):
        Envelope.from_bytes(doc)


@settings(max_examples=50, deadline=None)
@given(ptype=st.text(min_size=1, max_size=30), payload=st.binary(max_size=200))
def test_pae_is_parseable_back(ptype, payload):
    """PAE is injective: the lengths let a reader split it back into type and body."""
    data = pae(ptype, payload)
    assert data.startswith(b"DSSEv1 ")
    n, rest = data[7:].split(b" ", 1)
    t, rest = rest[: int(n)], rest[int(n) + 1 :]
    m, body = rest.split(b" ", 1)
    assert t == ptype.encode() and int(m) == len(payload) and body == payload
    assert base64.b64decode(base64.b64encode(payload)) == payload
