"""AMD SEV-SNP: parse reports (abi), verify them to pinned AMD roots (verify).

Policy checks live in :mod:`motte.attest` (``validate``); most callers want the recipe
:func:`motte.attest.verify_evidence` instead of these parts.
"""

from motte.attest.snp._abi import (
    REPORT_SIZE,
    SIGNED_SIZE,
    GuestPolicy,
    Report,
    decode_tcb,
    encode_tcb,
    product_from_cpuid,
)
from motte.attest.snp._certs import AmdKeyCertificate, parse_amd_key_certificate, product_line
from motte.attest.snp._certtable import (
    GUID_ARK,
    GUID_ASK,
    GUID_VCEK,
    GUID_VLEK,
    CertTableEntry,
    build_cert_table,
    parse_cert_table,
)
from motte.attest.snp._roots import AmdChain, AmdRoots, pinned_amd_roots
from motte.attest.snp._verify import SnpVerified, SnpVerifyOptions, verify_report

__all__ = [
    "GUID_ARK",
    "GUID_ASK",
    "GUID_VCEK",
    "GUID_VLEK",
    "REPORT_SIZE",
    "SIGNED_SIZE",
    "AmdChain",
    "AmdKeyCertificate",
    "AmdRoots",
    "CertTableEntry",
    "GuestPolicy",
    "Report",
    "SnpVerified",
    "SnpVerifyOptions",
    "build_cert_table",
    "decode_tcb",
    "encode_tcb",
    "parse_amd_key_certificate",
    "parse_cert_table",
    "pinned_amd_roots",
    "product_from_cpuid",
    "product_line",
    "verify_report",
]
