"""The areas about the people behind a package: whether they fix what is reported
(responsiveness), who signs it and since when (provenance), and who competent looked at it
(expertise). Pure functions of the evidence, the policy and the time."""

from __future__ import annotations

import datetime as dt
import fnmatch
from dataclasses import dataclass, field

from motte.sign import PUBLICATION, REVIEW, Review
from motte.trust._context import Context, day, parse_time, predicate, short
from motte.trust._evidence import FoundStatement, LogPlace
from motte.trust._predicates import ADVISORY, Advisory, Version
from motte.trust._verdict import EvidenceRef, RuleResult, Status

S, N, U, NOTE = Status.SATISFIED, Status.NOT_SATISFIED, Status.UNKNOWN, Status.NOTE


# -- responsiveness ------------------------------------------------------------------------


@dataclass
class _Case:
    """One advisory id, merged over the statements that published and updated it."""

    id: str
    published: dt.datetime | None
    latest: Advisory
    affected: set[str] = field(default_factory=set)
    refs: list[EvidenceRef] = field(default_factory=list)

    @property
    def fixed(self) -> Version | None:
        return self.latest.fixed


def _cases(ctx: Context) -> tuple[dict[str, _Case], list[RuleResult]]:
    trusted = ctx.publisher_ids | {k for p in ctx.policy.advisors for k in p.keyids}
    cases: dict[str, _Case] = {}
    notes: list[RuleResult] = []
    for s in ctx.of_type(ADVISORY, here=False):
        if not s.usable or not s.signed_by_any(trusted):
            who = ", ".join(short(k) for k in (*s.signers, *s.unknown_keyids)) or "no key"
            why = (
                s.parse_problem
                or s.log_problem
                or (f"signed by {who}: not a publisher key or an advisor the policy names")
            )
            notes.append(
                RuleResult(
                    "responsiveness.source", NOTE, f"advisory not counted: {why}", (ctx.cite(s),)
                )
            )
            continue
        adv = predicate(s, Advisory.from_dict)
        if (adv.namespace, adv.name) != (ctx.ev.namespace, ctx.ev.name):
            continue
        when = s.log.time if s.log else None
        case = cases.get(adv.id)
        if case is None:
            case = cases[adv.id] = _Case(adv.id, when, adv)
        elif when is not None and (case.published is None or when < case.published):
            case.published = when
        case.latest = adv  # statements come in log order: the last one is the current word
        case.affected |= {v.digest for v in adv.affected}
        case.refs.append(ctx.cite(s, detail=f"advisory {adv.id}"))
    return cases, notes


def _released(ctx: Context, digest: str) -> tuple[bool, dt.datetime | None]:
    """Whether a version was published (a trusted publication), and the earliest log time."""
    pubs = [s for s in ctx.publications() if s.about(digest)]
    times = [s.log.time for s in pubs if s.log and s.log.time]
    return bool(pubs), (min(times) if times else None)


