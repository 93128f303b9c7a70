"""``motte log export-tiles DIR``: the log as static files, for any web server or CDN.

C2SP tlog-tiles reads are static paths, so a log can be served without its process: this
writes the newest signed checkpoint (with its cosignatures) as ``DIR/checkpoint``, every
hash tile and entry bundle of that tree under ``DIR/tile/`` (full tiles, and the partial
``.p/<W>`` ones of its right edge), and ``DIR/vkey``. motte's own client
(``open_log("https://...")``) verifies from such a directory exactly as from
``motte log serve``: it trusts only the checkpoint's signature and recomputes everything
else.

Order is what keeps readers safe: the tiles are written (and flushed to disk) before the
checkpoint that refers to them, so a reader never sees a checkpoint whose tiles are
missing. Full tiles never change: an existing one that differs means DIR holds another
log's history, and the export stops. ``incremental`` skips full tiles already present
(after checking that DIR's checkpoint is one this log signed, and a prefix of its tree).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from motte.fsutil import atomic_write_bytes
from motte.tlog._checkpoint import parse_checkpoint_unverified
from motte.tlog._errors import SignatureError, TamperError, TlogFormatError, TlogUsageError
from motte.tlog._log import LocalLog
from motte.tlog._note import open_note
from motte.tlog._tiles import TILE_WIDTH, tiles_for_size


@dataclass(frozen=True, slots=True)
class ExportReport:
    size: int
    written: int
    skipped: int
    bytes: int


def _write_file(path: Path, data: bytes) -> None:
    """Temporary file and rename, without an fsync each: one sync covers them all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _previous_size(log: LocalLog, out: Path) -> int:
    """The size of DIR's checkpoint, checked to be this log's and a prefix of its tree."""
    path = out / "checkpoint"
    if not path.exists():
        return 0
    try:
        body, parsed = parse_checkpoint_unverified(path.read_bytes())
        open_note(parsed, [log.signer.verifier], what=f"{path}")
    except (TlogFormatError, SignatureError) as e:
        raise TlogUsageError(
            f"{path}: not a checkpoint of {log.origin} ({e.message})",
            hint="export into an empty directory, or the one this log exported to",
        ) from None
    if body.size > log.store.size():
        raise TamperError(f"{path}: size {body.size} is past this log's {log.store.size()}")
    if body.size and log.store.root(body.size)[1] != body.root_hash:
        raise TamperError(
            f"{path}: the tree of size {body.size} it names is not this log's: DIR holds "
            "another history"
        )
    return body.size


def export_tiles(log: LocalLog, out: Path, *, incremental: bool = False) -> ExportReport:
    """Write the newest signed checkpoint's tiles, then the checkpoint, under ``out``."""
    latest = log.store.latest_checkpoint()
    if latest is None:
        raise TlogUsageError(
            f"log {log.origin} has no signed checkpoint yet",
            hint="append an entry, or run `motte log checkpoint`",
        )
    size, note = latest
    body, _ = parse_checkpoint_unverified(note)
    if log.store.root(size, fresh=True)[1] != body.root_hash:
        raise TamperError(
            f"{log.store.where}: the stored tree of size {size} does not have the root its "
            "checkpoint signed; refusing to export",
            hint="run `motte log audit`",
        )
    full_note = note + "".join(log.store.cosignature_lines(size)).encode()
    out.mkdir(parents=True, exist_ok=True)
    if incremental:
        _previous_size(log, out)
    written = skipped = total = 0
    for tile in tiles_for_size(size):
        path = out / tile.path
        if tile.width == TILE_WIDTH and incremental and path.exists():
            skipped += 1
            continue
        data = log.store.read_tile(tile)
        if data is None:
            raise TamperError(f"{log.store.where}: {tile.path} is missing from the store")
        if tile.width == TILE_WIDTH and path.exists():
            if path.read_bytes() != data:
                raise TamperError(
                    f"{path}: differs from this log's {tile.path}: DIR holds another history",
                    hint="export into an empty directory",
                )
            skipped += 1
            continue
        _write_file(path, data)
        written += 1
        total += len(data)
    os.sync()  # every tile on disk before the checkpoint that names them
    atomic_write_bytes(out / "vkey", (log.verifier_key + "\n").encode())
    atomic_write_bytes(out / "checkpoint", full_note)
    return ExportReport(size, written, skipped, total)
