"""Encrypted packages: the cipher, the layout, and every tampering a Keep must refuse."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from motte.oci import (
    ContentKey,
    DecryptionError,
    Encryption,
    LocalStore,
    MalformedArtifactError,
    build_package,
    decrypt_and_check,
    decrypt_file,
    decrypt_file_and_check,
    decrypt_module,
    encrypt_module,
    mediatypes,
    open_package,
    parse_reference,
)
from motte.oci._encrypt import CHUNK, HEADER, TAG
from tests.oci.workloads import make_workload

KEY = bytes(range(32))


@pytest.fixture(params=["in memory", "while read", "while read, copied"])
def decrypt(request, tmp_path, monkeypatch):
    """Each way to decrypt: decrypt_module over bytes, decrypt_file over a file (after a
    prefix, as the sealed cache stores it), and decrypt_file where AESGCM has no
    decrypt_into."""
    if request.param == "in memory":
        return decrypt_module
    if request.param == "while read, copied":
        from motte.oci import _encrypt

        monkeypatch.setattr(_encrypt, "_decrypt_into", lambda aead: None)

    def via_file(key, sealed, where, **kw):
        path = tmp_path / "sealed"
        path.write_bytes(b"prefix" + sealed)
        return bytes(decrypt_file(key, path, where, offset=6, **kw))

    return via_file


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17])
def test_round_trip(size, decrypt):
    data = os.urandom(size)
    sealed = encrypt_module(KEY, data)
    assert decrypt(KEY, sealed, "m") == data
    assert len(sealed) == HEADER + max(1, -(-size // CHUNK)) * TAG + size


def chunks(sealed: bytes) -> list[bytes]:
    body = sealed[HEADER:]
    return [body[i : i + CHUNK + TAG] for i in range(0, len(body), CHUNK + TAG)]


def test_every_tampering_fails(decrypt):
    data = os.urandom(3 * CHUNK + 5)
    sealed = encrypt_module(KEY, data)
    head, parts = sealed[:HEADER], chunks(sealed)
    flipped = bytearray(sealed)
    flipped[HEADER + CHUNK + 40] ^= 1
    cases = {
        "a flipped bit": bytes(flipped),
        "truncated at a chunk boundary": head + b"".join(parts[:2]),
        "two chunks swapped": head + parts[1] + parts[0] + b"".join(parts[2:]),
        "a chunk dropped": head + parts[0] + b"".join(parts[2:]),
        "the last chunk repeated": sealed + parts[-1],
        "another header": encrypt_module(KEY, b"x")[:HEADER] + b"".join(parts),
    }
    for what, bad in cases.items():
        with pytest.raises(DecryptionError, match="does not decrypt"):
            decrypt(KEY, bad, what)
    with pytest.raises(DecryptionError, match="does not decrypt"):
        decrypt(bytes(32), sealed, "another key")
    for what, bad in {"cut inside a tag": sealed[: HEADER + 7], "no header": b"junk"}.items():
        with pytest.raises(DecryptionError, match=r"cut off|not a MOTTE_AES_256_GCM_STREAM"):
            decrypt(KEY, bad, what)


def test_a_plaintext_other_than_the_signed_one_is_refused():
    data = b"\0asm\1\0\0\0"
    sealed = encrypt_module(KEY, data)
    right = Encryption("k", 1, "sha256:" + __import__("hashlib").sha256(data).hexdigest(), 8)
    assert decrypt_and_check(KEY, sealed, right, "m") == data
    wrong = replace(right, plaintext_digest="sha256:" + "ab" * 32)
    with pytest.raises(DecryptionError, match="not the signed sha256:abab"):
        decrypt_and_check(KEY, sealed, wrong, "m")


def test_decrypting_while_reading_checks_the_signed_plaintext_and_leaves_nothing(tmp_path):
    import hashlib

    data = b"\0asm\1\0\0\0" + os.urandom(CHUNK + 9)
    path = tmp_path / "blob"
    path.write_bytes(encrypt_module(KEY, data))
    right = Encryption("k", 1, "sha256:" + hashlib.sha256(data).hexdigest(), len(data))
    assert decrypt_file_and_check(KEY, path, right, "m") == data
    wrong = replace(right, plaintext_digest="sha256:" + "ab" * 32)
    with pytest.raises(DecryptionError, match="not the signed sha256:abab"):
        decrypt_file_and_check(KEY, path, wrong, "m")
    # A ciphertext longer than the signed size is refused before anything is decrypted.
    with pytest.raises(DecryptionError, match="is over 8 bytes"):
        decrypt_file_and_check(KEY, path, replace(right, plaintext_size=8), "m")


def test_a_failed_decryption_zeroes_what_it_had_decrypted(tmp_path, monkeypatch):
    from motte.oci import _encrypt

    data = os.urandom(2 * CHUNK + 1)
    sealed = bytearray(encrypt_module(KEY, data))
    sealed[-1] ^= 1  # the last chunk fails, after two have been opened
    path = tmp_path / "blob"
    path.write_bytes(sealed)
    seen = []
    real = _encrypt._open_chunks

    def spy(f, aead, open_into, header, buf, view, *rest):  # type: ignore[no-untyped-def]
        seen.append(view)
        return real(f, aead, open_into, header, buf, view, *rest)

    monkeypatch.setattr(_encrypt, "_open_chunks", spy)
    with pytest.raises(DecryptionError, match="chunk 2"):
        decrypt_file(KEY, path, "m")
    assert bytes(seen[0]) == bytes(len(data))


def test_an_encrypted_package_holds_only_ciphertext(tmp_path):
    directory = make_workload(tmp_path / "w")
    module = next(directory.glob("*.wasm")).read_bytes()
    store = LocalStore()
    result = build_package(
        directory,
        parse_reference("acme/secret:1.0"),
        store=store,
        content_key=ContentKey("content-key/acme/secret", 3, KEY),
    )
    package = open_package(result.reference, store=store)
    enc = package.encryption
    assert enc is not None and (enc.secret, enc.version) == ("content-key/acme/secret", 3)
    types = [layer.media_type for layer in (package.layers.module, package.layers.motte_toml)]
    assert types == [mediatypes.ENCRYPTED_MODULE_LAYER, mediatypes.MOTTE_MANIFEST_LAYER]
    ann = package.layers.module.annotations
    assert "org.opencontainers.image.enc.keys.provider.motte" in ann
    assert "org.opencontainers.image.enc.pubopts" in ann
    assert decrypt_and_check(KEY, package.module, enc, "m") == module
    for blob in (store.root / "blobs").rglob("*"):
        if blob.is_file():
            assert module not in blob.read_bytes(), blob


def test_an_encrypted_layer_beside_a_clear_module_is_malformed():
    from motte.oci import Descriptor, Manifest, workload_layers

    enc = Encryption("k", 1, "sha256:" + "00" * 32, 1)
    toml = Descriptor.of(mediatypes.MOTTE_MANIFEST_LAYER, b"x")
    sealed = Descriptor.of(mediatypes.ENCRYPTED_MODULE_LAYER, b"y", annotations=enc.annotations())
    clear = Descriptor.of(mediatypes.WASM_LAYER, b"z")
    config = Descriptor.of(mediatypes.WORKLOAD_CONFIG, b"{}")
    manifest = Manifest(config, (toml, sealed, clear), artifact_type=mediatypes.WORKLOAD_ARTIFACT)
    with pytest.raises(MalformedArtifactError, match="exactly a"):
        workload_layers(manifest)
    bad = Descriptor.of(mediatypes.ENCRYPTED_MODULE_LAYER, b"y")
    manifest = Manifest(config, (toml, bad), artifact_type=mediatypes.WORKLOAD_ARTIFACT)
    with pytest.raises(MalformedArtifactError, match=r"no org\.opencontainers\.image\.enc"):
        workload_layers(manifest)
