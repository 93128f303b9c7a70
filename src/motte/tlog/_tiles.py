"""C2SP tlog-tiles: tile coordinates and paths, entry bundles, and reading nodes from tiles.

A tile at level L, index N holds up to 256 consecutive hashes of tree level 8·L starting at
hash N·256; a full tile is 8192 bytes, a partial one (``.p/W``) holds W < 256 hashes. Entry
bundles hold the entries of a level-0 tile, each prefixed by a big-endian uint16 length, so
an entry is at most 65535 bytes. Pure functions: a log serves tiles, a client reads nodes out
of them to build any proof without trusting the server (the proof is checked against a
signed checkpoint).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from motte.tlog._errors import TlogFormatError, TlogUsageError
from motte.tlog._merkle import HASH_SIZE, Node, node_hash

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_ENTRY_SIZE = 0xFFFF
MAX_TILE_LEVEL = 63

_INDEX_ELEMENT = re.compile(r"x[0-9]{3}")
_LAST_ELEMENT = re.compile(r"[0-9]{3}")


@dataclass(frozen=True, order=True)
class Tile:
    """A tile (``level`` >= 0) or an entry bundle (``level`` is None) of ``width`` items."""

    level: int | None
    index: int
    width: int = TILE_WIDTH

    def __post_init__(self) -> None:
        if self.level is not None and not 0 <= self.level <= MAX_TILE_LEVEL:
            raise TlogFormatError(f"tile level {self.level} is outside 0..{MAX_TILE_LEVEL}")
        if self.index < 0 or not 1 <= self.width <= TILE_WIDTH:
            raise TlogFormatError(f"tile index {self.index} width {self.width} is invalid")

    @property
    def path(self) -> str:
        level = "entries" if self.level is None else str(self.level)
        partial = f".p/{self.width}" if self.width < TILE_WIDTH else ""
        return f"tile/{level}/{encode_index(self.index)}{partial}"

    @property
    def is_entries(self) -> bool:
        return self.level is None


def encode_index(n: int) -> str:
    """1234067 -> ``x001/x234/067``: three-digit groups, all but the last prefixed ``x``."""
    groups = [f"{n % 1000:03d}"]
    n //= 1000
    while n:
        groups.append(f"x{n % 1000:03d}")
        n //= 1000
    return "/".join(reversed(groups))


def parse_tile_path(path: str) -> Tile:
    """Parse ``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]`` strictly."""
    what = f"tile path {path[:80]!r}"
    parts = path.strip("/").split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise TlogFormatError(f"{what}: expected tile/<level>/<index>")
    level_s, rest = parts[1], parts[2:]
    if level_s == "entries":
        level: int | None = None
    elif level_s.isdigit() and level_s.isascii() and str(int(level_s)) == level_s:
        level = int(level_s)
    else:
        raise TlogFormatError(f"{what}: level {level_s!r} is not a decimal or 'entries'")
    width = TILE_WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        w = rest[-1]
        if not (w.isascii() and w.isdigit() and str(int(w)) == w and 1 <= int(w) < TILE_WIDTH):
            raise TlogFormatError(f"{what}: partial width {w!r} is not 1..255")
        width = int(w)
        rest = [*rest[:-2], rest[-2][:-2]]
    if len(rest) > 7:  # the index fits in 21 digits: enough for any 64-bit tree
        raise TlogFormatError(f"{what}: index has too many path elements")
    if not _LAST_ELEMENT.fullmatch(rest[-1]) or not all(
        _INDEX_ELEMENT.fullmatch(e) for e in rest[:-1]
    ):
        raise TlogFormatError(f"{what}: index elements must be xNNN/.../NNN")
    digits = "".join(e.lstrip("x") for e in rest)
    if len(rest) > 1 and rest[0] == "x000":
        raise TlogFormatError(f"{what}: index has a leading zero group")
    return Tile(level, int(digits), width)


def tile_width(level: int, index: int, size: int) -> int:
    """How many hashes tile (level, index) holds in a tree of ``size`` leaves (0: none yet)."""
    count = size >> (TILE_HEIGHT * level)
    return max(0, min(TILE_WIDTH, count - index * TILE_WIDTH))


def tiles_for_size(size: int) -> list[Tile]:
    """Every tile (hash tiles then entry bundles) a log of ``size`` leaves serves."""
    tiles = []
    level = 0
    while size >> (TILE_HEIGHT * level):
        count = size >> (TILE_HEIGHT * level)
        for n in range((count + TILE_WIDTH - 1) // TILE_WIDTH):
            tiles.append(Tile(level, n, tile_width(level, n, size)))
        level += 1
    tiles += [Tile(None, t.index, t.width) for t in tiles if t.level == 0]
    return tiles


def tile_for_node(node: Node, size: int) -> Tile:
    """The tile (with its width at ``size``) from which stored node ``(level, index)`` is read."""
    level, index = node
    tile_level, sub = divmod(level, TILE_HEIGHT)
    first = index << sub
    n = first >> TILE_HEIGHT
    width = tile_width(tile_level, n, size)
    if first + (1 << sub) > (size >> (TILE_HEIGHT * tile_level)):
        raise TlogUsageError(f"node {node} is not complete in a tree of size {size}")
    return Tile(tile_level, n, width)


def node_from_tile(node: Node, tile: Tile, data: bytes) -> bytes:
    """Hash of ``node`` computed from the hashes of ``tile`` (which must contain it)."""
    level, index = node
    sub = level - TILE_HEIGHT * (tile.level or 0)
    first = (index << sub) - tile.index * TILE_WIDTH
    count = 1 << sub
    if len(data) != tile.width * HASH_SIZE:
        raise TlogFormatError(f"{tile.path}: {len(data)} bytes, expected {tile.width * HASH_SIZE}")
    if first < 0 or first + count > tile.width or not 0 <= sub < TILE_HEIGHT:
        raise TlogUsageError(f"node {node} is not in {tile.path}")
    hashes = [data[i * HASH_SIZE : (i + 1) * HASH_SIZE] for i in range(first, first + count)]
    while len(hashes) > 1:
        hashes = [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
    return hashes[0]


def nodes_from_tiles(
    nodes: Iterable[Node], size: int, tiles: Mapping[Tile, bytes]
) -> dict[Node, bytes]:
    """Read each node out of the tiles that hold it (see :func:`tile_for_node`)."""
    return {n: node_from_tile(n, t, tiles[t]) for n in nodes for t in [tile_for_node(n, size)]}


def encode_entry_bundle(entries: Iterable[bytes]) -> bytes:
    out = bytearray()
    for e in entries:
        if len(e) > MAX_ENTRY_SIZE:
            raise TlogUsageError(f"entry of {len(e)} bytes is larger than {MAX_ENTRY_SIZE}")
        out += struct.pack(">H", len(e)) + e
    return bytes(out)


def decode_entry_bundle(data: bytes, *, what: str = "entry bundle") -> list[bytes]:
    entries, pos = [], 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise TlogFormatError(f"{what}: truncated length at byte {pos}")
        (n,) = struct.unpack_from(">H", data, pos)
        if pos + 2 + n > len(data):
            raise TlogFormatError(f"{what}: entry {len(entries)} at byte {pos} is truncated")
        entries.append(data[pos + 2 : pos + 2 + n])
        pos += 2 + n
    return entries
