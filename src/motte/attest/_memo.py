"""Process-wide memos of verification work that cannot change its outcome.

A Steward verifies report after report from the same hosts: the same VCEK under the same
ASK, the same PCK chain and collateral. What is remembered here is keyed by the exact bytes
involved (certificate fingerprints, SHA-256 of collateral) and is independent of time:
that a signature verified, what a certificate's extensions say, what collateral parses to.
Validity windows, CRL freshness and revocation are checked on every call, so a memo hit
changes speed, never a verdict. Bounded (least recently used go first) and thread-safe.
:func:`clear_caches` empties them (benchmarks timing cold verification call it).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")
_MISSING = object()


class Memo:
    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_compute(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The remembered value for ``key``, else ``compute()`` remembered (exceptions are not)."""
        with self._lock:
            value = self._entries.get(key, _MISSING)
            if value is not _MISSING:
                self._entries.move_to_end(key)
                return value  # type: ignore[no-any-return]
        value = compute()
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


#: id(certificate) -> [certificate, fingerprint, common name] (see motte.attest._x509).
CERT_FACTS = Memo(1024)
#: certificate fingerprint -> True: its lazily parsed fields all parse.
CHECKED = Memo(1024)
#: (certificate fingerprint, issuer fingerprint) -> bool: whether the signature verified.
ISSUED_BY = Memo(1024)
#: certificate fingerprint -> (not valid before, not valid after).
VALIDITY = Memo(1024)
#: certificate fingerprint -> AmdKeyCertificate.
AMD_KEY_CERTS = Memo(256)
#: SHA-256 of collateral bytes -> parsed Intel Collateral.
INTEL_COLLATERAL = Memo(64)
_intel_chain_cache: Any = None
_intel_lock = threading.Lock()


def intel_chain_cache() -> Any:
    """The shared motte.attest.intel.ChainCache the recipe verifies quotes with."""
    global _intel_chain_cache
    with _intel_lock:
        if _intel_chain_cache is None:
            from motte.attest.intel import ChainCache

            _intel_chain_cache = ChainCache()
        return _intel_chain_cache


def clear_caches() -> None:
    """Forget every memo (the next verification does all its work again)."""
    from motte.attest.snp import _certs

    _certs._tcb_of.cache_clear()
    CERT_FACTS.clear()
    CHECKED.clear()
    ISSUED_BY.clear()
    VALIDITY.clear()
    AMD_KEY_CERTS.clear()
    INTEL_COLLATERAL.clear()
    with _intel_lock:
        if _intel_chain_cache is not None:
            _intel_chain_cache.clear()
