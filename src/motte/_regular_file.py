"""Read a file that must be a regular file, without ever blocking on a FIFO or a device
(kept apart from motte.fsutil, whose tempfile import ``motte run`` does not need)."""

from __future__ import annotations

import os


class NotRegularFileError(OSError):
    """A path names a FIFO, a device or a socket where a file's contents were expected."""


def read_regular(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """Up to ``max_bytes + 1`` bytes of the regular file ``path`` (one more than allowed, so
    the caller can tell a file that is too large).

    Opened without blocking and checked before anything is read: a FIFO, a terminal or a
    device named where a file was expected fails at once (:class:`NotRegularFileError`)
    instead of waiting for a writer or reading forever. Other failures are the usual
    :class:`OSError` subclasses (FileNotFoundError, IsADirectoryError, PermissionError).
    """
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(21, "Is a directory", str(path))
        if not stat.S_ISREG(mode):
            what = (
                "a FIFO"
                if stat.S_ISFIFO(mode)
                else "a socket"
                if stat.S_ISSOCK(mode)
                else "a device"
            )
            raise NotRegularFileError(0, f"not a regular file: {what}", str(path))
        os.set_blocking(fd, True)
        chunks = []
        left = max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
