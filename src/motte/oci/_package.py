"""Workload packages: build one from a directory, recognise one, load one by reference.

A package is a Motte.toml and the module it names (see :mod:`motte.oci._mediatypes` for the
layers). Its digest, the digest of the OCI manifest, covers both: it is the *workload digest*
that attestation evidence, certificates and trust verdicts bind. Packaging is deterministic
(no timestamps), so the same two files always give the same digest.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from motte.oci import _mediatypes as mt
from motte.oci._encrypt import ContentKey, Encryption, encrypt_module
from motte.oci._errors import MalformedArtifactError, PackageError, TooLargeError
from motte.oci._layout import LocalStore, Staging
from motte.oci._limits import DEFAULT_LIMITS, Limits
from motte.oci._model import Descriptor, Manifest, canonical_json
from motte.oci._progress import NO_PROGRESS, Progress
from motte.oci._reference import Reference
from motte.oci._repository import Advance, Repository, _LocalSink, open_repository

MANIFEST_FILE = "Motte.toml"
_WASM_MAGIC = b"\0asm"
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class WorkloadLayers:
    """The parts of a workload manifest that matter, after its shape was checked."""

    config: Descriptor
    motte_toml: Descriptor
    module: Descriptor
    module_name: str
    #: Set for an encrypted package: ``module`` is then the ciphertext's layer.
    encryption: Encryption | None = None


@dataclass(frozen=True, slots=True)
class Attachment:
    """A motte referrer of a package (a signed statement, maybe with its log proof), read and
    verified: its manifest by digest and subject, each layer's bytes by digest. What the
    statement says, and who signed it, is :mod:`motte.sign`'s to read."""

    descriptor: Descriptor  # the referrer's manifest
    manifest: Manifest
    layers: tuple[bytes, ...]  # each layer's bytes, in the manifest's order


@dataclass(frozen=True, slots=True)
class VerifiedPackage:
    """A package opened once and verified: every byte here hashed to the digest that named it.

    ``motte run REF`` opens the package once (:func:`open_package`) and hands this value on:
    the trust judgement reads its layers' digests and its statements from it, and the Keep
    prepares its module, so neither reads or hashes the package again.
    """

    reference: Reference  # pinned: reference.digest == digest
    digest: str  # the package's (its OCI manifest's): the workload digest a Keep attests
    manifest: bytes  # Motte.toml
    #: The module (its ciphertext when encrypted; empty when an encrypted module was left
    #: in the store, ``open_package(..., encrypted_module=False)``).
    module: bytes
    module_name: str
    layers: WorkloadLayers
    #: The package's motte referrers, each verified by digest (None: not read).
    attachments: tuple[Attachment, ...] | None = None
    #: (digest, why) of each referrer left out because it could not be read intact: anyone
    #: with push access can attach one, so it is a note, never a reason to refuse the package.
    skipped_referrers: tuple[tuple[str, str], ...] = ()

    @property
    def module_digest(self) -> str:
        """The module's digest, as its layer descriptor names it (checked when read); of
        the ciphertext, for an encrypted package."""
        return self.layers.module.digest

    @property
    def encryption(self) -> Encryption | None:
        """How the module is encrypted (None: in clear); ``module`` is then ciphertext."""
        return self.layers.encryption


@dataclass(frozen=True, slots=True)
class PackageResult:
    reference: Reference  # with tag and digest
    digest: str
    module_name: str
    module_size: int
    manifest_size: int


