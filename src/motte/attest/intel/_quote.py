"""Intel DCAP quotes: bytes <-> frozen dataclasses, no trust decisions.

Layouts (Intel "TDX DCAP Quote Generation Library and Quote Verification Library" API spec,
SGX ECDSA quote library reference; cross-checked against google/go-tdx-guest abi/abi.go):

    header (48 bytes, all quote versions)
      0x00 u16 version (3 SGX, 4 SGX or TDX, 5)   0x02 u16 attestation key type (2 = ECDSA P-256)
      0x04 u32 TEE type (0x00 SGX, 0x81 TDX)     0x08 u16 QE SVN   0x0A u16 PCE SVN
      0x0C QE vendor ID [16]                      0x1C user data [20]
    v3 / v4 body at 0x30: SGX enclave report (384) or TD report 1.0 (584)
    v5 body descriptor at 0x30: u16 body type (1 SGX, 2 TD 1.0, 3 TD 1.5), u32 body size;
       body at 0x36 (384, 584 or 648 bytes)
    signed region = header (+ v5 descriptor) + body; then u32 signature data length and:
      quote signature [64] (r || s, big-endian), attestation key [64] (X || Y)
      v3: QE report [384], QE report signature [64], u16 QE auth data size + data,
          certification data: u16 type, u32 size, data (type 5 = PCK chain PEM)
      v4/v5: certification data of type 6 ("QE report certification data") whose data is
          the same QE report / signature / auth data / inner certification data as v3

Every structural fault raises :class:`EvidenceParseError` naming the structure, the field and
its byte offset in the quote. :func:`parse_quote` and :meth:`Quote.to_bytes` are exact
inverses (trailing zero padding is kept as a count), which the tests use to build quotes.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass
from typing import Any, Literal

from motte.attest.errors import EvidenceParseError

HEADER_SIZE = 48
ENCLAVE_REPORT_SIZE = 384
TD_REPORT10_SIZE = 584
TD_REPORT15_SIZE = 648
SIGNATURE_SIZE = 64
ATTESTATION_KEY_SIZE = 64
#: A real quote is about 5 KB; buffers handed out by some stacks are zero-padded to 8000.
MAX_QUOTE_SIZE = 64 * 1024

ATTESTATION_KEY_ECDSA_P256 = 2
TEE_TYPE_SGX = 0x00000000
TEE_TYPE_TDX = 0x00000081
BODY_SGX_ENCLAVE = 1
BODY_TD_REPORT10 = 2
BODY_TD_REPORT15 = 3
#: Intel's quoting enclaves put this in the header's QE vendor ID.
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")

CERT_DATA_PPID_CLEARTEXT = 1
CERT_DATA_PPID_RSA2048 = 2
CERT_DATA_PPID_RSA3072 = 3
CERT_DATA_PCK_LEAF = 4
CERT_DATA_PCK_CHAIN = 5
CERT_DATA_QE_REPORT = 6
CERT_DATA_PLATFORM_MANIFEST = 7
CERT_DATA_TYPES = {
    CERT_DATA_PPID_CLEARTEXT: "PPID in clear text",
    CERT_DATA_PPID_RSA2048: "PPID encrypted with RSA-2048-OAEP",
    CERT_DATA_PPID_RSA3072: "PPID encrypted with RSA-3072-OAEP",
    CERT_DATA_PCK_LEAF: "PCK leaf certificate",
    CERT_DATA_PCK_CHAIN: "PCK certificate chain (PEM)",
    CERT_DATA_QE_REPORT: "QE report certification data",
    CERT_DATA_PLATFORM_MANIFEST: "platform manifest",
}
_BODY_SIZES = {
    BODY_SGX_ENCLAVE: ENCLAVE_REPORT_SIZE,
    BODY_TD_REPORT10: TD_REPORT10_SIZE,
    BODY_TD_REPORT15: TD_REPORT15_SIZE,
}
_MAX_PCK_CHAIN_CERTS = 8


def _hex(b: bytes | None) -> str | None:
    return None if b is None else b.hex()


# --------------------------------------------------------------------------- the structures


@dataclass(frozen=True, slots=True)
class QuoteHeader:
    version: int
    attestation_key_type: int
    tee_type: int
    #: Reported by the quote generator, not signed by anything it controls: use the QE
    #: report's ISVSVN and the PCK certificate's PCESVN instead.
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes

    def to_bytes(self) -> bytes:
        return struct.pack(
            "<HHIHH16s20s",
            self.version,
            self.attestation_key_type,
            self.tee_type,
            self.qe_svn,
            self.pce_svn,
            self.qe_vendor_id,
            self.user_data,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "attestation_key_type": self.attestation_key_type,
            "tee_type": self.tee_type,
            "qe_svn": self.qe_svn,
            "pce_svn": self.pce_svn,
            "qe_vendor_id": self.qe_vendor_id.hex(),
            "user_data": self.user_data.hex(),
        }


_ENCLAVE_FMT = "<16sI12s16s16s32s32s32s32s64sHHH42s16s64s"
assert struct.calcsize(_ENCLAVE_FMT) == ENCLAVE_REPORT_SIZE


@dataclass(frozen=True, slots=True)
class EnclaveReport:
    """An SGX REPORT body (384 bytes): the application enclave's, or the quoting enclave's."""

    cpu_svn: bytes
    misc_select: int
    reserved1: bytes
    isv_ext_prod_id: bytes
    #: 16 bytes: flags (u64 LE: bit 0 INIT, 1 DEBUG, 2 MODE64BIT, 4 PROVISIONKEY, 7 KSS), XFRM.
    attributes: bytes
    mr_enclave: bytes
    reserved2: bytes
    mr_signer: bytes
    reserved3: bytes
    config_id: bytes
    isv_prod_id: int
    isv_svn: int
    config_svn: int
    reserved4: bytes
    isv_family_id: bytes
    report_data: bytes

    @classmethod
    def from_bytes(cls, raw: bytes) -> EnclaveReport:
        return cls(*struct.unpack(_ENCLAVE_FMT, raw))

    def to_bytes(self) -> bytes:
        return struct.pack(
            _ENCLAVE_FMT,
            self.cpu_svn,
            self.misc_select,
            self.reserved1,
            self.isv_ext_prod_id,
            self.attributes,
            self.mr_enclave,
            self.reserved2,
            self.mr_signer,
            self.reserved3,
            self.config_id,
            self.isv_prod_id,
            self.isv_svn,
            self.config_svn,
            self.reserved4,
            self.isv_family_id,
            self.report_data,
        )

    @property
    def debug(self) -> bool:
        return bool(self.attributes[0] & 0x02)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpu_svn": self.cpu_svn.hex(),
            "misc_select": self.misc_select,
            "isv_ext_prod_id": self.isv_ext_prod_id.hex(),
            "attributes": self.attributes.hex(),
            "debug": self.debug,
            "mr_enclave": self.mr_enclave.hex(),
            "mr_signer": self.mr_signer.hex(),
            "config_id": self.config_id.hex(),
            "isv_prod_id": self.isv_prod_id,
            "isv_svn": self.isv_svn,
            "config_svn": self.config_svn,
            "isv_family_id": self.isv_family_id.hex(),
            "report_data": self.report_data.hex(),
        }


_TD10_FMT = "<16s48s48s8s8s8s48s48s48s48s48s48s48s48s64s"
assert struct.calcsize(_TD10_FMT) == TD_REPORT10_SIZE


@dataclass(frozen=True, slots=True)
class TdReport:
    """A TD report body: TDX 1.0 (584 bytes) or, with the last two fields, TDX 1.5 (648)."""

    #: TEE_TCB_SVN: [0] TDX module SVN, [1] TDX module major version, [2] late microcode...
    tee_tcb_svn: bytes
    mr_seam: bytes
    mr_signer_seam: bytes
    seam_attributes: bytes
    #: 8 bytes, u64 LE: bit 0 DEBUG (TUD), 28 SEPT_VE_DISABLE, 30 PKS, 63 PERFMON.
    td_attributes: bytes
    xfam: bytes
    mr_td: bytes
    mr_config_id: bytes
    mr_owner: bytes
    mr_owner_config: bytes
    rtmr0: bytes
    rtmr1: bytes
    rtmr2: bytes
    rtmr3: bytes
    report_data: bytes
    tee_tcb_svn2: bytes | None = None
    mr_servicetd: bytes | None = None

    @classmethod
    def from_bytes(cls, raw: bytes) -> TdReport:
        fields = struct.unpack(_TD10_FMT, raw[:TD_REPORT10_SIZE])
        if len(raw) == TD_REPORT15_SIZE:
            return cls(*fields, raw[584:600], raw[600:648])
        return cls(*fields)

    def to_bytes(self) -> bytes:
        out = struct.pack(
            _TD10_FMT,
            self.tee_tcb_svn,
            self.mr_seam,
            self.mr_signer_seam,
            self.seam_attributes,
            self.td_attributes,
            self.xfam,
            self.mr_td,
            self.mr_config_id,
            self.mr_owner,
            self.mr_owner_config,
            self.rtmr0,
            self.rtmr1,
            self.rtmr2,
            self.rtmr3,
            self.report_data,
        )
        if self.tee_tcb_svn2 is not None or self.mr_servicetd is not None:
            out += struct.pack("<16s48s", self.tee_tcb_svn2 or b"", self.mr_servicetd or b"")
        return out

    @property
    def debug(self) -> bool:
        return bool(self.td_attributes[0] & 0x01)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "tee_tcb_svn": self.tee_tcb_svn.hex(),
            "mr_seam": self.mr_seam.hex(),
            "mr_signer_seam": self.mr_signer_seam.hex(),
            "seam_attributes": self.seam_attributes.hex(),
            "td_attributes": self.td_attributes.hex(),
            "debug": self.debug,
            "xfam": self.xfam.hex(),
            "mr_td": self.mr_td.hex(),
            "mr_config_id": self.mr_config_id.hex(),
            "mr_owner": self.mr_owner.hex(),
            "mr_owner_config": self.mr_owner_config.hex(),
            "rtmr0": self.rtmr0.hex(),
            "rtmr1": self.rtmr1.hex(),
            "rtmr2": self.rtmr2.hex(),
            "rtmr3": self.rtmr3.hex(),
            "report_data": self.report_data.hex(),
        }
        if self.tee_tcb_svn2 is not None:
            d["tee_tcb_svn2"] = _hex(self.tee_tcb_svn2)
            d["mr_servicetd"] = _hex(self.mr_servicetd)
        return d


@dataclass(frozen=True, slots=True)
class Quote:
    """A parsed SGX (v3, v4, v5) or TDX (v4, v5) DCAP quote with ECDSA P-256 signature data."""

    header: QuoteHeader
    #: BODY_SGX_ENCLAVE, BODY_TD_REPORT10 or BODY_TD_REPORT15 (v5 carries it; v3/v4 imply it).
    body_type: int
    body: EnclaveReport | TdReport
    signature: bytes
    attestation_key: bytes
    qe_report: EnclaveReport
    qe_report_signature: bytes
    qe_auth_data: bytes
    #: The innermost certification data (inside type 6 for v4/v5): its type and raw bytes.
    certification_data_type: int
    certification_data: bytes
    #: For type 5: the DER of each PEM certificate, leaf first (PCK, PCK CA, Root CA).
    pck_chain: tuple[bytes, ...] = ()
    #: Trailing zero bytes after the signature data (zero-padded quote buffers).
    padding: int = 0

    @property
    def version(self) -> int:
        return self.header.version

    @property
    def tee(self) -> Literal["tdx", "sgx"]:
        return "tdx" if isinstance(self.body, TdReport) else "sgx"

    @property
    def structure(self) -> str:
        """How errors name this quote: "TDX quote v4", "SGX quote v3"..."""
        return f"{self.tee.upper()} quote v{self.version}"

    def signed_bytes(self) -> bytes:
        """The bytes the attestation key signs: header (+ v5 body descriptor) + body."""
        body = self.body.to_bytes()
        if self.header.version >= 5:
            return self.header.to_bytes() + struct.pack("<HI", self.body_type, len(body)) + body
        return self.header.to_bytes() + body

    def _qe_report_certification_data(self) -> bytes:
        return (
            self.qe_report.to_bytes()
            + self.qe_report_signature
            + struct.pack("<H", len(self.qe_auth_data))
            + self.qe_auth_data
            + struct.pack("<HI", self.certification_data_type, len(self.certification_data))
            + self.certification_data
        )

    def to_bytes(self) -> bytes:
        """The exact inverse of :func:`parse_quote`."""
        inner = self._qe_report_certification_data()
        if self.header.version >= 4:
            inner = struct.pack("<HI", CERT_DATA_QE_REPORT, len(inner)) + inner
        sig_data = self.signature + self.attestation_key + inner
        return (
            self.signed_bytes() + struct.pack("<I", len(sig_data)) + sig_data + bytes(self.padding)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "tee": self.tee,
            "header": self.header.to_dict(),
            "body_type": self.body_type,
            "body": self.body.to_dict(),
            "signature": self.signature.hex(),
            "attestation_key": self.attestation_key.hex(),
            "qe_report": self.qe_report.to_dict(),
            "qe_report_signature": self.qe_report_signature.hex(),
            "qe_auth_data": self.qe_auth_data.hex(),
            "certification_data_type": self.certification_data_type,
            "pck_chain_der": [c.hex() for c in self.pck_chain],
        }


# --------------------------------------------------------------------------- the parser


class _Reader:
    """Reads little-endian fields from the quote, naming the field and offset on failure."""

    __slots__ = ("buf", "end", "pos", "structure")

    def __init__(self, buf: bytes, structure: str) -> None:
        self.buf = buf
        self.pos = 0
        self.end = len(buf)
        self.structure = structure

    def fail(self, field: str, reason: str, offset: int | None = None) -> EvidenceParseError:
        return EvidenceParseError(
            self.structure, field, reason, offset=self.pos if offset is None else offset
        )

    def take(self, n: int, field: str) -> bytes:
        if self.pos + n > self.end:
            have = self.end - self.pos
            raise self.fail(field, f"needs {n} bytes, only {have} left (truncated)")
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def u16(self, field: str) -> int:
        return int.from_bytes(self.take(2, field), "little")

    def u32(self, field: str) -> int:
        return int.from_bytes(self.take(4, field), "little")


def parse_quote(raw: bytes) -> Quote:
    """Parse an SGX v3/v4/v5 or TDX v4/v5 DCAP quote; raise EvidenceParseError if malformed.

    Parsing makes no trust decisions: nothing here is verified, and the header's SVNs are
    reported as they are. Trailing zero bytes (padded buffers) are accepted; anything else
    after the signature data is not.
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise TypeError(f"parse_quote needs bytes, not {type(raw).__name__}")
    raw = bytes(raw)
    r = _Reader(raw, "Intel quote")
    if len(raw) > MAX_QUOTE_SIZE:
        raise r.fail("length", f"{len(raw)} bytes is more than the {MAX_QUOTE_SIZE} accepted", 0)

    version = r.u16("header.version")
    if version not in (3, 4, 5):
        raise r.fail("header.version", f"unsupported quote version {version} (3, 4, 5)", 0)
    key_type = r.u16("header.attestation_key_type")
    tee_type = r.u32("header.tee_type")
    qe_svn = r.u16("header.qe_svn")
    pce_svn = r.u16("header.pce_svn")
    header = QuoteHeader(
        version,
        key_type,
        tee_type,
        qe_svn,
        pce_svn,
        r.take(16, "header.qe_vendor_id"),
        r.take(20, "header.user_data"),
    )
    if tee_type not in (TEE_TYPE_SGX, TEE_TYPE_TDX) or (version == 3 and tee_type != TEE_TYPE_SGX):
        raise r.fail("header.tee_type", f"unsupported TEE type {tee_type:#x} for v{version}", 4)
    r.structure = f"{'TDX' if tee_type == TEE_TYPE_TDX else 'SGX'} quote v{version}"
    if key_type != ATTESTATION_KEY_ECDSA_P256:
        raise r.fail(
            "header.attestation_key_type",
            f"unsupported attestation key type {key_type} (2 = ECDSA P-256)",
            2,
        )

    if version == 5:
        at = r.pos
        body_type = r.u16("body.type")
        body_size = r.u32("body.size")
        if body_type not in _BODY_SIZES:
            raise r.fail("body.type", f"unknown body type {body_type} (1, 2, 3)", at)
        if (body_type == BODY_SGX_ENCLAVE) != (tee_type == TEE_TYPE_SGX):
            raise r.fail("body.type", f"body type {body_type} with TEE type {tee_type:#x}", at)
        if body_size != _BODY_SIZES[body_type]:
            raise r.fail(
                "body.size",
                f"{body_size} bytes for body type {body_type}, expected {_BODY_SIZES[body_type]}",
                at + 2,
            )
    else:
        body_type = BODY_TD_REPORT10 if tee_type == TEE_TYPE_TDX else BODY_SGX_ENCLAVE
    body_raw = r.take(_BODY_SIZES[body_type], "body")
    body: EnclaveReport | TdReport = (
        EnclaveReport.from_bytes(body_raw)
        if body_type == BODY_SGX_ENCLAVE
        else TdReport.from_bytes(body_raw)
    )

    sig_len_at = r.pos
    sig_len = r.u32("signature_data_length")
    if sig_len > r.end - r.pos:
        raise r.fail(
            "signature_data_length",
            f"{sig_len} bytes but only {r.end - r.pos} follow (truncated)",
            sig_len_at,
        )
    sig_end = r.pos + sig_len
    signature = r.take(SIGNATURE_SIZE, "signature_data.quote_signature")
    attestation_key = r.take(ATTESTATION_KEY_SIZE, "signature_data.attestation_key")
    r.end = sig_end  # everything below lies inside the signature data
    prefix = "signature_data"
    if version >= 4:
        at = r.pos
        outer_type = r.u16("signature_data.certification_data.type")
        if outer_type != CERT_DATA_QE_REPORT:
            raise r.fail(
                "signature_data.certification_data.type",
                f"type {outer_type}; a v{version} quote needs type 6 "
                "(QE report certification data)",
                at,
            )
        outer_size = r.u32("signature_data.certification_data.size")
        if r.pos + outer_size != sig_end:
            raise r.fail(
                "signature_data.certification_data.size",
                f"{outer_size} bytes does not fill the {sig_end - r.pos} left in the "
                "signature data",
                at + 2,
            )
        prefix = "qe_report_certification_data"
    qe_report = EnclaveReport.from_bytes(r.take(ENCLAVE_REPORT_SIZE, f"{prefix}.qe_report"))
    qe_report_signature = r.take(SIGNATURE_SIZE, f"{prefix}.qe_report_signature")
    auth_len = r.u16(f"{prefix}.qe_auth_data.size")
    qe_auth_data = r.take(auth_len, f"{prefix}.qe_auth_data")
    at = r.pos
    cd_type = r.u16(f"{prefix}.certification_data.type")
    if cd_type not in CERT_DATA_TYPES or cd_type == CERT_DATA_QE_REPORT:
        raise r.fail(f"{prefix}.certification_data.type", f"unknown type {cd_type}", at)
    cd_size = r.u32(f"{prefix}.certification_data.size")
    if r.pos + cd_size != sig_end:
        raise r.fail(
            f"{prefix}.certification_data.size",
            f"{cd_size} bytes does not fill the {sig_end - r.pos} left in the signature data",
            at + 2,
        )
    cd_at = r.pos
    cd = r.take(cd_size, f"{prefix}.certification_data")
    chain = _split_pem_chain(cd, r, f"{prefix}.certification_data", cd_at) if cd_type == 5 else ()

    tail = raw[sig_end:]
    if tail.count(0) != len(tail):
        first = sig_end + next(i for i, b in enumerate(tail) if b)
        raise r.fail("trailing data", "non-zero bytes after the signature data", first)
    return Quote(
        header=header,
        body_type=body_type,
        body=body,
        signature=signature,
        attestation_key=attestation_key,
        qe_report=qe_report,
        qe_report_signature=qe_report_signature,
        qe_auth_data=qe_auth_data,
        certification_data_type=cd_type,
        certification_data=cd,
        pck_chain=chain,
        padding=len(tail),
    )


