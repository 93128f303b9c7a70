"""motte's object identifiers: one arc, derived from a UUID, so no registry is needed.

ITU-T X.667 gives everyone the arc ``2.25.<UUID as a decimal integer>``; the owner of the
UUID allocates below it. motte's UUID is ``cca1ab20-4ddf-44dc-a6ae-a34f15e7f8e7``::

    2.25.272001941785790631617904228945623513319          id-motte
      .1   id-motte-keepEvidence    CSR extension: the Keep's evidence, workload digest, nonce
      .2   id-motte-teeKind         certificate: UTF8String "snp" | "tdx" | "sgx" | "sim"
      .3   id-motte-measurement     certificate: OCTET STRING, the launch measurement
      .4   id-motte-workloadDigest  certificate: UTF8String "sha256:<64 hex>"
      .5   id-motte-verdict         certificate: which policy judged which evidence, and when

docs/keeps.md gives the ASN.1 of each value. Every motte extension is non-critical: a TLS
stack that does not know them still validates the chain, and motte's clients read them.
"""

from __future__ import annotations

MOTTE_UUID = "cca1ab20-4ddf-44dc-a6ae-a34f15e7f8e7"
MOTTE_ARC = "2.25.272001941785790631617904228945623513319"
OID_KEEP_EVIDENCE = f"{MOTTE_ARC}.1"
OID_TEE_KIND = f"{MOTTE_ARC}.2"
OID_MEASUREMENT = f"{MOTTE_ARC}.3"
OID_WORKLOAD_DIGEST = f"{MOTTE_ARC}.4"
OID_VERDICT = f"{MOTTE_ARC}.5"
#: Enarx's arc (enarx/steward): 1.3.6.1.4.1.58270.1.{1 KVM, 2 SGX, 3 SNP}.
ENARX_ARC = "1.3.6.1.4.1.58270.1"
