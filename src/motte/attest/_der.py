"""A small, strict DER reader for the few ASN.1 structures motte reads itself.

`cryptography` parses certificates, CRLs and CSRs; what it hands back as raw bytes (AMD's VCEK
extensions, the Enarx evidence extension, a PkiPath) is read here. Only definite lengths,
single-byte tags and minimal length encodings are accepted, and every value must fit inside
its container, so a reader can never run past its input or loop. Failures raise
:class:`~motte.attest.errors.EvidenceParseError` naming the structure, the field and the
offset in the outermost buffer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from motte.attest.errors import EvidenceParseError

BOOLEAN = 0x01
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
OID = 0x06
UTF8_STRING = 0x0C
PRINTABLE_STRING = 0x13
IA5_STRING = 0x16
SEQUENCE = 0x30
SET = 0x31


@dataclass(frozen=True, slots=True)
class Tlv:
    """One tag-length-value: ``offset`` of the tag and ``start:end`` of the contents."""

    tag: int
    offset: int
    start: int
    end: int

    def value(self, buf: bytes) -> bytes:
        return buf[self.start : self.end]

    def encoded(self, buf: bytes) -> bytes:
        """The whole TLV, header included (what a parser of the inner type wants)."""
        return buf[self.offset : self.end]


class DerReader:
    """Reads TLVs out of ``buf``, reporting errors as ``structure``/``field``."""

    def __init__(self, buf: bytes, structure: str) -> None:
        self.buf = buf
        self.structure = structure

    def error(self, field: str, reason: str, offset: int) -> EvidenceParseError:
        return EvidenceParseError(self.structure, field, reason, offset=offset)

    def tlv(self, offset: int, end: int, field: str) -> Tlv:
        buf = self.buf
        if offset + 2 > end:
            raise self.error(field, "truncated tag and length", offset)
        tag = buf[offset]
        if tag & 0x1F == 0x1F:
            raise self.error(field, f"multi-byte tag {tag:#04x} is not supported", offset)
        first = buf[offset + 1]
        pos = offset + 2
        if first < 0x80:
            length = first
        elif first == 0x80:
            raise self.error(field, "indefinite length is not DER", offset + 1)
        else:
            n = first & 0x7F
            if n > 4:
                raise self.error(field, f"a {n}-byte length is too long", offset + 1)
            if pos + n > end:
                raise self.error(field, "truncated length", offset + 1)
            length = int.from_bytes(buf[pos : pos + n], "big")
            if length < 0x80 or buf[pos] == 0:
                raise self.error(field, "length is not minimally encoded", offset + 1)
            pos += n
        if pos + length > end:
            raise self.error(field, f"{length}-byte value runs past its container", offset)
        return Tlv(tag, offset, pos, pos + length)

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
        if t.tag != tag:
            raise self.error(field, f"expected tag {tag:#04x}, found {t.tag:#04x}", t.offset)
        return t

    def integer(self, t: Tlv, field: str) -> int:
        """A non-negative DER INTEGER (AMD's SPLs put 0x00 before values >= 0x80)."""
        self.expect(t, INTEGER, field)
        raw = t.value(self.buf)
        if not raw:
            raise self.error(field, "empty INTEGER", t.offset)
        if len(raw) > 1 and (
            (raw[0] == 0 and raw[1] < 0x80) or (raw[0] == 0xFF and raw[1] >= 0x80)
        ):
            raise self.error(field, "INTEGER is not minimally encoded", t.offset)
        if raw[0] & 0x80:
            raise self.error(field, "negative INTEGER", t.offset)
        return int.from_bytes(raw, "big")

    def string(self, t: Tlv, field: str, tags: tuple[int, ...]) -> str:
        if t.tag not in tags:
            raise self.error(field, f"expected a string, found tag {t.tag:#04x}", t.offset)
        raw = t.value(self.buf)
        try:
            text = raw.decode("utf-8" if t.tag == UTF8_STRING else "ascii")
        except UnicodeDecodeError as e:
            raise self.error(field, "string is not valid text", t.start + e.start) from None
        return text
