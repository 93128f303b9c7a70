"""The compiled-artifact cache: compile a module once, deserialize it on later runs.

Deserializing runs native code straight from the artifact, so an entry is trusted only if
it carries a valid HMAC-SHA256 under this installation's cache key. Entries live under
``motte_home()/cache/compiled/<key>.cwasm``:

    b"motte-cwasm-v1\\n"  tag (32 bytes)  artifact (wasmtime's serialized module/component)

    key = SHA-256(workload digest, kind, engine fingerprint)  (hex; the file name)
    tag = HMAC-SHA256(cache key, magic || key || artifact)

The cache key covers the module digest, the engine configuration and the wasmtime build, so
an entry can neither be moved to another module's name nor replayed into another engine. The
HMAC key is 32 random bytes in ``motte_home()/keys/compiled-cache.key`` (mode 0600, created
on first use and refused if others can read it). A missing, truncated, corrupt, foreign-key or
wrong-format entry is a miss: the caller recompiles and the entry is replaced, atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import stat
from pathlib import Path
from typing import NamedTuple

from motte.errors import ExitStatus, MotteError
from motte.home import home_dir, motte_home

MAGIC = b"motte-cwasm-v1\n"
SEALED_MAGIC = b"motte-cwasm-sealed-v1\n"
TAG_BYTES = 32
KEY_BYTES = 32
KEY_FILE = "compiled-cache.key"
SUFFIX = ".cwasm"


class CacheKeyError(MotteError):
    """The cache's HMAC key cannot be trusted (wrong owner, mode or size)."""

    exit_status = ExitStatus.RUN_ERROR


class CacheInfo(NamedTuple):
    directory: Path
    entries: int
    bytes: int
    key_file: Path
    key_present: bool


def cache_dir() -> Path:
    return motte_home() / "cache" / "compiled"


def key_path() -> Path:
    return motte_home() / "keys" / KEY_FILE


