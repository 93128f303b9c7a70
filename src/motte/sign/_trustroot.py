"""Namespace roots of trust, after TUF's root role (theupdateframework spec, "root.json").

A root document names root keys with a threshold, and for each namespace the publisher keys
allowed to sign its packages, with a threshold of their own::

    {"signed": {"_type": "https://motte.dev/trust-root/v1", "version": 2,
                "expires": "2027-11-26T00:00:00Z",
                "keys": {"<keyid>": {"keytype": "ed25519", "public": "<base64 DER SPKI>"}},
                "root": {"keyids": ["<keyid>"], "threshold": 1},
                "namespaces": {"acme": {"keyids": ["<keyid>"], "threshold": 1}}},
     "signatures": [{"keyid": "<keyid>", "sig": "<base64>"}]}

A namespace may also name **keyless identities** (Sigstore: a certificate identity and its
OIDC issuer, e.g. a GitHub Actions workflow) beside keys. They are listed under
``"identities"`` (``{"<id>": {"identity": ..., "issuer": ...}}``, the id being the SHA-256
of the canonical JSON of the pair) and their ids sit in the namespace's ``keyids`` with the
keys, so a threshold counts them alike. Root roles take keys only. A document without
identities is byte for byte what it was before they existed, so its signatures still hold.

Signatures are over DSSE's PAE of the canonical JSON of ``signed`` with payload type
:data:`ROOT_PAYLOAD_TYPE`, so a root signature can never pass for a package signature.

Versions form a chain: version N+1 must be signed by a threshold of version N's root keys
*and* a threshold of its own. A verifier starts from the version it installed (its anchor),
walks the versions one at a time, and uses the last, which must not have expired.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import itertools
import json
import re
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from motte.sign._canonical import canonical_json
from motte.sign._dsse import b64decode_any, pae
from motte.sign._errors import (
    EnvelopeFormatError,
    SignatureError,
    SigningUsageError,
    TrustRootError,
)
from motte.sign._keys import PrivateKey, PublicKey

ROOT_TYPE = "https://motte.dev/trust-root/v1"
ROOT_PAYLOAD_TYPE = "application/vnd.motte.trust-root.v1+json"
MAX_ROOT_BYTES = 512 * 1024
MAX_ROOT_VERSIONS = 1024
MAX_IDENTITY_CHARS = 1024
_FILE_RE = re.compile(r"([1-9][0-9]{0,8})\.root\.json")
STAGED_FILE = "staged.root.json"
_NAMESPACE_RE = re.compile(
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)


def _parse_time(text: object, where: str) -> dt.datetime:
    if not isinstance(text, str) or not text.endswith("Z"):
        raise EnvelopeFormatError(f"{where}: 'expires' must be an RFC 3339 UTC time ending in Z")
    try:
        return dt.datetime.fromisoformat(text[:-1] + "+00:00")
    except ValueError:
        raise EnvelopeFormatError(f"{where}: 'expires' {text!r} is not an RFC 3339 time") from None


@dataclass(frozen=True, slots=True)
class KeylessIdentity:
    """A Sigstore signer: a certificate identity (SAN) with its OIDC issuer, compared exactly.

    Never an identity alone: the same e-mail or URI from another issuer is someone else.
    """

    identity: str
    issuer: str

    @property
    def id(self) -> str:
        """Where a keyid would stand: SHA-256 (hex) of the canonical JSON of the pair."""
        return hashlib.sha256(canonical_json(self.to_dict())).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.identity} (issuer {self.issuer})"

    def to_dict(self) -> dict[str, str]:
        return {"identity": self.identity, "issuer": self.issuer}

    @classmethod
    def parse(cls, identity: str, issuer: str, where: str = "identity") -> KeylessIdentity:
        """Validate a pair given by a user (a usage error) or read from a root."""
        for what, value in (("identity", identity), ("issuer", issuer)):
            if not isinstance(value, str) or not value.strip() or value != value.strip():
                raise SigningUsageError(f"{where}: the {what} must be a non-empty string")
            if len(value) > MAX_IDENTITY_CHARS or any(ord(c) < 0x20 for c in value):
                raise SigningUsageError(
                    f"{where}: the {what} must be printable and at most "
                    f"{MAX_IDENTITY_CHARS} characters"
                )
        if not issuer.startswith("https://"):
            raise SigningUsageError(
                f"{where}: issuer {issuer!r} is not an https:// OIDC issuer URL",
                hint="GitHub Actions: https://token.actions.githubusercontent.com",
            )
        return cls(identity, issuer)

    @classmethod
    def from_dict(cls, obj: object, where: str) -> KeylessIdentity:
        if not isinstance(obj, dict) or set(obj) != {"identity", "issuer"}:
            raise EnvelopeFormatError(f"{where}: must be an object with identity and issuer")
        try:
            return cls.parse(obj["identity"], obj["issuer"], where)
        except SigningUsageError as e:
            raise EnvelopeFormatError(e.message) from None


def _format_time(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Role:
    keyids: tuple[str, ...]
    threshold: int

    def to_dict(self) -> dict[str, Any]:
        return {"keyids": list(self.keyids), "threshold": self.threshold}

    @classmethod
    def from_dict(cls, obj: object, keys: Container[str], where: str) -> Role:
        if not isinstance(obj, dict):
            raise EnvelopeFormatError(f"{where}: must be an object with keyids and threshold")
        keyids, threshold = obj.get("keyids"), obj.get("threshold")
        if not isinstance(keyids, list) or not all(isinstance(k, str) for k in keyids):
            raise EnvelopeFormatError(f"{where}: 'keyids' must be a list of strings")
        if len(set(keyids)) != len(keyids):
            raise EnvelopeFormatError(f"{where}: a keyid is listed twice")
        for k in keyids:
            if k not in keys:
                raise EnvelopeFormatError(f"{where}: keyid {k[:16]} is not in 'keys'")
        if (
            not isinstance(threshold, int)
            or isinstance(threshold, bool)
            or not (1 <= threshold <= len(keyids))
        ):
            raise EnvelopeFormatError(f"{where}: 'threshold' must be between 1 and {len(keyids)}")
        return cls(tuple(keyids), threshold)


@dataclass(frozen=True, slots=True)
class RootMetadata:
    """The ``signed`` part of a root document."""

    version: int
    expires: dt.datetime
    keys: dict[str, PublicKey]
    root: Role
    namespaces: dict[str, Role] = field(default_factory=dict)
    #: Keyless publishers (id -> identity); only namespace roles name them.
    identities: dict[str, KeylessIdentity] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        used = set(self.root.keyids).union(*(r.keyids for r in self.namespaces.values()))
        identities = {
            iid: ident.to_dict() for iid, ident in sorted(self.identities.items()) if iid in used
        }
        # Only when there are any: a root without them signs the same bytes as before.
        extra = {"identities": identities} if identities else {}
        return {
            "_type": ROOT_TYPE,
            "version": self.version,
            "expires": _format_time(self.expires),
            "keys": {
                kid: {"keytype": k.key_type, "public": base64.b64encode(k.spki_der).decode()}
                for kid, k in sorted(self.keys.items())
                if kid in used
            },
            "root": self.root.to_dict(),
            "namespaces": {ns: r.to_dict() for ns, r in sorted(self.namespaces.items())},
            **extra,
        }

    def signing_bytes(self) -> bytes:
        return pae(ROOT_PAYLOAD_TYPE, canonical_json(self.to_dict()))

    def root_keys(self) -> list[PublicKey]:
        return [self.keys[k] for k in self.root.keyids]

    def namespace_keys(self, namespace: str) -> tuple[list[PublicKey], int] | None:
        role = self.namespaces.get(namespace)
        if role is None:
            return None
        return [self.keys[k] for k in role.keyids if k in self.keys], role.threshold

    def namespace_identities(self, namespace: str) -> list[KeylessIdentity]:
        role = self.namespaces.get(namespace)
        return [self.identities[k] for k in role.keyids if k in self.identities] if role else []

    @classmethod
    def from_dict(cls, obj: object, where: str) -> RootMetadata:
        if not isinstance(obj, dict):
            raise EnvelopeFormatError(f"{where}: 'signed' must be an object")
        if obj.get("_type") != ROOT_TYPE:
            raise EnvelopeFormatError(f"{where}: _type {obj.get('_type')!r} is not {ROOT_TYPE}")
        version = obj.get("version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise EnvelopeFormatError(f"{where}: 'version' must be an integer >= 1")
        raw_keys = obj.get("keys")
        if not isinstance(raw_keys, dict):
            raise EnvelopeFormatError(f"{where}: 'keys' must be an object")
        keys: dict[str, PublicKey] = {}
        for kid, entry in raw_keys.items():
            kw = f"{where}: keys.{kid[:16]}"
            if not isinstance(entry, dict):
                raise EnvelopeFormatError(f"{kw} must be an object")
            key = PublicKey.from_spki_der(b64decode_any(entry.get("public"), kw), kw)
            if key.keyid != kid:
                raise EnvelopeFormatError(f"{kw}: keyid is not the SHA-256 of the key")
            if entry.get("keytype") != key.key_type:
                raise EnvelopeFormatError(f"{kw}: keytype {entry.get('keytype')!r} is wrong")
            keys[kid] = key
        raw_ids = obj.get("identities", {})
        if not isinstance(raw_ids, dict):
            raise EnvelopeFormatError(f"{where}: 'identities' must be an object")
        identities: dict[str, KeylessIdentity] = {}
        for iid, entry in raw_ids.items():
            ident = KeylessIdentity.from_dict(entry, f"{where}: identities.{iid[:16]}")
            if ident.id != iid:
                raise EnvelopeFormatError(
                    f"{where}: identities.{iid[:16]}: id is not the SHA-256 of the identity"
                )
            identities[iid] = ident
        namespaces_obj = obj.get("namespaces", {})
        if not isinstance(namespaces_obj, dict):
            raise EnvelopeFormatError(f"{where}: 'namespaces' must be an object")
        namespaces = {}
        for ns, role in namespaces_obj.items():
            if not _NAMESPACE_RE.fullmatch(ns):
                raise EnvelopeFormatError(f"{where}: namespace {ns!r} is not a valid namespace")
            namespaces[ns] = Role.from_dict(role, {*keys, *identities}, f"{where}: namespaces.{ns}")
        return cls(
            version,
            _parse_time(obj.get("expires"), where),
            keys,
            Role.from_dict(obj.get("root"), keys, f"{where}: root"),
            namespaces,
            identities,
        )


@dataclass(frozen=True, slots=True)
class RootDocument:
    signed: RootMetadata
    signatures: tuple[tuple[str, bytes], ...] = ()

    def to_bytes(self) -> bytes:
        doc = {
            "signed": self.signed.to_dict(),
            "signatures": [
                {"keyid": kid, "sig": base64.b64encode(sig).decode()}
                for kid, sig in self.signatures
            ],
        }
        return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> RootDocument:
        if len(data) > MAX_ROOT_BYTES:
            raise EnvelopeFormatError(f"{where}: larger than {MAX_ROOT_BYTES} bytes")
        try:
            obj = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise EnvelopeFormatError(f"{where}: not valid JSON: {e}") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("signatures"), list):
            raise EnvelopeFormatError(f"{where}: needs 'signed' and a 'signatures' list")
        sigs = []
        for i, s in enumerate(obj["signatures"]):
            if not isinstance(s, dict) or not isinstance(s.get("keyid"), str):
                raise EnvelopeFormatError(f"{where}: signatures[{i}] needs a keyid and a sig")
            sigs.append((s["keyid"], b64decode_any(s.get("sig"), f"{where}: signatures[{i}].sig")))
        return cls(RootMetadata.from_dict(obj.get("signed"), where), tuple(sigs))

    def sign(self, key: PrivateKey) -> RootDocument:
        """This document with ``key``'s signature added (replacing an older one by that key)."""
        sig = key.sign(self.signed.signing_bytes())
        kept = tuple(s for s in self.signatures if s[0] != key.keyid)
        return RootDocument(self.signed, (*kept, (key.keyid, sig)))

    def count_valid(self, keys: Iterable[PublicKey]) -> set[str]:
        """Keyids among ``keys`` with a valid signature on this document (each once)."""
        message = self.signed.signing_bytes()
        by_id = {k.keyid: k for k in keys}
        good: set[str] = set()
        for kid, sig in self.signatures:
            key = by_id.get(kid)
            if key is None or kid in good:
                continue
            try:
                key.verify(sig, message)
            except SignatureError:
                continue
            good.add(kid)
        return good

    def missing_signatures(self, previous: RootMetadata | None) -> list[str]:
        """What is still needed before this version is valid (empty when complete)."""
        need = []
        own = len(self.count_valid(self.signed.root_keys()))
        if own < self.signed.root.threshold:
            need.append(f"{self.signed.root.threshold - own} more of its own root keys")
        if previous is not None:
            old = len(self.count_valid(previous.root_keys()))
            if old < previous.root.threshold:
                short = previous.root.threshold - old
                need.append(f"{short} more of version {previous.version}'s root keys")
        return need


