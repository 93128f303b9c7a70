"""Errors of motte.trust, split by who is at fault.

Local: a policy file that does not parse or cannot be met (:class:`PolicyError`, a usage
error: exit status 2, so a script can tell "your policy is broken" from "refused"), a
rebuild or advisory asked for wrongly. Remote: a package the policy refuses
(:class:`TrustRefusedError`, carrying the verdict), a rebuild whose recipe or source is bad.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from motte.errors import ConfigError, ExitStatus, MotteError, UsageError, VerificationError

if TYPE_CHECKING:
    from motte.trust._verdict import TrustVerdict


class TrustError(MotteError):
    """Base of every motte.trust error."""


class PolicyError(TrustError, ConfigError):
    """A trust policy that does not parse, or can never be met: names the file, line and key."""

    exit_status = ExitStatus.USAGE


class TrustUsageError(TrustError, UsageError):
    """The caller asked for something that cannot work (mixed packages in one advisory...)."""


class RebuildError(TrustError):
    """A rebuild that could not run to a comparison: no recipe, a clone or build that failed."""


class TrustRefusedError(TrustError, VerificationError):
    """The policy refused the package; ``verdict`` holds every area's outcome and evidence."""

    def __init__(self, verdict: TrustVerdict) -> None:
        failing = verdict.failing()
        reasons = "; ".join(f"{a.area} {a.status.value}: {a.deciding.message}" for a in failing)
        super().__init__(
            f"trust: {verdict.reference} refused under policy {verdict.policy_name} "
            f"({verdict.policy_digest[:19]}): {reasons}",
            hint=f"motte trust {verdict.reference} --policy {verdict.policy_path or 'FILE'} "
            "shows the evidence for each area",
        )
        self.verdict = verdict
