"""``motte connect`` and connect_keep: TLS to the Steward's CA, then the certificate's claims.

A plain TLS server stands in for the Keep, presenting chains the Steward issued (or that a
test minted with the Steward's CA, to reach cases a correct Steward never issues)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from motte.steward import KeepIdentityError, connect_keep
from motte.steward._asn1 import der_octets, der_utf8
from motte.steward._oids import OID_MEASUREMENT, OID_TEE_KIND, OID_WORKLOAD_DIGEST
from tests.steward.helpers import DIGEST, OTHER_DIGEST, keep_csr, make_steward
from tests.steward.servers import tls_server


@pytest.fixture
def steward(tmp_path):
    with make_steward(tmp_path / "s") as s:
        yield s


def key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def attested(steward, **kw) -> tuple[bytes, bytes]:
    """A chain the Steward issued through the whole attestation path, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    decision = steward.attest(keep_csr(steward.new_nonce().nonce, key=key, **kw), client="t")
    assert decision.accepted, decision.reasons
    return decision.chain_pem, key_pem(key)


def minted(steward, extensions, *, names=("127.0.0.1",), now=None, lifetime=600):
    key = ec.generate_private_key(ec.SECP256R1())
    from motte.steward._csr import san_general_name

    cert = steward.ca.issue(
        key.public_key(),
        [san_general_name(n) for n in names],
        extensions,
        lifetime=lifetime,
        now=now or datetime.now(UTC),
    )
    return cert.public_bytes(serialization.Encoding.PEM) + steward.ca.cert_pem, key_pem(key)


def connect(port: int, ca: bytes, digest: str = DIGEST, host: str = "127.0.0.1", **kw):
    return connect_keep(
        f"https://{host}:{port}/x?name=a%20b", steward_ca=ca, expect_digest=digest, **kw
    )


def test_a_verified_keep_and_a_request_over_the_same_connection(steward):
    chain, key = attested(steward, sans=("127.0.0.1",))
    with (
        tls_server(chain, key) as port,
        connect(port, steward.ca.cert_pem, allow_insecure_sim=True) as keep,
    ):
        assert keep.identity.kind == "sim" and keep.identity.workload_digest == DIGEST
        assert keep.tls_version == "TLSv1.3"
        response = keep.request()
    assert (response.status, response.body) == (200, b"GET /x?name=a%20b HTTP/1.1")


def test_a_sim_keep_needs_the_loud_flag(steward):
    chain, key = attested(steward, sans=("127.0.0.1",))
    with tls_server(chain, key) as port, pytest.raises(KeepIdentityError, match="sim keep"):
        connect(port, steward.ca.cert_pem)


def test_another_workload_is_refused(steward):
    chain, key = attested(steward, sans=("127.0.0.1",))
    with (
        tls_server(chain, key) as port,
        pytest.raises(KeepIdentityError, match=f"runs {DIGEST}, not the expected"),
    ):
        connect(port, steward.ca.cert_pem, OTHER_DIGEST, allow_insecure_sim=True)


def test_another_stewards_keep_is_refused(steward, tmp_path):
    chain, key = attested(steward, sans=("127.0.0.1",))
    with (
        make_steward(tmp_path / "other") as other,
        tls_server(chain, key) as port,
        pytest.raises(KeepIdentityError, match="does not verify against the Steward CA"),
    ):
        connect(port, other.ca.cert_pem, allow_insecure_sim=True)


def test_the_name_must_match(steward):
    chain, key = attested(steward, sans=("localhost",))
    with tls_server(chain, key) as port:
        with pytest.raises(KeepIdentityError, match=r"IP address mismatch|hostname mismatch"):
            connect(port, steward.ca.cert_pem, allow_insecure_sim=True)
        with connect(port, steward.ca.cert_pem, host="localhost", allow_insecure_sim=True):
            pass


SNP = [(OID_TEE_KIND, der_utf8("snp")), (OID_MEASUREMENT, der_octets(b"\x11" * 48))]


def test_a_hardware_keep_needs_no_flag(steward):
    chain, key = minted(steward, [*SNP, (OID_WORKLOAD_DIGEST, der_utf8(DIGEST))])
    with tls_server(chain, key) as port, connect(port, steward.ca.cert_pem) as keep:
        assert keep.identity.kind == "snp" and not keep.identity.insecure


def test_an_expired_certificate_is_refused(tmp_path):
    from tests.steward.helpers import Clock

    past = datetime.now(UTC) - timedelta(hours=3)
    with make_steward(tmp_path / "old", clock=Clock(past.timestamp() - 3600)) as steward:
        chain, key = minted(steward, [*SNP, (OID_WORKLOAD_DIGEST, der_utf8(DIGEST))], now=past)
        with tls_server(chain, key) as port, pytest.raises(KeepIdentityError, match="expired"):
            connect(port, steward.ca.cert_pem)


def test_a_certificate_without_attestation_is_refused(steward):
    chain, key = minted(steward, [])
    with (
        tls_server(chain, key) as port,
        pytest.raises(KeepIdentityError, match="carries no attestation"),
    ):
        connect(port, steward.ca.cert_pem)


def test_an_unbound_keep_cannot_be_checked(steward):
    chain, key = minted(steward, SNP)  # what an Enarx CSR gets: no workload digest
    with (
        tls_server(chain, key) as port,
        pytest.raises(KeepIdentityError, match="binds no workload digest"),
    ):
        connect(port, steward.ca.cert_pem)


def test_the_cli_prints_what_it_verified_and_exits_1_with_the_reason(steward, cli, tmp_path):
    chain, key = attested(steward, sans=("127.0.0.1",))
    ca = tmp_path / "ca.pem"
    ca.write_bytes(steward.ca.cert_pem)
    with tls_server(chain, key, body=b"hi\n") as port:
        url = f"https://127.0.0.1:{port}/"
        args = ("connect", url, "--steward-ca", ca, "--expect-digest")
        r = cli(*args, DIGEST, "--allow-insecure-sim")
        assert r.exit_code == 0, r.stderr
        assert r.stdout == "hi\n"
        assert f"workload     {DIGEST} (as expected)" in r.stderr
        assert "sim (INSECURE sim keep" in r.stderr and "policy 'dev-insecure-sim'" in r.stderr
        r = cli(*args, OTHER_DIGEST, "--allow-insecure-sim")
        assert r.exit_code == 1 and "not the expected" in r.stderr
        assert "Traceback" not in r.stderr
        r = cli(*args, "sha256:nope")
        assert r.exit_code == 2 and "--expect-digest" in r.stderr
        import json

        r = cli(*args, DIGEST, "--allow-insecure-sim", "--json")
        doc = json.loads(r.stdout)
        assert doc["keep"]["workload_digest"] == DIGEST and doc["response"]["status"] == 200


def test_nothing_listening_is_a_clear_error(steward, cli, tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    ca = tmp_path / "ca.pem"
    ca.write_bytes(steward.ca.cert_pem)
    r = cli("connect", f"tls://127.0.0.1:{port}", "--steward-ca", ca, "--expect-digest", DIGEST)
    assert r.exit_code == 1 and "cannot connect" in r.stderr
