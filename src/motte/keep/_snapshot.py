"""A sealed volume's snapshot file: an encrypted, authenticated archive of a directory tree.

Layout (docs/sealed-state.md)::

    "motte-sealed-volume-v1\\n"          magic, 23 bytes
    u32be n, n bytes of header JSON        in clear: what the host may know (below)
    chunk 0, chunk 1, ... chunk k-1        AES-256-GCM, each 1 MiB of archive + 16-byte tag

The header (sorted keys, compact JSON, at most 16 KiB) says which volume this is and which
version, so a Keep can ask the Steward for the right key and the Steward can refuse an old
one: ``volume`` (``acme/counter:data``), ``sealed_to``, ``version``, ``id`` (32 random hex
digits, one per snapshot), ``created_at``, ``size`` (archive bytes), ``entries``,
``chunk_size`` and ``nonce_prefix`` (7 random bytes, hex). The whole header, magic and
length included, is the associated data of every chunk: a header changed in one byte, or
grafted onto another snapshot's chunks, opens nothing.

Chunk *i* is sealed with nonce ``prefix || u32be(i) || last`` (``last`` is 1 for the final
chunk only: the STREAM construction), under the snapshot key the volume key gives
(motte.steward's ``snapshot_key``). A flipped byte, a truncation, a dropped, repeated or
reordered chunk, or a snapshot of another volume fails, and nothing is unpacked: the
archive is decrypted into a fresh directory that replaces nothing until it is complete.

The archive inside (the plaintext) is a sequence of records, parents before children::

    b"D" u16be len  path  u32be mode                    a directory
    b"F" u16be len  path  u32be mode  u64be size  data  a regular file
    b"Z" u64be count                                    the end: how many records came before

Paths are relative, ``/``-separated bytes, without empty, ``.`` or ``..`` components, at most
4096 bytes. Only directories and regular files are kept (a symbolic link, a FIFO or a socket
in the volume is left out, and said). Bounded: at most ``MAX_ENTRIES`` records and the
volume's size.

Writing is atomic (:func:`write_snapshot`): a temporary file in the same directory,
fsynced, renamed over ``volume.sealed``, the directory fsynced. A crash at any point leaves
the old snapshot or the new one, whole.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from motte.errors import ConfigError, VerificationError

MAGIC = b"motte-sealed-volume-v1\n"
SNAPSHOT_FILE = "volume.sealed"
CHUNK = 1024 * 1024
TAG = 16
PREFIX = 7
MAX_HEADER = 16 * 1024
MAX_PATH = 4096
MAX_ENTRIES = 1_000_000
_HEADER_KEYS = frozenset(
    {
        "volume",
        "sealed_to",
        "version",
        "id",
        "created_at",
        "size",
        "entries",
        "chunk_size",
        "nonce_prefix",
    }
)


class SnapshotError(VerificationError):
    """A snapshot that does not open: malformed, changed, cut short, or not this volume's."""


class SnapshotWriteError(ConfigError):
    """A snapshot could not be written (the volume is too large, the disk refused)."""


@dataclass(frozen=True, slots=True)
class SnapshotHeader:
    """The clear header of a snapshot; ``raw`` is its exact bytes (the chunks' AAD)."""

    volume: str
    sealed_to: str
    version: int
    id: str
    created_at: str
    size: int
    entries: int
    nonce_prefix: bytes
    raw: bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "volume": self.volume,
            "sealed_to": self.sealed_to,
            "version": self.version,
            "id": self.id,
            "created_at": self.created_at,
            "size": self.size,
            "entries": self.entries,
        }


def _header_bytes(fields: dict[str, Any]) -> bytes:
    body = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    return MAGIC + len(body).to_bytes(4, "big") + body


