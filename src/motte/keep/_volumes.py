"""Sealed volumes inside a Keep: opened after attesting, held in memory, persisted sealed.

For each ``[[volume]]`` of the manifest (docs/sealed-state.md):

1. **Where its snapshots live on the host**: the directory the host granted
   (``--grant volume:NAME=HOSTDIR``, or the host policy; motte.manifest's grants), else
   the default, ``MOTTE_HOME/volumes/<namespace>/<name>/<volume>`` or
   ``.../sha256-<hex>/<volume>``. A package run by reference gets no volume the host has
   not granted. The snapshot is ``volume.sealed`` in it (motte.keep._snapshot).
2. **Its key**, released by the Steward (:func:`release_volume_keys`): fresh evidence binds
   a release key that exists only in this process; the request names each volume's
   identity and the snapshot the host offers (version and id, from the clear header); the
   Steward refuses another workload, an unsigned version, and a snapshot older than the
   one it recorded (motte.steward._volumes).
3. **Its content**, decrypted into a fresh 0700 directory on a memory-backed file system
   (as secret files are: ``/dev/shm`` or ``MOTTE_SECRET_DIR``, checked to be tmpfs),
   preopened writable at the volume's guest path. A snapshot that does not open leaves
   nothing behind and changes nothing on the host.

While the Keep runs, a volume is persisted (:meth:`Volumes.persist`) as snapshot
``version + 1``: written atomically (temporary file, fsync, rename, fsync of the
directory), then **committed**: the Steward records the new version (``POST
/volumes/commit``, authenticated by the counter key). It is persisted

* when the guest asks: it creates the file ``.motte-flush`` in the volume's top
  directory. A serving Keep persists the volume after that instance returns and before its
  answer is sent (the answer is the acknowledgement; a 503 if it could not be persisted);
  a run-once Keep looks for the file every ``FLUSH_POLL`` seconds. The file is removed once
  the snapshot is committed, and is never part of one;
* every ``snapshot_interval`` seconds, if it changed;
* at a clean stop and when the Keep is drained (SIGTERM), after the last instance returned.

A serving Keep runs its instances under a shared gate and a snapshot under the exclusive
one, so a snapshot sees no half-done request; a run-once guest is not stopped for a
snapshot (it should ask for one, by the file, once its files are written).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from motte.errors import ConfigError, MotteError

if TYPE_CHECKING:
    from motte.keep.backends import Backend
    from motte.manifest import Manifest, Volume
    from motte.steward import VolumeIdentity

FLUSH_FILE = ".motte-flush"
#: Seconds between looks for a flush request and the interval, by the background thread.
FLUSH_POLL = 0.25
#: How long a snapshot waits for running instances to return before it gives up this time.
QUIESCE_TIMEOUT = 30.0
VOLUME_PREFIX = "motte-volume-"


class VolumeError(ConfigError):
    """A sealed volume cannot be granted, opened or persisted as asked."""


class VolumeNotPersisted(MotteError):
    """The guest asked for its volume to be persisted, and it could not be (the reason)."""


# -- where, and what ----------------------------------------------------------------------


def default_host_dir(identity: VolumeIdentity) -> Path:
    from motte.home import motte_home

    scope = identity.scope.replace(":", "-")
    return motte_home() / "volumes" / scope / identity.name


def _identity(spec: Volume, workload_digest: str, repository: str | None) -> VolumeIdentity:
    from motte.steward import VolumeIdentity

    if spec.sealed_to == "digest":
        return VolumeIdentity("digest", workload_digest, spec.name)
    if repository is None:
        raise VolumeError(
            f"{spec.where}: volume {spec.name} is sealed to a namespace, and this workload "
            "is not a package run by reference: nothing signs it as namespace/name",
            hint='package, sign and run it by reference, or seal the volume to "digest"',
        )
    return VolumeIdentity("namespace", repository, spec.name)


def resolve_volumes(
    manifest: Manifest, workload_digest: str, *, repository: str | None
) -> list[tuple[Volume, VolumeIdentity, Path]]:
    """Each volume of the (granted) manifest, its identity and where its snapshots go: the
    host directory granted, else the default place (motte.manifest's apply_grants has
    refused a package's volume the host did not grant)."""
    out = []
    for spec in manifest.volume:
        identity = _identity(spec, workload_digest, repository)
        out.append((spec, identity, spec.host or default_host_dir(identity)))
    taken = {d.guest: d.where for d in manifest.dir}
    for spec, _, _ in out:
        if spec.guest in taken:
            raise VolumeError(
                f"{spec.where}: volume {spec.name} at {spec.guest}, which {taken[spec.guest]} "
                "already preopens"
            )
    return out


# -- the key release -------------------------------------------------------------------------


def release_volume_keys(
    steward: str,
    workload_digest: str,
    backend: Backend,
    wanted: Sequence[Any],
    *,
    statements: Sequence[bytes] = (),
    timeout: float = 30.0,
) -> dict[str, tuple[bytes, int]]:
    """{volume id: (volume key, version the Steward records)} for ``wanted``
    (:class:`motte.steward.WantedVolume`), released to this Keep; see the module doc."""
    from motte.steward import (
        ReleaseFormatError,
        StewardClient,
        StewardUnreachableError,
        VolumeReleaseRequest,
        new_release_key,
        open_sealed,
        parse_volume_answer,
        release_report_data,
        spki_of,
        volume_info,
    )

    key = new_release_key()
    spki = spki_of(key.public_key())
    with StewardClient(steward, timeout=timeout) as client:
        nonce = client.nonce()
        evidence = backend.evidence(release_report_data(spki, workload_digest, nonce))
        request = VolumeReleaseRequest(
            evidence, workload_digest, nonce, spki, tuple(wanted), tuple(statements)
        )
        answer = client.volume_release(request.to_bytes())
    try:
        sealed = parse_volume_answer(answer)
    except ReleaseFormatError as e:
        raise StewardUnreachableError(f"Steward {steward}: the volume answer: {e}") from None
    asked = {str(w.identity): w for w in wanted}
    out: dict[str, tuple[bytes, int]] = {}
    for item in sealed:
        w = asked.get(item.volume)
        if w is None or item.volume in out:
            raise StewardUnreachableError(f"Steward {steward}: released {item.volume}, not asked")
        offered = w.snapshot.version if w.snapshot is not None else 0
        if item.version != offered:
            raise StewardUnreachableError(
                f"Steward {steward}: recorded version {item.version} of {item.volume}, and the "
                f"snapshot opened is version {offered}"
            )
        value = open_sealed(
            key, item.sealed, volume_info(item.volume, item.version, workload_digest, nonce)
        )
        if value is None:
            raise StewardUnreachableError(
                f"Steward {steward}: the key of {item.volume} does not open with this Keep's "
                "release key (changed on the way, or sealed for another request)"
            )
        out[item.volume] = (value, item.version)
    missing = sorted(set(asked) - set(out))
    if missing:
        raise StewardUnreachableError(f"Steward {steward}: the answer lacks {', '.join(missing)}")
    return out


# -- in memory ---------------------------------------------------------------------------------


def _zero_and_remove(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            with contextlib.suppress(OSError):
                size = os.path.getsize(path)
                os.chmod(path, 0o600)
                with open(path, "r+b") as f:
                    zeros = b"\0" * min(size, 1 << 20)
                    left = size
                    while left:
                        left -= f.write(zeros[: min(left, len(zeros))])
    shutil.rmtree(root, ignore_errors=True)


def remove_orphans(base: Path) -> int:
    """Memory directories of Keeps that died without closing them (SIGKILL): zeroed and
    removed; returns how many."""
    count = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(base):
            if not entry.name.startswith(VOLUME_PREFIX):
                continue
            pid = entry.name[len(VOLUME_PREFIX) :].split("-", 1)[0]
            if not pid.isdigit() or _alive(int(pid)):
                continue
            _zero_and_remove(Path(entry.path))
            count += 1
    return count


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def tree_signature(root: Path) -> tuple[tuple[Any, ...], ...]:
    """What changes when anything in the tree does (names, sizes, times, modes)."""
    out: list[tuple[Any, ...]] = []
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files) + dirs:
            if dirpath == str(root) and name == FLUSH_FILE:
                continue
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                out.append((dirpath, name, st.st_size, st.st_mtime_ns, st.st_mode, st.st_ino))
    return tuple(out)


@dataclass
class SealedVolume:
    """One open volume. Keys are never shown."""

    spec: Volume
    identity: VolumeIdentity
    host_dir: Path
    mem_dir: Path
    snapshot_key: bytes = field(repr=False)
    counter_key: bytes = field(repr=False)
    #: The version the Steward records (the last committed or opened snapshot).
    version: int
    #: A snapshot ``version + 1`` is on the host's disk, not yet committed.
    pending: bool = False
    signature: tuple[tuple[Any, ...], ...] | None = None
    #: When it was last persisted (time.monotonic()), for the interval.
    persisted_at: float = field(default_factory=time.monotonic)
    #: Set when the Steward recorded another Keep's snapshot: this one stops persisting.
    failed: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def snapshot_path(self) -> Path:
        from motte.keep._snapshot import SNAPSHOT_FILE

        return self.host_dir / SNAPSHOT_FILE

    def flush_requested(self) -> bool:
        return os.path.lexists(self.mem_dir / FLUSH_FILE)


@dataclass(frozen=True, slots=True)
class Persisted:
    """One snapshot written and committed."""

    volume: str
    version: int
    size: int
    written: int
    seconds: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "volume": self.volume,
            "version": self.version,
            "size": self.size,
            "written": self.written,
            "seconds": round(self.seconds, 6),
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class PersistReport:
    """What :meth:`Volumes.persist_all` did: each snapshot, each failure, the time taken."""

    reason: str
    persisted: tuple[Persisted, ...]
    unchanged: tuple[str, ...]
    failures: tuple[str, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.failures

    def line(self) -> str:
        size = sum(p.written for p in self.persisted)
        parts = [
            f"{p.volume} v{p.version} ({_mib(p.written)}, {p.seconds:.3f} s)"
            for p in self.persisted
        ]
        parts += [f"{u} unchanged" for u in self.unchanged]
        parts += [f"FAILED {f}" for f in self.failures]
        per = f", {self.seconds / (size / 2**20):.3f} s/MiB" if size >= 2**20 else ""
        return (
            f"sealed volumes persisted ({self.reason}) in {self.seconds:.3f} s, "
            f"{_mib(size)}{per}: " + "; ".join(parts)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "ok": self.ok,
            "seconds": round(self.seconds, 6),
            "persisted": [p.to_dict() for p in self.persisted],
            "unchanged": list(self.unchanged),
            "failures": list(self.failures),
        }


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


class _Gate:
    """Instances share it; a snapshot takes it alone (new instances wait for the snapshot,
    the snapshot for running instances, up to its timeout)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting = 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self, timeout: float) -> Iterator[bool]:
        deadline = time.monotonic() + timeout
        with self._cond:
            self._waiting += 1
            try:
                while self._writer or self._readers:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                got = not (self._writer or self._readers)
                if got:
                    self._writer = True
            finally:
                self._waiting -= 1
                self._cond.notify_all()
        try:
            yield got
        finally:
            if got:
                with self._cond:
                    self._writer = False
                    self._cond.notify_all()


class Volumes:
    """A Keep's open sealed volumes, their snapshots and their commits."""

    def __init__(self, steward: str, volumes: list[SealedVolume], *, log: Any = None) -> None:
        self.steward = steward
        self.volumes = volumes
        self.gate = _Gate()
        self._log = log
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._owner = os.getpid()
        self._instances = False

    # -- what the guest sees -------------------------------------------------------------------

    @property
    def dirs(self) -> list[tuple[str, str]]:
        """(host directory, guest directory) pairs, preopened writable."""
        return [(str(v.mem_dir), v.spec.guest) for v in self.volumes]

    @contextlib.contextmanager
    def instance(self) -> Iterator[None]:
        # From the first instance on, a flush request is the instance's to carry out (before
        # its answer leaves), never the background thread's: it would acknowledge nothing.
        self._instances = True
        with self.gate.shared():
            yield

    def after_instance(self) -> None:
        """Persist each volume whose guest asked (the flush file) before the instance's
        answer goes out; VolumeNotPersisted if one could not be."""
        asked = [v for v in self.volumes if v.flush_requested()]
        if not asked:
            return
        failures = [f for v in asked if (f := self._flush(v, QUIESCE_TIMEOUT)) is not None]
        if failures:
            raise VolumeNotPersisted("sealed volume not persisted: " + "; ".join(failures))

    def _flush(self, vol: SealedVolume, timeout: float) -> str | None:
        try:
            self.persist(vol, "flush", timeout=timeout)
        except MotteError as e:
            self._say(f"volume {vol.identity}: the guest's flush failed: {e.message}")
            return f"{vol.identity}: {e.message}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(vol.mem_dir / FLUSH_FILE)
        return None

    # -- persisting ----------------------------------------------------------------------------

    def persist(
        self, vol: SealedVolume, reason: str, *, timeout: float = QUIESCE_TIMEOUT
    ) -> Persisted | None:
        """Write and commit snapshot ``version + 1`` of ``vol`` if it changed since the last
        one (None: unchanged). Raises a MotteError (the snapshot could not be written, the
        Steward did not record it, instances did not return within ``timeout``)."""
        from motte.keep._snapshot import test_hold, write_snapshot
        from motte.steward import CommitRequest, VolumeCommitError

        with self.gate.exclusive(timeout) as got:
            if not got:
                raise VolumeError(
                    f"volume {vol.identity}: instances still running after {timeout:g} s; "
                    "not persisted this time"
                )
            with vol.lock:
                if vol.failed:
                    raise VolumeError(vol.failed)
                signature = tree_signature(vol.mem_dir)
                if signature == vol.signature and not vol.pending:
                    vol.persisted_at = time.monotonic()
                    return None
                started = time.monotonic()
                new = vol.version + 1
                written = write_snapshot(
                    vol.mem_dir,
                    vol.host_dir,
                    vol.snapshot_key,
                    volume=str(vol.identity),
                    sealed_to=vol.identity.sealed_to,
                    version=new,
                    limit=vol.spec.size_bytes,
                    exclude=(FLUSH_FILE,),
                )
                vol.pending = True
                test_hold("renamed")
                request = CommitRequest.make(
                    vol.counter_key,
                    vol.identity,
                    vol.version,
                    new,
                    written.header.id,
                    written.bytes_written,
                )
                try:
                    self._commit(request)
                except VolumeCommitError as e:
                    if e.status == 409:
                        vol.failed = (
                            f"volume {vol.identity}: {e.message}; this Keep no longer persists it"
                        )
                    raise
                vol.version = new
                vol.pending = False
                vol.signature = signature
                vol.persisted_at = time.monotonic()
                if written.skipped:
                    self._say(
                        f"volume {vol.identity}: left out of the snapshot (not a file or "
                        f"directory): {', '.join(written.skipped[:5])}"
                    )
                return Persisted(
                    str(vol.identity),
                    new,
                    written.header.size,
                    written.bytes_written,
                    time.monotonic() - started,
                    reason,
                )

    def _commit(self, request: Any) -> int:
        from motte.steward import StewardClient

        with self._client_lock:
            if self._client is None:
                self._client = StewardClient(self.steward, timeout=30.0)
            return int(self._client.volume_commit(request.to_bytes()))

    def persist_all(self, reason: str, *, timeout: float = QUIESCE_TIMEOUT) -> PersistReport:
        started = time.monotonic()
        done: list[Persisted] = []
        unchanged: list[str] = []
        failures: list[str] = []
        for vol in self.volumes:
            try:
                got = self.persist(vol, reason, timeout=timeout)
            except MotteError as e:
                failures.append(f"{vol.identity}: {e.message}")
                continue
            if got is None:
                unchanged.append(str(vol.identity))
            else:
                done.append(got)
            if vol.flush_requested():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(vol.mem_dir / FLUSH_FILE)
        return PersistReport(
            reason, tuple(done), tuple(unchanged), tuple(failures), time.monotonic() - started
        )

    # -- the background thread: flush requests and the interval -------------------------------

    def start(self) -> None:
        if self._thread is not None or not self.volumes:
            return
        self._thread = threading.Thread(target=self._loop, name="motte-volumes", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(FLUSH_POLL):
            for vol in self.volumes:
                if self._stop.is_set():
                    return
                if vol.flush_requested() and not self._instances:
                    self._flush(vol, QUIESCE_TIMEOUT)
                    continue
                every = vol.spec.snapshot_interval
                if every and time.monotonic() - vol.persisted_at >= every:
                    try:
                        got = self.persist(vol, "interval", timeout=QUIESCE_TIMEOUT)
                    except MotteError as e:
                        self._say(f"volume {vol.identity}: not persisted: {e.message}")
                        vol.persisted_at = time.monotonic()
                        continue
                    if got is not None:
                        self._say(
                            f"volume {vol.identity}: snapshot v{got.version} "
                            f"({_mib(got.written)}) in {got.seconds:.3f} s (interval)"
                        )

    def stop_thread(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    # -- stopping ------------------------------------------------------------------------------

    def close(self, reason: str = "stop") -> PersistReport | None:
        """Persist every volume (``reason``: stop or drain), then zero and remove their
        memory; once, in the process that opened them. The report, or None if closed."""
        if self._closed or os.getpid() != self._owner:
            return None
        self._closed = True
        self.stop_thread()
        try:
            report = self.persist_all(reason)
        finally:
            for vol in self.volumes:
                _zero_and_remove(vol.mem_dir)
            with self._client_lock:
                if self._client is not None:
                    self._client.close()
            with contextlib.suppress(ValueError):
                _live.remove(self)
        return report

    def discard(self) -> None:
        """Zero and remove the memory without persisting (an error before the guest ran)."""
        self._closed = True
        self.stop_thread()
        for vol in self.volumes:
            _zero_and_remove(vol.mem_dir)
        with contextlib.suppress(ValueError):
            _live.remove(self)

    def _say(self, line: str) -> None:
        if self._log is not None:
            self._log(line)
            return
        import sys

        sys.stderr.write(f"motte: {line}\n")
        sys.stderr.flush()


# -- opening -----------------------------------------------------------------------------------


def open_volumes(
    steward: str,
    workload_digest: str,
    backend: Backend,
    manifest: Manifest,
    *,
    repository: str | None,
    statements: Sequence[bytes] = (),
) -> Volumes:
    """Release the keys of, and open, every volume of the granted ``manifest``; see the
    module doc. Raises a MotteError (one line) and leaves nothing behind when any cannot
    be. ``repository`` is the package's namespace/name (None: not a package)."""
    from motte._nodump import forbid_core_dumps
    from motte.keep._secrets import memory_dir
    from motte.keep._snapshot import (
        SnapshotError,
        open_snapshot,
        peek_header,
        remove_stale_temporaries,
    )
    from motte.steward import SnapshotRef, WantedVolume, counter_key, snapshot_key

    resolved = resolve_volumes(manifest, workload_digest, repository=repository)
    forbid_core_dumps()
    wanted = []
    for spec, identity, host_dir in resolved:
        remove_stale_temporaries(host_dir)
        header = peek_header(host_dir / "volume.sealed")
        if header is not None and header.volume != str(identity):
            raise SnapshotError(
                f"{host_dir / 'volume.sealed'}: a snapshot of volume {header.volume}, not of "
                f"{identity} (volume {spec.name} of this workload); nothing was changed"
            )
        snap = SnapshotRef(header.version, header.id) if header is not None else None
        wanted.append(WantedVolume(identity, snap))
    keys = release_volume_keys(steward, workload_digest, backend, wanted, statements=statements)
    base = memory_dir()
    remove_orphans(base)
    volumes = Volumes(steward, [])
    _arrange_cleanup(volumes)
    try:
        for (spec, identity, host_dir), w in zip(resolved, wanted, strict=True):
            key, version = keys[str(identity)]
            mem = Path(tempfile.mkdtemp(prefix=f"{VOLUME_PREFIX}{os.getpid()}-", dir=base))
            vol = SealedVolume(
                spec, identity, host_dir, mem, snapshot_key(key), counter_key(key), version
            )
            volumes.volumes.append(vol)
            if w.snapshot is not None:
                open_snapshot(
                    host_dir / "volume.sealed",
                    vol.snapshot_key,
                    mem,
                    expect=str(identity),
                    limit=spec.size_bytes,
                )
            vol.signature = tree_signature(mem)
    except BaseException:
        volumes.discard()
        raise
    return volumes


_live: list[Volumes] = []


def _arrange_cleanup(volumes: Volumes) -> None:
    """Persist and remove at exit, and on SIGTERM/SIGINT when nobody else handles them (a
    serving Keep handles both itself, then closes its volumes as a drain)."""
    if not _live:
        atexit.register(_close_all)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            with contextlib.suppress(ValueError):  # not the main thread
                current = signal.getsignal(sig)
                if current in (signal.SIG_DFL, signal.default_int_handler) or getattr(
                    current, "__module__", ""
                ).startswith("motte.keep._secrets"):
                    signal.signal(sig, _on_signal)
    _live.append(volumes)


def _close_all() -> None:
    import sys

    while _live:
        report = _live.pop().close("stop")
        if report is not None:
            sys.stderr.write(f"motte: {report.line()}\n")


def _on_signal(signum: int, _frame: Any) -> None:
    while _live:
        vols = _live.pop()
        report = vols.close("drain" if signum == signal.SIGTERM else "stop")
        if report is not None:
            import sys

            sys.stderr.write(f"motte: {report.line()}\n")
            sys.stderr.flush()
    with contextlib.suppress(Exception):
        from motte.keep._secrets import _close_all as close_secrets

        close_secrets()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
