"""Serving Keeps on this host, so a power plan's drain step can find and drain them.

A serving ``motte run`` writes ``MOTTE_HOME/run/keeps/<pid>.json`` (its process id and
start time, its workload, its sealed volumes) and, when it has stopped and persisted its
sealed volumes, ``<pid>.drained.json`` (the report: each snapshot, its size and time). It
removes the first at exit; the second stays for whoever drained it, who removes it.

:func:`drain_keeps` (``motte power drain-keeps``, a plan's ``drain`` command) sends each
live Keep SIGTERM, waits until each has exited or the deadline passes, and returns what
each reported. A process is a Keep of this list only if its start time is the one
recorded: a process id reused since is never signalled.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_registered: list[Path] = []


def keeps_dir() -> Path:
    from motte.home import motte_home

    return motte_home() / "run" / "keeps"


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        fields = text[text.rindex(")") + 2 :].split()
        if fields[0] in ("Z", "X"):  # exited, not yet reaped by its parent
            return None
        return int(fields[19])
    except (ValueError, IndexError):
        return None


def register_keep(workload: Any) -> Path:
    """Record this serving Keep (removed at exit)."""
    from motte.fsutil import atomic_write_text

    pid = os.getpid()
    volumes = workload.volumes
    doc = {
        "pid": pid,
        "start_ticks": start_ticks(pid),
        "started_at": time.time(),
        "workload": workload.digest,
        "volumes": [str(v.identity) for v in volumes.volumes] if volumes is not None else [],
    }
    path = keeps_dir() / f"{pid}.json"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileNotFoundError):
        (path.parent / f"{pid}.drained.json").unlink()
    atomic_write_text(path, json.dumps(doc) + "\n", mode=0o600)
    if not _registered:
        atexit.register(_unregister)
    _registered.append(path)
    return path


def _unregister() -> None:
    while _registered:
        with contextlib.suppress(OSError):
            _registered.pop().unlink()


def record_drain(report: dict[str, Any]) -> None:
    """This Keep's drain report, for :func:`drain_keeps` (only for a registered Keep)."""
    if not _registered:
        return
    from motte.fsutil import atomic_write_text

    pid = os.getpid()
    atomic_write_text(keeps_dir() / f"{pid}.drained.json", json.dumps(report) + "\n", mode=0o600)


@dataclass(frozen=True, slots=True)
class KeepEntry:
    pid: int
    start_ticks: int | None
    workload: str
    volumes: tuple[str, ...]
    path: Path


def running_keeps() -> list[KeepEntry]:
    """The registered Keeps still running (stale entries are removed)."""
    out = []
    directory = keeps_dir()
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.json")):
        if path.name.endswith(".drained.json"):
            continue
        try:
            doc = json.loads(path.read_text())
            pid = int(doc["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        ticks = doc.get("start_ticks")
        if start_ticks(pid) is None or (ticks is not None and start_ticks(pid) != ticks):
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        out.append(
            KeepEntry(pid, ticks, str(doc.get("workload")), tuple(doc.get("volumes") or ()), path)
        )
    return out


@dataclass(frozen=True, slots=True)
class Drained:
    """One Keep a drain asked to stop: whether it exited in time and what it reported."""

    keep: KeepEntry
    exited: bool
    seconds: float
    report: dict[str, Any] | None

    @property
    def ok(self) -> bool:
        return self.exited and (self.report is None or bool(self.report.get("ok")))

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.keep.pid,
            "workload": self.keep.workload,
            "volumes": list(self.keep.volumes),
            "exited": self.exited,
            "seconds": round(self.seconds, 6),
            "report": self.report,
            "ok": self.ok,
        }


def drain_keeps(
    timeout: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    poll: float = 0.05,
) -> list[Drained]:
    """SIGTERM every running Keep, wait up to ``timeout`` for all to exit."""
    keeps = running_keeps()
    started = clock()
    for k in keeps:
        with contextlib.suppress(ProcessLookupError):
            os.kill(k.pid, signal.SIGTERM)
    done: dict[int, float] = {}
    while len(done) < len(keeps) and clock() - started < timeout:
        for k in keeps:
            if k.pid not in done and start_ticks(k.pid) != k.start_ticks:
                done[k.pid] = clock() - started
        if len(done) < len(keeps):
            time.sleep(poll)
    out = []
    for k in keeps:
        report = None
        drained = k.path.parent / f"{k.pid}.drained.json"
        with contextlib.suppress(OSError, ValueError):
            report = json.loads(drained.read_text())
            drained.unlink()
        exited = k.pid in done
        out.append(Drained(k, exited, done.get(k.pid, clock() - started), report))
    return out
