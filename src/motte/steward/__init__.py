"""The Steward: an attestation service and CA for Keeps, and the clients that talk to it.

A Keep proves what it is to the Steward and gets a short-lived certificate; a client that
pins the Steward's CA then knows, from the TLS handshake alone, which TEE, measurement and
workload it talks to::

    Keep:    GET /nonce -> evidence(bind_report_data(key, workload digest, nonce))
             -> POST /attest (CSR carrying the evidence) -> certificate chain
    Steward: verify the evidence (motte.attest) under its policy, check the binding, the
             nonce and the names -> issue, or refuse with every failed rule; audit both
    Client:  connect_keep(url, steward_ca=..., expect_digest=...) -> verified identity

:class:`Steward` is the decision core (no HTTP), :func:`init_steward` creates one,
:class:`StewardClient` is the Keep's side and :func:`connect_keep` the client's. See
docs/keeps.md for the formats, OIDs and API.
"""

from motte._lazy import lazy_exports
from motte.steward._asn1 import KeepEvidence, VerdictSummary
from motte.steward._client import StewardClient, check_steward_url
from motte.steward._config import (
    DEFAULT_SAN_ALLOW,
    SanPattern,
    StewardConfig,
    StewardPaths,
    steward_dir,
)
from motte.steward._csr import build_keep_csr, parse_csr_request
from motte.steward._identity import KeepCertificate
from motte.steward._oids import (
    MOTTE_ARC,
    OID_KEEP_EVIDENCE,
    OID_MEASUREMENT,
    OID_TEE_KIND,
    OID_VERDICT,
    OID_WORKLOAD_DIGEST,
)
from motte.steward._release import (
    SUITE as RELEASE_SUITE,
)
from motte.steward._release import (
    ReleaseFormatError,
    ReleaseRequest,
    SealedSecret,
    Wanted,
    new_release_key,
    open_sealed,
    parse_answer,
    release_info,
    release_report_data,
    spki_of,
)
from motte.steward._store import AuditRecord, KeepSummary, StewardStore
from motte.steward._volume_wire import (
    CommitRequest,
    SnapshotRef,
    VolumeIdentity,
    VolumeReleaseRequest,
    WantedVolume,
    counter_key,
    parse_volume_answer,
    snapshot_key,
    volume_info,
)
from motte.steward.errors import (
    AdminAuthError,
    AttestationRefusedError,
    KeepIdentityError,
    ReleasePolicyError,
    SecretError,
    SecretKeyError,
    SecretNotFoundError,
    SecretRefusedError,
    SecretUsageError,
    StewardConfigError,
    StewardError,
    StewardNotInitialisedError,
    StewardUnreachableError,
    VolumeCommitError,
    VolumeRefusedError,
)

__all__ = [
    "DEFAULT_SAN_ALLOW",
    "MOTTE_ARC",
    "OID_KEEP_EVIDENCE",
    "OID_MEASUREMENT",
    "OID_TEE_KIND",
    "OID_VERDICT",
    "OID_WORKLOAD_DIGEST",
    "RELEASE_SUITE",
    "AdminAuthError",
    "AdminTokens",
    "AttestationRefusedError",
    "AuditRecord",
    "CommitRequest",
    "Decision",
    "KeepCertificate",
    "KeepConnection",
    "KeepEvidence",
    "KeepIdentityError",
    "KeepSummary",
    "ReleaseDecision",
    "ReleaseFormatError",
    "ReleasePolicy",
    "ReleasePolicyError",
    "ReleaseRequest",
    "SanPattern",
    "SealedSecret",
    "SecretAuditRecord",
    "SecretError",
    "SecretInfo",
    "SecretKeyError",
    "SecretNotFoundError",
    "SecretRefusedError",
    "SecretReleases",
    "SecretStore",
    "SecretUsageError",
    "SnapshotRef",
    "Steward",
    "StewardClient",
    "StewardConfig",
    "StewardConfigError",
    "StewardError",
    "StewardNotInitialisedError",
    "StewardPaths",
    "StewardStore",
    "StewardUnreachableError",
    "VerdictSummary",
    "VolumeCommitError",
    "VolumeCounters",
    "VolumeIdentity",
    "VolumeRecord",
    "VolumeRefusedError",
    "VolumeReleaseRequest",
    "Wanted",
    "WantedVolume",
    "build_keep_csr",
    "check_steward_url",
    "connect_keep",
    "counter_key",
    "init_steward",
    "load_release_policy",
    "new_release_key",
    "open_sealed",
    "open_secret_admin",
    "parse_answer",
    "parse_csr_request",
    "parse_release_policy",
    "parse_volume_answer",
    "read_token_file",
    "rekey_files",
    "release_info",
    "release_report_data",
    "serve",
    "snapshot_key",
    "spki_of",
    "steward_dir",
    "volume_info",
]

# The decision core imports motte.attest's verifiers, the client side only the stdlib and
# cryptography: load each on first use so a Keep or a client does not pay for the other.
_LAZY = {
    "Decision": "motte.steward._service",
    "Steward": "motte.steward._service",
    "init_steward": "motte.steward._setup",
    "KeepConnection": "motte.steward._connect",
    "connect_keep": "motte.steward._connect",
    "serve": "motte.steward._server",
    "AdminTokens": "motte.steward._admin",
    "read_token_file": "motte.steward._admin",
    "ReleaseDecision": "motte.steward._releasing",
    "ReleasePolicy": "motte.steward._release_policy",
    "load_release_policy": "motte.steward._release_policy",
    "parse_release_policy": "motte.steward._release_policy",
    "SecretAuditRecord": "motte.steward._secrets",
    "SecretInfo": "motte.steward._secrets",
    "SecretReleases": "motte.steward._secrets",
    "SecretStore": "motte.steward._secrets",
    "rekey_files": "motte.steward._secrets",
    "open_secret_admin": "motte.steward._admin_client",
    "VolumeCounters": "motte.steward._volumes",
    "VolumeRecord": "motte.steward._volumes",
}


__getattr__ = lazy_exports(__name__, _LAZY, globals())
