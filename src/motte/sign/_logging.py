"""The transparency log, as signing and verifying use it (a thin adapter over motte.tlog).

What is logged is the DSSE envelope, byte for byte as it is stored beside the artifact: a
monitor reading the log sees the statement, its subject digest and its signatures, and can
check them without the package. The inclusion bundle (C2SP tlog-proof) travels with the
envelope, so verification works offline against a trusted log key; when the log can be
reached the checkpoint is also checked for consistency with the last one seen (a fork).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from motte.sign._errors import SigningUsageError


@dataclass(frozen=True, slots=True)
class LogEvidence:
    """What verifying an entry's inclusion established."""

    origin: str
    index: int
    tree_size: int
    #: "first checkpoint seen from this log", "consistent with size N", or why it was skipped.
    fork_check: str


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
    envelope: bytes, bundle: bytes, *, now: dt.datetime, log_url: str | None = None
) -> LogEvidence:
    """Inclusion of ``envelope`` under a trusted checkpoint, then the fork check.

    Raises the log's verification errors (bad signature, bad proof, untrusted log, fork).
    If the log cannot be reached for a consistency proof, the inclusion still stands and
    ``fork_check`` says the check was skipped and why.
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
        status = f"skipped: {e.message}"
    else:
        if previous is None:
            status = "first checkpoint seen from this log"
        else:
            status = f"consistent with the checkpoint of size {previous[0]} seen before"
    finally:
        if log is not None:
            log.close()
    return LogEvidence(cp.origin, _index_of(bundle), cp.size, status)


def _index_of(bundle: bytes) -> int:
    from motte.tlog import InclusionBundle

    return InclusionBundle.from_bytes(bundle).index
