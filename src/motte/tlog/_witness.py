"""A witness (C2SP tlog-witness v1): cosign a checkpoint only if it extends the last one cosigned.

The request and response formats are pure functions; :class:`Witness` runs the spec's checks
in order, each failure a :class:`WitnessRefusedError` carrying the HTTP status the spec
assigns (404 unknown origin, 403 no trusted signature, 400 malformed or old size too big,
409 old size or root differs from what the witness recorded, 422 bad consistency proof).
The check of the old size and the update of the recorded checkpoint are one transaction
that holds the origin's lock (SQLite's write lock; a PostgreSQL advisory lock per origin, so
witness replicas sharing a database serialise too): two concurrent requests cannot roll the
state back. The state lives in ``state.db`` (SQLite) or a PostgreSQL database (``--db``).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from motte.store import DatabaseUrl, Migration, Schema, Tx, open_database, resolve_database
from motte.tlog._checkpoint import CheckpointBody, parse_checkpoint_unverified
from motte.tlog._errors import (
    ProofError,
    SignatureError,
    TlogFormatError,
    TlogUsageError,
    WitnessRefusedError,
)
from motte.tlog._merkle import HASH_SIZE, verify_consistency
from motte.tlog._note import COSIGNATURE_ED25519, Signer, Verifier, open_note

MAX_PROOF_LINES = 63
MAX_REQUEST_SIZE = 1 << 20


def format_add_checkpoint(old_size: int, proof: Sequence[bytes], checkpoint: bytes) -> bytes:
    """The body of ``POST <prefix>/add-checkpoint``."""
    lines = [f"old {old_size}", *(base64.b64encode(h).decode() for h in proof)]
    return ("\n".join(lines) + "\n\n").encode() + checkpoint


def parse_add_checkpoint(body: bytes) -> tuple[int, list[bytes], bytes]:
    """(old size, consistency proof, checkpoint note) from an add-checkpoint body."""
    if len(body) > MAX_REQUEST_SIZE:
        raise WitnessRefusedError(400, f"request of {len(body)} bytes is too large")
    head, sep, note = body.partition(b"\n\n")
    if not sep:
        raise WitnessRefusedError(400, "request: no blank line before the checkpoint")
    try:
        lines = head.decode("ascii").split("\n")
    except UnicodeDecodeError:
        raise WitnessRefusedError(400, "request: the header lines are not ASCII") from None
    old = lines[0].removeprefix("old ")
    if not lines[0].startswith("old ") or not old.isdigit() or str(int(old)) != old:
        raise WitnessRefusedError(400, "request: line 1 is not 'old <size>'")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise WitnessRefusedError(400, f"request: more than {MAX_PROOF_LINES} proof lines")
    proof = []
    for n, line in enumerate(lines[1:], start=2):
        try:
            h = base64.b64decode(line, validate=True)
        except ValueError:
            raise WitnessRefusedError(400, f"request: line {n} is not base64") from None
        if len(h) != HASH_SIZE:
            raise WitnessRefusedError(400, f"request: line {n} is not a 32-byte hash")
        proof.append(h)
    return int(old), proof, note


def parse_size_response(text: str) -> int:
    """The body of a 409 response (``text/x.tlog.size``): the witness's recorded size."""
    s = text.strip()
    if not s.isdigit():
        raise TlogFormatError(f"witness 409 response {s[:40]!r} is not a tree size")
    return int(s)


@dataclass(frozen=True)
class WitnessedLog:
    origin: str
    keys: tuple[Verifier, ...]


def parse_logs_config(lines: Iterable[str], *, where: str = "witness logs") -> list[WitnessedLog]:
    """``<vkey> [origin]`` per line (origin defaults to the key name); ``#`` starts a comment."""
    by_origin: dict[str, list[Verifier]] = {}
    for n, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) > 2:
            raise TlogFormatError(f"{where}:{n}: expected '<vkey> [origin]'")
        try:
            v = Verifier.from_vkey(fields[0])
        except TlogFormatError as e:
            raise TlogFormatError(f"{where}:{n}: {e.message}") from None
        if v.is_cosigner:
            raise TlogFormatError(f"{where}:{n}: {v.name} is a witness key, not a log key")
        by_origin.setdefault(fields[1] if len(fields) == 2 else v.name, []).append(v)
    return [WitnessedLog(o, tuple(ks)) for o, ks in by_origin.items()]


SCHEMA = Schema(
    "witness",
    (
        Migration(
            1,
            "the latest cosigned checkpoint per log",
            sqlite=[
                "CREATE TABLE IF NOT EXISTS latest (origin TEXT PRIMARY KEY, "
                "size INTEGER NOT NULL, root BLOB NOT NULL, note BLOB NOT NULL)"
            ],
            postgresql=[
                "CREATE TABLE latest (origin TEXT PRIMARY KEY, size BIGINT NOT NULL, "
                "root BYTEA NOT NULL, note BYTEA NOT NULL)"
            ],
        ),
    ),
)


class WitnessState:
    """The latest cosigned checkpoint per origin (one row per log)."""

    def __init__(self, database: Path | DatabaseUrl) -> None:
        url = database if isinstance(database, DatabaseUrl) else DatabaseUrl.sqlite(database)
        self.path = url.path
        self.db = open_database(url, SCHEMA, application="motte-witness")

    def get(self, origin: str) -> tuple[int, bytes] | None:
        with self.db.read() as tx:
            row = tx.one("SELECT size, root FROM latest WHERE origin = ?", (origin,))
        return (int(row[0]), bytes(row[1])) if row else None

    def close(self) -> None:
        self.db.close()


