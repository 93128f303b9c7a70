"""The areas about the artifact itself: how it was built (build) and whether it is intact and
published as logged (integrity). Pure functions of the evidence, the policy and the time."""

from __future__ import annotations

from motte.sign import DIGEST_SIGNATURES, PUBLICATION, SLSA_PROVENANCE, Provenance, Publication
from motte.trust._context import Context, kind, predicate, short
from motte.trust._evidence import EXISTS, MISSING
from motte.trust._predicates import REBUILD, Rebuild, RebuildFailure
from motte.trust._verdict import EvidenceRef, RuleResult, Status

S, N, U, NOTE = Status.SATISFIED, Status.NOT_SATISFIED, Status.UNKNOWN, Status.NOTE


# -- build ---------------------------------------------------------------------------------


def build(ctx: Context) -> list[RuleResult]:
    return [*_provenance(ctx), *_reproducible(ctx)]


def _provenance(ctx: Context) -> list[RuleResult]:
    """SLSA: provenance from a signer-builder pair the consumer's policy trusts.

    Provenance signed by a known key for a builder the policy does not trust says "not built
    by a builder you trust" (not satisfied); provenance nobody known signed, or that is not
    logged, says nothing (a note), so a stranger's statement can never change the outcome.
    """
    notes: list[RuleResult] = []
    untrusted: list[RuleResult] = []
    for s in ctx.of_type(SLSA_PROVENANCE):
        if not s.usable:
            who = ", ".join(short(k) for k in s.unknown_keyids) or "no key"
            why = s.parse_problem or s.log_problem or f"signed by unknown key {who}"
            notes.append(
                RuleResult(
                    "build.provenance", NOTE, f"provenance not counted: {why}", (ctx.cite(s),)
                )
            )
            continue
        p = predicate(s, Provenance.from_dict)
        pairs = [b for b in ctx.policy.builders if b.name == p.builder]
        match = ctx.party(pairs, s.signers)
        if match is not None:
            _, key = match
            signer = (
                f"its identity {ctx.who(key)}" if key in ctx.ev.names else f"its key {short(key)}"
            )
            found = RuleResult(
                "build.provenance",
                S,
                f"built by {p.builder} ({signer}) from {p.source} at {p.commit[:12]}",
                (ctx.cite(s, signer=key, detail=f"builder {p.builder}"),),
            )
            return [found, *notes]
        untrusted.append(
            RuleResult(
                "build.provenance",
                N,
                f"provenance by builder {p.builder} signed by {ctx.who(s.signers[0])}: not a "
                "signer-builder pair the policy trusts",
                (ctx.cite(s),),
            )
        )
    if untrusted:
        return [*untrusted, *notes]
    unknown = RuleResult("build.provenance", U, "no SLSA provenance: how it was built is not known")
    return [unknown, *notes]


