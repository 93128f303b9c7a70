"""The log itself: the embedded (SQLite) log and :func:`open_log`, the one way in.

A log directory holds ``log.key`` (the Ed25519 signing key in Go's note format, mode 0600),
``log.db`` (the append-only store) or ``database`` (the PostgreSQL URL the store lives in
instead, see motte.store), and optionally ``witnesses`` (one ``<vkey> <url>`` per line:
witnesses asked to cosign each new checkpoint). The key name is the log's origin.

Two rules protect the log's word: a checkpoint is signed only after the entries it covers
are committed, and only if the tree still extends the last checkpoint signed (checked with
a consistency proof computed from the store, so a damaged store stops the log instead of
making it sign a fork).
"""

from __future__ import annotations

import logging
import re
import secrets
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from motte.fsutil import create_exclusive
from motte.home import motte_home
from motte.store import DatabaseUrl, resolve_database
from motte.tlog._bundle import InclusionBundle
from motte.tlog._checkpoint import CheckpointBody, parse_checkpoint_unverified, time_line
from motte.tlog._errors import (
    LogNotFoundError,
    LogRemoteError,
    ProofError,
    SignatureError,
    TamperError,
    TlogFormatError,
    TlogUsageError,
    WitnessRefusedError,
)
from motte.tlog._merkle import (
    Range,
    consistency_ranges,
    fold,
    inclusion_ranges,
    leaf_hash,
    range_nodes,
    verify_consistency,
)
from motte.tlog._note import Signer, Verifier, open_note, sign_note
from motte.tlog._store import LogStore

log = logging.getLogger("motte.tlog")

KEY_FILE = "log.key"
DB_FILE = "log.db"
DATABASE_FILE = "database"
WITNESSES_FILE = "witnesses"
#: After a witness fails, checkpoints go out without asking it for this many seconds.
WITNESS_RETRY_AFTER = 30.0


@dataclass(frozen=True)
class LoggedEntry:
    """Where an appended entry landed: its index and RFC 6962 leaf hash."""

    index: int
    leaf_hash: bytes


class Log(Protocol):
    """What the embedded log and a remote log (``motte log serve``) both offer."""

    @property
    def origin(self) -> str: ...
    @property
    def verifier_key(self) -> str: ...
    def append(self, entry: bytes) -> LoggedEntry: ...
    def checkpoint(self) -> bytes: ...
    def inclusion_bundle(self, index: int) -> InclusionBundle: ...
    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]: ...
    def close(self) -> None: ...


def default_log_dir() -> Path:
    return motte_home() / "tlog"


def default_origin() -> str:
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "localhost"
    return f"{host}/motte-log/{secrets.token_hex(4)}"


def load_or_create_key(directory: Path, *, origin: str | None, create: bool) -> Signer:
    path = directory / KEY_FILE
    if not path.exists():
        if not create:
            raise LogNotFoundError(
                f"no log at {directory} (no {KEY_FILE})", hint="create one with `motte log init`"
            )
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        signer = Signer.generate(origin or default_origin())
        create_exclusive(path, (signer.skey + "\n").encode(), mode=0o600)
    if path.stat().st_mode & 0o077:
        raise TlogUsageError(
            f"{path}: the log's private key is readable by others",
            hint=f"chmod 600 {path}",
        )
    signer = Signer.from_skey(path.read_text())
    if origin is not None and signer.name != origin:
        raise TlogUsageError(
            f"{directory} already holds the log {signer.name}, not {origin}",
            hint="use another --dir for a new log",
        )
    return signer


def read_witness_config(path: Path) -> list[tuple[Verifier, str]]:
    """``<vkey> <url>`` per line; ``#`` comments."""
    if not path.exists():
        return []
    out = []
    for n, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2:
            raise TlogFormatError(f"{path}:{n}: expected '<witness vkey> <url>'")
        try:
            v = Verifier.from_vkey(fields[0])
        except TlogFormatError as e:
            raise TlogFormatError(f"{path}:{n}: {e.message}") from None
        if not v.is_cosigner:
            raise TlogFormatError(f"{path}:{n}: {v.name} is not a witness (0x04) key")
        out.append((v, fields[1].rstrip("/")))
    return out