def workload_layers(manifest: Manifest, what: str = "manifest") -> WorkloadLayers:
    """Check ``manifest`` is a motte workload of this version; raise naming what is wrong."""
    if manifest.artifact_type != mt.WORKLOAD_ARTIFACT:
        raise MalformedArtifactError(
            f"{what}: artifactType {manifest.artifact_type!r} is not a motte workload "
            f"({mt.WORKLOAD_ARTIFACT})"
        )
    if manifest.config.media_type != mt.WORKLOAD_CONFIG:
        raise MalformedArtifactError(f"{what}: config mediaType {manifest.config.media_type!r}")
    by_type: dict[str, Descriptor] = {}
    if any(layer.media_type == mt.ENCRYPTED_MODULE_LAYER for layer in manifest.layers):
        return _encrypted_layers(manifest, what)
    for i, layer in enumerate(manifest.layers):
        if layer.media_type not in (mt.MOTTE_MANIFEST_LAYER, mt.MOTTE_MODULE_LAYER, mt.WASM_LAYER):
            raise MalformedArtifactError(
                f"{what}: layers[{i}] has unknown mediaType {layer.media_type!r}"
            )
        if layer.media_type in by_type:
            raise MalformedArtifactError(f"{what}: more than one {layer.media_type} layer")
        by_type[layer.media_type] = layer
    for needed in (mt.MOTTE_MANIFEST_LAYER, mt.MOTTE_MODULE_LAYER, mt.WASM_LAYER):
        if needed not in by_type:
            raise MalformedArtifactError(f"{what}: no {needed} layer")
    module, wasm = by_type[mt.MOTTE_MODULE_LAYER], by_type[mt.WASM_LAYER]
    if (module.digest, module.size) != (wasm.digest, wasm.size):
        raise MalformedArtifactError(
            f"{what}: the {mt.WASM_LAYER} layer ({wasm.digest}) is not the module layer "
            f"({module.digest}); other tools would run a different module"
        )
    name = module.annotations.get(mt.ANN_TITLE, "module.wasm")
    return WorkloadLayers(manifest.config, by_type[mt.MOTTE_MANIFEST_LAYER], module, name)


def _encrypted_layers(manifest: Manifest, what: str) -> WorkloadLayers:
    """An encrypted package: exactly Motte.toml and the encrypted module."""
    types = [layer.media_type for layer in manifest.layers]
    if sorted(types) != sorted([mt.MOTTE_MANIFEST_LAYER, mt.ENCRYPTED_MODULE_LAYER]):
        raise MalformedArtifactError(
            f"{what}: an encrypted package has exactly a {mt.MOTTE_MANIFEST_LAYER} and a "
            f"{mt.ENCRYPTED_MODULE_LAYER} layer, not {', '.join(types)}"
        )
    toml = manifest.layers[types.index(mt.MOTTE_MANIFEST_LAYER)]
    module = manifest.layers[types.index(mt.ENCRYPTED_MODULE_LAYER)]
    encryption = Encryption.from_annotations(module.annotations, f"{what}: encrypted layer")
    name = module.annotations.get(mt.ANN_TITLE, "module.wasm")
    return WorkloadLayers(manifest.config, toml, module, name, encryption)


# -- building ----------------------------------------------------------------------------


def module_path_from_manifest(motte_toml: bytes, where: str, directory: Path | None = None) -> str:
    """The module path Motte.toml names (``workload = "x.wasm"``), relative and inside the dir.

    When :mod:`motte.manifest` is installed the whole manifest is validated with it, so a
    package never holds a Motte.toml that ``motte run`` would refuse.
    """
    try:
        text = motte_toml.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PackageError(f"{where}: not UTF-8 text (byte {e.start})") from None
    value = _validated_workload(text, where, directory)
    if value is None:
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise PackageError(f"{where}: not valid TOML: {e}") from e
        value = doc.get("workload")
    if not isinstance(value, str) or not value:
        raise PackageError(
            f"{where}: no 'workload' key naming the module",
            hint='add workload = "name.wasm" (a path relative to Motte.toml)',
        )
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or "\\" in value:
        raise PackageError(
            f"{where}: workload {value!r} must be a relative path inside the directory"
        )
    return value


