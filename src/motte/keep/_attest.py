"""Attest a Keep to its Steward before it fetches or runs anything.

:func:`attest_keep` is the Keep's whole side of the protocol:

1. a fresh key pair, in memory only: P-384 on SNP (the VCEK's curve, as Enarx does), P-256
   elsewhere;
2. ``GET /nonce`` from the Steward;
3. evidence from the backend with REPORT_DATA = ``bind_report_data(public key, workload
   digest, nonce)``: this key, made to run this workload, now;
4. ``POST /attest`` with a CSR carrying the evidence and the names the Keep asks for;
5. the returned chain is checked before use: the leaf holds our key, the CA in the chain
   signed it, and its extensions name our workload digest and TEE kind.

Only then does the caller fetch the workload (by the digest it attested) and refuse bytes
whose digest differs: attest before fetch, so the Steward decides before anything of the
workload reaches the machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from motte.keep.backends import Backend
    from motte.steward import KeepCertificate

#: The names a Keep asks for when none are given: what a client on this machine dials.
DEFAULT_SANS = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True, slots=True)
class KeepIdentity:
    """A Keep's attested TLS identity: its key (memory only) and the Steward's chain."""

    key_pem: bytes
    chain_pem: bytes
    certificate: KeepCertificate
    steward: str
    backend: str
    #: The names asked for: a renewal asks for the same ones.
    sans: tuple[str, ...] = DEFAULT_SANS
    #: The backend that produced the evidence: a renewal asks it for fresh evidence.
    source: Backend | None = field(default=None, compare=False, repr=False)

    @property
    def description(self) -> str:
        c = self.certificate
        insecure = " (INSECURE sim keep)" if c.insecure else ""
        return (
            f"attested by {self.steward}: {c.kind}{insecure} keep running {c.workload_digest}, "
            f"certificate {c.serial} until {c.not_after.isoformat(timespec='seconds')}"
        )

    def tls_identity(self) -> Any:
        """As :class:`motte.keep.serve.TlsIdentity`, for the listeners."""
        from motte.keep.serve import TlsIdentity

        return TlsIdentity(
            self.chain_pem, self.key_pem, attested=True, description=self.description
        )

    def reattest(self, *, timeout: float = 30.0) -> KeepIdentity:
        """Attest again, exactly as at start: a fresh key, a fresh nonce, fresh evidence from
        the same backend, the same workload digest and names. The Steward audits it and
        judges it under its current policy; a refusal raises as at start.

        The key is new on every renewal, never reused: the evidence binds a key made now,
        as at start, so the Steward's decision is about this key in this Keep today; a key
        that leaked (from a process dump, say) is useless once its certificate expires; and
        nothing outside this process ever needs to know the key stayed the same."""
        if self.source is None:
            raise ValueError("this identity does not know its backend; it cannot be renewed")
        assert self.certificate.workload_digest is not None
        return attest_keep(
            self.steward,
            self.certificate.workload_digest,
            self.source,
            sans=self.sans,
            timeout=timeout,
        )


def keep_key(backend_name: str) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    curve = ec.SECP384R1() if backend_name == "snp" else ec.SECP256R1()
    return ec.generate_private_key(curve)


def attest_keep(
    steward: str,
    workload_digest: str,
    backend: Backend,
    *,
    sans: tuple[str, ...] | list[str] = DEFAULT_SANS,
    timeout: float = 30.0,
) -> KeepIdentity:
    """Attest to ``steward`` as a Keep about to run ``workload_digest``; see the module doc."""
    from cryptography.hazmat.primitives import serialization

    from motte.attest import bind_report_data
    from motte.steward import StewardClient, build_keep_csr

    key = keep_key(backend.name)
    with StewardClient(steward, timeout=timeout) as client:
        nonce = client.nonce()
        report_data = bind_report_data(key.public_key(), workload_digest, nonce)
        evidence = backend.evidence(report_data)
        csr = build_keep_csr(
            key, evidence, workload_digest=workload_digest, nonce=nonce, sans=list(sans)
        )
        chain_pem = client.attest(csr)
    certificate = check_issued_chain(chain_pem, key, workload_digest, evidence.kind, steward)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return KeepIdentity(
        key_pem, chain_pem, certificate, steward, backend.name, tuple(sans), backend
    )


def check_issued_chain(
    chain_pem: bytes, key: Any, workload_digest: str, kind: str, steward: str
) -> KeepCertificate:
    """The leaf's claims, after checking the chain is ours and says what we asked for."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature

    from motte.steward import KeepCertificate, StewardUnreachableError

    try:
        certs = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as e:
        raise StewardUnreachableError(f"Steward {steward}: the chain is not PEM: {e}") from None
    if len(certs) != 2:
        raise StewardUnreachableError(
            f"Steward {steward}: expected a leaf and the CA, got {len(certs)} certificate(s)"
        )
    leaf, ca = certs
    problems = []
    if leaf.public_key() != key.public_key():
        problems.append("the certificate is for another key")
    try:
        leaf.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError) as e:
        problems.append(f"the CA in the chain did not sign it ({type(e).__name__})")
    claims = KeepCertificate.from_certificate(leaf)
    if claims.workload_digest != workload_digest:
        problems.append(f"it names workload {claims.workload_digest}, not {workload_digest}")
    if claims.kind != kind:
        problems.append(f"it names TEE kind {claims.kind}, not {kind}")
    if problems:
        raise StewardUnreachableError(
            f"Steward {steward}: the issued certificate is wrong: {'; '.join(problems)}"
        )
    return claims
