"""Secrets and encrypted modules inside a Keep: obtained after attesting, held in memory.

What :func:`obtain` does for a workload whose manifest asks for ``[[secret]]`` entries or
whose package is encrypted (after the Keep attested and fetched the package by digest):

1. one release (:func:`motte.keep._release.release_secrets`): fresh evidence binding a
   release key that exists only in this process; the Steward seals each value to it;
2. an encrypted module is decrypted in memory, and its plaintext checked against the digest
   the package's signed manifest names (:func:`motte.oci.decrypt_and_check`);
3. the secrets are delivered (:class:`GuestSecrets`): ``env`` ones into the guest's
   environment (never motte's own), ``file`` ones as files in a directory on a
   memory-backed file system, preopened read-only at the file's guest directory and removed
   when the Keep stops.

Where secret files live: wasmtime's WASI preview1 (the C API the Python bindings use) can
only preopen host directories, and has no in-memory file system. So the files are in a
tmpfs: ``/dev/shm`` (or ``MOTTE_SECRET_DIR``), checked to be tmpfs or ramfs in
``/proc/self/mountinfo`` (a directory on disk is refused), in a fresh 0700 directory whose
files are 0400. They are overwritten with zeros and removed when the Keep stops (normal
exit, an error, SIGTERM or SIGINT); a SIGKILL leaves them in memory until the next reboot.
tmpfs pages can be swapped out: run Keeps with swap off or encrypted (on SEV-SNP and TDX
the guest's memory, swap included if it is the guest's own, is encrypted by the hardware).

The process also stops dumping core (:func:`motte._nodump.forbid_core_dumps`).

Compiled code of an encrypted module is cached only sealed: AES-256-GCM under a key derived
from the module's content key (HKDF-SHA256, ``info`` = "motte/compiled-cache/v1"), which
this Keep got the same way, by attesting (motte.keep._cache).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from motte.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from motte.keep.backends import Backend
    from motte.manifest import Manifest
    from motte.oci import Encryption, VerifiedPackage

MEMORY_FS = ("tmpfs", "ramfs")
ENV_DIR = "MOTTE_SECRET_DIR"
DEFAULT_DIR = Path("/dev/shm")


class SecretDeliveryError(ConfigError):
    """Secrets cannot be delivered as asked (no memory-backed directory, a value that cannot
    be an environment variable). Never holds a value."""


def _fs_type(path: Path) -> str | None:
    """The file system type of the mount holding ``path`` (Linux, /proc/self/mountinfo)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    target = os.path.realpath(path)
    best, fstype = "", None
    for line in lines:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if len(fields) < 5 or not right:
            continue
        mount = fields[4].replace("\\040", " ")
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, fstype = mount, right.split()[0]
    return fstype


def memory_dir() -> Path:
    """Where secret files may go: a tmpfs or ramfs (``MOTTE_SECRET_DIR``, else /dev/shm)."""
    base = Path(os.environ.get(ENV_DIR) or DEFAULT_DIR)
    fstype = _fs_type(base) if base.is_dir() else None
    if fstype not in MEMORY_FS:
        what = f"a {fstype} file system" if fstype else "not a directory"
        raise SecretDeliveryError(
            f"{base}: {what}, not memory-backed: secret files are never written to disk",
            hint=f"mount a tmpfs and name it in {ENV_DIR} (or deliver the secrets as env)",
        )
    return base


@dataclass
class GuestSecrets:
    """Released values as the guest sees them. ``env`` holds values: never print it."""

    env: dict[str, str] = field(default_factory=dict, repr=False)
    #: (host directory, guest directory): preopened read-only.
    dirs: list[tuple[str, str]] = field(default_factory=list)
    root: Path | None = None
    owner: int = field(default_factory=os.getpid)

    def close(self) -> None:
        """Zero and remove the files (only the process that made them does)."""
        root, self.root = self.root, None
        if root is None or os.getpid() != self.owner:
            return
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                path = os.path.join(dirpath, name)
                with contextlib.suppress(OSError):
                    size = os.path.getsize(path)
                    os.chmod(path, 0o600)
                    with open(path, "r+b") as f:
                        f.write(b"\0" * size)
        shutil.rmtree(root, ignore_errors=True)

    def handover(self) -> dict[str, Any]:
        """For a worker process, through its stdin pipe (as the TLS key travels)."""
        return {"env": dict(self.env), "dirs": [list(d) for d in self.dirs]}

    @classmethod
    def from_handover(cls, doc: Mapping[str, Any]) -> GuestSecrets:
        # A worker's copy does not own the directory: its parent removes it.
        return cls(dict(doc["env"]), [(h, g) for h, g in doc["dirs"]], None)


