"""C2SP signed notes (signed-note v1.0.0) and Ed25519 cosignatures (tlog-cosignature v1).

Pure functions on bytes: key encoding (vkeys and Go-compatible private keys), parsing a note,
signing a note text, and opening a note against a set of known verifiers. Opening follows the
spec: signatures by unknown keys are ignored (known means *both* name and key ID match), a
known key whose signature fails rejects the whole note, and a note with no verified known
signature is rejected.

Two signature types are offered, and only these: 0x01 (Ed25519, logs) and 0x04 (timestamped
Ed25519 cosignatures, witnesses). Ed25519 comes from ``cryptography`` (OpenSSL).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from motte.tlog._errors import SignatureError, TlogFormatError

ED25519 = 0x01
COSIGNATURE_ED25519 = 0x04
_TYPE_NAMES = {ED25519: "Ed25519", COSIGNATURE_ED25519: "Ed25519 cosignature"}

#: Bounds on untrusted input: the spec asks verifiers to accept at least 16 signatures;
#: Go's reference accepts 100, and so do we. A note is at most 1 MiB.
MAX_SIGNATURES = 100
MAX_NOTE_SIZE = 1 << 20

_SIG_PREFIX = "— "
_COSIG_HEADER = b"cosignature/v1\n"


def is_valid_key_name(name: str) -> bool:
    """Non-empty, no Unicode space, no ``+`` (signed-note §Format)."""
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def key_id(name: str, key_type: int, public_key: bytes) -> int:
    """SHA-256(name || 0x0A || type || public key)[:4] as a big-endian uint32."""
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([key_type]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise TlogFormatError(f"{what}: not standard base64") from None


@dataclass(frozen=True)
class Verifier:
    """A public key that can check note signatures: parsed from a vkey."""

    name: str
    key_type: int
    public_key: bytes

    @property
    def key_id(self) -> int:
        return key_id(self.name, self.key_type, self.public_key)

    @property
    def vkey(self) -> str:
        raw = base64.b64encode(bytes([self.key_type]) + self.public_key).decode()
        return f"{self.name}+{self.key_id:08x}+{raw}"

    @property
    def is_cosigner(self) -> bool:
        return self.key_type == COSIGNATURE_ED25519

    @classmethod
    def from_vkey(cls, vkey: str) -> Verifier:
        """Parse ``name+hexid+base64(type||key)``; the ID must match the key."""
        vkey = vkey.strip()
        parts = vkey.split("+", 2)  # base64 may contain +
        if len(parts) != 3:
            raise TlogFormatError(
                f"verifier key {vkey[:40]!r}: expected name+keyid+base64 (three parts joined by +)"
            )
        name, hexid, b64 = parts
        if not is_valid_key_name(name):
            raise TlogFormatError(f"verifier key {vkey[:40]!r}: invalid key name {name!r}")
        if len(hexid) != 8 or any(c not in "0123456789abcdef" for c in hexid):
            raise TlogFormatError(f"verifier key for {name}: key ID {hexid!r} is not 8 hex digits")
        raw = _b64decode(b64, f"verifier key for {name}")
        if not raw or raw[0] not in _TYPE_NAMES:
            kind = f"0x{raw[0]:02x}" if raw else "missing"
            raise TlogFormatError(
                f"verifier key for {name}: signature type {kind} is not supported",
                hint="motte logs use Ed25519 (0x01) and witnesses Ed25519 cosignatures (0x04)",
            )
        if len(raw) != 33:
            raise TlogFormatError(f"verifier key for {name}: an Ed25519 key is 32 bytes")
        v = cls(name, raw[0], raw[1:])
        if v.key_id != int(hexid, 16):
            raise TlogFormatError(
                f"verifier key for {name}: key ID {hexid} does not match the key "
                f"(expected {v.key_id:08x})"
            )
        return v

    def verify(self, text: bytes, sig: bytes) -> int | None:
        """Check ``sig`` (without the key ID) over the note text; raise on failure.

        Returns the cosignature timestamp for a cosigner key, None for a log key.
        """
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        key = Ed25519PublicKey.from_public_bytes(self.public_key)
        timestamp = None
        if self.is_cosigner:
            if len(sig) != 72:
                raise SignatureError(f"cosignature by {self.name} is {len(sig)} bytes, not 72")
            (timestamp,) = struct.unpack(">Q", sig[:8])
            if timestamp >= 1 << 63:
                raise SignatureError(f"cosignature by {self.name}: timestamp out of range")
            msg, sig = cosignature_message(text, timestamp), sig[8:]
        else:
            msg = text
        try:
            key.verify(sig, msg)
        except InvalidSignature:
            raise SignatureError(
                f"signature by {self.name}+{self.key_id:08x} does not verify: the signed text "
                "or the signature was changed"
            ) from None
        return timestamp


def cosignature_message(text: bytes, timestamp: int) -> bytes:
    """What an Ed25519 witness signs: header, time line, then the checkpoint text."""
    return _COSIG_HEADER + b"time %d\n" % timestamp + text


class Signer:
    """An Ed25519 private key with a key name: signs note texts (or cosigns checkpoints)."""

    def __init__(self, name: str, seed: bytes, key_type: int = ED25519) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        if not is_valid_key_name(name):
            raise TlogFormatError(f"key name {name!r}: must be non-empty, without spaces or +")
        if key_type not in _TYPE_NAMES:
            raise TlogFormatError(f"key type 0x{key_type:02x} is not supported")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.verifier = Verifier(name, key_type, public)

    @property
    def name(self) -> str:
        return self.verifier.name

    @classmethod
    def generate(cls, name: str, key_type: int = ED25519) -> Signer:
        import os

        return cls(name, os.urandom(32), key_type)

    @classmethod
    def from_skey(cls, skey: str) -> Signer:
        """Parse ``PRIVATE+KEY+name+hexid+base64(type||seed)``, Go's note private key format."""
        parts = skey.strip().split("+", 4)
        if len(parts) != 5 or parts[:2] != ["PRIVATE", "KEY"]:
            raise TlogFormatError("private key: expected PRIVATE+KEY+name+keyid+base64")
        name, hexid, b64 = parts[2:]
        raw = _b64decode(b64, f"private key for {name}")
        if len(raw) != 33 or raw[0] not in _TYPE_NAMES:
            raise TlogFormatError(f"private key for {name}: not an Ed25519 key")
        s = cls(name, raw[1:], raw[0])
        if f"{s.verifier.key_id:08x}" != hexid:
            raise TlogFormatError(f"private key for {name}: key ID {hexid} does not match")
        return s

    @property
    def skey(self) -> str:
        from cryptography.hazmat.primitives.serialization import (
            Encoding,
            NoEncryption,
            PrivateFormat,
        )

        seed = self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        raw = base64.b64encode(bytes([self.verifier.key_type]) + seed).decode()
        return f"PRIVATE+KEY+{self.name}+{self.verifier.key_id:08x}+{raw}"

    def signature_line(self, text: bytes, *, timestamp: int | None = None) -> str:
        """The note signature line (``— name base64(id||sig)``) over ``text``."""
        if self.verifier.is_cosigner:
            if timestamp is None:
                raise TlogFormatError("a cosignature needs a timestamp")
            sig = struct.pack(">Q", timestamp) + self._key.sign(
                cosignature_message(text, timestamp)
            )
        else:
            sig = self._key.sign(text)
        blob = struct.pack(">I", self.verifier.key_id) + sig
        return f"{_SIG_PREFIX}{self.name} {base64.b64encode(blob).decode()}\n"


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_id: int
    signature: bytes  # without the 4-byte key ID

    @property
    def line(self) -> str:
        blob = struct.pack(">I", self.key_id) + self.signature
        return f"{_SIG_PREFIX}{self.name} {base64.b64encode(blob).decode()}\n"