def responsiveness(ctx: Context) -> list[RuleResult]:
    cases, notes = _cases(ctx)
    rules: list[RuleResult] = []
    pol = ctx.policy
    fix_times: list[str] = []
    for case in cases.values():
        fixed = case.fixed
        is_out, released = _released(ctx, fixed.digest) if fixed else (False, None)
        fix_text = (
            "no fixed version yet"
            if fixed is None
            else f"fixed in {fixed.describe()}, "
            + (f"released {day(released)}" if is_out else "announced but not published yet")
        )
        if released and case.published:
            fix_times.append(f"{case.id} fixed in {_days(released - case.published)}")
        if case.latest.withdrawn:
            continue
        sev = f" ({case.latest.severity})" if case.latest.severity else ""
        if ctx.ev.digest in case.affected:
            summary = f": {case.latest.summary}" if case.latest.summary else ""
            rules.append(
                RuleResult(
                    "responsiveness.open",
                    N if pol.refuse_open_advisories else NOTE,
                    f"advisory {case.id}{sev} affects this version{summary} (published "
                    f"{day(case.published)}; {fix_text})",
                    tuple(case.refs),
                )
            )
        if pol.max_advisory_age_days and not is_out:
            if case.published is None:
                rules.append(
                    RuleResult(
                        "responsiveness.age",
                        U,
                        f"advisory {case.id}: when it was published is not known",
                        tuple(case.refs),
                    )
                )
                continue
            age = ctx.now - case.published
            if age > dt.timedelta(days=pol.max_advisory_age_days):
                rules.append(
                    RuleResult(
                        "responsiveness.age",
                        N,
                        f"advisory {case.id}{sev} has gone {_days(age)} without a fixed "
                        f"release (policy allows {pol.max_advisory_age_days} days)",
                        tuple(case.refs),
                    )
                )
    fixes = f"; {', '.join(fix_times)}" if fix_times else ""
    affected = any(r.rule == "responsiveness.open" for r in rules)
    if ctx.ev.history_problem:
        rules.append(
            RuleResult(
                "responsiveness.history",
                U,
                f"advisories may be missing: {ctx.ev.history_problem}",
            )
        )
    else:
        rules.append(
            RuleResult(
                "responsiveness.history",
                S,
                ("the history was read in full" if affected else "no advisory affects this version")
                + f" ({_count(len(cases), 'advisory')} about {ctx.ev.package} in "
                f"{', '.join(ctx.ev.history_logs)}{fixes})",
                tuple(r for c in cases.values() for r in c.refs),
            )
        )
    return [*rules, *notes]


def _count(n: int, noun: str) -> str:
    if n == 0:
        return f"no {noun}"
    return (
        f"{n} {noun}" if n == 1 else f"{n} {noun[:-1]}ies" if noun.endswith("y") else f"{n} {noun}s"
    )


def _days(delta: dt.timedelta) -> str:
    if delta < dt.timedelta(days=2):
        return f"{max(0, int(delta.total_seconds() // 3600))} hours"
    return f"{delta.days} days"


# -- provenance ----------------------------------------------------------------------------


def _sensitive_changes(ctx: Context, base: dict[str, str]) -> list[str]:
    """Titles of sensitive layers that differ between ``base`` and this version."""
    here = ctx.ev.layers

    def role(layers: dict[str, str]) -> dict[str, tuple[str, str]]:
        # Motte.toml by name; the module by role, so a renamed module is a changed module.
        return {
            ("Motte.toml" if t == "Motte.toml" else "module"): (t, d) for t, d in layers.items()
        }

    a, b = role(base), role(here)
    changed = []
    for r in sorted(set(a) | set(b)):
        old, new = a.get(r), b.get(r)
        if old == new:
            continue
        titles = {x[0] for x in (old, new) if x}
        if any(fnmatch.fnmatchcase(t, pat) for t in titles for pat in ctx.policy.sensitive):
            changed.append(new[0] if new else old[0])  # type: ignore[index]
    return changed


