"""Instances run on a fixed set of threads; admission is bounded, so overload is a quick 503,
not an unbounded queue.

Not ``concurrent.futures.ThreadPoolExecutor``: its threads are joined at interpreter exit,
so a guest blocked in a host call (a long WASI sleep) would hold the process open after a
forced stop. These threads are daemons; the caller decides how long to wait for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

_STOP = None


class InstancePool:
    """``workers`` threads running submitted calls; at most ``workers + queued`` admitted.

    :meth:`admit` and :meth:`release` are called on the event loop's thread only (a plain
    counter is enough); :meth:`run` hands a call to a worker and awaits its result.
    """

    def __init__(self, workers: int, queued: int) -> None:
        self.workers = workers
        self.capacity = workers + queued
        self.admitted = 0
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._busy = 0
        self._lock = threading.Lock()

    def admit(self) -> bool:
        """Take a slot for one request or connection; False when every slot is taken."""
        if self.admitted >= self.capacity:
            return False
        self.admitted += 1
        return True

    def release(self) -> None:
        self.admitted -= 1

    @property
    def busy(self) -> int:
        """Calls running right now."""
        return self._busy

    def submit(self, fn: Callable[[], Any]) -> asyncio.Future[Any]:
        """Queue ``fn()`` for a worker thread; a future of the running loop for its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if len(self._threads) < self.workers:
            self._start_worker()
        self._jobs.put((fn, loop, future))
        return future

    async def run(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn()`` on a worker thread; its result or exception, awaited."""
        return await self.submit(fn)

    def _start_worker(self) -> None:
        thread = threading.Thread(
            target=self._work, name=f"motte-instance-{len(self._threads)}", daemon=True
        )
        self._threads.append(thread)
        thread.start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            fn, loop, future = job
            with self._lock:
                self._busy += 1
            try:
                result = fn()
            except BaseException as e:  # handed to the awaiting coroutine
                _deliver(loop, future, None, e)
            else:
                _deliver(loop, future, result, None)
            finally:
                with self._lock:
                    self._busy -= 1

    def close(self, timeout: float) -> bool:
        """Let the workers finish what they run and exit; True if all did within ``timeout``."""
        for _ in self._threads:
            self._jobs.put(_STOP)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)


def _deliver(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    def settle() -> None:
        if future.cancelled():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    # A closed loop raises RuntimeError: nobody is waiting any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(settle)
