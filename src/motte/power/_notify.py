"""Where events go: a JSON-lines log for machines, and a notify command for people.

Every event (the upsmon ones, ONBATT ... REPLBATT, and the plan's progress: stages, steps,
hosts down) is one JSON object per line, appended and fsynced, so a power cut never loses
the record of what was done before it. The notify command runs for the upsmon events the
plan lists, the way upsmon's NOTIFYCMD does: the message as its last argument, and
``NOTIFYTYPE`` and ``UPSNAME`` in its environment, so existing NUT notify scripts work.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from motte.power._progress import Event
from motte.power._runner import CommandResult, run_command
from motte.power._status import NOTIFY_EVENTS

NOTIFY_TIMEOUT = 30.0


class EventLog:
    """Append-only JSON lines, each one on disk before :meth:`write` returns."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._file = os.fdopen(fd, "a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, sort_keys=True, default=str) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def event_record(event: Event, *, plan: str, ups: str, now: float | None = None) -> dict[str, Any]:
    at = time.time() if now is None else now
    record: dict[str, Any] = {
        "time": datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds"),
        "ts": round(at, 3),
        "plan": plan,
        "ups": ups,
        "kind": event.kind,
        "message": event.message,
    }
    if event.host is not None:
        record["host"] = event.host
    if event.data:
        record["data"] = event.data
    return record


def read_events(path: Path, limit: int = 20) -> list[dict[str, Any]]:
    """The last ``limit`` events of an event log, oldest first (a torn last line is skipped;
    ``reading`` records, the UPS's history for charts, are not events)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    records: list[dict[str, Any]] = []
    for line in reversed(lines):
        if len(records) >= limit:
            break
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("kind") != "reading":
            records.append(record)
    return records[::-1]


class Notifier:
    def __init__(self, command: tuple[str, ...] | None, events: tuple[str, ...], ups: str):
        self.command = command
        self.events = frozenset(events)
        self.ups = ups

    def wants(self, kind: str) -> bool:
        return self.command is not None and kind in NOTIFY_EVENTS and kind in self.events

    async def notify(self, kind: str, message: str, ups: str | None = None) -> CommandResult:
        """Run the command; ``UPSNAME`` is ``ups`` (the UPS that changed) or the default."""
        assert self.command is not None
        return await run_command(
            (*self.command, message),
            timeout=NOTIFY_TIMEOUT,
            env={"NOTIFYTYPE": kind, "UPSNAME": self.ups if ups is None else ups},
        )
