"""What the pages read: log entries summarised and indexed, the power event log read from its
end, shutdowns replayed, and the pictures' geometry."""

from __future__ import annotations

import json

from motte.console._logindex import LogIndex, normalize_query, summarize
from motte.console._power import replay, shutdowns, tail_since
from motte.console._svg import history_chart, timeline
from motte.sign import INTOTO_PAYLOAD_TYPE, PUBLICATION, REVIEW, Statement, Subject, generate_key
from motte.sign import sign_envelope as sign

DIGEST = "sha256:" + "ab" * 32


def _envelope(predicate_type: str, predicate: dict, key=None) -> bytes:
    key = key or generate_key("ed25519")
    st = Statement((Subject.for_digest("pkg", DIGEST),), predicate_type, predicate)
    return sign(INTOTO_PAYLOAD_TYPE, st.to_bytes(), [key]).to_bytes()


def test_a_publication_names_its_digest_package_and_signer():
    key = generate_key("ed25519")
    s = summarize(3, _envelope(PUBLICATION, {"namespace": "acme", "name": "hello"}, key))
    assert s.kind == "publication"
    assert s.digests == (DIGEST,) and s.package == "acme/hello"
    assert s.keyids == (key.keyid,)
    assert s.terms() == {DIGEST, "acme/hello", key.keyid}
    assert json.loads(s.statement_json)["predicate"]["name"] == "hello"


def test_a_review_names_its_reviewer_and_raw_bytes_are_a_raw_entry():
    review = {"reviewer": {"id": "mailto:a@example.com"}, "scope": "all", "result": "pass"}
    s = summarize(0, _envelope(REVIEW, review))
    assert s.kind == "review" and s.identities == ("mailto:a@example.com",)
    raw = summarize(1, b"<b>not json</b>")
    assert raw.kind == "raw entry" and raw.problem and raw.terms() == set()


def test_the_index_grows_with_the_log_and_finds_newest_first():
    entries = [
        _envelope(PUBLICATION, {"namespace": "acme", "name": "hello"}),
        b"raw",
        _envelope(PUBLICATION, {"namespace": "acme", "name": "other"}),
        _envelope(PUBLICATION, {"namespace": "acme", "name": "hello"}),
    ]
    reads = []

    def read(lo, hi):
        reads.append((lo, hi))
        return entries[lo:hi]

    index = LogIndex()
    index.update(2, read)
    assert index.search("acme/hello") == [0]
    index.update(4, read)
    assert reads == [(0, 2), (2, 4)]  # each entry read once
    assert index.search("acme/hello") == [3, 0]
    assert index.search("ab" * 32) == [3, 2, 0]  # a bare digest gets its sha256:
    assert index.search("AB" * 32) == [3, 2, 0]
    assert index.search("nothing") == []
    keyid = summarize(0, entries[0]).keyids[0]  # 64 hex, like a digest: found as either
    assert index.search(keyid) == [0] and index.search(keyid.upper()) == [0]


def test_queries_are_normalised_only_when_they_are_digests():
    assert normalize_query("  " + "Ab" * 32 + " ") == "sha256:" + "ab" * 32
    assert normalize_query("sha256:" + "AB" * 32) == "sha256:" + "ab" * 32
    assert normalize_query("Acme/Hello") == "Acme/Hello"


def _write_log(path, records):
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))


def test_the_chart_reads_only_the_window_at_the_end(tmp_path, monkeypatch):
    from motte.console import _power

    monkeypatch.setattr(_power, "BLOCK", 256)  # many blocks, so the backward walk is exercised
    log = tmp_path / "events.jsonl"
    records = [
        {"ts": 1000.0 + i, "kind": "reading", "data": {"charge": 100 - i % 50}} for i in range(400)
    ]
    _write_log(log, records)
    got = tail_since(log, 1350.0)
    assert [r["ts"] for r in got] == [1000.0 + i for i in range(350, 400)]
    assert tail_since(log, 0) == records
    assert tail_since(tmp_path / "missing", 0) == []


def test_a_shutdown_is_replayed_step_by_step(tmp_path):
    log = tmp_path / "events.jsonl"
    t = 5000.0
    _write_log(
        log,
        [
            {"ts": t - 30, "kind": "reading", "data": {"runtime": 600, "charge": 40}},
            {"ts": t, "kind": "SHUTDOWN", "message": "shutdown started: LB", "time": "T0"},
            {
                "ts": t + 1,
                "kind": "step",
                "host": "app",
                "data": {"step": "drain", "deadline": t + 31},
            },
            {
                "ts": t + 5,
                "kind": "step-done",
                "host": "app",
                "data": {"step": "drain", "ok": True},
            },
            {
                "ts": t + 5,
                "kind": "step",
                "host": "app",
                "data": {"step": "stop", "deadline": t + 65},
            },
            {
                "ts": t + 9,
                "kind": "step-done",
                "host": "app",
                "data": {"step": "stop", "ok": False},
            },
            {"ts": t + 10, "kind": "step", "data": {"step": "fsd"}},
            {"ts": t + 11, "kind": "step-done", "data": {"step": "fsd", "ok": True}},
            {"ts": t + 11, "kind": "step", "host": "pi", "data": {"step": "self-drain"}},
            {"ts": t + 12, "kind": "step-done", "data": {"step": "self-drain", "ok": True}},
            {"ts": t + 12, "kind": "step", "host": "pi", "data": {"step": "self-stop"}},
            {"ts": t + 50, "kind": "SHUTDOWN", "message": "a second one", "time": "T1"},
        ],
    )
    found = shutdowns(log)
    assert [s["time"] for s in found] == ["T1", "T0"]
    r = replay(log, found[1])
    assert r["runtime"] == 600 and r["lasted"] == 12.0
    assert [e["kind"] for e in r["events"]][:2] == ["SHUTDOWN", "step"]
    rows = {row["label"]: row for row in r["picture"]["rows"]}
    assert [b["kind"] for b in rows["app"]["bars"]] == ["drain", "failed"]
    assert list(rows) == ["app", "FSD", "pi"]  # a final step's end finds its row
    assert [b["kind"] for b in rows["FSD"]["bars"]] == ["fsd"]
    assert [b["kind"] for b in rows["pi"]["bars"]] == ["drain", "unfinished"]
    assert len(rows["app"]["ticks"]) == 2  # both deadlines drawn
    assert r["picture"]["lines"][0]["label"] == "battery runtime 600s"


def test_pictures_keep_their_coordinates_in_the_frame():
    pic = timeline(
        [{"label": "a", "bars": [{"start": -5, "end": 50, "kind": "stop"}], "ticks": [500]}],
        horizon=100,
        lines=[{"at": 250, "label": "runtime"}],
    )
    bar = pic["rows"][0]["bars"][0]
    assert pic["left"] <= bar["x"] and bar["x"] + bar["w"] <= pic["right"]
    assert pic["rows"][0]["ticks"][0]["x"] == pic["right"]  # clamped, not drawn outside
    assert pic["lines"][0]["beyond"]
    samples = [
        {"ts": 100.0 + i, "data": {"charge": i, "load": 200, "runtime": i}} for i in range(2000)
    ]
    chart = history_chart(samples, [{"ts": 150.0, "kind": "ONBATT"}], start=100.0, end=2100.0)
    points = chart["lines"]["charge"].split()
    assert 2 <= len(points) <= 600
    ys = [float(p.split(",")[1]) for p in chart["lines"]["load"].split()]
    assert all(chart["top"] <= y <= chart["bottom"] for y in ys)  # 200% is clipped
    assert chart["markers"][0]["label"] == "ONBATT"
