"""Collateral: the certificates, CRLs and TCB info a verifier needs, cached and fetched.

Offline by default. Verification reads collateral from files the user passes and from this
cache under ``motte_home()/cache/collateral``; with ``online=True`` (``--online``) what is
missing or stale is fetched from AMD KDS or Intel PCS and stored. Nothing is trusted
because it came from the cache: the verifiers check every signature and date as if the bytes
came from the evidence.

Cache keys (paths under the cache root), after the reference's advice to key by what the
collateral is bound to:

=============================================  ===========================================
``amd/<product>/vcek/<hwid>/<tcb>.der``        a VCEK: fixed by chip ID and REPORTED_TCB
``amd/<product>/<vcek|vlek>/cert_chain.pem``   ASK (or ASVK) and ARK
``amd/<product>/<vcek|vlek>/crl.der``          the ARK's CRL (refreshed when stale)
``intel/<tdx|sgx>/<fmspc>.json``               PCS collateral for one FMSPC, in the JSON
                                               layout of dcap-qvl's ``*_collateral.json``
=============================================  ===========================================

AMD KDS rate-limits (AMDESE/AMDSEV#212): VCEKs never change for a (chip, TCB), so one fetch
per platform and TCB update is all a deployment needs.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from motte.attest._x509 import x509_load_errors
from motte.attest.errors import CollateralError
from motte.errors import RemoteError
from motte.fsutil import atomic_write_bytes
from motte.home import motte_home

__all__ = [
    "INTEL_ROOT_CRL_URL",
    "KDS_URL",
    "PCS_URL",
    "CollateralCache",
    "FetchResponse",
    "Fetcher",
    "HttpxFetcher",
    "kds_chain_url",
    "kds_crl_url",
    "kds_vcek_url",
    "pcs_pck_crl_url",
    "pcs_qe_identity_url",
    "pcs_tcb_info_url",
]

KDS_URL = "https://kdsintf.amd.com"
PCS_URL = "https://api.trustedservices.intel.com"
INTEL_ROOT_CRL_URL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
#: No collateral document is anywhere near this; a bigger response is refused.
MAX_RESPONSE_BYTES = 1 << 20

_PRODUCTS = ("Milan", "Genoa", "Turin")
_FMSPC_RE = re.compile(r"^[0-9a-fA-F]{12}$")


# URLs -------------------------------------------------------------------------------------


def _product(product: str) -> str:
    if product not in _PRODUCTS:
        raise ValueError(f"unknown AMD product {product!r}; one of {', '.join(_PRODUCTS)}")
    return product


def kds_vcek_url(product: str, hwid: bytes, tcb: Mapping[str, int], *, base: str = KDS_URL) -> str:
    """The KDS URL of the VCEK for a chip (``hwid``: 64 bytes, 8 on Turin) at a TCB.

    ``tcb`` holds the REPORTED_TCB components (bootloader, tee, snp, microcode; fmc on Turin).
    """
    _product(product)
    want = 8 if product == "Turin" else 64
    if len(hwid) != want:
        raise ValueError(f"a {product} hwID is {want} bytes, not {len(hwid)}")
    params = [
        ("blSPL", tcb["bootloader"]),
        ("teeSPL", tcb["tee"]),
        ("snpSPL", tcb["snp"]),
        ("ucodeSPL", tcb["microcode"]),
    ]
    if product == "Turin":
        params.insert(0, ("fmcSPL", tcb["fmc"]))
    query = "&".join(f"{k}={int(v)}" for k, v in params)
    return f"{base}/vcek/v1/{product}/{hwid.hex()}?{query}"


def kds_chain_url(product: str, key_type: str = "vcek", *, base: str = KDS_URL) -> str:
    """ASK (or ASVK for VLEKs) then ARK, PEM."""
    return f"{base}/{_key_type(key_type)}/v1/{_product(product)}/cert_chain"


def kds_crl_url(product: str, key_type: str = "vcek", *, base: str = KDS_URL) -> str:
    """The ARK's CRL (DER)."""
    return f"{base}/{_key_type(key_type)}/v1/{_product(product)}/crl"


def _key_type(key_type: str) -> str:
    if key_type not in ("vcek", "vlek"):
        raise ValueError(f"key type is vcek or vlek, not {key_type!r}")
    return key_type


def _tee(tee: str) -> str:
    if tee not in ("tdx", "sgx"):
        raise ValueError(f"Intel TEE is tdx or sgx, not {tee!r}")
    return tee


def _fmspc(fmspc: str) -> str:
    if not _FMSPC_RE.match(fmspc):
        raise ValueError(f"FMSPC is 6 bytes in hex, not {fmspc!r}")
    return fmspc.lower()