def provenance(ctx: Context) -> list[RuleResult]:
    pubs = ctx.publications()
    here = [s for s in pubs if s.about(ctx.ev.digest)]
    rules: list[RuleResult] = []
    notes = _outside_rotation(ctx)
    if not here:
        rules.append(
            RuleResult(
                "provenance.signers",
                U,
                "no verified, logged publication by a delegated key: who published it is not known",
            )
        )
        return [*rules, *notes]
    assert ctx.ev.publishers is not None
    since = ctx.ev.publishers.delegated_since
    signers = sorted({k for s in here for k in s.signed_by_any(ctx.publisher_ids)})
    for key in signers:
        first = _first([s.log for s in here if key in s.signers and s.log])
        first_here = first.index
        mine = [s for s in pubs if key in s.signers]
        earliest = mine[0]
        root = f", delegated since root version {since[key]}" if key in since else ""
        before = [s for s in pubs if s.log and _before(s.log, first) and not s.about(ctx.ev.digest)]
        seen = any(s.log and _before(s.log, first) for s in mine) or key in ctx.ev.seen_signers
        if seen:
            rules.append(
                RuleResult(
                    "provenance.signer",
                    S,
                    f"{ctx.who(key)} has signed {ctx.ev.package} since log entry "
                    f"{earliest.log.index if earliest.log else '?'} "
                    f"({day(earliest.log.time if earliest.log else None)}){root}",
                    (ctx.cite(earliest, signer=key),),
                )
            )
            continue
        if not before and not ctx.ev.versions:
            rules.append(
                RuleResult(
                    "provenance.signer",
                    S,
                    f"{ctx.who(key)} is the first publisher of {ctx.ev.package} (log entry "
                    f"{first_here}){root}: nothing earlier to compare with",
                    (ctx.cite(earliest, signer=key),),
                )
            )
            continue
        rules.append(_new_signer(ctx, key, first_here, before, root))
    if not any(r.status == S for r in rules):
        rules.append(
            RuleResult(
                "provenance.signers",
                S,
                f"published by {', '.join(ctx.who(k) for k in signers)} under "
                f"{ctx.ev.publishers.source}",
                tuple(ctx.cite(s) for s in here),
            )
        )
    return _order(rules) + notes


def _before(a: LogPlace, b: LogPlace) -> bool:
    """``a`` was logged before ``b``: by index in one log, else by the logs' times.

    Entries of two different logs without times cannot be ordered; they count as not
    before, so a signer is never "seen before" on evidence that cannot show it.
    """
    if a.origin == b.origin:
        return a.index < b.index
    return a.time is not None and b.time is not None and a.time < b.time


def _first(places: list[LogPlace]) -> LogPlace:
    return min(places, key=lambda p: (p.time or dt.datetime.max.replace(tzinfo=dt.UTC), p.index))


def _new_signer(
    ctx: Context, key: str, first_here: int, before: list[FoundStatement], root: str
) -> RuleResult:
    """A key never seen signing this package, on a package with a history."""
    this = next(s for s in ctx.publications() if s.about(ctx.ev.digest) and key in s.signers)
    cite = (ctx.cite(this, signer=key),)
    new = (
        f"{ctx.who(key)} is new to {ctx.ev.package} (no earlier signature in the log or here){root}"
    )
    if not ctx.policy.sensitive:
        return RuleResult("provenance.new-signer", NOTE, new, cite)
    # The version to compare with: the latest earlier one whose layers are at hand.
    base_digest = None
    for s in reversed(before):
        for d in sorted(s.subjects):
            if d in ctx.ev.versions:
                base_digest = d
                break
        if base_digest:
            break
    if base_digest is None and ctx.ev.versions:
        base_digest = sorted(ctx.ev.versions)[-1]
    if base_digest is None:
        return RuleResult(
            "provenance.new-signer",
            U,
            f"{new}; the previous version is not at hand to tell whether it changed a "
            "sensitive layer",
            cite,
        )
    changed = _sensitive_changes(ctx, ctx.ev.versions[base_digest])
    if changed:
        return RuleResult(
            "provenance.new-signer",
            N,
            f"{new}, and it changed sensitive layer(s) {', '.join(changed)} since "
            f"{base_digest[:19]}",
            (*cite, EvidenceRef("layer", detail=f"compared with {base_digest}")),
        )
    return RuleResult(
        "provenance.new-signer",
        NOTE,
        f"{new}; it changed no sensitive layer since {base_digest[:19]}",
        cite,
    )


def _outside_rotation(ctx: Context) -> list[RuleResult]:
    """Publications of this digest signed by keys the trust root does not delegate."""
    out = []
    source = ctx.ev.publishers.source if ctx.ev.publishers else "the trust root"
    for s in ctx.of_type(PUBLICATION):
        outside = [k for k in (*s.unknown_keyids, *s.signers) if k not in ctx.publisher_ids]
        for k in outside:
            out.append(
                RuleResult(
                    "provenance.rotation",
                    NOTE,
                    f"a publication is signed by {ctx.who(k) or '(no keyid)'}, which {source} "
                    "does not delegate (outside its rotation): not counted",
                    (ctx.cite(s, signer=k),),
                )
            )
    return out


