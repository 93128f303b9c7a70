"""The instance pool: bounded admission, results and exceptions back on the loop."""

from __future__ import annotations

import asyncio
import threading

import pytest

from motte.keep.serve._pool import InstancePool


def test_admission_is_bounded_by_workers_plus_queue() -> None:
    pool = InstancePool(workers=2, queued=1)
    assert [pool.admit() for _ in range(4)] == [True, True, True, False]
    pool.release()
    assert pool.admit() is True


def test_runs_on_worker_threads_and_returns() -> None:
    pool = InstancePool(workers=2, queued=0)

    async def main() -> list[str]:
        return list(await asyncio.gather(*(pool.run(_thread_name) for _ in range(4))))

    names = asyncio.run(main())
    assert all(n.startswith("motte-instance-") for n in names)
    assert threading.current_thread().name not in names
    assert pool.close(5.0) is True


def _thread_name() -> str:
    return threading.current_thread().name


def test_exceptions_reach_the_caller() -> None:
    pool = InstancePool(workers=1, queued=0)

    def boom() -> None:
        raise RuntimeError("inside")

    with pytest.raises(RuntimeError, match="inside"):
        asyncio.run(pool.run(boom))
    assert pool.close(5.0) is True


def test_close_reports_a_worker_that_does_not_finish() -> None:
    pool = InstancePool(workers=1, queued=0)
    release = threading.Event()

    async def main() -> None:
        task = asyncio.ensure_future(pool.run(release.wait))
        await asyncio.sleep(0.05)
        task.cancel()

    asyncio.run(main())
    assert pool.close(0.1) is False  # still blocked: the caller decides
    release.set()
    assert pool.close(5.0) is True
