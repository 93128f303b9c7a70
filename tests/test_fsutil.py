import os

import pytest

from motte.fsutil import atomic_write_bytes, atomic_writer, create_exclusive, locked_directory


def test_atomic_write_replaces_whole(tmp_path):
    p = tmp_path / "sub" / "f"
    atomic_write_bytes(p, b"one")
    atomic_write_bytes(p, b"two", mode=0o600)
    assert p.read_bytes() == b"two"
    assert (os.stat(p).st_mode & 0o777) == 0o600
    assert [x.name for x in p.parent.iterdir()] == ["f"]


def test_failed_write_keeps_old_content_and_leaves_no_temp(tmp_path):
    p = tmp_path / "f"
    atomic_write_bytes(p, b"old")
    with pytest.raises(RuntimeError), atomic_writer(p) as f:
        f.write(b"half")
        raise RuntimeError("crash in the middle")
    assert p.read_bytes() == b"old"
    assert [x.name for x in tmp_path.iterdir()] == ["f"]


def test_locked_directory_excludes_others_until_the_block_ends(tmp_path):
    import fcntl

    d = tmp_path / "made" / "here"

    def try_lock() -> bool:
        fd = os.open(d / ".lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        finally:
            os.close(fd)

    with locked_directory(d):
        assert not try_lock()  # another open file description is shut out
    assert try_lock()


def test_create_exclusive_creates_once_and_never_replaces(tmp_path):
    p = tmp_path / "keys" / "k"
    assert create_exclusive(p, b"first") is True
    assert (os.stat(p).st_mode & 0o777) == 0o600
    assert create_exclusive(p, b"second", mode=0o644) is False
    assert p.read_bytes() == b"first"
    assert [x.name for x in p.parent.iterdir()] == ["k"]  # no temporary file left behind


def test_create_exclusive_races_end_with_one_complete_file(tmp_path):
    import threading

    p = tmp_path / "k"
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(create_exclusive(p, bytes([i]) * 4096)))
        for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 7 + [True]
    data = p.read_bytes()
    assert len(data) == 4096 and len(set(data)) == 1
