"""The Steward's decisions, one case per way a Keep can be wrong, with the clock in hand.

Each refusal names its rule and reason, and lands in the audit log as it was decided.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from motte.attest import Evidence
from motte.keep.backends import SnpBackend
from motte.steward import KeepCertificate
from motte.steward._oids import OID_KEEP_EVIDENCE
from tests.attest.fakes import make_case
from tests.keep.backends.kernels import FakeTsmKernel, milan_cert_table, sample
from tests.steward.helpers import (
    DIGEST,
    OTHER_DIGEST,
    Clock,
    failed,
    flip,
    keep_csr,
    make_steward,
)

AT_2025 = datetime(2025, 6, 1, tzinfo=UTC)
AT_ENARX = datetime(2023, 1, 15, tzinfo=UTC)

# Every case on the embedded SQLite and on PostgreSQL (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("database")


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def steward(tmp_path, clock):
    with make_steward(tmp_path / "steward", clock=clock) as s:
        yield s


def leaf(decision) -> x509.Certificate:
    return x509.load_pem_x509_certificates(decision.chain_pem)[0]


def test_sim_keep_is_accepted_with_the_claims_in_its_certificate(steward):
    nonce = steward.new_nonce().nonce
    decision = steward.attest(keep_csr(nonce, sans=("localhost", "127.0.0.1")), client="t")
    assert decision.accepted, decision.reasons
    cert = leaf(decision)
    claims = KeepCertificate.from_certificate(cert)
    assert claims.kind == "sim" and claims.workload_digest == DIGEST
    assert claims.measurement == bytes.fromhex(decision.verdict.measurement)
    assert claims.verdict.policy_name == "dev-insecure-sim"
    assert claims.names == ("localhost", "127.0.0.1")
    lifetime = claims.not_after - claims.not_before
    assert lifetime.total_seconds() == 86400 + 60  # certificate_lifetime + the skew allowance
    ca = x509.load_pem_x509_certificates(decision.chain_pem)[1]
    cert.verify_directly_issued_by(ca)
    assert cert.subject == x509.Name([])
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical  # an empty subject requires it (RFC 5280 4.2.1.6)
    [row] = steward.store.audit()
    assert (row.decision, row.serial, row.workload_digest) == ("accepted", decision.serial, DIGEST)


def test_the_default_policy_refuses_sim_evidence(tmp_path, clock):
    with make_steward(tmp_path / "s", allow_insecure_sim=False, clock=clock) as steward:
        decision = steward.attest(keep_csr(steward.new_nonce().nonce), client="t")
    assert not decision.accepted and decision.status == 403
    assert failed(decision) == ["kind"]
    assert "INSECURE software keep" in decision.reasons[0]


def test_evidence_bound_to_another_workload_is_refused(steward):
    nonce = steward.new_nonce().nonce
    decision = steward.attest(keep_csr(nonce, bound_digest=OTHER_DIGEST), client="t")
    assert failed(decision) == ["report-data"]


def test_evidence_bound_to_another_key_is_refused(steward):
    """Evidence a real Keep produced for its own key, replayed in a CSR signed by another
    key (whoever holds that key would get the Keep's certificate)."""
    from motte.attest import bind_report_data
    from motte.keep.backends import SimBackend
    from motte.steward import build_keep_csr

    nonce = steward.new_nonce().nonce
    keeps, thiefs = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    evidence = SimBackend(allow_insecure_sim=True).evidence(
        bind_report_data(keeps.public_key(), DIGEST, nonce)
    )
    csr = build_keep_csr(thiefs, evidence, workload_digest=DIGEST, nonce=nonce, sans=["localhost"])
    decision = steward.attest(csr, client="t")
    assert not decision.accepted
    assert failed(decision) == ["report-data"]


def test_a_replayed_nonce_is_refused(steward):
    nonce = steward.new_nonce().nonce
    assert steward.attest(keep_csr(nonce), client="t").accepted
    again = steward.attest(keep_csr(nonce), client="t")
    assert failed(again) == ["nonce"]
    assert "already used" in again.reasons[0] and "replay" in again.reasons[0]


def test_an_expired_nonce_is_refused(steward, clock):
    nonce = steward.new_nonce().nonce
    clock.advance(61)
    decision = steward.attest(keep_csr(nonce), client="t")
    assert failed(decision) == ["nonce"]
    assert "expired" in decision.reasons[0]


def test_a_nonce_not_issued_here_is_refused(steward):
    decision = steward.attest(keep_csr(b"\x07" * 32), client="t")
    assert failed(decision) == ["nonce"] and "unknown" in decision.reasons[0]


def test_a_used_nonce_stays_used_after_a_restart(tmp_path, clock):
    from motte.steward import Steward

    with make_steward(tmp_path / "s", clock=clock) as steward:
        nonce = steward.new_nonce().nonce
        assert steward.attest(keep_csr(nonce), client="t").accepted
    with Steward(tmp_path / "s", clock=clock) as again:
        assert failed(again.attest(keep_csr(nonce), client="t")) == ["nonce"]


def test_tampered_evidence_is_refused(steward):
    nonce = steward.new_nonce().nonce

    def tamper(ev: Evidence) -> Evidence:
        return Evidence(ev.kind, flip(ev.raw, 0x60))  # a MEASUREMENT byte, after signing

    decision = steward.attest(keep_csr(nonce, tamper=tamper), client="t")
    assert failed(decision) == ["sim-signature"]


def test_names_outside_the_allow_list_are_refused(steward):
    decision = steward.attest(
        keep_csr(steward.new_nonce().nonce, sans=("localhost", "evil.example")), client="t"
    )
    assert failed(decision) == ["san"]
    assert "evil.example not in san_allow" in decision.reasons[0]
    none = steward.attest(keep_csr(steward.new_nonce().nonce, sans=()), client="t")
    assert failed(none) == ["san"]


def test_an_rsa_keep_key_is_refused(steward):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    nonce = steward.new_nonce().nonce
    # build_keep_csr signs with an EC key's curve; make the CSR by hand for the RSA key.
    from motte.attest import bind_report_data
    from motte.keep.backends import SimBackend
    from motte.steward import KeepEvidence

    ev = SimBackend(allow_insecure_sim=True).evidence(
        bind_report_data(key.public_key(), DIGEST, nonce)
    )
    value = KeepEvidence("sim", ev.raw, DIGEST, nonce).to_der()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(OID_KEEP_EVIDENCE), value),
            critical=False,
        )
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    decision = steward.attest(csr, client="t")
    assert failed(decision) == ["csr-key"]


