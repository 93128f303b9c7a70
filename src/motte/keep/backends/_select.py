"""The four backends, and how a Keep picks one.

``--backend snp|tdx|sgx|sim`` names one; without it the first *available* of snp, tdx and
sgx is used. ``sim`` is never chosen automatically: a Keep that silently fell back to the
software keep would look attested and protect nothing.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from motte.errors import UsageError
from motte.keep.backends._base import Availability, Backend, BackendError
from motte.keep.backends._gramine import DEFAULT_GRAMINE_ROOT, GramineAttestation
from motte.keep.backends._sevguest import DEFAULT_SEV_GUEST, SevGuestDevice
from motte.keep.backends._sim import SimBackend
from motte.keep.backends._tsm import DEFAULT_TSM_ROOT, ConfigfsTsm

if TYPE_CHECKING:
    from motte.attest import Evidence

BACKEND_NAMES = ("snp", "tdx", "sgx", "sim")
#: The order of automatic choice; sim is not in it.
AUTO_ORDER = ("snp", "tdx", "sgx")


class SnpBackend:
    """AMD SEV-SNP: configfs-tsm (provider sev_guest), else ``/dev/sev-guest``."""

    name = "snp"
    description = (
        "AMD SEV-SNP confidential VM: the VM's memory is encrypted and integrity-protected "
        "from the host and hypervisor, and the report signs its launch measurement. Not "
        "protected: the VM's own software, side channels, availability."
    )

    def __init__(
        self,
        *,
        tsm_root: str | os.PathLike[str] = DEFAULT_TSM_ROOT,
        sev_guest: SevGuestDevice | None = None,
        tsm: ConfigfsTsm | None = None,
    ) -> None:
        self.tsm = tsm or ConfigfsTsm("sev_guest", tsm_root)
        self.device = sev_guest or SevGuestDevice(DEFAULT_SEV_GUEST)

    def available(self) -> Availability:
        first = self.tsm.probe()
        if first.ok:
            return first
        second = self.device.probe()
        return Availability(second.ok, first.checks + second.checks, second.via)

    def evidence(self, report_data: bytes) -> Evidence:
        first = self.tsm.probe()
        if first.ok:
            return self.tsm.evidence(report_data)
        if self.device.probe().ok:
            return self.device.evidence(report_data)
        raise BackendError(
            "snp backend: unavailable: " + "; ".join(self.available().checks),
            hint="motte platform info shows what each backend needs",
        )


class TdxBackend:
    """Intel TDX: configfs-tsm (provider tdx_guest); the quote comes from the host's QGS."""

    name = "tdx"
    description = (
        "Intel TDX trust domain: the TD's memory is encrypted and integrity-protected from "
        "the host and VMM, and the quote signs MRTD and the RTMRs. Not protected: the TD's "
        "own software, side channels, availability."
    )

    def __init__(
        self, *, tsm_root: str | os.PathLike[str] = DEFAULT_TSM_ROOT, tsm: ConfigfsTsm | None = None
    ) -> None:
        self.tsm = tsm or ConfigfsTsm("tdx_guest", tsm_root)

    def available(self) -> Availability:
        return self.tsm.probe()

    def evidence(self, report_data: bytes) -> Evidence:
        availability = self.tsm.probe()
        if not availability.ok:
            raise BackendError(
                "tdx backend: unavailable: " + "; ".join(availability.checks),
                hint="motte platform info shows what each backend needs",
            )
        return self.tsm.evidence(report_data)


class SgxBackend:
    """Intel SGX under Gramine: ``/dev/attestation`` (DCAP)."""

    name = "sgx"
    description = (
        "Intel SGX enclave under Gramine: only the enclave's memory is protected from the "
        "rest of the machine, and the quote signs MRENCLAVE and MRSIGNER. Not protected: "
        "anything outside the enclave, side channels, availability."
    )

    def __init__(
        self,
        *,
        root: str | os.PathLike[str] = DEFAULT_GRAMINE_ROOT,
        gramine: GramineAttestation | None = None,
    ) -> None:
        self.gramine = gramine or GramineAttestation(root)

    def available(self) -> Availability:
        return self.gramine.probe()

    def evidence(self, report_data: bytes) -> Evidence:
        availability = self.gramine.probe()
        if not availability.ok:
            raise BackendError(
                "sgx backend: unavailable: " + "; ".join(availability.checks),
                hint="motte platform info shows what each backend needs",
            )
        return self.gramine.evidence(report_data)


def all_backends(*, allow_insecure_sim: bool = False) -> list[Backend]:
    """Every backend, in the order ``motte platform info`` lists them."""
    sim = SimBackend(allow_insecure_sim=allow_insecure_sim)
    return [SnpBackend(), TdxBackend(), SgxBackend(), sim]


def get_backend(name: str, *, allow_insecure_sim: bool = False) -> Backend:
    """The backend called ``name`` (not checked for availability)."""
    if name == "snp":
        return SnpBackend()
    if name == "tdx":
        return TdxBackend()
    if name == "sgx":
        return SgxBackend()
    if name == "sim":
        return SimBackend(allow_insecure_sim=allow_insecure_sim)
    raise UsageError(
        f"--backend {name!r}: unknown backend", hint=f"one of {', '.join(BACKEND_NAMES)}"
    )


def choose_backend(
    name: str | None = None,
    *,
    allow_insecure_sim: bool = False,
    candidates: list[Backend] | None = None,
) -> Backend:
    """The backend to use: ``name``, or the first available of snp, tdx, sgx.

    ``sim`` needs ``allow_insecure_sim`` (the operator's consent) and is never automatic.
    A named backend that is unavailable is an error listing its checks.
    """
    if name == "sim" and not allow_insecure_sim:
        raise UsageError(
            "--backend sim: the software keep is INSECURE and needs --allow-insecure-sim",
            hint="for development only: a sim Keep protects nothing from its host",
        )
    pool = (
        candidates
        if candidates is not None
        else all_backends(allow_insecure_sim=allow_insecure_sim)
    )
    by_name = {b.name: b for b in pool}
    if name is not None:
        backend = by_name.get(name) or get_backend(name, allow_insecure_sim=allow_insecure_sim)
        availability = backend.available()
        if not availability.ok:
            raise BackendError(
                f"backend {name} is not available here: {'; '.join(availability.checks)}",
                hint="motte platform info shows what each backend needs",
            )
        return backend
    reasons = []
    for auto in AUTO_ORDER:
        backend = by_name.get(auto)
        if backend is None:
            continue
        availability = backend.available()
        if availability.ok:
            return backend
        reasons.append(f"{auto}: {availability.checks[-1]}")
    raise BackendError(
        "no TEE backend is available on this machine (" + "; ".join(reasons) + ")",
        hint="run in an SEV-SNP or TDX guest or a Gramine SGX enclave; for development, "
        "--backend sim --allow-insecure-sim (INSECURE)",
    )


def platform_report(backends: list[Backend] | None = None) -> list[dict[str, object]]:
    """For ``motte platform info``: each backend's name, description and availability."""
    out = []
    for backend in backends if backends is not None else all_backends():
        availability = backend.available()
        out.append(
            {
                "name": backend.name,
                "description": backend.description,
                "insecure": backend.name == "sim",
                "automatic": backend.name in AUTO_ORDER,
                **availability.to_dict(),
            }
        )
    return out