def _reproducible(ctx: Context) -> list[RuleResult]:
    """Matching rebuilds by rebuilders the policy trusts, independent of the publisher.

    A rebuilder's failed rebuild (it could not clone, check out, build or find the module) is
    judged as ``failed_rebuild`` says: not satisfied (the default), unknown, or a note. A
    failure by a rebuilder that also completed a rebuild of this digest (match or mismatch)
    is only a note: it got further another time.
    """
    pol = ctx.policy
    builders_here = {
        k
        for s in (*ctx.of_type(PUBLICATION), *ctx.of_type(SLSA_PROVENANCE))
        if s.verified
        for k in s.signers
    }
    matches: dict[str, EvidenceRef] = {}
    mismatches: list[RuleResult] = []
    notes: list[RuleResult] = []
    completed: set[str] = set()  # rebuilders that got to a comparison
    failures: list[tuple[str, Rebuild, RebuildFailure, EvidenceRef]] = []
    for s in ctx.of_type(REBUILD):
        if not s.usable:
            who = ", ".join(short(k) for k in s.unknown_keyids) or "no key"
            why = s.parse_problem or s.log_problem or f"signed by unknown key {who}"
            notes.append(
                RuleResult("build.rebuild", NOTE, f"rebuild not counted: {why}", (ctx.cite(s),))
            )
            continue
        found = ctx.party(pol.rebuilders, s.signers)
        if found is None:
            msg = f"rebuild by {short(s.signers[0])} not counted: not a rebuilder the policy names"
            notes.append(RuleResult("build.rebuild", NOTE, msg, (ctx.cite(s),)))
            continue
        party, key = found
        if key in builders_here:
            msg = (
                f"rebuild by {party.name} not counted: its key {short(key)} also signed the "
                "package or its provenance (not independent)"
            )
            notes.append(RuleResult("build.rebuild", NOTE, msg, (ctx.cite(s, signer=key),)))
            continue
        r = predicate(s, Rebuild.from_dict)
        if r.expected != ctx.ev.digest:
            msg = f"rebuild by {party.name} compared against {r.expected[:19]}, not this digest"
            notes.append(RuleResult("build.rebuild", NOTE, msg, (ctx.cite(s, signer=key),)))
            continue
        cite = ctx.cite(s, signer=key, detail=f"rebuilder {party.name}")
        if r.failure is not None:
            failures.append((party.name, r, r.failure, cite))
            continue
        completed.add(party.name)
        if r.result == "match":
            matches.setdefault(party.name, cite)
        else:
            what = (
                f"module {r.expected_module[:19]} rebuilt as {r.rebuilt_module[:19]}"
                if r.expected_module != r.rebuilt_module
                else f"package {r.expected[:19]} rebuilt as {r.rebuilt[:19]}"
            )
            mismatches.append(
                RuleResult(
                    "build.reproducible",
                    N,
                    f"not reproducible: {party.name} rebuilt {r.source} at {r.commit[:12]} "
                    f"and got different bytes ({what})",
                    (cite,),
                )
            )
    failed = _failed_rebuilds(pol.failed_rebuild, failures, completed, notes)
    if mismatches or any(f.status == N for f in failed):
        return [*mismatches, *failed, *notes]
    need = pol.min_rebuilds
    if len(matches) >= need and matches:
        names = ", ".join(sorted(matches))
        rule = RuleResult(
            "build.reproducible",
            S if pol.reproducible else NOTE,
            f"reproduced byte for byte by {len(matches)} independent rebuilder(s): {names}",
            tuple(matches.values()),
        )
    elif pol.reproducible:
        rule = RuleResult(
            "build.reproducible",
            U,
            f"{len(matches)} of the {need} required independent rebuild(s) "
            "(a rebuilder runs: motte rebuild REF --attest KEY)",
            tuple(matches.values()),
        )
    else:
        return [*failed, *notes]
    # A failure the policy counts decides before the count of matches: it is the reason.
    counted = [f for f in failed if f.status != NOTE]
    return [*counted, rule, *[f for f in failed if f.status == NOTE], *notes]


def _failed_rebuilds(
    mode: str,
    failures: list[tuple[str, Rebuild, RebuildFailure, EvidenceRef]],
    completed: set[str],
    notes: list[RuleResult],
) -> list[RuleResult]:
    """The rules failed rebuilds make under the policy's ``failed_rebuild``; superseded
    failures (the same rebuilder completed a rebuild) go to ``notes``."""
    status = {"refuse": N, "unknown": U, "note": NOTE}[mode]
    out = []
    for name, r, failure, cite in failures:
        what = (
            f"could not rebuild: {name} tried {r.source} at {r.commit[:12]} and failed at the "
            f"{failure.stage} step: {failure.reason}"
        )
        if name in completed:
            msg = f"{what} (not counted: {name} also completed a rebuild of this digest)"
            notes.append(RuleResult("build.rebuild", NOTE, msg, (cite,)))
            continue
        out.append(RuleResult("build.reproducible", status, what, (cite,)))
    return out


# -- integrity -----------------------------------------------------------------------------


def integrity(ctx: Context) -> list[RuleResult]:
    return [
        _digest(ctx),
        *_tampered(ctx),
        _signed(ctx),
        *_release(ctx),
        _logged(ctx),
        _source(ctx),
    ]


