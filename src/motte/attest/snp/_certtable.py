"""The SNP certificate table: how a host hands VCEK/VLEK, ASK and ARK to its guests.

SNP_GET_EXT_REPORT and configfs-tsm's ``auxblob`` return it (GHCB specification 56421,
"SNP Extended Guest Request"): 24-byte entries ``{GUID (16 bytes, RFC 4122 byte order),
u32 offset, u32 length}`` terminated by an all-zero entry, then the certificates (DER or PEM)
at the offsets, which count from the start of the table.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from motte.attest.errors import EvidenceParseError

ENTRY_SIZE = 24
#: No host has a reason to send more than a handful; bounds the walk.
MAX_ENTRIES = 64

GUID_VCEK = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
GUID_VLEK = uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1")
GUID_ASK = uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782")
GUID_ARK = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")
GUID_NAMES = {GUID_VCEK: "VCEK", GUID_VLEK: "VLEK", GUID_ASK: "ASK", GUID_ARK: "ARK"}


@dataclass(frozen=True, slots=True)
class CertTableEntry:
    guid: uuid.UUID
    data: bytes

    @property
    def name(self) -> str:
        return GUID_NAMES.get(self.guid, str(self.guid))


def looks_like_cert_table(data: bytes) -> bool:
    """True when ``data`` starts with an entry whose GUID is one of AMD's four."""
    return len(data) >= ENTRY_SIZE and uuid.UUID(bytes=data[:16]) in GUID_NAMES


def parse_cert_table(
    data: bytes, *, structure: str = "SNP certificate table"
) -> list[CertTableEntry]:
    """The entries of a certificate table, in table order."""
    # First the table itself, up to its terminator; then where its entries point.
    raw_entries: list[tuple[int, bytes, int, int]] = []
    pos = 0
    while True:
        if pos + ENTRY_SIZE > len(data):
            raise EvidenceParseError(
                structure, "entry", "table ends without the all-zero terminator", offset=pos
            )
        raw_guid, offset, length = struct.unpack_from("<16sII", data, pos)
        if raw_guid == bytes(16):
            if offset or length:
                raise EvidenceParseError(
                    structure, "terminator", "offset and length must be zero", offset=pos + 16
                )
            break
        if len(raw_entries) == MAX_ENTRIES:
            raise EvidenceParseError(
                structure, "entry", f"more than {MAX_ENTRIES} entries", offset=pos
            )
        raw_entries.append((pos, raw_guid, offset, length))
        pos += ENTRY_SIZE
    table_end = pos + ENTRY_SIZE
    entries: list[CertTableEntry] = []
    for entry_pos, raw_guid, offset, length in raw_entries:
        if offset < table_end or offset + length > len(data):
            raise EvidenceParseError(
                structure,
                "offset",
                f"certificate at {offset:#x}+{length:#x} lies outside the {len(data)}-byte blob",
                offset=entry_pos + 16,
            )
        if length == 0:
            raise EvidenceParseError(
                structure, "length", "zero-length certificate", offset=entry_pos + 20
            )
        entries.append(CertTableEntry(uuid.UUID(bytes=raw_guid), data[offset : offset + length]))
    guids = [e.guid for e in entries]
    if len(set(guids)) != len(guids):
        raise EvidenceParseError(structure, "entry", "a GUID appears twice")
    return entries


def build_cert_table(entries: Iterable[tuple[uuid.UUID, bytes]]) -> bytes:
    """The table for ``(guid, certificate bytes)`` pairs, certificates after the terminator.

    What a host (or a test, or a Keep backend re-packaging evidence) puts in ``auxblob``.
    """
    items = list(entries)
    header = bytearray()
    body = bytearray()
    base = ENTRY_SIZE * (len(items) + 1)
    for guid, blob in items:
        header += struct.pack("<16sII", guid.bytes, base + len(body), len(blob))
        body += blob
    header += bytes(ENTRY_SIZE)
    return bytes(header + body)
