"""The audit queries the console pages with: filters, id paging, Keeps grouped with renewals."""

from __future__ import annotations

import pytest

from motte.steward import StewardStore
from motte.store import resolve_database

# Every case on the embedded SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("database")


def _store(path) -> StewardStore:  # type: ignore[no-untyped-def]
    """The store at ``path``, or the PostgreSQL database MOTTE_DB names."""
    return StewardStore(resolve_database(None, default=path))


def _row(i: int, decision: str, **kw: object) -> dict[str, object]:
    row: dict[str, object] = {
        "time": f"2026-01-01T00:00:{i:02d}+00:00",
        "client": f"127.0.0.1:{4000 + i}",
        "decision": decision,
        "sans": ["localhost"],
        "rules": [],
    }
    row.update(kw)
    return row


def _fill(store: StewardStore) -> None:
    keep_a = {"kind": "sim", "measurement": "aa", "workload_digest": "sha256:" + "a" * 64}
    keep_b = {"kind": "snp", "measurement": "bb", "workload_digest": "sha256:" + "b" * 64}
    for i in range(3):  # keep A: a certificate and two renewals
        store.append_audit(
            _row(i, "accepted", not_after=f"2026-01-0{i + 2}T00:00:00+00:00", **keep_a)
        )
    store.append_audit(_row(3, "accepted", not_after="2026-01-09T00:00:00+00:00", **keep_b))
    store.append_audit(_row(4, "rejected", reason="nonce: 100%_used", kind="sim"))
    store.append_audit(_row(5, "rejected", reason="san: evil not allowed", sans=["evil"]))


def test_pages_run_newest_first_and_continue_below_an_id(tmp_path):
    store = _store(tmp_path / "db")
    _fill(store)
    first = store.audit_page(limit=4)
    assert [r.id for r in first] == [6, 5, 4, 3]
    assert [r.id for r in store.audit_page(limit=4, before=first[-1].id)] == [2, 1]
    assert store.audit_counts() == {"accepted": 4, "rejected": 2}


def test_filters_combine_and_text_matches_wildcards_literally(tmp_path):
    store = _store(tmp_path / "db")
    _fill(store)
    assert [r.id for r in store.audit_page(decision="rejected")] == [6, 5]
    assert [r.id for r in store.audit_page(decision="rejected", kind="sim")] == [5]
    assert [r.id for r in store.audit_page(text="100%_")] == [5]
    assert store.audit_page(text="100%x") == []  # % is not a wildcard
    assert [r.id for r in store.audit_page(text="evil")] == [6]  # in the names and reason
    assert [r.id for r in store.audit_page(workload="sha256:" + "b" * 64)] == [4]


def test_keeps_group_certificates_and_count_renewals(tmp_path):
    store = _store(tmp_path / "db")
    _fill(store)
    keeps = store.attested_keeps()
    assert [(k.kind, k.certificates, k.renewals) for k in keeps] == [("snp", 1, 0), ("sim", 3, 2)]
    sim = keeps[1]
    assert sim.not_after == "2026-01-04T00:00:00+00:00"  # the latest certificate's expiry
    assert sim.first_time < sim.last_time and sim.last_id == 3
    assert sim.last_client == "127.0.0.1:4002"
    assert [k.kind for k in store.attested_keeps(kind="sim")] == ["sim"]
