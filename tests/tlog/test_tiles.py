"""C2SP tlog-tiles paths, widths, entry bundles, and proofs read back out of tiles."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from motte.tlog import LocalLog, Tile, TlogFormatError, TlogUsageError, parse_tile_path
from motte.tlog._merkle import assemble, consistency_plan, inclusion_plan, plan_nodes
from motte.tlog._tiles import (
    decode_entry_bundle,
    encode_entry_bundle,
    encode_index,
    nodes_from_tiles,
    tile_for_node,
    tiles_for_size,
)


@pytest.mark.parametrize(
    ("n", "path"),
    [(0, "000"), (7, "007"), (999, "999"), (1000, "x001/000"), (1234067, "x001/x234/067")],
)
def test_index_encoding(n, path):
    assert encode_index(n) == path


@given(st.integers(0, 2**60), st.integers(1, 256), st.one_of(st.none(), st.integers(0, 63)))
def test_paths_round_trip(index, width, level):
    t = Tile(level, index, width)
    assert parse_tile_path(t.path) == t


def test_paths_match_the_spec():
    assert Tile(0, 1234067).path == "tile/0/x001/x234/067"
    assert Tile(2, 5, 17).path == "tile/2/005.p/17"
    assert Tile(None, 1000, 3).path == "tile/entries/x001/000.p/3"


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/1",  # not three digits
        "tile/00/001",  # level with a leading zero
        "tile/64/001",  # level past 63
        "tile/0/x001",  # last element with x
        "tile/0/001/002",  # inner element without x
        "tile/0/x000/001",  # leading zero group
        "tile/0/001.p/256",  # a partial tile is narrower than 256
        "tile/0/001.p/0",
        "tile/0/001.p/07",
        "tile/0/\u0663\u0663\u0663",  # digits, but not ASCII ones
        "tiles/0/001",
        "tile/data/001",
        "tile/0/x001/x001/x001/x001/x001/x001/x001/001",  # absurdly long index
    ],
)
def test_bad_paths_are_rejected(path):
    with pytest.raises(TlogFormatError):
        parse_tile_path(path)


def test_tiles_for_size_follow_the_spec_example():
    # "a tree of size 70,000 will be represented by 273 full level 0 tiles, one partial level 0
    # tile of width 112, one full level 1 tile, one partial level 1 tile of width 17, and one
    # partial level 2 tile of width 1"
    tiles = [t for t in tiles_for_size(70000) if not t.is_entries]
    assert len([t for t in tiles if t.level == 0 and t.width == 256]) == 273
    assert [t for t in tiles if t.level == 0 and t.width < 256] == [Tile(0, 273, 112)]
    assert [t for t in tiles if t.level == 1] == [Tile(1, 0), Tile(1, 1, 17)]
    assert [t for t in tiles if t.level == 2] == [Tile(2, 0, 1)]
    # "a tree of size 256 will be represented by a full level 0 tile and a partial level 1
    # tile of width 1"
    assert [t for t in tiles_for_size(256) if not t.is_entries] == [Tile(0, 0), Tile(1, 0, 1)]


def test_entry_bundles_round_trip_and_reject_truncation():
    entries = [b"", b"a", b"x" * 65535]
    data = encode_entry_bundle(entries)
    assert data[:2] == b"\0\0" and decode_entry_bundle(data) == entries
    with pytest.raises(TlogFormatError, match=r"entry 2 at byte 5 is truncated"):
        decode_entry_bundle(data[:-1])
    with pytest.raises(TlogFormatError, match=r"truncated length"):
        decode_entry_bundle(b"\0")
    with pytest.raises(TlogUsageError, match=r"larger than 65535"):
        encode_entry_bundle([b"x" * 65536])


@pytest.fixture(scope="module")
def big_log(tmp_path_factory):
    """A log of 66,000 entries: full and partial tiles on levels 0, 1 and 2."""
    log = LocalLog(tmp_path_factory.mktemp("tiles") / "log", origin="example.com/tiles")
    log.append_many([b"%d" % i for i in range(66000)])
    yield log
    log.close()


def test_served_tiles_hold_what_the_spec_says(big_log):
    store = big_log.store
    size = big_log.size
    for t in [Tile(0, 0), Tile(0, 257, 208), Tile(1, 0), Tile(1, 1, 1), Tile(2, 0, 1)]:
        data = store.read_tile(t)
        assert data is not None and len(data) == 32 * t.width, t
    assert store.read_tile(Tile(0, 257)) is None  # not full yet
    assert store.read_tile(Tile(1, 1, 2)) is None
    # a level-1 hash is the root of the matching full level-0 tile
    from motte.tlog._merkle import root_of

    level1 = store.read_tile(Tile(1, 0))
    assert level1[32:64] == root_of([b"%d" % i for i in range(256, 512)])
    bundle = store.read_tile(Tile(None, 257, 208))
    assert decode_entry_bundle(bundle) == [b"%d" % i for i in range(257 * 256, size)]


@pytest.mark.parametrize(
    ("index", "old", "size"),
    [(0, 1, 66000), (65999, 65536, 66000), (40000, 300, 65537), (12345, 65535, 65536)],
)
def test_proofs_from_tiles_equal_proofs_from_the_store(big_log, index, old, size):
    tiles = {}
    for plan in (inclusion_plan(index, size), consistency_plan(old, size)):
        nodes = plan_nodes(plan)
        for n in nodes:
            t = tile_for_node(n, size)
            tiles[t] = big_log.store.read_tile(t)
        assert assemble(plan, nodes_from_tiles(nodes, size, tiles)) == assemble(
            plan, big_log.store.read_nodes(nodes)
        )
