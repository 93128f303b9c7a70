"""Encrypted workload packages: ocicrypt's envelope, a motte cipher, the key in the Steward.

``motte package DIR --encrypt`` packages the module as ciphertext under a fresh 256-bit
content key; the key is a Steward secret (motte.steward), released only to Keeps its
release policy accepts. An encrypted package's layers::

    config   application/vnd.motte.workload.config.v1+json   (as ever)
    layer 0  application/vnd.motte.manifest.v1+toml         Motte.toml, in clear
    layer 1  application/vnd.motte.module.v1+wasm+encrypted the module's ciphertext

There is no ``application/wasm`` layer: no tool may take ciphertext for a module. Following
ocicrypt (containers/ocicrypt spec), the encrypted layer's media type is its clear type
plus ``+encrypted``, its public options are base64 JSON in
``org.opencontainers.image.enc.pubopts``, and the key is named (never carried: it is not
wrapped into the artifact at all) by a provider annotation,
``org.opencontainers.image.enc.keys.provider.motte``: base64 JSON ``{"kid":
"motte-steward:<secret name>", "secret": NAME, "version": N}``, as CoCo's key provider
names a KBS resource. Two motte annotations carry what a Keep checks after decrypting:
``dev.motte.plaintext.digest`` and ``dev.motte.plaintext.size``. They are in the OCI
manifest, so the package digest (what a publisher signs and a Keep attests) covers them:
the plaintext digest is signed.

The cipher (``MOTTE_AES_256_GCM_STREAM``) is not ocicrypt's AES-CTR + HMAC checked only at
the end: it is the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015) over
AES-256-GCM, so every 1 MiB chunk is authenticated on its own, in order, and a truncated
stream fails::

    header = "motte-aead-stream-v1\\n" || u32be(chunk size) || nonce prefix (7 random bytes)
    chunk i = AES-256-GCM(key, nonce = prefix || u32be(i) || last ? 0x01 : 0x00,
                          plaintext[i], aad = header)
    ciphertext = header || chunk 0 || chunk 1 || ... (the last one flagged, maybe short)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from typing import Any

from motte._digest import is_digest
from motte.oci._errors import MalformedArtifactError, OciError

ENCRYPTED_SUFFIX = "+encrypted"
ANN_PROVIDER = "org.opencontainers.image.enc.keys.provider.motte"
ANN_PUBOPTS = "org.opencontainers.image.enc.pubopts"
ANN_PLAINTEXT_DIGEST = "dev.motte.plaintext.digest"
ANN_PLAINTEXT_SIZE = "dev.motte.plaintext.size"
CIPHER = "MOTTE_AES_256_GCM_STREAM"
MAGIC = b"motte-aead-stream-v1\n"
#: 1 MiB: big enough that the per-call cost vanishes, small enough to stay in cache.
CHUNK = 1024 * 1024
PREFIX = 7
HEADER = len(MAGIC) + 4 + PREFIX
TAG = 16
KEY_BYTES = 32


class DecryptionError(OciError):
    """An encrypted layer that does not decrypt under its key, or whose plaintext is not the
    one the package's signed manifest names."""


@dataclass(frozen=True, slots=True)
class ContentKey:
    """A package's content key and the Steward secret that holds it. ``repr`` hides it."""

    secret: str
    version: int
    key: bytes = field(repr=False)

    @staticmethod
    def generate() -> bytes:
        return secrets.token_bytes(KEY_BYTES)


