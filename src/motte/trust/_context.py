"""What every area's rules share: the evidence, the policy, the time, and how to cite."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from motte.sign import DIGEST_SIGNATURES, PREDICATE_NAMES, PUBLICATION, Publication
from motte.trust._evidence import Evidence, FoundStatement
from motte.trust._policy import Party, Policy
from motte.trust._predicates import ADVISORY, REBUILD, TRUST_VERDICT
from motte.trust._verdict import EvidenceRef, rfc3339

KIND_NAMES = {
    **PREDICATE_NAMES,
    ADVISORY: "advisory",
    REBUILD: "rebuild",
    TRUST_VERDICT: "trust verdict",
}


def kind(s: FoundStatement) -> str:
    return KIND_NAMES.get(s.predicate_type, s.predicate_type or "statement")


def short(keyid: str) -> str:
    return keyid[:16]


def parse_time(text: object) -> dt.datetime | None:
    """An RFC 3339 UTC time as written by motte (``...Z``), or None."""
    if not isinstance(text, str) or not text.endswith("Z"):
        return None
    try:
        return dt.datetime.fromisoformat(text[:-1] + "+00:00")
    except ValueError:
        return None


def day(when: dt.datetime | None) -> str:
    return "time unknown" if when is None else rfc3339(when)[:10]


@dataclass(frozen=True)
class Context:
    ev: Evidence
    policy: Policy
    now: dt.datetime

    def who(self, signer: str) -> str:
        """A signer as messages name it: a keyless identity by name, a key by short keyid."""
        return self.ev.names.get(signer) or short(signer)

    @property
    def publisher_ids(self) -> frozenset[str]:
        return self.ev.publishers.keyids if self.ev.publishers else frozenset()

    def cite(
        self, s: FoundStatement, *, signer: str | None = None, detail: str | None = None
    ) -> EvidenceRef:
        who = signer or (s.signers[0] if s.signers else (s.unknown_keyids or [None])[0])
        return EvidenceRef(
            what=kind(s),
            statement=s.envelope_digest,
            log_origin=s.log.origin if s.log else None,
            log_index=s.log.index if s.log else None,
            signer=who,
            time=rfc3339(s.log.time) if s.log and s.log.time else None,
            detail=detail,
        )

    def of_type(self, predicate_type: str, *, here: bool = True) -> list[FoundStatement]:
        """Statements of one type, about this digest (``here``) or any, in log order."""
        found = [
            s
            for s in self.ev.statements
            if s.predicate_type == predicate_type and (not here or s.about(self.ev.digest))
        ]
        return sorted(found, key=lambda s: s.log.index if s.log else 1 << 62)

    def party(self, parties: Iterable[Party], signers: Iterable[str]) -> tuple[Party, str] | None:
        """The first of ``parties`` one of whose keys is among ``signers``, and that key."""
        ids = list(signers)
        for p in parties:
            for k in ids:
                if k in p.keyids:
                    return p, k
        return None

    def publications(self) -> list[FoundStatement]:
        """Usable publications of this package name by its delegated keys, in log order.

        A Sigstore signature of a digest (cosign's sign/v1, a message signature) names no
        package, so it counts as a publication of this package only for this digest.
        """
        out = []
        for s in self.ev.statements:
            if not s.usable or not s.signed_by_any(self.publisher_ids):
                continue
            if s.predicate_type in DIGEST_SIGNATURES:
                if s.about(self.ev.digest):
                    out.append(s)
                continue
            if s.predicate_type != PUBLICATION:
                continue
            pub = Publication.from_dict(s.predicate, "publication")
            if (pub.namespace, pub.name) == (self.ev.namespace, self.ev.name):
                out.append(s)
        return sorted(out, key=lambda s: s.log.index if s.log else 1 << 62)


def predicate(s: FoundStatement, parser: Any) -> Any:
    """A usable statement's predicate, parsed (gather checked it parses)."""
    return parser(s.predicate, kind(s))