def pcs_tcb_info_url(tee: str, fmspc: str, *, base: str = PCS_URL) -> str:
    return f"{base}/{_tee(tee)}/certification/v4/tcb?fmspc={_fmspc(fmspc)}"


def pcs_qe_identity_url(tee: str, *, base: str = PCS_URL) -> str:
    return f"{base}/{_tee(tee)}/certification/v4/qe/identity"


def pcs_pck_crl_url(ca: str, *, base: str = PCS_URL) -> str:
    """The PCK CRL of the "platform" or "processor" CA, DER."""
    if ca not in ("platform", "processor"):
        raise ValueError(f"PCK CA is platform or processor, not {ca!r}")
    return f"{base}/sgx/certification/v4/pckcrl?ca={ca}&encoding=der"


# Fetching ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FetchResponse:
    body: bytes
    #: Header names lower-cased (PCS sends issuer chains in headers).
    headers: Mapping[str, str] = field(default_factory=dict)


#: Fetches a URL or raises RemoteError. Injected so tests and mirrors need no internet.
Fetcher = Callable[[str], FetchResponse]


class HttpxFetcher:
    """The default fetcher: one HTTPS GET with a timeout and a size bound."""

    def __init__(self, *, timeout: float = 30.0) -> None:
        self.timeout = timeout

    def __call__(self, url: str) -> FetchResponse:
        import httpx

        try:
            with httpx.stream("GET", url, timeout=self.timeout, follow_redirects=True) as r:
                if r.status_code == 429:
                    raise RemoteError(
                        f"{url}: HTTP 429, rate-limited",
                        hint="AMD KDS limits requests; retry later (the cache keeps what arrived)",
                    )
                if r.status_code != 200:
                    raise RemoteError(f"{url}: HTTP {r.status_code}")
                body = bytearray()
                for chunk in r.iter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise RemoteError(f"{url}: response larger than {MAX_RESPONSE_BYTES} bytes")
                headers = {k.lower(): v for k, v in r.headers.items()}
        except httpx.HTTPError as e:
            raise RemoteError(f"{url}: {type(e).__name__}: {e}") from None
        return FetchResponse(bytes(body), headers)


# The cache --------------------------------------------------------------------------------


