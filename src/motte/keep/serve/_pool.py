"""Bounded instances: at most so many run at once, at most so many more wait, and beyond
that a request is refused at once (HTTP 503, TCP closed), never queued without bound.

Instances run on their connection's own thread (``_conn``); :class:`InstanceSlots` only
counts. Admission (:meth:`~InstanceSlots.admit`) never blocks; :meth:`~InstanceSlots.start`
blocks while every running slot is taken, which only admitted requests ever do.
"""

from __future__ import annotations

import queue
import threading


class InstanceSlots:
    """``running`` instances at once; at most ``running + queued`` admitted."""

    def __init__(self, running: int, queued: int) -> None:
        self.running = running
        self.capacity = running + queued
        self._admitted = 0
        self._lock = threading.Lock()
        # A queue of tokens as a semaphore: get() on a non-empty SimpleQueue is one C call
        # that keeps the interpreter lock; threading.Semaphore is Python over a Condition.
        self._tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
        for _ in range(running):
            self._tokens.put(None)

    @property
    def admitted(self) -> int:
        """Requests and connections admitted and not yet released."""
        return self._admitted

    def admit(self) -> bool:
        """Take a place for one request or connection; False when every place is taken."""
        with self._lock:
            if self._admitted >= self.capacity:
                return False
            self._admitted += 1
            return True

    def release(self) -> None:
        """Give back a place taken by :meth:`admit`."""
        with self._lock:
            self._admitted -= 1

    def start(self) -> None:
        """Wait for a running slot (an admitted request only)."""
        self._tokens.get()

    def finish(self) -> None:
        """Give back the running slot taken by :meth:`start`."""
        self._tokens.put(None)
