"""A fake Intel DCAP PKI for cases no public sample covers (go-sev-guest's fake_certs idea).

Test-only keys mint a root, a PCK Platform CA, a PCK certificate carrying a real SGX
extension, a TCB Signing certificate and both CRLs; :func:`make_quote` builds and signs SGX
v3 / TDX v4 / TDX v5 quotes with the library's own serializer, and :func:`make_collateral`
signs TCB info and QE identity JSON. Verification then runs exactly as for Intel's data,
with ``root=pki.root``. The tests at the bottom check the fakes themselves verify.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from motte.attest.intel import (
    Collateral,
    EnclaveReport,
    IntelVerifyOptions,
    Quote,
    QuoteHeader,
    TdReport,
    parse_collateral,
    parse_quote,
    verify_quote,
)

NOW = datetime(2025, 1, 15, tzinfo=UTC)
ISSUE = "2025-01-01T00:00:00Z"
NEXT_UPDATE = "2025-02-01T00:00:00Z"
FMSPC = bytes.fromhex("00906ed50000")
#: The platform the fake PCK certificate describes.
PLATFORM_SGX = (3, 3, 2, 2, 4, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0)
PLATFORM_PCESVN = 13
#: TEE_TCB_SVN of the fake TD: module SVN 5, major version 0 (TDX 1.0), microcode 3.
TEE_TCB_SVN = bytes([5, 0, 3] + [0] * 13)
TD_QE_MRSIGNER = bytes.fromhex("dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5")
SGX_QE_MRSIGNER = bytes.fromhex("8c4f5775d796503e96137f77c68a829a0056ac8ded70140b081b094490c57bff")
QE_ATTRIBUTES = bytes.fromhex("11000000000000000000000000000000")
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")


# ------------------------------------------------------------------- DER for the SGX extension


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _len(len(body)) + body


def der_oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return tlv(0x06, bytes(out))


def der_int(n: int, tag: int = 0x02) -> bytes:
    body = n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big")
    return tlv(tag, body)


def seq(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


SGX = "1.2.840.113741.1.13.1"


def sgx_extension(
    comps: tuple[int, ...] = PLATFORM_SGX,
    pcesvn: int = PLATFORM_PCESVN,
    *,
    fmspc: bytes = FMSPC,
    pce_id: bytes = b"\x00\x00",
    sgx_type: int = 0,
    configuration: tuple[bool, bool, bool] | None = None,
) -> bytes:
    tcb = [seq(der_oid(f"{SGX}.2.{i + 1}"), der_int(v)) for i, v in enumerate(comps)]
    tcb.append(seq(der_oid(f"{SGX}.2.17"), der_int(pcesvn)))
    tcb.append(seq(der_oid(f"{SGX}.2.18"), tlv(0x04, bytes(c & 0xFF for c in comps))))
    items = [
        seq(der_oid(f"{SGX}.1"), tlv(0x04, bytes(range(16)))),
        seq(der_oid(f"{SGX}.2"), seq(*tcb)),
        seq(der_oid(f"{SGX}.3"), tlv(0x04, pce_id)),
        seq(der_oid(f"{SGX}.4"), tlv(0x04, fmspc)),
        seq(der_oid(f"{SGX}.5"), der_int(sgx_type, 0x0A)),
    ]
    if configuration is not None:
        flags = [
            seq(der_oid(f"{SGX}.7.{i + 1}"), tlv(0x01, b"\xff" if f else b"\x00"))
            for i, f in enumerate(configuration)
        ]
        items.append(seq(der_oid(f"{SGX}.6"), tlv(0x04, bytes(16))))
        items.append(seq(der_oid(f"{SGX}.7"), seq(*flags)))
    return seq(*items)


# --------------------------------------------------------------------------- the PKI


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "motte tests"),
        ]
    )


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    serial: int,
    extra: x509.ExtensionType | None = None,
    not_before: datetime = datetime(2020, 1, 1, tzinfo=UTC),
    not_after: datetime = datetime(2040, 1, 1, tzinfo=UTC),
) -> x509.Certificate:
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if extra is not None:
        b = b.add_extension(extra, critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def raw_sig(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """An Intel-style r || s signature."""
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(Encoding.PEM) for c in certs)


@dataclass
class FakePki:
    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    ca_key: ec.EllipticCurvePrivateKey
    ca: x509.Certificate
    pck_key: ec.EllipticCurvePrivateKey
    pck: x509.Certificate
    signer_key: ec.EllipticCurvePrivateKey
    signer: x509.Certificate
    extension: bytes = field(repr=False, default=b"")

    def crl(
        self,
        issuer: str,
        key: ec.EllipticCurvePrivateKey,
        revoked: tuple[int, ...] = (),
        *,
        this_update: datetime = datetime(2025, 1, 1, tzinfo=UTC),
        next_update: datetime = datetime(2025, 2, 1, tzinfo=UTC),
    ) -> bytes:
        b = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(_name(issuer))
            .last_update(this_update)
            .next_update(next_update)
        )
        for serial in revoked:
            b = b.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(datetime(2024, 6, 1, tzinfo=UTC))
                .build()
            )
        return b.sign(key, hashes.SHA256()).public_bytes(Encoding.DER)

    def root_crl(self, revoked: tuple[int, ...] = (), **kw: Any) -> bytes:
        return self.crl("Test SGX Root CA", self.root_key, revoked, **kw)

    def pck_crl(self, revoked: tuple[int, ...] = (), **kw: Any) -> bytes:
        return self.crl("Test SGX PCK Platform CA", self.ca_key, revoked, **kw)


def make_pki(
    extension: bytes | None = None, *, signer_cn: str = "Intel SGX TCB Signing"
) -> FakePki:
    """A fresh PKI; the PCK certificate carries ``extension`` (default: the fake platform)."""
    ext = sgx_extension() if extension is None else extension
    root_key = ec.generate_private_key(ec.SECP256R1())
    ca_key = ec.generate_private_key(ec.SECP256R1())
    pck_key = ec.generate_private_key(ec.SECP256R1())
    signer_key = ec.generate_private_key(ec.SECP256R1())
    root = _cert("Test SGX Root CA", root_key, "Test SGX Root CA", root_key, ca=True, serial=1)
    ca = _cert("Test SGX PCK Platform CA", ca_key, "Test SGX Root CA", root_key, ca=True, serial=2)
    pck = _cert(
        "Intel SGX PCK Certificate",
        pck_key,
        "Test SGX PCK Platform CA",
        ca_key,
        ca=False,
        serial=0x1234,
        extra=x509.UnrecognizedExtension(x509.ObjectIdentifier(SGX), ext),
    )
    signer = _cert(signer_cn, signer_key, "Test SGX Root CA", root_key, ca=False, serial=3)
    return FakePki(root_key, root, ca_key, ca, pck_key, pck, signer_key, signer, ext)


@cache
def default_pki() -> FakePki:
    return make_pki()


# --------------------------------------------------------------------------- quotes


def td_report(**fields: Any) -> TdReport:
    values: dict[str, Any] = {
        "tee_tcb_svn": TEE_TCB_SVN,
        "mr_seam": b"\x5b" * 48,
        "mr_signer_seam": bytes(48),
        "seam_attributes": bytes(8),
        "td_attributes": bytes.fromhex("0000001000000000"),
        "xfam": bytes.fromhex("e718060000000000"),
        "mr_td": b"\x01" * 48,
        "mr_config_id": bytes(48),
        "mr_owner": bytes(48),
        "mr_owner_config": bytes(48),
        "rtmr0": b"\x10" * 48,
        "rtmr1": b"\x11" * 48,
        "rtmr2": b"\x12" * 48,
        "rtmr3": bytes(48),
        "report_data": b"\x42" * 64,
    }
    values.update(fields)
    return TdReport(**values)


def enclave_report(**fields: Any) -> EnclaveReport:
    values: dict[str, Any] = {
        "cpu_svn": bytes(PLATFORM_SGX),
        "misc_select": 0,
        "reserved1": bytes(12),
        "isv_ext_prod_id": bytes(16),
        "attributes": bytes.fromhex("0500000000000000e700000000000000"),
        "mr_enclave": b"\xee" * 32,
        "reserved2": bytes(32),
        "mr_signer": b"\x5e" * 32,
        "reserved3": bytes(32),
        "config_id": bytes(64),
        "isv_prod_id": 7,
        "isv_svn": 3,
        "config_svn": 0,
        "reserved4": bytes(42),
        "isv_family_id": bytes(16),
        "report_data": b"\x24" * 64,
    }
    values.update(fields)
    return EnclaveReport(**values)


def make_quote(
    pki: FakePki | None = None,
    *,
    tee: str = "tdx",
    version: int | None = None,
    body: TdReport | EnclaveReport | None = None,
    qe_isv_svn: int = 8,
    qe_mr_signer: bytes | None = None,
    qe_isv_prod_id: int | None = None,
    qe_auth_data: bytes = bytes(range(32)),
    chain: bytes | None = None,
) -> Quote:
    """A signed quote: SGX defaults to v3 (type 5 cert data), TDX to v4 (type 6 wrapping 5)."""
    pki = pki or default_pki()
    if body is None:
        body = td_report() if tee == "tdx" else enclave_report()
    if version is None:  # TD report 1.5 only exists in v5 quotes
        td15 = isinstance(body, TdReport) and body.tee_tcb_svn2 is not None
        version = 5 if td15 else 4 if tee == "tdx" else 3
    body_type = 1  # SGX enclave report; TD report 1.0 = 2, 1.5 = 3
    if isinstance(body, TdReport):
        body_type = 3 if body.tee_tcb_svn2 is not None else 2
    header = QuoteHeader(
        version, 2, 0x81 if tee == "tdx" else 0, 0, 0, INTEL_QE_VENDOR_ID, bytes(20)
    )
    ak_key = ec.generate_private_key(ec.SECP256R1())
    ak = ak_key.public_key().public_bytes(Encoding.X962, _uncompressed())[1:]
    qe_report = enclave_report(
        mr_signer=qe_mr_signer or (TD_QE_MRSIGNER if tee == "tdx" else SGX_QE_MRSIGNER),
        isv_prod_id=qe_isv_prod_id if qe_isv_prod_id is not None else (2 if tee == "tdx" else 1),
        isv_svn=qe_isv_svn,
        attributes=QE_ATTRIBUTES,
        mr_enclave=b"\xe5" * 32,
        report_data=hashlib.sha256(ak + qe_auth_data).digest() + bytes(32),
    )
    quote = Quote(
        header=header,
        body_type=body_type,
        body=body,
        signature=bytes(64),
        attestation_key=ak,
        qe_report=qe_report,
        qe_report_signature=raw_sig(pki.pck_key, qe_report.to_bytes()),
        qe_auth_data=qe_auth_data,
        certification_data_type=5,
        certification_data=chain if chain is not None else pem(pki.pck, pki.ca, pki.root),
        pck_chain=(),
    )
    quote = replace(quote, signature=raw_sig(ak_key, quote.signed_bytes()))
    # Round-trip through bytes so the tests see what a verifier would parse.
    return parse_quote(quote.to_bytes())


def _uncompressed() -> Any:
    from cryptography.hazmat.primitives.serialization import PublicFormat

    return PublicFormat.UncompressedPoint


def resign(quote: Quote, pki: FakePki | None = None) -> Quote:
    """Re-sign a modified quote: a fresh attestation key, QE report and signatures."""
    pki = pki or default_pki()
    ak_key = ec.generate_private_key(ec.SECP256R1())
    ak = ak_key.public_key().public_bytes(Encoding.X962, _uncompressed())[1:]
    qe_report = replace(
        quote.qe_report,
        report_data=hashlib.sha256(ak + quote.qe_auth_data).digest() + bytes(32),
    )
    quote = replace(
        quote,
        attestation_key=ak,
        qe_report=qe_report,
        qe_report_signature=raw_sig(pki.pck_key, qe_report.to_bytes()),
    )
    return replace(quote, signature=raw_sig(ak_key, quote.signed_bytes()))


# --------------------------------------------------------------------------- collateral


def level(
    sgx: tuple[int, ...] = PLATFORM_SGX,
    pcesvn: int = PLATFORM_PCESVN,
    tdx: tuple[int, ...] | None = tuple(TEE_TCB_SVN),
    status: str = "UpToDate",
    date: str = "2024-03-13T00:00:00Z",
    advisories: tuple[str, ...] = (),
) -> dict[str, Any]:
    tcb: dict[str, Any] = {"sgxtcbcomponents": [{"svn": s} for s in sgx], "pcesvn": pcesvn}
    if tdx is not None:
        tcb["tdxtcbcomponents"] = [{"svn": s} for s in tdx]
    out: dict[str, Any] = {"tcb": tcb, "tcbDate": date, "tcbStatus": status}
    if advisories:
        out["advisoryIDs"] = list(advisories)
    return out


def id_level(isvsvn: int, status: str = "UpToDate", date: str = "2024-03-13T00:00:00Z",
             advisories: tuple[str, ...] = ()) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {"tcb": {"isvsvn": isvsvn}, "tcbDate": date, "tcbStatus": status}
    if advisories:
        out["advisoryIDs"] = list(advisories)
    return out


def tcb_info_doc(
    *,
    tee: str = "tdx",
    levels: list[dict[str, Any]] | None = None,
    fmspc: bytes = FMSPC,
    issue: str = ISSUE,
    next_update: str = NEXT_UPDATE,
    module_identities: list[dict[str, Any]] | None = None,
    tdx_module_mrsigner: bytes = bytes(48),
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": "TDX" if tee == "tdx" else "SGX",
        "version": 3,
        "issueDate": issue,
        "nextUpdate": next_update,
        "fmspc": fmspc.hex().upper(),
        "pceId": "0000",
        "tcbType": 0,
        "tcbEvaluationDataNumber": 17,
    }
    if tee == "tdx":
        doc["tdxModule"] = {
            "mrsigner": tdx_module_mrsigner.hex().upper(),
            "attributes": "0000000000000000",
            "attributesMask": "FFFFFFFFFFFFFFFF",
        }
        if module_identities is not None:
            doc["tdxModuleIdentities"] = module_identities
    doc["tcbLevels"] = levels if levels is not None else [level(tdx=_tdx(tee))]
    return doc


def _tdx(tee: str) -> tuple[int, ...] | None:
    return tuple(TEE_TCB_SVN) if tee == "tdx" else None


def module_identity(major: int, levels: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": f"TDX_{major:02X}",
        "mrsigner": "00" * 48,
        "attributes": "0000000000000000",
        "attributesMask": "FFFFFFFFFFFFFFFF",
        "tcbLevels": levels,
    }


def qe_identity_doc(
    *,
    tee: str = "tdx",
    levels: list[dict[str, Any]] | None = None,
    issue: str = ISSUE,
    next_update: str = NEXT_UPDATE,
) -> dict[str, Any]:
    return {
        "id": "TD_QE" if tee == "tdx" else "QE",
        "version": 2,
        "issueDate": issue,
        "nextUpdate": next_update,
        "tcbEvaluationDataNumber": 17,
        "miscselect": "00000000",
        "miscselectMask": "FFFFFFFF",
        "attributes": "11000000000000000000000000000000",
        "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
        "mrsigner": (TD_QE_MRSIGNER if tee == "tdx" else SGX_QE_MRSIGNER).hex().upper(),
        "isvprodid": 2 if tee == "tdx" else 1,
        "tcbLevels": levels if levels is not None else [id_level(8)],
    }


def collateral_doc(
    pki: FakePki | None = None,
    *,
    tee: str = "tdx",
    tcb_info: dict[str, Any] | None = None,
    qe_identity: dict[str, Any] | None = None,
    pck_crl: bytes | None = None,
    root_crl: bytes | None = None,
) -> dict[str, Any]:
    """The dcap-qvl collateral document, signed by the fake TCB Signing key."""
    pki = pki or default_pki()
    tcb_text = json.dumps(tcb_info or tcb_info_doc(tee=tee), separators=(",", ":"))
    qe_text = json.dumps(qe_identity or qe_identity_doc(tee=tee), separators=(",", ":"))
    return {
        "pck_crl_issuer_chain": pem(pki.ca, pki.root).decode(),
        "root_ca_crl": (root_crl if root_crl is not None else pki.root_crl()).hex(),
        "pck_crl": (pck_crl if pck_crl is not None else pki.pck_crl()).hex(),
        "tcb_info_issuer_chain": pem(pki.signer, pki.root).decode(),
        "tcb_info": tcb_text,
        "tcb_info_signature": raw_sig(pki.signer_key, tcb_text.encode()).hex(),
        "qe_identity_issuer_chain": pem(pki.signer, pki.root).decode(),
        "qe_identity": qe_text,
        "qe_identity_signature": raw_sig(pki.signer_key, qe_text.encode()).hex(),
    }


def make_collateral(pki: FakePki | None = None, **kw: Any) -> Collateral:
    return parse_collateral(json.dumps(collateral_doc(pki, **kw)).encode())


def verify(quote: Quote, collateral: Collateral, pki: FakePki | None = None, **kw: Any) -> Any:
    pki = pki or default_pki()
    kw.setdefault("now", NOW)
    return verify_quote(quote, collateral, IntelVerifyOptions(root=pki.root, **kw))


# --------------------------------------------------------------------------- the fakes verify


def test_fake_tdx_v4_quote_verifies_up_to_date() -> None:
    q = make_quote(tee="tdx")
    assert q.version == 4 and q.certification_data_type == 5
    v = verify(q, make_collateral(tee="tdx"))
    assert (v.tee, v.tcb_status, v.qe_tcb_status, v.tdx_module_tcb_status) == (
        "tdx",
        "UpToDate",
        "UpToDate",
        "UpToDate",
    )
    assert v.mr_td == b"\x01" * 48 and v.rtmr1 == b"\x11" * 48 and v.debug is False
    assert v.fmspc == FMSPC.hex() and v.pck.tcb_components == PLATFORM_SGX


def test_fake_sgx_v3_quote_with_type5_cert_data_verifies() -> None:
    """v3 carries the QE report and the type-5 PCK chain directly (no type-6 wrapper)."""
    q = make_quote(tee="sgx")
    raw = q.to_bytes()
    # After header+body (0x1B0), u32 length, 64 signature, 64 key, 384 QE report, 64 sig,
    # u16 auth size + 32 bytes: the certification data type is 5.
    at = 0x1B0 + 4 + 128 + 384 + 64 + 2 + 32
    assert int.from_bytes(raw[at : at + 2], "little") == 5
    v = verify(q, make_collateral(tee="sgx"))
    assert (v.tee, v.tcb_status, v.mr_enclave, v.isv_prod_id) == (
        "sgx",
        "UpToDate",
        b"\xee" * 32,
        7,
    )
    assert v.mr_td is None


def test_fake_tdx_v4_wraps_type5_in_type6() -> None:
    raw = make_quote(tee="tdx").to_bytes()
    at = 0x278 + 4 + 128
    assert int.from_bytes(raw[at : at + 2], "little") == 6
    inner = at + 6 + 384 + 64 + 2 + 32
    assert int.from_bytes(raw[inner : inner + 2], "little") == 5


def test_fake_tdx_v5_td15_and_sgx_v5_verify() -> None:
    body = td_report(tee_tcb_svn2=TEE_TCB_SVN, mr_servicetd=bytes(48))
    q = make_quote(tee="tdx", version=5, body=body)
    assert (q.version, q.body_type) == (5, 3)
    assert verify(q, make_collateral(tee="tdx")).tcb_status == "UpToDate"
    s = make_quote(tee="sgx", version=5)
    assert (s.version, s.body_type) == (5, 1)
    assert verify(s, make_collateral(tee="sgx")).tcb_status == "UpToDate"


def test_pck_extension_configuration_flags_parse() -> None:
    from motte.attest.intel import parse_pck_extensions

    pki = make_pki(sgx_extension(configuration=(True, False, True), sgx_type=1))
    ext = parse_pck_extensions(pki.pck)
    assert (ext.dynamic_platform, ext.cached_keys, ext.smt_enabled) == (True, False, True)
    assert ext.sgx_type == 1 and ext.platform_instance_id == bytes(16)
    assert ext.ppid == bytes(range(16)) and ext.cpusvn == bytes(PLATFORM_SGX)
