"""Workload packages as OCI artifacts: a local image-layout store and any OCI registry.

    from motte.oci import parse_reference, build_package, load_workload, push, pull

``open_package(ref)`` is what ``motte run`` calls: one :class:`VerifiedPackage` with the
Motte.toml and module bytes, the workload digest and the package's signed statements, each
byte checked against the digest that names it; the trust judgement and the Keep take that
value (``load_workload`` is the same without the statements). The registry client
(httpx) is imported only when a reference names a registry.
"""

from motte.oci import _mediatypes as mediatypes
from motte.oci._digest import sha256_digest
from motte.oci._encrypt import (
    ContentKey,
    DecryptionError,
    Encryption,
    decrypt_and_check,
    decrypt_file,
    decrypt_file_and_check,
    decrypt_module,
    encrypt_module,
)
from motte.oci._errors import (
    ArtifactNotFoundError,
    AuthError,
    DigestMismatchError,
    InsecureTransportError,
    MalformedArtifactError,
    OciError,
    PackageError,
    ReferenceSyntaxError,
    RegistryError,
    TooLargeError,
)
from motte.oci._layout import LocalStore, default_store_path
from motte.oci._limits import DEFAULT_LIMITS, Limits
from motte.oci._model import Descriptor, Index, Manifest, canonical_json, referrer_descriptor
from motte.oci._open import open_package, read_attachments
from motte.oci._package import (
    MANIFEST_FILE,
    Attachment,
    PackageResult,
    VerifiedPackage,
    WorkloadLayers,
    build_package,
    load_workload,
    module_path_from_manifest,
    read_workload,
    verify_workload_blobs,
    workload_layers,
)
from motte.oci._progress import NO_PROGRESS, Progress, rich_progress
from motte.oci._reference import Reference, check_transport, is_loopback, parse_reference
from motte.oci._repository import (
    LocalRepository,
    RemoteRepository,
    Repository,
    Sink,
    open_repository,
)
from motte.oci._transfer import TransferResult, copy_artifact, pull, push, read_referrers

__all__ = [
    "DEFAULT_LIMITS",
    "MANIFEST_FILE",
    "NO_PROGRESS",
    "ArtifactNotFoundError",
    "Attachment",
    "AuthError",
    "ContentKey",
    "DecryptionError",
    "Descriptor",
    "DigestMismatchError",
    "Encryption",
    "Index",
    "InsecureTransportError",
    "Limits",
    "LocalRepository",
    "LocalStore",
    "MalformedArtifactError",
    "Manifest",
    "OciError",
    "PackageError",
    "PackageResult",
    "Progress",
    "Reference",
    "ReferenceSyntaxError",
    "RegistryError",
    "RemoteRepository",
    "Repository",
    "Sink",
    "TooLargeError",
    "TransferResult",
    "VerifiedPackage",
    "WorkloadLayers",
    "build_package",
    "canonical_json",
    "check_transport",
    "copy_artifact",
    "decrypt_and_check",
    "decrypt_file",
    "decrypt_file_and_check",
    "decrypt_module",
    "default_store_path",
    "encrypt_module",
    "is_loopback",
    "load_workload",
    "mediatypes",
    "module_path_from_manifest",
    "open_package",
    "open_repository",
    "parse_reference",
    "pull",
    "push",
    "read_attachments",
    "read_referrers",
    "read_workload",
    "referrer_descriptor",
    "rich_progress",
    "sha256_digest",
    "verify_workload_blobs",
    "workload_layers",
]