@dataclass(frozen=True, slots=True)
class Encryption:
    """What an encrypted layer's annotations say (checked when read)."""

    secret: str
    version: int
    plaintext_digest: str
    plaintext_size: int
    cipher: str = CIPHER
    chunk_size: int = CHUNK

    def annotations(self) -> dict[str, str]:
        def b64json(obj: Any) -> str:
            return base64.b64encode(json.dumps(obj, sort_keys=True).encode()).decode()

        return {
            ANN_PROVIDER: b64json(
                {"kid": f"motte-steward:{self.secret}", "secret": self.secret,
                 "version": self.version}
            ),
            ANN_PUBOPTS: b64json({"cipher": self.cipher, "chunk_size": self.chunk_size}),
            ANN_PLAINTEXT_DIGEST: self.plaintext_digest,
            ANN_PLAINTEXT_SIZE: str(self.plaintext_size),
        }  # fmt: skip

    @classmethod
    def from_annotations(cls, ann: dict[str, str], where: str) -> Encryption:
        def b64json(key: str) -> dict[str, Any]:
            try:
                obj = json.loads(base64.b64decode(ann[key], validate=True))
            except KeyError:
                raise MalformedArtifactError(f"{where}: no {key} annotation") from None
            except ValueError:
                raise MalformedArtifactError(f"{where}: {key} is not base64 JSON") from None
            if not isinstance(obj, dict):
                raise MalformedArtifactError(f"{where}: {key} is not a JSON object")
            return obj

        provider, options = b64json(ANN_PROVIDER), b64json(ANN_PUBOPTS)
        secret, version = provider.get("secret"), provider.get("version")
        if not isinstance(secret, str) or not secret:
            raise MalformedArtifactError(f"{where}: {ANN_PROVIDER} names no secret")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise MalformedArtifactError(f"{where}: {ANN_PROVIDER} names no version")
        if options.get("cipher") != CIPHER or options.get("chunk_size") != CHUNK:
            raise MalformedArtifactError(
                f"{where}: cipher {options.get('cipher')!r} (chunk {options.get('chunk_size')!r}); "
                f"this motte reads {CIPHER} with {CHUNK}-byte chunks"
            )
        digest = ann.get(ANN_PLAINTEXT_DIGEST)
        size = ann.get(ANN_PLAINTEXT_SIZE, "")
        if not is_digest(digest) or not size.isdigit():
            raise MalformedArtifactError(f"{where}: no valid plaintext digest and size")
        assert digest is not None
        return cls(secret, version, digest, int(size))


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def encrypt_module(key: bytes, plaintext: bytes | memoryview) -> bytes:
    """The ciphertext of ``plaintext`` (see the module doc)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    view = memoryview(plaintext)
    header = MAGIC + CHUNK.to_bytes(4, "big") + secrets.token_bytes(PREFIX)
    prefix = header[-PREFIX:]
    aead = AESGCM(key)
    count = max(1, -(-len(view) // CHUNK))
    if count >= 2**32:
        raise OciError("a module this large cannot be encrypted")
    parts = [header]
    for i in range(count):
        chunk = view[i * CHUNK : (i + 1) * CHUNK]
        parts.append(aead.encrypt(_nonce(prefix, i, i == count - 1), chunk, header))
    return b"".join(parts)


def decrypt_module(
    key: bytes, ciphertext: bytes | memoryview, where: str, *, hasher: Any = None
) -> bytes:
    """The plaintext; DecryptionError if any chunk was changed, moved, dropped or added.
    ``hasher`` (a hashlib object) is fed each chunk as it is decrypted, while it is hot."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    view = memoryview(ciphertext)
    if len(view) < HEADER + TAG or bytes(view[: len(MAGIC)]) != MAGIC:
        raise DecryptionError(f"{where}: not a {CIPHER} ciphertext")
    header = bytes(view[:HEADER])
    if int.from_bytes(header[len(MAGIC) : len(MAGIC) + 4], "big") != CHUNK:
        raise DecryptionError(f"{where}: unexpected chunk size")
    prefix = header[-PREFIX:]
    aead = AESGCM(key)
    body = view[HEADER:]
    step = CHUNK + TAG
    count = max(1, -(-len(body) // step))
    parts = []
    try:
        for i in range(count):
            chunk = body[i * step : (i + 1) * step]
            part = aead.decrypt(_nonce(prefix, i, i == count - 1), chunk, header)
            if hasher is not None:
                hasher.update(part)
            parts.append(part)
    except InvalidTag:
        raise DecryptionError(
            f"{where}: the encrypted module does not decrypt under its content key (chunk {i} "
            "was changed, reordered or cut off, or the key is not this package's)"
        ) from None
    return b"".join(parts)


def decrypt_and_check(key: bytes, ciphertext: bytes, enc: Encryption, where: str) -> bytes:
    """Decrypt, then check the plaintext against the digest the signed manifest names."""
    hasher = hashlib.sha256()
    plaintext = decrypt_module(key, ciphertext, where, hasher=hasher)
    _check_plaintext(hasher, len(plaintext), enc, where)
    return plaintext


def _check_plaintext(hasher: Any, size: int, enc: Encryption, where: str) -> None:
    digest = "sha256:" + hasher.hexdigest()
    if digest != enc.plaintext_digest or size != enc.plaintext_size:
        raise DecryptionError(
            f"{where}: the decrypted module is {digest} ({size} bytes), not the "
            f"signed {enc.plaintext_digest} ({enc.plaintext_size} bytes)",
            hint="the package was made with another module than its manifest names: refuse it",
        )


def _decrypt_into(aead: Any) -> Any:
    """``aead.decrypt_into`` (opens a chunk straight into a buffer) where this cryptography
    has it; else None, and each chunk is opened, then copied."""
    return getattr(aead, "decrypt_into", None)


def _read_exactly(f: Any, view: memoryview) -> int:
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def decrypt_file(
    key: bytes,
    path: str | os.PathLike[str],
    where: str,
    *,
    offset: int = 0,
    hasher: Any = None,
    max_plaintext: int | None = None,
) -> bytearray:
    """The plaintext of the ciphertext stored in ``path`` from byte ``offset``, decrypted
    **while it is read**: each chunk is read into one reused buffer and opened straight
    into the plaintext's buffer (no copy of the ciphertext in memory, no joining), and fed
    to ``hasher`` while it is hot. Nothing is hashed but the plaintext: the AEAD
    authenticates every chunk, and a caller checks the plaintext against its signed digest.

    DecryptionError as :func:`decrypt_module`; OSError if the file cannot be read."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    with open(path, "rb", buffering=0) as f:  # unbuffered: read straight into our buffer
        size = os.fstat(f.fileno()).st_size - offset
        f.seek(offset)
        header = f.read(HEADER) if size >= HEADER else b""
        if len(header) < HEADER or size < HEADER + TAG or not header.startswith(MAGIC):
            raise DecryptionError(f"{where}: not a {CIPHER} ciphertext")
        if int.from_bytes(header[len(MAGIC) : len(MAGIC) + 4], "big") != CHUNK:
            raise DecryptionError(f"{where}: unexpected chunk size")
        body = size - HEADER
        step = CHUNK + TAG
        count = max(1, -(-body // step))
        last = body - (count - 1) * step
        if last < TAG:
            raise DecryptionError(f"{where}: the encrypted module was cut off")
        plain = body - count * TAG
        if max_plaintext is not None and plain > max_plaintext:
            raise DecryptionError(f"{where}: the encrypted module is over {max_plaintext} bytes")
        out = bytearray(plain)
        view = memoryview(out)
        buf = memoryview(bytearray(step))
        aead = AESGCM(key)
        open_into = _decrypt_into(aead)
        try:
            _open_chunks(f, aead, open_into, header, buf, view, count, last, hasher, where)
        except BaseException:
            view[:] = bytes(len(view))  # nothing half-decrypted stays in memory
            raise
        return out


def _open_chunks(
    f: Any,
    aead: Any,
    open_into: Any,
    header: bytes,
    buf: memoryview,
    view: memoryview,
    count: int,
    last: int,
    hasher: Any,
    where: str,
) -> None:
    from cryptography.exceptions import InvalidTag

    prefix = header[-PREFIX:]
    step = CHUNK + TAG
    pos = 0
    for i in range(count):
        n = step if i < count - 1 else last
        if _read_exactly(f, buf[:n]) != n:
            raise DecryptionError(f"{where}: the encrypted module was cut off while read")
        target = view[pos : pos + n - TAG]
        nonce = _nonce(prefix, i, i == count - 1)
        try:
            if open_into is not None:
                open_into(nonce, buf[:n], header, target)
            else:
                target[:] = aead.decrypt(nonce, buf[:n], header)
        except InvalidTag:
            raise DecryptionError(
                f"{where}: the encrypted module does not decrypt under its content key "
                f"(chunk {i} was changed, reordered or cut off, or the key is not this "
                "package's)"
            ) from None
        if hasher is not None:
            hasher.update(target)
        pos += n - TAG


def decrypt_file_and_check(
    key: bytes, path: str | os.PathLike[str], enc: Encryption, where: str
) -> bytearray:
    """:func:`decrypt_file`, then the plaintext checked against the signed digest and size;
    refused before it is read when the file cannot hold that size."""
    hasher = hashlib.sha256()
    plaintext = decrypt_file(key, path, where, hasher=hasher, max_plaintext=enc.plaintext_size)
    try:
        _check_plaintext(hasher, len(plaintext), enc, where)
    except DecryptionError:
        plaintext[:] = bytes(len(plaintext))
        raise
    return plaintext
