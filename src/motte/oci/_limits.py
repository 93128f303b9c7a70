"""Bounds on everything read from a store or a registry, so a hostile peer cannot exhaust memory
or disk. Going past one raises :class:`TooLargeError` naming the object and the bound."""

from __future__ import annotations

from dataclasses import dataclass

from motte.oci import _mediatypes as mt

MiB = 1 << 20


@dataclass(frozen=True, slots=True)
class Limits:
    #: Manifests and indexes are read into memory (4 MiB is distribution's own limit).
    max_manifest_bytes: int = 4 * MiB
    #: A Wasm module: streamed to disk, never held whole while downloading.
    max_module_bytes: int = 1024 * MiB
    #: Motte.toml, the config blob, DSSE envelopes, log proofs: read into memory.
    max_small_blob_bytes: int = 4 * MiB
    #: Referrers listed for one artifact (signatures, provenance, reviews).
    max_referrers: int = 1000
    #: Pages followed when a referrers answer is paginated (Link: rel="next").
    max_referrer_pages: int = 64

    def blob_limit(self, media_type: str) -> int:
        if media_type in (mt.MOTTE_MODULE_LAYER, mt.WASM_LAYER, mt.ENCRYPTED_MODULE_LAYER):
            return self.max_module_bytes
        return self.max_small_blob_bytes


DEFAULT_LIMITS = Limits()
