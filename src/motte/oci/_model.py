"""OCI descriptors, image manifests and indexes: parsed from bytes, serialised canonically.

Field names mirror the image spec. Parsing is strict about what motte relies on (digest
syntax, sizes, media types) and keeps unknown fields out of the way rather than failing on
them, as the spec asks. Serialisation is deterministic (sorted keys, no spaces), so packaging
the same inputs twice gives the same manifest digest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from motte.oci._digest import check_digest, sha256_digest
from motte.oci._errors import MalformedArtifactError
from motte.oci._mediatypes import OCI_INDEX, OCI_MANIFEST


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _load_json(data: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MalformedArtifactError(f"{what}: not valid JSON: {e}") from e
    if not isinstance(obj, dict):
        raise MalformedArtifactError(f"{what}: not a JSON object")
    return obj


def _str(obj: dict[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise MalformedArtifactError(f"{where}: field {key!r} must be a non-empty string")
    return value


def _annotations(obj: dict[str, Any], where: str) -> dict[str, str]:
    ann = obj.get("annotations") or {}
    if not isinstance(ann, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in ann.items()
    ):
        raise MalformedArtifactError(f"{where}: 'annotations' must map strings to strings")
    return dict(ann)


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    artifact_type: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, obj: object, where: str) -> Descriptor:
        if not isinstance(obj, dict):
            raise MalformedArtifactError(f"{where}: a descriptor must be a JSON object")
        media_type = _str(obj, "mediaType", where)
        digest = check_digest(obj.get("digest"), f"{where}.digest")
        size = obj.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise MalformedArtifactError(f"{where}: field 'size' must be a non-negative integer")
        return cls(
            media_type=media_type or "",
            digest=digest,
            size=size,
            artifact_type=_str(obj, "artifactType", where, required=False),
            annotations=_annotations(obj, where),
        )

    @classmethod
    def of(cls, media_type: str, data: bytes, **kw: Any) -> Descriptor:
        return cls(media_type, sha256_digest(data), len(data), **kw)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out


@dataclass(frozen=True, slots=True)
class Manifest:
    """An OCI image manifest (schemaVersion 2)."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    artifact_type: str | None = None
    subject: Descriptor | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "manifest") -> Manifest:
        obj = _load_json(data, what)
        if obj.get("schemaVersion") != 2:
            raise MalformedArtifactError(f"{what}: schemaVersion must be 2")
        media_type = obj.get("mediaType")
        if media_type is not None and media_type != OCI_MANIFEST:
            raise MalformedArtifactError(
                f"{what}: mediaType {media_type!r} is not an OCI image manifest"
            )
        layers = obj.get("layers")
        if not isinstance(layers, list):
            raise MalformedArtifactError(f"{what}: field 'layers' must be a list")
        subject = obj.get("subject")
        return cls(
            config=Descriptor.from_dict(obj.get("config"), f"{what}.config"),
            layers=tuple(
                Descriptor.from_dict(d, f"{what}.layers[{i}]") for i, d in enumerate(layers)
            ),
            artifact_type=_str(obj, "artifactType", what, required=False),
            subject=None if subject is None else Descriptor.from_dict(subject, f"{what}.subject"),
            annotations=_annotations(obj, what),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": self.config.to_dict(),
            "layers": [d.to_dict() for d in self.layers],
        }
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.subject is not None:
            out["subject"] = self.subject.to_dict()
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_dict())

    def kind(self) -> str:
        """What a referrers list records as this manifest's artifact type (spec rule)."""
        return self.artifact_type or self.config.media_type


@dataclass(frozen=True, slots=True)
class Index:
    """An OCI image index; the referrers API and the referrers tag schema both answer one."""

    manifests: tuple[Descriptor, ...]
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_bytes(cls, data: bytes, what: str = "index") -> Index:
        obj = _load_json(data, what)
        if obj.get("schemaVersion") != 2:
            raise MalformedArtifactError(f"{what}: schemaVersion must be 2")
        media_type = obj.get("mediaType")
        if media_type is not None and media_type != OCI_INDEX:
            raise MalformedArtifactError(f"{what}: mediaType {media_type!r} is not an OCI index")
        manifests = obj.get("manifests")
        if not isinstance(manifests, list):
            raise MalformedArtifactError(f"{what}: field 'manifests' must be a list")
        return cls(
            manifests=tuple(
                Descriptor.from_dict(d, f"{what}.manifests[{i}]") for i, d in enumerate(manifests)
            ),
            annotations=_annotations(obj, what),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [d.to_dict() for d in self.manifests],
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_dict())


def referrer_descriptor(manifest_bytes: bytes, manifest: Manifest) -> Descriptor:
    """The entry a referrers list holds for ``manifest``: its artifact type and annotations."""
    return Descriptor(
        OCI_MANIFEST,
        sha256_digest(manifest_bytes),
        len(manifest_bytes),
        artifact_type=manifest.kind(),
        annotations=dict(manifest.annotations),
    )
