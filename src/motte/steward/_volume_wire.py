"""Sealed volumes on the wire: a volume's identity, its keys, and the two Keep requests.

A sealed volume (docs/sealed-state.md) is named by what may open it and its name::

    sealed_to = "namespace"   ->  acme/counter:data          (any signed acme/counter)
    sealed_to = "digest"      ->  sha256:<64 hex>:data        (exactly this package)

The Steward holds one random 32-byte **volume key** per identity (sealed under its master
key). The Keep derives two keys from it, the Steward the second::

    snapshot key = HKDF-SHA256(volume key, info = "motte/volume-snapshot/v1")  (AEAD)
    counter key  = HKDF-SHA256(volume key, info = "motte/volume-counter/v1")   (HMAC)

**Release** (``POST /volumes/release``): the secret release protocol (motte.steward._release)
with ``volumes`` in place of ``secrets``: fresh evidence whose REPORT_DATA binds the release
key, the workload digest and the nonce; for each volume the snapshot the Keep is about to
open (its version and random id, read from the snapshot's clear header), or null for none::

    {"version": 1, "evidence": {...}, "workload_digest": "sha256:...", "nonce": "...",
     "release_key": "...", "statements": ["..."],
     "volumes": [{"name": "data", "sealed_to": "namespace", "scope": "acme/counter",
                  "snapshot": {"version": 7, "id": "<32 hex>"}}]}

Answer: ``{"version": 1, "audit_id": N, "suite": "...", "volumes": [{"volume":
"acme/counter:data", "version": 7, "sealed": "..."}]}``, each key sealed with HPKE to the
release key, ``info`` = :func:`volume_info` (the identity, the recorded version, the
workload digest and the nonce). A refusal is the release's 403 problem document.

**Commit** (``POST /volumes/commit``): the Keep wrote snapshot ``to`` = ``from`` + 1 and
asks the Steward to record it; the request is authenticated by an HMAC under the counter
key, which only a Keep given the volume key has::

    {"version": 1, "volume": "acme/counter:data", "from": 7, "to": 8, "id": "<32 hex>",
     "size": 12345, "mac": "<base64url HMAC-SHA256(counter key, commit_message(...))>"}

The Steward records ``to`` only if its latest is still ``from`` (one transaction); the
same commit again is answered as done (a retry after a lost answer).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from motte._digest import is_digest
from motte.steward._release import (
    MAX_NONCE,
    MAX_REQUEST_BYTES,
    MAX_STATEMENT_BYTES,
    MAX_STATEMENTS,
    MIN_NONCE,
    SUITE,
    ReleaseFormatError,
    _lp,
    b64,
    unb64,
)

if TYPE_CHECKING:
    from motte.attest import Evidence

SUITE_NOTE = SUITE
SEALED_TO = ("namespace", "digest")
VOLUME_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*/[a-z0-9][a-z0-9._-]*")
SNAPSHOT_ID = re.compile(r"[0-9a-f]{32}")
MAX_VOLUMES = 16
KEY_BYTES = 32
_INFO = b"motte/volume-release/v1\x00"
_COMMIT = b"motte/volume-commit/v1\x00"
_REQUEST_KEYS = frozenset(
    {"version", "evidence", "workload_digest", "nonce", "release_key", "volumes", "statements"}
)
_COMMIT_KEYS = frozenset({"version", "volume", "from", "to", "id", "size", "mac"})


@dataclass(frozen=True, slots=True, order=True)
class VolumeIdentity:
    """What may open a volume (``sealed_to`` and its ``scope``: a namespace/name or a
    package digest) and the volume's ``name``. ``str()`` is its id."""

    sealed_to: str
    scope: str
    name: str

    def __post_init__(self) -> None:
        if self.sealed_to not in SEALED_TO:
            raise ValueError(f"sealed_to must be namespace or digest, not {self.sealed_to!r}")
        if not VOLUME_NAME.fullmatch(self.name):
            raise ValueError(
                f"volume name {self.name!r}: 1 to 63 lower-case letters, digits, '-' or '_'"
            )
        ok = (
            is_digest(self.scope)
            if self.sealed_to == "digest"
            else bool(PACKAGE_NAME.fullmatch(self.scope))
        )
        if not ok:
            what = "sha256:<64 hex>" if self.sealed_to == "digest" else "namespace/name"
            raise ValueError(f"a volume sealed to a {self.sealed_to} is scoped by {what}")

    def __str__(self) -> str:
        return f"{self.scope}:{self.name}"

    @classmethod
    def parse(cls, text: str) -> VolumeIdentity:
        """``acme/counter:data`` or ``sha256:<hex>:data``; ValueError saying why not."""
        scope, sep, name = text.rpartition(":")
        if not sep:
            raise ValueError(
                f"{text!r} is not a volume id (NAMESPACE/NAME:VOLUME or DIGEST:VOLUME)"
            )
        return cls("digest" if scope.startswith("sha256:") else "namespace", scope, name)

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "sealed_to": self.sealed_to, "scope": self.scope}


