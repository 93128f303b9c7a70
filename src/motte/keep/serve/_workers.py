"""Worker processes, the parent's side: more than one Python interpreter serving the same
listening sockets.

An instance per request costs a few hundred microseconds of Python and wasmtime calls, and
most of that holds the interpreter's lock, so one process serves about one core's worth of
requests however many threads it has (bench/serve.py; docs/performance.md). ``serve`` with
``processes = N`` binds the sockets once, starts N - 1 workers (:class:`Workers`) with
``python -m motte.keep.serve._worker``, and serves in its own process too; the kernel hands
each new connection to one of the processes. The parent does not wait for its workers: it
serves at once, alone until they listen too. What the two sides say to each other is
:mod:`._handover`; the worker's own side is :mod:`._worker`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

from motte.keep.serve._handover import identity_message, worker_config

log = logging.getLogger("motte.keep.serve")

#: Beyond the stop timeout, how long the parent waits for a worker before killing it.
FINISH_SLACK = 5.0


class _Worker:
    """One worker process and the lines it has written (a thread reads them as they come)."""

    def __init__(self, index: int, proc: subprocess.Popen[bytes]) -> None:
        self.index = index
        self.proc = proc
        self.lines: list[bytes] = []
        self.reader = threading.Thread(target=self._read, name=f"motte-worker-{index}", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.strip() == b"ready":
                log.info("worker process %d serves too", self.index)
            if not line.startswith(b"{"):
                continue
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if not isinstance(message, dict):
                continue
            if "error" in message:
                log.warning(
                    "worker process %d could not start (%s); serving with fewer processes",
                    self.index,
                    message["error"],
                )
            elif "renewed" in message:
                log.info(
                    "worker process %d: new connections get the renewed certificate (sha256 %s)",
                    self.index,
                    message["renewed"],
                )

    def counts(self) -> dict[str, int] | None:
        for line in self.lines:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                return dict(json.loads(line)["stats"])
        return None


class Workers:
    """The parent's side: start the worker processes (they listen when they are ready; until
    then the parent takes every connection), tell them to stop (close their stdin), force
    them (SIGTERM), and collect their counters. A worker that cannot start is logged, and
    the others serve on."""

    def __init__(
        self,
        prepared: Any,
        listeners: Any,
        identity: Any,
        options: Any,
        sockets: list[list[socket.socket]],
    ) -> None:
        self._prepared = prepared
        self._listeners = listeners
        self._identity = identity
        self._options = options
        self._sockets = sockets
        self._workers: list[_Worker] = []
        # Start and a renewal's send_identity take turns: a worker gets the newest identity
        # in its config, or its config first and then the renewal. Re-entrant: a second
        # SIGTERM's handler (force, then stop) may interrupt the main thread inside stop.
        self._lock = threading.RLock()
        self._stop_timeout = (
            options.stop_timeout
            if options.stop_timeout is not None
            else prepared.manifest.limits.wall_time
        )
        self.count = options.processes - 1

    def start(self) -> None:
        fds = [[sock.fileno() for sock in socks] for socks in self._sockets]
        with self._lock:
            for index in range(1, self.count + 1):
                proc = subprocess.Popen(
                    [sys.executable, "-m", "motte.keep.serve._worker"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    pass_fds=[fd for group in fds for fd in group],
                )
                assert proc.stdin is not None
                config = worker_config(
                    self._prepared, self._listeners, self._identity, self._options, fds, index
                )
                proc.stdin.write(config + b"\n")
                proc.stdin.flush()
                self._workers.append(_Worker(index, proc))

    def send_identity(self, identity: Any) -> None:
        """Tell every running worker to present ``identity`` to new connections (one line
        on its standard input); workers started later get it in their config."""
        with self._lock:
            if identity is self._identity:
                return
            self._identity = identity
            line = identity_message(identity)
            for worker in self._workers:
                stdin = worker.proc.stdin
                if stdin is None:  # stopping
                    continue
                try:
                    stdin.write(line)
                    stdin.flush()
                except OSError as e:  # gone: finish() reports it
                    log.warning(
                        "worker process %d did not take the renewed certificate: %s",
                        worker.index,
                        e.strerror or e,
                    )

    def stop(self) -> None:
        """Graceful: a worker stops when its stdin ends."""
        with self._lock:
            for worker in self._workers:
                proc = worker.proc
                if proc.stdin is not None:
                    with contextlib.suppress(OSError):
                        proc.stdin.close()
                    proc.stdin = None

    def force(self) -> None:
        """Skip the wait for in-flight work (a worker's second stop request)."""
        self.stop()
        for worker in self._workers:
            if worker.proc.poll() is None:
                with contextlib.suppress(OSError):
                    worker.proc.send_signal(signal.SIGTERM)

    def finish(self) -> dict[str, int]:
        """Stop the workers if they still run, wait for them, and sum their counters."""
        self.stop()
        total: dict[str, int] = {}
        deadline = time.monotonic() + self._stop_timeout + FINISH_SLACK
        for worker in self._workers:
            try:
                worker.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.proc.kill()
                worker.proc.wait()
                log.warning("worker process %d did not stop in time; killed", worker.index)
            worker.reader.join(5)
            counts = worker.counts()
            if counts is None:
                if worker.proc.returncode and not any(b"error" in ln for ln in worker.lines):
                    log.warning(
                        "worker process %d exited with %s; its counters are lost",
                        worker.index,
                        worker.proc.returncode,
                    )
                continue
            for name, value in counts.items():
                total[name] = total.get(name, 0) + int(value)
        self._workers.clear()
        return total
