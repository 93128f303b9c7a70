"""Building Stewards and Keep requests for tests, with the clock as a parameter."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from motte.attest import Evidence, bind_report_data
from motte.keep.backends import SimBackend
from motte.steward import Steward, build_keep_csr, init_steward

DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "cd" * 32


class Clock:
    """A settable clock: tests move time instead of sleeping."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_steward(
    root: Path,
    *,
    allow_insecure_sim: bool = True,
    policy: Path | None = None,
    san_allow: tuple[str, ...] = ("localhost", "127.0.0.1", "::1"),
    config: dict[str, str] | None = None,
    clock: Callable[[], float] | None = None,
    **kw: Any,
) -> Steward:
    """A new Steward under ``root``; its CA is made at the clock's time."""
    from datetime import UTC, datetime

    clock = clock or time.time
    paths = init_steward(
        root=root,
        san_allow=san_allow,
        policy=policy,
        allow_insecure_sim=allow_insecure_sim,
        now=datetime.fromtimestamp(clock(), UTC),
    )
    for key, value in (config or {}).items():
        text = paths.config.read_text()
        paths.config.write_text(re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", text))
    return Steward(paths.root, clock=clock, **kw)


def keep_csr(
    nonce: bytes,
    *,
    digest: str = DIGEST,
    bound_digest: str | None = None,
    sans: tuple[str, ...] = ("localhost",),
    key: ec.EllipticCurvePrivateKey | None = None,
    evidence: Callable[[bytes], Evidence] | None = None,
    tamper: Callable[[Evidence], Evidence] | None = None,
) -> bytes:
    """A Keep's CSR. ``bound_digest`` is what REPORT_DATA binds (default ``digest``, the one
    the CSR claims); ``evidence`` replaces the sim backend; ``tamper`` edits the evidence."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    report_data = bind_report_data(key.public_key(), bound_digest or digest, nonce)
    produce = evidence or SimBackend(allow_insecure_sim=True).evidence
    ev = produce(report_data)
    if tamper is not None:
        ev = tamper(ev)
    if sans:
        return build_keep_csr(key, ev, workload_digest=digest, nonce=nonce, sans=list(sans))
    # A CSR asking for no name at all: build_keep_csr refuses to make one.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    from motte.steward import OID_KEEP_EVIDENCE, KeepEvidence

    value = KeepEvidence(ev.kind, ev.raw, digest, nonce, ev.certs).to_der()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(OID_KEEP_EVIDENCE), value),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER)


def flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 1]) + data[offset + 1 :]


def failed(decision: Any) -> list[str]:
    rules = [r.rule for r in decision.rules if r.outcome == "fail"]
    if decision.verdict is not None:
        rules += [r.rule for r in decision.verdict.failures]
    return rules
