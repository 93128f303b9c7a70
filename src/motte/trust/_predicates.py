"""The predicates the trust area writes and reads: advisories, rebuilds, trust verdicts.

- Advisory (``https://motte.dev/attestation/advisory/v1``): a vulnerability in some versions
  of a package. The statement's subjects are the affected digests (in-toto matches subjects
  by digest only; version labels are informational). ``fixed`` names the version that fixes
  it, when there is one. Its published time is never in the predicate: it is the time of the
  log checkpoint that first covers the statement, which the publisher cannot backdate.

      {"id": "MOTTE-2026-0001", "package": {"namespace": "acme", "name": "hello"},
       "affected": [{"digest": "sha256:...", "version": "1.0"}],
       "fixed": {"digest": "sha256:...", "version": "1.1"},
       "severity": "high", "summary": "...", "aliases": ["CVE-2026-1234"]}

  A later statement with the same id updates it (adds the fix, or ``"withdrawn": true``).
- Rebuild (``https://motte.dev/attestation/rebuild/v1``): "I rebuilt this package from its
  recorded source and got these digests": source, commit, command, the expected and rebuilt
  package and module digests, and ``result`` (``match`` only when both are byte-identical).
  Or "I could not rebuild it": ``result`` ``failed``, only the expected digests, and
  ``failure`` ``{"stage": ..., "reason": ...}`` (:data:`FAILURE_STAGES` says which step
  failed). The subject is the package digest; the rebuilder is whoever signs.
- Trust verdict (``https://motte.dev/attestation/trust-verdict/v1``): "the signer judged this
  digest at this time under the policy with this digest": the decision and every area's
  status, deciding rule and evidence references (see :class:`motte.trust.TrustVerdict`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from motte.sign import EnvelopeFormatError
from motte.trust._errors import TrustUsageError

ADVISORY = "https://motte.dev/attestation/advisory/v1"
REBUILD = "https://motte.dev/attestation/rebuild/v1"
TRUST_VERDICT = "https://motte.dev/attestation/trust-verdict/v1"
SEVERITIES = ("low", "medium", "high", "critical")
REBUILD_RESULTS = ("match", "mismatch", "failed")
#: Where a rebuild that did not get to a comparison stopped: the source could not be cloned
#: (unreachable, not a repository), the recorded commit could not be checked out, the build
#: command failed or ran out of time, or it did not produce the module (or a package).
FAILURE_STAGES = ("source", "commit", "build", "timeout", "output")
#: A failure's reason is one line of a tool's output: enough to say why, never a log.
MAX_REASON_CHARS = 500

_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_COMMIT_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def _need(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise EnvelopeFormatError(f"{where}: '{key}' must be a non-empty string")
    return value


def _digest(value: object, where: str) -> str:
    if not isinstance(value, str) or not _DIGEST_RE.fullmatch(value):
        raise EnvelopeFormatError(f"{where}: {value!r} is not a sha256: digest")
    return value


@dataclass(frozen=True, slots=True)
class Version:
    """A package version: its digest (what matches) and the tag it had (a label)."""

    digest: str
    version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"digest": self.digest}
        if self.version:
            out["version"] = self.version
        return out

    @classmethod
    def from_dict(cls, obj: object, where: str) -> Version:
        if not isinstance(obj, dict):
            raise EnvelopeFormatError(f"{where}: must be an object with a digest")
        label = obj.get("version")
        return cls(_digest(obj.get("digest"), f"{where}.digest"), label if _label(label) else None)

    def describe(self) -> str:
        return self.version or self.digest[:19]


def _label(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 128


@dataclass(frozen=True, slots=True)
class Advisory:
    id: str
    namespace: str
    name: str
    affected: tuple[Version, ...]
    fixed: Version | None = None
    severity: str | None = None
    summary: str | None = None
    aliases: tuple[str, ...] = ()
    withdrawn: bool = False

    def __post_init__(self) -> None:
        if not _ID_RE.fullmatch(self.id):
            raise TrustUsageError(
                f"advisory id {self.id!r}: use letters, digits and . _ : - (at most 64)",
                hint="e.g. MOTTE-2026-0001 or CVE-2026-1234",
            )
        if not self.affected:
            raise TrustUsageError("an advisory names at least one affected version")
        if self.severity is not None and self.severity not in SEVERITIES:
            raise TrustUsageError(
                f"severity {self.severity!r} is not one of {', '.join(SEVERITIES)}"
            )
        if self.fixed is not None and self.fixed.digest in {v.digest for v in self.affected}:
            raise TrustUsageError(f"{self.fixed.describe()} cannot be both affected and the fix")

    @property
    def package(self) -> str:
        return f"{self.namespace}/{self.name}"

    def affects(self, digest: str) -> bool:
        return not self.withdrawn and any(v.digest == digest for v in self.affected)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "package": {"namespace": self.namespace, "name": self.name},
            "affected": [v.to_dict() for v in self.affected],
        }
        if self.fixed is not None:
            out["fixed"] = self.fixed.to_dict()
        if self.severity:
            out["severity"] = self.severity
        if self.summary:
            out["summary"] = self.summary
        if self.aliases:
            out["aliases"] = list(self.aliases)
        if self.withdrawn:
            out["withdrawn"] = True
        return out

    @classmethod
    def from_dict(cls, obj: dict[str, Any], where: str) -> Advisory:
        package = obj.get("package")
        if not isinstance(package, dict):
            raise EnvelopeFormatError(f"{where}: 'package' must be an object")
        affected = obj.get("affected")
        if not isinstance(affected, list) or not affected or len(affected) > 1000:
            raise EnvelopeFormatError(f"{where}: 'affected' must be a list of 1 to 1000 versions")
        fixed = obj.get("fixed")
        aliases = obj.get("aliases", [])
        if not isinstance(aliases, list) or not all(_label(a) for a in aliases):
            raise EnvelopeFormatError(f"{where}: 'aliases' must be a list of short strings")
        summary, severity = obj.get("summary"), obj.get("severity")
        try:
            return cls(
                _need(obj, "id", where),
                _need(package, "namespace", f"{where}.package"),
                _need(package, "name", f"{where}.package"),
                tuple(
                    Version.from_dict(v, f"{where}.affected[{i}]") for i, v in enumerate(affected)
                ),
                Version.from_dict(fixed, f"{where}.fixed") if fixed is not None else None,
                severity if isinstance(severity, str) else None,
                summary if isinstance(summary, str) else None,
                tuple(aliases),
                obj.get("withdrawn") is True,
            )
        except TrustUsageError as e:
            raise EnvelopeFormatError(f"{where}: {e.message}") from None


@dataclass(frozen=True, slots=True)
class RebuildFailure:
    """Why a rebuild did not get to a comparison: the step (:data:`FAILURE_STAGES`), one line."""

    stage: str
    reason: str

    def __post_init__(self) -> None:
        if self.stage not in FAILURE_STAGES:
            raise TrustUsageError(f"rebuild failure stage {self.stage!r}")

    def to_dict(self) -> dict[str, str]:
        return {"stage": self.stage, "reason": self.reason}

    @classmethod
    def from_dict(cls, obj: object, where: str) -> RebuildFailure:
        if not isinstance(obj, dict):
            raise EnvelopeFormatError(f"{where}: 'failure' must be an object")
        stage = obj.get("stage")
        if stage not in FAILURE_STAGES:
            raise EnvelopeFormatError(
                f"{where}: failure stage {stage!r} is not one of {', '.join(FAILURE_STAGES)}"
            )
        reason = _need(obj, "reason", where)
        if len(reason) > MAX_REASON_CHARS or "\n" in reason:
            raise EnvelopeFormatError(
                f"{where}: failure reason must be one line of at most {MAX_REASON_CHARS} characters"
            )
        return cls(stage, reason)


@dataclass(frozen=True, slots=True)
class Rebuild:
    """A rebuild statement's predicate: a comparison (match, mismatch) or a failure.

    A failed rebuild has ``failure`` and no rebuilt digests; a comparison has both rebuilt
    digests and no ``failure``.
    """

    source: str
    commit: str
    command: str
    expected: str  # package digest the rebuild had to reproduce
    rebuilt: str | None  # package digest the rebuild produced (None: it failed)
    expected_module: str
    rebuilt_module: str | None
    provenance: str  # digest of the provenance statement's envelope the recipe came from
    finished: str  # RFC 3339, the rebuilder's clock
    failure: RebuildFailure | None = None

    def __post_init__(self) -> None:
        compared = self.rebuilt is not None and self.rebuilt_module is not None
        if compared == (self.failure is not None):
            raise TrustUsageError("a rebuild has rebuilt digests or a failure, exactly one")

    @property
    def result(self) -> str:
        if self.failure is not None:
            return "failed"
        same = self.expected == self.rebuilt and self.expected_module == self.rebuilt_module
        return "match" if same else "mismatch"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "result": self.result,
            "source": self.source,
            "commit": self.commit,
            "command": self.command,
            "package": {"expected": self.expected},
            "module": {"expected": self.expected_module},
            "provenance": self.provenance,
            "finishedOn": self.finished,
        }
        if self.failure is not None:
            out["failure"] = self.failure.to_dict()
        else:
            out["package"]["rebuilt"] = self.rebuilt
            out["module"]["rebuilt"] = self.rebuilt_module
        return out

    @classmethod
    def from_dict(cls, obj: dict[str, Any], where: str) -> Rebuild:
        pkg, mod = obj.get("package"), obj.get("module")
        if not isinstance(pkg, dict) or not isinstance(mod, dict):
            raise EnvelopeFormatError(f"{where}: needs 'package' and 'module' digests")
        commit = _need(obj, "commit", where)
        if not _COMMIT_RE.fullmatch(commit):
            raise EnvelopeFormatError(f"{where}: commit {commit!r} is not a full commit id")
        failed = obj.get("result") == "failed"
        if failed:
            failure = RebuildFailure.from_dict(obj.get("failure"), f"{where}.failure")
            if "rebuilt" in pkg or "rebuilt" in mod:
                raise EnvelopeFormatError(f"{where}: a failed rebuild has no rebuilt digests")
            rebuilt = rebuilt_module = None
        else:
            if "failure" in obj:
                raise EnvelopeFormatError(f"{where}: only a failed rebuild has a 'failure'")
            failure = None
            rebuilt = _digest(pkg.get("rebuilt"), f"{where}.package.rebuilt")
            rebuilt_module = _digest(mod.get("rebuilt"), f"{where}.module.rebuilt")
        r = cls(
            _need(obj, "source", where),
            commit,
            _need(obj, "command", where),
            _digest(pkg.get("expected"), f"{where}.package.expected"),
            rebuilt,
            _digest(mod.get("expected"), f"{where}.module.expected"),
            rebuilt_module,
            _digest(obj.get("provenance"), f"{where}.provenance"),
            _need(obj, "finishedOn", where),
            failure,
        )
        if obj.get("result") != r.result:
            # The claimed result must follow from the digests it reports.
            raise EnvelopeFormatError(
                f"{where}: result {obj.get('result')!r} contradicts the digests ({r.result})"
            )
        return r