class CollateralCache:
    """Collateral files under ``root`` (default ``motte_home()/cache/collateral``).

    Reads never fetch; the ``fetch_*`` methods fetch (through ``fetcher``) only what the
    cache lacks or holds stale, store it atomically, and return it.
    """

    def __init__(
        self,
        root: Path | None = None,
        *,
        fetcher: Fetcher | None = None,
        kds_url: str = KDS_URL,
        pcs_url: str = PCS_URL,
    ) -> None:
        self.root = root if root is not None else motte_home() / "cache" / "collateral"
        self._fetcher = fetcher
        self.kds_url = kds_url.rstrip("/")
        self.pcs_url = pcs_url.rstrip("/")

    @property
    def fetcher(self) -> Fetcher:
        if self._fetcher is None:
            self._fetcher = HttpxFetcher()
        return self._fetcher

    # keys

    @staticmethod
    def vcek_key(product: str, hwid: bytes, tcb: int) -> str:
        return f"amd/{_product(product)}/vcek/{hwid.hex()}/{tcb:016x}.der"

    @staticmethod
    def amd_chain_key(product: str, key_type: str) -> str:
        return f"amd/{_product(product)}/{_key_type(key_type)}/cert_chain.pem"

    @staticmethod
    def amd_crl_key(product: str, key_type: str) -> str:
        return f"amd/{_product(product)}/{_key_type(key_type)}/crl.der"

    @staticmethod
    def intel_key(tee: str, fmspc: str) -> str:
        return f"intel/{_tee(tee)}/{_fmspc(fmspc)}.json"

    # raw access

    def get(self, key: str) -> bytes | None:
        path = self.root / key
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CollateralError(f"{path}: cannot read cached collateral: {e.strerror}") from None

    def put(self, key: str, data: bytes) -> Path:
        path = self.root / key
        atomic_write_bytes(path, data)
        return path

    def _fetch(self, url: str) -> FetchResponse:
        return self.fetcher(url)

    # AMD

    def vceks(self, hwid: bytes, tcb: int, products: tuple[str, ...] = _PRODUCTS) -> list[bytes]:
        """Cached VCEKs for this chip and TCB (one per product that has one)."""
        out = []
        for p in products:
            n = 8 if p == "Turin" else 64
            found = self.get(self.vcek_key(p, hwid[:n], tcb))
            if found is not None:
                out.append(found)
        return out

    def fetch_vcek(self, product: str, hwid: bytes, tcb: int) -> bytes:
        from motte.attest.snp._abi import PRODUCT_TCB_LAYOUT, decode_tcb

        n = 8 if product == "Turin" else 64
        hwid = hwid[:n]
        key = self.vcek_key(product, hwid, tcb)
        cached = self.get(key)
        if cached is not None:
            return cached
        parts = decode_tcb(tcb, PRODUCT_TCB_LAYOUT[product])
        body = self._fetch(kds_vcek_url(product, hwid, parts, base=self.kds_url)).body
        self.put(key, body)
        return body

    def fetch_amd_chain(self, product: str, key_type: str) -> bytes:
        key = self.amd_chain_key(product, key_type)
        cached = self.get(key)
        if cached is not None:
            return cached
        body = self._fetch(kds_chain_url(product, key_type, base=self.kds_url)).body
        self.put(key, body)
        return body

    def amd_crl(self, product: str, key_type: str) -> bytes | None:
        return self.get(self.amd_crl_key(product, key_type))

    def fetch_amd_crl(self, product: str, key_type: str, now: datetime) -> bytes:
        """The ARK's CRL: the cached one while current at ``now``, else a fresh one."""
        from cryptography import x509

        key = self.amd_crl_key(product, key_type)
        cached = self.get(key)
        if cached is not None:
            try:
                nxt = x509.load_der_x509_crl(cached).next_update_utc
            except x509_load_errors():
                nxt = None
            if nxt is not None and now <= nxt:
                return cached
        body = self._fetch(kds_crl_url(product, key_type, base=self.kds_url)).body
        self.put(key, body)
        return body

    # Intel

    def intel_collateral(self, tee: str, fmspc: str) -> bytes | None:
        return self.get(self.intel_key(tee, fmspc))

    def fetch_intel_collateral(self, tee: str, fmspc: str, pck_ca: str, now: datetime) -> bytes:
        """PCS collateral for an FMSPC as one JSON document (dcap-qvl's layout).

        Cached until the TCB info's nextUpdate passes; then fetched again: TCB info and QE
        identity (each with its issuer chain from the response header), the PCK CRL of
        ``pck_ca`` ("platform" or "processor") and the Intel root CA CRL.
        """
        key = self.intel_key(tee, fmspc)
        cached = self.get(key)
        if cached is not None and not _intel_stale(cached, now):
            return cached
        tcb = self._fetch(pcs_tcb_info_url(tee, fmspc, base=self.pcs_url))
        qe = self._fetch(pcs_qe_identity_url(tee, base=self.pcs_url))
        pck_crl = self._fetch(pcs_pck_crl_url(pck_ca, base=self.pcs_url))
        root_crl = self._fetch(INTEL_ROOT_CRL_URL)
        tcb_info, tcb_sig = _signed_member(tcb.body, "tcbInfo", "TCB info")
        qe_id, qe_sig = _signed_member(qe.body, "enclaveIdentity", "QE identity")
        doc = {
            "pck_crl_issuer_chain": _header_chain(pck_crl, "sgx-pck-crl-issuer-chain"),
            "root_ca_crl": root_crl.body.hex(),
            "pck_crl": pck_crl.body.hex(),
            "tcb_info_issuer_chain": _header_chain(
                tcb, "tcb-info-issuer-chain", "sgx-tcb-info-issuer-chain"
            ),
            "tcb_info": tcb_info,
            "tcb_info_signature": tcb_sig,
            "qe_identity_issuer_chain": _header_chain(qe, "sgx-enclave-identity-issuer-chain"),
            "qe_identity": qe_id,
            "qe_identity_signature": qe_sig,
        }
        body = json.dumps(doc, indent=1).encode() + b"\n"
        self.put(key, body)
        return body


def _signed_member(body: bytes, member: str, what: str) -> tuple[str, str]:
    """The exact text of ``member`` (what Intel signed) and the hex signature beside it."""
    try:
        text = body.decode("utf-8")
        doc = json.loads(text)
        start = text.index(f'"{member}"')
        colon = text.index(":", start) + 1
        while text[colon] in " \t\r\n":
            colon += 1
        _, end = json.JSONDecoder().raw_decode(text, colon)
        signature = doc["signature"]
        if not isinstance(signature, str):
            raise TypeError("signature is not a string")
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, IndexError, RecursionError) as e:
        raise RemoteError(f"Intel PCS {what}: unexpected response: {e}") from None
    return text[colon:end], signature


def _header_chain(resp: FetchResponse, *names: str) -> str:
    for n in names:
        if n in resp.headers:
            return urllib.parse.unquote(resp.headers[n])
    raise RemoteError(f"Intel PCS response lacks the {names[0]} header")


def _intel_stale(cached: bytes, now: datetime) -> bool:
    try:
        doc: Any = json.loads(cached)
        nxt = json.loads(doc["tcb_info"])["nextUpdate"]
        return now > datetime.fromisoformat(nxt.replace("Z", "+00:00"))
    except (ValueError, KeyError, TypeError, RecursionError):
        return True
