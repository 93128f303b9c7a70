"""The predicates motte writes, built and read back with their fields checked.

- Publication (``https://motte.dev/attestation/publication/v1``): "I publish this digest as
  namespace/name". It binds the name, so a signature for ``acme/tool`` cannot be replayed to
  vouch for the same bytes under ``acme/other``.
- SLSA Provenance v1 (``https://slsa.dev/provenance/v1``): builder, source repository and
  commit, build command. ``buildType`` ``https://motte.dev/build/command/v1`` defines the
  external parameters ``source``, ``commit`` and ``command``. GitHub's build types are read
  too (:data:`GITHUB_BUILD_TYPES`): the source is ``externalParameters.workflow.repository``,
  the commit the ``gitCommit`` of the resolved dependency on that repository, the builder
  ``runDetails.builder.id``; they have no command.
- Review (``https://motte.dev/attestation/review/v1``): a human review or audit: reviewer,
  scope, result (pass/fail), date, and optionally a link and a summary (after in-toto's
  human-review predicate).

Predicate field names are the CLI flag names (``--source`` -> ``source``), one name per idea.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from motte.sign._errors import EnvelopeFormatError, SigningUsageError

PUBLICATION = "https://motte.dev/attestation/publication/v1"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v1"
REVIEW = "https://motte.dev/attestation/review/v1"
BUILD_TYPE = "https://motte.dev/build/command/v1"
DEFAULT_BUILDER = "https://motte.dev/builders/local/v1"
#: GitHub Actions provenance: actions/attest-build-provenance (GitHub artifact attestations)
#: and slsa-framework/slsa-github-generator. Both describe the run by its workflow.
GITHUB_BUILD_TYPES = (
    "https://actions.github.io/buildtypes/workflow/v1",
    "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1",
)

RELEASE = "https://motte.dev/attestation/release/v1"  # motte.sign._release
#: Sigstore signatures of a digest with no name (motte.sign._sigstore_oci): cosign 3's
#: ``cosign sign`` predicate, and a bundle's plain message signature over the manifest.
COSIGN_SIGN = "https://sigstore.dev/cosign/sign/v1"
MESSAGE_SIGNATURE = "https://motte.dev/sigstore/message-signature"
DIGEST_SIGNATURES = frozenset({COSIGN_SIGN, MESSAGE_SIGNATURE})

PREDICATE_NAMES = {
    PUBLICATION: "publication",
    SLSA_PROVENANCE: "provenance",
    REVIEW: "review",
    RELEASE: "release",
    COSIGN_SIGN: "signature",
    MESSAGE_SIGNATURE: "signature",
}

_COMMIT_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S+")
REVIEW_RESULTS = ("pass", "fail")
REVIEW_KINDS = ("review", "audit")


def rfc3339(when: dt.datetime) -> str:
    if when.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return when.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _need_str(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise EnvelopeFormatError(f"{where}: '{key}' must be a non-empty string")
    return value


# -- publication -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Publication:
    namespace: str
    name: str

    def to_dict(self) -> dict[str, Any]:
        return {"namespace": self.namespace, "name": self.name}

    @classmethod
    def from_dict(cls, obj: dict[str, Any], where: str) -> Publication:
        return cls(_need_str(obj, "namespace", where), _need_str(obj, "name", where))


# -- SLSA provenance ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Provenance:
    source: str
    commit: str
    command: str | None
    builder: str
    finished_on: str | None = None

    def __post_init__(self) -> None:
        if not _URI_RE.fullmatch(self.source):
            raise SigningUsageError(
                f"source {self.source!r} is not a URI", hint="e.g. https://github.com/acme/hello"
            )
        if not _COMMIT_RE.fullmatch(self.commit):
            raise SigningUsageError(
                f"commit {self.commit!r} is not a full git commit id (40 or 64 lowercase hex)"
            )
        if not _URI_RE.fullmatch(self.builder):
            raise SigningUsageError(f"builder {self.builder!r} is not a URI")

    def to_dict(self) -> dict[str, Any]:
        external: dict[str, Any] = {"source": self.source, "commit": self.commit}
        if self.command:
            external["command"] = self.command
        algo = "gitCommit" if len(self.commit) == 40 else "sha256"
        run: dict[str, Any] = {"builder": {"id": self.builder}}
        if self.finished_on:
            run["metadata"] = {"finishedOn": self.finished_on}
        return {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "resolvedDependencies": [
                    {"uri": "git+" + self.source, "digest": {algo: self.commit}}
                ],
            },
            "runDetails": run,
        }

    @classmethod
    def from_dict(cls, obj: dict[str, Any], where: str) -> Provenance:
        bd = obj.get("buildDefinition")
        rd = obj.get("runDetails")
        if not isinstance(bd, dict) or not isinstance(rd, dict):
            raise EnvelopeFormatError(f"{where}: needs 'buildDefinition' and 'runDetails'")
        ext = bd.get("externalParameters")
        builder = rd.get("builder")
        if not isinstance(ext, dict) or not isinstance(builder, dict):
            raise EnvelopeFormatError(f"{where}: needs externalParameters and runDetails.builder")
        if bd.get("buildType") in GITHUB_BUILD_TYPES:
            return cls._from_github(bd, rd, ext, builder, where)
        if bd.get("buildType") != BUILD_TYPE:
            # Another builder's provenance: motte reports it but does not interpret it.
            raise EnvelopeFormatError(
                f"{where}: buildType {bd.get('buildType')!r} is not {BUILD_TYPE} or one of GitHub's"
            )
        unknown = set(ext) - {"source", "commit", "command"}
        if unknown:  # SLSA: external parameters are untrusted; reject what we don't know
            raise EnvelopeFormatError(f"{where}: unknown external parameter {sorted(unknown)[0]!r}")
        meta = rd.get("metadata") if isinstance(rd.get("metadata"), dict) else {}
        command = ext.get("command")
        try:
            return cls(
                _need_str(ext, "source", where),
                _need_str(ext, "commit", where),
                command if isinstance(command, str) else None,
                _need_str(builder, "id", where),
                meta.get("finishedOn") if isinstance(meta.get("finishedOn"), str) else None,
            )
        except SigningUsageError as e:
            raise EnvelopeFormatError(f"{where}: {e.message}") from None

    @classmethod
    def _from_github(
        cls,
        bd: dict[str, Any],
        rd: dict[str, Any],
        ext: dict[str, Any],
        builder: dict[str, Any],
        where: str,
    ) -> Provenance:
        """GitHub's workflow build types: what motte reads, and nothing it cannot check.

        The workflow (repository, path, ref) is the only external parameter accepted;
        ``inputs`` or ``vars`` (slsa-github-generator) are accepted only when empty, since
        they could change what was built and motte's policy has no expectation for them.
        """
        for key, value in ext.items():
            if key != "workflow" and not (key in ("inputs", "vars") and value in ({}, None)):
                raise EnvelopeFormatError(f"{where}: unknown external parameter {key!r}")
        workflow = ext.get("workflow")
        if not isinstance(workflow, dict):
            raise EnvelopeFormatError(f"{where}: externalParameters.workflow must be an object")
        repository = _need_str(workflow, "repository", where)
        deps = bd.get("resolvedDependencies")
        commits = [
            d["digest"]["gitCommit"]
            for d in (deps if isinstance(deps, list) else [])
            if isinstance(d, dict)
            and isinstance(d.get("uri"), str)
            and (d["uri"] == "git+" + repository or d["uri"].startswith(f"git+{repository}@"))
            and isinstance(d.get("digest"), dict)
            and isinstance(d["digest"].get("gitCommit"), str)
        ]
        if len(set(commits)) != 1:
            raise EnvelopeFormatError(
                f"{where}: no single resolved dependency git+{repository} with a gitCommit"
            )
        meta = rd.get("metadata") if isinstance(rd.get("metadata"), dict) else {}
        try:
            return cls(
                repository,
                commits[0],
                None,
                _need_str(builder, "id", where),
                meta.get("finishedOn") if isinstance(meta.get("finishedOn"), str) else None,
            )
        except SigningUsageError as e:
            raise EnvelopeFormatError(f"{where}: {e.message}") from None


# -- review ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Review:
    reviewer: str
    scope: str
    result: str
    date: str
    kind: str = "review"
    link: str | None = None
    summary: str | None = None

    def __post_init__(self) -> None:
        if self.result not in REVIEW_RESULTS:
            raise SigningUsageError(
                f"result {self.result!r} is not one of {', '.join(REVIEW_RESULTS)}"
            )
        if self.kind not in REVIEW_KINDS:
            raise SigningUsageError(f"kind {self.kind!r} is not one of {', '.join(REVIEW_KINDS)}")
        if not self.reviewer or not self.scope:
            raise SigningUsageError("a review needs a reviewer and a scope")
        if self.link is not None and not _URI_RE.fullmatch(self.link):
            raise SigningUsageError(f"link {self.link!r} is not a URI")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "reviewer": {"id": self.reviewer},
            "kind": self.kind,
            "scope": self.scope,
            "result": self.result,
            "date": self.date,
        }
        if self.link:
            out["link"] = self.link
        if self.summary:
            out["summary"] = self.summary
        return out

    @classmethod
    def from_dict(cls, obj: dict[str, Any], where: str) -> Review:
        reviewer = obj.get("reviewer")
        if not isinstance(reviewer, dict):
            raise EnvelopeFormatError(f"{where}: 'reviewer' must be an object with an 'id'")
        link, summary = obj.get("link"), obj.get("summary")
        try:
            return cls(
                _need_str(reviewer, "id", where),
                _need_str(obj, "scope", where),
                _need_str(obj, "result", where),
                _need_str(obj, "date", where),
                obj.get("kind", "review") if isinstance(obj.get("kind"), str) else "",
                link if isinstance(link, str) else None,
                summary if isinstance(summary, str) else None,
            )
        except SigningUsageError as e:
            raise EnvelopeFormatError(f"{where}: {e.message}") from None


def describe(predicate_type: str, predicate: dict[str, Any]) -> dict[str, Any]:
    """A short, typed summary of a known predicate for display; {} for unknown types."""
    where = f"predicate {predicate_type}"
    if predicate_type == PUBLICATION:
        return Publication.from_dict(predicate, where).to_dict()
    if predicate_type == SLSA_PROVENANCE:
        p = Provenance.from_dict(predicate, where)
        return {"source": p.source, "commit": p.commit, "command": p.command, "builder": p.builder}
    if predicate_type == REVIEW:
        r = Review.from_dict(predicate, where)
        return {
            "reviewer": r.reviewer,
            "kind": r.kind,
            "scope": r.scope,
            "result": r.result,
            "date": r.date,
        }
    if predicate_type == RELEASE:
        from motte.sign._release import Release

        rel = Release.from_dict(predicate, where).to_dict()
        return {"tag": rel["tag"], "version": rel["version"], "expires": rel["expires"]}
    return {}
