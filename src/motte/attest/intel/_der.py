"""A minimal, strict DER reader for the Intel SGX extension of PCK certificates.

`cryptography` parses the certificate but hands unknown extensions back as raw bytes; the
SGX extension (OID 1.2.840.113741.1.13.1) is a small tree of SEQUENCE/OID/INTEGER/OCTET
STRING/ENUMERATED/BOOLEAN values. Reading it needs only definite-length TLVs, so this is a
reader of those and nothing more: no indefinite lengths, no long-form tags, lengths bounded
by the enclosing value. Every failure is a :class:`DerError` carrying the offset; the caller
turns it into an EvidenceParseError naming the field.
"""

from __future__ import annotations

from typing import NamedTuple

SEQUENCE = 0x30
INTEGER = 0x02
OCTET_STRING = 0x04
OID = 0x06
ENUMERATED = 0x0A
BOOLEAN = 0x01


class DerError(ValueError):
    """Malformed DER; ``offset`` is where in the outermost buffer the problem is."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset


class Tlv(NamedTuple):
    """A tag-length-value; a tuple because thousands are made per verification."""

    tag: int
    #: Offset of the tag byte, and the bounds of the contents, in the outermost buffer.
    offset: int
    start: int
    end: int


_new_tlv = tuple.__new__


def read_tlv(buf: bytes, offset: int, end: int) -> Tlv:
    """The TLV starting at ``offset``, which must end at or before ``end``."""
    if offset + 2 > end:
        raise DerError("truncated tag and length", offset)
    tag = buf[offset]
    length = buf[offset + 1]
    pos = offset + 2
    if length >= 0x80:
        n = length & 0x7F
        if n == 0:
            raise DerError("indefinite length is not DER", offset + 1)
        if n > 4 or pos + n > end:
            raise DerError(f"length of {n} bytes is not supported or truncated", offset + 1)
        length = int.from_bytes(buf[pos : pos + n], "big")
        if length < 0x80 or buf[pos] == 0:
            raise DerError("length is not minimally encoded", offset + 1)
        pos += n
    if pos + length > end:
        raise DerError(f"value of {length} bytes runs past its container", offset)
    if tag & 0x1F == 0x1F:
        raise DerError(f"multi-byte tag {tag:#04x} is not used here", offset)
    return _new_tlv(Tlv, (tag, offset, pos, pos + length))  # type: ignore[arg-type]


def children(buf: bytes, parent: Tlv) -> list[Tlv]:
    """The TLVs inside a constructed value, in order, which must fill it exactly."""
    out = []
    pos = parent.start
    end = parent.end
    while pos < end:
        tlv = read_tlv(buf, pos, end)
        out.append(tlv)
        pos = tlv[3]
    return out


def expect(tlv: Tlv, tag: int) -> Tlv:
    if tlv.tag != tag:
        raise DerError(f"expected tag {tag:#04x}, found {tlv.tag:#04x}", tlv.offset)
    return tlv


def decode_oid(buf: bytes, tlv: Tlv) -> str:
    expect(tlv, OID)
    body = buf[tlv.start : tlv.end]
    if not body or body[-1] & 0x80:
        raise DerError("truncated OBJECT IDENTIFIER", tlv.offset)
    arcs: list[int] = []
    value = 0
    for i, b in enumerate(body):
        if value == 0 and b == 0x80:
            raise DerError("OBJECT IDENTIFIER arc is not minimally encoded", tlv.start + i)
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


def encode_oid_body(dotted: str) -> bytes:
    """The contents octets of an OBJECT IDENTIFIER (to compare OIDs without decoding them)."""
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


def decode_unsigned(buf: bytes, tlv: Tlv, tag: int = INTEGER) -> int:
    """A non-negative INTEGER or ENUMERATED (SVNs, PCESVN, SGX type)."""
    expect(tlv, tag)
    body = buf[tlv.start : tlv.end]
    if not body:
        raise DerError("empty INTEGER", tlv.offset)
    if len(body) > 1 and body[0] == 0 and not body[1] & 0x80:
        raise DerError("INTEGER is not minimally encoded", tlv.start)
    if body[0] & 0x80:
        raise DerError("negative INTEGER where an unsigned value is expected", tlv.start)
    return int.from_bytes(body, "big")


def decode_octets(buf: bytes, tlv: Tlv, size: int | None = None) -> bytes:
    expect(tlv, OCTET_STRING)
    body = buf[tlv.start : tlv.end]
    if size is not None and len(body) != size:
        raise DerError(f"OCTET STRING of {len(body)} bytes, expected {size}", tlv.offset)
    return body


def decode_boolean(buf: bytes, tlv: Tlv) -> bool:
    expect(tlv, BOOLEAN)
    body = buf[tlv.start : tlv.end]
    if body not in (b"\x00", b"\xff"):
        raise DerError("BOOLEAN is not 0x00 or 0xff", tlv.start)
    return body == b"\xff"
