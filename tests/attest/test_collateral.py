"""The collateral cache: URLs, keys, and what is fetched when (offline; no internet).

The fetcher here is an in-memory table of URLs; tests/integration/test_attest_collateral_http.py
drives the real httpx fetcher against a local HTTP server.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from motte.attest import verify_evidence
from motte.attest.collateral import (
    CollateralCache,
    FetchResponse,
    kds_chain_url,
    kds_crl_url,
    kds_vcek_url,
    pcs_pck_crl_url,
    pcs_qe_identity_url,
    pcs_tcb_info_url,
)
from motte.attest.snp import Report
from motte.errors import RemoteError
from tests.attest.fakes import AT, der, make_case
from tests.conftest import shared_testdata

AT_2025 = datetime(2025, 6, 1, tzinfo=UTC)
MILAN_TCB = {"bootloader": 3, "tee": 0, "snp": 8, "microcode": 115}


def sample(*parts: str) -> bytes:
    return shared_testdata("attestation", *parts).read_bytes()


class TableFetcher:
    """URL -> response, recording every request."""

    def __init__(self, table: dict[str, FetchResponse]) -> None:
        self.table = table
        self.requests: list[str] = []

    def __call__(self, url: str) -> FetchResponse:
        self.requests.append(url)
        if url not in self.table:
            raise RemoteError(f"{url}: HTTP 404")
        return self.table[url]


def test_kds_urls() -> None:
    hwid = bytes(range(64))
    assert kds_vcek_url("Milan", hwid, MILAN_TCB) == (
        f"https://kdsintf.amd.com/vcek/v1/Milan/{hwid.hex()}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115"
    )
    turin = {"fmc": 1, **MILAN_TCB}
    assert kds_vcek_url("Turin", bytes(8), turin, base="http://mirror") == (
        "http://mirror/vcek/v1/Turin/0000000000000000?fmcSPL=1&blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115"
    )
    assert kds_chain_url("Genoa") == "https://kdsintf.amd.com/vcek/v1/Genoa/cert_chain"
    assert kds_chain_url("Genoa", "vlek") == "https://kdsintf.amd.com/vlek/v1/Genoa/cert_chain"
    assert kds_crl_url("Turin", "vlek") == "https://kdsintf.amd.com/vlek/v1/Turin/crl"
    with pytest.raises(ValueError, match="Turin hwID is 8 bytes"):
        kds_vcek_url("Turin", hwid, turin)
    with pytest.raises(ValueError, match="unknown AMD product"):
        kds_crl_url("Rome")
    with pytest.raises(ValueError, match="vcek or vlek"):
        kds_chain_url("Milan", "ask")


def test_pcs_urls() -> None:
    base = "https://api.trustedservices.intel.com"
    assert (
        pcs_tcb_info_url("tdx", "B0C06F000000")
        == f"{base}/tdx/certification/v4/tcb?fmspc=b0c06f000000"
    )
    assert pcs_qe_identity_url("sgx") == f"{base}/sgx/certification/v4/qe/identity"
    assert (
        pcs_pck_crl_url("processor")
        == f"{base}/sgx/certification/v4/pckcrl?ca=processor&encoding=der"
    )
    with pytest.raises(ValueError, match="FMSPC"):
        pcs_tcb_info_url("tdx", "xyz")
    with pytest.raises(ValueError, match="tdx or sgx"):
        pcs_qe_identity_url("snp")


def test_cache_keys_and_default_root(motte_home: Path) -> None:
    cache = CollateralCache()
    assert cache.root == motte_home / "cache" / "collateral"
    assert CollateralCache.vcek_key("Milan", b"\x01" * 64, 0x7308000000000003) == (
        f"amd/Milan/vcek/{'01' * 64}/7308000000000003.der"
    )
    assert CollateralCache.amd_crl_key("Genoa", "vlek") == "amd/Genoa/vlek/crl.der"
    assert CollateralCache.intel_key("tdx", "B0C06F000000") == "intel/tdx/b0c06f000000.json"
    cache.put("amd/Milan/vcek/crl.der", b"x")
    assert cache.get("amd/Milan/vcek/crl.der") == b"x"
    assert cache.get("amd/Genoa/vcek/crl.der") is None


def test_cached_vcek_is_used_offline(tmp_path: Path) -> None:
    raw = sample("trustee", "snp", "test-report.bin")
    r = Report.from_bytes(raw)
    cache = CollateralCache(tmp_path)
    cache.put(
        cache.vcek_key("Milan", r.chip_id, r.reported_tcb),
        sample("trustee", "snp", "test-vcek.der"),
    )
    v = verify_evidence(raw, cache=cache, now=AT_2025)
    assert v.accepted, v.reason


def test_online_fetches_vcek_once_then_uses_the_cache(tmp_path: Path) -> None:
    raw = sample("trustee", "snp", "test-report.bin")
    r = Report.from_bytes(raw)
    vcek_url = kds_vcek_url("Milan", r.chip_id, MILAN_TCB)
    fetcher = TableFetcher({vcek_url: FetchResponse(sample("trustee", "snp", "test-vcek.der"))})
    cache = CollateralCache(tmp_path, fetcher=fetcher)
    v = verify_evidence(raw, cache=cache, online=True, now=AT_2025)
    # v2 report: no CPUID, so Milan is asked first (and answers); the CRL is not served.
    assert not v.accepted and v.failures[0].rule == "collateral" and "crl" in v.failures[0].reason
    assert fetcher.requests[0] == vcek_url
    assert (tmp_path / cache.vcek_key("Milan", r.chip_id, r.reported_tcb)).exists()
    offline = verify_evidence(raw, cache=CollateralCache(tmp_path), now=AT_2025)
    assert offline.accepted, offline.reason


def test_online_fetches_and_refreshes_the_crl(tmp_path: Path) -> None:
    case = make_case()
    r = Report.from_bytes(case.report)
    from cryptography.hazmat.primitives.serialization import Encoding

    from tests.attest.fakes import at

    fresh = case.amd.crl(last=at(-1), next_=at(30)).public_bytes(Encoding.DER)
    stale = case.amd.crl(last=at(-60), next_=at(-30)).public_bytes(Encoding.DER)
    table = {
        kds_vcek_url("Milan", r.chip_id, MILAN_TCB): FetchResponse(der(case.key_cert)),
        kds_crl_url("Milan"): FetchResponse(fresh),
    }
    fetcher = TableFetcher(table)
    cache = CollateralCache(tmp_path, fetcher=fetcher)
    cache.put(cache.amd_crl_key("Milan", "vcek"), stale)
    v = verify_evidence(case.report, cache=cache, online=True, amd_roots=case.amd.roots, now=AT)
    assert v.accepted, v.reason
    assert {r.rule: r.outcome for r in v.rules}["revocation"] == "pass"
    assert cache.amd_crl("Milan", "vcek") == fresh
    # A second run finds both current in the cache and fetches nothing.
    fetcher.requests.clear()
    assert verify_evidence(
        case.report, cache=cache, online=True, amd_roots=case.amd.roots, now=AT
    ).accepted
    assert fetcher.requests == []


def test_offline_never_fetches(tmp_path: Path) -> None:
    fetcher = TableFetcher({})
    v = verify_evidence(
        sample("trustee", "snp", "test-report.bin"),
        cache=CollateralCache(tmp_path, fetcher=fetcher),
        now=AT_2025,
    )
    assert v.failures[0].rule == "collateral"
    assert fetcher.requests == []


def test_fetch_errors_become_rejections(tmp_path: Path) -> None:
    cache = CollateralCache(tmp_path, fetcher=TableFetcher({}))
    v = verify_evidence(
        sample("trustee", "snp", "test-report.bin"), cache=cache, online=True, now=AT_2025
    )
    assert not v.accepted
    assert "HTTP 404" in v.failures[0].reason


def test_intel_collateral_assembled_from_pcs_responses(tmp_path: Path) -> None:
    """PCS answers (body + issuer-chain headers) become dcap-qvl-shaped collateral that the
    Intel verifier accepts: rebuilt here from the dcap-qvl sample's own pieces."""
    import urllib.parse

    src = json.loads(sample("dcap-qvl", "tdx_quote_collateral.json"))
    tcb_body = (
        '{"tcbInfo":' + src["tcb_info"] + ',"signature":"' + src["tcb_info_signature"] + '"}'
    ).encode()
    qe_body = (
        '{"enclaveIdentity": '
        + src["qe_identity"]
        + ', "signature":"'
        + src["qe_identity_signature"]
        + '"}'
    ).encode()
    table = {
        pcs_tcb_info_url("tdx", "b0c06f000000"): FetchResponse(
            tcb_body, {"tcb-info-issuer-chain": urllib.parse.quote(src["tcb_info_issuer_chain"])}
        ),
        pcs_qe_identity_url("tdx"): FetchResponse(
            qe_body,
            {
                "sgx-enclave-identity-issuer-chain": urllib.parse.quote(
                    src["qe_identity_issuer_chain"]
                )
            },
        ),
        pcs_pck_crl_url("platform"): FetchResponse(
            bytes.fromhex(src["pck_crl"]),
            {"sgx-pck-crl-issuer-chain": urllib.parse.quote(src["pck_crl_issuer_chain"])},
        ),
        "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der": FetchResponse(
            bytes.fromhex(src["root_ca_crl"])
        ),
    }
    cache = CollateralCache(tmp_path, fetcher=TableFetcher(table))
    when = datetime(2025, 7, 1, tzinfo=UTC)
    v = verify_evidence(sample("dcap-qvl", "tdx_quote"), cache=cache, online=True, now=when)
    assert v.accepted, v.reason
    stored = json.loads(cache.intel_collateral("tdx", "b0c06f000000") or b"{}")
    assert stored["tcb_info"] == src["tcb_info"]
    assert stored["qe_identity"] == src["qe_identity"]
    # and offline, from the cache alone
    assert verify_evidence(
        sample("dcap-qvl", "tdx_quote"), cache=CollateralCache(tmp_path), now=when
    ).accepted


def test_fetch_amd_chain_is_cached(tmp_path: Path) -> None:
    chain = sample("amd-roots", "ask_ark_genoa_vlek.pem")
    fetcher = TableFetcher({kds_chain_url("Genoa", "vlek"): FetchResponse(chain)})
    cache = CollateralCache(tmp_path, fetcher=fetcher)
    assert cache.fetch_amd_chain("Genoa", "vlek") == chain
    assert cache.fetch_amd_chain("Genoa", "vlek") == chain
    assert fetcher.requests == [kds_chain_url("Genoa", "vlek")]
    assert (tmp_path / "amd/Genoa/vlek/cert_chain.pem").read_bytes() == chain
