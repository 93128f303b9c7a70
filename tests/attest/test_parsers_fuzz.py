"""Garbage in, a motte parse error out: every parser, arbitrary and mutated inputs."""

from __future__ import annotations

import contextlib
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from motte.attest import KINDS, EvidenceParseError, PolicyError, parse_evidence, parse_policy
from motte.attest._x509 import load_bundle
from motte.attest.snp import GUID_ASK, GUID_VCEK, build_cert_table, parse_cert_table
from tests.conftest import shared_testdata

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(data=st.binary(max_size=3000), kind=st.sampled_from([None, *KINDS]))
def test_parse_evidence_raises_only_parse_errors(data: bytes, kind: str | None) -> None:
    with contextlib.suppress(EvidenceParseError):
        parse_evidence(data, kind)


@FUZZ
@given(st.binary(max_size=2000))
def test_cert_table_and_bundles(data: bytes) -> None:
    for fn in (parse_cert_table, load_bundle):
        with contextlib.suppress(EvidenceParseError):
            fn(data)


@FUZZ
@given(st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_mutated_real_csr_and_cert_table(pos: int, xor: int) -> None:
    csr = bytearray(
        shared_testdata("attestation", "enarx-steward", "milan.signed.crl.csr").read_bytes()
    )
    csr[pos % len(csr)] ^= xor
    with contextlib.suppress(EvidenceParseError):
        parse_evidence(bytes(csr), "enarx")
    vcek = shared_testdata("attestation", "trustee", "snp", "test-vcek.der").read_bytes()
    table = bytearray(build_cert_table([(GUID_VCEK, vcek), (GUID_ASK, vcek)]))
    table[pos % len(table)] ^= xor
    with contextlib.suppress(EvidenceParseError):
        load_bundle(bytes(table))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["provider", "outblob", "auxblob", "generation", "x"]), json_values
    )
)
def test_tsm_json_shapes(doc: dict) -> None:
    with contextlib.suppress(EvidenceParseError):
        parse_evidence(json.dumps(doc).encode(), "tsm")


@FUZZ
@given(st.text(max_size=400))
def test_policy_text_raises_only_policy_errors(text: str) -> None:
    with contextlib.suppress(PolicyError):
        parse_policy(text)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(
            ["name", "allow_debug", "report_data", "allowed_kinds", "snp", "sim", "zz"]
        ),
        json_values,
        max_size=4,
    )
)
def test_policy_shapes(doc: dict) -> None:
    """Any TOML-shaped document: a Policy or a PolicyError, nothing else."""
    lines = []
    for k, v in doc.items():
        lines.append(f"{k} = {json.dumps(v)}")
    with contextlib.suppress(PolicyError):
        parse_policy("\n".join(lines))


@FUZZ
@given(st.integers(min_value=0), st.integers(min_value=1, max_value=255))
def test_verify_evidence_with_mutated_certificates_and_csrs(pos: int, xor: int) -> None:
    """The recipe's promise: a Verdict for mutated VCEKs and CSRs, never an exception."""
    from datetime import UTC, datetime

    from motte.attest import verify_evidence

    at = datetime(2023, 3, 1, tzinfo=UTC)
    report = shared_testdata("attestation", "trustee", "snp", "test-report.bin").read_bytes()
    vcek = bytearray(shared_testdata("attestation", "trustee", "snp", "test-vcek.der").read_bytes())
    vcek[pos % len(vcek)] ^= xor
    v = verify_evidence(report, certs=[bytes(vcek)], now=at)
    assert v.rules
    csr = bytearray(
        shared_testdata("attestation", "enarx-steward", "milan.signed.crl.csr").read_bytes()
    )
    csr[pos % len(csr)] ^= xor
    v = verify_evidence(bytes(csr), now=at)
    assert v.rules
