"""SEV-SNP evidence through the legacy ``/dev/sev-guest`` ioctls (before configfs-tsm).

The kernel ABI (include/uapi/linux/sev-guest.h; google/go-sev-guest client/linuxabi)::

    struct snp_report_req      { u8 user_data[64]; u32 vmpl; u8 rsvd[28]; }          96 B
    struct snp_ext_report_req  { struct snp_report_req data; u64 certs_address;
                                 u32 certs_len; }                                    112 B
    struct snp_report_resp     { u8 data[4000]; }
    struct snp_guest_request_ioctl { u8 msg_version; u64 req_data; u64 resp_data;
                                     union { u64 exitinfo2;
                                             struct { u32 fw_error; u32 vmm_error; }; }; }  32 B

    SNP_GET_REPORT     = _IOWR('S', 0x0, struct snp_guest_request_ioctl) = 0xC0205300
    SNP_GET_EXT_REPORT = _IOWR('S', 0x2, struct snp_guest_request_ioctl) = 0xC0205302

The response holds the firmware's MSG_REPORT_RSP: status (u32), report size (u32), 24
reserved bytes, then the 1184-byte report. SNP_GET_EXT_REPORT also fills a page-aligned
buffer with the host's certificate table (GHCB 56421 §4.1.8.1); when the buffer is too small
it fails with vmm_error 1 (SNP_GUEST_VMM_ERR_INVALID_LEN) and writes the needed size back
into ``certs_len``. motte asks for the extended report first (it carries the VCEK) and
falls back to the plain one.

The pointers in the request are addresses of ctypes buffers; the ioctl function is a
parameter so tests can stand in for the firmware and check the layout byte for byte.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from motte.keep.backends._base import Availability, BackendError, check_report_data

if TYPE_CHECKING:
    from motte.attest import Evidence

DEFAULT_SEV_GUEST = Path("/dev/sev-guest")
SNP_GET_REPORT = 0xC0205300
SNP_GET_EXT_REPORT = 0xC0205302
MSG_VERSION = 1
REPORT_REQ = struct.Struct("<64sI28x")
EXT_REPORT_REQ = struct.Struct("<64sI28xQI4x")
GUEST_REQUEST_IOCTL = struct.Struct("<B7xQQQ")
RESPONSE_SIZE = 4000
RESPONSE_HEADER = struct.Struct("<II24x")
REPORT_SIZE = 0x4A0
#: The kernel's SEV_FW_BLOB_MAX_SIZE: the largest certificate buffer it accepts.
MAX_CERTS = 0x4000
VMM_ERR_INVALID_LEN = 1
_ENTRY = struct.Struct("<16sII")

assert REPORT_REQ.size == 96 and EXT_REPORT_REQ.size == 112 and GUEST_REQUEST_IOCTL.size == 32

Ioctl = Callable[[int, int, Any, bool], Any]


def _default_ioctl(fd: int, request: int, arg: Any, mutate: bool) -> Any:
    import fcntl

    return fcntl.ioctl(fd, request, arg, mutate)


class SevGuestDevice:
    """``/dev/sev-guest`` (or a stand-in path and ioctl, for tests)."""

    def __init__(
        self, path: str | os.PathLike[str] = DEFAULT_SEV_GUEST, *, ioctl: Ioctl | None = None
    ) -> None:
        self.path = Path(path)
        self._ioctl = ioctl or _default_ioctl

    def probe(self) -> Availability:
        where = str(self.path)
        if not self.path.exists():
            return Availability(
                False, (f"{where}: does not exist (the sev-guest driver: an SEV-SNP guest)",)
            )
        try:
            fd = os.open(self.path, os.O_RDWR)
        except OSError as e:
            return Availability(False, (f"{where}: cannot open: {e.strerror}",))
        os.close(fd)
        return Availability(True, (f"{where}: present",), via="/dev/sev-guest")

    def report(self, report_data: bytes, *, vmpl: int = 0) -> tuple[bytes, bytes | None]:
        """(report, certificate table or None) for ``report_data``."""
        check_report_data("snp", report_data)
        try:
            fd = os.open(self.path, os.O_RDWR)
        except OSError as e:
            raise BackendError(
                f"snp backend: {self.path}: cannot open: {e.strerror}",
                hint="the sev-guest device needs root (or its group)",
            ) from None
        try:
            try:
                return self._extended(fd, report_data, vmpl)
            except _Unsupported:
                return self._plain(fd, report_data, vmpl), None
        finally:
            os.close(fd)

    def evidence(self, report_data: bytes) -> Evidence:
        from motte.attest import Evidence

        report, certs = self.report(report_data)
        return Evidence("snp", report, certs)

    # -- the two requests --------------------------------------------------------------------

    def _plain(self, fd: int, report_data: bytes, vmpl: int) -> bytes:
        req = ctypes.create_string_buffer(REPORT_REQ.pack(report_data, vmpl), REPORT_REQ.size)
        resp = ctypes.create_string_buffer(RESPONSE_SIZE)
        self._call(fd, SNP_GET_REPORT, req, resp, "SNP_GET_REPORT")
        return _report_from(resp.raw)

    def _extended(self, fd: int, report_data: bytes, vmpl: int) -> tuple[bytes, bytes | None]:
        certs_len = MAX_CERTS
        certs = ctypes.create_string_buffer(certs_len)
        req = ctypes.create_string_buffer(
            EXT_REPORT_REQ.pack(report_data, vmpl, ctypes.addressof(certs), certs_len),
            EXT_REPORT_REQ.size,
        )
        resp = ctypes.create_string_buffer(RESPONSE_SIZE)
        try:
            self._call(fd, SNP_GET_EXT_REPORT, req, resp, "SNP_GET_EXT_REPORT")
        except _VmmError as e:
            if e.vmm_error == VMM_ERR_INVALID_LEN:
                need = EXT_REPORT_REQ.unpack(req.raw)[3]
                raise BackendError(
                    f"snp backend: {self.path}: the host's certificate table needs {need} "
                    f"bytes, more than the kernel's {MAX_CERTS}"
                ) from None
            raise BackendError(
                f"snp backend: {self.path}: SNP_GET_EXT_REPORT failed: {e}"
            ) from None
        returned = EXT_REPORT_REQ.unpack(req.raw)[3]
        table = _cert_table(certs.raw[: min(returned, certs_len)])
        return _report_from(resp.raw), table

    def _call(self, fd: int, request: int, req: Any, resp: Any, name: str) -> None:
        arg = bytearray(
            GUEST_REQUEST_IOCTL.pack(MSG_VERSION, ctypes.addressof(req), ctypes.addressof(resp), 0)
        )
        try:
            self._ioctl(fd, request, arg, True)
        except OSError as e:
            exitinfo2 = GUEST_REQUEST_IOCTL.unpack(bytes(arg))[3]
            fw_error, vmm_error = exitinfo2 & 0xFFFFFFFF, exitinfo2 >> 32
            unknown = e.errno in (errno.ENOTTY, errno.EINVAL) and not (vmm_error or fw_error)
            if request == SNP_GET_EXT_REPORT and unknown:
                raise _Unsupported() from None
            if vmm_error or fw_error:
                raise _VmmError(vmm_error, fw_error, e) from None
            raise BackendError(
                f"snp backend: {self.path}: {name} failed: {e.strerror or e}"
            ) from None


class _Unsupported(Exception):
    """The kernel does not know SNP_GET_EXT_REPORT: fall back to SNP_GET_REPORT."""


class _VmmError(Exception):
    def __init__(self, vmm_error: int, fw_error: int, cause: OSError) -> None:
        super().__init__(f"vmm_error {vmm_error}, fw_error {fw_error:#x} ({cause.strerror})")
        self.vmm_error = vmm_error
        self.fw_error = fw_error


def _report_from(response: bytes) -> bytes:
    status, size = RESPONSE_HEADER.unpack_from(response, 0)
    if status != 0:
        raise BackendError(f"snp backend: the firmware refused the report (status {status:#x})")
    if size != REPORT_SIZE:
        raise BackendError(f"snp backend: the firmware returned a {size}-byte report, not 1184")
    start = RESPONSE_HEADER.size
    return response[start : start + REPORT_SIZE]


def _cert_table(buf: bytes) -> bytes | None:
    """The certificate table trimmed to its last certificate; None when the host gave none."""
    end = 0
    pos = 0
    while pos + _ENTRY.size <= len(buf):
        guid, offset, length = _ENTRY.unpack_from(buf, pos)
        pos += _ENTRY.size
        if guid == bytes(16):
            break
        end = max(end, offset + length)
    if end == 0:
        return None
    # A malformed table is the verifier's to reject (it names the entry); keep what was sent.
    return buf[: min(max(end, pos), len(buf))]