def verify_chain(
    documents: Sequence[tuple[str, bytes]], *, now: dt.datetime, check_expiry: bool = True
) -> RootMetadata:
    """Walk ``(where, bytes)`` root versions from the anchor (first) to the last; return it.

    The anchor must be signed by a threshold of its own root keys; each later version by a
    threshold of the previous version's root keys and of its own, with the version number
    one higher. The last must not have expired at ``now``.
    """
    if not documents:
        raise TrustRootError("no root versions to verify")
    if len(documents) > MAX_ROOT_VERSIONS:
        raise TrustRootError(f"more than {MAX_ROOT_VERSIONS} root versions")
    previous: RootMetadata | None = None
    for where, data in documents:
        doc = RootDocument.from_bytes(data, where)
        if previous is not None and doc.signed.version != previous.version + 1:
            raise TrustRootError(
                f"{where}: version {doc.signed.version} follows version {previous.version}",
                hint="root versions must go up one at a time",
            )
        missing = doc.missing_signatures(previous)
        if missing:
            raise TrustRootError(
                f"{where}: version {doc.signed.version} needs {' and '.join(missing)}"
            )
        previous = doc.signed
    assert previous is not None
    if check_expiry and previous.expires <= now:
        raise TrustRootError(
            f"{documents[-1][0]}: root version {previous.version} expired at "
            f"{_format_time(previous.expires)}",
            hint="ask the root key holders for a newer version (motte key root trust)",
        )
    return previous


