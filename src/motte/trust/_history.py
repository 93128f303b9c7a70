"""A package's history, read from the transparency log itself.

The log holds every statement anyone logged, as DSSE envelopes. Reading it in full shows
what the package's own referrers may not: advisories attached elsewhere, every earlier
publication of the package and who signed it, and when (the log's time, not the
publisher's). "Since when" and "never seen before" come from here and from the consumer's
memory, never from anything the publisher writes.

A log is read from the consumer's embedded log, or over HTTP from a served log (entry
bundles). Served entries are trusted only after they hash to the root of a checkpoint
verified with the consumer's log keys and shown consistent with the last one it saw.
"""

from __future__ import annotations

import bisect
import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from motte.errors import MotteError
from motte.sign import INTOTO_PAYLOAD_TYPE, Envelope, EnvelopeFormatError, Statement
from motte.tlog import Checkpoint
from motte.trust._evidence import LogPlace

#: Reading a log is linear in its size; past this many entries the history is left
#: incomplete (and says so) rather than making every judgement slow.
MAX_HISTORY_ENTRIES = 2_000_000


@dataclass(frozen=True, slots=True)
class LogRecord:
    place: LogPlace
    envelope: bytes
    parsed: Envelope
    statement: Statement  # not yet verified: the caller checks signatures


@dataclass
class History:
    records: list[LogRecord] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)  # "origin at size N", each read in full
    problem: str | None = None


def _utc(seconds: int | None) -> dt.datetime | None:
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.UTC)


def _parse(entry: bytes) -> tuple[Envelope, Statement] | None:
    """A log entry as an in-toto statement in a DSSE envelope, or None (other entries)."""
    try:
        env = Envelope.from_bytes(entry, "log entry")
        if env.payload_type != INTOTO_PAYLOAD_TYPE:
            return None
        return env, Statement.from_bytes(env.payload, "log entry statement")
    except EnvelopeFormatError:
        return None


def read_history(
    checkpoints: Iterable[Checkpoint],
    wanted: Callable[[Statement], bool],
    *,
    now: dt.datetime,
) -> History:
    """Every entry of each log behind ``checkpoints`` whose statement is ``wanted``.

    A log that cannot be read leaves ``problem`` set (naming the log and why); what could be
    read is still returned.
    """
    history = History()
    done: set[tuple[str, str]] = set()
    for cp in checkpoints:
        key = (cp.origin, cp.log_key)
        if key in done:
            continue
        done.add(key)
        try:
            _read_one(cp, wanted, now, history)
        except MotteError as e:
            history.problem = f"cannot read the log {cp.origin}: {e.message}"
    return history


def _read_one(
    cp: Checkpoint, wanted: Callable[[Statement], bool], now: dt.datetime, out: History
) -> None:
    from motte.tlog import (
        LocalLog,
        LogRemoteError,
        RemoteLog,
        check_and_remember,
        load_trusted,
        resolve_log,
        root_of,
        verify_checkpoint,
    )

    log = resolve_log(cp)
    try:
        if isinstance(log, LocalLog):
            # This installation's own log: its store is as trusted as anything here.
            size = log.size
            _check_size(cp.origin, size)
            entries = log.read_entries(0, size)
            times = log.checkpoint_times()
        else:
            assert isinstance(log, RemoteLog)
            latest = verify_checkpoint(log.checkpoint(), load_trusted(), now=now.timestamp())
            check_and_remember(latest, log)
            size = latest.size
            _check_size(cp.origin, size)
            entries = log.read_entries_unverified(0, size, size)
            if root_of(entries) != latest.root_hash:
                raise LogRemoteError(
                    f"its entries do not hash to the root of its checkpoint of size {size}"
                )
            # Entries from a served log carry no time of their own; statements found as
            # referrers bring theirs (their proof's checkpoint).
            times = [(size, latest.time)] if latest.time is not None else []
    finally:
        log.close()
    sizes = [s for s, _ in times]
    for index, entry in enumerate(entries):
        parsed = _parse(entry)
        if parsed is None or not wanted(parsed[1]):
            continue
        at = bisect.bisect_right(sizes, index)
        # Only a local log's per-checkpoint times date an entry; a served log's latest
        # checkpoint only bounds all of them, which is no date for any one.
        when = _utc(times[at][1]) if at < len(times) and isinstance(log, LocalLog) else None
        out.records.append(LogRecord(LogPlace(cp.origin, index, when), entry, *parsed))
    out.logs.append(f"{cp.origin} at size {size}")


def _check_size(origin: str, size: int) -> None:
    from motte.tlog import TlogUsageError

    if size > MAX_HISTORY_ENTRIES:
        raise TlogUsageError(
            f"{size} entries, more than the {MAX_HISTORY_ENTRIES} a judgement reads"
        )
