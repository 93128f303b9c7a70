"""Renewal of an attested Keep's certificate while it serves: :class:`Renewer`.

A Steward's certificates are short-lived (``certificate_lifetime``, a day by default), so
a serving Keep attests again before its certificate expires, the same way it did at start
(a fresh key, nonce and evidence; the Steward judges it under its current policy and audits
it), and its listeners present the new certificate to **new** connections; connections
already open keep the one they were handshaken with.

When (:func:`next_attempt`): at two thirds of the certificate's validity; after a failure,
again in 30 s, then 60 s, 120 s... at most 10 min apart, and never later than the
certificate's expiry. Each failure is one warning line naming the Steward and the reason;
a certificate that expires without a renewal is one error line (clients now refuse the
Keep) and the Keep keeps serving and trying: the operator decides.

:class:`Identities` holds the identity new handshakes use and tells whoever watches it
(each process's listeners, the parent's pipe to its worker processes) when it changes.
A self-signed identity is not renewed.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable

from motte.keep.serve._identity import TlsIdentity

log = logging.getLogger("motte.keep.serve")

#: Where in a certificate's validity the first renewal is tried.
RENEW_AT = 2 / 3
#: The first retry after a failure, doubling up to MAX_RETRY (seconds).
FIRST_RETRY = 30.0
MAX_RETRY = 600.0


def next_attempt(
    not_before: dt.datetime, not_after: dt.datetime, now: dt.datetime, failures: int = 0
) -> float:
    """Seconds from ``now`` until the next renewal attempt (0: at once).

    With no failure since the certificate was issued: at two thirds of its validity. After
    ``failures`` failed attempts: 30 s doubling per failure, at most 10 min, and never later
    than ``not_after`` while the certificate is still valid (once it has expired, the
    backoff alone)."""
    if failures <= 0:
        at = not_before + (not_after - not_before) * RENEW_AT
        return max(0.0, (at - now).total_seconds())
    backoff = min(FIRST_RETRY * 2 ** min(failures - 1, 32), MAX_RETRY)
    left = (not_after - now).total_seconds()
    if left > 0:
        return min(backoff, left)
    return backoff


class Identities:
    """The TLS identity new connections get, and the callbacks told when it changes.

    :meth:`watch` calls its callback with the current identity at once and then with each
    new one, serially (under a lock), so a watcher never misses an update nor sees an
    older identity after a newer one."""

    def __init__(self, identity: TlsIdentity) -> None:
        self._current = identity
        self._watchers: list[Callable[[TlsIdentity], None]] = []
        self._lock = threading.RLock()

    @property
    def current(self) -> TlsIdentity:
        return self._current

    def watch(self, callback: Callable[[TlsIdentity], None]) -> None:
        with self._lock:
            callback(self._current)
            self._watchers.append(callback)

    def unwatch(self, callback: Callable[[TlsIdentity], None]) -> None:
        with self._lock:
            if callback in self._watchers:
                self._watchers.remove(callback)

    def update(self, identity: TlsIdentity) -> None:
        with self._lock:
            self._current = identity
            for callback in list(self._watchers):
                try:
                    callback(identity)
                except Exception as e:  # one watcher failing must not stop the others
                    log.warning("the renewed certificate could not be installed: %s", e)


def _validity(identity: TlsIdentity) -> tuple[dt.datetime, dt.datetime]:
    leaf = identity.leaf
    return leaf.not_valid_before_utc, leaf.not_valid_after_utc


def _serial(identity: TlsIdentity) -> str:
    return format(identity.leaf.serial_number, "x")


def _one_line(text: str) -> str:
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


class Renewer:
    """Re-attests on schedule and installs each new identity in :attr:`identities`.

    ``attest`` does one re-attestation and returns the new identity, or raises (a refusal
    by the Steward, an unreachable Steward...). ``steward`` names it in the log.
    :meth:`start` runs the schedule on a daemon thread; :meth:`renew_now` is one attempt,
    on the caller's thread (the schedule then starts again from its outcome)."""

    def __init__(
        self,
        identity: TlsIdentity,
        attest: Callable[[], TlsIdentity],
        *,
        steward: str,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.identities = Identities(identity)
        self.steward = steward
        self.failures = 0
        self._attest = attest
        self._clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._stopped = threading.Event()
        self._expiry_told: str | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="motte-renew", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._changed.set()
        if self._thread is not None:
            self._thread.join(5)

    def delay(self) -> float:
        """Seconds until the next scheduled attempt."""
        not_before, not_after = _validity(self.identities.current)
        return next_attempt(not_before, not_after, self._clock(), self.failures)

    def _run(self) -> None:
        while not self._stopped.is_set():
            if self._changed.wait(self.delay()):
                self._changed.clear()  # renewed meanwhile, or stopping: look again
                continue
            self.renew_now()

    def renew_now(self) -> bool:
        """One attempt: True if a new certificate is now served to new connections."""
        with self._lock:
            old = self.identities.current
            try:
                new = self._attest()
            except Exception as e:  # any failure: keep the old certificate, try again later
                self.failures += 1
                self._failed(old, e)
                return False
            self.failures = 0
            self.identities.update(new)
            self._changed.set()
        not_after = new.not_after
        log.info(
            "renewed: the Steward %s issued certificate %s until %s; new connections get it",
            self.steward,
            _serial(new),
            not_after.isoformat(timespec="seconds"),
        )
        return True

    def _failed(self, old: TlsIdentity, error: Exception) -> None:
        not_before, not_after = _validity(old)
        now = self._clock()
        retry = next_attempt(not_before, not_after, now, self.failures)
        reason = _one_line(getattr(error, "message", None) or str(error) or type(error).__name__)
        if self.steward not in reason:  # motte's own errors name it already
            reason = f"the Steward {self.steward}: {reason}"
        serial = _serial(old)
        if now < not_after:
            log.warning(
                "renewal failed: %s; certificate %s stays in use until %s; retrying in %d s",
                reason,
                serial,
                not_after.isoformat(timespec="seconds"),
                retry,
            )
            return
        log.warning("renewal failed: %s; retrying in %d s", reason, retry)
        if self._expiry_told != serial:
            self._expiry_told = serial
            log.error(
                "certificate %s EXPIRED at %s without a renewal: clients now refuse this Keep; "
                "still serving and still trying the Steward %s (restart the Keep, or fix the "
                "Steward)",
                serial,
                not_after.isoformat(timespec="seconds"),
                self.steward,
            )
