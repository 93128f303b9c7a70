"""RFC 6962 / RFC 9162 Merkle tree math: pure functions on bytes, no storage, no I/O.

Nodes are named by coordinates ``(level, index)``: the perfect subtree of ``2**level`` leaves
starting at leaf ``index << level``. A store keeps the hash of every perfect subtree it has
completed; any other hash a proof needs (the root of a tree whose size is not a power of two,
or of its right edge) folds a few of those together. Proof generation is therefore split in
two, sans-IO style: a *plan* says which stored nodes a proof needs, the caller reads them in
one batch, and :func:`assemble` folds them into proof hashes. A proof at size n reads
O(log n) nodes.

Verification follows RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency) step by step.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from motte.tlog._errors import ProofError, TlogUsageError

HASH_SIZE = 32
#: The root of the empty tree: SHA-256 of nothing (RFC 6962 §2.1).
EMPTY_ROOT = hashlib.sha256(b"").digest()

Node = tuple[int, int]
#: One proof element: the stored nodes whose right fold is that element's hash.
Plan = list[list[Node]]


def leaf_hash(entry: bytes) -> bytes:
    """SHA-256(0x00 || entry)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly less than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _perfect(lo: int, width: int) -> Node:
    level = width.bit_length() - 1
    if width != 1 << level or lo % width:
        raise AssertionError(f"[{lo}, {lo + width}) is not a perfect aligned subtree")
    return (level, lo >> level)


def range_nodes(lo: int, hi: int) -> list[Node]:
    """The perfect subtrees, left to right, whose right fold is MTH(D[lo:hi]).

    Only ranges that RFC 6962's recursion produces are accepted (their left parts are
    aligned), which is every range a proof or a root needs.
    """
    nodes = []
    while hi - lo > 0:
        width = hi - lo
        step = width if width & (width - 1) == 0 else _split(width)
        nodes.append(_perfect(lo, step))
        lo += step
    return nodes


def fold(hashes: Sequence[bytes]) -> bytes:
    """Right fold: H(h0, H(h1, ... H(h[-2], h[-1]))), the root of a decomposed range."""
    h = hashes[-1]
    for left in reversed(hashes[:-1]):
        h = node_hash(left, h)
    return h


def root_plan(size: int) -> list[Node]:
    """The stored nodes whose fold is the root of the tree of ``size`` leaves (size > 0)."""
    return range_nodes(0, size)


Range = tuple[int, int]


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The leaf ranges [lo, hi) whose tree hashes form the audit path of leaf ``index`` in a
    tree of ``size`` (RFC 6962 PATH), from the leaf's sibling up to the root's child."""
    if not 0 <= index < size:
        raise TlogUsageError(f"leaf index {index} is outside a tree of size {size}")
    top_down: list[Range] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            top_down.append((lo + k, hi))
            hi = lo + k
        else:
            top_down.append((lo, lo + k))
            lo += k
    top_down.reverse()
    return top_down


def consistency_ranges(old_size: int, new_size: int) -> list[Range]:
    """The leaf ranges whose tree hashes form the consistency proof from ``old_size`` to
    ``new_size`` (RFC 6962 SUBPROOF). Empty when the sizes are equal or the old tree empty."""
    if not 0 <= old_size <= new_size:
        raise TlogUsageError(
            f"no consistency proof from size {old_size} to size {new_size}: sizes must grow"
        )
    if old_size in (0, new_size):
        return []
    top_down: list[Range] = []
    m, lo, hi, whole = old_size, 0, new_size, True
    while True:
        n = hi - lo
        if m == n:
            if not whole:
                top_down.append((lo, hi))
            break
        k = _split(n)
        if m <= k:
            top_down.append((lo + k, hi))
            hi = lo + k
        else:
            top_down.append((lo, lo + k))
            m -= k
            lo += k
            whole = False
    top_down.reverse()
    return top_down


def inclusion_plan(index: int, size: int) -> Plan:
    """Which stored nodes the audit path of leaf ``index`` needs, per proof element."""
    return [range_nodes(lo, hi) for lo, hi in inclusion_ranges(index, size)]


def consistency_plan(old_size: int, new_size: int) -> Plan:
    """Which stored nodes the consistency proof needs, per proof element."""
    return [range_nodes(lo, hi) for lo, hi in consistency_ranges(old_size, new_size)]


def plan_nodes(plan: Plan) -> list[Node]:
    """Every distinct node a plan reads, sorted (the order a store reads fastest)."""
    return sorted({node for element in plan for node in element})


def assemble(plan: Plan, hashes: Mapping[Node, bytes]) -> list[bytes]:
    """Fold the nodes read for ``plan`` into the proof's hashes."""
    return [fold([hashes[node] for node in element]) for element in plan]


