"""Keep backends: where a Keep's attestation evidence comes from.

    from motte.keep.backends import choose_backend
    backend = choose_backend("snp")              # or None: the first available TEE
    evidence = backend.evidence(report_data)     # 64 bytes -> motte.attest.Evidence

========  ==========================================================================
snp       AMD SEV-SNP guest: configfs-tsm (provider sev_guest), else /dev/sev-guest
tdx       Intel TDX guest: configfs-tsm (provider tdx_guest)
sgx       Intel SGX under Gramine: /dev/attestation (DCAP)
sim       INSECURE software keep: never automatic, needs allow_insecure_sim
========  ==========================================================================

Every hardware interface takes its root (a directory, a device path) as a parameter, so
tests drive the real code over a temporary tree in which the test plays the kernel.
"""

from motte.keep.backends._base import (
    REPORT_DATA_SIZE,
    Availability,
    Backend,
    BackendError,
)
from motte.keep.backends._gramine import DEFAULT_GRAMINE_ROOT, GramineAttestation
from motte.keep.backends._select import (
    AUTO_ORDER,
    BACKEND_NAMES,
    SgxBackend,
    SnpBackend,
    TdxBackend,
    all_backends,
    choose_backend,
    get_backend,
    platform_report,
)
from motte.keep.backends._sevguest import DEFAULT_SEV_GUEST, SevGuestDevice
from motte.keep.backends._sim import SimBackend, measured_files, sim_measurement
from motte.keep.backends._tsm import DEFAULT_TSM_ROOT, ConfigfsTsm

__all__ = [
    "AUTO_ORDER",
    "BACKEND_NAMES",
    "DEFAULT_GRAMINE_ROOT",
    "DEFAULT_SEV_GUEST",
    "DEFAULT_TSM_ROOT",
    "REPORT_DATA_SIZE",
    "Availability",
    "Backend",
    "BackendError",
    "ConfigfsTsm",
    "GramineAttestation",
    "SevGuestDevice",
    "SgxBackend",
    "SimBackend",
    "SnpBackend",
    "TdxBackend",
    "all_backends",
    "choose_backend",
    "get_backend",
    "measured_files",
    "platform_report",
    "sim_measurement",
]
