"""Which logs a verifier trusts, and what it last saw from each (fork detection).

``motte_home()/tlog/trusted`` lists one vkey per line, optionally followed by the URL where
that log serves (needed to fetch consistency proofs); witness keys (type 0x04) go on their
own lines, and ``witness-quorum N`` sets how many of them must cosign (default: all). The
embedded log's own key is trusted for local use.

``motte_home()/tlog/seen/`` keeps, per log (origin and key), the largest checkpoint this
installation has accepted. :func:`check_and_remember` accepts a new checkpoint only if a
consistency proof joins it to that one, in whichever direction; otherwise it raises
:class:`ForkError` naming both tree heads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from motte.fsutil import atomic_write_bytes, locked_directory
from motte.home import motte_home
from motte.tlog._bundle import InclusionBundle, verify_inclusion_bundle
from motte.tlog._checkpoint import Checkpoint, TrustedLogs, parse_checkpoint_unverified
from motte.tlog._errors import (
    ForkError,
    LogBehindError,
    LogNotFoundError,
    ProofError,
    TlogFormatError,
)
from motte.tlog._log import KEY_FILE, Log, default_log_dir
from motte.tlog._merkle import verify_consistency
from motte.tlog._note import Signer, Verifier


def trusted_path() -> Path:
    return motte_home() / "tlog" / "trusted"


def seen_dir() -> Path:
    return motte_home() / "tlog" / "seen"


def _embedded_key() -> str | None:
    path = default_log_dir() / KEY_FILE
    if not path.exists():
        return None
    return Signer.from_skey(path.read_text()).verifier.vkey


def parse_trusted(lines: Iterable[str], *, where: str) -> TrustedLogs:
    logs: list[str] = []
    witnesses: list[str] = []
    urls: dict[str, str] = {}
    quorum: int | None = None
    for n, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if fields[0] == "witness-quorum":
            if len(fields) != 2 or not fields[1].isdigit():
                raise TlogFormatError(f"{where}:{n}: expected 'witness-quorum N'")
            quorum = int(fields[1])
            continue
        if len(fields) > 2:
            raise TlogFormatError(f"{where}:{n}: expected '<vkey> [url]'")
        try:
            v = Verifier.from_vkey(fields[0])
        except TlogFormatError as e:
            raise TlogFormatError(f"{where}:{n}: {e.message}") from None
        (witnesses if v.is_cosigner else logs).append(v.vkey)
        if len(fields) == 2:
            urls[v.vkey] = fields[1].rstrip("/")
    return TrustedLogs(tuple(logs), tuple(witnesses), quorum, urls)


def load_trusted(
    extra_keys: Iterable[str] = (),
    *,
    witness_quorum: int | None = None,
    include_embedded: bool = True,
) -> TrustedLogs:
    """The trusted file, plus ``extra_keys``, plus the embedded log's key (for local use)."""
    path = trusted_path()
    base = (
        parse_trusted(path.read_text().splitlines(), where=str(path))
        if path.exists()
        else TrustedLogs()
    )
    logs, witnesses = list(base.log_keys), list(base.witness_keys)
    for vkey in extra_keys:
        v = Verifier.from_vkey(vkey)
        target = witnesses if v.is_cosigner else logs
        if v.vkey not in target:
            target.append(v.vkey)
    if include_embedded and (own := _embedded_key()) and own not in logs:
        logs.append(own)
    quorum = witness_quorum if witness_quorum is not None else base.witness_quorum
    return TrustedLogs(tuple(logs), tuple(witnesses), quorum, dict(base.urls))


def add_trusted(vkey: str, url: str | None = None) -> bool:
    """Append ``vkey [url]`` to the trusted file unless the key is there; True if added."""
    v = Verifier.from_vkey(vkey)
    path = trusted_path()
    old = path.read_text() if path.exists() else ""
    for line in old.splitlines():
        fields = line.split("#", 1)[0].split()
        if fields and fields[0] == v.vkey:
            return False
    if old and not old.endswith("\n"):
        old += "\n"
    line = v.vkey + (f" {url.rstrip('/')}" if url else "") + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (old + line).encode())
    return True


# -- what we saw -------------------------------------------------------------------------------


def _seen_file(origin: str, log_key: str) -> Path:
    digest = hashlib.sha256(f"{origin}\n{log_key}".encode()).hexdigest()[:32]
    return seen_dir() / digest


def last_seen(origin: str, log_key: str) -> tuple[int, bytes, bytes] | None:
    """(size, root, note) of the largest checkpoint accepted from this log, if any."""
    path = _seen_file(origin, log_key)
    if not path.exists():
        return None
    note = path.read_bytes()
    body, _ = parse_checkpoint_unverified(note)
    return body.size, body.root_hash, note