def _read_key(path: Path) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CacheKeyError(
            f"{path}: cannot open the cache key: {e.strerror}",
            hint=f"remove it (rm {path}) and run `motte cache clear`",
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise CacheKeyError(
                f"{path}: the cache key must be a regular file owned by uid {os.geteuid()}",
                hint=f"remove it (rm {path}) and run `motte cache clear`",
            )
        if st.st_mode & 0o077:
            raise CacheKeyError(
                f"{path}: the cache key is accessible to others "
                f"(mode {stat.S_IMODE(st.st_mode):04o})",
                hint=f"chmod 600 {path}, or remove it and run `motte cache clear`",
            )
        key = os.read(fd, KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(key) != KEY_BYTES:
        raise CacheKeyError(
            f"{path}: the cache key has {len(key)} bytes, expected {KEY_BYTES}",
            hint=f"remove it (rm {path}) and run `motte cache clear`",
        )
    return key


def load_or_create_key() -> bytes:
    """This installation's cache key, created (0600, atomically, race-free) on first use."""
    path = key_path()
    key = _read_key(path)
    if key is not None:
        return key
    from motte.fsutil import create_exclusive

    home_dir("keys", private=True)
    # Another process creating the key at the same moment wins or loses the race as a
    # whole: either way, both use the one key that ends up in the file.
    create_exclusive(path, os.urandom(KEY_BYTES), mode=0o600)
    key = _read_key(path)
    assert key is not None
    return key


def cache_key(digest: str, kind: str, fingerprint: str, *, sealed: bool = False) -> str:
    """The entry name for a workload compiled by one engine configuration (a sealed entry,
    of an encrypted module, has a name of its own)."""
    label = "motte sealed compiled artifact" if sealed else "motte compiled artifact"
    material = f"{label}\n{digest}\n{kind}\n{fingerprint}\n".encode()
    return hashlib.sha256(material).hexdigest()


def _tag(key: bytes, name: str, artifact: bytes | memoryview) -> bytes:
    mac = hmac.new(key, MAGIC, hashlib.sha256)
    mac.update(name.encode())
    mac.update(artifact)
    return mac.digest()


class CompiledCache:
    """Authenticated compiled artifacts. ``load`` returns verified bytes or None, and says why
    in :attr:`last_miss` ("missing", "truncated", "wrong format", "bad tag")."""

    def __init__(self) -> None:
        self.directory = cache_dir()
        self._key: bytes | None = None
        self.last_miss: str | None = None

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = load_or_create_key()
        return self._key

    def path(self, name: str) -> Path:
        return self.directory / f"{name}{SUFFIX}"

    def load(self, name: str) -> bytes | None:
        try:
            with open(self.path(name), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            self.last_miss = "missing"
            return None
        except OSError as e:
            self.last_miss = f"unreadable ({e.strerror})"
            return None
        if len(data) < len(MAGIC) + TAG_BYTES:
            self.last_miss = "truncated"
            return None
        if not data.startswith(MAGIC):
            self.last_miss = "wrong format"
            return None
        view = memoryview(data)
        tag = bytes(view[len(MAGIC) : len(MAGIC) + TAG_BYTES])
        artifact = view[len(MAGIC) + TAG_BYTES :]
        if not hmac.compare_digest(tag, _tag(self.key, name, artifact)):
            # Corrupt, truncated in the artifact, or written under another installation's key.
            self.last_miss = "bad tag"
            return None
        self.last_miss = None
        return bytes(artifact)

    def store(self, name: str, artifact: bytes) -> bool:
        """Write an entry atomically; False (and no entry) if the cache is not writable."""
        from motte.fsutil import atomic_write_bytes  # tempfile: only when writing

        tag = _tag(self.key, name, artifact)
        try:
            home_dir("cache", "compiled", private=True)
            atomic_write_bytes(self.path(name), MAGIC + tag + artifact, mode=0o600)
        except OSError:
            return False
        return True

    # -- sealed entries: compiled code of an encrypted module -----------------------------
    #
    # SEALED_MAGIC  STREAM ciphertext of the artifact (motte.oci's encrypted-layer cipher,
    #               AES-256-GCM per 1 MiB chunk) under HMAC-SHA256(key, name)
    #
    # ``key`` comes from the module's content key (motte.keep._secrets.cache_key_for), which
    # a Keep obtains only by attesting: the host's disk holds no machine code it can read,
    # and an entry cannot be moved to another name.

    def load_sealed(self, name: str, key: bytes) -> bytearray | None:
        """The artifact, decrypted while the entry is read (motte.oci.decrypt_file)."""
        from motte.oci import DecryptionError, decrypt_file

        path = self.path(name)
        try:
            with open(path, "rb") as f:
                magic = f.read(len(SEALED_MAGIC))
            if magic != SEALED_MAGIC:
                self.last_miss = "wrong format"
                return None
            artifact = decrypt_file(_entry_key(key, name), path, name, offset=len(magic))
        except FileNotFoundError:
            self.last_miss = "missing"
            return None
        except OSError as e:
            self.last_miss = f"unreadable ({e.strerror})"
            return None
        except DecryptionError:
            self.last_miss = "bad tag"
            return None
        self.last_miss = None
        return artifact

    def store_sealed(self, name: str, artifact: bytes, key: bytes) -> bool:
        from motte.fsutil import atomic_write_bytes
        from motte.oci import encrypt_module

        sealed = encrypt_module(_entry_key(key, name), artifact)
        try:
            home_dir("cache", "compiled", private=True)
            atomic_write_bytes(self.path(name), SEALED_MAGIC + sealed, mode=0o600)
        except OSError:
            return False
        return True

    def discard(self, name: str) -> None:
        with contextlib.suppress(OSError):
            self.path(name).unlink()


def _entry_key(key: bytes, name: str) -> bytes:
    return hmac.new(key, b"motte/sealed-cache-entry/v1\0" + name.encode(), hashlib.sha256).digest()


def cache_info() -> CacheInfo:
    directory = cache_dir()
    entries = total = 0
    if directory.is_dir():
        for entry in directory.iterdir():
            if entry.suffix == SUFFIX and entry.is_file():
                entries += 1
                total += entry.stat().st_size
    return CacheInfo(directory, entries, total, key_path(), key_path().exists())


def clear_cache() -> CacheInfo:
    """Remove every compiled entry (the key stays); returns what was removed."""
    before = cache_info()
    if before.directory.is_dir():
        for entry in before.directory.iterdir():
            if entry.is_file() and (entry.suffix == SUFFIX or entry.name.endswith(".tmp")):
                entry.unlink(missing_ok=True)
    return before
