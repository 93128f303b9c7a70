"""Audit a log store from its entries up: every hash, every checkpoint, every cosignature.

The tree is rebuilt from the entry bytes alone. Each leaf and node hash recomputed must
equal the one stored (a changed entry shows up as its own leaf hash), each checkpoint's root
must equal the rebuilt root at its size and carry a valid log signature, and each stored
cosignature must verify under its witness key. The first disagreement raises a
:class:`TamperError` naming the entry, node or checkpoint.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass

from motte.tlog._checkpoint import parse_checkpoint_unverified
from motte.tlog._errors import SignatureError, TamperError, TlogFormatError
from motte.tlog._log import LocalLog
from motte.tlog._merkle import Frontier, leaf_hash
from motte.tlog._note import Verifier, open_note


@dataclass(frozen=True)
class AuditReport:
    size: int
    root_hash: bytes
    nodes: int
    checkpoints: int
    cosignatures: int


def _short(h: bytes) -> str:
    return base64.b64encode(h).decode()


def audit_log(
    log: LocalLog, *, progress: Callable[[int, int], None] | None = None, batch: int = 8192
) -> AuditReport:
    store = log.store
    size = store.size()
    where = str(log.directory)
    checkpoints = {}
    for cp_size, note in store.checkpoints():
        try:
            body, parsed = parse_checkpoint_unverified(note)
            open_note(parsed, [log.signer.verifier], what=f"checkpoint {cp_size}")
        except (SignatureError, TlogFormatError) as e:
            raise TamperError(f"{where}: checkpoint of size {cp_size}: {e.message}") from None
        if body.size != cp_size or body.origin != log.origin:
            raise TamperError(f"{where}: checkpoint row {cp_size} holds another tree head")
        if cp_size > size:
            raise TamperError(
                f"{where}: checkpoint of size {cp_size} was signed but the log holds only "
                f"{size} entries: entries were lost"
            )
        checkpoints[cp_size] = body.root_hash

    frontier = Frontier()
    nodes_checked = 0
    # Roots met at checkpoint sizes are compared after the batch's hashes, so that a changed
    # entry is reported as that entry rather than as the checkpoint it falls under.
    roots_at: list[tuple[int, bytes]] = []

    def note_root() -> None:
        if frontier.size in checkpoints:
            roots_at.append((frontier.size, frontier.root()))

    def check_roots() -> None:
        for cp_size, root in roots_at:
            want = checkpoints[cp_size]
            if want != root:
                raise TamperError(
                    f"{where}: checkpoint of size {cp_size} has root {_short(want)} but the "
                    f"entries give {_short(root)}: the checkpoint, or entries before it "
                    "together with their hashes, were changed"
                )
        roots_at.clear()

    note_root()
    for index, data, stored in store.iter_entries(batch):
        if index != frontier.size:
            raise TamperError(f"{where}: entry {frontier.size} is missing")
        computed = frontier.append(leaf_hash(data))
        nodes_checked += len(computed)
        if stored != b"".join(h for _, h in computed):
            _explain(where, computed, stored)
        note_root()
        if index % batch == batch - 1:
            check_roots()
            if progress:
                progress(index + 1, size)
    check_roots()
    if progress:
        progress(size, size)
    if frontier.size != size:
        raise TamperError(f"{where}: entry indexes are not contiguous (stopped at {frontier.size})")
    cosigs = 0
    for cp_size, witness, line in store.cosignatures():
        if cp_size not in checkpoints:
            raise TamperError(f"{where}: cosignature for size {cp_size}, which was never signed")
        note = store.checkpoint_note(cp_size)
        assert note is not None
        text = parse_checkpoint_unverified(note)[1].text
        try:
            open_note(text + b"\n" + line.encode(), [Verifier.from_vkey(witness)])
        except (SignatureError, TlogFormatError) as e:
            raise TamperError(
                f"{where}: cosignature on checkpoint {cp_size}: {e.message}"
            ) from None
        cosigs += 1
    return AuditReport(size, frontier.root(), nodes_checked, len(checkpoints), cosigs)


def _explain(where: str, computed: list[tuple[tuple[int, int], bytes]], stored: bytes) -> None:
    """Name what differs between the hashes an entry should have completed and the stored."""
    if len(stored) != 32 * len(computed):
        index = computed[0][0][1]
        raise TamperError(
            f"{where}: entry {index} stores {len(stored) // 32} hashes, its position in the "
            f"tree completes {len(computed)}: a stored hash was added or removed"
        )
    for k, ((level, idx), h) in enumerate(computed):
        got = stored[32 * k : 32 * k + 32]
        if got == h:
            continue
        if level == 0:
            raise TamperError(
                f"{where}: entry {idx} hashes to {_short(h)} but the tree holds {_short(got)}: "
                "the entry was changed after it was logged"
            )
        raise TamperError(
            f"{where}: node (level {level}, index {idx}) is {_short(got)} but its children "
            f"give {_short(h)}: a stored hash was changed"
        )