def resolve_log(checkpoint: Checkpoint, trusted: TrustedLogs | None = None) -> Log:
    """Where to fetch proofs for the log that signed ``checkpoint``."""
    from motte.tlog._log import LocalLog
    from motte.tlog._remote import RemoteLog

    if checkpoint.log_key == _embedded_key():
        return LocalLog(default_log_dir(), create=False)
    urls = (trusted or load_trusted()).urls
    if checkpoint.log_key in urls:
        return RemoteLog(urls[checkpoint.log_key])
    raise LogNotFoundError(
        f"cannot check that the checkpoint of {checkpoint.origin} is consistent with the one "
        "seen before: no URL is known for this log",
        hint="pass --log URL, or add the URL after the key in the trusted file",
    )


def check_and_remember(checkpoint: Checkpoint, log: Log | None = None) -> Checkpoint:
    """Accept ``checkpoint`` only if it is consistent with the last one seen from its log.

    The first checkpoint seen from a log is remembered (trust on first use). A larger one
    must extend it (consistency proof fetched from ``log``), then replaces it; an equal one
    must have the same root; an older one must be a prefix of it. Raises :class:`ForkError`
    otherwise. Returns the checkpoint now remembered.
    """
    with locked_directory(seen_dir()):
        prev = last_seen(checkpoint.origin, checkpoint.log_key)
        if prev is None:
            _remember(checkpoint)
            return checkpoint
        size, root, note = prev
        new = (checkpoint.size, checkpoint.root_hash)
        if checkpoint.size == size:
            if checkpoint.root_hash != root:
                why = "same size, different roots"
                path = keep_fork_evidence(checkpoint.origin, note, checkpoint.note, why)
                raise ForkError(checkpoint.origin, (size, root), new, why, evidence=path)
            return checkpoint
        opened = log is None
        if log is None:
            log = resolve_log(checkpoint)
        old, newer = ((size, root), new) if checkpoint.size > size else (new, (size, root))
        try:
            proof = log.consistency_proof(old[0], newer[0])
            verify_consistency(old[0], newer[0], proof, old[1], newer[1])
        except LogNotFoundError as e:
            # The log cannot serve the tree of the larger checkpoint (a tile not found): it
            # is behind, which proves nothing either way. Cannot check; not a fork.
            raise _behind(log, checkpoint.origin, newer[0], e.message) from None
        except ProofError as e:
            path = keep_fork_evidence(checkpoint.origin, note, checkpoint.note, e.message)
            raise ForkError(
                checkpoint.origin, (size, root), new, e.message, evidence=path
            ) from None
        finally:
            if opened:
                log.close()
        if checkpoint.size > size:
            _remember(checkpoint)
            return checkpoint
        body, _ = parse_checkpoint_unverified(note)
        return Checkpoint(
            body.origin, body.size, body.root_hash, body.extensions, note, checkpoint.log_key
        )


def forks_dir() -> Path:
    return motte_home() / "tlog" / "forks"


def keep_fork_evidence(origin: str, seen: bytes, new: bytes, reason: str) -> Path:
    """Write both signed checkpoints of a fork to a file of their own; return its path.

    Both notes are kept byte for byte (with their signatures), so anyone holding the log's
    key can check that the log signed two histories. The file is never overwritten.
    """
    import time

    text = (
        f"# motte: log {origin} forked ({reason}).\n"
        "# Both checkpoints below were signed by the log's key and cannot both be true.\n"
        "# The one seen before:\n\n"
    ).encode()
    body = text + seen + b"\n# The new one:\n\n" + new
    name = (
        f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{hashlib.sha256(body).hexdigest()[:16]}"
    )
    path = forks_dir() / f"{name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        atomic_write_bytes(path, body)
    return path


def _behind(log: Log, origin: str, needed: int, detail: str) -> LogBehindError:
    try:
        served = parse_checkpoint_unverified(log.checkpoint())[0].size
    except Exception:  # the log's own checkpoint is only for the message
        served = None
    has = f"it serves a tree of {served} entries" if served is not None else detail
    return LogBehindError(
        f"cannot check: the log {origin} is behind ({has}; the consistency proof needs {needed})",
        hint="try again when the log has caught up, or use a log URL that serves its latest "
        "tree (motte log trust VKEY URL, or --log URL)",
    )


def _remember(checkpoint: Checkpoint) -> None:
    atomic_write_bytes(_seen_file(checkpoint.origin, checkpoint.log_key), checkpoint.note)


def verify_logged(
    entry: bytes,
    bundle: InclusionBundle | bytes | str,
    trusted: TrustedLogs | Iterable[str] | None = None,
    *,
    log: Log | None = None,
    now: float | None = None,
) -> Checkpoint:
    """The recipe: inclusion under a trusted (co)signed checkpoint, and no fork since last time.

    ``trusted`` defaults to :func:`load_trusted`. Returns the bundle's verified checkpoint.
    """
    policy = load_trusted() if trusted is None else trusted
    cp = verify_inclusion_bundle(entry, bundle, policy, now=now)
    if log is None and isinstance(policy, TrustedLogs) and cp.log_key in policy.urls:
        from motte.tlog._remote import RemoteLog

        with RemoteLog(policy.urls[cp.log_key]) as remote:
            check_and_remember(cp, remote)
    else:
        check_and_remember(cp, log)
    return cp