def test_a_csr_whose_signature_does_not_verify_is_refused(steward):
    der = keep_csr(steward.new_nonce().nonce)
    decision = steward.attest(flip(der, len(der) - 3), client="t")  # inside the signature
    assert failed(decision) == ["csr-signature"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty request"),
        (b"not a csr", "not a PKCS#10 CSR"),
        (b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "CSR"),
    ],
)
def test_malformed_requests_are_400_and_audited(steward, body, reason):
    decision = steward.attest(body, client="1.2.3.4:5")
    assert (decision.status, decision.problem) == (400, "malformed-request")
    assert reason in decision.reasons[0]
    [row] = steward.store.audit()
    assert (row.decision, row.client) == ("rejected", "1.2.3.4:5")


def test_a_csr_without_evidence_is_malformed(steward):
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    decision = steward.attest(csr, client="t")
    assert decision.status == 400 and "no evidence extension" in decision.reasons[0]


def test_pem_csrs_are_accepted_too(steward):
    der = keep_csr(steward.new_nonce().nonce)
    pem = x509.load_der_x509_csr(der).public_bytes(serialization.Encoding.PEM)
    assert steward.attest(pem, client="t").accepted


def test_every_decision_is_one_audit_row_with_every_rule(steward):
    steward.attest(keep_csr(steward.new_nonce().nonce), client="a")
    steward.attest(keep_csr(steward.new_nonce().nonce, bound_digest=OTHER_DIGEST), client="b")
    rows = steward.store.audit()
    assert [(r.client, r.decision) for r in rows] == [("a", "accepted"), ("b", "rejected")]
    rejected = rows[1]
    assert rejected.reason.startswith("report-data:")
    steward_rules = {r["rule"] for r in rejected.rules}
    assert steward_rules >= {"csr", "csr-signature", "csr-key", "san", "nonce"}
    assert rejected.verdict["accepted"] is False
    assert rejected.kind == "sim" and rejected.csr_key_sha256 and rejected.evidence_sha256


# -- real SNP evidence through the configfs-tsm backend -------------------------------------