def _order(rules: list[RuleResult]) -> list[RuleResult]:
    rank = {N: 0, U: 1, S: 2, NOTE: 3}
    return sorted(rules, key=lambda r: rank[r.status])


# -- expertise -----------------------------------------------------------------------------


def expertise(ctx: Context) -> list[RuleResult]:
    pol = ctx.policy
    fresh: dict[str, EvidenceRef] = {}
    failed: list[RuleResult] = []
    stale: list[RuleResult] = []
    notes: list[RuleResult] = []
    for s in ctx.of_type(REVIEW):
        if not s.usable:
            # Unverified: read only to say what was not counted.
            reviewer = s.predicate.get("reviewer", {})
            rid = reviewer.get("id") if isinstance(reviewer, dict) else None
            label = s.predicate.get("kind") if s.predicate.get("kind") == "audit" else "review"
            who = ", ".join(short(k) for k in (*s.signers, *s.unknown_keyids)) or "no key"
            why = (
                s.parse_problem
                or s.log_problem
                or f"signed by {who}, not an auditor the policy names"
            )
            notes.append(
                RuleResult(
                    "expertise.auditor",
                    NOTE,
                    f"{label} by {rid or 'an unnamed reviewer'} (unverified) not counted: {why}",
                    (ctx.cite(s),),
                )
            )
            continue
        r = predicate(s, Review.from_dict)
        found = ctx.party(pol.auditors, s.signers)
        if found is None:
            notes.append(
                RuleResult(
                    "expertise.auditor",
                    NOTE,
                    f"{r.kind} by {r.reviewer} (key {short(s.signers[0])}) not counted: not an "
                    "auditor the policy names",
                    (ctx.cite(s),),
                )
            )
            continue
        party, key = found
        # The reviewer's own date, never later than the log's time for the statement.
        dates = [d for d in (parse_time(r.date), s.log.time if s.log else None) if d]
        when = min(dates) if dates else None
        cite = ctx.cite(s, signer=key, detail=f"{r.kind} by {party.name}, scope {r.scope}")
        desc = f"{r.kind} by {party.name} (scope {r.scope}, {day(when)})"
        if r.result != "pass":
            failed.append(RuleResult("expertise.result", N, f"{desc} failed", (cite,)))
            continue
        if when is None:
            stale.append(RuleResult("expertise.age", U, f"{desc}: its date is not known", (cite,)))
            continue
        age = ctx.now - when
        if pol.max_audit_age_days and age > dt.timedelta(days=pol.max_audit_age_days):
            stale.append(
                RuleResult(
                    "expertise.age",
                    N,
                    f"{desc} is stale: {age.days} days old, the policy allows "
                    f"{pol.max_audit_age_days}",
                    (cite,),
                )
            )
            continue
        fresh.setdefault(party.name, cite)
    if failed:
        return [*failed, *stale, *notes]
    if len(fresh) >= pol.min_audits and fresh:
        return [
            RuleResult(
                "expertise.audits",
                S,
                f"{len(fresh)} passing review(s) by auditor(s) the policy names: "
                f"{', '.join(sorted(fresh))}",
                tuple(fresh.values()),
            ),
            *[replace_note(r) for r in stale],
            *notes,
        ]
    if stale and not fresh:
        return [*stale, *notes]
    have = f"{len(fresh)} of the {pol.min_audits} required" if fresh else "no"
    others = f" ({len(notes)} not counted)" if notes else ""
    return [
        RuleResult(
            "expertise.audits",
            U,
            f"{have} fresh passing audit(s) by auditors the policy names{others}",
            tuple(fresh.values()),
        ),
        *stale,
        *notes,
    ]


def replace_note(r: RuleResult) -> RuleResult:
    """A stale audit beside enough fresh ones informs but does not decide."""
    return RuleResult(r.rule, NOTE, r.message, r.evidence)
