"""Reference values computed from what you built (``motte measure``).

An operator who pins a launch measurement should not have to copy it out of the first report
a Keep sends (trust on first use). This package computes it from the artifacts:

- AMD SEV-SNP: the MEASUREMENT of a QEMU (or EC2, GCE) launch of an OVMF image, with or
  without a measured kernel, initrd and command line (:func:`measure_snp`); the SEV and
  SEV-ES digests too (:func:`sev_launch_digest`, :func:`sev_es_launch_digest`).
- Intel TDX: MRTD of a TDVF image and, for QEMU direct boot, RTMR1 and RTMR2
  (:func:`measure_tdx`); every version-dependent behaviour is an explicit argument.

Parse (:func:`parse_firmware`), compute (sans I/O cores), then describe
(:class:`SnpReference`, :class:`TdxReference`, their ``to_dict``). :func:`write_policy`
pins the values in an attestation policy; :func:`explain_mismatch` says which input would
explain a report that differs. docs/measure.md walks it end to end.
"""

from motte.measure._explain import explain_mismatch, explain_snp, explain_tdx
from motte.measure._firmware import Firmware, SevSection, TdxSection, parse_firmware
from motte.measure._policy_out import extend_policy_text, write_policy
from motte.measure._reference import (
    SNP_HOST_MODEL,
    Artifact,
    SnpReference,
    TdxReference,
    measure_snp,
    measure_tdx,
)
from motte.measure._running import guest_facts, running_lines
from motte.measure._snp import (
    VCPU_SIGNATURES,
    VMM_TYPES,
    KernelHashes,
    cpu_signature,
    firmware_pages_digest,
    sev_es_launch_digest,
    sev_launch_digest,
    snp_launch_digest,
    vcpu_signature,
    vmsa_page,
)
from motte.measure._tdx import (
    INITRD_OPTIONS,
    KERNEL_HEADERS,
    LINUX_STUBS,
    MRTD_ORDERS,
    SEPARATORS,
    mrtd,
    pe_image_digest,
    qemu_patch_setup_header,
    replay,
    rtmr1_events,
    rtmr2_events,
)
from motte.measure.errors import FirmwareError, MeasureError

__all__ = [
    "INITRD_OPTIONS",
    "KERNEL_HEADERS",
    "LINUX_STUBS",
    "MRTD_ORDERS",
    "SEPARATORS",
    "SNP_HOST_MODEL",
    "VCPU_SIGNATURES",
    "VMM_TYPES",
    "Artifact",
    "Firmware",
    "FirmwareError",
    "KernelHashes",
    "MeasureError",
    "SevSection",
    "SnpReference",
    "TdxReference",
    "TdxSection",
    "cpu_signature",
    "explain_mismatch",
    "explain_snp",
    "explain_tdx",
    "extend_policy_text",
    "firmware_pages_digest",
    "guest_facts",
    "measure_snp",
    "measure_tdx",
    "mrtd",
    "parse_firmware",
    "pe_image_digest",
    "qemu_patch_setup_header",
    "replay",
    "rtmr1_events",
    "rtmr2_events",
    "running_lines",
    "sev_es_launch_digest",
    "sev_launch_digest",
    "snp_launch_digest",
    "vcpu_signature",
    "vmsa_page",
    "write_policy",
]
