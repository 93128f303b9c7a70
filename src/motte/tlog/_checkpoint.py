"""C2SP tlog-checkpoint bodies, and verifying a (co)signed checkpoint against a trust policy.

A checkpoint is a signed note whose text is three or more lines: the origin, the tree size in
decimal, the base64 root hash, then optional extension lines. motte's log writes one extension
line, ``time <POSIX seconds>``: when the log signed this tree head, in the log's own signed
word. Every entry the tree holds was in the log by then, which is how a release or an advisory
gets a time its publisher cannot backdate (see :attr:`CheckpointBody.time`).

Verification is one recipe: :func:`verify_checkpoint` returns a :class:`Checkpoint` only when
a trusted log key signed it and at least the policy's quorum of trusted witnesses cosigned it;
otherwise it raises.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field

from motte.tlog._errors import SignatureError, TlogFormatError, TlogUsageError
from motte.tlog._merkle import HASH_SIZE
from motte.tlog._note import Note, Verifier, open_note, parse_note

#: Cosignatures whose timestamp is further than this in the future are refused.
MAX_CLOCK_SKEW = 300
#: The extension line prefix of the log's signing time (``time 1732650000``).
TIME_EXTENSION = "time "


def time_line(seconds: int) -> str:
    return f"{TIME_EXTENSION}{seconds}"


def extension_time(extensions: Iterable[str]) -> int | None:
    """The ``time N`` extension line's value (POSIX seconds), or None when there is none.

    Only a decimal without leading zeros counts; a malformed line is treated as absent (the
    line is opaque to C2SP readers, and a time that does not parse proves nothing).
    """
    for line in extensions:
        if line.startswith(TIME_EXTENSION):
            digits = line[len(TIME_EXTENSION) :]
            if digits.isascii() and digits.isdigit() and str(int(digits)) == digits:
                return int(digits)
    return None


@dataclass(frozen=True)
class CheckpointBody:
    """The three lines a log signs (and any extension lines, kept verbatim)."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    @property
    def time(self) -> int | None:
        """When the log says it signed this tree head (POSIX seconds), if it says."""
        return extension_time(self.extensions)

    def to_text(self) -> bytes:
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode()]
        return ("\n".join([*lines, *self.extensions]) + "\n").encode()

    @classmethod
    def from_text(cls, text: bytes, *, what: str = "checkpoint") -> CheckpointBody:
        try:
            s = text.decode("utf-8")
        except UnicodeDecodeError:
            raise TlogFormatError(f"{what}: not UTF-8") from None
        if not s.endswith("\n"):
            raise TlogFormatError(f"{what}: the text does not end with a newline")
        lines = s[:-1].split("\n")
        if len(lines) < 3:
            raise TlogFormatError(f"{what}: {len(lines)} lines, a checkpoint has at least 3")
        for n, line in enumerate(lines, start=1):
            if not line:
                raise TlogFormatError(f"{what}: line {n} is empty")
        origin, size_s, root_s = lines[:3]
        if not size_s.isascii() or not size_s.isdigit() or str(int(size_s)) != size_s:
            raise TlogFormatError(
                f"{what}: line 2 (tree size) {size_s[:24]!r} is not a decimal without leading zeros"
            )
        try:
            root = base64.b64decode(root_s.encode("ascii"), validate=True)
        except (ValueError, UnicodeEncodeError):
            raise TlogFormatError(f"{what}: line 3 (root hash) is not base64") from None
        if len(root) != HASH_SIZE:
            raise TlogFormatError(f"{what}: line 3 (root hash) is {len(root)} bytes, not 32")
        return cls(origin, int(size_s), root, tuple(lines[3:]))