_BEGIN = b"-----BEGIN CERTIFICATE-----"
_END = b"-----END CERTIFICATE-----"


def _split_pem_chain(data: bytes, r: _Reader, field: str, offset: int) -> tuple[bytes, ...]:
    """Type 5 data: PEM certificates, leaf first, maybe followed by NULs (C strings)."""
    text = data.rstrip(b"\x00")
    out: list[bytes] = []
    pos = 0
    while True:
        begin = text.find(_BEGIN, pos)
        if begin < 0:
            break
        if text[pos:begin].strip():
            raise r.fail(field, "bytes that are not PEM between certificates", offset + pos)
        end = text.find(_END, begin)
        if end < 0:
            raise r.fail(field, f"certificate {len(out)} has no END line", offset + begin)
        b64 = b"".join(text[begin + len(_BEGIN) : end].split())
        try:
            out.append(binascii.a2b_base64(b64, strict_mode=True))
        except binascii.Error as e:
            raise r.fail(
                field, f"certificate {len(out)} is not base64: {e}", offset + begin
            ) from None
        pos = end + len(_END)
        if len(out) > _MAX_PCK_CHAIN_CERTS:
            raise r.fail(field, f"more than {_MAX_PCK_CHAIN_CERTS} certificates", offset)
    if text[pos:].strip():
        raise r.fail(field, "bytes that are not PEM after the certificates", offset + pos)
    if not out:
        raise r.fail(field, "no PEM certificate in the PCK certificate chain", offset)
    return tuple(out)
