"""The sealed-volume snapshot format: round trips, and every way a snapshot must not open."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from motte.keep._snapshot import (
    CHUNK,
    SNAPSHOT_FILE,
    TAG,
    SnapshotError,
    SnapshotWriteError,
    open_snapshot,
    peek_header,
    write_snapshot,
)

KEY = bytes(range(32))
VOLUME = "acme/counter:data"


def tree(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {}
    for p in sorted(root.rglob("*")):
        out[str(p.relative_to(root))] = p.read_bytes() if p.is_file() else None
    return out


def write(src: Path, dest: Path, version: int = 1, **kw) -> Path:
    w = write_snapshot(
        src, dest, KEY, volume=VOLUME, sealed_to="namespace", version=version,
        limit=kw.pop("limit", 1 << 30), **kw,
    )  # fmt: skip
    return w.path


def unpack(path: Path, into: Path, *, key: bytes = KEY, expect: str = VOLUME) -> Path:
    into.mkdir()
    open_snapshot(path, key, into, expect=expect, limit=1 << 30)
    return into


@pytest.fixture
def src(tmp_path):
    s = tmp_path / "src"
    (s / "sub" / "deeper").mkdir(parents=True)
    (s / "count").write_text("41\n")
    (s / "note").write_text("motte-volume-canary:3b1f0e9a7c")
    (s / "empty").write_bytes(b"")
    (s / "sub" / "big").write_bytes(os.urandom(2 * CHUNK + 123))
    (s / "sub" / "deeper" / "exact").write_bytes(b"x" * CHUNK)
    return s


def test_a_tree_round_trips_and_the_file_holds_no_plaintext(src, tmp_path):
    path = write(src, tmp_path / "host", version=7)
    header = peek_header(path)
    assert (header.volume, header.version, header.sealed_to) == (VOLUME, 7, "namespace")
    assert tree(unpack(path, tmp_path / "out")) == tree(src)
    data = path.read_bytes()
    assert b"motte-volume-canary" not in data
    assert (src / "sub" / "big").read_bytes()[:64] not in data
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.listdir(path.parent) == [SNAPSHOT_FILE]  # no temporary file left


def test_an_empty_volume_and_a_volume_of_exactly_one_chunk_round_trip(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert tree(unpack(write(empty, tmp_path / "h1"), tmp_path / "o1")) == {}
    exact = tmp_path / "exact"
    exact.mkdir()
    # record header (F, u16, name, u32, u64) + data + end record = exactly one chunk
    (exact / "f").write_bytes(b"y" * (CHUNK - 16 - 9))
    path = write(exact, tmp_path / "h2")
    assert peek_header(path).size == CHUNK
    assert tree(unpack(path, tmp_path / "o2")) == tree(exact)


@pytest.mark.parametrize("where", ["magic", "header", "first chunk", "middle", "last tag"])
def test_one_flipped_byte_anywhere_opens_nothing(src, tmp_path, where):
    path = write(src, tmp_path / "host")
    data = bytearray(path.read_bytes())
    header_len = len(peek_header(path).raw)
    offset = {
        "magic": 3,
        "header": header_len - 5,
        "first chunk": header_len + 10,
        "middle": len(data) // 2,
        "last tag": len(data) - 1,
    }[where]
    data[offset] ^= 0x01
    bad = tmp_path / "bad.sealed"
    bad.write_bytes(data)
    with pytest.raises(SnapshotError) as info:
        unpack(bad, tmp_path / "out")
    assert "\n" not in info.value.message


@pytest.mark.parametrize("cut", ["a byte", "the last chunk", "all but the header", "the header"])
def test_a_truncated_snapshot_opens_nothing(src, tmp_path, cut):
    path = write(src, tmp_path / "host")
    data = path.read_bytes()
    header_len = len(peek_header(path).raw)
    keep = {
        "a byte": len(data) - 1,
        "the last chunk": header_len + 3 * (CHUNK + TAG),
        "all but the header": header_len,
        "the header": header_len - 4,
    }[cut]
    bad = tmp_path / "bad.sealed"
    bad.write_bytes(data[:keep])
    with pytest.raises(SnapshotError, match=r"truncated|does not open"):
        unpack(bad, tmp_path / "out")


def test_reordered_or_repeated_chunks_open_nothing(src, tmp_path):
    path = write(src, tmp_path / "host")
    data = path.read_bytes()
    h = len(peek_header(path).raw)
    step = CHUNK + TAG
    c0, c1 = data[h : h + step], data[h + step : h + 2 * step]
    for body in (c1 + c0 + data[h + 2 * step :], c0 + c0 + data[h + 2 * step :]):
        bad = tmp_path / "bad.sealed"
        bad.write_bytes(data[:h] + body)
        with pytest.raises(SnapshotError, match=r"chunk [01] does not open"):
            unpack(bad, tmp_path / f"out{len(list(tmp_path.iterdir()))}")


def test_another_volumes_snapshot_or_another_key_opens_nothing(src, tmp_path):
    path = write(src, tmp_path / "host")
    with pytest.raises(SnapshotError, match="a snapshot of volume acme/counter:data, not acme/"):
        unpack(path, tmp_path / "o1", expect="acme/other:data")
    with pytest.raises(SnapshotError, match="chunk 0 does not open"):
        unpack(path, tmp_path / "o2", key=b"\x01" * 32)
    # A header edited to name the other volume: the chunks were sealed under the original.
    data = path.read_bytes().replace(b"acme/counter:data", b"acme/counter:logs")
    (tmp_path / "edited").write_bytes(data)
    with pytest.raises(SnapshotError):
        unpack(tmp_path / "edited", tmp_path / "o3", expect="acme/counter:logs")


def test_writing_is_atomic_and_bounded(src, tmp_path):
    host = tmp_path / "host"
    first = write(src, host, version=1).read_bytes()
    with pytest.raises(SnapshotWriteError, match="more than its size limit"):
        write(src, host, version=2, limit=1024)
    assert (host / SNAPSHOT_FILE).read_bytes() == first
    assert os.listdir(host) == [SNAPSHOT_FILE]


def test_only_files_and_directories_are_kept_and_excluded_names_are_left_out(src, tmp_path):
    os.symlink("/etc/passwd", src / "link")
    os.mkfifo(src / "fifo")
    (src / ".motte-flush").write_bytes(b"")
    w = write_snapshot(
        src, tmp_path / "host", KEY, volume=VOLUME, sealed_to="namespace", version=1,
        limit=1 << 30, exclude=(".motte-flush",),
    )  # fmt: skip
    assert sorted(w.skipped) == ["fifo", "link"]
    out = tree(unpack(w.path, tmp_path / "out"))
    assert "link" not in out and "fifo" not in out and ".motte-flush" not in out
    assert out["count"] == b"41\n"


def test_a_malicious_archive_path_is_refused(tmp_path, monkeypatch):
    """Even under the right key, an archive naming ../ is not unpacked (defence in depth)."""
    from motte.keep import _snapshot as snap

    src = tmp_path / "src"
    src.mkdir()
    (tmp_path / "escape").write_text("x")
    name = b"../escape"
    monkeypatch.setattr(
        snap, "scan_tree", lambda root, **kw: snap.Tree(((name, False, 0o600, 1),), 25 + 9, ())
    )
    path = write(src, tmp_path / "host")
    monkeypatch.undo()
    with pytest.raises(SnapshotError, match="not a relative one"):
        unpack(path, tmp_path / "out")
    assert (tmp_path / "escape").read_text() == "x"
    assert os.listdir(tmp_path / "out") == []
