"""Signing keys: Ed25519 and ECDSA P-256, nothing else, as PEM files.

Private keys are PKCS#8 PEM, written owner-only (0600) and refused when group- or
world-readable (as ssh refuses them). They are encrypted when ``MOTTE_KEY_PASSPHRASE`` is set
(the passphrase never comes from a flag). Public keys are SubjectPublicKeyInfo PEM.

A key's ``keyid`` is the SHA-256 of its DER SubjectPublicKeyInfo, in hex. It is a hint for
finding the right key, never a proof of which key signed: verification always uses the key.
ECDSA signatures are DER-encoded over SHA-256 (what DSSE implementations exchange).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from motte.home import motte_home
from motte.sign._errors import KeyFileError, KeyNotFoundError, SignatureError, SigningUsageError

KEY_TYPES = ("ed25519", "ecdsa-p256")
ENV_PASSPHRASE = "MOTTE_KEY_PASSPHRASE"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_FILE_SUFFIXES = (".key", ".pub", ".pem")
_MAX_KEY_FILE = 64 * 1024


def keys_dir() -> Path:
    """Where ``motte key new`` keeps key pairs: ``MOTTE_HOME/keys/signing``."""
    return motte_home() / "keys" / "signing"


def keyid_of(spki_der: bytes) -> str:
    return hashlib.sha256(spki_der).hexdigest()


@dataclass(frozen=True, slots=True)
class PublicKey:
    key_type: str
    spki_der: bytes
    keyid: str = field(init=False)
    _key: Any = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keyid", keyid_of(self.spki_der))

    @classmethod
    def from_spki_der(cls, der: bytes, where: str = "public key") -> PublicKey:
        from cryptography.hazmat.primitives.serialization import load_der_public_key

        try:
            key = load_der_public_key(der)
        except (ValueError, TypeError) as e:
            raise KeyFileError(f"{where}: not a DER SubjectPublicKeyInfo: {e}") from None
        return cls(_key_type(key, where), der, key)

    @classmethod
    def from_pem(cls, data: bytes, where: str) -> PublicKey:
        from cryptography.hazmat.primitives.serialization import (
            Encoding,
            PublicFormat,
            load_pem_public_key,
        )

        try:
            key = load_pem_public_key(data)
        except (ValueError, TypeError) as e:
            raise KeyFileError(f"{where}: not a PEM public key: {e}") from None
        der = key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        return cls(_key_type(key, where), der, key)

    def to_pem(self) -> bytes:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        return self._loaded().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)

    def _loaded(self) -> Any:
        if self._key is None:
            from cryptography.hazmat.primitives.serialization import load_der_public_key

            object.__setattr__(self, "_key", load_der_public_key(self.spki_der))
        return self._key

    def verify(self, signature: bytes, message: bytes) -> None:
        """Return None if ``signature`` is this key's over ``message``; else SignatureError."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        key = self._loaded()
        try:
            if self.key_type == "ed25519":
                key.verify(signature, message)
            else:
                key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise SignatureError(f"signature does not verify with key {self.keyid[:16]}") from None


@dataclass(frozen=True, slots=True)
class PrivateKey:
    key_type: str
    public: PublicKey
    _key: Any = field(repr=False, compare=False)

    @property
    def keyid(self) -> str:
        return self.public.keyid

    def sign(self, message: bytes) -> bytes:
        if self.key_type == "ed25519":
            return self._key.sign(message)  # type: ignore[no-any-return]
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        return self._key.sign(message, ec.ECDSA(hashes.SHA256()))  # type: ignore[no-any-return]

    def to_pem(self, passphrase: bytes | None = None) -> bytes:
        from cryptography.hazmat.primitives.serialization import (
            BestAvailableEncryption,
            Encoding,
            NoEncryption,
            PrivateFormat,
        )

        enc = BestAvailableEncryption(passphrase) if passphrase else NoEncryption()
        return self._key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, enc)  # type: ignore[no-any-return]

    @classmethod
    def from_pem(cls, data: bytes, where: str, passphrase: bytes | None = None) -> PrivateKey:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        try:
            key = load_pem_private_key(data, password=passphrase)
        except TypeError as e:
            if "encrypted" in str(e) or "password" in str(e).lower():
                hint = f"set {ENV_PASSPHRASE}" if passphrase is None else None
                raise KeyFileError(f"{where}: {e}", hint=hint) from None
            raise KeyFileError(f"{where}: {e}") from None
        except ValueError as e:
            raise KeyFileError(f"{where}: not a usable PEM private key: {e}") from None
        return cls._wrap(key, where)

    @classmethod
    def _wrap(cls, key: Any, where: str) -> PrivateKey:
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        pub = key.public_key()
        der = pub.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        key_type = _key_type(pub, where)
        return cls(key_type, PublicKey(key_type, der, pub), key)


