"""A fake AMD PKI for cases no public sample covers: v5 and Turin reports, VLEK variants,
revoked ASKs, wrong roots. Test-only keys mint a whole ARK -> ASK -> VCEK chain (as
go-sev-guest's testing/fake_certs.go does) with the real extension encodings, and sign
reports with the VCEK key. RSA-2048 stands in for AMD's RSA-4096 to keep key generation fast;
the signature scheme (RSASSA-PSS, SHA-384, salt 48) is AMD's.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from motte.attest.snp import AmdChain, AmdRoots, Report, encode_tcb
from motte.attest.snp._abi import PRODUCT_TCB_LAYOUT, SIGNED_SIZE

NOT_BEFORE = datetime(2024, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2034, 1, 1, tzinfo=UTC)
AT = datetime(2025, 6, 1, tzinfo=UTC)
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
AMD = "1.3.6.1.4.1.3704.1"


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Advanced Micro Devices"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


@functools.cache
def rsa_key(label: str) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def ec_key(label: str) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def _ca_cert(
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer: str,
    issuer_key: rsa.RSAPrivateKey,
    serial: int,
    not_before: datetime = NOT_BEFORE,
    not_after: datetime = NOT_AFTER,
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA384(), rsa_padding=PSS)
    )


def der_int(n: int) -> bytes:
    body = n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big")
    return bytes([0x02, len(body)]) + body


def ia5(text: str) -> bytes:
    return bytes([0x16, len(text)]) + text.encode()


@dataclass(frozen=True)
class FakeAmd:
    product: str
    key_type: str
    ark: x509.Certificate
    ask: x509.Certificate
    ark_key: rsa.RSAPrivateKey
    ask_key: rsa.RSAPrivateKey

    @property
    def roots(self) -> AmdRoots:
        return AmdRoots(
            {
                (self.product, self.key_type): AmdChain(
                    self.product, self.key_type, self.ark, self.ask
                )
            }
        )

    def key_cert(
        self,
        *,
        tcb: dict[str, int],
        hwid: bytes | None = None,
        product_name: str | None = None,
        key: ec.EllipticCurvePrivateKey | None = None,
        not_before: datetime = NOT_BEFORE,
        not_after: datetime = NOT_AFTER,
        signer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
        csp_id: str | None = "CN=cloud.example",
    ) -> x509.Certificate:
        """A VCEK/VLEK with AMD's extensions for ``tcb`` (and ``hwid`` for VCEKs)."""
        key = key or ec_key(f"{self.product}-{self.key_type}")
        issuer_cert, issuer_key = signer or (self.ask, self.ask_key)
        exts = [
            (f"{AMD}.1", der_int(1 if self.product == "Turin" else 0)),
            (
                f"{AMD}.2",
                ia5(product_name or (self.product + ("-B0" if self.product == "Milan" else ""))),
            ),
            (f"{AMD}.3.1", der_int(tcb["bootloader"])),
            (f"{AMD}.3.2", der_int(tcb["tee"])),
            (f"{AMD}.3.3", der_int(tcb["snp"])),
            (f"{AMD}.3.8", der_int(tcb["microcode"])),
        ]
        if self.product == "Turin":
            exts.append((f"{AMD}.3.9", der_int(tcb["fmc"])))
        if hwid is not None:
            exts.append((f"{AMD}.4", hwid))
        if self.key_type == "vlek" and csp_id:
            exts.append((f"{AMD}.5", ia5(csp_id)))
        b = (
            x509.CertificateBuilder()
            .subject_name(_name("SEV-VCEK" if self.key_type == "vcek" else "SEV-VLEK"))
            .issuer_name(issuer_cert.subject)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(not_before)
            .not_valid_after(not_after)
        )
        for oid, value in exts:
            b = b.add_extension(
                x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value), critical=False
            )
        return b.sign(issuer_key, hashes.SHA384(), rsa_padding=PSS)

    def crl(
        self,
        revoked: tuple[int, ...] = (),
        *,
        last: datetime = NOT_BEFORE,
        next_: datetime = NOT_AFTER,
        signer: rsa.RSAPrivateKey | None = None,
    ) -> x509.CertificateRevocationList:
        b = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.ark.subject)
            .last_update(last)
            .next_update(next_)
        )
        for serial in revoked:
            b = b.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(last).build()
            )
        return b.sign(signer or self.ark_key, hashes.SHA384(), rsa_padding=PSS)


