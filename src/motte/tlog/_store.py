"""The log's storage: an append-only SQLite database (WAL, synchronous=FULL).

Tables: ``entries`` (index -> the entry's bytes and the hashes it completed),
``checkpoints`` (size -> signed note) and ``cosignatures``. Entry n completes the perfect
subtrees (level l, index n >> l) for l = 0 .. trailing ones of n, so its row keeps their
hashes, 32 bytes per level: node (l, j) lives in row ((j + 1) << l) - 1 at offset 32·l.
Every node the tree will ever need is stored exactly once, in one row per entry (a single
B-tree insert, always at the end), a proof is one query for O(log n) rows and a level-0 tile
one range scan. Triggers refuse any UPDATE or DELETE on entries, checkpoints and
cosignatures: entries are never rewritten, even by a bug. A batch of entries is one
transaction, committed (fsynced) before anyone is told its index.

Several processes may append to one database (the embedded log used by two ``motte sign``
at once): each batch takes the write lock (``BEGIN IMMEDIATE``) and re-reads the tree size
inside it, so the in-memory right edge is only reused when nobody else appended.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from motte.tlog._errors import LogNotFoundError, TamperError, TlogUsageError
from motte.tlog._merkle import Frontier, Node, leaf_hash
from motte.tlog._tiles import MAX_ENTRY_SIZE, TILE_HEIGHT, TILE_WIDTH, Tile

SCHEMA_VERSION = 1

# STRICT: a value of the wrong type cannot be stored, even by someone going around the log.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS entries (
    idx INTEGER PRIMARY KEY, data BLOB NOT NULL, hashes BLOB NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS checkpoints (size INTEGER PRIMARY KEY, note BLOB NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS cosignatures (
    size INTEGER NOT NULL, witness TEXT NOT NULL, line TEXT NOT NULL,
    PRIMARY KEY (size, witness)) STRICT;
CREATE TABLE IF NOT EXISTS witness_sizes (
    witness TEXT PRIMARY KEY, size INTEGER NOT NULL) STRICT;
CREATE INDEX IF NOT EXISTS entries_by_leaf ON entries (substr(hashes, 1, 32));
"""
_APPEND_ONLY = ("entries", "checkpoints", "cosignatures")


_CACHE_FROM_LEVEL = 4
_NODE_CACHE_MAX = 1 << 17  # about 20 MB of Python objects at most


def node_row(node: Node) -> int:
    """The index of the entry whose row holds node (level, index): the one that completed it."""
    level, index = node
    return ((index + 1) << level) - 1


