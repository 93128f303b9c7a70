"""Errors of motte.tlog, split by who is at fault.

A malformed note, checkpoint, proof bundle or tile path is the input's fault
(:class:`TlogFormatError`, naming the structure and line). A signature, proof or fork that does
not check out is a verification failure (:class:`SignatureError`, :class:`ProofError`,
:class:`ForkError`). A log database whose bytes no longer match its own hashes was tampered
with or corrupted (:class:`TamperError`). A log or witness that answers wrongly over HTTP is a
remote error (:class:`LogRemoteError`); a witness that refuses a checkpoint says why with an
HTTP status (:class:`WitnessRefusedError`).
"""

from __future__ import annotations

from pathlib import Path

from motte.errors import MotteError, NotFoundError, ParseError, RemoteError, UsageError
from motte.errors import VerificationError as _VerificationError


class TlogError(MotteError):
    """Base of every transparency-log error."""


class TlogFormatError(TlogError, ParseError):
    """Bytes that are not a well-formed note, checkpoint, vkey, proof bundle or tile path."""


class TlogUsageError(TlogError, UsageError):
    """The caller asked for something that cannot work (an entry too large, a bad size)."""


class LogNotFoundError(TlogError, NotFoundError):
    """A log, key, entry or checkpoint that was asked for does not exist."""


class SignatureError(TlogError, _VerificationError):
    """No trusted key signed a note, a trusted key's signature failed, or too few witnesses."""


class ProofError(TlogError, _VerificationError):
    """An inclusion or consistency proof does not lead to the checkpoint's root."""


class ForkError(TlogError, _VerificationError):
    """Two checkpoints of one log that no consistency proof can join: the log forked.

    Carries both tree heads so a caller can publish the evidence.
    """

    def __init__(
        self,
        origin: str,
        old: tuple[int, bytes],
        new: tuple[int, bytes],
        reason: str,
        *,
        hint: str | None = None,
        evidence: Path | None = None,
    ) -> None:
        import base64

        o = base64.b64encode(old[1]).decode()
        n = base64.b64encode(new[1]).decode()
        kept = f"; both signed checkpoints are kept as evidence in {evidence}" if evidence else ""
        super().__init__(
            f"log {origin} forked: checkpoint of size {old[0]} (root {o}) and checkpoint of "
            f"size {new[0]} (root {n}) are not consistent: {reason}{kept}",
            hint=hint
            or "publish the evidence file; do not trust entries from this log until its "
            "operator explains the fork",
        )
        self.origin = origin
        self.old_size, self.old_root = old
        self.new_size, self.new_root = new
        #: The file holding both signed checkpoints, when one was written.
        self.evidence = evidence


class LogBehindError(LogNotFoundError):
    """The log serves a tree smaller than a checkpoint already seen: it cannot prove
    consistency yet. Not a fork: a lagging mirror or a restored backup looks like this."""


class TamperError(TlogError, _VerificationError):
    """A log store whose entries, hashes or checkpoints no longer agree with each other."""


class LogRemoteError(TlogError, RemoteError):
    """A log or witness server could not be reached or broke the protocol."""


class WitnessRefusedError(TlogError, _VerificationError):
    """A witness refused to cosign; ``status`` is the HTTP status of tlog-witness.

    404 unknown log, 403 no trusted signature, 400 bad request, 409 old size or root does not
    match what the witness recorded (``witness_size`` then says its size), 422 bad proof.
    """

    def __init__(
        self, status: int, message: str, *, witness_size: int | None = None, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.witness_size = witness_size