@dataclass(frozen=True)
class Note:
    """A parsed, not yet verified, note: text (ending in a newline) and signature lines."""

    text: bytes
    signatures: tuple[NoteSignature, ...]

    def to_bytes(self) -> bytes:
        return self.text + b"\n" + "".join(s.line for s in self.signatures).encode()


@dataclass(frozen=True)
class VerifiedSignature:
    verifier: Verifier
    timestamp: int | None  # cosignatures only


@dataclass(frozen=True)
class OpenedNote:
    """A note whose known signatures all verified; ``verified`` lists them once per key."""

    note: Note
    verified: tuple[VerifiedSignature, ...]

    @property
    def text(self) -> bytes:
        return self.note.text


def parse_note(msg: bytes, *, what: str = "note") -> Note:
    """Split ``msg`` into text and signature lines, checking the format (not the signatures)."""
    if len(msg) > MAX_NOTE_SIZE:
        raise TlogFormatError(f"{what}: {len(msg)} bytes is larger than {MAX_NOTE_SIZE}")
    try:
        decoded = msg.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TlogFormatError(f"{what}: not UTF-8 at byte {e.start}") from None
    for i, c in enumerate(decoded):
        if c < " " and c != "\n":
            raise TlogFormatError(f"{what}: control character {ord(c):#04x} at character {i}")
    split = msg.rfind(b"\n\n")
    if split < 0:
        raise TlogFormatError(f"{what}: no blank line before the signatures")
    text, sigs = msg[: split + 1], msg[split + 2 :]
    if not sigs or not sigs.endswith(b"\n"):
        raise TlogFormatError(f"{what}: no signature lines after the blank line")
    lines = sigs.decode().split("\n")[:-1]
    if len(lines) > MAX_SIGNATURES:
        raise TlogFormatError(f"{what}: {len(lines)} signatures, more than {MAX_SIGNATURES}")
    parsed = []
    first_line = text.count(b"\n") + 2
    for n, line in enumerate(lines, start=first_line):
        if not line.startswith(_SIG_PREFIX):
            raise TlogFormatError(f"{what}: line {n} is not a signature line (— name signature)")
        name, sep, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not sep or not is_valid_key_name(name) or not b64:
            raise TlogFormatError(f"{what}: line {n}: malformed signature line")
        blob = _b64decode(b64, f"{what}: line {n}")
        if len(blob) < 5:
            raise TlogFormatError(f"{what}: line {n}: signature too short")
        parsed.append(NoteSignature(name, int.from_bytes(blob[:4], "big"), blob[4:]))
    return Note(text, tuple(parsed))