class LogStore:
    """One log database. Thread-safe: writes are serialised, reads use per-thread connections."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise LogNotFoundError(f"no log database at {self.path}", hint="run `motte log init`")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._frontier = Frontier()
        self._node_cache: dict[Node, bytes] = {}
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)  # each CREATE ... IF NOT EXISTS is atomic on its own
        self._install_triggers(conn)
        self._load_frontier(conn)

    # -- connections ---------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30
            )
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._all_lock:
            for c in self._all:
                c.close()
            self._all.clear()
        self._local = threading.local()

    def _install_triggers(self, conn: sqlite3.Connection) -> None:
        for table in _APPEND_ONLY:
            for op in ("UPDATE", "DELETE"):
                conn.execute(
                    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'the log is append-only: {op} on {table}'); END"
                )

    # -- metadata ------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta_once(self, key: str, value: str) -> str:
        """Record ``value`` under ``key`` unless one is there; return what is stored."""
        conn = self._conn()
        with self._write_lock:
            conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, value))
        stored = self.get_meta(key)
        assert stored is not None
        return stored

    # -- the tree ------------------------------------------------------------------------------

    def _size_in(self, conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT idx FROM entries ORDER BY idx DESC LIMIT 1").fetchone()
        return 0 if row is None else row[0] + 1

    def _load_frontier(self, conn: sqlite3.Connection) -> None:
        size = self._size_in(conn)
        coords = Frontier.nodes_for(size)
        got = self._read(conn, coords)
        missing = [c for c in coords if c not in got]
        if missing:
            raise TamperError(
                f"{self.path}: the tree of size {size} is missing stored node(s) {missing[:3]}",
                hint="the database was damaged; restore it from a backup or a mirror",
            )
        self._frontier = Frontier(size, [got[c] for c in coords])

    def size(self) -> int:
        return self._size_in(self._conn())

    @property
    def known_size(self) -> int:
        """A lower bound of the size, without a query: what this process saw last."""
        return self._frontier.size

    def append(self, entries: Sequence[bytes]) -> tuple[int, list[bytes]]:
        """Append ``entries`` in one durable transaction; return the first index and leaf hashes."""
        for e in entries:
            if len(e) > MAX_ENTRY_SIZE:
                raise TlogUsageError(
                    f"entry of {len(e)} bytes is larger than {MAX_ENTRY_SIZE} (tlog-tiles bound)",
                    hint="log a small canonical record (digests, names, signer) instead",
                )
        conn = self._conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if self._size_in(conn) != self._frontier.size:  # someone else appended
                    self._load_frontier(conn)
                frontier = self._frontier.copy()
                first = frontier.size
                leaves = [leaf_hash(e) for e in entries]
                rows = [
                    (first + i, e, b"".join(h for _, h in frontier.append(leaf)))
                    for i, (e, leaf) in enumerate(zip(entries, leaves, strict=True))
                ]
                conn.executemany("INSERT INTO entries (idx, data, hashes) VALUES (?, ?, ?)", rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            self._frontier = frontier
        return first, leaves

    def find_leaf(self, leaf: bytes) -> int | None:
        """The index of the first entry whose leaf hash is ``leaf`` (content dedup), if any."""
        row = (
            self._conn()
            .execute(
                "SELECT idx FROM entries WHERE substr(hashes, 1, 32) = ? ORDER BY idx LIMIT 1",
                (leaf,),
            )
            .fetchone()
        )
        return None if row is None else row[0]

    def find_leaves(self, leaves: Sequence[bytes]) -> dict[bytes, int]:
        """``find_leaf`` for a batch: leaf hash -> index of its first entry, for those found.

        One query per 500 distinct hashes (over the same index) instead of one per entry: the
        per-entry lookup cost a batch append about 45% of its throughput.
        """
        distinct = list(dict.fromkeys(leaves))
        out: dict[bytes, int] = {}
        conn = self._conn()
        for i in range(0, len(distinct), 500):
            chunk = distinct[i : i + 500]
            marks = ",".join("?" * len(chunk))
            sql = (
                "SELECT substr(hashes, 1, 32), min(idx) FROM entries "
                f"WHERE substr(hashes, 1, 32) IN ({marks}) GROUP BY 1"
            )
            for leaf, idx in conn.execute(sql, chunk):
                out[bytes(leaf)] = idx
        return out

    def root(self, size: int | None = None, *, fresh: bool = False) -> tuple[int, bytes]:
        """The tree size and root: of the whole tree, or of its first ``size`` leaves."""
        from motte.tlog._merkle import EMPTY_ROOT, fold, root_plan

        if size is None:
            size = self.size()
        if size == 0:
            return 0, EMPTY_ROOT
        plan = root_plan(size)
        got = self.read_nodes(plan, fresh=fresh)
        return size, fold([got[c] for c in plan])

    def _read(self, conn: sqlite3.Connection, nodes: Iterable[Node]) -> dict[Node, bytes]:
        by_row: dict[int, list[Node]] = {}
        for n in nodes:
            by_row.setdefault(node_row(n), []).append(n)
        out: dict[Node, bytes] = {}
        keys = list(by_row)
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT idx, hashes FROM entries WHERE idx IN ({marks})"
            for idx, hashes in conn.execute(sql, chunk):
                for n in by_row[idx]:
                    h = hashes[32 * n[0] : 32 * n[0] + 32]
                    if len(h) == 32:
                        out[n] = h
        return out

    def read_nodes(self, nodes: Iterable[Node], *, fresh: bool = False) -> dict[Node, bytes]:
        """The stored hashes of ``nodes``; raises if one is missing (the plan was wrong).

        Nodes of level 4 and up are kept in memory once read: they never change (append-only)
        and every proof shares the upper levels, so a proof at 1M entries reads about 4 rows
        instead of 20. The cache is bounded and simply emptied when full. ``fresh`` reads
        everything from the database (the checks made before signing).
        """
        cache: dict[Node, bytes] = {} if fresh else self._node_cache
        want = set(nodes)
        got = {n: cache[n] for n in want if n in cache}
        if len(got) < len(want):
            read = self._read(self._conn(), [n for n in want if n not in got])
            if len(cache) + len(read) > _NODE_CACHE_MAX:
                cache.clear()
            for n, h in read.items():
                if n[0] >= _CACHE_FROM_LEVEL:
                    cache[n] = h
            got.update(read)
        if len(got) != len(want):
            missing = sorted(want - set(got))
            raise LogNotFoundError(f"{self.path}: no stored hash for node(s) {missing[:3]}")
        return got

    def read_tile(self, tile: Tile) -> bytes | None:
        """The bytes of a hash tile or entry bundle, or None when the tree is not that big."""
        conn = self._conn()
        start = tile.index * TILE_WIDTH
        if tile.level is None:
            rows = conn.execute(
                "SELECT data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx",
                (start, start + tile.width),
            ).fetchall()
            if len(rows) != tile.width:
                return None
            from motte.tlog._tiles import encode_entry_bundle

            return encode_entry_bundle(r[0] for r in rows)
        if tile.level == 0:
            rows = conn.execute(
                "SELECT substr(hashes, 1, 32) FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx",
                (start, start + tile.width),
            ).fetchall()
            if len(rows) != tile.width:
                return None
            return b"".join(r[0] for r in rows)
        level = tile.level * TILE_HEIGHT
        nodes = [(level, start + i) for i in range(tile.width)]
        got = self._read(conn, nodes)
        if len(got) != tile.width:
            return None
        return b"".join(got[n] for n in nodes)

    def read_entries(self, lo: int, hi: int) -> list[bytes]:
        rows = self._conn().execute(
            "SELECT data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx", (lo, hi)
        )
        return [r[0] for r in rows]

    def iter_entries(self, batch: int = 4096) -> Iterable[tuple[int, bytes, bytes]]:
        """Every (index, entry, stored hashes) in order (for audits), read in batches."""
        lo = 0
        while True:
            rows = (
                self._conn()
                .execute(
                    "SELECT idx, data, hashes FROM entries WHERE idx >= ? ORDER BY idx LIMIT ?",
                    (lo, batch),
                )
                .fetchall()
            )
            if not rows:
                return
            yield from rows
            lo = rows[-1][0] + 1

    # -- checkpoints and cosignatures ----------------------------------------------------------

    def write_transaction(self, *, fsync: bool = True) -> _WriteTransaction:
        """A context manager holding the database write lock (BEGIN IMMEDIATE ... COMMIT).

        ``fsync=False`` commits with ``synchronous=NORMAL``: never corrupt, but the commit may
        be lost in a power cut until the next fsynced one. Only for rows that can be made
        again identically (a checkpoint: Ed25519 signatures are deterministic).
        """
        return _WriteTransaction(self, fsync=fsync)

    def latest_checkpoint(self) -> tuple[int, bytes] | None:
        row = (
            self._conn()
            .execute("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")
            .fetchone()
        )
        return (row[0], row[1]) if row else None

    def checkpoints(self) -> list[tuple[int, bytes]]:
        return list(self._conn().execute("SELECT size, note FROM checkpoints ORDER BY size"))

    def checkpoint_covering(self, index: int) -> tuple[int, bytes] | None:
        """The newest checkpoint, if it covers entry ``index``; cosigned ones are preferred."""
        conn = self._conn()
        row = conn.execute(
            "SELECT c.size, c.note FROM checkpoints c JOIN "
            "(SELECT size, count(*) n FROM cosignatures GROUP BY size) s ON s.size = c.size "
            "WHERE c.size > ? ORDER BY s.n DESC, c.size DESC LIMIT 1",
            (index,),
        ).fetchone()
        if row is None:
            row = conn.execute(
                "SELECT size, note FROM checkpoints WHERE size > ? ORDER BY size DESC LIMIT 1",
                (index,),
            ).fetchone()
        return (row[0], row[1]) if row else None

    def add_checkpoint(self, conn: sqlite3.Connection, size: int, note: bytes) -> None:
        conn.execute("INSERT INTO checkpoints (size, note) VALUES (?, ?)", (size, note))

    def cosignature_lines(self, size: int) -> list[str]:
        rows = self._conn().execute(
            "SELECT line FROM cosignatures WHERE size = ? ORDER BY witness", (size,)
        )
        return [r[0] for r in rows]

    def cosigning_witnesses(self, size: int) -> set[str]:
        rows = self._conn().execute("SELECT witness FROM cosignatures WHERE size = ?", (size,))
        return {r[0] for r in rows}

    def add_cosignature(self, size: int, witness: str, line: str) -> None:
        conn = self._conn()
        with self._write_lock:
            conn.execute(
                "INSERT OR IGNORE INTO cosignatures (size, witness, line) VALUES (?, ?, ?)",
                (size, witness, line),
            )

    def witness_size(self, witness: str) -> int:
        row = (
            self._conn()
            .execute("SELECT size FROM witness_sizes WHERE witness = ?", (witness,))
            .fetchone()
        )
        return row[0] if row else 0

    def set_witness_size(self, witness: str, size: int) -> None:
        conn = self._conn()
        with self._write_lock:
            conn.execute(
                "INSERT INTO witness_sizes (witness, size) VALUES (?, ?) "
                "ON CONFLICT (witness) DO UPDATE SET size = excluded.size",
                (witness, size),
            )


class _WriteTransaction:
    def __init__(self, store: LogStore, *, fsync: bool) -> None:
        self.store = store
        self.fsync = fsync

    def __enter__(self) -> sqlite3.Connection:
        self.store._write_lock.acquire()
        conn = self.store._conn()
        try:
            if not self.fsync:
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            conn.execute("PRAGMA synchronous=FULL")
            self.store._write_lock.release()
            raise
        return conn

    def __exit__(self, exc_type, exc, tb) -> None:  # type: ignore[no-untyped-def]
        conn = self.store._conn()
        try:
            conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            if not self.fsync:
                conn.execute("PRAGMA synchronous=FULL")
            self.store._write_lock.release()
