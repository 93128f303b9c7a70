"""in-toto Statement v1 (in-toto/attestation spec/v1/statement.md): a subject and a predicate.

The statement layer is generic: any ``predicateType`` URI with any JSON object predicate.
Subjects match *by digest only* (their names are informational). Unknown fields are ignored,
as the spec asks, and never turn a rejection into an acceptance.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from motte.sign._canonical import canonical_json
from motte.sign._errors import EnvelopeFormatError

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
_HEX_RE = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True, slots=True)
class Subject:
    """A ResourceDescriptor with a digest (the only kind a motte statement is about)."""

    name: str
    digest: dict[str, str]

    @classmethod
    def for_digest(cls, name: str, digest: str) -> Subject:
        algo, _, hexpart = digest.partition(":")
        return cls(name, {algo: hexpart})

    def digests(self) -> set[str]:
        return {f"{algo}:{value}" for algo, value in self.digest.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "digest": dict(self.digest)}


@dataclass(frozen=True, slots=True)
class Statement:
    subject: tuple[Subject, ...]
    predicate_type: str
    predicate: dict[str, Any] = field(default_factory=dict)

    def about(self, digest: str) -> bool:
        return any(digest in s.digests() for s in self.subject)

    def to_dict(self) -> dict[str, Any]:
        return {
            "_type": STATEMENT_TYPE,
            "subject": [s.to_dict() for s in self.subject],
            "predicateType": self.predicate_type,
            "predicate": self.predicate,
        }

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "statement") -> Statement:
        try:
            obj = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise EnvelopeFormatError(f"{what}: not valid JSON: {e}") from None
        if not isinstance(obj, dict):
            raise EnvelopeFormatError(f"{what}: not a JSON object")
        if obj.get("_type") != STATEMENT_TYPE:
            raise EnvelopeFormatError(
                f"{what}: _type {obj.get('_type')!r} is not an in-toto Statement v1"
            )
        subjects = obj.get("subject")
        if not isinstance(subjects, list) or not subjects:
            raise EnvelopeFormatError(f"{what}: 'subject' must be a non-empty list")
        parsed = []
        for i, s in enumerate(subjects):
            where = f"{what}: subject[{i}]"
            if not isinstance(s, dict):
                raise EnvelopeFormatError(f"{where} is not an object")
            digest = s.get("digest")
            if not isinstance(digest, dict) or not digest:
                raise EnvelopeFormatError(f"{where}: 'digest' must be a non-empty object")
            for algo, value in digest.items():
                if not isinstance(value, str) or not _HEX_RE.fullmatch(value):
                    raise EnvelopeFormatError(f"{where}: digest {algo!r} is not lowercase hex")
            name = s.get("name", "")
            parsed.append(Subject(name if isinstance(name, str) else "", dict(digest)))
        ptype = obj.get("predicateType")
        if not isinstance(ptype, str) or not ptype:
            raise EnvelopeFormatError(f"{what}: 'predicateType' must be a non-empty string")
        predicate = obj.get("predicate")
        if predicate is None:
            predicate = {}
        if not isinstance(predicate, dict):
            raise EnvelopeFormatError(f"{what}: 'predicate' must be an object")
        return cls(tuple(parsed), ptype, predicate)
