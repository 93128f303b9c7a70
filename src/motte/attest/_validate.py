"""Validate verified claims against a policy, reporting every rule, not just the first.

Each rule is named, and a mismatch gives the spec's field name with the got and want values in
hex (as go-sev-guest's validate does), so one run shows everything that must change. Rules
the policy does not ask for are recorded as skipped: a verdict says what was *not* checked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from motte.attest._binding import expected_report_data
from motte.attest._checks import CheckLog, RuleResult
from motte.attest._policy import Policy

if TYPE_CHECKING:
    from motte.attest.sim import SimEvidence
    from motte.attest.snp._verify import SnpVerified


def _short(b: bytes) -> str:
    return b.hex()


def _one_of(values: Iterable[bytes]) -> str:
    vs = [v.hex() for v in values]
    return vs[0] if len(vs) == 1 else "one of [" + ", ".join(vs) + "]"


def check_bytes(log: CheckLog, rule: str, field: str, got: bytes, want: Sequence[bytes]) -> None:
    """``got`` must be one of ``want``; an empty ``want`` means the policy does not ask."""
    if not want:
        log.skip(rule, f"the policy names no {field}")
    elif got in want:
        log.ok(rule, f"{field} {_short(got)} is allowed")
    else:
        log.bad(rule, f"{field}: got {_short(got)}, want {_one_of(want)}")


def check_kind(log: CheckLog, kind: str, policy: Policy) -> None:
    if kind == "sim":
        if policy.allow_insecure_sim:
            log.ok(
                "kind", "sim (INSECURE software keep) allowed: the policy sets allow_insecure_sim"
            )
        else:
            log.bad(
                "kind",
                "sim evidence comes from an INSECURE software keep; the policy does not set "
                "allow_insecure_sim",
            )
    elif policy.kind_allowed(kind):
        log.ok("kind", f"{kind} is an allowed TEE kind")
    else:
        log.bad("kind", f"{kind} is not in allowed_kinds ({', '.join(policy.allowed_kinds)})")


#: The field that says "debug", per TEE kind, as the verdict names it.
DEBUG_FIELD = {"snp": "POLICY.DEBUG", "tdx": "TDATTRIBUTES.DEBUG", "sgx": "ATTRIBUTES.DEBUG"}


def check_debug(log: CheckLog, debug: bool, what: str, policy: Policy) -> None:
    if not debug:
        log.ok("debug", f"{what} is clear: not a debug TEE")
    elif policy.allow_debug:
        log.ok("debug", f"{what} is set (debug TEE) and the policy sets allow_debug")
    else:
        log.bad("debug", f"{what} is set: a debug TEE exposes its memory; the policy forbids it")


def check_report_data(log: CheckLog, field: str, got: bytes, policy: Policy) -> None:
    if policy.report_data is None:
        log.skip(
            "report-data",
            f"no expected {field} given: freshness and key binding are not checked",
        )
        return
    want = expected_report_data(policy.report_data)
    if got == want:
        log.ok("report-data", f"{field} equals the expected value")
    else:
        log.bad("report-data", f"{field}: got {got.hex()}, want {want.hex()}")


def validate_snp(v: SnpVerified, policy: Policy) -> list[RuleResult]:
    log = CheckLog("policy")
    p = policy.snp
    r = v.report
    gp = r.guest_policy
    check_kind(log, "snp", policy)
    check_debug(log, gp.debug, DEBUG_FIELD["snp"], policy)
    if gp.migrate_ma and not p.allow_migrate_ma:
        log.bad(
            "migrate-ma",
            "POLICY.MIGRATE_MA is set: a migration agent may export the guest; "
            "the policy does not set allow_migrate_ma",
        )
    else:
        log.ok(
            "migrate-ma", f"POLICY.MIGRATE_MA is {'set (allowed)' if gp.migrate_ma else 'clear'}"
        )
    if gp.smt and not p.allow_smt:
        log.bad("smt", "POLICY.SMT is set (host may run SMT); the policy sets allow_smt = false")
    else:
        log.ok("smt", f"POLICY.SMT is {'set' if gp.smt else 'clear'}")
    if p.vmpl is None:
        log.skip("vmpl", "the policy names no VMPL")
    elif r.vmpl == p.vmpl:
        log.ok("vmpl", f"VMPL is {r.vmpl}")
    else:
        log.bad("vmpl", f"VMPL: got {r.vmpl}, want {p.vmpl}")
    check_bytes(log, "measurement", "MEASUREMENT", r.measurement, p.measurements)
    check_bytes(log, "host-data", "HOST_DATA", r.host_data, (p.host_data,) if p.host_data else ())
    check_bytes(log, "id-key-digest", "ID_KEY_DIGEST", r.id_key_digest, p.id_key_digests)
    if p.author_key_digests and not r.author_key_en:
        log.bad("author-key-digest", "AUTHOR_KEY_EN is clear: the report names no author key")
    else:
        check_bytes(
            log, "author-key-digest", "AUTHOR_KEY_DIGEST", r.author_key_digest, p.author_key_digests
        )
    _check_min_tcb(log, v, p.min_tcb)
    if p.min_guest_svn is None:
        log.skip("min-guest-svn", "the policy names no minimum GUEST_SVN")
    elif r.guest_svn >= p.min_guest_svn:
        log.ok("min-guest-svn", f"GUEST_SVN {r.guest_svn} >= {p.min_guest_svn}")
    else:
        log.bad("min-guest-svn", f"GUEST_SVN: got {r.guest_svn}, want >= {p.min_guest_svn}")
    check_report_data(log, "REPORT_DATA", r.report_data, policy)
    return log.results


def _check_min_tcb(log: CheckLog, v: SnpVerified, min_tcb: Any) -> None:
    if not min_tcb:
        log.skip("min-tcb", "the policy names no minimum TCB")
        return
    from motte.attest.snp._abi import PRODUCT_TCB_LAYOUT, decode_tcb

    layout = PRODUCT_TCB_LAYOUT[v.product]
    got = decode_tcb(v.report.reported_tcb, layout)
    low = [
        f"{name} {got[name]} < {want}"
        for name, want in min_tcb.items()
        if name in got and got[name] < want
    ]
    if low:
        log.bad(
            "min-tcb",
            f"REPORTED_TCB {v.report.reported_tcb:#018x} is below the minimum: " + ", ".join(low),
        )
    else:
        shown = ", ".join(f"{k} {got[k]}>={w}" for k, w in min_tcb.items() if k in got)
        log.ok("min-tcb", f"REPORTED_TCB meets the minimum ({shown})")


def validate_sim(ev: SimEvidence, policy: Policy) -> list[RuleResult]:
    log = CheckLog("policy")
    p = policy.sim
    check_kind(log, "sim", policy)
    check_bytes(log, "sim-key", "SIGNER_KEY", ev.signer_key, p.keys)
    check_bytes(log, "measurement", "MEASUREMENT", ev.measurement, p.measurements)
    check_report_data(log, "REPORT_DATA", ev.report_data, policy)
    return log.results


def check_tcb_status(
    log: CheckLog,
    status: str,
    advisories: Sequence[str],
    accepted: Sequence[str],
    allowed_advisories: Sequence[str] | None,
) -> None:
    adv = f" (advisories: {', '.join(advisories)})" if advisories else ""
    if status in accepted:
        log.ok("tcb-status", f"TCB status {status}{adv} is accepted")
    else:
        log.bad(
            "tcb-status",
            f"TCB status: got {status}{adv}, want {' or '.join(accepted)}",
        )
    if allowed_advisories is None:
        if advisories:
            log.skip("advisories", "the policy lists no allowed advisories; the status decides")
        else:
            log.ok("advisories", "no advisories apply")
        return
    extra = [a for a in advisories if a not in allowed_advisories]
    if extra:
        log.bad("advisories", f"advisories not allowed by the policy: {', '.join(extra)}")
    else:
        log.ok(
            "advisories", "every advisory is allowed by the policy" if advisories else "none apply"
        )


def validate_intel(v: Any, policy: Policy) -> list[RuleResult]:
    """Rules for a verified TDX or SGX quote (``v`` is motte.attest.intel.IntelVerified)."""
    log = CheckLog("policy")
    tee = v.tee
    check_kind(log, tee, policy)
    check_debug(log, v.debug, DEBUG_FIELD[tee], policy)
    if tee == "tdx":
        p = policy.tdx
        check_tcb_status(
            log, v.tcb_status, v.advisory_ids, p.accepted_tcb_statuses, p.allowed_advisories
        )
        check_bytes(log, "mr-td", "MRTD", v.mr_td, p.mr_td)
        for i in range(4):
            want = getattr(p, f"rtmr{i}")
            check_bytes(
                log, f"rtmr{i}", f"RTMR{i}", getattr(v, f"rtmr{i}"), (want,) if want else ()
            )
        check_bytes(log, "mr-seam", "MRSEAM", v.mr_seam, p.mr_seam)
        for name, field in (
            ("mr_config_id", "MRCONFIGID"),
            ("mr_owner", "MROWNER"),
            ("mr_owner_config", "MROWNERCONFIG"),
        ):
            want = getattr(p, name)
            check_bytes(
                log, name.replace("_", "-"), field, getattr(v, name), (want,) if want else ()
            )
    else:
        s = policy.sgx
        check_tcb_status(
            log, v.tcb_status, v.advisory_ids, s.accepted_tcb_statuses, s.allowed_advisories
        )
        check_bytes(log, "mr-enclave", "MRENCLAVE", v.mr_enclave, s.mr_enclave)
        check_bytes(log, "mr-signer", "MRSIGNER", v.mr_signer, s.mr_signer)
        if s.isv_prod_id is None:
            log.skip("isv-prod-id", "the policy names no ISVPRODID")
        elif v.isv_prod_id == s.isv_prod_id:
            log.ok("isv-prod-id", f"ISVPRODID is {v.isv_prod_id}")
        else:
            log.bad("isv-prod-id", f"ISVPRODID: got {v.isv_prod_id}, want {s.isv_prod_id}")
        if s.min_isv_svn is None:
            log.skip("min-isv-svn", "the policy names no minimum ISVSVN")
        elif v.isv_svn >= s.min_isv_svn:
            log.ok("min-isv-svn", f"ISVSVN {v.isv_svn} >= {s.min_isv_svn}")
        else:
            log.bad("min-isv-svn", f"ISVSVN: got {v.isv_svn}, want >= {s.min_isv_svn}")
    check_report_data(log, "REPORTDATA", v.report_data, policy)
    return log.results
