"""TCP listeners: each connection a fresh instance whose standard input and output are the
connection's two directions, streamed through pipes as the bytes come.

Semantics (docs/keeps.md, "Listeners"):

- The guest reads what the client sends as it arrives (an interactive protocol works: a
  line in, a line out). It reads end of file when the client closes its side.
- What the guest writes is sent to the client as it is written; the connection closes
  when the guest exits (after everything it wrote has been sent) or when it is stopped.
- The manifest's limits hold per connection. A guest blocked in a read or a write when its
  wall time runs out is released by closing its pipes (end of file, EPIPE), so it returns
  to wasm, where the limit stops it.
- With TLS, a client's close (close_notify) ends the whole connection: asyncio's TLS
  transport has no half-close, so a client that wants the guest's answer reads it before
  it closes. Plain TCP (``tls = false``) keeps the half-close: a client may shut down its
  writing side, and the guest reads end of file and can still answer.

Pipes, not memory: wasmtime opens a guest's stdio by path, and ``/proc/self/fd/N`` of a
pipe gives it its own blocking end while the Keep's end is non-blocking on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from typing import TYPE_CHECKING, Any

from motte.errors import MotteError
from motte.keep.serve._http import GONE, READ_SIZE

if TYPE_CHECKING:
    from motte.keep.serve._server import Serving, Tracked

log = logging.getLogger("motte.keep.serve")

#: After the wall-time limit, how long a guest gets to stop at a tick by itself before its
#: pipes are closed under it.
UNBLOCK_GRACE = 0.05


class _FdEnd:
    """The Keep's non-blocking end of a pipe, awaited on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, fd: int, writing: bool) -> None:
        os.set_blocking(fd, False)
        self._loop = loop
        self._fd: int | None = fd
        self._writing = writing
        self._waiter: asyncio.Future[None] | None = None

    async def _wait(self) -> None:
        assert self._fd is not None
        fd = self._fd
        waiter = self._waiter = self._loop.create_future()
        add, remove = (
            (self._loop.add_writer, self._loop.remove_writer)
            if self._writing
            else (self._loop.add_reader, self._loop.remove_reader)
        )
        add(fd, lambda: waiter.done() or waiter.set_result(None))
        try:
            await waiter
        finally:
            self._waiter = None
            if self._fd == fd:
                remove(fd)

    async def write(self, data: bytes) -> None:
        """Write everything; BrokenPipeError once the guest's end (or this one) is closed."""
        view = memoryview(data)
        while view:
            if self._fd is None:
                raise BrokenPipeError
            try:
                view = view[os.write(self._fd, view) :]
            except BlockingIOError:
                await self._wait()

    async def read(self) -> bytes:
        """Up to READ_SIZE bytes; b"" at end of file or once this end is closed."""
        while True:
            if self._fd is None:
                return b""
            try:
                return os.read(self._fd, READ_SIZE)
            except BlockingIOError:
                await self._wait()

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if self._writing:
            self._loop.remove_writer(fd)
        else:
            self._loop.remove_reader(fd)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)  # the loop above sees the end closed
        os.close(fd)


async def serve_tcp(
    serving: Serving,
    listener: str,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    tracked: Tracked,
) -> None:
    """Run one instance for this connection, with the connection as its stdin and stdout."""
    if not serving.pool.admit():
        serving.stats.rejected += 1
        log.warning("%s: connection refused: every instance is busy", listener)
        return
    number = serving.next_request_number()
    label = f"{listener} #{number}"
    loop = asyncio.get_running_loop()
    guest_in, keep_in = os.pipe()
    keep_out, guest_out = os.pipe()
    to_guest = _FdEnd(loop, keep_in, writing=True)
    from_guest = _FdEnd(loop, keep_out, writing=False)
    cancel = threading.Event()
    timer: list[asyncio.TimerHandle] = []
    timed_out: list[bool] = []

    def unblock() -> None:
        to_guest.close()
        from_guest.close()

    def out_of_time() -> None:
        timed_out.append(True)
        unblock()

    def force() -> None:
        cancel.set()
        unblock()

    def started() -> None:
        wall = serving.prepared.manifest.limits.wall_time
        timer.append(loop.call_later(wall + UNBLOCK_GRACE, out_of_time))

    def run() -> Any:
        # The worker owns the guest's ends from here: closed only after the instance ran,
        # so a descriptor number can never be reused under a guest that is about to open it.
        try:
            with contextlib.suppress(RuntimeError):  # a closed loop: no timer needed
                loop.call_soon_threadsafe(started)
            return serving.run_stream(guest_in, guest_out, cancel)
        finally:
            os.close(guest_in)
            os.close(guest_out)

    tracked.force = force
    pump_in = asyncio.create_task(_pump_in(reader, to_guest))
    pump_out = asyncio.create_task(_pump_out(from_guest, writer, serving.options.request_timeout))
    serving.cancels.add(cancel)
    result = None
    try:
        result = await serving.pool.run(run)
    except MotteError as e:
        serving.stats.bad_gateway += 1
        log.warning("%s: the instance could not start: %s", label, e.message)
    finally:
        serving.cancels.discard(cancel)
        serving.pool.release()
        for handle in timer:
            handle.cancel()
        to_guest.close()
        pump_in.cancel()
    await pump_out
    if result is None:
        return
    serving.guest_stderr(label, result.stderr)
    if cancel.is_set():
        serving.stats.interrupted += 1
    elif timed_out and (result.trap is None or result.trap.kind != "wall_time"):
        # Released from a blocked read or write by closing its pipes: it may have ended
        # on its own before its next tick noticed the limit.
        serving.stats.bad_gateway += 1
        wall = serving.prepared.manifest.limits.wall_time
        log.warning("%s: the guest was stopped: wall-clock time limit reached: %g s", label, wall)
    elif result.trap is not None:
        serving.stats.bad_gateway += 1
        log.warning("%s: the guest was stopped: %s", label, result.trap.message)
    elif result.exit_code:
        log.info("%s: the guest exited with %d", label, result.exit_code)


async def _pump_in(reader: asyncio.StreamReader, to_guest: _FdEnd) -> None:
    """Client -> guest stdin, until the client closes its side or the guest stops reading."""
    try:
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                break
            await to_guest.write(data)
    except (BrokenPipeError, *GONE):
        pass
    finally:
        to_guest.close()


async def _pump_out(from_guest: _FdEnd, writer: asyncio.StreamWriter, timeout: float) -> None:
    """Guest stdout -> client, until the guest's output ends or the client stops reading."""
    try:
        while True:
            data = await from_guest.read()
            if not data:
                break
            writer.write(data)
            async with asyncio.timeout(timeout):
                await writer.drain()
    except (TimeoutError, *GONE):
        pass
    finally:
        from_guest.close()  # a guest still writing gets EPIPE
