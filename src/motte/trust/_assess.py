"""The recipes: judge a package (:func:`assess`), or refuse it (:func:`enforce`).

``enforce`` is what ``motte run`` and a Keep call before running a package when a trust
policy is configured: it returns the verdict when the policy accepts, and raises
:class:`TrustRefusedError` naming each failing area and its deciding rule otherwise.

Which policy applies to a run is the run's business (:mod:`motte.keep._launch`):
``--trust-policy FILE``, else this host's ``MOTTE_HOME/trust/policy.toml`` when it exists.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

from motte.oci import NO_PROGRESS, LocalStore, Progress, Reference, VerifiedPackage
from motte.sign import PUBLICATION, record_override, remember_release
from motte.trust._decide import decide
from motte.trust._errors import TrustRefusedError
from motte.trust._gather import gather
from motte.trust._memory import remember_accepted
from motte.trust._policy import Policy, load_policy
from motte.trust._verdict import TrustVerdict


def _policy(policy: Policy | str | os.PathLike[str]) -> Policy:
    return policy if isinstance(policy, Policy) else load_policy(policy)


def assess(
    target: Reference | str | VerifiedPackage,
    policy: Policy | str | os.PathLike[str],
    *,
    now: dt.datetime | None = None,
    store: LocalStore | None = None,
    allow_insecure_http: bool = False,
    trust_dir: Path | None = None,
    log_url: str | None = None,
    remember: bool = True,
    progress: Progress = NO_PROGRESS,
    allow_rollback: bool = False,
    trusted_root: Path | None = None,
) -> TrustVerdict:
    """Judge ``target``: a reference, a ``sha256:`` digest in the local store, or a package
    already opened and verified (:func:`motte.oci.open_package`), which is not read again.

    An accepted verdict is remembered (``remember``): the signers it counted become "seen
    before" for this package on this installation. A refused one is not, so a flagged new
    signer stays flagged however often the judgement runs. Judged by tag, an accepted
    current release is remembered too (a later, older one is then a rollback); with
    ``allow_rollback`` an older, expired or moved release is accepted, and the override is
    appended to ``MOTTE_HOME/releases/overrides.jsonl`` and said on standard error.
    """
    pol = _policy(policy)
    now = now or dt.datetime.now(dt.UTC)
    evidence = gather(
        target,
        pol,
        now=now,
        store=store,
        allow_insecure_http=allow_insecure_http,
        trust_dir=trust_dir,
        log_url=log_url,
        progress=progress,
        allow_rollback=allow_rollback,
        trusted_root=trusted_root,
    )
    verdict = decide(evidence, pol, now)
    check = evidence.release
    if check is not None and check.overridden is not None and verdict.accepted:
        path = record_override(
            evidence.package,
            evidence.tag or "",
            evidence.digest,
            check.overridden,
            now=now,
            command="motte trust",
        )
        print(
            f"motte: WARNING: --allow-rollback: {check.overridden}; accepted anyway, recorded "
            f"in {path}",
            file=sys.stderr,
        )
    elif remember and verdict.accepted and check is not None and check.release is not None:
        remember_release(check.release, evidence.digest, now=now)
    if remember and verdict.accepted and evidence.publishers is not None:
        signers = {
            k
            for s in evidence.statements
            if s.predicate_type == PUBLICATION and s.about(evidence.digest) and s.usable
            for k in s.signed_by_any(evidence.publishers.keyids)
        }
        remember_accepted(
            evidence.package, evidence.digest, layers=evidence.layers, signers=signers, now=now
        )
    return verdict


def enforce(
    reference_or_digest: Reference | str | VerifiedPackage,
    policy: Policy | str | os.PathLike[str],
    *,
    now: dt.datetime | None = None,
    store: LocalStore | None = None,
    allow_insecure_http: bool = False,
    allow_rollback: bool = False,
    trusted_root: Path | None = None,
) -> TrustVerdict:
    """The verdict if ``policy`` accepts the package; else raise :class:`TrustRefusedError`.

    Sigstore bundles are verified against ``trusted_root`` (default: the one pinned in
    ``MOTTE_HOME/sigstore/trusted_root.json``, which is what ``motte run`` uses).

    The error's message names every failing area and its deciding rule on one line, and
    carries the whole verdict (``e.verdict``). ``allow_rollback``: see :func:`assess`
    (``motte run --allow-rollback``).
    """
    verdict = assess(
        reference_or_digest,
        policy,
        now=now,
        store=store,
        allow_insecure_http=allow_insecure_http,
        allow_rollback=allow_rollback,
        trusted_root=trusted_root,
    )
    if not verdict.accepted:
        raise TrustRefusedError(verdict)
    return verdict