def _key_type(key: Any, where: str) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if isinstance(key, (ed25519.Ed25519PublicKey, ed25519.Ed25519PrivateKey)):
        return "ed25519"
    if isinstance(key, (ec.EllipticCurvePublicKey, ec.EllipticCurvePrivateKey)) and isinstance(
        key.curve, ec.SECP256R1
    ):
        return "ecdsa-p256"
    raise KeyFileError(
        f"{where}: {type(key).__name__.lstrip('_')} keys are not accepted",
        hint="motte signs with Ed25519 or ECDSA P-256 only (motte key new --type ...)",
    )


def generate_key(key_type: str = "ed25519") -> PrivateKey:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if key_type == "ed25519":
        key: Any = ed25519.Ed25519PrivateKey.generate()
    elif key_type == "ecdsa-p256":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        raise SigningUsageError(f"key type {key_type!r} is not one of {', '.join(KEY_TYPES)}")
    return PrivateKey._wrap(key, "new key")


def passphrase_from_env() -> bytes | None:
    value = os.environ.get(ENV_PASSPHRASE)
    return value.encode() if value else None


def check_key_name(name: str) -> str:
    if not _NAME_RE.fullmatch(name) or name.endswith(_FILE_SUFFIXES):
        raise SigningUsageError(
            f"key name {name!r}: use letters, digits, . _ - (at most 64, no .key/.pub suffix)"
        )
    return name


def save_key_pair(
    key: PrivateKey, name: str, directory: Path | None = None, *, passphrase: bytes | None = None
) -> tuple[Path, Path]:
    """Write ``name.key`` (0600) and ``name.pub``; refuse to overwrite an existing key."""
    directory = directory or keys_dir()
    check_key_name(name)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    priv_path, pub_path = directory / f"{name}.key", directory / f"{name}.pub"
    if priv_path.exists() or pub_path.exists():
        raise SigningUsageError(
            f"{priv_path}: a key named {name!r} exists already",
            hint="pick another name; motte never overwrites a key",
        )
    # O_EXCL: a key file is created once, by us, owner-only from its first byte.
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key.to_pem(passphrase))
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        priv_path.unlink(missing_ok=True)
        raise
    from motte.fsutil import atomic_write_bytes

    atomic_write_bytes(pub_path, key.public.to_pem(), mode=0o644)
    return priv_path, pub_path


def _resolve(spec: str | Path, suffix: str) -> Path:
    """A key file: ``spec`` as a key name in :func:`keys_dir` first, else as a file path.

    Names win so that ``--key acme-root`` means the key even when a directory of that name
    (a root's versions, say) is in the working directory.
    """
    if isinstance(spec, str) and _NAME_RE.fullmatch(spec):
        named = keys_dir() / f"{spec}{suffix}"
        if named.is_file():
            return named
    path = Path(spec)
    if path.is_file():
        return path
    if isinstance(spec, str) and _NAME_RE.fullmatch(spec) and not spec.endswith(_FILE_SUFFIXES):
        what = f"key {spec!r}: no {spec}{suffix} in {keys_dir()} and no such file"
    else:
        what = f"key file {str(spec)!r}: no such file"
    raise KeyNotFoundError(what, hint="motte key list shows the keys; motte key new NAME makes one")


def _read_key_file(path: Path) -> bytes:
    try:
        if path.stat().st_size > _MAX_KEY_FILE:
            raise KeyFileError(f"{path}: larger than {_MAX_KEY_FILE} bytes, not a key file")
        return path.read_bytes()
    except OSError as e:
        raise KeyFileError(f"{path}: {e.strerror}") from None


def load_private_key(spec: str | Path, *, passphrase: bytes | None = None) -> PrivateKey:
    """A private key by path or by name in :func:`keys_dir`; refused if others can read it."""
    path = _resolve(spec, ".key")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise KeyFileError(
            f"{path}: private key is readable by others (mode {mode:o})", hint=f"chmod 600 {path}"
        )
    return PrivateKey.from_pem(
        _read_key_file(path), str(path), passphrase if passphrase else passphrase_from_env()
    )


def load_public_key(spec: str | Path) -> PublicKey:
    """A public key by path (a .pub PEM) or by name in :func:`keys_dir`."""
    path = _resolve(spec, ".pub")
    data = _read_key_file(path)
    if b"PRIVATE KEY" in data:
        raise KeyFileError(
            f"{path}: is a private key; give the public key (.pub)",
            hint="a verifier needs only the public half",
        )
    return PublicKey.from_pem(data, str(path))


def list_keys(directory: Path | None = None) -> list[tuple[str, PublicKey, bool]]:
    """(name, public key, has private key) for each key pair in the directory."""
    directory = directory or keys_dir()
    out = []
    for pub in sorted(directory.glob("*.pub")) if directory.exists() else []:
        name = pub.name[: -len(".pub")]
        out.append(
            (
                name,
                PublicKey.from_pem(_read_key_file(pub), str(pub)),
                pub.with_suffix(".key").exists(),
            )
        )
    return out
