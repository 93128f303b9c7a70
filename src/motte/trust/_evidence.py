"""The evidence a trust judgement is made from, gathered once and then only read.

:func:`motte.trust._gather.gather` fills an :class:`Evidence` from the store or registry,
the transparency log, the installed trust roots and the consumer's own memory;
:func:`motte.trust._decide.decide` turns it into a verdict without any I/O. Every signature
here was checked against keys the consumer knows (the namespace's delegated publisher keys
and the keys the policy names); statements nobody known signed are kept, marked unverified,
so the verdict can say what it ignored and why.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class LogPlace:
    """Where a statement sits in a transparency log, and the log's time for it.

    ``time`` is the signing time of the earliest checkpoint known to cover the entry: an
    upper bound on when it was logged, which the statement's signer cannot make earlier.
    """

    origin: str
    index: int
    time: dt.datetime | None


@dataclass(frozen=True, slots=True)
class FoundStatement:
    """An in-toto statement about the package or its name, with what checking it showed."""

    envelope_digest: str  # sha256 of the DSSE envelope bytes: the log entry
    predicate_type: str
    predicate: dict[str, Any]  # as signed; trust it only when ``signers`` is non-empty
    subjects: frozenset[str]
    signers: tuple[str, ...] = ()  # keyids of known keys whose signatures verified
    unknown_keyids: tuple[str, ...] = ()  # keyid hints that no known key verified
    #: A known key named, its signature failed. Never counted and never decisive: anyone
    #: can write a known keyid beside random bytes (a note says it was ignored).
    bad_keyids: tuple[str, ...] = ()
    referrer: str | None = None  # attached to the package as this referrer
    log: LogPlace | None = None  # inclusion verified (proof or a full read of the log)
    log_problem: str | None = None  # why not: no proof, untrusted log, fork, unreachable
    parse_problem: str | None = None  # a signed predicate that does not parse
    #: The verified checkpoint the proof led to (motte.tlog.Checkpoint): which log to read.
    checkpoint: Any = field(default=None, compare=False, repr=False)

    def about(self, digest: str) -> bool:
        return digest in self.subjects

    @property
    def verified(self) -> bool:
        """Signed by at least one known key whose signature verifies."""
        return bool(self.signers)

    @property
    def usable(self) -> bool:
        """Signed by a known key, logged, and its predicate parses: evidence that counts."""
        return self.verified and self.log is not None and self.parse_problem is None

    def signed_by_any(self, keyids: frozenset[str]) -> tuple[str, ...]:
        return tuple(k for k in self.signers if k in keyids)


#: What a source said when asked for a recorded commit (:class:`SourceCheck` ``status``).
EXISTS, MISSING, UNCHECKED = "exists", "missing", "cannot check"


@dataclass(frozen=True, slots=True)
class SourceCheck:
    """Whether the source a provenance names has its commit: EXISTS, MISSING or UNCHECKED
    (unreachable, needs credentials, or would not say), with git's one-line answer."""

    source: str
    commit: str
    status: str
    detail: str


@dataclass(frozen=True, slots=True)
class PublisherKeys:
    """The keys the consumer's installed trust root delegates the namespace to."""

    keyids: frozenset[str]
    threshold: int
    source: str  # "trust root acme version 3"
    #: keyid -> the first root version that delegated the namespace to it (rotation history)
    delegated_since: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Evidence:
    reference: str  # pinned
    namespace: str
    name: str
    digest: str
    layers: dict[str, str]  # layer title (Motte.toml, x.wasm) -> blob digest
    statements: tuple[FoundStatement, ...] = ()
    #: Why the package's own bytes could not be shown intact (a digest mismatch), if so.
    blob_problem: str | None = None
    publishers: PublisherKeys | None = None
    publisher_problem: str | None = None
    #: The recorded source asked for each provenance's commit (gather asks; decide reads).
    source_checks: tuple[SourceCheck, ...] = ()
    #: Logs read in full for the package's history ("origin at size N").
    history_logs: tuple[str, ...] = ()
    #: Why the history is incomplete (a log that could not be read), if it is.
    history_problem: str | None = None
    #: The consumer's memory: keyid -> when it first accepted a version signed by that key.
    seen_signers: dict[str, str] = field(default_factory=dict)
    #: Layers of other versions of this package (digest -> title -> blob digest), for
    #: telling what a signer new to the package changed.
    versions: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Judged by tag: whether the digest is the tag's current release (motte.sign's
    #: freshness check against this installation's memory), else None.
    release: Any = None
    tag: str | None = None
    #: Where an --allow-rollback override of ``release`` is recorded (it is, on accept).
    release_override_file: str | None = None
    #: Keyless signers (identity id -> "identity (issuer issuer)"), for messages.
    names: dict[str, str] = field(default_factory=dict)

    @property
    def package(self) -> str:
        return f"{self.namespace}/{self.name}"