# -- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) ---------------------------------------------


def _check_hashes(proof: Sequence[bytes], what: str) -> None:
    for i, h in enumerate(proof):
        if len(h) != HASH_SIZE:
            raise ProofError(f"{what}: hash {i + 1} is {len(h)} bytes, not {HASH_SIZE}")


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` leads to from ``leaf`` at ``index``; raises if it cannot."""
    what = f"inclusion proof for leaf {index} in a tree of size {size}"
    if not 0 <= index < size:
        raise ProofError(f"{what}: the index is outside the tree")
    _check_hashes(proof, what)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ProofError(f"{what}: the proof has {len(proof)} hashes, too many")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"{what}: the proof has {len(proof)} hashes, too few")
    return r


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows ``leaf`` at ``index`` under ``root``."""
    got = root_from_inclusion_proof(leaf, index, size, proof)
    if got != root:
        raise ProofError(
            f"inclusion proof for leaf {index} in a tree of size {size} leads to root "
            f"{base64.b64encode(got).decode()}, not the checkpoint's "
            f"{base64.b64encode(root).decode()}: the entry or a proof hash was changed"
        )


def verify_consistency(
    old_size: int, new_size: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> None:
    """Raise :class:`ProofError` unless ``proof`` shows the old tree is a prefix of the new."""
    what = f"consistency proof from size {old_size} to size {new_size}"
    if not 0 <= old_size <= new_size:
        raise ProofError(f"{what}: the old size is larger than the new")
    _check_hashes(proof, what)
    if old_size == 0:
        if proof:
            raise ProofError(f"{what}: a proof from the empty tree must be empty")
        return
    if old_size == new_size:
        if proof:
            raise ProofError(f"{what}: a proof between equal sizes must be empty")
        if old_root != new_root:
            raise ProofError(f"{what}: equal sizes with different roots")
        return
    if not proof:
        raise ProofError(f"{what}: the proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is the first node
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError(f"{what}: the proof has {len(proof)} hashes, too many")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError(f"{what}: the proof has {len(proof)} hashes, too few")
    if fr != old_root:
        raise ProofError(f"{what}: it does not lead to the old root")
    if sr != new_root:
        raise ProofError(f"{what}: it does not lead to the new root")


# -- the right edge of a growing tree ----------------------------------------------------------


@dataclass
class Frontier:
    """The roots of the perfect subtrees along the right edge of a tree (a compact range).

    For a tree of ``size`` leaves there is one root per set bit of ``size``, largest (leftmost)
    first. Appending a leaf completes zero or more subtrees; :meth:`append` returns every node
    it completed so a store can keep them, and the root is the fold of the frontier.
    """

    size: int = 0
    hashes: list[bytes] = field(default_factory=list)

    @staticmethod
    def nodes_for(size: int) -> list[Node]:
        """The coordinates of the frontier of a tree of ``size`` leaves, left to right."""
        return [
            (level, (size >> level) - 1)
            for level in range(size.bit_length() - 1, -1, -1)
            if size >> level & 1
        ]

    def append(self, leaf: bytes) -> list[tuple[Node, bytes]]:
        index = self.size
        new = [((0, index), leaf)]
        h, level = leaf, 0
        while index & 1:
            h = node_hash(self.hashes.pop(), h)
            level += 1
            index >>= 1
            new.append(((level, index), h))
        self.hashes.append(h)
        self.size += 1
        return new

    def root(self) -> bytes:
        return fold(self.hashes) if self.hashes else EMPTY_ROOT

    def copy(self) -> Frontier:
        return Frontier(self.size, list(self.hashes))


def root_of(entries: Iterable[bytes]) -> bytes:
    """The root of a tree holding ``entries`` (for tests, tools and small trees)."""
    f = Frontier()
    for e in entries:
        f.append(leaf_hash(e))
    return f.root()
