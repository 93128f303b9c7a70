"""Media types of a motte package and its referrers.

A workload package is an OCI image manifest (``artifactType`` set, per image-spec 1.1):

    config   application/vnd.motte.workload.config.v1+json   {"module": ..., "manifest": ...}
    layer 0  application/vnd.motte.manifest.v1+toml         Motte.toml
    layer 1  application/vnd.motte.module.v1+wasm           the module
    layer 2  application/wasm                               the same module blob, for Wasm tools

Layers 1 and 2 must name the same digest: a reader that finds them different rejects the
package, so no tool can run a module other than the one motte verified. An encrypted
package (``motte package --encrypt``) has two layers: Motte.toml and
``application/vnd.motte.module.v1+wasm+encrypted`` (see motte.oci._encrypt).

Attestations are referrers: image manifests whose ``subject`` is the workload manifest, with
one DSSE envelope layer and, when the statement was logged, its inclusion bundle.
"""

from __future__ import annotations

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_EMPTY_BYTES = b"{}"

WORKLOAD_ARTIFACT = "application/vnd.motte.workload.v1"
WORKLOAD_CONFIG = "application/vnd.motte.workload.config.v1+json"
MOTTE_MANIFEST_LAYER = "application/vnd.motte.manifest.v1+toml"
MOTTE_MODULE_LAYER = "application/vnd.motte.module.v1+wasm"
WASM_LAYER = "application/wasm"
#: An encrypted package's module (motte.oci._encrypt): ocicrypt's "+encrypted" convention;
#: such a package has no application/wasm layer.
ENCRYPTED_MODULE_LAYER = MOTTE_MODULE_LAYER + "+encrypted"

ATTESTATION_ARTIFACT = "application/vnd.in-toto+json"
DSSE_ENVELOPE_LAYER = "application/vnd.dsse.envelope.v1+json"
TLOG_PROOF_LAYER = "application/vnd.motte.tlog-proof.v1"

# Sigstore bundles attached by cosign (3+) or sigstore-python: an OCI 1.1 manifest whose
# artifactType and single layer are the bundle media type (sigstore/cosign BUNDLE_SPEC.md).
SIGSTORE_BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
SIGSTORE_BUNDLE_ARTIFACTS = frozenset(
    {
        SIGSTORE_BUNDLE_V03,
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
        "application/vnd.dev.sigstore.bundle+json;version=0.1",
    }
)

# Annotations (OCI's predefined keys, and motte's own under dev.motte.*).
ANN_TITLE = "org.opencontainers.image.title"
ANN_REF_NAME = "org.opencontainers.image.ref.name"
ANN_CREATED = "org.opencontainers.image.created"
ANN_PREDICATE_TYPE = "dev.motte.predicate-type"
ANN_KEYIDS = "dev.motte.keyids"
