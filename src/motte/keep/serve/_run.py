"""``motte run`` for a manifest with ``[[listen]]`` entries: serve until SIGTERM or Ctrl-C.

Logs go to standard error, one line each (``motte: ...``). A listener serving the
self-signed identity, or plain text, is announced with a warning that says what it means.
What was served comes back as a :class:`Served` value; printing it (``--json``) is the
command line's business.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any

from motte._record import Record

if TYPE_CHECKING:
    from motte.keep import PreparedWorkload
    from motte.keep.serve._identity import TlsIdentity
    from motte.keep.serve._options import BoundListener, ServeOptions, ServeStats
    from motte.keep.serve._renew import Renewer

log = logging.getLogger("motte.keep.serve")


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (tests replace it)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"motte: {record.levelname.lower()}: {text}"
        return f"motte: {text}"


def configure_logging() -> None:
    """Send the listeners' log to stderr, unless the embedding program configured logging."""
    if log.handlers or logging.getLogger().handlers:
        return
    handler = _StderrHandler()
    handler.setFormatter(_Formatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def _describe(listener: BoundListener, identity: TlsIdentity | None) -> str:
    kind = listener.protocol.upper()
    if not listener.tls or identity is None:
        return f"{kind}, plain text"
    trust = (
        f"attested: {identity.description}" if identity.attested else "SELF-SIGNED, attests nothing"
    )
    return f"{kind}, TLS 1.3, {trust}"


def bound_to(listener: BoundListener) -> str:
    """Where a listener is bound, and what that reaches: ``127.0.0.1:8443 and [::1]:8443,
    loopback only``."""
    from motte._net import is_loopback_host

    shown = [f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in listener.addresses]
    hosts = [h for h, _ in listener.addresses]
    if any(h in ("::", "0.0.0.0") for h in hosts):
        reach = "every interface"
    elif hosts and all(is_loopback_host(h) for h in hosts):
        reach = "loopback only"
    else:
        reach = "this address only"
    return f"{' and '.join(shown)}, {reach}"


def warn_about(listeners: list[BoundListener], identity: TlsIdentity | None) -> None:
    """The loud lines: an unattested certificate, and any listener without TLS."""
    tls = [b.name for b in listeners if b.tls]
    if tls and identity is not None and not identity.attested:
        log.warning(
            "UNATTESTED KEEP: listener(s) %s present a self-signed certificate "
            "(sha256 %s) that attests NOTHING: a client cannot tell this Keep from any "
            "other program; configure a Steward for an attested certificate",
            ", ".join(repr(n) for n in tls),
            identity.leaf_sha256,
        )
    for b in listeners:
        if not b.tls:
            log.warning(
                "listener %r serves PLAIN TEXT (tls = false): anyone on the path can read "
                "and change its traffic",
                b.name,
            )


class Served(Record):
    """What :func:`serve_workload` served, once it has stopped: the workload's ``digest``,
    the ``listeners`` as they were bound, the ``identity`` new connections were given last
    (None: no TLS listener), and the counters (``stats``)."""

    __slots__ = ("digest", "identity", "listeners", "stats")
    digest: str
    listeners: tuple[BoundListener, ...]
    identity: TlsIdentity | None
    stats: ServeStats

    def __init__(
        self,
        digest: str,
        listeners: tuple[BoundListener, ...],
        identity: TlsIdentity | None,
        stats: ServeStats,
    ) -> None:
        self._set(digest=digest, listeners=tuple(listeners), identity=identity, stats=stats)


def serve_workload(
    workload: PreparedWorkload,
    *,
    identity: TlsIdentity | None = None,
    options: ServeOptions | None = None,
    renewer: Renewer | None = None,
) -> Served:
    """Serve the workload's listeners until SIGTERM/SIGINT; what was served, once stopped.

    Without an ``identity``, TLS listeners present :func:`self_signed_identity`'s (never
    renewed: it is valid for a day); without ``options``, one process serves per CPU. An
    attested identity comes with its ``renewer``, which re-attests before it expires.
    """
    from motte.keep.serve._identity import self_signed_identity
    from motte.keep.serve._options import ServeOptions, cpus
    from motte.keep.serve._server import serve

    configure_logging()
    if options is None:
        # Sealed volumes live in this process's memory and are persisted by it: one
        # process serves them (its threads still run instances side by side).
        processes = 1 if workload.volumes is not None else cpus()
        options = ServeOptions(processes=processes)
    listeners = workload.manifest.listen
    if identity is None and any(listen.tls for listen in listeners):
        identity = self_signed_identity()
    bound: list[BoundListener] = []

    def ready(listening: list[BoundListener]) -> None:
        bound.extend(listening)
        warn_about(listening, identity)
        for b in listening:
            log.info(
                "listening: %s %s, bound to %s (%s)",
                b.name,
                b.url,
                bound_to(b),
                _describe(b, identity),
            )
        log.info("serving %s (%s); stop with SIGTERM or Ctrl-C", workload.digest, workload.kind)

    stats = serve(workload, listeners, identity, ready=ready, options=options, renewer=renewer)
    if renewer is not None:
        identity = renewer.identities.current  # the one new connections got last
    counts = stats.as_dict()
    log.info("stopped: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in counts.items()))
    return Served(workload.digest, tuple(bound), identity, stats)
