"""Offline inclusion proofs in the C2SP tlog-proof@v1 text format, and verifying them.

::

    c2sp.org/tlog-proof@v1
    [extra <base64>]
    index 17
    <base64 hash>        one per line, from the leaf's sibling up to the root's child
    ...
                         (a blank line)
    <the checkpoint note, log signature and witness cosignatures, verbatim>
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass

from motte.tlog._checkpoint import Checkpoint, TrustedLogs, verify_checkpoint
from motte.tlog._errors import ProofError, TlogFormatError
from motte.tlog._merkle import HASH_SIZE, leaf_hash, verify_inclusion

HEADER = "c2sp.org/tlog-proof@v1"
#: A proof has at most 63 hashes (a 2**63-leaf tree); with a checkpoint of up to 100
#: signatures a bundle stays well under this bound.
MAX_BUNDLE_SIZE = 1 << 20


@dataclass(frozen=True)
class InclusionBundle:
    """An entry's index, its audit path, and the (co)signed checkpoint the path leads to."""

    index: int
    proof: tuple[bytes, ...]
    checkpoint: bytes
    extra: bytes | None = None

    def to_bytes(self) -> bytes:
        lines = [HEADER]
        if self.extra is not None:
            lines.append("extra " + base64.b64encode(self.extra).decode())
        lines.append(f"index {self.index}")
        lines += [base64.b64encode(h).decode() for h in self.proof]
        return ("\n".join(lines) + "\n\n").encode() + self.checkpoint

    def to_text(self) -> str:
        return self.to_bytes().decode()

    @classmethod
    def from_bytes(cls, data: bytes | str) -> InclusionBundle:
        raw = data.encode() if isinstance(data, str) else data
        what = "inclusion proof (tlog-proof)"
        if len(raw) > MAX_BUNDLE_SIZE:
            raise TlogFormatError(f"{what}: {len(raw)} bytes is larger than {MAX_BUNDLE_SIZE}")
        head, sep, checkpoint = raw.partition(b"\n\n")
        if not sep:
            raise TlogFormatError(f"{what}: no blank line before the checkpoint")
        try:
            lines = head.decode("ascii").split("\n")
        except UnicodeDecodeError:
            raise TlogFormatError(f"{what}: the proof lines are not ASCII") from None
        if lines[0] != HEADER:
            raise TlogFormatError(f"{what}: line 1 is {lines[0][:40]!r}, not {HEADER!r}")
        pos, extra = 1, None
        if pos < len(lines) and lines[pos].startswith("extra "):
            extra = _b64(lines[pos][6:], f"{what}: line {pos + 1} (extra)")
            pos += 1
        if pos >= len(lines) or not lines[pos].startswith("index "):
            raise TlogFormatError(f"{what}: line {pos + 1} is not 'index N'")
        idx = lines[pos][6:]
        if not (idx.isdigit() and str(int(idx)) == idx):
            raise TlogFormatError(f"{what}: line {pos + 1}: index {idx[:24]!r} is not a decimal")
        proof = []
        for n, line in enumerate(lines[pos + 1 :], start=pos + 2):
            h = _b64(line, f"{what}: line {n}")
            if len(h) != HASH_SIZE:
                raise TlogFormatError(f"{what}: line {n}: a hash is 32 bytes, not {len(h)}")
            proof.append(h)
        if len(proof) > 63:
            raise TlogFormatError(f"{what}: {len(proof)} proof hashes, more than 63")
        return cls(int(idx), tuple(proof), checkpoint, extra)


def _b64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise TlogFormatError(f"{what}: not base64") from None


def verify_inclusion_bundle(
    entry: bytes,
    bundle: InclusionBundle | bytes | str,
    trusted_keys: TrustedLogs | Iterable[str],
    *,
    now: float | None = None,
) -> Checkpoint:
    """Check that ``entry`` is in the log: return the verified checkpoint, or raise.

    The checkpoint must verify under ``trusted_keys`` (log key, witness quorum), and the
    audit path must lead from the entry's leaf hash to the checkpoint's root. What this
    does *not* do is compare the checkpoint with the last one seen from the log; that is
    :func:`motte.tlog.check_and_remember`.
    """
    if not isinstance(bundle, InclusionBundle):
        bundle = InclusionBundle.from_bytes(bundle)
    cp = verify_checkpoint(bundle.checkpoint, trusted_keys, now=now)
    if bundle.index >= cp.size:
        raise ProofError(
            f"inclusion proof: entry index {bundle.index} is not in the checkpoint of "
            f"{cp.origin}, which holds {cp.size} entries"
        )
    try:
        verify_inclusion(leaf_hash(entry), bundle.index, cp.size, bundle.proof, cp.root_hash)
    except ProofError as e:
        raise ProofError(f"{cp.origin}: {e.message}") from None
    return cp
