"""What each page shows, as plain values for its template (the templates escape every one).

The console reads only through the components' public APIs: the Steward's audit queries
(:class:`motte.steward.StewardStore`), the secrets' audit log (the release decisions of
:class:`motte.steward.SecretStore`: names, versions, verdicts, never a value), the log
(:class:`motte.tlog.LocalLog`) and the verification ``motte verify`` runs
(:func:`motte.sign.check_logged`), the trust judgement (:func:`motte.trust.assess`, with
``remember=False``: looking never changes what this installation remembers as accepted).
"""

from __future__ import annotations

import base64
import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from motte.console._logindex import EntrySummary, LogIndex, normalize_query, summarize
from motte.errors import MotteError

if TYPE_CHECKING:
    from motte.steward import AuditRecord, SecretStore, StewardStore
    from motte.tlog import LocalLog

PAGE = 50
#: A certificate expiring sooner than this is flagged.
SOON = dt.timedelta(hours=6)
#: How much of an entry that is not a statement is shown.
RAW_SHOWN = 4096


@dataclass
class Sources:
    """Where the pages read from; each opened on first use and kept."""

    steward_dir: Path
    log_dir: Path
    policies: dict[str, Path] = field(default_factory=dict)
    clock: Callable[[], float] = field(default=lambda: dt.datetime.now(dt.UTC).timestamp())
    steward_store: StewardStore | None = None
    index: LogIndex = field(default_factory=LogIndex)
    _log: LocalLog | None = None
    _own_store: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock(), dt.UTC)

    def steward(self) -> StewardStore:
        from motte.steward import StewardNotInitialisedError, StewardPaths, StewardStore

        with self._lock:
            if self.steward_store is None:
                db = StewardPaths(self.steward_dir).database
                if not db.exists():
                    raise StewardNotInitialisedError(
                        f"no Steward at {self.steward_dir}",
                        hint="motte steward init, or motte console --steward-dir DIR",
                    )
                self.steward_store = StewardStore(db)
                self._own_store = True
            return self.steward_store

    def secrets(self) -> SecretStore:
        """The Steward's secret store, for its audit log: reading it needs no master key,
        and the console never asks for one (no value can reach a page)."""
        from motte.steward import SecretStore

        return SecretStore(self.steward().db, self.steward_dir)

    def log(self) -> LocalLog:
        from motte.tlog import LocalLog

        with self._lock:
            if self._log is None:
                self._log = LocalLog(self.log_dir, create=False)
            return self._log

    def close(self) -> None:
        """Close what this console opened (never the Steward's own store)."""
        if self._log is not None:
            self._log.close()
        if self._own_store and self.steward_store is not None:
            self.steward_store.close()


def _reasons(r: AuditRecord) -> list[str]:
    """Every failed rule of a decision: the Steward's own, then the evidence verdict's."""
    out = [f"{x['rule']}: {x['reason']}" for x in r.rules if x.get("outcome") == "fail"]
    out += [
        f"{x['rule']}: {x['reason']}"
        for x in (r.verdict or {}).get("rules", ())
        if x.get("outcome") == "fail"
    ]
    return out or ([r.reason] if r.reason else [])


def _expiry(not_after: str | None, now: dt.datetime) -> str:
    if not not_after:
        return "none"
    try:
        when = dt.datetime.fromisoformat(not_after)
    except ValueError:
        return "unknown"
    if when <= now:
        return "expired"
    return "soon" if when - now < SOON else "valid"


