"""The one interface every Keep backend implements, and what it reports about itself.

A backend is where a Keep's evidence comes from: the TEE it runs in (SEV-SNP, TDX, SGX under
Gramine) or the insecure software keep (``sim``). It answers two questions:

* :meth:`Backend.available`: can it produce evidence on this machine, and if not, why not
  (each check it made, one line each, for ``motte platform info``)?
* :meth:`Backend.evidence`: evidence whose REPORT_DATA is exactly the 64 bytes given
  (:func:`motte.attest.bind_report_data` of the Keep's key, its workload and the Steward's
  nonce), as an :class:`motte.attest.Evidence` the Steward can verify.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from motte.errors import ExitStatus, MotteError

if TYPE_CHECKING:
    from motte.attest import Evidence

#: REPORT_DATA is 64 bytes in every TEE motte supports (SNP, TDX, SGX and sim).
REPORT_DATA_SIZE = 64


class BackendError(MotteError):
    """A backend could not produce evidence (``motte run`` exits 125: the Keep did not start)."""

    exit_status = ExitStatus.RUN_ERROR


@dataclass(frozen=True, slots=True)
class Availability:
    """Whether a backend works here: ``ok``, and one line per check it made (why, or why not).

    ``via`` names the interface that works (``configfs-tsm``, ``/dev/sev-guest``, ...).
    """

    ok: bool
    checks: tuple[str, ...]
    via: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"available": self.ok, "via": self.via, "checks": list(self.checks)}


@runtime_checkable
class Backend(Protocol):
    """A source of attestation evidence for a Keep."""

    #: ``snp``, ``tdx``, ``sgx`` or ``sim``: also the evidence kind it produces.
    name: str
    #: One or two sentences: what this backend protects, and what it does not.
    description: str

    def available(self) -> Availability: ...

    def evidence(self, report_data: bytes) -> Evidence: ...


def check_report_data(name: str, report_data: bytes) -> bytes:
    """``report_data`` if it is exactly 64 bytes; a caller bug otherwise."""
    if not isinstance(report_data, bytes) or len(report_data) != REPORT_DATA_SIZE:
        size = len(report_data) if isinstance(report_data, bytes) else type(report_data).__name__
        raise ValueError(f"{name} backend: report_data must be 64 bytes, not {size}")
    return report_data