def _validated_workload(text: str, where: str, directory: Path | None) -> str | None:
    """The workload path per motte.manifest, or None when that module is not installed."""
    try:
        from motte.manifest import parse_manifest
    except ImportError:
        return None
    base = (directory or Path(".")).absolute()
    manifest = parse_manifest(text, base_dir=base, name=where)
    workload = manifest.workload
    if workload.path is None:
        raise PackageError(
            f"{where}: workload names a digest ({workload.digest}); a package needs the module",
            hint='write workload = "name.wasm", the module file beside Motte.toml',
        )
    try:
        return workload.path.relative_to(base).as_posix()
    except ValueError:
        raise PackageError(
            f"{where}: workload {workload.path} must be a relative path inside the directory"
        ) from None


def build_package(
    directory: Path,
    ref: Reference,
    *,
    store: LocalStore | None = None,
    progress: Progress = NO_PROGRESS,
    content_key: ContentKey | None = None,
) -> PackageResult:
    """Package ``directory`` (Motte.toml + module) into the local store as ``ref``'s tag.

    With ``content_key`` the module is encrypted in memory and only its ciphertext reaches
    the store (motte.oci._encrypt); the key itself goes nowhere near the package."""
    store = store or LocalStore()
    limits = store.limits
    directory = Path(directory)
    toml_path = directory / MANIFEST_FILE
    if not toml_path.is_file():
        raise PackageError(
            f"{directory}: no {MANIFEST_FILE}",
            hint="motte package takes the directory holding Motte.toml",
        )
    toml_bytes = toml_path.read_bytes()
    if len(toml_bytes) > limits.max_small_blob_bytes:
        raise TooLargeError(f"{toml_path}: over the {limits.max_small_blob_bytes}-byte limit")
    rel = module_path_from_manifest(toml_bytes, str(toml_path), directory)
    module_path = _inside(directory, rel, toml_path)
    size = module_path.stat().st_size
    if size > limits.max_module_bytes:
        raise TooLargeError(
            f"{module_path}: {size} bytes is over the {limits.max_module_bytes}-byte limit"
        )
    with module_path.open("rb") as f:
        if f.read(4) != _WASM_MAGIC:
            raise PackageError(f"{module_path}: not a WebAssembly binary (no \\0asm header)")

    module_name = PurePosixPath(rel).name
    toml_desc = Descriptor.of(
        mt.MOTTE_MANIFEST_LAYER, toml_bytes, annotations={mt.ANN_TITLE: MANIFEST_FILE}
    )
    config_bytes = canonical_json({"manifest": MANIFEST_FILE, "module": rel})
    config_desc = Descriptor.of(mt.WORKLOAD_CONFIG, config_bytes)

    with store.staging() as staging:
        if content_key is not None:
            layers = (toml_desc, _stage_encrypted(staging, module_path, module_name, content_key))
        else:
            with progress.task(f"package {module_name}", size) as advance:
                module_digest = _stage_file(staging, module_path, size, limits, advance)
            module_desc = Descriptor(
                mt.MOTTE_MODULE_LAYER, module_digest, size, annotations={mt.ANN_TITLE: module_name}
            )
            wasm_desc = Descriptor(
                mt.WASM_LAYER, module_digest, size, annotations={mt.ANN_TITLE: module_name}
            )
            layers = (toml_desc, module_desc, wasm_desc)
        staging.write_bytes(toml_desc, toml_bytes, str(toml_path))
        staging.write_bytes(config_desc, config_bytes, "config")
        manifest = Manifest(
            config=config_desc,
            layers=layers,
            artifact_type=mt.WORKLOAD_ARTIFACT,
        )
        data = manifest.to_bytes()
        desc = Descriptor.of(mt.OCI_MANIFEST, data)
        _LocalSink(staging, ref.local()).put_manifest(desc, data, tag=ref.tag)
    return PackageResult(
        ref.local().with_digest(desc.digest), desc.digest, module_name, size, len(toml_bytes)
    )


