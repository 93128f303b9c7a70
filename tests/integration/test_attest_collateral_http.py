"""``--online`` against a real HTTP server on 127.0.0.1 standing in for AMD KDS.

The server answers KDS paths with real AMD objects from the shared samples (the trustee
Milan VCEK; the ARK-Milan CRL carried by the Enarx CSR), so the httpx fetcher, the cache and
the verifier run end to end with no internet.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from motte.attest import parse_enarx_csr, verify_evidence
from motte.attest.collateral import MAX_RESPONSE_BYTES, CollateralCache, HttpxFetcher
from motte.attest.snp import Report
from motte.errors import RemoteError
from tests.conftest import shared_testdata

pytestmark = pytest.mark.integration

#: Inside the VCEK's validity (from 2023-01-24) and the CRL's (to 2023-05-09).
AT = datetime(2023, 3, 1, tzinfo=UTC)


def sample(*parts: str) -> bytes:
    return shared_testdata("attestation", *parts).read_bytes()


class FakeKds:
    def __init__(self) -> None:
        report = Report.from_bytes(sample("trustee", "snp", "test-report.bin"))
        crl = dict(parse_enarx_csr(sample("enarx-steward", "milan.signed.crl.csr")).crls)
        milan_crl = crl["https://kdsintf.amd.com/vcek/v1/Milan/crl"].public_bytes(Encoding.DER)
        self.routes: dict[str, tuple[int, bytes]] = {
            f"/vcek/v1/Milan/{report.chip_id.hex()}?blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115": (
                200,
                sample("trustee", "snp", "test-vcek.der"),
            ),
            "/vcek/v1/Milan/crl": (200, milan_crl),
            "/busy": (429, b"slow down"),
            "/huge": (200, b"x" * (MAX_RESPONSE_BYTES + 1)),
        }
        self.requests: list[str] = []


@pytest.fixture
def kds() -> Iterator[tuple[str, FakeKds]]:
    state = FakeKds()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            status, body = state.routes.get(self.path, (404, b"not found"))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_online_verification_fetches_vcek_and_crl(tmp_path: Path, kds) -> None:
    url, state = kds
    cache = CollateralCache(tmp_path, kds_url=url)
    raw = sample("trustee", "snp", "test-report.bin")
    v = verify_evidence(raw, cache=cache, online=True, now=AT)
    assert v.accepted, v.reason
    assert {r.rule: r.outcome for r in v.rules}["revocation"] == "pass"
    assert len(state.requests) == 2
    # Everything is cached now: the same verification offline needs no server.
    state.requests.clear()
    assert verify_evidence(raw, cache=CollateralCache(tmp_path), now=AT).accepted
    assert verify_evidence(raw, cache=cache, online=True, now=AT).accepted
    assert state.requests == []


def test_fetcher_errors(kds) -> None:
    url, _ = kds
    fetch = HttpxFetcher(timeout=5)
    with pytest.raises(RemoteError, match="HTTP 429, rate-limited") as e:
        fetch(f"{url}/busy")
    assert e.value.hint is not None and "AMD KDS limits" in e.value.hint
    with pytest.raises(RemoteError, match="HTTP 404"):
        fetch(f"{url}/nothing")
    with pytest.raises(RemoteError, match="larger than"):
        fetch(f"{url}/huge")
    with pytest.raises(RemoteError, match="ConnectError"):
        fetch("http://127.0.0.1:9/")