# -- directories of versions -------------------------------------------------------------


def chain_files(directory: Path) -> list[Path]:
    """``N.root.json`` files in ``directory`` in version order (consecutive, or an error)."""
    found = []
    for path in directory.iterdir() if directory.is_dir() else []:
        m = _FILE_RE.fullmatch(path.name)
        if m:
            found.append((int(m.group(1)), path))
    found.sort()
    for (a, pa), (b, _) in itertools.pairwise(found):
        if b != a + 1:
            raise TrustRootError(f"{directory}: version {a + 1} is missing after {pa.name}")
    return [p for _, p in found]


def load_chain(directory: Path, *, now: dt.datetime, check_expiry: bool = True) -> RootMetadata:
    files = chain_files(directory)
    if not files:
        raise TrustRootError(
            f"{directory}: no N.root.json files", hint="motte key root init DIR creates a root"
        )
    docs = [(str(p), p.read_bytes()) for p in files]
    return verify_chain(docs, now=now, check_expiry=check_expiry)


def new_root(
    root_keys: Sequence[PublicKey], threshold: int, *, expires: dt.datetime, version: int = 1
) -> RootMetadata:
    keys = {k.keyid: k for k in root_keys}
    if len(keys) != len(root_keys):
        raise SigningUsageError("a root key is listed twice")
    if not 1 <= threshold <= len(keys):
        raise SigningUsageError(f"threshold {threshold} must be between 1 and {len(keys)}")
    return RootMetadata(version, expires, keys, Role(tuple(keys), threshold), {})


