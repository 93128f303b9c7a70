"""The log's storage: append-only tables in SQLite (the embedded default) or PostgreSQL.

Tables: ``entries`` (index -> the entry's bytes and the hashes it completed),
``checkpoints`` (size -> signed note) and ``cosignatures``. Entry n completes the perfect
subtrees (level l, index n >> l) for l = 0 .. trailing ones of n, so its row keeps their
hashes, 32 bytes per level: node (l, j) lives in row ((j + 1) << l) - 1 at offset 32·l.
Every node the tree will ever need is stored exactly once, in one row per entry (a single
B-tree insert, always at the end), a proof is one query for O(log n) rows and a level-0 tile
one range scan. Triggers refuse any UPDATE or DELETE (and on PostgreSQL TRUNCATE) on
entries, checkpoints and cosignatures: entries are never rewritten, even by a bug. A batch of
entries is one transaction, committed (fsynced) before anyone is told its index.

On SQLite several processes may append to one database (the embedded log used by two
``motte sign`` at once): each batch takes the write lock (``BEGIN IMMEDIATE``) and re-reads
the tree size inside it, so the in-memory right edge is only reused when nobody else
appended. On PostgreSQL the log has ONE sequencer at a time: the process holding the
``sequencer`` lease (an advisory lock on a connection of its own) writes through that
connection, so if it dies or loses the database its lock goes with it and it cannot write
on; a hot standby (``motte log serve`` on the same database) takes the lease over. A
one-off writer (``motte log append --db``) takes the same lock for its one transaction, and
is refused while a sequencer runs. Whatever the locks, the primary key on the index makes
two writers' batches collide rather than fork.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from motte.store import (
    DatabaseUrl,
    LockHeldError,
    Migration,
    Schema,
    Tx,
    open_database,
)
from motte.tlog._errors import LogNotFoundError, TamperError, TlogUsageError
from motte.tlog._merkle import Frontier, Node, leaf_hash
from motte.tlog._tiles import MAX_ENTRY_SIZE, TILE_HEIGHT, TILE_WIDTH, Tile

_APPEND_ONLY = ("entries", "checkpoints", "cosignatures")
#: Seconds a one-off writer waits for the sequencer's lock before saying who holds it.
ONE_OFF_WAIT = 10.0

SCHEMA = Schema(
    "tlog",
    (
        Migration(
            1,
            "entries, checkpoints, cosignatures, append-only",
            # STRICT: a value of the wrong type cannot be stored, even by someone going
            # around the log. IF NOT EXISTS: log.db files from before the migrations.
            sqlite=[
                "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
                " STRICT",
                "CREATE TABLE IF NOT EXISTS entries (idx INTEGER PRIMARY KEY, data BLOB NOT NULL,"
                " hashes BLOB NOT NULL) STRICT",
                "CREATE TABLE IF NOT EXISTS checkpoints (size INTEGER PRIMARY KEY, "
                "note BLOB NOT NULL) STRICT",
                "CREATE TABLE IF NOT EXISTS cosignatures (size INTEGER NOT NULL, "
                "witness TEXT NOT NULL, line TEXT NOT NULL, PRIMARY KEY (size, witness)) STRICT",
                "CREATE TABLE IF NOT EXISTS witness_sizes (witness TEXT PRIMARY KEY, "
                "size INTEGER NOT NULL) STRICT",
                *(
                    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'the log is append-only: {op} on {table}'); END"
                    for table in _APPEND_ONLY
                    for op in ("UPDATE", "DELETE")
                ),
            ],
            postgresql=[
                "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
                "CREATE TABLE entries (idx BIGINT PRIMARY KEY, data BYTEA NOT NULL, "
                "hashes BYTEA NOT NULL)",
                "CREATE TABLE checkpoints (size BIGINT PRIMARY KEY, note BYTEA NOT NULL)",
                "CREATE TABLE cosignatures (size BIGINT NOT NULL, witness TEXT NOT NULL, "
                "line TEXT NOT NULL, PRIMARY KEY (size, witness))",
                "CREATE TABLE witness_sizes (witness TEXT PRIMARY KEY, size BIGINT NOT NULL)",
                "CREATE FUNCTION append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "RAISE EXCEPTION 'the log is append-only: % on %', TG_OP, TG_TABLE_NAME; END $$",
                *(
                    stmt
                    for table in _APPEND_ONLY
                    for stmt in (
                        f"CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
                        "FOR EACH ROW EXECUTE FUNCTION append_only()",
                        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                        "FOR EACH STATEMENT EXECUTE FUNCTION append_only()",
                    )
                ),
            ],
        ),
        Migration(
            2,
            "entries by leaf hash (content dedup)",
            sqlite=[
                "CREATE INDEX IF NOT EXISTS entries_by_leaf ON entries (substr(hashes, 1, 32))"
            ],
            postgresql=["CREATE INDEX entries_by_leaf ON entries (substr(hashes, 1, 32))"],
        ),
    ),
)


_CACHE_FROM_LEVEL = 4
_NODE_CACHE_MAX = 1 << 17  # about 20 MB of Python objects at most


def node_row(node: Node) -> int:
    """The index of the entry whose row holds node (level, index): the one that completed it."""
    level, index = node
    return ((index + 1) << level) - 1


class LogStore:
    """One log's tables. Thread-safe: appends are serialised in-process; reads run on any
    thread (SQLite: a connection per thread; PostgreSQL: the pool)."""

    def __init__(self, database: Path | DatabaseUrl, *, create: bool = True) -> None:
        url = database if isinstance(database, DatabaseUrl) else DatabaseUrl.sqlite(database)
        self.url = url
        #: The SQLite file, or None on PostgreSQL.
        self.path: Path | None = url.path
        if not create and url.path is not None and not url.path.exists():
            raise LogNotFoundError(f"no log database at {url.path}", hint="run `motte log init`")
        self.db = open_database(url, SCHEMA, application="motte-log")
        self.where = str(url.path) if url.path is not None else getattr(self.db, "where", "")
        self.sequencer = self.db.lease("sequencer")
        self._append_lock = threading.Lock()
        self._frontier = Frontier()
        self._node_cache: dict[Node, bytes] = {}
        with self.db.read() as tx:
            self._load_frontier(tx)

    def close(self) -> None:
        self.sequencer.release()
        self.db.close()

    # -- writing: on PostgreSQL only as the sequencer ------------------------------------------

    def acquire_sequencer(
        self, *, timeout: float | None = None, stop: threading.Event | None = None
    ) -> bool:
        """Become the log's one writer: wait (a hot standby) until no other process is.
        Immediate on SQLite, where SQLite's write lock serialises appenders."""
        if self.db.dialect == "sqlite":
            return True
        return self.sequencer.acquire(timeout=timeout, stop=stop)

    @property
    def is_sequencer(self) -> bool:
        return self.sequencer.held

    @contextlib.contextmanager
    def _write(self, *, durable: bool = True) -> Iterator[Tx]:
        if self.db.dialect == "sqlite" or self.sequencer.held:
            with self.sequencer.write(durable=durable) as tx:
                yield tx
            return
        with self.db.write(durable=durable) as tx:
            # Another one-off writer holds it for a moment; a sequencer for good.
            if not tx.lock(f"motte.lease.{SCHEMA.name}.sequencer", timeout=ONE_OFF_WAIT):
                raise LockHeldError(
                    f"{self.where}: another process is this log's sequencer (a running "
                    "`motte log serve`)",
                    hint="append through it (--log URL), or stop it first",
                )
            yield tx

    # -- metadata ------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        with self.db.read() as tx:
            row = tx.one("SELECT value FROM meta WHERE key = ?", (key,))
        return row[0] if row else None

    def set_meta_once(self, key: str, value: str) -> str:
        """Record ``value`` under ``key`` unless one is there; return what is stored."""
        stored = self.get_meta(key)
        if stored is not None:  # a standby must not need the sequencer to open the log
            return stored
        with self._write() as tx:
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                (key, value),
            )
        stored = self.get_meta(key)
        assert stored is not None
        return stored

    # -- the tree ------------------------------------------------------------------------------

    def _size_in(self, tx: Tx) -> int:
        row = tx.one("SELECT idx FROM entries ORDER BY idx DESC LIMIT 1")
        return 0 if row is None else int(row[0]) + 1

    def _load_frontier(self, tx: Tx) -> None:
        size = self._size_in(tx)
        coords = Frontier.nodes_for(size)
        got = self._read(tx, coords)
        missing = [c for c in coords if c not in got]
        if missing:
            raise TamperError(
                f"{self.where}: the tree of size {size} is missing stored node(s) {missing[:3]}",
                hint="the database was damaged; restore it from a backup or a mirror",
            )
        self._frontier = Frontier(size, [got[c] for c in coords])

    def size(self) -> int:
        with self.db.read() as tx:
            return self._size_in(tx)

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
        with self._append_lock, self._write() as tx:
            if self._size_in(tx) != self._frontier.size:  # someone else appended
                self._load_frontier(tx)
            frontier = self._frontier.copy()
            first = frontier.size
            leaves = [leaf_hash(e) for e in entries]
            rows = [
                (first + i, e, b"".join(h for _, h in frontier.append(leaf)))
                for i, (e, leaf) in enumerate(zip(entries, leaves, strict=True))
            ]
            tx.insert_many("entries", ("idx", "data", "hashes"), ("int8", "bytea", "bytea"), rows)
            # Committed when the block ends; only then is the new right edge ours.
            committed = frontier
        self._frontier = committed
        return first, leaves

    def find_leaf(self, leaf: bytes) -> int | None:
        """The index of the first entry whose leaf hash is ``leaf`` (content dedup), if any."""
        with self.db.read() as tx:
            row = tx.one(
                "SELECT idx FROM entries WHERE substr(hashes, 1, 32) = ? ORDER BY idx LIMIT 1",
                (leaf,),
            )
        return None if row is None else int(row[0])

    def find_leaves(self, leaves: Sequence[bytes]) -> dict[bytes, int]:
        """``find_leaf`` for a batch: leaf hash -> index of its first entry, for those found.

        One query per 500 distinct hashes (over the same index) instead of one per entry: the
        per-entry lookup cost a batch append about 45% of its throughput on SQLite, and on
        PostgreSQL every query is a round trip.
        """
        found: dict[bytes, int] = {}
        unique = list(dict.fromkeys(leaves))
        with self.db.read() as tx:
            for i in range(0, len(unique), 500):
                chunk = unique[i : i + 500]
                if tx.dialect == "postgresql":
                    rows = tx.all(
                        "SELECT substr(hashes, 1, 32), min(idx) FROM entries "
                        "WHERE substr(hashes, 1, 32) = ANY(?) GROUP BY 1",
                        (chunk,),
                    )
                else:
                    marks = ",".join("?" * len(chunk))
                    rows = tx.all(
                        "SELECT substr(hashes, 1, 32), min(idx) FROM entries "
                        f"WHERE substr(hashes, 1, 32) IN ({marks}) GROUP BY 1",
                        chunk,
                    )
                found.update((bytes(leaf), int(idx)) for leaf, idx in rows)
        return found

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

    def _read(self, tx: Tx, nodes: Iterable[Node]) -> dict[Node, bytes]:
        by_row: dict[int, list[Node]] = {}
        for n in nodes:
            by_row.setdefault(node_row(n), []).append(n)
        out: dict[Node, bytes] = {}
        keys = list(by_row)
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            if tx.dialect == "postgresql":  # one array parameter: one prepared statement
                rows = tx.execute("SELECT idx, hashes FROM entries WHERE idx = ANY(?)", (chunk,))
            else:
                marks = ",".join("?" * len(chunk))
                rows = tx.execute(f"SELECT idx, hashes FROM entries WHERE idx IN ({marks})", chunk)
            for idx, hashes in rows:
                for n in by_row[idx]:
                    h = bytes(hashes[32 * n[0] : 32 * n[0] + 32])
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
            with self.db.read() as tx:
                read = self._read(tx, [n for n in want if n not in got])
            if len(cache) + len(read) > _NODE_CACHE_MAX:
                cache.clear()
            for n, h in read.items():
                if n[0] >= _CACHE_FROM_LEVEL:
                    cache[n] = h
            got.update(read)
        if len(got) != len(want):
            missing = sorted(want - set(got))
            raise LogNotFoundError(f"{self.where}: no stored hash for node(s) {missing[:3]}")
        return got

    def read_tile(self, tile: Tile) -> bytes | None:
        """The bytes of a hash tile or entry bundle, or None when the tree is not that big."""
        start = tile.index * TILE_WIDTH
        with self.db.read() as tx:
            if tile.level is None:
                rows = tx.all(
                    "SELECT data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx",
                    (start, start + tile.width),
                )
                if len(rows) != tile.width:
                    return None
                from motte.tlog._tiles import encode_entry_bundle

                return encode_entry_bundle(bytes(r[0]) for r in rows)
            if tile.level == 0:
                rows = tx.all(
                    "SELECT substr(hashes, 1, 32) FROM entries WHERE idx >= ? AND idx < ? "
                    "ORDER BY idx",
                    (start, start + tile.width),
                )
                if len(rows) != tile.width:
                    return None
                return b"".join(bytes(r[0]) for r in rows)
            level = tile.level * TILE_HEIGHT
            nodes = [(level, start + i) for i in range(tile.width)]
            got = self._read(tx, nodes)
        if len(got) != tile.width:
            return None
        return b"".join(got[n] for n in nodes)

    def read_entries(self, lo: int, hi: int) -> list[bytes]:
        with self.db.read() as tx:
            rows = tx.all(
                "SELECT data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx", (lo, hi)
            )
        return [bytes(r[0]) for r in rows]

    def iter_entries(self, batch: int = 4096) -> Iterable[tuple[int, bytes, bytes]]:
        """Every (index, entry, stored hashes) in order (for audits), read in batches."""
        lo = 0
        while True:
            with self.db.read() as tx:
                rows = tx.all(
                    "SELECT idx, data, hashes FROM entries WHERE idx >= ? ORDER BY idx LIMIT ?",
                    (lo, batch),
                )
            if not rows:
                return
            for idx, data, hashes in rows:
                yield int(idx), bytes(data), bytes(hashes)
            lo = int(rows[-1][0]) + 1

    # -- checkpoints and cosignatures ----------------------------------------------------------

    def write_transaction(self, *, fsync: bool = True) -> contextlib.AbstractContextManager[Tx]:
        """A write transaction (as the sequencer, on PostgreSQL).

        ``fsync=False`` commits without waiting for the disk (SQLite ``synchronous=NORMAL``,
        PostgreSQL ``synchronous_commit=off``): never corrupt, but the commit may be lost in
        a power cut until the next durable one. Only for rows that can be made again
        identically (a checkpoint: Ed25519 signatures are deterministic).
        """
        return self._write(durable=fsync)

    def latest_checkpoint(self, tx: Tx | None = None) -> tuple[int, bytes] | None:
        sql = "SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1"
        if tx is not None:
            row = tx.one(sql)
        else:
            with self.db.read() as rtx:
                row = rtx.one(sql)
        return (int(row[0]), bytes(row[1])) if row else None

    def checkpoints(self) -> list[tuple[int, bytes]]:
        with self.db.read() as tx:
            rows = tx.all("SELECT size, note FROM checkpoints ORDER BY size")
        return [(int(s), bytes(n)) for s, n in rows]

    def checkpoint_note(self, size: int) -> bytes | None:
        with self.db.read() as tx:
            row = tx.one("SELECT note FROM checkpoints WHERE size = ?", (size,))
        return bytes(row[0]) if row else None

    def checkpoint_covering(self, index: int) -> tuple[int, bytes] | None:
        """The newest checkpoint, if it covers entry ``index``; cosigned ones are preferred."""
        with self.db.read() as tx:
            row = tx.one(
                "SELECT c.size, c.note FROM checkpoints c JOIN "
                "(SELECT size, count(*) AS n FROM cosignatures GROUP BY size) s "
                "ON s.size = c.size WHERE c.size > ? ORDER BY s.n DESC, c.size DESC LIMIT 1",
                (index,),
            )
            if row is None:
                row = tx.one(
                    "SELECT size, note FROM checkpoints WHERE size > ? ORDER BY size DESC LIMIT 1",
                    (index,),
                )
        return (int(row[0]), bytes(row[1])) if row else None

    def add_checkpoint(self, tx: Tx, size: int, note: bytes) -> None:
        tx.execute("INSERT INTO checkpoints (size, note) VALUES (?, ?)", (size, note))

    def cosignature_lines(self, size: int) -> list[str]:
        with self.db.read() as tx:
            rows = tx.all("SELECT line FROM cosignatures WHERE size = ? ORDER BY witness", (size,))
        return [r[0] for r in rows]

    def cosignatures(self) -> list[tuple[int, str, str]]:
        """Every (size, witness key, line), by size."""
        with self.db.read() as tx:
            rows = tx.all("SELECT size, witness, line FROM cosignatures ORDER BY size, witness")
        return [(int(s), w, line) for s, w, line in rows]

    def cosigning_witnesses(self, size: int) -> set[str]:
        with self.db.read() as tx:
            rows = tx.all("SELECT witness FROM cosignatures WHERE size = ?", (size,))
        return {r[0] for r in rows}

    def add_cosignature(self, size: int, witness: str, line: str) -> None:
        with self._write() as tx:
            tx.execute(
                "INSERT INTO cosignatures (size, witness, line) VALUES (?, ?, ?) "
                "ON CONFLICT (size, witness) DO NOTHING",
                (size, witness, line),
            )

    def witness_size(self, witness: str) -> int:
        with self.db.read() as tx:
            row = tx.one("SELECT size FROM witness_sizes WHERE witness = ?", (witness,))
        return int(row[0]) if row else 0

    def set_witness_size(self, witness: str, size: int) -> None:
        with self._write() as tx:
            tx.execute(
                "INSERT INTO witness_sizes (witness, size) VALUES (?, ?) "
                "ON CONFLICT (witness) DO UPDATE SET size = excluded.size",
                (witness, size),
            )