def _release(ctx: Context) -> list[RuleResult]:
    """Judged by tag: the digest is the tag's current release (no rollback, not expired,
    not a moved tag). An override by --allow-rollback is a note naming where it is recorded."""
    check = ctx.ev.release
    if check is None:
        return []
    if check.refused:
        return [RuleResult("integrity.release", N, check.message)]
    if check.overridden is not None:
        where = ctx.ev.release_override_file or "the overrides file"
        return [RuleResult("integrity.release", NOTE, f"{check.message} (recorded in {where})")]
    if check.status == "unbound":
        return [RuleResult("integrity.release", NOTE, check.message)]
    return [RuleResult("integrity.release", S, check.message)]


def _digest(ctx: Context) -> RuleResult:
    ref = EvidenceRef("layer", detail=f"manifest {ctx.ev.digest}")
    if ctx.ev.blob_problem:
        return RuleResult("integrity.digest", N, ctx.ev.blob_problem, (ref,))
    names = ", ".join(sorted(ctx.ev.layers))
    return RuleResult(
        "integrity.digest", S, f"the manifest and every blob ({names}) match their digests", (ref,)
    )


def _tampered(ctx: Context) -> list[RuleResult]:
    """Signatures that name a known key and fail, and referrers that do not parse: notes.

    A keyid is an unauthenticated hint, so anyone can attach an envelope naming a trusted
    key beside random bytes; and anyone with push access can attach junk. Neither may change
    the outcome (a genuine statement that was altered stops counting, which the rules that
    needed it report), so each is listed, as ignored, and nothing more.
    """
    out = []
    for s in ctx.ev.statements:
        if s.bad_keyids:
            out.append(
                RuleResult(
                    "integrity.ignored",
                    NOTE,
                    f"{kind(s)} statement {s.envelope_digest[:19]} ignored: it names key "
                    f"{short(s.bad_keyids[0])}, but the signature does not verify (the "
                    "statement or signature was changed, or never made by that key)",
                    (ctx.cite(s, signer=s.bad_keyids[0]),),
                )
            )
        elif not s.signers and s.parse_problem and s.referrer is not None:
            out.append(
                RuleResult(
                    "integrity.ignored",
                    NOTE,
                    f"referrer {s.referrer[:19]} ignored: {s.parse_problem}",
                    (ctx.cite(s),),
                )
            )
    return out


def _signed(ctx: Context) -> RuleResult:
    pubs = ctx.ev.publishers
    if pubs is None:
        return RuleResult(
            "integrity.signed", U, f"who may publish it is not known: {ctx.ev.publisher_problem}"
        )
    counted: dict[str, EvidenceRef] = {}
    why_not: list[str] = []
    # Sigstore signatures of the digest (cosign's sign/v1, a message signature) count as
    # publications of it: they name no package (see docs/supply-chain.md).
    signatures = [s for t in sorted(DIGEST_SIGNATURES) for s in ctx.of_type(t)]
    for s in [*ctx.of_type(PUBLICATION), *signatures]:
        mine = s.signed_by_any(pubs.keyids)
        if not mine:
            continue
        if not s.usable:
            why_not.append(f"{ctx.who(mine[0])}: {s.log_problem or s.parse_problem}")
            continue
        if s.predicate_type == PUBLICATION:
            p = predicate(s, Publication.from_dict)
            if (p.namespace, p.name) != (ctx.ev.namespace, ctx.ev.name):
                why_not.append(f"{ctx.who(mine[0])} publishes it as {p.namespace}/{p.name}")
                continue
        for k in mine:
            counted.setdefault(k, ctx.cite(s, signer=k))
    if len(counted) >= pubs.threshold:
        return RuleResult(
            "integrity.signed",
            S,
            f"published by {len(counted)} of the {pubs.threshold} required key(s) of {pubs.source}",
            tuple(counted.values()),
        )
    reasons = f" ({'; '.join(why_not)})" if why_not else ""
    return RuleResult(
        "integrity.signed",
        N,
        f"{len(counted)} of the {pubs.threshold} required publisher signature(s) from "
        f"{pubs.source}{reasons}",
        tuple(counted.values()),
    )