def read_header(f: BinaryIO, where: str) -> SnapshotHeader:
    """Parse the clear header at the start of ``f`` (the file is left after it)."""
    head = f.read(len(MAGIC) + 4)
    if len(head) < len(MAGIC) + 4 or head[: len(MAGIC)] != MAGIC:
        raise SnapshotError(f"{where}: not a motte sealed-volume snapshot (no magic)")
    n = int.from_bytes(head[len(MAGIC) :], "big")
    if not 2 <= n <= MAX_HEADER:
        raise SnapshotError(f"{where}: header length {n} out of bounds")
    body = f.read(n)
    if len(body) != n:
        raise SnapshotError(f"{where}: truncated in its header")
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SnapshotError(f"{where}: the header is not JSON") from None
    if not isinstance(doc, dict) or set(doc) != _HEADER_KEYS:
        raise SnapshotError(f"{where}: the header lacks or adds fields")

    def whole(key: str, low: int = 0) -> int:
        v = doc[key]
        if isinstance(v, bool) or not isinstance(v, int) or not low <= v < 2**62:
            raise SnapshotError(f"{where}: header {key}: not a whole number from {low}")
        return v

    try:
        prefix = bytes.fromhex(str(doc["nonce_prefix"]))
    except ValueError:
        prefix = b""
    if len(prefix) != PREFIX or whole("chunk_size") != CHUNK:
        raise SnapshotError(f"{where}: header nonce_prefix or chunk_size malformed")
    for key in ("volume", "sealed_to", "id", "created_at"):
        if not isinstance(doc[key], str):
            raise SnapshotError(f"{where}: header {key}: not text")
    return SnapshotHeader(
        doc["volume"],
        doc["sealed_to"],
        whole("version", 1),
        doc["id"],
        doc["created_at"],
        whole("size"),
        whole("entries"),
        prefix,
        head + body,
    )


def peek_header(path: Path) -> SnapshotHeader | None:
    """The header of the snapshot at ``path``, or None when there is no file."""
    try:
        with open(path, "rb") as f:
            return read_header(f, str(path))
    except FileNotFoundError:
        return None


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


# -- writing ---------------------------------------------------------------------------------


