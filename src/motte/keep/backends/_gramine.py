"""SGX evidence inside a Gramine enclave, through its ``/dev/attestation`` pseudo-files.

Gramine (Documentation/attestation.rst) gives an enclave process these files::

    attestation_type     "none", "epid" or "dcap"
    user_report_data     write 64 bytes: the REPORTDATA of the next quote
    quote                read: an SGX quote (v3) over that REPORTDATA, from the quoting enclave

They are process-local, so no other process can race a write and a read. motte verifies DCAP
quotes only; EPID attestation has reached its end of life.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from motte.keep.backends._base import Availability, BackendError, check_report_data

if TYPE_CHECKING:
    from motte.attest import Evidence

DEFAULT_GRAMINE_ROOT = Path("/dev/attestation")
MAX_QUOTE = 64 * 1024


class GramineAttestation:
    """A ``/dev/attestation`` tree (or a stand-in directory, for tests)."""

    def __init__(self, root: str | os.PathLike[str] = DEFAULT_GRAMINE_ROOT) -> None:
        self.root = Path(root)

    def probe(self) -> Availability:
        where = str(self.root)
        if not self.root.is_dir():
            return Availability(
                False, (f"{where}: does not exist (not running in a Gramine SGX enclave)",)
            )
        try:
            kind = (self.root / "attestation_type").read_text("ascii").strip()
        except (OSError, UnicodeDecodeError) as e:
            return Availability(False, (f"{where}/attestation_type: cannot read: {e}",))
        if kind == "dcap":
            return Availability(True, (f"{where}: DCAP attestation",), via="gramine")
        if kind == "epid":
            return Availability(
                False, (f"{where}: EPID attestation; motte verifies DCAP quotes only",)
            )
        return Availability(
            False, (f"{where}: attestation_type is {kind!r} (set sgx.remote_attestation)",)
        )

    def evidence(self, report_data: bytes) -> Evidence:
        from motte.attest import Evidence

        check_report_data("sgx", report_data)
        step = "write user_report_data"
        try:
            fd = os.open(self.root / "user_report_data", os.O_WRONLY)
            try:
                if os.write(fd, report_data) != len(report_data):
                    raise OSError(0, "short write")
            finally:
                os.close(fd)
            step = "read quote"
            with open(self.root / "quote", "rb", buffering=0) as f:
                quote = f.read(MAX_QUOTE + 1)
        except OSError as e:
            raise BackendError(
                f"sgx backend: {self.root}: cannot {step}: {e.strerror or e}",
                hint='check the enclave\'s manifest: sgx.remote_attestation = "dcap"',
            ) from None
        if not quote or len(quote) > MAX_QUOTE:
            raise BackendError(f"sgx backend: {self.root}/quote: {len(quote)} bytes")
        return Evidence("sgx", quote)