@functools.cache
def fake_amd(product: str = "Milan", key_type: str = "vcek", label: str = "") -> FakeAmd:
    ark_key = rsa_key(f"ark-{product}{label}")
    ask_key = rsa_key(f"ask-{product}-{key_type}{label}")
    ark_cn = f"ARK-{product}"
    ask_cn = f"SEV-{product}" if key_type == "vcek" else f"SEV-VLEK-{product}"
    ark = _ca_cert(ark_cn, ark_key, ark_cn, ark_key, 0x10000)
    ask = _ca_cert(ask_cn, ask_key, ark_cn, ark_key, 0x10001)
    return FakeAmd(product, key_type, ark, ask, ark_key, ask_key)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def base_report(version: int = 2, **fields: object) -> Report:
    """An unsigned report with plausible fields; ``fields`` override."""
    kw: dict[str, object] = {
        "version": version,
        "guest_svn": 1,
        "policy": 0x30000,
        "family_id": bytes(16),
        "image_id": bytes(16),
        "vmpl": 0,
        "signature_algo": 1,
        "current_tcb": 0,
        "platform_info": 1,
        "signer_info": 0,
        "report_data": bytes(range(64)),
        "measurement": bytes([0xAA]) * 48,
        "host_data": bytes(32),
        "id_key_digest": bytes(48),
        "author_key_digest": bytes(48),
        "report_id": bytes([1]) * 32,
        "report_id_ma": bytes([0xFF]) * 32,
        "reported_tcb": 0,
        "cpuid_fam_id": 0x19 if version >= 3 else None,
        "cpuid_mod_id": 0x01 if version >= 3 else None,
        "cpuid_step": 0x01 if version >= 3 else None,
        "chip_id": bytes(64),
        "committed_tcb": 0,
        "current_build": 3,
        "current_minor": 55,
        "current_major": 1,
        "committed_build": 3,
        "committed_minor": 55,
        "committed_major": 1,
        "launch_tcb": 0,
        "launch_mit_vector": 0 if version >= 5 else None,
        "current_mit_vector": 0 if version >= 5 else None,
        "signature_r": bytes(72),
        "signature_s": bytes(72),
    }
    kw.update(fields)
    return Report(**kw)  # type: ignore[arg-type]


def sign_report(report: Report, key: ec.EllipticCurvePrivateKey) -> bytes:
    """``report`` signed by ``key`` (ECDSA P-384, SHA-384), as bytes."""
    unsigned = replace(report, signature_r=bytes(72), signature_s=bytes(72))
    sig = key.sign(unsigned.to_bytes()[:SIGNED_SIZE], ec.ECDSA(hashes.SHA384()))
    r, s = decode_dss_signature(sig)
    return replace(
        unsigned, signature_r=r.to_bytes(72, "little"), signature_s=s.to_bytes(72, "little")
    ).to_bytes()


@dataclass(frozen=True)
class SignedCase:
    """A synthetic report with its key certificate and the roots that trust it."""

    report: bytes
    key_cert: x509.Certificate
    amd: FakeAmd


def make_case(
    product: str = "Milan",
    key_type: str = "vcek",
    version: int = 2,
    tcb: dict[str, int] | None = None,
    **report_fields: object,
) -> SignedCase:
    amd = fake_amd(product, key_type)
    layout = PRODUCT_TCB_LAYOUT[product]
    tcb = tcb or {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115, "fmc": 1}
    if product != "Turin":
        tcb = {k: v for k, v in tcb.items() if k != "fmc"}
    raw_tcb = encode_tcb(tcb, layout)
    hwid_len = 8 if product == "Turin" else 64
    hwid = bytes(range(1, hwid_len + 1)) if key_type == "vcek" else None
    chip_id = (hwid or b"") + bytes(64 - len(hwid or b""))
    signer_info = 0 if key_type == "vcek" else 1 << 2
    fields: dict[str, object] = {
        "reported_tcb": raw_tcb,
        "current_tcb": raw_tcb,
        "committed_tcb": raw_tcb,
        "launch_tcb": raw_tcb,
        "chip_id": chip_id if key_type == "vcek" else bytes(64),
        "signer_info": signer_info,
    }
    if version >= 3:
        fields["cpuid_fam_id"], fields["cpuid_mod_id"] = {
            "Milan": (0x19, 0x01),
            "Genoa": (0x19, 0x11),
            "Turin": (0x1A, 0x02),
        }[product]
    fields.update(report_fields)
    report = base_report(version, **fields)
    key_cert = amd.key_cert(tcb=tcb, hwid=hwid)
    return SignedCase(sign_report(report, ec_key(f"{product}-{key_type}")), key_cert, amd)


def at(days: int = 0) -> datetime:
    return AT + timedelta(days=days)