def with_namespace(
    current: RootMetadata,
    namespace: str,
    signers: Sequence[PublicKey],
    threshold: int,
    *,
    expires: dt.datetime,
    identities: Sequence[KeylessIdentity] = (),
) -> RootMetadata:
    """The next version, delegating ``namespace`` to ``signers`` and keyless ``identities``
    (replacing any earlier delegation); the threshold counts both alike."""
    if not _NAMESPACE_RE.fullmatch(namespace):
        raise SigningUsageError(f"namespace {namespace!r} is not valid (lowercase, digits, . _ -)")
    ids = list(dict.fromkeys([*(k.keyid for k in signers), *(i.id for i in identities)]))
    if not ids:
        namespaces = {ns: r for ns, r in current.namespaces.items() if ns != namespace}
    else:
        if not 1 <= threshold <= len(ids):
            raise SigningUsageError(f"threshold {threshold} must be between 1 and {len(ids)}")
        namespaces = {**current.namespaces, namespace: Role(tuple(ids), threshold)}
    keys = {**current.keys, **{k.keyid: k for k in signers}}
    known = {**current.identities, **{i.id: i for i in identities}}
    return RootMetadata(current.version + 1, expires, keys, current.root, namespaces, known)


def with_root_keys(
    current: RootMetadata, root_keys: Sequence[PublicKey], threshold: int, *, expires: dt.datetime
) -> RootMetadata:
    """The next version with new root keys (a rotation); namespaces carried over."""
    fresh = new_root(root_keys, threshold, expires=expires, version=current.version + 1)
    keys = {**current.keys, **fresh.keys}
    return RootMetadata(
        fresh.version, expires, keys, fresh.root, dict(current.namespaces), current.identities
    )


def default_expiry(now: dt.datetime, days: int = 365) -> dt.datetime:
    return (now + dt.timedelta(days=days)).replace(microsecond=0)