@dataclass(frozen=True)
class Cosignature:
    """A verified witness cosignature: who, and when the witness says it signed."""

    witness: str  # the witness's vkey
    timestamp: int


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint whose log signature (and policy's cosignatures) verified."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...]
    note: bytes  # the signed note exactly as verified, cosignatures included
    log_key: str  # the vkey whose signature verified
    cosignatures: tuple[Cosignature, ...] = ()

    @property
    def time(self) -> int | None:
        """When the (trusted) log signed this tree head, POSIX seconds; None if not recorded.

        An upper bound on when every entry in the tree was logged: the log signs a checkpoint
        only after the entries it covers are committed.
        """
        return extension_time(self.extensions)

    @property
    def body(self) -> CheckpointBody:
        return CheckpointBody(self.origin, self.size, self.root_hash, self.extensions)

    def describe(self) -> str:
        return f"{self.origin} size {self.size} root {base64.b64encode(self.root_hash).decode()}"


@dataclass(frozen=True)
class TrustedLogs:
    """Whose checkpoints a verifier accepts: log keys, witness keys and a witness quorum.

    ``witness_quorum`` None means every listed witness must cosign; 0 means none need to.
    ``urls`` maps a log vkey to where the log can be reached for consistency proofs.
    """

    log_keys: tuple[str, ...] = ()
    witness_keys: tuple[str, ...] = ()
    witness_quorum: int | None = None
    urls: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for vkey in self.log_keys:
            if Verifier.from_vkey(vkey).is_cosigner:
                raise TlogUsageError(f"{vkey}: a witness (cosignature) key, not a log key")
        for vkey in self.witness_keys:
            if not Verifier.from_vkey(vkey).is_cosigner:
                raise TlogUsageError(f"{vkey}: a log key, not a witness (cosignature, 0x04) key")
        if self.witness_quorum is not None and not (
            0 <= self.witness_quorum <= len(self.witness_keys)
        ):
            raise TlogUsageError(
                f"witness quorum {self.witness_quorum} cannot be met by "
                f"{len(self.witness_keys)} trusted witnesses"
            )

    @classmethod
    def from_keys(cls, vkeys: Iterable[str], *, witness_quorum: int | None = None) -> TrustedLogs:
        """Sort vkeys by their type: 0x01 log keys, 0x04 witness keys."""
        logs, witnesses = [], []
        for vkey in vkeys:
            (witnesses if Verifier.from_vkey(vkey).is_cosigner else logs).append(vkey.strip())
        return cls(tuple(logs), tuple(witnesses), witness_quorum)

    @property
    def quorum(self) -> int:
        return len(self.witness_keys) if self.witness_quorum is None else self.witness_quorum


def as_trusted(trusted: TrustedLogs | Iterable[str]) -> TrustedLogs:
    if isinstance(trusted, TrustedLogs):
        return trusted
    if isinstance(trusted, str):
        trusted = [trusted]
    return TrustedLogs.from_keys(trusted)


def parse_checkpoint_unverified(note: bytes) -> tuple[CheckpointBody, Note]:
    """The body and signatures of a checkpoint note, trusting nothing."""
    parsed = parse_note(note, what="checkpoint")
    return CheckpointBody.from_text(parsed.text), parsed


def verify_checkpoint(
    note: bytes, trusted: TrustedLogs | Iterable[str], *, now: float | None = None
) -> Checkpoint:
    """Verify a checkpoint note against ``trusted``; return it, or raise.

    A trusted log key must have signed; every signature by a trusted key must verify; at
    least the quorum of trusted witnesses must have cosigned (a cosignature more than
    :data:`MAX_CLOCK_SKEW` seconds after ``now`` does not count, when ``now`` is given).
    """
    policy = as_trusted(trusted)
    if not policy.log_keys:
        raise TlogUsageError(
            "no trusted log key to verify the checkpoint with",
            hint="trust the log's key with `motte log trust VKEY` or pass --key VKEY",
        )
    body, parsed = parse_checkpoint_unverified(note)
    logs = [Verifier.from_vkey(k) for k in policy.log_keys]
    witnesses = [Verifier.from_vkey(k) for k in policy.witness_keys]
    opened = open_note(parsed, [*logs, *witnesses], what=f"checkpoint of {body.origin}")
    log_sigs = [s for s in opened.verified if not s.verifier.is_cosigner]
    if not log_sigs:
        raise SignatureError(
            f"checkpoint of {body.origin} size {body.size}: not signed by a trusted log key "
            f"(only by witnesses)",
            hint="trust the log's key with `motte log trust VKEY` or pass --key VKEY",
        )
    cosigs = []
    for s in opened.verified:
        if s.verifier.is_cosigner:
            assert s.timestamp is not None
            if now is not None and s.timestamp > now + MAX_CLOCK_SKEW:
                continue
            cosigs.append(Cosignature(s.verifier.vkey, s.timestamp))
    if len(cosigs) < policy.quorum:
        have = ", ".join(Verifier.from_vkey(c.witness).name for c in cosigs) or "none"
        raise SignatureError(
            f"checkpoint of {body.origin} size {body.size}: cosigned by {len(cosigs)} trusted "
            f"witnesses ({have}), the policy requires {policy.quorum}",
            hint="ask the log for a checkpoint its witnesses cosigned, or lower --witness-quorum",
        )
    return Checkpoint(
        origin=body.origin,
        size=body.size,
        root_hash=body.root_hash,
        extensions=body.extensions,
        note=note,
        log_key=log_sigs[0].verifier.vkey,
        cosignatures=tuple(cosigs),
    )