def _workload_names() -> dict[str, list[str]]:
    """Digest -> the names this installation's package store gives it."""
    from motte.oci import LocalStore

    names: dict[str, list[str]] = {}
    try:
        for name, desc in LocalStore().tags():
            names.setdefault(desc.digest, []).append(name)
    except MotteError:
        pass
    return names


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def keeps_view(src: Sources, params: dict[str, str]) -> dict[str, Any]:
    decision = params.get("decision") or None
    if decision not in (None, "accepted", "rejected"):
        decision = None
    kind = params.get("kind") or None
    workload = normalize_query(params.get("workload", "")) or None
    text = params.get("q") or None
    before = _int(params.get("before"))
    store = src.steward()
    now = src.now()
    names = _workload_names()
    keeps = [
        {
            "kind": k.kind,
            "measurement": k.measurement,
            "workload": k.workload_digest,
            "names": names.get(k.workload_digest or "", []),
            "sans": k.sans,
            "certificates": k.certificates,
            "renewals": k.renewals,
            "first": k.first_time,
            "last": k.last_time,
            "not_after": k.not_after,
            "expiry": _expiry(k.not_after, now),
            "client": k.last_client,
        }
        for k in store.attested_keeps(kind=kind, workload=workload)
    ]
    rows = store.audit_page(
        limit=PAGE, before=before, decision=decision, kind=kind, workload=workload, text=text
    )
    decisions = [
        {
            "id": r.id,
            "time": r.time,
            "client": r.client,
            "decision": r.decision,
            "kind": r.kind,
            "measurement": r.measurement,
            "workload": r.workload_digest,
            "names": names.get(r.workload_digest or "", []),
            "sans": r.sans,
            "serial": r.serial,
            "not_after": r.not_after,
            "expiry": _expiry(r.not_after, now),
            "reasons": _reasons(r) if r.decision == "rejected" else [],
        }
        for r in rows
    ]
    return {
        "counts": store.audit_counts(),
        "keeps": keeps,
        "decisions": decisions,
        "filters": {
            "decision": decision or "",
            "kind": kind or "",
            "workload": workload or "",
            "q": text or "",
        },
        "next_before": rows[-1].id if len(rows) == PAGE else None,
        "now": now.isoformat(timespec="seconds"),
    }


def secrets_view(src: Sources, params: dict[str, str]) -> dict[str, Any]:
    """Per secret, its releases and refusals; then the release decisions, newest first
    (filtered by secret and decision). Names, versions, workloads and reasons only."""

    store = src.secrets()
    name = params.get("secret") or None
    decision = params.get("decision") or None
    if decision not in (None, "released", "refused"):
        decision = None
    before = _int(params.get("before"))
    names = _workload_names()
    summary = [s.to_dict() for s in store.release_summary()]
    rows = store.releases(name=name, decision=decision, limit=PAGE, before=before)
    decisions = [
        {
            "id": r.id,
            "time": r.time,
            "client": r.actor,
            "decision": r.decision,
            "kind": r.kind,
            "workload": r.workload_digest,
            "names": names.get(r.workload_digest or "", []),
            "secrets": [
                {
                    "name": x.get("name"),
                    "asked": x.get("version"),
                    "released": x.get("released"),
                }
                for x in r.secrets
            ],
            "reasons": r.failed(name) if r.decision != "released" else [],
        }
        for r in rows
    ]
    return {
        "secrets": summary,
        "counts": {
            "secrets": sum(1 for s in summary if s["stored"]),
            "released": sum(s["released"] for s in summary),
            "refused": sum(s["refused"] for s in summary),
        },
        "decisions": decisions,
        "filters": {"secret": name or "", "decision": decision or ""},
        "next_before": rows[-1].id if len(rows) == PAGE else None,
    }


def _entry_row(s: EntrySummary) -> dict[str, Any]:
    return {
        "index": s.index,
        "kind": s.kind,
        "digests": s.digests,
        "package": s.package,
        "keyids": s.keyids,
        "identities": s.identities,
        "problem": s.problem,
    }


def log_view(src: Sources, params: dict[str, str]) -> dict[str, Any]:
    log = src.log()
    size = log.size
    query = params.get("q", "").strip()
    before = _int(params.get("before"))
    if query:
        src.index.update(size, log.read_entries)
        found = src.index.search(query)
        total = len(found)
        if before is not None:
            found = [i for i in found if i < before]
        shown = found[:PAGE]
    else:
        top = min(size, before) if before is not None else size
        shown = list(range(top - 1, max(top - PAGE, 0) - 1, -1))
        total = size
    rows = [_entry_row(summarize(i, log.read_entries(i, i + 1)[0])) for i in shown]
    more = (shown[-1] > 0 if not query else len(found) > PAGE) if shown else False
    return {
        "origin": log.origin,
        "size": size,
        "query": query,
        "normalized": normalize_query(query) if query else "",
        "total": total,
        "rows": rows,
        "next_before": shown[-1] if shown and more else None,
    }


