"""The instance slots: bounded admission, bounded concurrency, waiting only when admitted."""

from __future__ import annotations

import threading
import time

from motte.keep.serve._pool import InstanceSlots


def test_admission_is_bounded_by_running_plus_queued() -> None:
    slots = InstanceSlots(running=2, queued=1)
    assert [slots.admit() for _ in range(4)] == [True, True, True, False]
    assert slots.admitted == 3
    slots.release()
    assert slots.admit() is True


def test_at_most_running_instances_at_once() -> None:
    slots = InstanceSlots(running=2, queued=8)
    lock = threading.Lock()
    now = [0]
    peak = [0]

    def instance() -> None:
        assert slots.admit()
        slots.start()
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        time.sleep(0.02)
        with lock:
            now[0] -= 1
        slots.finish()
        slots.release()

    threads = [threading.Thread(target=instance) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert peak[0] == 2
    assert slots.admitted == 0


def test_a_waiting_instance_starts_when_one_finishes() -> None:
    slots = InstanceSlots(running=1, queued=1)
    slots.start()
    started = threading.Event()

    def waiter() -> None:
        slots.start()
        started.set()
        slots.finish()

    thread = threading.Thread(target=waiter)
    thread.start()
    assert not started.wait(0.1)  # the only slot is taken
    slots.finish()
    assert started.wait(10)
    thread.join(10)
