"""DSSE v1.0 envelopes (secure-systems-lab/dsse): sign PAE(type, body), never the raw body.

    PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

with LEN the decimal byte length, no leading zeros. The envelope is
``{"payload": b64, "payloadType": ..., "signatures": [{"keyid": ..., "sig": b64}]}``; standard
and URL-safe base64 are both accepted on input. ``keyid`` is an unauthenticated hint: it picks
which trusted key to try first, it never decides that a signature is valid.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from motte.sign._canonical import canonical_json
from motte.sign._errors import EnvelopeFormatError, SignatureError
from motte.sign._keys import PrivateKey, PublicKey

INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
MAX_ENVELOPE_BYTES = 4 << 20
MAX_SIGNATURES = 16


def pae(payload_type: str, payload: bytes) -> bytes:
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def b64decode_any(text: object, where: str) -> bytes:
    """Standard or URL-safe base64, padded or not."""
    if not isinstance(text, str):
        raise EnvelopeFormatError(f"{where}: must be a base64 string")
    padded = text + "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(padded.encode("ascii"))
        return base64.b64decode(padded.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as e:
        raise EnvelopeFormatError(f"{where}: not valid base64: {e}") from None


@dataclass(frozen=True, slots=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True, slots=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "DSSE envelope") -> Envelope:
        if len(data) > MAX_ENVELOPE_BYTES:
            raise EnvelopeFormatError(f"{what}: larger than {MAX_ENVELOPE_BYTES} bytes")
        try:
            obj = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise EnvelopeFormatError(f"{what}: not valid JSON: {e}") from None
        if not isinstance(obj, dict):
            raise EnvelopeFormatError(f"{what}: not a JSON object")
        ptype = obj.get("payloadType")
        if not isinstance(ptype, str) or not ptype:
            raise EnvelopeFormatError(f"{what}: 'payloadType' must be a non-empty string")
        payload = b64decode_any(obj.get("payload"), f"{what}: payload")
        sigs = obj.get("signatures")
        if not isinstance(sigs, list) or not sigs:
            raise EnvelopeFormatError(f"{what}: 'signatures' must be a non-empty list")
        if len(sigs) > MAX_SIGNATURES:
            raise EnvelopeFormatError(f"{what}: more than {MAX_SIGNATURES} signatures")
        out = []
        for i, s in enumerate(sigs):
            if not isinstance(s, dict):
                raise EnvelopeFormatError(f"{what}: signatures[{i}] is not an object")
            keyid = s.get("keyid", "")
            if not isinstance(keyid, str):
                raise EnvelopeFormatError(f"{what}: signatures[{i}].keyid must be a string")
            out.append(
                Signature(keyid, b64decode_any(s.get("sig"), f"{what}: signatures[{i}].sig"))
            )
        return cls(ptype, payload, tuple(out))

    def to_dict(self) -> dict[str, Any]:
        return {
            "payload": base64.b64encode(self.payload).decode(),
            "payloadType": self.payload_type,
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode()} for s in self.signatures
            ],
        }

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_dict())


def sign_envelope(payload_type: str, payload: bytes, keys: Sequence[PrivateKey]) -> Envelope:
    if not keys:
        raise ValueError("sign_envelope needs at least one key")
    message = pae(payload_type, payload)
    return Envelope(payload_type, payload, tuple(Signature(k.keyid, k.sign(message)) for k in keys))


@dataclass(frozen=True, slots=True)
class VerifiedEnvelope:
    payload_type: str
    payload: bytes
    #: The trusted keys whose signatures verified, each once.
    keys: tuple[PublicKey, ...]
    #: Signatures that named a trusted key's keyid but did not verify with it.
    bad_keyids: tuple[str, ...]


def verify_envelope(
    envelope: Envelope, trusted: Iterable[PublicKey], *, threshold: int = 1
) -> VerifiedEnvelope:
    """Count distinct trusted keys with a valid signature; raise below ``threshold``.

    Each signature is tried against the key its keyid names first, then (as DSSE allows
    keyids to be absent or wrong) against the other trusted keys. A key counts once however
    many signatures it made. A signature whose keyid names a trusted key but which fails is
    reported in ``bad_keyids`` (a tampered signature), and never counted.
    """
    if threshold < 1:
        raise ValueError("threshold must be at least 1")
    keys = list(dict.fromkeys(trusted))
    message = pae(envelope.payload_type, envelope.payload)
    valid: dict[str, PublicKey] = {}
    bad: list[str] = []
    for sig in envelope.signatures:
        named = [k for k in keys if k.keyid == sig.keyid]
        ok = None
        for key in named + [k for k in keys if k.keyid != sig.keyid]:
            try:
                key.verify(sig.sig, message)
            except SignatureError:
                continue
            ok = key
            break
        if ok is not None:
            valid.setdefault(ok.keyid, ok)
        elif named:
            bad.append(sig.keyid)
    if len(valid) < threshold:
        detail = f"; signature by key {bad[0][:16]} does not verify" if bad else ""
        raise SignatureError(
            f"DSSE envelope: {len(valid)} of the required {threshold} trusted signatures{detail}"
        )
    return VerifiedEnvelope(
        envelope.payload_type, envelope.payload, tuple(valid.values()), tuple(bad)
    )