class _Writer:
    """Writes sealed chunks on a thread of its own while the next one is read and sealed
    (a file write and AES-GCM both release the GIL): three buffers in turn."""

    def __init__(self, out: BinaryIO, buffers: int = 3) -> None:
        import queue
        import threading

        self.out = out
        self.free: queue.Queue[bytearray] = queue.Queue()
        self.full: queue.Queue[tuple[bytearray, int] | None] = queue.Queue()
        self.error: BaseException | None = None
        for _ in range(buffers):
            self.free.put(bytearray(CHUNK + TAG))
        self.thread = threading.Thread(target=self._run, name="motte-snapshot", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            item = self.full.get()
            try:
                if item is None:
                    return
                buf, n = item
                if self.error is None:
                    try:
                        self.out.write(memoryview(buf)[:n])
                    except BaseException as e:  # raised in the writing thread's place
                        self.error = e
                self.free.put(buf)
            finally:
                self.full.task_done()

    def buffer(self) -> bytearray:
        buf = self.free.get()
        if self.error is not None:
            raise self.error
        return buf

    def submit(self, buf: bytearray, n: int) -> None:
        self.full.put((buf, n))

    def sync(self) -> None:
        """Return once every chunk submitted is written."""
        self.full.join()
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        self.full.put(None)
        self.thread.join()


class _Sealer:
    """Fills 1 MiB chunks of plaintext and writes each encrypted, once it knows whether it is
    the last (only when more bytes arrive, or at :meth:`finish`)."""

    def __init__(
        self, writer: _Writer, key: bytes, prefix: bytes, aad: bytes, hold_at: int | None = None
    ) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.writer = writer
        self.aead = AESGCM(key)
        self.prefix = prefix
        self.aad = aad
        self.buf = bytearray(CHUNK)
        self.view = memoryview(self.buf)
        self.pos = 0
        self.index = 0
        self.total = 0
        self.hold_at = hold_at

    def _emit(self, last: bool) -> None:
        nonce = _nonce(self.prefix, self.index, last)
        sealed = self.writer.buffer()
        n = self.pos + TAG
        self.aead.encrypt_into(nonce, self.view[: self.pos], self.aad, memoryview(sealed)[:n])
        self.writer.submit(sealed, n)
        self.index += 1
        self.pos = 0
        if self.index == self.hold_at and os.environ.get(TEST_HOLD_ENV):
            self.writer.sync()
            test_hold("partial")

    def _room(self) -> int:
        if self.pos == CHUNK:
            self._emit(False)
        return CHUNK - self.pos

    def write(self, data: bytes) -> None:
        mv = memoryview(data)
        while mv:
            n = min(self._room(), len(mv))
            self.view[self.pos : self.pos + n] = mv[:n]
            self.pos += n
            self.total += n
            mv = mv[n:]

    def copy_from(self, f: BinaryIO, size: int, where: str) -> None:
        left = size
        while left:
            n = min(self._room(), left)
            got = f.readinto(self.view[self.pos : self.pos + n])  # type: ignore[attr-defined]
            if not got:
                raise _Changed(f"{where} shrank while the snapshot was taken")
            self.pos += got
            self.total += got
            left -= got
        if f.read(1):
            raise _Changed(f"{where} grew while the snapshot was taken")

    def finish(self) -> None:
        self._emit(True)


class _Changed(Exception):
    """The volume changed under a snapshot (only a guest running during it can do that)."""


@dataclass(frozen=True, slots=True)
class Tree:
    """What a snapshot would hold: (relative path bytes, is_dir, mode, size) in order, the
    archive's size, and what was left out."""

    entries: tuple[tuple[bytes, bool, int, int], ...]
    size: int
    skipped: tuple[str, ...]


def scan_tree(root: Path, *, limit: int, where: str, exclude: tuple[str, ...] = ()) -> Tree:
    """Walk ``root`` (not following links), leaving out the top-level names in ``exclude``;
    SnapshotWriteError past ``limit`` bytes."""
    entries: list[tuple[bytes, bool, int, int]] = []
    skipped: list[str] = []
    size = 9  # the end record
    base = os.fsencode(root)
    top_excluded = {os.fsencode(n) for n in exclude}

    def walk(dirpath: bytes, rel: bytes) -> None:
        nonlocal size
        with os.scandir(dirpath) as it:
            items = sorted(it, key=lambda e: e.name)
        for e in items:
            if not rel and e.name in top_excluded:
                continue
            path = rel + b"/" + e.name if rel else e.name
            st = e.stat(follow_symlinks=False)
            if len(path) > MAX_PATH:
                raise SnapshotWriteError(f"{where}: a path is longer than {MAX_PATH} bytes")
            if stat.S_ISDIR(st.st_mode):
                entries.append((path, True, stat.S_IMODE(st.st_mode), 0))
                size += 7 + len(path)
                walk(e.path, path)
            elif stat.S_ISREG(st.st_mode):
                entries.append((path, False, stat.S_IMODE(st.st_mode), st.st_size))
                size += 15 + len(path) + st.st_size
            else:
                skipped.append(os.fsdecode(path))
            if len(entries) > MAX_ENTRIES:
                raise SnapshotWriteError(f"{where}: more than {MAX_ENTRIES} files and directories")
            if size > limit:
                raise SnapshotWriteError(
                    f"{where}: holds more than its size limit ({limit} bytes)",
                    hint="raise the volume's size in Motte.toml, or have the workload keep less",
                )

    walk(base, b"")
    return Tree(tuple(entries), size, tuple(skipped))


#: Test hook (docs/development.md): when set, a snapshot write stops at the stage named,
#: writes a marker file ``<value>.<stage>`` and waits there forever, so a test can SIGKILL
#: the Keep at a known point (``<path>@<stage>,...`` holds only at those stages). Stages:
#: ``partial`` (half the chunks written), ``synced``
#: (temporary file complete and fsynced), ``renamed`` (in place, not yet committed).
TEST_HOLD_ENV = "MOTTE_TEST_SNAPSHOT_HOLD"


def test_hold(stage: str) -> None:
    spec = os.environ.get(TEST_HOLD_ENV)
    if not spec:
        return
    path, _, stages = spec.partition("@")
    if stages and stage not in stages.split(","):
        return
    import time

    Path(f"{path}.{stage}").write_text(str(os.getpid()))
    while True:
        time.sleep(3600)


def _seal_tree(root: Path, tree: Tree, sealer: _Sealer) -> None:
    base = os.fsencode(root)
    for path, is_dir, mode, size in tree.entries:
        rec = len(path).to_bytes(2, "big") + path + mode.to_bytes(4, "big")
        if is_dir:
            sealer.write(b"D" + rec)
            continue
        sealer.write(b"F" + rec + size.to_bytes(8, "big"))
        fd = os.open(os.path.join(base, path), os.O_RDONLY | os.O_NOFOLLOW)
        with open(fd, "rb", buffering=0) as f:
            sealer.copy_from(f, size, f"{os.fsdecode(path)}")
    sealer.write(b"Z" + len(tree.entries).to_bytes(8, "big"))
    assert sealer.total == tree.size
    sealer.finish()


@dataclass(frozen=True, slots=True)
class Written:
    header: SnapshotHeader
    path: Path
    bytes_written: int
    skipped: tuple[str, ...]


def write_snapshot(
    root: Path,
    directory: Path,
    key: bytes,
    *,
    volume: str,
    sealed_to: str,
    version: int,
    limit: int,
    exclude: tuple[str, ...] = (),
    clock: Callable[[], float] | None = None,
) -> Written:
    """Seal the tree at ``root`` into ``directory/volume.sealed`` as ``version``, atomically.

    Raises SnapshotWriteError (too large, the disk refused, the tree changed during the
    write); the previous snapshot is then untouched and the temporary file gone."""
    import time

    from motte.fsutil import fsync_dir

    where = f"volume {volume}"
    tree = scan_tree(root, limit=limit, where=where, exclude=exclude)
    prefix = secrets.token_bytes(PREFIX)
    fields = {
        "volume": volume,
        "sealed_to": sealed_to,
        "version": version,
        "id": secrets.token_hex(16),
        "created_at": datetime.fromtimestamp((clock or time.time)(), UTC).isoformat(
            timespec="milliseconds"
        ),
        "size": tree.size,
        "entries": len(tree.entries),
        "chunk_size": CHUNK,
        "nonce_prefix": prefix.hex(),
    }
    raw = _header_bytes(fields)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = directory / SNAPSHOT_FILE
    tmp = directory / f".{SNAPSHOT_FILE}.{secrets.token_hex(6)}.tmp"
    chunks = max(1, -(-tree.size // CHUNK))
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb", buffering=0) as out:
            out.write(raw)
            writer = _Writer(out)
            try:
                _seal_tree(root, tree, _Sealer(writer, key, prefix, raw, chunks // 2 or None))
                writer.sync()
            finally:
                writer.stop()
            if chunks == 1:
                test_hold("partial")  # the header and the one chunk are written
            os.fsync(out.fileno())
            written = out.tell()
        test_hold("synced")
        os.replace(tmp, target)
    except _Changed as e:
        tmp.unlink(missing_ok=True)
        raise SnapshotWriteError(f"{where}: {e}; the snapshot was not written") from None
    except FileNotFoundError as e:
        tmp.unlink(missing_ok=True)
        raise SnapshotWriteError(
            f"{where}: {e.filename} vanished while the snapshot was taken; not written"
        ) from None
    except OSError as e:
        tmp.unlink(missing_ok=True)
        hint = "free space on the host's disk" if e.errno == errno.ENOSPC else None
        raise SnapshotWriteError(
            f"{where}: cannot write {tmp}: {e.strerror or e}", hint=hint
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(directory)
    header = read_header_bytes(raw)
    return Written(header, target, written, tree.skipped)


def read_header_bytes(raw: bytes) -> SnapshotHeader:
    import io

    return read_header(io.BytesIO(raw), "header")


def remove_stale_temporaries(directory: Path) -> None:
    """Temporary files of snapshot writes a crash interrupted (never the snapshot)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        if name.startswith(f".{SNAPSHOT_FILE}.") and name.endswith(".tmp"):
            with _suppress():
                os.unlink(directory / name)


def _suppress() -> Any:
    import contextlib

    return contextlib.suppress(OSError)


# -- reading ---------------------------------------------------------------------------------


class _Opener:
    """Decrypts the chunks of a file one at a time into a growing window of plaintext."""

    def __init__(self, f: BinaryIO, key: bytes, header: SnapshotHeader, body: int, where: str):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.f = f
        self.aead = AESGCM(key)
        self.header = header
        self.where = where
        step = CHUNK + TAG
        self.count = max(1, -(-body // step))
        self.body = body
        self.index = 0
        self.data = memoryview(b"")
        self.inbuf = bytearray(step)
        self.outbuf = bytearray(CHUNK)

    def _next(self) -> None:
        from cryptography.exceptions import InvalidTag

        if self.index >= self.count:
            raise SnapshotError(f"{self.where}: the archive runs past its last chunk")
        last = self.index == self.count - 1
        step = CHUNK + TAG
        want = self.body - self.index * step if last else step
        view = memoryview(self.inbuf)[:want]
        got = self.f.readinto(view)  # type: ignore[attr-defined]
        if got != want or want < TAG:
            raise SnapshotError(f"{self.where}: truncated (chunk {self.index})")
        out = memoryview(self.outbuf)[: want - TAG]
        try:
            self.aead.decrypt_into(
                _nonce(self.header.nonce_prefix, self.index, last), view, self.header.raw, out
            )
        except InvalidTag:
            raise SnapshotError(
                f"{self.where}: chunk {self.index} does not open under this volume's key: the "
                "snapshot was changed, cut short or reordered, or is another volume's"
            ) from None
        self.index += 1
        self.data = out

    def read(self, n: int) -> bytes:
        parts = []
        while n:
            if not self.data:
                self._next()
                continue
            take = self.data[:n]
            parts.append(bytes(take))
            self.data = self.data[len(take) :]
            n -= len(take)
        return b"".join(parts)

    def copy_to(self, fd: int, n: int) -> None:
        while n:
            if not self.data:
                self._next()
                continue
            take = self.data[:n]
            while take:
                w = os.write(fd, take)
                take = take[w:]
                self.data = self.data[w:]
                n -= w

    def done(self) -> bool:
        return not self.data and self.index == self.count


def _check_path(path: bytes, where: str) -> None:
    parts = path.split(b"/")
    if (
        not path
        or len(path) > MAX_PATH
        or b"\0" in path
        or any(p in (b"", b".", b"..") for p in parts)
    ):
        raise SnapshotError(f"{where}: the archive holds a path that is not a relative one")


def open_snapshot(path: Path, key: bytes, into: Path, *, expect: str, limit: int) -> SnapshotHeader:
    """Decrypt and unpack the snapshot at ``path`` into the empty directory ``into``.

    SnapshotError (one line) when it is not volume ``expect``'s, or does not open; the
    caller removes ``into`` then: nothing it held before was touched."""
    where = str(path)
    with open(path, "rb") as f:
        header = read_header(f, where)
        if header.volume != expect:
            raise SnapshotError(f"{where}: a snapshot of volume {header.volume}, not {expect}")
        if header.size > limit:
            raise SnapshotError(f"{where}: {header.size} bytes, more than the volume's {limit}")
        body = os.fstat(f.fileno()).st_size - len(header.raw)
        opener = _Opener(f, key, header, body, where)
        base = os.fsencode(into)
        count = 0
        total = 0
        while True:
            kind = opener.read(1)
            if kind == b"Z":
                if int.from_bytes(opener.read(8), "big") != count:
                    raise SnapshotError(f"{where}: the archive's entry count does not match")
                total += 9
                break
            if kind not in (b"D", b"F"):
                raise SnapshotError(f"{where}: the archive is malformed (record {count})")
            n = int.from_bytes(opener.read(2), "big")
            rel = opener.read(n)
            _check_path(rel, where)
            mode = int.from_bytes(opener.read(4), "big") & 0o7777
            full = os.path.join(base, rel)
            count += 1
            if count > MAX_ENTRIES:
                raise SnapshotError(f"{where}: more than {MAX_ENTRIES} entries")
            if kind == b"D":
                os.mkdir(full, 0o700)
                os.chmod(full, mode | 0o700)
                total += 7 + n
                continue
            size = int.from_bytes(opener.read(8), "big")
            total += 15 + n + size
            if total > header.size:
                raise SnapshotError(f"{where}: the archive is larger than its header says")
            fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                opener.copy_to(fd, size)
                os.fchmod(fd, mode | 0o600)
            finally:
                os.close(fd)
        if total != header.size or not opener.done():
            raise SnapshotError(f"{where}: the archive does not end where its header says")
    return header
