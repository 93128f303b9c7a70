"""The AMD trust anchors motte ships: ARK and ASK/ASVK per product, pinned by fingerprint.

The PEM files under ``motte/attest/roots/`` are AMD KDS ``cert_chain`` files (ASK or ASVK
first, ARK second); roots/PROVENANCE.md says where each came from. At load every ARK must be
self-signed, every ASK/ASVK must be signed by its ARK, and both must have the SHA-256
fingerprints written below, so an edited package file is refused rather than trusted.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from motte.attest._x509 import common_name, fingerprint, load_pem_certificates, pin_facts
from motte.attest.errors import CollateralError

if TYPE_CHECKING:
    from cryptography import x509

#: (product, key type) -> (file, ASK/ASVK SHA-256, ARK SHA-256).
PINNED_AMD_CHAINS: dict[tuple[str, str], tuple[str, str, str]] = {
    ("Milan", "vcek"): (
        "ask_ark_milan.pem",
        "67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b",
        "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    ),
    ("Milan", "vlek"): (
        "ask_ark_milan_vlek.pem",
        "c5e081f59b7efab1fe2f8b505e159704e72f29cab7ef7cf628a05a42439082f5",
        "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    ),
    ("Genoa", "vcek"): (
        "ask_ark_genoa.pem",
        "5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521",
        "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    ),
    ("Genoa", "vlek"): (
        "ask_ark_genoa_vlek.pem",
        "197e610743a917d6b9bb982a5a9226ccc0a15b611be0619e626aca9151457372",
        "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    ),
    ("Turin", "vcek"): (
        "ask_ark_turin_vcek.pem",
        "5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185",
        "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
    ),
    ("Turin", "vlek"): (
        "ask_ark_turin_vlek.pem",
        "104e10a8bd060a3c20a434261a57d0588fd65a88915b4f65b08bdecaf8df1a3c",
        "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
    ),
}


@dataclass(frozen=True, slots=True)
class AmdChain:
    """One product's CA chain for one key type: the ARK and the ASK (VCEK) or ASVK (VLEK)."""

    product: str
    key_type: str
    ark: x509.Certificate
    ask: x509.Certificate


@dataclass(frozen=True, slots=True)
class AmdRoots:
    """The AMD chains a verifier trusts, keyed by (product, key type)."""

    chains: Mapping[tuple[str, str], AmdChain]

    def chain(self, product: str, key_type: str) -> AmdChain:
        try:
            return self.chains[(product, key_type)]
        except KeyError:
            raise CollateralError(
                f"no trusted AMD {product} {key_type.upper()} chain",
                hint="the pinned roots cover Milan, Genoa and Turin, VCEK and VLEK",
            ) from None


def _load_pinned(file: str, ask_fp: str, ark_fp: str, product: str, key_type: str) -> AmdChain:
    data = resources.files("motte.attest").joinpath("roots", file).read_bytes()
    certs = load_pem_certificates(data, f"pinned root {file}")
    if len(certs) != 2:
        raise CollateralError(f"pinned root {file}: expected ASK and ARK, found {len(certs)}")
    ask, ark = certs
    if fingerprint(ask) != ask_fp or fingerprint(ark) != ark_fp:
        raise CollateralError(
            f"pinned root {file}: fingerprint differs from the one built into motte",
            hint="the installed package was modified; reinstall motte",
        )
    try:
        ark.verify_directly_issued_by(ark)
        ask.verify_directly_issued_by(ark)
    except Exception as e:  # InvalidSignature, ValueError, TypeError from cryptography
        raise CollateralError(f"pinned root {file}: chain does not verify: {e}") from None
    want_ark = f"ARK-{product}"
    if common_name(ark) != want_ark:
        raise CollateralError(f"pinned root {file}: ARK CN {common_name(ark)!r} != {want_ark!r}")
    pin_facts(ark)
    pin_facts(ask)
    return AmdChain(product, key_type, ark, ask)


@functools.cache
def pinned_amd_roots() -> AmdRoots:
    """The AMD roots shipped with motte (loaded and checked once per process)."""
    return AmdRoots(
        {
            key: _load_pinned(file, ask_fp, ark_fp, *key)
            for key, (file, ask_fp, ark_fp) in PINNED_AMD_CHAINS.items()
        }
    )
