"""The transparency log, as signing and verifying use it (a thin adapter over motte.tlog).

What is logged is the DSSE envelope, byte for byte as it is stored beside the artifact: a
monitor reading the log sees the statement, its subject digest and its signatures, and can
check them without the package. The inclusion bundle (C2SP tlog-proof) travels with the
envelope, so the inclusion proof verifies offline against a trusted log key.

The fork check is denied by default: a checkpoint must be shown consistent with the last one
this installation saw from that log (the first one seen is trusted on first use and
remembered). When that takes a consistency proof and the log cannot be reached, the check
fails. ``unsafe_skip_fork_check=True`` (``motte verify --unsafe-skip-fork-check``) accepts
the inclusion proof alone, for an offline verifier who knows what that costs: a log that
shows it one history and everyone else another would go unnoticed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from motte.sign._errors import ForkCheckUnavailableError, SigningUsageError

if TYPE_CHECKING:
    from motte.tlog import Checkpoint


@dataclass(frozen=True, slots=True)
class LogEvidence:
    """What verifying an entry's inclusion established."""

    origin: str
    index: int
    tree_size: int
    #: "first checkpoint seen from this log", "consistent with size N", or why it was skipped.
    fork_check: str
    #: When the log signed the checkpoint the proof leads to (POSIX seconds), if it says: an
    #: upper bound on when the entry was logged, which the statement's signer cannot backdate.
    time: int | None = None
    #: The verified checkpoint itself (which log, which key, its cosignatures).
    checkpoint: Checkpoint | None = field(default=None, compare=False, repr=False)


def log_envelope(envelope: bytes, *, log_url: str | None = None) -> tuple[int, bytes, str]:
    """Append ``envelope`` to the log; return (index, inclusion bundle bytes, log origin)."""
    from motte.tlog import MAX_ENTRY_SIZE, open_log

    if len(envelope) > MAX_ENTRY_SIZE:
        raise SigningUsageError(
            f"signed statement is {len(envelope)} bytes; a log entry holds at most "
            f"{MAX_ENTRY_SIZE}",
            hint="keep statements small: digests and names, not file contents",
        )
    log = open_log(log_url)
    try:
        entry = log.append(envelope)
        bundle = log.inclusion_bundle(entry.index).to_bytes()
        return entry.index, bundle, log.origin
    finally:
        log.close()


def check_logged(
    envelope: bytes,
    bundle: bytes,
    *,
    now: dt.datetime,
    log_url: str | None = None,
    unsafe_skip_fork_check: bool = False,
) -> LogEvidence:
    """Inclusion of ``envelope`` under a trusted checkpoint, then the fork check.

    Raises the log's verification errors (bad signature, bad proof, untrusted log, fork), and
    :class:`ForkCheckUnavailableError` when the checkpoint cannot be shown consistent with the
    last one seen because the log cannot be reached. With ``unsafe_skip_fork_check`` that case
    passes instead, and ``fork_check`` says the check was skipped and why.
    """
    from motte.tlog import (
        LogNotFoundError,
        LogRemoteError,
        check_and_remember,
        last_seen,
        load_trusted,
        open_log,
        verify_inclusion_bundle,
    )

    cp = verify_inclusion_bundle(envelope, bundle, load_trusted(), now=now.timestamp())
    previous = last_seen(cp.origin, cp.log_key)
    log = open_log(log_url) if log_url else None
    try:
        check_and_remember(cp, log)
    except (LogNotFoundError, LogRemoteError) as e:
        if not unsafe_skip_fork_check:
            raise ForkCheckUnavailableError(
                f"fork check: {e.message}",
                hint="give the log's URL (motte log trust VKEY URL, or --log URL); "
                "offline, --unsafe-skip-fork-check accepts the inclusion proof alone",
            ) from None
        status = f"skipped (unsafe_skip_fork_check): {e.message}"
    else:
        if previous is None:
            status = "first checkpoint seen from this log"
        else:
            status = f"consistent with the checkpoint of size {previous[0]} seen before"
    finally:
        if log is not None:
            log.close()
    return LogEvidence(cp.origin, _index_of(bundle), cp.size, status, cp.time, cp)


def _index_of(bundle: bytes) -> int:
    from motte.tlog import InclusionBundle

    return InclusionBundle.from_bytes(bundle).index
