"""``reading`` records (the UPS's history, for the console's chart) are not events to show."""

from __future__ import annotations

import json

from motte.power._notify import read_events


def test_recent_events_skip_reading_records(tmp_path):
    log = tmp_path / "lab.events.jsonl"
    lines = [{"kind": "ONBATT", "ts": 1}, {"kind": "SHUTDOWN", "ts": 2}]
    lines += [{"kind": "reading", "ts": 3 + i, "data": {"charge": 90}} for i in range(30)]
    log.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"torn')
    assert [r["kind"] for r in read_events(log, 2)] == ["ONBATT", "SHUTDOWN"]
    assert [r["kind"] for r in read_events(log, 1)] == ["SHUTDOWN"]
