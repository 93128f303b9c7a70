"""Searching the transparency log: by digest, ``namespace/name``, key id or identity.

The log is content-agnostic (entries are bytes), so the console keeps its own index, in
memory: each search term points to the indices of the entries it occurs in. Terms come from
what an entry *says*, unverified (who signed it is checked only when an entry is shown):

- ``sha256:<hex>``: every subject digest of the in-toto statement;
- ``namespace/name``: the package a publication (or any predicate with ``namespace`` and
  ``name``) publishes, or an advisory is about;
- a key id: every DSSE signature's ``keyid``;
- an identity: a review's ``reviewer.id`` and a SLSA provenance's ``runDetails.builder.id``.

The index is built on the first search and extended by the entries appended since, so each
entry is read and parsed once per console process (about 4 s per 10^5 entries here; see
docs/console.md). A search is then one dictionary lookup; only the page of results shown is
read back from the log.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from motte.sign import (
    INTOTO_PAYLOAD_TYPE,
    PREDICATE_NAMES,
    Envelope,
    EnvelopeFormatError,
    Statement,
)
from motte.trust import ADVISORY, REBUILD, TRUST_VERDICT

#: Entries read per query while indexing.
CHUNK = 4096
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_PREDICATE_NAMES = {
    **PREDICATE_NAMES,
    ADVISORY: "advisory",
    REBUILD: "rebuild",
    TRUST_VERDICT: "trust verdict",
}


@dataclass(frozen=True, slots=True)
class EntrySummary:
    """What one entry says about itself (nothing here is verified)."""

    index: int
    size: int
    payload_type: str | None = None
    predicate_type: str | None = None
    digests: tuple[str, ...] = ()
    package: str | None = None
    keyids: tuple[str, ...] = ()
    identities: tuple[str, ...] = ()
    #: The statement as pretty JSON, or None when the entry is not one.
    statement_json: str | None = None
    problem: str | None = None

    @property
    def kind(self) -> str:
        if self.predicate_type:
            return _PREDICATE_NAMES.get(self.predicate_type, self.predicate_type)
        if self.payload_type:
            return self.payload_type
        return "raw entry"

    def terms(self) -> set[str]:
        out = {*self.digests, *self.keyids, *self.identities}
        if self.package:
            out.add(self.package)
        return out


def _str(obj: Any, *keys: str) -> str | None:
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj if isinstance(obj, str) and obj else None


def summarize(index: int, entry: bytes, *, pretty: bool = True) -> EntrySummary:
    """Parse ``entry`` as a DSSE envelope holding an in-toto statement, as far as it goes
    (``pretty``: also the statement as indented JSON, for showing; indexing needs none)."""
    try:
        env = Envelope.from_bytes(entry, f"entry {index}")
    except EnvelopeFormatError as e:
        return EntrySummary(index, len(entry), problem=e.message)
    keyids = tuple(s.keyid for s in env.signatures if s.keyid)
    if env.payload_type != INTOTO_PAYLOAD_TYPE:
        return EntrySummary(index, len(entry), env.payload_type, keyids=keyids)
    try:
        st = Statement.from_bytes(env.payload, f"entry {index} statement")
    except EnvelopeFormatError as e:
        return EntrySummary(index, len(entry), env.payload_type, keyids=keyids, problem=e.message)
    p = st.predicate
    package = None
    ns, name = _str(p, "namespace"), _str(p, "name")
    if ns is None and isinstance(p.get("package"), dict):  # an advisory
        ns, name = _str(p, "package", "namespace"), _str(p, "package", "name")
    if ns and name:
        package = f"{ns}/{name}"
    identities = tuple(
        i for i in (_str(p, "reviewer", "id"), _str(p, "runDetails", "builder", "id")) if i
    )
    digests = tuple(sorted({d.lower() for s in st.subject for d in s.digests()}))
    return EntrySummary(
        index,
        len(entry),
        env.payload_type,
        st.predicate_type,
        digests,
        package,
        keyids,
        identities,
        json.dumps(st.to_dict(), indent=2, sort_keys=True, ensure_ascii=False) if pretty else None,
    )


def normalize_query(text: str) -> str:
    """A bare 64-hex digest gets its ``sha256:``; digests compare in lower case."""
    q = text.strip()
    if _HEX64.fullmatch(q):
        return "sha256:" + q.lower()
    if q.lower().startswith("sha256:") and _HEX64.fullmatch(q[7:]):
        return q.lower()
    return q


@dataclass
class LogIndex:
    """Terms to entry indices for one log; :meth:`update` reads what was appended since."""

    size: int = 0
    terms: dict[str, list[int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def update(self, size: int, read: Callable[[int, int], list[bytes]]) -> None:
        """Index entries ``self.size`` to ``size - 1`` (``read(lo, hi)`` gives them)."""
        with self._lock:
            while self.size < size:
                hi = min(size, self.size + CHUNK)
                for i, entry in enumerate(read(self.size, hi), start=self.size):
                    for term in summarize(i, entry, pretty=False).terms():
                        self.terms.setdefault(term, []).append(i)
                self.size = hi

    def search(self, query: str) -> list[int]:
        """Indices of the entries ``query`` names, newest first.

        A bare 64-hex word may be a digest or a key id (the SHA-256 of a key): both count.
        """
        q = query.strip()
        candidates = {normalize_query(q)}
        if _HEX64.fullmatch(q):
            candidates.add(q.lower())
        with self._lock:
            found = {i for term in candidates for i in self.terms.get(term, ())}
        return sorted(found, reverse=True)