def _hkdf(key: bytes, info: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(hashes.SHA256(), 32, None, info).derive(key)


def snapshot_key(volume_key: bytes) -> bytes:
    return _hkdf(volume_key, b"motte/volume-snapshot/v1")


def counter_key(volume_key: bytes) -> bytes:
    return _hkdf(volume_key, b"motte/volume-counter/v1")


def volume_info(volume: str, version: int, workload_digest: str, nonce: bytes) -> bytes:
    """HPKE ``info`` of one released volume key."""
    return _INFO + _lp(volume.encode(), str(version).encode(), workload_digest.encode(), nonce)


def commit_message(volume: str, old: int, new: int, snapshot_id: str, size: int) -> bytes:
    return _COMMIT + _lp(
        volume.encode(),
        str(old).encode(),
        str(new).encode(),
        snapshot_id.encode(),
        str(size).encode(),
    )


def commit_mac(
    counter: bytes, volume: str, old: int, new: int, snapshot_id: str, size: int
) -> bytes:
    return hmac.new(
        counter, commit_message(volume, old, new, snapshot_id, size), hashlib.sha256
    ).digest()


# -- release ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotRef:
    """The snapshot a Keep is about to open: its version and random id (clear header)."""

    version: int
    id: str


@dataclass(frozen=True, slots=True)
class WantedVolume:
    identity: VolumeIdentity
    snapshot: SnapshotRef | None

    def to_dict(self) -> dict[str, Any]:
        snap = None
        if self.snapshot is not None:
            snap = {"version": self.snapshot.version, "id": self.snapshot.id}
        return {**self.identity.to_dict(), "snapshot": snap}


def _whole(value: Any, what: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or value >= 2**53:
        raise ReleaseFormatError(f"{what}: a whole number from {low}")
    return value


def _wanted(i: int, doc: Any) -> WantedVolume:
    if not isinstance(doc, dict) or set(doc) - {"name", "sealed_to", "scope", "snapshot"}:
        raise ReleaseFormatError(f"volumes[{i}]: expected {{name, sealed_to, scope, snapshot}}")
    try:
        identity = VolumeIdentity(
            str(doc.get("sealed_to")), str(doc.get("scope")), str(doc.get("name"))
        )
    except ValueError as e:
        raise ReleaseFormatError(f"volumes[{i}]: {e}") from None
    snap = doc.get("snapshot")
    if snap is None:
        return WantedVolume(identity, None)
    if not isinstance(snap, dict) or set(snap) != {"version", "id"}:
        raise ReleaseFormatError(f"volumes[{i}].snapshot: expected {{version, id}} or null")
    sid = snap.get("id")
    if not isinstance(sid, str) or not SNAPSHOT_ID.fullmatch(sid):
        raise ReleaseFormatError(f"volumes[{i}].snapshot.id: 32 lower-case hex digits")
    return WantedVolume(
        identity, SnapshotRef(_whole(snap.get("version"), f"volumes[{i}].snapshot.version", 1), sid)
    )


@dataclass(frozen=True, slots=True)
class VolumeReleaseRequest:
    evidence: Evidence
    workload_digest: str
    nonce: bytes
    release_key: bytes
    volumes: tuple[WantedVolume, ...]
    statements: tuple[bytes, ...] = field(default=(), repr=False)

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "version": 1,
                "evidence": self.evidence.to_dict(),
                "workload_digest": self.workload_digest,
                "nonce": b64(self.nonce),
                "release_key": b64(self.release_key),
                "volumes": [v.to_dict() for v in self.volumes],
                "statements": [b64(s) for s in self.statements],
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> VolumeReleaseRequest:
        from motte.attest import Evidence

        if len(data) > MAX_REQUEST_BYTES:
            raise ReleaseFormatError(f"larger than {MAX_REQUEST_BYTES} bytes")
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ReleaseFormatError(f"not JSON: {e}") from None
        if not isinstance(doc, dict):
            raise ReleaseFormatError("not a JSON object")
        unknown = sorted(set(doc) - _REQUEST_KEYS)
        if unknown:
            raise ReleaseFormatError(f"unknown field {unknown[0]!r}")
        if doc.get("version") != 1:
            raise ReleaseFormatError(f"version {doc.get('version')!r}; this Steward speaks 1")
        try:
            evidence = Evidence.from_dict(doc.get("evidence"))
        except Exception as e:  # its own parser's message names the field
            raise ReleaseFormatError(f"evidence: {e}") from None
        digest = doc.get("workload_digest")
        if not is_digest(digest):
            raise ReleaseFormatError("workload_digest: expected sha256:<64 hex>")
        nonce = unb64(doc.get("nonce"), "nonce", limit=MAX_NONCE)
        if not MIN_NONCE <= len(nonce) <= MAX_NONCE:
            raise ReleaseFormatError(f"nonce: {len(nonce)} bytes")
        key = unb64(doc.get("release_key"), "release_key", limit=1024)
        items = doc.get("volumes")
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_VOLUMES:
            raise ReleaseFormatError(f"volumes: expected a list of 1 to {MAX_VOLUMES}")
        volumes = tuple(_wanted(i, v) for i, v in enumerate(items))
        if len({str(v.identity) for v in volumes}) != len(volumes):
            raise ReleaseFormatError("volumes: a volume is asked for twice")
        statements_doc = doc.get("statements", [])
        if not isinstance(statements_doc, list) or len(statements_doc) > MAX_STATEMENTS:
            raise ReleaseFormatError(f"statements: expected a list of at most {MAX_STATEMENTS}")
        statements = tuple(
            unb64(s, f"statements[{i}]", limit=MAX_STATEMENT_BYTES)
            for i, s in enumerate(statements_doc)
        )
        return cls(evidence, digest, nonce, key, volumes, statements)


@dataclass(frozen=True, slots=True)
class SealedVolumeKey:
    volume: str
    #: The version the Steward has recorded for it (after this release).
    version: int
    sealed: bytes = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"volume": self.volume, "version": self.version, "sealed": b64(self.sealed)}


def parse_volume_answer(data: bytes) -> list[SealedVolumeKey]:
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReleaseFormatError(f"not JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("version") != 1:
        raise ReleaseFormatError("not a version 1 volume release answer")
    items = doc.get("volumes")
    if not isinstance(items, list):
        raise ReleaseFormatError("volumes: expected a list")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("volume"), str):
            raise ReleaseFormatError(f"volumes[{i}]: expected {{volume, version, sealed}}")
        out.append(
            SealedVolumeKey(
                item["volume"],
                _whole(item.get("version"), f"volumes[{i}].version"),
                unb64(item.get("sealed"), f"volumes[{i}].sealed", limit=4096),
            )
        )
    return out


# -- commit ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommitRequest:
    volume: VolumeIdentity
    old: int
    new: int
    snapshot_id: str
    size: int
    mac: bytes = field(repr=False)

    def to_bytes(self) -> bytes:
        return json.dumps(
            {
                "version": 1,
                "volume": str(self.volume),
                "from": self.old,
                "to": self.new,
                "id": self.snapshot_id,
                "size": self.size,
                "mac": b64(self.mac),
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def make(
        cls, counter: bytes, volume: VolumeIdentity, old: int, new: int, sid: str, size: int
    ) -> CommitRequest:
        return cls(
            volume, old, new, sid, size, commit_mac(counter, str(volume), old, new, sid, size)
        )

    def verify(self, counter: bytes) -> bool:
        want = commit_mac(
            counter, str(self.volume), self.old, self.new, self.snapshot_id, self.size
        )
        return hmac.compare_digest(want, self.mac)

    @classmethod
    def from_bytes(cls, data: bytes) -> CommitRequest:
        if len(data) > 16 * 1024:
            raise ReleaseFormatError("larger than 16 KiB")
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ReleaseFormatError(f"not JSON: {e}") from None
        if not isinstance(doc, dict) or set(doc) != _COMMIT_KEYS or doc.get("version") != 1:
            raise ReleaseFormatError(
                f"expected a version 1 commit: {', '.join(sorted(_COMMIT_KEYS))}"
            )
        try:
            volume = VolumeIdentity.parse(str(doc["volume"]))
        except ValueError as e:
            raise ReleaseFormatError(f"volume: {e}") from None
        old = _whole(doc["from"], "from")
        new = _whole(doc["to"], "to", 1)
        if new != old + 1:
            raise ReleaseFormatError(f"to ({new}) must be from + 1 ({old + 1})")
        sid = doc["id"]
        if not isinstance(sid, str) or not SNAPSHOT_ID.fullmatch(sid):
            raise ReleaseFormatError("id: 32 lower-case hex digits")
        mac = unb64(doc["mac"], "mac", limit=64)
        return cls(volume, old, new, sid, _whole(doc["size"], "size"), mac)