def _inside(directory: Path, rel: str, where: Path) -> Path:
    """``directory/rel`` if it is a regular file that (after symlinks) stays in ``directory``."""
    base = directory.resolve()
    path = (directory / rel).resolve()
    if not path.is_relative_to(base):
        raise PackageError(f"{where}: workload {rel!r} resolves outside {directory}")
    if not path.is_file():
        raise PackageError(f"{where}: workload {rel!r} is not a file in {directory}")
    return path


def _stage_encrypted(
    staging: Staging, path: Path, module_name: str, content_key: ContentKey
) -> Descriptor:
    """The module read into memory, encrypted there, and only the ciphertext staged."""
    import hashlib

    plaintext = path.read_bytes()
    encryption = Encryption(
        content_key.secret,
        content_key.version,
        "sha256:" + hashlib.sha256(plaintext).hexdigest(),
        len(plaintext),
    )
    ciphertext = encrypt_module(content_key.key, plaintext)
    desc = Descriptor.of(
        mt.ENCRYPTED_MODULE_LAYER,
        ciphertext,
        annotations={mt.ANN_TITLE: module_name, **encryption.annotations()},
    )
    staging.write_bytes(desc, ciphertext, f"{path} (encrypted)")
    return desc


def _stage_file(staging: Staging, path: Path, size: int, limits: Limits, advance: Advance) -> str:
    """Stage the module in one pass (hashed as written) and return its digest."""

    def chunks() -> Iterator[bytes]:
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                yield chunk

    desc = staging.ingest(
        mt.MOTTE_MODULE_LAYER, chunks(), str(path), limit=limits.max_module_bytes, advance=advance
    )
    if desc.size != size:
        raise PackageError(f"{path}: changed while it was being packaged")
    return desc.digest


# -- loading -----------------------------------------------------------------------------


def load_workload(
    ref: Reference | str,
    *,
    store: LocalStore | None = None,
    allow_insecure_http: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> VerifiedPackage:
    """The verified Motte.toml and module of ``ref`` (local store or registry), and its digest.

    A tag is resolved once; the manifest, Motte.toml and module are each checked against the
    digest that names them. This is what a Keep calls to load a package by digest.
    """
    from motte.oci._reference import parse_reference

    if isinstance(ref, str):
        ref = parse_reference(ref)
    with open_repository(
        ref, store=store, allow_insecure_http=allow_insecure_http, limits=limits
    ) as repo:
        return read_workload(repo, ref)


def read_workload(
    repo: Repository, ref: Reference, *, encrypted_module: bool = True
) -> VerifiedPackage:
    desc, data = repo.resolve(ref)
    label = f"{ref.repository}@{desc.digest}"
    layers = workload_layers(
        Manifest.from_bytes(data, f"manifest of {label}"), f"manifest of {label}"
    )
    toml_bytes = repo.blob(layers.motte_toml, f"layer {MANIFEST_FILE} of {label}")
    if layers.encryption is not None and not encrypted_module:
        module = b""  # left in the store: decrypted while read (motte.oci.decrypt_file)
    else:
        module = repo.blob(layers.module, f"layer {layers.module_name} of {label}")
    return VerifiedPackage(
        ref.with_digest(desc.digest), desc.digest, toml_bytes, module, layers.module_name, layers
    )


def verify_workload_blobs(
    repo: Repository, desc: Descriptor, data: bytes, label: str
) -> WorkloadLayers:
    """Check every blob of the workload against its digest (streaming; nothing kept)."""
    layers = workload_layers(
        Manifest.from_bytes(data, f"manifest of {label}"), f"manifest of {label}"
    )
    repo.blob(layers.config, f"config of {label}")
    repo.blob(layers.motte_toml, f"layer {MANIFEST_FILE} of {label}")
    for _ in repo.iter_blob(layers.module, f"layer {layers.module_name} of {label}"):
        pass
    return layers
