"""Evidence through Linux's configfs-tsm report interface (Linux 6.7+, SNP and TDX guests).

The interface is files (Documentation/ABI/testing/configfs-tsm-report)::

    mkdir  <root>/<name>               the kernel creates the attributes below
    write  <name>/inblob               REPORT_DATA, at most 64 bytes (one write)
    read   <name>/generation           bumped on every write, by anyone
    read   <name>/outblob              the SNP report, or the whole TDX quote
    read   <name>/auxblob              SEV only: the host's certificate table (may be empty)
    read   <name>/provider             "sev_guest" or "tdx_guest"
    rmdir  <root>/<name>

An entry is shared by every process that can open it, so another writer could change
``inblob`` between our write and our read. Reading ``generation`` before the write and again
after the last read, and retrying with a fresh entry unless it moved by exactly our one
write, rules that out: the blob we read answers the data we wrote (the check
go-configfs-tsm makes).

:class:`ConfigfsTsm` takes the tree's root, so tests drive it over a temporary directory in
which the test plays the kernel. The few file operations are methods for that reason.
"""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from motte.keep.backends._base import Availability, BackendError, check_report_data

if TYPE_CHECKING:
    from motte.attest import Evidence

DEFAULT_TSM_ROOT = Path("/sys/kernel/config/tsm/report")
#: The kernel's TSM_OUTBLOB_MAX is 32 KiB; certificate tables are a few KiB.
MAX_BLOB = 64 * 1024
MAX_ATTRIBUTE = 4096
#: How often to start over when another writer raced us (a race is rare; a storm is a bug).
ATTEMPTS = 3
PROVIDER_KIND = {"sev_guest": "snp", "tdx_guest": "tdx"}


class ConfigfsTsm:
    """One configfs-tsm tree and the provider (TEE) expected behind it."""

    def __init__(self, provider: str, root: str | os.PathLike[str] = DEFAULT_TSM_ROOT) -> None:
        if provider not in PROVIDER_KIND:
            raise ValueError(f"unknown configfs-tsm provider {provider!r}")
        self.provider = provider
        self.kind = PROVIDER_KIND[provider]
        self.root = Path(root)

    # The kernel's side of the interface: plain file operations (tests add the kernel).

    def mkdir(self, path: Path) -> None:
        os.mkdir(path, 0o700)

    def rmdir(self, path: Path) -> None:
        os.rmdir(path)

    def write(self, path: Path, data: bytes) -> None:
        # No O_CREAT, no O_TRUNC: the attribute exists, and a bin attribute takes its value
        # from the one write that reaches it before close.
        fd = os.open(path, os.O_WRONLY)
        try:
            if os.write(fd, data) != len(data):
                raise OSError(errno.EIO, "short write")
        finally:
            os.close(fd)

    def read(self, path: Path, limit: int) -> bytes:
        with open(path, "rb", buffering=0) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise OSError(errno.EFBIG, f"more than {limit} bytes")
        return data

    # -- probing -----------------------------------------------------------------------------

    def probe(self) -> Availability:
        """Does this tree exist, and does it report through the expected provider?"""
        where = f"configfs-tsm {self.root}"
        if not self.root.is_dir():
            return Availability(
                False, (f"{where}: does not exist (needs a Linux 6.7+ confidential guest)",)
            )
        entry = self.root / f"motte-probe-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            self.mkdir(entry)
        except OSError as e:
            return Availability(False, (f"{where}: cannot create a report entry: {_why(e)}",))
        try:
            provider = self.read(entry / "provider", MAX_ATTRIBUTE).decode("ascii", "replace")
        except OSError as e:
            return Availability(False, (f"{where}: cannot read provider: {_why(e)}",))
        finally:
            self._remove(entry)
        provider = provider.strip()
        if provider != self.provider:
            return Availability(
                False, (f"{where}: provider is {provider or 'empty'!r}, not {self.provider}",)
            )
        return Availability(True, (f"{where}: provider {provider}",), via="configfs-tsm")

    # -- evidence ----------------------------------------------------------------------------

    def report(self, report_data: bytes) -> tuple[bytes, bytes | None]:
        """(outblob, auxblob or None) for ``report_data``; BackendError naming the step."""
        check_report_data(self.kind, report_data)
        for _ in range(ATTEMPTS):
            result = self._attempt(report_data)
            if result is not None:
                return result
        raise BackendError(
            f"{self.kind} backend: configfs-tsm {self.root}: another writer changed the report "
            f"entry {ATTEMPTS} times in a row",
            hint="something else on this machine is writing to configfs-tsm report entries",
        )

    def _attempt(self, report_data: bytes) -> tuple[bytes, bytes | None] | None:
        """One try: None when the generation moved under us (start over)."""
        entry = self.root / f"motte-{os.getpid()}-{secrets.token_hex(8)}"
        step = "create the report entry"
        try:
            self.mkdir(entry)
            try:
                step = "read generation"
                before = self._generation(entry)
                step = "write inblob"
                self.write(entry / "inblob", report_data)
                step = "read outblob"
                outblob = self.read(entry / "outblob", MAX_BLOB)
                auxblob = None
                if self.provider == "sev_guest":
                    step = "read auxblob"
                    auxblob = self.read(entry / "auxblob", MAX_BLOB) or None
                step = "read provider"
                provider = self.read(entry / "provider", MAX_ATTRIBUTE).decode("ascii", "replace")
                step = "read generation"
                # Our write is the only one allowed between the two reads.
                if self._generation(entry) != before + 1:
                    return None
            finally:
                self._remove(entry)
        except OSError as e:
            raise BackendError(
                f"{self.kind} backend: configfs-tsm {entry}: cannot {step}: {_why(e)}",
                hint=_hint(e),
            ) from None
        if provider.strip() != self.provider:
            raise BackendError(
                f"{self.kind} backend: configfs-tsm {self.root}: provider is "
                f"{provider.strip()!r}, not {self.provider}"
            )
        if not outblob:
            raise BackendError(f"{self.kind} backend: configfs-tsm {entry}: outblob is empty")
        return outblob, auxblob

    def _generation(self, entry: Path) -> int:
        text = self.read(entry / "generation", MAX_ATTRIBUTE).strip()
        try:
            return int(text)
        except ValueError:
            raise OSError(errno.EINVAL, f"generation {text[:20]!r} is not a number") from None

    def _remove(self, entry: Path) -> None:
        try:
            self.rmdir(entry)
        except FileNotFoundError:
            pass
        except OSError:
            # Leaving an entry behind costs a few bytes of kernel memory; failing the Keep for
            # it would be worse. The next rmdir of the tree cleans up.
            pass

    def evidence(self, report_data: bytes) -> Evidence:
        from motte.attest import Evidence

        outblob, auxblob = self.report(report_data)
        return Evidence(self.kind, outblob, auxblob)


def _why(e: OSError) -> str:
    return e.strerror or str(e)


def _hint(e: OSError) -> str | None:
    if e.errno in (errno.EACCES, errno.EPERM):
        return "creating configfs-tsm report entries needs root (or write access to the tree)"
    if e.errno in (errno.ENXIO, errno.EIO, errno.EINVAL):
        return "the TEE refused the request; for TDX, check that the quote generation service runs"
    return None