def fake_snp_backend(tmp_path, **report_fields) -> tuple[SnpBackend, object]:
    """An SNP backend over a fake configfs tree whose 'firmware' signs with a fake AMD PKI."""
    from motte.attest.snp import GUID_VCEK, build_cert_table

    holder: dict[str, object] = {}

    def produce(report_data: bytes) -> tuple[bytes, bytes]:
        case = make_case(report_data=report_data, **report_fields)
        holder["case"] = case
        vcek = case.key_cert.public_bytes(serialization.Encoding.DER)
        return case.report, build_cert_table([(GUID_VCEK, vcek)])

    kernel = FakeTsmKernel(tmp_path / "tsm", produce=produce)
    return SnpBackend(tsm=kernel), make_case().amd


def snp_csr(steward, backend, **kw) -> bytes:
    return keep_csr(
        steward.new_nonce().nonce,
        key=ec.generate_private_key(ec.SECP384R1()),
        evidence=backend.evidence,
        **kw,
    )


def test_snp_keep_through_configfs_is_accepted_and_a_debug_one_refused(tmp_path):
    backend, amd = fake_snp_backend(tmp_path)
    with make_steward(tmp_path / "s", allow_insecure_sim=False, amd_roots=amd.roots) as steward:
        good = steward.attest(snp_csr(steward, backend), client="t")
        assert good.accepted, good.reasons
        claims = KeepCertificate.from_certificate(leaf(good))
        assert claims.kind == "snp" and claims.measurement == bytes([0xAA]) * 48
        debug_backend, _ = fake_snp_backend(tmp_path / "d", policy=0x30000 | 1 << 19)
        debug = steward.attest(snp_csr(steward, debug_backend), client="t")
    assert failed(debug) == ["debug"]
    assert "debug TEE" in debug.reasons[0]


def test_tampered_snp_evidence_is_refused(tmp_path):
    backend, amd = fake_snp_backend(tmp_path)

    def tamper(ev: Evidence) -> Evidence:
        return Evidence(ev.kind, flip(ev.raw, 0x90), ev.certs)  # MEASUREMENT, after signing

    with make_steward(tmp_path / "s", allow_insecure_sim=False, amd_roots=amd.roots) as steward:
        decision = steward.attest(snp_csr(steward, backend, tamper=tamper), client="t")
    assert failed(decision) == ["report-signature"]


def test_a_real_snp_report_that_binds_nothing_of_ours_is_refused(tmp_path):
    """The trustee Milan sample, captured through configfs-tsm: genuine, but its REPORT_DATA
    is not ours, so it could be anyone's replay."""
    report, table = sample("trustee", "snp", "test-report.bin"), milan_cert_table()
    backend = SnpBackend(tsm=FakeTsmKernel(tmp_path / "tsm", produce=lambda d: (report, table)))
    clock = Clock(AT_2025.timestamp())
    with make_steward(tmp_path / "s", allow_insecure_sim=False, clock=clock) as steward:
        decision = steward.attest(snp_csr(steward, backend), client="t")
    assert failed(decision) == ["report-data"]
    assert decision.verdict.claims_verified  # the signature and chain did verify


# -- Enarx CSRs --------------------------------------------------------------------------------


def enarx_csr() -> bytes:
    return sample("enarx-steward", "milan.signed.crl.csr")


def test_enarx_csrs_are_refused_by_default(tmp_path):
    clock = Clock(AT_ENARX.timestamp())
    with make_steward(tmp_path / "s", allow_insecure_sim=False, clock=clock) as steward:
        decision = steward.attest(enarx_csr(), client="t")
    assert failed(decision) == ["enarx-csr"]
    assert "bind neither a workload nor a nonce" in decision.reasons[0]


def test_enarx_csrs_with_the_unsafe_switch_get_a_certificate_naming_no_workload(tmp_path):
    clock = Clock(AT_ENARX.timestamp())
    with make_steward(
        tmp_path / "s",
        allow_insecure_sim=False,
        clock=clock,
        config={"unsafe_allow_unbound_enarx_csrs": "true"},
    ) as steward:
        decision = steward.attest(enarx_csr(), client="t")
    assert decision.accepted, decision.reasons
    claims = KeepCertificate.from_certificate(leaf(decision))
    assert claims.kind == "snp" and claims.workload_digest is None
    assert claims.names == ("localhost", "127.0.0.1", "::1")  # san_allow's exact names
