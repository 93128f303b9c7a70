"""RFC 6962 hashing and proofs, checked against the CT reference vectors and a naive model."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from motte.tlog import EMPTY_ROOT, ProofError, leaf_hash, node_hash, root_of
from motte.tlog._merkle import (
    Frontier,
    assemble,
    consistency_plan,
    inclusion_plan,
    plan_nodes,
    verify_consistency,
    verify_inclusion,
)

# The eight inputs and tree heads of the RFC 6962 reference implementation's tests
# (certificate-transparency merkle_tree_test), published in many ports.
CT_LEAVES = [bytes.fromhex(h) for h in
             ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
              "606162636465666768696a6b6c6d6e6f"]]  # fmt: skip
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
]  # fmt: skip


# -- a naive model straight from RFC 6962 §2.1, independent of the plan/fold code -------------


def mth(leaves: list[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1 << ((n - 1).bit_length() - 1)
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def path(m: int, leaves: list[bytes]) -> list[bytes]:
    n = len(leaves)
    if n <= 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*path(m, leaves[:k]), mth(leaves[k:])]
    return [*path(m - k, leaves[k:]), mth(leaves[:k])]


def subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [mth(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*subproof(m, leaves[:k], whole), mth(leaves[k:])]
    return [*subproof(m - k, leaves[k:], False), mth(leaves[:k])]


class Tree:
    """A frontier-built tree whose stored nodes live in a dict, as the store keeps them."""

    def __init__(self, n: int) -> None:
        self.entries = [b"entry-%d" % i for i in range(n)]
        self.leaves = [leaf_hash(e) for e in self.entries]
        self.nodes: dict[tuple[int, int], bytes] = {}
        f = Frontier()
        for leaf in self.leaves:
            self.nodes.update(f.append(leaf))
        self.frontier = f

    def inclusion(self, index: int, size: int) -> list[bytes]:
        plan = inclusion_plan(index, size)
        return assemble(plan, {n: self.nodes[n] for n in plan_nodes(plan)})

    def consistency(self, old: int, new: int) -> list[bytes]:
        plan = consistency_plan(old, new)
        return assemble(plan, {n: self.nodes[n] for n in plan_nodes(plan)})


def test_ct_reference_roots():
    leaves = [leaf_hash(e) for e in CT_LEAVES]
    assert EMPTY_ROOT.hex() == CT_ROOTS[0]
    for n in range(9):
        assert root_of(CT_LEAVES[:n]).hex() == CT_ROOTS[n]
        assert mth(leaves[:n]).hex() == CT_ROOTS[n]


@pytest.mark.parametrize(("index", "size", "proof"), CT_INCLUSION)
def test_ct_reference_inclusion_proofs(index, size, proof):
    leaf = leaf_hash(CT_LEAVES[index])
    proof_b = [bytes.fromhex(h) for h in proof]
    verify_inclusion(leaf, index, size, proof_b, bytes.fromhex(CT_ROOTS[size]))
    nodes: dict = {}
    f = Frontier()
    for e in CT_LEAVES:
        nodes.update(f.append(leaf_hash(e)))
    plan = inclusion_plan(index, size)
    assert assemble(plan, nodes) == proof_b


def test_every_proof_matches_the_rfc_model_up_to_70_leaves():
    t = Tree(70)
    for size in range(1, 71):
        root = mth(t.leaves[:size])
        assert Frontier(size, [t.nodes[c] for c in Frontier.nodes_for(size)]).root() == root
        for i in range(size):
            p = t.inclusion(i, size)
            assert p == path(i, t.leaves[:size])
            verify_inclusion(t.leaves[i], i, size, p, root)
        for old in range(0, size + 1):
            p = t.consistency(old, size)
            want = [] if old in (0, size) else subproof(old, t.leaves[:size], True)
            assert p == want
            verify_consistency(old, size, p, mth(t.leaves[:old]), root)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 2000).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_inclusion_proofs_in_large_trees(args):
    size, index = args
    t = TREE_2000
    p = t.inclusion(index, size)
    assert len(p) <= size.bit_length()
    verify_inclusion(t.leaves[index], index, size, p, mth_cached(size))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 2000).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))))
def test_consistency_proofs_in_large_trees(args):
    old, new = args
    t = TREE_2000
    verify_consistency(old, new, t.consistency(old, new), mth_cached(old), mth_cached(new))


TREE_2000 = Tree(2000)
_ROOTS: dict[int, bytes] = {}


def mth_cached(n: int) -> bytes:
    if n not in _ROOTS:
        _ROOTS[n] = Frontier(n, [TREE_2000.nodes[c] for c in Frontier.nodes_for(n)]).root()
    return _ROOTS[n]


@settings(max_examples=80, deadline=None)
@given(st.integers(2, 300).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))),
       st.data())  # fmt: skip
def test_any_changed_proof_hash_or_leaf_or_index_is_rejected(args, data):
    size, index = args
    t = TREE_2000
    root = mth_cached(size)
    p = t.inclusion(index, size)
    with pytest.raises(ProofError):  # a different entry
        verify_inclusion(leaf_hash(b"forged"), index, size, p, root)
    if p:
        i = data.draw(st.integers(0, len(p) - 1))
        bit = data.draw(st.integers(0, 255))
        bad = list(p)
        bad[i] = bytes(b ^ (1 << (bit % 8)) if j == bit // 8 else b for j, b in enumerate(p[i]))
        with pytest.raises(ProofError):
            verify_inclusion(t.leaves[index], index, size, bad, root)
        with pytest.raises(ProofError, match=r"too few"):
            verify_inclusion(t.leaves[index], index, size, p[:-1], root)
    with pytest.raises(ProofError, match=r"too many"):
        verify_inclusion(t.leaves[index], index, size, [*p, b"\0" * 32], root)
    other = data.draw(st.integers(0, size - 1))
    if t.leaves[other] != t.leaves[index] and other != index:
        with pytest.raises(ProofError):  # the same proof claimed for another position
            verify_inclusion(t.leaves[index], other, size, p, root)


@settings(max_examples=80, deadline=None)
@given(st.integers(2, 300).flatmap(lambda n: st.tuples(st.integers(1, n - 1), st.just(n))),
       st.data())  # fmt: skip
def test_changed_consistency_proof_or_root_is_rejected(args, data):
    old, new = args
    p = TREE_2000.consistency(old, new)
    i = data.draw(st.integers(0, len(p) - 1))
    bad = list(p)
    bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
    with pytest.raises(ProofError):
        verify_consistency(old, new, bad, mth_cached(old), mth_cached(new))
    with pytest.raises(ProofError):
        verify_consistency(old, new, p, mth_cached(old - 1) if old > 1 else b"x" * 32,
                           mth_cached(new))  # fmt: skip
    with pytest.raises(ProofError):
        verify_consistency(old, new, p, mth_cached(old), mth_cached(new - 1))


def test_consistency_edge_cases():
    t = TREE_2000
    verify_consistency(0, 5, [], EMPTY_ROOT, mth_cached(5))
    verify_consistency(5, 5, [], mth_cached(5), mth_cached(5))
    with pytest.raises(ProofError, match=r"empty tree must be empty"):
        verify_consistency(0, 5, [b"\0" * 32], EMPTY_ROOT, mth_cached(5))
    with pytest.raises(ProofError, match=r"different roots"):
        verify_consistency(5, 5, [], mth_cached(5), mth_cached(6))
    with pytest.raises(ProofError, match=r"is empty"):
        verify_consistency(4, 5, [], mth_cached(4), mth_cached(5))
    with pytest.raises(ProofError, match=r"old size is larger"):
        verify_consistency(6, 5, t.consistency(5, 6), mth_cached(6), mth_cached(5))
    with pytest.raises(ProofError, match=r"not 32"):
        verify_consistency(4, 5, [b"short"], mth_cached(4), mth_cached(5))


def test_inclusion_rejects_an_index_outside_the_tree():
    with pytest.raises(ProofError, match=r"outside the tree"):
        verify_inclusion(leaf_hash(b"x"), 5, 5, [], EMPTY_ROOT)


def test_frontier_nodes_are_the_set_bits_of_the_size():
    assert Frontier.nodes_for(0) == []
    assert Frontier.nodes_for(6) == [(2, 0), (1, 2)]
    assert Frontier.nodes_for(13) == [(3, 0), (2, 2), (0, 12)]
