"""Worker processes: more than one Python interpreter serving the same listening sockets.

An instance per request costs a few hundred microseconds of Python and wasmtime calls, and
most of that holds the interpreter's lock, so one process serves about one core's worth of
requests however many threads it has (bench/serve.py; docs/performance.md). ``serve`` with
``processes = N`` binds the sockets once, starts N - 1 workers with
``python -m motte.keep.serve._worker``, and serves in its own process too; the kernel hands
each new connection to one of the processes. The parent does not wait for its workers: it
serves at once, alone until they listen too.

A worker gets, on its standard input, one JSON line: the manifest (every field, so the
command line's overrides hold), the workload digest the parent prepared, the TLS identity
(the key travels through the pipe, never a file), the options and the listening sockets'
descriptor numbers (inherited). It prepares the workload itself (a cache hit: the parent
compiled it), refuses to serve if the digest differs, writes ``ready`` on standard output,
serves until SIGTERM, and writes its counters as one JSON line before it exits.

After the config, each further line on its standard input is a message: today only
``{"identity": {...}}``, a renewed identity (:mod:`motte.keep.serve._renew`) that the
worker's new TLS handshakes use from then on (:func:`read_messages`). End of file means
stop: the parent closed the pipe, or died.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from motte._record import Record

log = logging.getLogger("motte.keep.serve")

#: Beyond the stop timeout, how long the parent waits for a worker before killing it.
FINISH_SLACK = 5.0

#: The manifest's value types a worker may rebuild, by name (nothing else is constructed).
_RECORD_TYPES = ("Manifest", "Workload", "Stdio", "Dir", "Limits", "Listen")


def encode_record(value: Any) -> Any:
    """A manifest (or any of its parts) as JSON-able data that :func:`decode_record` rebuilds."""
    if isinstance(value, Record):
        name = type(value).__name__
        if name not in _RECORD_TYPES:
            raise TypeError(f"cannot send a {name} to a worker")
        return {"$record": name, **{f: encode_record(getattr(value, f)) for f in value._fields()}}
    if isinstance(value, Path):
        return {"$path": str(value)}
    if isinstance(value, tuple | list):
        return [encode_record(v) for v in value]
    if isinstance(value, Mapping):
        return {"$map": {str(k): encode_record(v) for k, v in value.items()}}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot send a {type(value).__name__} to a worker")


def decode_record(data: Any) -> Any:
    import motte.manifest as manifest_types

    if isinstance(data, list):
        return tuple(decode_record(v) for v in data)
    if isinstance(data, dict):
        if "$path" in data:
            return Path(data["$path"])
        if "$map" in data:
            return MappingProxyType({k: decode_record(v) for k, v in data["$map"].items()})
        name = data.get("$record")
        if name not in _RECORD_TYPES:
            raise ValueError(f"unknown record type {name!r}")
        cls = getattr(manifest_types, name)
        return cls(**{k: decode_record(v) for k, v in data.items() if k != "$record"})
    return data


def worker_config(
    prepared: Any,
    listeners: Any,
    identity: Any,
    options: Any,
    fds: list[list[int]],
    index: int,
) -> bytes:
    """The JSON document a worker reads on its standard input."""
    return json.dumps(
        {
            "index": index,
            "manifest": encode_record(prepared.manifest),
            "digest": prepared.digest,
            "listeners": encode_record(tuple(listeners)),
            "identity": encode_identity(identity),
            "options": {f: getattr(options, f) for f in options._fields()},
            "fds": fds,
        }
    ).encode()


def encode_identity(identity: Any) -> dict[str, Any] | None:
    """A TlsIdentity as JSON-able data (the key included: it travels through the pipe)."""
    if identity is None:
        return None
    return {
        "chain": identity.certificate_chain_pem.decode("ascii"),
        "key": identity.private_key_pem.decode("ascii"),
        "attested": identity.attested,
        "description": identity.description,
    }


def decode_identity(data: Any) -> Any:
    from motte.keep.serve._identity import TlsIdentity

    if data is None:
        return None
    return TlsIdentity(
        data["chain"].encode(),
        data["key"].encode(),
        attested=data["attested"],
        description=data["description"],
    )


def identity_message(identity: Any) -> bytes:
    """The line that tells a running worker to serve a renewed identity."""
    return json.dumps({"identity": encode_identity(identity)}).encode() + b"\n"


def read_messages(stream: Any, on_identity: Any) -> None:
    """A worker's standard input after its config line: one JSON message per line, until
    end of file (the parent closed it to stop the worker, or died). ``{"identity": ...}``
    calls ``on_identity`` with the decoded TlsIdentity. A line that cannot be read is
    logged and skipped: the worker keeps the identity it has."""
    for line in stream:
        if not line.strip():
            continue
        try:
            message = json.loads(line)
            identity = decode_identity(message["identity"])
        except Exception as e:
            log.warning("a message from the parent process was not understood: %s", e)
            continue
        if identity is not None:
            on_identity(identity)


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
            if not line.startswith(b"{"):
                continue
            with contextlib.suppress(ValueError, KeyError, TypeError):
                reason = json.loads(line)["error"]
                log.warning(
                    "worker process %d could not start (%s); serving with fewer processes",
                    self.index,
                    reason,
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


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main() -> int:
    """Entry point of a worker process (``python -m motte.keep.serve._worker``)."""
    from motte.errors import MotteError
    from motte.keep import PreparedWorkload
    from motte.keep.serve._options import ServeOptions
    from motte.keep.serve._renew import Identities
    from motte.keep.serve._run import configure_logging
    from motte.keep.serve._server import serve_sockets

    # The terminal's Ctrl-C reaches the whole process group; the parent decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    config = json.loads(sys.stdin.buffer.readline())
    # The real stdout carries the protocol; anything else written to it goes to stderr.
    sys.stdout = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    configure_logging()
    try:
        manifest = decode_record(config["manifest"])
        prepared = PreparedWorkload.prepare(manifest)
        if prepared.digest != config["digest"]:
            raise MotteError(
                f"the workload changed on disk: {prepared.digest}, not {config['digest']}"
            )
        identity = decode_identity(config["identity"])
        listeners = decode_record(config["listeners"])
        sockets = [[socket.socket(fileno=fd) for fd in fds] for fds in config["fds"]]
        options = ServeOptions(**config["options"])
    except MotteError as e:
        _say(json.dumps({"error": e.message}))
        return 1
    except Exception as e:  # a bug, or a broken hand-over: the parent logs it
        _say(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return 1
    stop = threading.Event()
    identities = Identities(identity) if identity is not None else None

    def parent_gone() -> None:
        # Renewed identities until end of file: the parent closed it, or died.
        read_messages(sys.stdin.buffer, identities.update if identities else lambda _i: None)
        stop.set()

    threading.Thread(target=parent_gone, name="motte-parent", daemon=True).start()
    stats = serve_sockets(
        prepared,
        listeners,
        identity,
        sockets,
        options=options,
        ready=lambda _bound: _say("ready"),
        stop=stop,
        signals=(signal.SIGTERM,),
        tag=f"w{config['index']}",
        identities=identities,
    )
    _say(json.dumps({"stats": stats.as_dict()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
