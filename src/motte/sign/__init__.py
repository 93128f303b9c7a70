"""Signing: keys, DSSE envelopes, in-toto statements, namespace trust roots, verification.

    from motte.sign import generate_key, sign_artifact, attest_build, verify_artifact

Statements are DSSE-signed in-toto Statement v1 documents about a package's digest, logged
in the transparency log and stored beside the package as OCI referrers. Publisher keys are
delegated per namespace by a TUF-style root (:mod:`motte.sign._trustroot`).
"""

from motte.sign._attach import StoredStatement, attach_statement, read_statements
from motte.sign._canonical import canonical_json
from motte.sign._dsse import (
    INTOTO_PAYLOAD_TYPE,
    Envelope,
    Signature,
    VerifiedEnvelope,
    pae,
    sign_envelope,
    verify_envelope,
)
from motte.sign._errors import (
    ArtifactVerificationError,
    EnvelopeFormatError,
    KeyFileError,
    KeyNotFoundError,
    SignatureError,
    SignError,
    SigningUsageError,
    TrustRootError,
)
from motte.sign._keys import (
    ENV_PASSPHRASE,
    KEY_TYPES,
    PrivateKey,
    PublicKey,
    generate_key,
    keys_dir,
    list_keys,
    load_private_key,
    load_public_key,
    passphrase_from_env,
    save_key_pair,
)
from motte.sign._logging import LogEvidence, check_logged, log_envelope
from motte.sign._operations import (
    SignResult,
    attest_build,
    attest_review,
    sign_artifact,
    sign_statement,
)
from motte.sign._predicates import (
    BUILD_TYPE,
    DEFAULT_BUILDER,
    PUBLICATION,
    REVIEW,
    SLSA_PROVENANCE,
    Provenance,
    Publication,
    Review,
)
from motte.sign._statement import STATEMENT_TYPE, Statement, Subject
from motte.sign._trustroot import (
    ROOT_PAYLOAD_TYPE,
    RootDocument,
    RootMetadata,
    default_expiry,
    load_chain,
    new_root,
    verify_chain,
    with_namespace,
    with_root_keys,
)
from motte.sign._truststore import (
    PublisherPolicy,
    RootStatus,
    current_root,
    install_root,
    policy_for_namespace,
    policy_from_keys,
    propose,
    sign_staged,
    trust_roots_dir,
)
from motte.sign._verify import CheckedStatement, Verification, verify_artifact

__all__ = [
    "BUILD_TYPE",
    "DEFAULT_BUILDER",
    "ENV_PASSPHRASE",
    "INTOTO_PAYLOAD_TYPE",
    "KEY_TYPES",
    "PUBLICATION",
    "REVIEW",
    "ROOT_PAYLOAD_TYPE",
    "SLSA_PROVENANCE",
    "STATEMENT_TYPE",
    "ArtifactVerificationError",
    "CheckedStatement",
    "Envelope",
    "EnvelopeFormatError",
    "KeyFileError",
    "KeyNotFoundError",
    "LogEvidence",
    "PrivateKey",
    "Provenance",
    "PublicKey",
    "Publication",
    "PublisherPolicy",
    "Review",
    "RootDocument",
    "RootMetadata",
    "RootStatus",
    "SignError",
    "SignResult",
    "Signature",
    "SignatureError",
    "SigningUsageError",
    "Statement",
    "StoredStatement",
    "Subject",
    "TrustRootError",
    "Verification",
    "VerifiedEnvelope",
    "attach_statement",
    "attest_build",
    "attest_review",
    "canonical_json",
    "check_logged",
    "current_root",
    "default_expiry",
    "generate_key",
    "install_root",
    "keys_dir",
    "list_keys",
    "load_chain",
    "load_private_key",
    "load_public_key",
    "log_envelope",
    "new_root",
    "pae",
    "passphrase_from_env",
    "policy_for_namespace",
    "policy_from_keys",
    "propose",
    "read_statements",
    "save_key_pair",
    "sign_artifact",
    "sign_envelope",
    "sign_staged",
    "sign_statement",
    "trust_roots_dir",
    "verify_artifact",
    "verify_chain",
    "verify_envelope",
    "with_namespace",
    "with_root_keys",
]