def _logged(ctx: Context) -> RuleResult:
    """Every statement a known key signed about this digest is in a trusted log, no fork."""
    mine = [s for s in ctx.ev.statements if s.about(ctx.ev.digest) and s.verified]
    # The same envelope may be attached twice, once by a stranger with a proof that does
    # not verify: a statement is logged when any copy of it is.
    logged_envelopes = {s.envelope_digest for s in mine if s.log is not None}
    mine = [s for s in mine if s.log is not None or s.envelope_digest not in logged_envelopes]
    for s in mine:
        if s.log is None:
            return RuleResult(
                "integrity.logged",
                N,
                f"{kind(s)} by {short(s.signers[0])}: {s.log_problem}",
                (ctx.cite(s),),
            )
    if not mine:
        return RuleResult("integrity.logged", U, "no statement signed by a key the consumer knows")
    origins = sorted({s.log.origin for s in mine if s.log})
    motte_logs = [o for o in origins if not o.startswith("Rekor ")]
    rekor = [o for o in origins if o.startswith("Rekor ")]
    parts = []
    if motte_logs:
        parts.append(
            f"in {', '.join(motte_logs)}, under checkpoints consistent with those seen before"
        )
    if rekor:
        # sigstore-python verified the proof and the signed checkpoint offline; nothing
        # compares that checkpoint with earlier ones (no fork check for Rekor).
        parts.append(f"in {', '.join(rekor)} (inclusion proof and checkpoint; no fork check)")
    return RuleResult(
        "integrity.logged",
        S,
        f"{len(mine)} statement(s) included " + "; ".join(parts),
        tuple(ctx.cite(s) for s in mine),
    )


def _source(ctx: Context) -> RuleResult:
    """The provenance names an exact commit, and its source, asked, has that commit.

    A source that does not have the recorded commit is not satisfied; one that could not be
    asked (unreachable, needs credentials, would not say) is ``unchecked_source``: unknown
    (the default) or a note, never satisfied.
    """
    found = [s for s in ctx.of_type(SLSA_PROVENANCE) if s.verified]
    for s in found:
        if s.parse_problem:
            return RuleResult(
                "integrity.source",
                N,
                f"provenance by {short(s.signers[0])} does not name an exact source: "
                f"{s.parse_problem.split(': ', 1)[-1]}",
                (ctx.cite(s),),
            )
    usable = [s for s in found if s.usable]
    if not usable:
        return RuleResult(
            "integrity.source", NOTE, "no build provenance: no source commit to check"
        )
    checks = {(c.source, c.commit): c for c in ctx.ev.source_checks}
    unchecked: RuleResult | None = None
    for s in usable:
        p = predicate(s, Provenance.from_dict)
        c = checks.get((p.source, p.commit))
        if c is not None and c.status == MISSING:
            return RuleResult(
                "integrity.source",
                N,
                f"the recorded commit {p.commit} does not exist in {p.source} "
                f"(provenance by {short(s.signers[0])}; the source said: {c.detail})",
                (ctx.cite(s),),
            )
        if (c is None or c.status != EXISTS) and unchecked is None:
            why = c.detail if c is not None else "it was not asked"
            unchecked = RuleResult(
                "integrity.source",
                U if ctx.policy.unchecked_source == "unknown" else NOTE,
                f"cannot check that {p.source} has the recorded commit {p.commit[:12]}: {why}",
                (ctx.cite(s),),
            )
    if unchecked is not None:
        return unchecked
    p = predicate(usable[0], Provenance.from_dict)
    c = checks[(p.source, p.commit)]
    return RuleResult(
        "integrity.source",
        S,
        f"provenance names {p.source} at commit {p.commit}: {c.detail}",
        tuple(ctx.cite(s) for s in usable),
    )
