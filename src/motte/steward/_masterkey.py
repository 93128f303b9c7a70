"""The Steward's master key: what every stored secret value is sealed under.

32 random bytes, from the environment variable ``MOTTE_STEWARD_SECRETS_KEY`` when it is set
(unpadded base64url, 43 characters) or else from ``secrets.key`` in the Steward's directory
(the same text and a newline, mode 0600, owned by the Steward's user: refused otherwise, as
ssh refuses a private key others can read). ``motte steward init`` creates the file; a
Steward from before the secret store gets one on its first ``motte secret put``.

A value is sealed with AES-256-GCM under the key, a random 96-bit nonce per value, and the
secret's name and version as associated data, so a sealed value moved to another name or
version does not open::

    sealed = nonce (12) || AES-256-GCM(key, nonce, value, aad = "motte/secret-value/v1\\0"
                                                               || name || "\\0" || version)

The store records the key's *id* (a hash of the key under its own label; it reveals nothing
of the key) so that a wrong key is named as such instead of failing as "corrupt data".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from motte.steward.errors import SecretKeyError

ENV = "MOTTE_STEWARD_SECRETS_KEY"
KEY_FILE = "secrets.key"
KEY_BYTES = 32
NONCE_BYTES = 12
_ID_LABEL = b"motte/secret-master-key-id/v1\x00"
_AAD_LABEL = b"motte/secret-value/v1\x00"


def _encode(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).rstrip(b"=").decode("ascii")


def _decode(text: str, where: str) -> bytes:
    text = text.strip()
    try:
        key = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise SecretKeyError(
            f"{where}: not a master key (expected {KEY_BYTES} bytes in unpadded base64url)",
            hint="restore the key this Steward's secrets were sealed under",
        )
    return key


@dataclass(frozen=True, slots=True)
class MasterKey:
    """A master key and where it came from; never shown (``repr`` hides it)."""

    key: bytes = field(repr=False)
    source: str

    @property
    def key_id(self) -> str:
        return "mk-" + hashlib.sha256(_ID_LABEL + self.key).hexdigest()[:24]

    @staticmethod
    def _aad(name: str, version: int) -> bytes:
        return _AAD_LABEL + name.encode() + b"\x00" + str(version).encode()

    def seal(self, name: str, version: int, value: bytes) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + AESGCM(self.key).encrypt(nonce, value, self._aad(name, version))

    def open(self, name: str, version: int, sealed: bytes) -> bytes | None:
        """The value, or None when it does not open under this key (wrong key, or changed)."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if len(sealed) < NONCE_BYTES + 16:
            return None
        try:
            return AESGCM(self.key).decrypt(
                sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], self._aad(name, version)
            )
        except InvalidTag:
            return None


def new_master_key(source: str = "new") -> MasterKey:
    return MasterKey(secrets.token_bytes(KEY_BYTES), source)


def key_text(key: MasterKey) -> bytes:
    """The file's (and the environment variable's) form of a key."""
    return (_encode(key.key) + "\n").encode("ascii")


def read_key_file(path: Path) -> MasterKey | None:
    """The key in ``path``; None if there is no such file. Refused unless it is a regular
    file of this user's that nobody else can read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SecretKeyError(f"{path}: cannot open the master key: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise SecretKeyError(
                f"{path}: the master key must be a regular file owned by uid {os.geteuid()}"
            )
        if st.st_mode & 0o077:
            raise SecretKeyError(
                f"{path}: the master key is accessible to others "
                f"(mode {stat.S_IMODE(st.st_mode):04o})",
                hint=f"chmod 600 {path}",
            )
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        text = ""
    return MasterKey(_decode(text, str(path)), str(path))


def load_master_key(path: Path) -> MasterKey | None:
    """The environment's key if ``MOTTE_STEWARD_SECRETS_KEY`` is set, else ``path``'s; None
    when neither exists."""
    env = os.environ.get(ENV)
    if env:
        return MasterKey(_decode(env, ENV), ENV)
    return read_key_file(path)


def create_key_file(path: Path) -> MasterKey:
    """A new key written to ``path`` (0600, atomically, never over an existing file); the
    key that ends up in the file (another process's, if it won the race)."""
    from motte.fsutil import create_exclusive

    create_exclusive(path, key_text(new_master_key()), mode=0o600)
    key = read_key_file(path)
    assert key is not None
    return key