def entry_view(src: Sources, index: int) -> dict[str, Any]:
    from motte.sign import check_logged
    from motte.tlog import LogNotFoundError

    log = src.log()
    got = log.read_entries(index, index + 1) if index >= 0 else []
    if not got:
        raise LogNotFoundError(f"log {log.origin} has no entry {index} (size {log.size})")
    entry = got[0]
    summary = summarize(index, entry)
    bundle = log.inclusion_bundle(index)
    checked: dict[str, Any]
    try:
        evidence = check_logged(entry, bundle.to_bytes(), now=src.now())
    except MotteError as e:
        checked = {"ok": False, "message": e.message, "hint": e.hint}
    else:
        when = (
            dt.datetime.fromtimestamp(evidence.time, dt.UTC).isoformat()
            if evidence.time is not None
            else None
        )
        checked = {
            "ok": True,
            "message": f"entry {evidence.index} is in {evidence.origin} at size "
            f"{evidence.tree_size}",
            "fork_check": evidence.fork_check,
            "time": when,
        }
    raw = None
    if summary.statement_json is None:
        raw = entry[:RAW_SHOWN].decode("utf-8", errors="replace")
    return {
        "origin": log.origin,
        "entry": _entry_row(summary),
        "statement": summary.statement_json,
        "payload_type": summary.payload_type,
        "raw": raw,
        "raw_truncated": len(entry) > RAW_SHOWN,
        "size": len(entry),
        "proof": [base64.b64encode(h).decode() for h in bundle.proof],
        "checkpoint": bundle.checkpoint.decode("utf-8", errors="replace"),
        "bundle": bundle.to_text(),
        "checked": checked,
    }


def trust_view(src: Sources, params: dict[str, str]) -> dict[str, Any]:
    ref = params.get("ref", "").strip()
    chosen = params.get("policy", "")
    if chosen not in src.policies:
        chosen = next(iter(src.policies), "")
    out: dict[str, Any] = {
        "ref": ref,
        "policies": list(src.policies),
        "policy": chosen,
        "verdict": None,
        "error": None,
    }
    if not ref:
        return out
    if not src.policies:
        out["error"] = "no trust policy was given to the console (motte console --trust-policy)"
        return out
    from motte.oci import parse_reference
    from motte.trust import assess

    try:
        if not ref.startswith("sha256:") and not parse_reference(ref).is_local:
            out["error"] = (
                f"{ref}: the console judges packages in this installation's store only "
                "(motte pull it first)"
            )
            return out
        verdict = assess(ref, src.policies[chosen], now=src.now(), remember=False)
    except MotteError as e:
        out["error"] = e.message
        return out
    out["verdict"] = {
        "reference": verdict.reference,
        "digest": verdict.digest,
        "policy_name": Path(verdict.policy_name).name,
        "policy_digest": verdict.policy_digest,
        "time": verdict.time.isoformat(timespec="seconds"),
        "decision": verdict.decision,
        "areas": [
            {
                "area": a.area,
                "status": a.status.value,
                "required": a.required,
                "rule": a.deciding.rule,
                "message": a.deciding.message,
                "rules": [
                    {
                        "rule": r.rule,
                        "status": r.status.value,
                        "message": r.message,
                        "evidence": [
                            {
                                "what": e.what,
                                "statement": e.statement,
                                "log_origin": e.log_origin,
                                "log_index": e.log_index,
                                "signer": e.signer,
                                "time": e.time,
                                "detail": e.detail,
                            }
                            for e in r.evidence
                        ],
                    }
                    for r in a.rules
                ],
            }
            for a in verdict.areas
        ],
    }
    return out
