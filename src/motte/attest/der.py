"""The one small, strict DER reader for the ASN.1 motte reads itself.

`cryptography` parses certificates, CRLs and CSRs; what it hands back as raw bytes, and what
the verifiers cut out of a certificate without a second full parse, is read here: AMD's VCEK
extensions, Intel's SGX extension of PCK certificates, the TBS, names and signature of
Intel's certificates and CRLs, the Enarx evidence extension, a PkiPath, the Steward's own
extension values. Only definite lengths, single-byte tags and minimal length encodings are
accepted, and every value must fit inside its container, so a reader can never run past its
input or loop.

Two faces over one TLV scanner:

- functions (:func:`read_tlv`, :func:`children`, :func:`decode_unsigned`, ...) that raise
  :class:`DerError` carrying the offset, for hot paths that name the field themselves;
- :class:`DerReader`, which raises :class:`~motte.attest.errors.EvidenceParseError` naming
  the structure, the field and the offset in the outermost buffer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from motte.attest.errors import EvidenceParseError

BOOLEAN = 0x01
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
OID = 0x06
ENUMERATED = 0x0A
UTF8_STRING = 0x0C
PRINTABLE_STRING = 0x13
IA5_STRING = 0x16
SEQUENCE = 0x30
SET = 0x31


class DerError(ValueError):
    """Malformed DER; ``offset`` is where in the outermost buffer the problem is."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset


class Tlv(NamedTuple):
    """One tag-length-value: ``offset`` of the tag and ``start:end`` of the contents.

    A tuple because thousands are made per verification of an Intel quote.
    """

    tag: int
    offset: int
    start: int
    end: int

    def value(self, buf: bytes) -> bytes:
        return buf[self.start : self.end]

    def encoded(self, buf: bytes) -> bytes:
        """The whole TLV, header included (what a parser of the inner type wants)."""
        return buf[self.offset : self.end]


_new_tlv = tuple.__new__


def read_tlv(buf: bytes, offset: int, end: int) -> Tlv:
    """The TLV starting at ``offset``, which must end at or before ``end``."""
    if offset + 2 > end:
        raise DerError("truncated tag and length", offset)
    tag = buf[offset]
    if tag & 0x1F == 0x1F:
        raise DerError(f"multi-byte tag {tag:#04x} is not supported", offset)
    length = buf[offset + 1]
    pos = offset + 2
    if length >= 0x80:
        n = length & 0x7F
        if n == 0:
            raise DerError("indefinite length is not DER", offset + 1)
        if n > 4:
            raise DerError(f"a {n}-byte length is too long", offset + 1)
        if pos + n > end:
            raise DerError("truncated length", offset + 1)
        length = int.from_bytes(buf[pos : pos + n], "big")
        if length < 0x80 or buf[pos] == 0:
            raise DerError("length is not minimally encoded", offset + 1)
        pos += n
    if pos + length > end:
        raise DerError(f"{length}-byte value runs past its container", offset)
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
    """A non-negative INTEGER or ENUMERATED (SVNs, SPLs, PCESVN, SGX type)."""
    expect(tlv, tag)
    body = buf[tlv.start : tlv.end]
    if not body:
        raise DerError("empty INTEGER", tlv.offset)
    if len(body) > 1 and (
        (body[0] == 0 and body[1] < 0x80) or (body[0] == 0xFF and body[1] >= 0x80)
    ):
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


class DerReader:
    """Reads TLVs out of ``buf``, reporting errors as ``structure``/``field``."""

    def __init__(self, buf: bytes, structure: str) -> None:
        self.buf = buf
        self.structure = structure

    def error(self, field: str, reason: str, offset: int) -> EvidenceParseError:
        return EvidenceParseError(self.structure, field, reason, offset=offset)

    def _named(self, e: DerError, field: str) -> EvidenceParseError:
        return self.error(field, e.reason, e.offset)

    def tlv(self, offset: int, end: int, field: str) -> Tlv:
        try:
            return read_tlv(self.buf, offset, end)
        except DerError as e:
            raise self._named(e, field) from None

    def top(self, field: str, tag: int) -> Tlv:
        """The single TLV that must fill the whole buffer."""
        t = self.expect(self.tlv(0, len(self.buf), field), tag, field)
        if t.end != len(self.buf):
            raise self.error(field, f"{len(self.buf) - t.end} trailing bytes", t.end)
        return t

    def children(self, parent: Tlv, field: str) -> Iterator[Tlv]:
        pos = parent.start
        while pos < parent.end:
            t = self.tlv(pos, parent.end, field)
            yield t
            pos = t.end

    def sequence(self, parent: Tlv, field: str, count: int | None = None) -> list[Tlv]:
        """The children of a constructed value, checking how many there are."""
        items = list(self.children(parent, field))
        if count is not None and len(items) != count:
            raise self.error(field, f"expected {count} elements, found {len(items)}", parent.offset)
        return items

    def expect(self, t: Tlv, tag: int, field: str) -> Tlv:
        try:
            return expect(t, tag)
        except DerError as e:
            raise self._named(e, field) from None

    def integer(self, t: Tlv, field: str) -> int:
        """A non-negative DER INTEGER (AMD's SPLs put 0x00 before values >= 0x80)."""
        try:
            return decode_unsigned(self.buf, t)
        except DerError as e:
            raise self._named(e, field) from None

    def string(self, t: Tlv, field: str, tags: tuple[int, ...]) -> str:
        if t.tag not in tags:
            raise self.error(field, f"expected a string, found tag {t.tag:#04x}", t.offset)
        raw = t.value(self.buf)
        try:
            text = raw.decode("utf-8" if t.tag == UTF8_STRING else "ascii")
        except UnicodeDecodeError as e:
            raise self.error(field, "string is not valid text", t.start + e.start) from None
        return text