class Witness:
    """The witness's decision procedure, independent of HTTP."""

    def __init__(self, signer: Signer, logs: Iterable[WitnessedLog], state: WitnessState) -> None:
        if signer.verifier.key_type != COSIGNATURE_ED25519:
            raise TlogUsageError(f"witness key {signer.name} is not a cosignature (0x04) key")
        self.signer = signer
        self.logs: Mapping[str, WitnessedLog] = {log.origin: log for log in logs}
        self.state = state
        import threading

        self._lock = threading.Lock()

    @property
    def verifier_key(self) -> str:
        return self.signer.verifier.vkey

    def add_checkpoint(self, body: bytes, *, now: int) -> bytes:
        """Check an add-checkpoint request; return the cosignature line(s), or raise."""
        old, proof, note = parse_add_checkpoint(body)
        try:
            cp, parsed = parse_checkpoint_unverified(note)
        except TlogFormatError as e:
            raise WitnessRefusedError(400, e.message) from None
        log = self.logs.get(cp.origin)
        if log is None:
            raise WitnessRefusedError(404, f"unknown log origin {cp.origin!r}")
        try:
            open_note(parsed, log.keys, what=f"checkpoint of {cp.origin}")
        except SignatureError as e:
            raise WitnessRefusedError(403, e.message) from None
        if old > cp.size:
            raise WitnessRefusedError(400, f"old size {old} is past the checkpoint's {cp.size}")
        with self._lock, self.state.db.write() as tx:
            tx.lock(f"motte.witness.{cp.origin}")
            self._check_and_record(tx, cp, old, proof, note)
        return self.signer.signature_line(parsed.text, timestamp=now).encode()

    def _check_and_record(
        self,
        tx: Tx,
        cp: CheckpointBody,
        old: int,
        proof: list[bytes],
        note: bytes,
    ) -> None:
        row = tx.one("SELECT size, root FROM latest WHERE origin = ?", (cp.origin,))
        size, root = (int(row[0]), bytes(row[1])) if row else (0, b"")
        if old != size:
            raise WitnessRefusedError(
                409,
                f"old size {old} does not match the witness's latest {cp.origin} size {size}",
                witness_size=size,
            )
        if old == cp.size and old > 0:
            if root != cp.root_hash:
                raise WitnessRefusedError(
                    409,
                    f"checkpoint of {cp.origin} size {old} has a different root than the "
                    "one the witness cosigned: the log forked",
                    witness_size=size,
                )
        else:
            try:
                verify_consistency(old, cp.size, proof, root, cp.root_hash)
            except ProofError as e:
                raise WitnessRefusedError(422, f"{cp.origin}: {e.message}") from None
        tx.execute(
            "INSERT INTO latest (origin, size, root, note) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (origin) DO UPDATE SET size = excluded.size, root = excluded.root, "
            "note = excluded.note",
            (cp.origin, cp.size, cp.root_hash, note),
        )


# -- a witness on disk -------------------------------------------------------------------------

WITNESS_KEY_FILE = "witness.key"
WITNESS_LOGS_FILE = "logs"
WITNESS_STATE_FILE = "state.db"


def default_witness_dir() -> Path:
    from motte.home import motte_home

    return motte_home() / "tlog" / "witness"


def init_witness(directory: Path, *, name: str | None = None) -> Signer:
    """Create the witness key (mode 0600) unless one exists; return the key."""
    from motte.fsutil import create_exclusive

    path = directory / WITNESS_KEY_FILE
    if not path.exists():
        import secrets
        import socket

        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        default = f"{socket.gethostname()}/motte-witness/{secrets.token_hex(4)}"
        signer = Signer.generate(name or default, COSIGNATURE_ED25519)
        create_exclusive(path, (signer.skey + "\n").encode(), mode=0o600)
    signer = Signer.from_skey(path.read_text())
    if name is not None and signer.name != name:
        raise TlogUsageError(
            f"{directory} already holds the witness {signer.name}, not {name}",
            hint="use another --dir for a new witness",
        )
    return signer


def open_witness(
    directory: Path, *, extra_logs: Iterable[str] = (), database: str | None = None
) -> Witness:
    """The witness in ``directory``: its key, the logs it witnesses, its state (in
    ``state.db``, or the PostgreSQL database ``database`` / MOTTE_DB names)."""
    from motte.tlog._errors import LogNotFoundError

    key = directory / WITNESS_KEY_FILE
    if not key.exists():
        raise LogNotFoundError(
            f"no witness at {directory}", hint="create one with `motte log witness init`"
        )
    if key.stat().st_mode & 0o077:
        raise TlogUsageError(
            f"{key}: the witness key is readable by others", hint=f"chmod 600 {key}"
        )
    signer = Signer.from_skey(key.read_text())
    cfg = directory / WITNESS_LOGS_FILE
    lines = cfg.read_text().splitlines() if cfg.exists() else []
    logs = parse_logs_config([*lines, *extra_logs], where=str(cfg))
    if not logs:
        raise TlogUsageError(
            "the witness trusts no log", hint="pass --log VKEY or list log keys in " + str(cfg)
        )
    url = resolve_database(database, default=directory / WITNESS_STATE_FILE)
    return Witness(signer, logs, WitnessState(url))
