import os
import stat

import pytest

from motte.sign import (
    KeyFileError,
    KeyNotFoundError,
    PublicKey,
    SigningUsageError,
    generate_key,
    keys_dir,
    list_keys,
    load_private_key,
    load_public_key,
    save_key_pair,
)


@pytest.mark.parametrize("key_type", ["ed25519", "ecdsa-p256"])
def test_save_and_load(key_type, tmp_path, monkeypatch):
    key = generate_key(key_type)
    priv, pub = save_key_pair(key, "alice")
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    monkeypatch.chdir(tmp_path)
    (tmp_path / "alice").mkdir()  # a directory of the same name does not shadow the key
    loaded = load_private_key("alice")  # by name
    assert loaded.keyid == key.keyid and loaded.key_type == key_type
    assert load_public_key(pub) == key.public  # by path
    signature = loaded.sign(b"m")
    load_public_key("alice").verify(signature, b"m")
    assert [(n, k.keyid, p) for n, k, p in list_keys()] == [("alice", key.keyid, True)]


def test_keyid_is_the_sha256_of_the_spki():
    import hashlib

    key = generate_key()
    assert key.keyid == hashlib.sha256(key.public.spki_der).hexdigest()
    assert PublicKey.from_pem(key.public.to_pem(), "x").keyid == key.keyid


def test_never_overwrites_a_key():
    save_key_pair(generate_key(), "k")
    with pytest.raises(SigningUsageError, match="exists already"):
        save_key_pair(generate_key(), "k")


def test_a_private_key_others_can_read_is_refused():
    priv, _ = save_key_pair(generate_key(), "k")
    os.chmod(priv, 0o644)
    with pytest.raises(KeyFileError) as e:
        load_private_key("k")
    assert "readable by others" in e.value.message and e.value.hint == f"chmod 600 {priv}"


def test_encrypted_keys_need_the_passphrase(monkeypatch):
    save_key_pair(generate_key(), "k", passphrase=b"s3cret")
    assert b"ENCRYPTED" in (keys_dir() / "k.key").read_bytes()
    with pytest.raises(KeyFileError) as e:
        load_private_key("k")
    assert "MOTTE_KEY_PASSPHRASE" in (e.value.hint or "")
    monkeypatch.setenv("MOTTE_KEY_PASSPHRASE", "wrong")
    with pytest.raises(KeyFileError):
        load_private_key("k")
    monkeypatch.setenv("MOTTE_KEY_PASSPHRASE", "s3cret")
    assert load_private_key("k").key_type == "ed25519"


def test_other_key_types_are_refused(tmp_path):
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    for key, name in (
        (rsa.generate_private_key(65537, 2048), "RSA"),
        (ec.generate_private_key(ec.SECP384R1()), "EllipticCurve"),
    ):
        path = tmp_path / f"{name}.pub"
        path.write_bytes(
            key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        )
        with pytest.raises(KeyFileError) as e:
            load_public_key(path)
        assert "Ed25519 or ECDSA P-256 only" in (e.value.hint or "")
    with pytest.raises(SigningUsageError):
        generate_key("rsa")


def test_missing_and_misused_keys(tmp_path):
    with pytest.raises(KeyNotFoundError, match="no such file"):
        load_private_key("nobody")
    (tmp_path / "k").mkdir()  # a directory named like a key is not the key
    with pytest.raises(KeyNotFoundError):
        load_private_key(tmp_path / "k")
    priv, _ = save_key_pair(generate_key(), "k")
    with pytest.raises(KeyFileError, match="is a private key"):
        load_public_key(priv)
    garbage = tmp_path / "g.pub"
    garbage.write_text("not a key")
    with pytest.raises(KeyFileError, match="not a PEM public key"):
        load_public_key(garbage)
    with pytest.raises(SigningUsageError):
        save_key_pair(generate_key(), "../escape")


def test_signature_failure_is_an_error_not_a_bool():
    key = generate_key("ecdsa-p256")
    from motte.sign import SignatureError

    with pytest.raises(SignatureError):
        key.public.verify(key.sign(b"a"), b"b")
