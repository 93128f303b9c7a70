"""What ``motte run`` says about its listeners: the loud lines, without serving."""

from __future__ import annotations

import logging

import pytest

from motte.keep.serve import BoundListener, TlsIdentity, self_signed_identity
from motte.keep.serve._run import _describe, warn_about

WEB = BoundListener("web", "http", True, 8443, (("::", 8443),))
RAW = BoundListener("raw", "tcp", False, 9000, (("::", 9000),))


def test_a_self_signed_identity_is_announced_loudly(caplog: pytest.LogCaptureFixture) -> None:
    identity = self_signed_identity()
    with caplog.at_level(logging.INFO, "motte.keep.serve"):
        warn_about([WEB], identity)
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert "UNATTESTED KEEP" in record.getMessage()
    assert identity.leaf_sha256 in record.getMessage()
    assert _describe(WEB, identity) == "HTTP, TLS 1.3, SELF-SIGNED, attests nothing"


def test_plain_text_is_announced_loudly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "motte.keep.serve"):
        warn_about([RAW], None)
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "serves PLAIN TEXT (tls = false)" in caplog.text
    assert _describe(RAW, None) == "TCP, plain text"


def test_an_attested_identity_is_described_not_warned(caplog: pytest.LogCaptureFixture) -> None:
    own = self_signed_identity()
    attested = TlsIdentity(
        own.certificate_chain_pem,
        own.private_key_pem,
        attested=True,
        description="issued by https://steward.example for a sim keep",
    )
    with caplog.at_level(logging.INFO, "motte.keep.serve"):
        warn_about([WEB], attested)
    assert caplog.records == []
    assert _describe(WEB, attested) == (
        "HTTP, TLS 1.3, attested: issued by https://steward.example for a sim keep"
    )
