"""Stand-ins for the kernel side of each backend's interface: the test plays the kernel.

The backends' own code runs unchanged over a temporary directory: it makes the report entry,
writes ``inblob``, reads the attributes and removes the entry with real file operations.
:class:`FakeTsmKernel` adds what configfs would do at the same moments (create the
attributes on mkdir, bump ``generation`` and fill ``outblob`` on a write). The firmware of
``/dev/sev-guest`` is :class:`FakeSevFirmware`, an ioctl function that reads and writes the
request's buffers through their addresses, so the struct layout is checked byte for byte.
"""

from __future__ import annotations

import ctypes
import errno
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from motte.attest.snp import GUID_ARK, GUID_ASK, GUID_VCEK, build_cert_table
from motte.keep.backends import ConfigfsTsm
from motte.keep.backends._sevguest import (
    EXT_REPORT_REQ,
    GUEST_REQUEST_IOCTL,
    REPORT_REQ,
    RESPONSE_SIZE,
    SNP_GET_EXT_REPORT,
    SNP_GET_REPORT,
)
from tests.conftest import shared_testdata


def sample(*parts: str) -> bytes:
    return shared_testdata("attestation", *parts).read_bytes()


def milan_cert_table() -> bytes:
    """The host's certificate table for the trustee Milan sample: VCEK, ASK, ARK."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    ask, ark = x509.load_pem_x509_certificates(sample("virtee-sev", "cert_chain_milan"))
    return build_cert_table(
        [
            (GUID_VCEK, sample("trustee", "snp", "test-vcek.der")),
            (GUID_ASK, ask.public_bytes(serialization.Encoding.PEM)),
            (GUID_ARK, ark.public_bytes(serialization.Encoding.DER)),
        ]
    )


#: What the "kernel" answers a REPORT_DATA with: (outblob, auxblob).
Producer = Callable[[bytes], tuple[bytes, bytes]]


@dataclass
class KernelLog:
    inblobs: list[bytes] = field(default_factory=list)
    made: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


class FakeTsmKernel(ConfigfsTsm):
    """A configfs-tsm tree under a temporary root, with this test as the kernel."""

    def __init__(
        self,
        root: Path,
        *,
        provider: str = "sev_guest",
        answers: str | None = None,
        produce: Producer,
        races: int = 0,
        fail_read: str | None = None,
        deny_mkdir: bool = False,
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        super().__init__(provider, root)
        #: The provider the kernel reports (the backend expects ``provider``).
        self.answers = answers or provider
        self.produce = produce
        #: How many times another writer bumps ``generation`` between our write and read.
        self.races = races
        self.fail_read = fail_read
        #: configfs answers EACCES to a process without the right (an unprivileged Keep).
        self.deny_mkdir = deny_mkdir
        self.log = KernelLog()

    def mkdir(self, path: Path) -> None:
        if self.deny_mkdir:
            raise PermissionError(errno.EACCES, "Permission denied")
        super().mkdir(path)
        self.log.made.append(path.name)
        for name, value in (
            ("provider", self.answers.encode() + b"\n"),
            ("generation", b"0\n"),
            ("inblob", b""),
            ("outblob", b""),
            ("auxblob", b""),
        ):
            (path / name).write_bytes(value)

    def write(self, path: Path, data: bytes) -> None:
        super().write(path, data)
        if path.name == "inblob":
            entry = path.parent
            self.log.inblobs.append(data)
            generation = int((entry / "generation").read_text()) + 1
            if self.races:
                self.races -= 1
                generation += 1  # someone else wrote too
            (entry / "generation").write_text(f"{generation}\n")
            outblob, auxblob = self.produce(data)
            (entry / "outblob").write_bytes(outblob)
            (entry / "auxblob").write_bytes(auxblob)

    def read(self, path: Path, limit: int) -> bytes:
        if path.name == self.fail_read:
            raise OSError(errno.EIO, "Input/output error")
        return super().read(path, limit)

    def rmdir(self, path: Path) -> None:
        # configfs removes the attributes with the directory; a real directory needs help.
        for child in path.iterdir():
            child.unlink()
        super().rmdir(path)
        self.log.removed.append(path.name)


def left_behind(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir())


class FakeSevFirmware:
    """An ``ioctl`` for SevGuestDevice that answers like the SNP firmware would."""

    def __init__(
        self,
        report: bytes,
        certs: bytes | None,
        *,
        ext_supported: bool = True,
        status: int = 0,
        certs_needed: int | None = None,
    ) -> None:
        self.report = report
        self.certs = certs
        self.ext_supported = ext_supported
        self.status = status
        self.certs_needed = certs_needed
        self.calls: list[tuple[int, bytes, int]] = []

    def __call__(self, fd: int, request: int, arg: bytearray, mutate: bool) -> int:
        assert mutate and isinstance(arg, bytearray) and len(arg) == GUEST_REQUEST_IOCTL.size
        version, req_addr, resp_addr, _ = GUEST_REQUEST_IOCTL.unpack(bytes(arg))
        assert version == 1
        if request == SNP_GET_EXT_REPORT:
            raw = ctypes.string_at(req_addr, EXT_REPORT_REQ.size)
            user_data, vmpl, certs_addr, certs_len = EXT_REPORT_REQ.unpack(raw)
            self.calls.append((request, user_data, vmpl))
            if not self.ext_supported:
                raise OSError(errno.ENOTTY, "Inappropriate ioctl for device")
            needed = self.certs_needed or len(self.certs or b"")
            if needed > certs_len:
                # The kernel writes the size it needs back and reports vmm_error 1.
                ctypes.memmove(req_addr + 104, struct.pack("<I", needed), 4)
                struct.pack_into("<Q", arg, 24, 1 << 32)
                raise OSError(errno.EIO, "Input/output error")
            if self.certs:
                ctypes.memmove(certs_addr, self.certs, len(self.certs))
        elif request == SNP_GET_REPORT:
            raw = ctypes.string_at(req_addr, REPORT_REQ.size)
            user_data, vmpl = REPORT_REQ.unpack(raw)
            self.calls.append((request, user_data, vmpl))
        else:
            raise OSError(errno.ENOTTY, "unknown ioctl")
        response = struct.pack("<II24x", self.status, len(self.report)) + self.report
        response += bytes(RESPONSE_SIZE - len(response))
        ctypes.memmove(resp_addr, response, RESPONSE_SIZE)
        return 0


def gramine_tree(root: Path, *, kind: str = "dcap", quote: bytes = b"") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "attestation_type").write_text(kind)
    (root / "user_report_data").write_bytes(b"")
    (root / "quote").write_bytes(quote)
    return root