def deliver(manifest: Manifest, values: Mapping[str, bytes]) -> GuestSecrets:
    """``values`` (name -> bytes) where the manifest's ``[[secret]]`` entries put them."""
    out = GuestSecrets()
    files = [s for s in manifest.secret if s.file is not None]
    taken = {d.guest for d in manifest.dir}
    for s in manifest.secret:
        if s.env is None:
            continue
        try:
            text = values[s.name].decode("utf-8")
        except UnicodeDecodeError:
            text = "\0"
        if "\0" in text:
            raise SecretDeliveryError(
                f"{s.where}: secret {s.name} is not UTF-8 text without NUL bytes, so it cannot "
                f"be the environment variable {s.env}",
                hint='deliver it as a file instead (file = "/run/secrets/...")',
            )
        out.env[s.env] = text
    if not files:
        return out
    root = Path(tempfile.mkdtemp(prefix="motte-secrets-", dir=memory_dir()))
    out.root = root
    _arrange_cleanup(out)
    try:
        by_dir: dict[str, Path] = {}
        for s in files:
            assert s.file is not None
            guest = PurePosixPath(s.file)
            parent = str(guest.parent)
            if parent in taken:
                raise SecretDeliveryError(
                    f"{s.where}: secret {s.name} goes to {parent}, which a [[dir]] already "
                    "preopens; secret files get a directory of their own",
                    hint='e.g. file = "/run/secrets/NAME"',
                )
            if parent not in by_dir:
                host = root / f"d{len(by_dir)}"
                host.mkdir(mode=0o700)
                by_dir[parent] = host
                out.dirs.append((str(host), parent))
            fd = os.open(
                by_dir[parent] / guest.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                0o400,
            )  # fmt: skip
            with os.fdopen(fd, "wb") as f:
                f.write(values[s.name])
    except BaseException:
        out.close()
        raise
    return out


_live: list[GuestSecrets] = []


def _arrange_cleanup(secrets: GuestSecrets) -> None:
    """Remove the files at exit, and on SIGTERM/SIGINT when nobody else handles them (a
    serving Keep handles both itself and then exits normally, which runs atexit)."""
    if not _live:
        atexit.register(_close_all)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(ValueError):  # not the main thread
                if signal.getsignal(sig) in (signal.SIG_DFL, signal.default_int_handler):
                    signal.signal(sig, _on_signal)
    _live.append(secrets)


def _close_all() -> None:
    while _live:
        _live.pop().close()


def _on_signal(signum: int, _frame: Any) -> None:
    _close_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


# -- obtaining ------------------------------------------------------------------------------


@dataclass
class Confidential:
    """What an attested Keep obtained: the secrets as delivered, and for an encrypted
    package the decrypted module and what a worker needs to decrypt it again."""

    secrets: GuestSecrets
    module: bytes | bytearray | None = field(default=None, repr=False)
    #: (ciphertext blob digest, content key, Encryption): for workers and the sealed cache.
    encrypted: tuple[str, bytes, Encryption] | None = field(default=None, repr=False)

    @property
    def cache_key(self) -> bytes | None:
        return cache_key_for(self.encrypted[1]) if self.encrypted else None

    def handover(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"secrets": self.secrets.handover()}
        if self.encrypted is not None:
            blob, key, enc = self.encrypted
            doc["encrypted"] = {
                "blob": blob,
                "key": base64.b64encode(key).decode(),
                "annotations": enc.annotations(),
            }
        return doc


