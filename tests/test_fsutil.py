import os

import pytest

from motte.fsutil import atomic_write_bytes, atomic_writer, locked_directory


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
