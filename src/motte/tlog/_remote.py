"""A client for a log served over HTTP (``motte log serve`` or any C2SP tlog-tiles log).

Reads use only the static tlog-tiles paths: the checkpoint, and the tiles from which the
client computes inclusion and consistency proofs itself. Nothing the server says is trusted:
the proofs are checked against a checkpoint verified with keys the caller trusts. Appends
use ``POST /add`` (motte's write endpoint).
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from motte.tlog._bundle import InclusionBundle
from motte.tlog._checkpoint import parse_checkpoint_unverified
from motte.tlog._errors import LogNotFoundError, LogRemoteError, TlogUsageError
from motte.tlog._merkle import (
    Node,
    assemble,
    consistency_plan,
    inclusion_plan,
    leaf_hash,
    plan_nodes,
)
from motte.tlog._tiles import (
    MAX_ENTRY_SIZE,
    TILE_WIDTH,
    Tile,
    decode_entry_bundle,
    nodes_from_tiles,
    tile_for_node,
)

if TYPE_CHECKING:
    import httpx

    from motte.tlog._log import LoggedEntry

TIMEOUT = 30.0
MAX_TILE_BYTES = TILE_WIDTH * 32
#: An entry bundle holds at most 256 entries of at most 65535 bytes, each with a 2-byte length.
MAX_ENTRY_BUNDLE_BYTES = TILE_WIDTH * (MAX_ENTRY_SIZE + 2)


def _client(timeout: float = TIMEOUT) -> httpx.Client:
    import httpx

    from motte import __version__

    return httpx.Client(timeout=timeout, headers={"User-Agent": f"motte/{__version__}"})


def post_witness(url: str, body: bytes) -> tuple[int, str]:
    """POST an add-checkpoint request to a witness; (status, body text)."""
    import httpx

    try:
        with _client(timeout=5.0) as c:
            r = c.post(f"{url}/add-checkpoint", content=body)
    except httpx.HTTPError as e:
        raise LogRemoteError(f"witness {url}: {type(e).__name__}: {e}") from None
    return r.status_code, r.text


class RemoteLog:
    """A log at ``url``: same interface as the embedded log."""

    def __init__(self, url: str, *, client: httpx.Client | None = None) -> None:
        self.url = url.rstrip("/")
        self._http = client or _client()
        self._vkey: str | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, *, max_bytes: int = 1 << 20) -> httpx.Response:
        import httpx

        try:
            r = self._http.get(f"{self.url}/{path}")
        except httpx.HTTPError as e:
            raise LogRemoteError(f"log {self.url}: GET /{path}: {type(e).__name__}: {e}") from None
        if r.status_code == 404:
            raise LogNotFoundError(f"log {self.url}: /{path} not found")
        if r.status_code != 200:
            raise LogRemoteError(f"log {self.url}: GET /{path}: HTTP {r.status_code}")
        if len(r.content) > max_bytes:
            raise LogRemoteError(f"log {self.url}: /{path} is larger than {max_bytes} bytes")
        return r

    # -- identity (claims by the server; verification uses the caller's trusted keys) ----------

    @property
    def verifier_key(self) -> str:
        if self._vkey is None:
            self._vkey = self._get("vkey", max_bytes=4096).text.strip()
        return self._vkey

    @property
    def origin(self) -> str:
        return parse_checkpoint_unverified(self.checkpoint())[0].origin

    # -- log operations ------------------------------------------------------------------------

    def append(self, entry: bytes) -> LoggedEntry:
        import httpx

        from motte.tlog._log import LoggedEntry

        if len(entry) > MAX_ENTRY_SIZE:
            raise TlogUsageError(f"entry of {len(entry)} bytes is larger than {MAX_ENTRY_SIZE}")
        try:
            r = self._http.post(f"{self.url}/add", content=entry)
        except httpx.HTTPError as e:
            raise LogRemoteError(f"log {self.url}: POST /add: {type(e).__name__}: {e}") from None
        if r.status_code != 200:
            raise LogRemoteError(f"log {self.url}: POST /add: HTTP {r.status_code} {r.text[:200]}")
        try:
            data = r.json()
            got = LoggedEntry(int(data["index"]), base64.b64decode(data["leaf_hash"]))
        except (ValueError, KeyError, TypeError):
            raise LogRemoteError(f"log {self.url}: POST /add: malformed response") from None
        if got.leaf_hash != leaf_hash(entry):
            raise LogRemoteError(f"log {self.url}: POST /add returned another entry's leaf hash")
        return got

    def checkpoint(self) -> bytes:
        return self._get("checkpoint").content

    def _nodes(self, nodes: list[Node], size: int) -> dict[Node, bytes]:
        tiles: dict[Tile, bytes] = {}
        for node in nodes:
            t = tile_for_node(node, size)
            if t not in tiles:
                tiles[t] = self.tile(t)
        return nodes_from_tiles(nodes, size, tiles)

    def tile(self, tile: Tile) -> bytes:
        """A hash tile; falls back to the full tile when a partial one was removed."""
        try:
            data = self._get(tile.path, max_bytes=MAX_TILE_BYTES).content
        except LogNotFoundError:
            if tile.width == TILE_WIDTH:
                raise
            full = Tile(tile.level, tile.index)
            data = self._get(full.path, max_bytes=MAX_TILE_BYTES).content[: tile.width * 32]
        if len(data) != tile.width * 32:
            raise LogRemoteError(f"log {self.url}: /{tile.path} has {len(data)} bytes")
        return data

    def read_entries_unverified(self, lo: int, hi: int, size: int) -> list[bytes]:
        """Entries ``lo`` to ``hi - 1`` of the tree of ``size``, from the entry bundles.

        Nothing here is checked: the caller must hash the entries into the root of a
        checkpoint it verified (a server could otherwise hide or invent entries).
        """
        if not 0 <= lo <= hi <= size:
            raise TlogUsageError(f"entries {lo}..{hi} are not inside a tree of size {size}")
        out: list[bytes] = []
        for n in range(lo // TILE_WIDTH, (hi + TILE_WIDTH - 1) // TILE_WIDTH):
            width = min(TILE_WIDTH, size - n * TILE_WIDTH)
            tile = Tile(None, n, width)
            try:
                data = self._get(tile.path, max_bytes=MAX_ENTRY_BUNDLE_BYTES).content
                entries = decode_entry_bundle(data, what=f"log {self.url}: /{tile.path}")
            except LogNotFoundError:
                if width == TILE_WIDTH:
                    raise
                full = Tile(None, n)
                data = self._get(full.path, max_bytes=MAX_ENTRY_BUNDLE_BYTES).content
                entries = decode_entry_bundle(data, what=f"log {self.url}: /{full.path}")[:width]
            if len(entries) != width:
                raise LogRemoteError(
                    f"log {self.url}: /{tile.path} holds {len(entries)} entries, not {width}"
                )
            start = n * TILE_WIDTH
            out.extend(entries[max(lo - start, 0) : hi - start])
        return out

    def inclusion_bundle(self, index: int) -> InclusionBundle:
        note = self.checkpoint()
        size = parse_checkpoint_unverified(note)[0].size
        if not 0 <= index < size:
            raise LogNotFoundError(f"log {self.url}: no entry {index} in its checkpoint ({size})")
        plan = inclusion_plan(index, size)
        proof = assemble(plan, self._nodes(plan_nodes(plan), size))
        return InclusionBundle(index, tuple(proof), note)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        plan = consistency_plan(old_size, new_size)
        return assemble(plan, self._nodes(plan_nodes(plan), new_size))