def cache_key_for(content_key: bytes) -> bytes:
    """The key compiled code of a content key's module is sealed under in the cache."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(hashes.SHA256(), 32, None, b"motte/compiled-cache/v1").derive(content_key)


def obtain(
    steward: str,
    workload_digest: str,
    backend: Backend,
    manifest: Manifest,
    package: VerifiedPackage | None,
) -> Confidential:
    """Release the manifest's secrets and the package's content key in one request, decrypt
    the module, deliver the secrets; see the module doc."""
    from motte._nodump import forbid_core_dumps
    from motte.keep._release import release_secrets
    from motte.steward import Wanted

    forbid_core_dumps()
    # One secret may go to a file and to a variable: asked for once.
    wanted = list({s.name: Wanted(s.name, s.version) for s in manifest.secret}.values())
    encryption = package.encryption if package is not None else None
    if encryption is not None:
        if any(w.name == encryption.secret for w in wanted):
            raise UsageError(
                f"{manifest.workload.where}: secret {encryption.secret} is the package's "
                "content key; a workload cannot ask for it"
            )
        wanted.append(Wanted(encryption.secret, encryption.version))
    statements = ()
    if package is not None and package.attachments:
        statements = tuple(a.layers[0] for a in package.attachments if a.layers)
    released = release_secrets(steward, workload_digest, backend, wanted, statements=statements)
    module = None
    encrypted = None
    if encryption is not None and package is not None:
        key = released.pop(encryption.secret).value
        where = f"{package.reference.pinned} (module {package.module_name})"
        module = _decrypt_stored(key, package.module_digest, encryption, where)
        encrypted = (package.module_digest, key, encryption)
    values = {name: r.value for name, r in released.items()}
    return Confidential(deliver(manifest, values), module, encrypted)


def _decrypt_stored(key: bytes, blob: str, enc: Encryption, where: str) -> bytearray:
    """The module whose ciphertext the local store holds as ``blob``, decrypted while it is
    read and checked against the signed plaintext digest. The ciphertext is not hashed: the
    AEAD authenticates each chunk under the released key, and the plaintext digest (in the
    signed, attested package manifest) decides; a changed blob fails one or the other."""
    from motte.keep._workload import blob_path
    from motte.oci import decrypt_file_and_check

    try:
        return decrypt_file_and_check(key, blob_path(blob), enc, where)
    except FileNotFoundError:
        raise SecretDeliveryError(
            f"{where}: the encrypted module {blob} is not in the local store",
            hint="pull the package again",
        ) from None
    except OSError as e:
        raise SecretDeliveryError(f"{where}: cannot read {blob}: {e.strerror}") from None


def decrypt_for_worker(doc: Mapping[str, Any]) -> tuple[bytearray, bytes]:
    """A worker's own decryption of the module its parent decrypted: (plaintext, cache
    key), from the local store by digest, as the parent did."""
    from motte._nodump import forbid_core_dumps
    from motte.oci import Encryption

    forbid_core_dumps()
    enc = Encryption.from_annotations(dict(doc["annotations"]), "hand-over")
    key = base64.b64decode(doc["key"])
    return _decrypt_stored(key, doc["blob"], enc, doc["blob"]), cache_key_for(key)


def prepare_in_worker(
    manifest: Manifest,
    doc: Mapping[str, Any] | None,
    *,
    client_identity: tuple[bytes, bytes] | None = None,
) -> Any:
    """A worker process's PreparedWorkload: the parent's secrets and, for an encrypted
    package, the module decrypted again here (``doc``: :meth:`Confidential.handover`);
    ``client_identity`` as :meth:`PreparedWorkload.prepare` takes it (outbound mutual TLS)."""
    from motte.keep._workload import PreparedWorkload

    if not doc:
        return PreparedWorkload.prepare(manifest, client_identity=client_identity)
    from motte._nodump import forbid_core_dumps

    forbid_core_dumps()
    if doc.get("encrypted"):
        module, key = decrypt_for_worker(doc["encrypted"])
        prepared = PreparedWorkload.prepare(
            manifest,
            module=module,
            sealed_key=key,
            verified_digest=manifest.workload.digest,
            client_identity=client_identity,
        )
    else:
        prepared = PreparedWorkload.prepare(manifest, client_identity=client_identity)
    prepared.deliver(GuestSecrets.from_handover(doc["secrets"]))
    return prepared