def log_database(directory: Path, flag: str | None = None) -> DatabaseUrl:
    """Where the log in ``directory`` keeps its store: ``--db``, MOTTE_DB, the URL its
    ``database`` file records, else its own ``log.db``. A log never silently moves: a URL
    other than the recorded one, or PostgreSQL for a directory that holds a SQLite log, is
    refused (the same key over another store would sign another history)."""
    recorded_file = directory / DATABASE_FILE
    recorded = recorded_file.read_text().strip() if recorded_file.exists() else None
    url = resolve_database(
        flag, default=directory / DB_FILE, recorded=recorded, recorded_where=str(recorded_file)
    )
    if recorded and url.conninfo != recorded:
        raise TlogUsageError(
            f"{directory}: this log lives in the database named by {recorded_file}, not the "
            "one --db or MOTTE_DB names",
            hint=f"if the database moved, write its new URL into {recorded_file}",
        )
    if url.is_postgresql and not recorded and (directory / DB_FILE).exists():
        raise TlogUsageError(
            f"{directory}: this log is stored in {DB_FILE} (SQLite); naming a PostgreSQL "
            "database does not move it",
            hint="start a new log (another --dir) on PostgreSQL",
        )
    return url


class LocalLog:
    """A log this process opens itself: a directory with its key, and its store (SQLite in
    the directory, or PostgreSQL)."""

    def __init__(
        self,
        directory: Path | str,
        *,
        origin: str | None = None,
        create: bool = True,
        database: str | None = None,
    ) -> None:
        self.directory = Path(directory)
        url = log_database(self.directory, database)  # a bad URL before anything is made
        self.signer = load_or_create_key(self.directory, origin=origin, create=create)
        self.store = LogStore(url, create=create)
        recorded = self.directory / DATABASE_FILE
        if url.is_postgresql and not recorded.exists():
            from motte.fsutil import atomic_write_text

            atomic_write_text(recorded, f"{url.conninfo}\n", mode=0o644)
        stored = self.store.set_meta_once("origin", self.signer.name)
        if stored != self.signer.name:
            self.store.close()
            raise TamperError(
                f"{self.directory}: {KEY_FILE} is for {self.signer.name} but "
                f"{DB_FILE if url.path is not None else self.store.where} holds the log {stored}"
            )
        self.witnesses = read_witness_config(self.directory / WITNESSES_FILE)
        #: Witness submissions: replaced in tests and by the server (see _remote.post_witness).
        self.post_witness: Callable[[str, bytes], tuple[int, str]] | None = None
        #: The clock for checkpoint times and cosignature requests (witnesses stamp their own).
        self.now: Callable[[], float] = time.time
        #: Hashes of ranges that are not one stored node (a tree's right edge). A range of
        #: leaves never changes once written, so these never go stale; every proof at the
        #: same tree size shares them.
        self._range_cache: dict[Range, bytes] = {}
        self._witness_retry_at: dict[str, float] = {}

    # -- identity ------------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        return self.signer.name

    @property
    def verifier_key(self) -> str:
        return self.signer.verifier.vkey

    @property
    def size(self) -> int:
        return self.store.size()

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> LocalLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -------------------------------------------------------------------------------

    def append(self, entry: bytes) -> LoggedEntry:
        """Append one entry; it is durable (fsynced) when this returns."""
        return self.append_many([entry])[0]

    def append_many(self, entries: Sequence[bytes]) -> list[LoggedEntry]:
        """Append a batch in one transaction (one fsync for all of them).

        Entries are deduplicated by content, as Rekor does: an entry already in the log (or
        earlier in the batch) is not appended again, and its existing index is returned.
        (Two processes appending the same new entry at the same moment may both append it;
        the server's single sequencer never does.)
        """
        if not entries:
            return []
        out: list[LoggedEntry | None] = []
        new: list[bytes] = []
        pending: dict[bytes, list[int]] = {}
        hashed = [leaf_hash(e) for e in entries]
        found = self.store.find_leaves(hashed)  # one query for the batch, not one per entry
        for e, leaf in zip(entries, hashed, strict=True):
            known = found.get(leaf)
            if known is not None:
                out.append(LoggedEntry(known, leaf))
                continue
            if leaf not in pending:
                pending[leaf] = []
                new.append(bytes(e))
            pending[leaf].append(len(out))
            out.append(None)
        if new:
            first, leaves = self.store.append(new)
            for i, h in enumerate(leaves):
                for slot in pending[h]:
                    out[slot] = LoggedEntry(first + i, h)
        return [e for e in out if e is not None]

    def append_signed(self, entries: Sequence[bytes]) -> list[LoggedEntry]:
        """Append and sign a checkpoint covering the entries (as ``POST /add`` does).

        The store is asked to sign first: if it refuses (entries lost, a tree that does not
        extend the last checkpoint), nothing is appended and the refusal is raised. If it
        refuses after the append, the entries are durable but the refusal is still raised:
        an entry the log will not sign for must never be reported as logged.
        """
        self.sign_checkpoint()
        logged = self.append_many(entries)
        size, note = self.sign_checkpoint()
        self.cosign(size, note)
        return logged

    def sign_checkpoint(self) -> tuple[int, bytes]:
        """Sign a checkpoint of the whole tree if the newest one is smaller; return (size, note).

        Refuses (TamperError) to sign a tree that does not extend the last checkpoint.
        The note carries the signing time (a ``time N`` extension line, never earlier than the
        previous checkpoint's). The entries are already durable (their own fsynced commit);
        the checkpoint row is committed without an fsync of its own: if a power cut loses it,
        the next call signs the same tree head again (with a later time: a different note for
        the same size and root, which readers accept as consistent). This halves the fsyncs
        per served batch.
        """
        with self.store.write_transaction(fsync=False) as conn:
            size = self.store._size_in(conn)
            latest = self.store.latest_checkpoint(conn)
            if latest is not None and latest[0] == size:
                return latest
            if latest is not None and latest[0] > size:
                raise TamperError(
                    f"{self.directory}: the tree holds {size} entries but checkpoint "
                    f"{latest[0]} was signed: entries were lost; refusing to sign"
                )
            _, root = self.store.root(size, fresh=True)
            if latest is not None:
                self._check_extends(latest, size, root)
            # The signing time never goes backwards, even if the clock does: a later tree
            # head never claims an earlier time than one signed before it.
            when = int(self.now())
            if latest is not None:
                when = max(when, parse_checkpoint_unverified(latest[1])[0].time or 0)
            body = CheckpointBody(self.origin, size, root, (time_line(when),))
            note = sign_note(body.to_text(), [self.signer])
            self.store.add_checkpoint(conn, size, note)
        return size, note

    def _check_extends(self, latest: tuple[int, bytes], size: int, root: bytes) -> None:
        old_size, old_note = latest
        body, parsed = parse_checkpoint_unverified(old_note)
        try:
            open_note(parsed, [self.signer.verifier], what=f"stored checkpoint {old_size}")
        except SignatureError as e:
            raise TamperError(f"{self.directory}: {e.message}; refusing to sign") from None
        try:
            proof = self._range_hashes(consistency_ranges(old_size, size), fresh=True)
            verify_consistency(old_size, size, proof, body.root_hash, root)
        except (ProofError, LogNotFoundError) as e:
            raise TamperError(
                f"{self.directory}: the tree of size {size} does not extend the signed "
                f"checkpoint of size {old_size} ({e.message}); refusing to sign a fork",
                hint="run `motte log audit` to find what changed",
            ) from None

    def checkpoint(self) -> bytes:
        """The signed checkpoint covering every entry so far, with witness cosignatures."""
        size, note = self.sign_checkpoint()
        self.cosign(size, note)
        return note + "".join(self.store.cosignature_lines(size)).encode()

    # -- witnesses -----------------------------------------------------------------------------

    def cosign(self, size: int, note: bytes) -> int:
        """Ask each configured witness that has not cosigned ``size`` yet; return how many did."""
        if not self.witnesses:
            return 0
        have = self.store.cosigning_witnesses(size)
        done = 0
        body = parse_checkpoint_unverified(note)[1].text
        now = self.now()
        for witness, url in self.witnesses:
            if witness.vkey in have:
                done += 1
                continue
            if self._witness_retry_at.get(witness.vkey, 0.0) > now:
                continue  # it failed recently: do not stall every append on it
            try:
                line = self._request_cosignature(witness, url, size, note, body)
            except (LogRemoteError, WitnessRefusedError, SignatureError, TlogFormatError) as e:
                log.warning("witness %s (%s) did not cosign %d: %s", witness.name, url, size, e)
                self._witness_retry_at[witness.vkey] = now + WITNESS_RETRY_AFTER
                continue
            self._witness_retry_at.pop(witness.vkey, None)
            self.store.add_cosignature(size, witness.vkey, line)
            done += 1
        return done

    def _request_cosignature(
        self, witness: Verifier, url: str, size: int, note: bytes, body: bytes
    ) -> str:
        from motte.tlog._remote import post_witness
        from motte.tlog._witness import format_add_checkpoint, parse_size_response

        post = self.post_witness or post_witness
        old = self.store.witness_size(witness.vkey)
        for _attempt in range(2):
            if old > size:
                raise WitnessRefusedError(409, f"witness is at size {old}, past {size}")
            proof = self.consistency_proof(old, size) if old else []
            status, text = post(url, format_add_checkpoint(old, proof, note))
            if status == 409:
                old = parse_size_response(text)
                continue
            if status != 200:
                raise WitnessRefusedError(status, f"witness {url}: {status} {text.strip()[:200]}")
            lines = [ln for ln in text.splitlines(keepends=True) if ln.strip()]
            mine = [ln for ln in lines if ln.startswith(f"— {witness.name} ")]
            if not mine:
                raise SignatureError(f"witness {url} returned no cosignature by {witness.name}")
            open_note(body + b"\n" + "".join(mine).encode(), [witness], what=f"witness {url}")
            self.store.set_witness_size(witness.vkey, size)
            return mine[0]
        raise WitnessRefusedError(409, f"witness {url} keeps reporting another size")

    # -- proofs --------------------------------------------------------------------------------

    def inclusion_bundle(self, index: int) -> InclusionBundle:
        """A tlog-proof for entry ``index`` against the best checkpoint covering it."""
        size = self.size
        if not 0 <= index < size:
            raise LogNotFoundError(f"log {self.origin} has no entry {index} (size {size})")
        latest = self.store.latest_checkpoint()
        if latest is None or latest[0] < size:
            self.checkpoint()  # sign (and have cosigned) what is new
        elif self.witnesses:
            self.cosign(*latest)  # asks only witnesses missing from it, and not while failing
        covering = self.store.checkpoint_covering(index)
        assert covering is not None
        cp_size, note = covering
        full = note + "".join(self.store.cosignature_lines(cp_size)).encode()
        return InclusionBundle(index, tuple(self.inclusion_proof(index, cp_size)), full)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        self._check_size(size)
        return self._range_hashes(inclusion_ranges(index, size))

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        self._check_size(new_size)
        return self._range_hashes(consistency_ranges(old_size, new_size))

    def _range_hashes(self, ranges: list[Range], *, fresh: bool = False) -> list[bytes]:
        """MTH of each range: stored nodes read in one query, right-edge folds cached.

        ``fresh`` bypasses every cache: what is checked before signing comes from disk.
        """
        cache: dict[Range, bytes] = {} if fresh else self._range_cache
        nodes = {r: range_nodes(*r) for r in ranges if r not in cache}
        got = self.store.read_nodes({n for ns in nodes.values() for n in ns}, fresh=fresh)
        out = []
        for r in ranges:
            h = cache.get(r)
            if h is None:
                h = fold([got[n] for n in nodes[r]])
                if len(nodes[r]) > 1:
                    if len(cache) > 4096:
                        cache.clear()
                    cache[r] = h
            out.append(h)
        return out

    def _check_size(self, size: int) -> None:
        # The size this process last committed or loaded needs no query; a bigger one might
        # have been appended by another process.
        if size > self.store.known_size and size > self.store.size():
            raise LogNotFoundError(f"log {self.origin} is smaller than {size} entries")

    def read_entries(self, lo: int, hi: int) -> list[bytes]:
        """Entries ``lo`` to ``hi - 1``, from this log's own store."""
        return self.store.read_entries(lo, hi)

    def checkpoint_times(self) -> list[tuple[int, int]]:
        """(size, signing time) of every stored checkpoint that records a time, by size.

        The earliest checkpoint whose size exceeds an index is the best bound on when that
        entry was logged.
        """
        out = []
        for size, note in self.store.checkpoints():
            t = parse_checkpoint_unverified(note)[0].time
            if t is not None:
                out.append((size, t))
        return out

    def entry(self, index: int) -> bytes:
        got = self.store.read_entries(index, index + 1)
        if not got:
            raise LogNotFoundError(f"log {self.origin} has no entry {index}")
        return got[0]


def open_log(url: str | None = None, *, directory: Path | str | None = None) -> Log:
    """The embedded log (``url`` None, created on first use) or a ``motte log serve`` at ``url``."""
    if url is None:
        return LocalLog(directory or default_log_dir())
    if url.startswith(("http://", "https://")):
        from motte.tlog._remote import RemoteLog

        return RemoteLog(url)
    raise TlogUsageError(f"log URL {url!r}: expected http:// or https://")