def sign_note(text: bytes, signers: Sequence[Signer], *, timestamp: int | None = None) -> bytes:
    """A signed note: ``text`` (which must end in a newline), a blank line, the signatures."""
    if not text.endswith(b"\n"):
        raise TlogFormatError("note text must end with a newline")
    lines = "".join(s.signature_line(text, timestamp=timestamp) for s in signers)
    out = text + b"\n" + lines.encode()
    parse_note(out)  # never emit something we would not accept
    return out


def open_note(
    msg: bytes | Note, verifiers: Iterable[Verifier], *, what: str = "note"
) -> OpenedNote:
    """Verify every signature by a known key; raise unless all of them verify and there is one.

    Unknown keys (name or ID not matching) are ignored, repeated signatures by one key count
    once.
    """
    note = msg if isinstance(msg, Note) else parse_note(msg, what=what)
    known = {(v.name, v.key_id): v for v in verifiers}
    verified: dict[tuple[str, int], VerifiedSignature] = {}
    for sig in note.signatures:
        v = known.get((sig.name, sig.key_id))
        if v is None or (sig.name, sig.key_id) in verified:
            continue
        try:
            ts = v.verify(note.text, sig.signature)
        except SignatureError as e:
            raise SignatureError(f"{what}: {e.message}") from None
        verified[(sig.name, sig.key_id)] = VerifiedSignature(v, ts)
    if not verified:
        signed_by = ", ".join(sorted({f"{s.name}+{s.key_id:08x}" for s in note.signatures}))
        trusted = ", ".join(sorted(f"{v.name}+{v.key_id:08x}" for v in known.values())) or "none"
        raise SignatureError(
            f"{what}: no signature by a trusted key (signed by {signed_by}; trusted: {trusted})",
            hint="trust the log's key with `motte log trust VKEY` or pass --key VKEY",
        )
    return OpenedNote(note, tuple(verified.values()))
