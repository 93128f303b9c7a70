"""``motte run``'s work: launch the workload as the command line asks, supervise it, report.

The command itself (its options, declared once) is :func:`motte.cli.run.run`, which
:mod:`motte.cli._direct` runs without Typer. Imports are the manifest and the Keep: no
Typer, Rich or pydantic.

Exit status: the guest's own (0..125); 125 when motte cannot start the workload (a bad
manifest, flag or module); 134 for a trap; 137, 142, 152 for the memory, wall-time and
CPU-time limits; 130 when interrupted.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any, NoReturn

from motte.errors import ExitStatus, MotteError

#: How long a guest gets to stop by itself (at an epoch tick) after its wall time ran out or
#: Ctrl-C, before a guest blocked in a host call is ended with the process.
STOP_GRACE = 0.5


class RunOptions:
    """The command line, as :func:`motte.cli.run.run` received it (a plain class:
    dataclasses would cost ~12 ms of start-up, see motte._record)."""

    def __init__(
        self,
        target: str,
        args: list[str] | None = None,
        env: list[str] | None = None,
        dir: list[str] | None = None,
        memory: int | None = None,
        cpu_time: float | None = None,
        wall_time: float | None = None,
        json: bool = False,
        steward: str | None = None,
        backend: str | None = None,
        allow_insecure_sim: bool = False,
        san: list[str] | None = None,
        trust_policy: str | None = None,
        grant: list[str] | None = None,
        allow_rollback: bool = False,
    ) -> None:
        self.target = target
        self.args = args
        self.env = env or []
        self.dir = dir or []
        self.memory = memory
        self.cpu_time = cpu_time
        self.wall_time = wall_time
        self.json = json
        self.steward = steward
        self.backend = backend
        self.allow_insecure_sim = allow_insecure_sim
        self.san = san or []
        self.trust_policy = trust_policy
        self.grant = grant or []
        self.allow_rollback = allow_rollback


def overrides(opts: RunOptions) -> Any:
    """The command line's changes to the manifest (arguments, environment, directories,
    limits) as a :class:`motte.manifest.Overrides` value, each flag checked."""
    from motte.manifest import Overrides

    args = tuple(opts.args) if opts.args is not None else None
    limits = (opts.memory, opts.cpu_time, opts.wall_time)
    if not opts.env and not opts.dir and all(v is None for v in limits):
        return Overrides(args=args)  # the validators stay unimported on the common path
    from motte.manifest import overrides_from_flags

    return overrides_from_flags(
        args=args,
        env=opts.env,
        dirs=opts.dir,
        memory=opts.memory,
        cpu_time=opts.cpu_time,
        wall_time=opts.wall_time,
    )


def _report(err: MotteError) -> None:
    from motte.cli._output import report_error

    report_error(err)


def _stop_process(message: str, status: ExitStatus) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.write(f"motte: guest stopped: {message}\n")
    sys.stderr.flush()
    os._exit(int(status))


def _supervised(workload: Any, wall_message: str, **run: Any) -> Any:
    """Run the guest on a worker thread while this (main) thread handles Ctrl-C and the
    wall-time limit. A guest in wasm stops at the next epoch tick; one blocked in a host
    call (a terminal read, a long sleep), where no deadline can reach it, is ended with the
    process after a short grace."""
    cancel = threading.Event()
    box: dict[str, Any] = {}

    def guest() -> None:
        try:
            box["result"] = workload.run(cancel=cancel, **run)
        except BaseException as e:  # handed to the main thread, which reports it
            box["error"] = e

    worker = threading.Thread(target=guest, name="motte-guest", daemon=True)
    deadline = time.monotonic() + workload.manifest.limits.wall_time + STOP_GRACE
    interrupted_at: float | None = None
    previous = signal.signal(signal.SIGINT, lambda signum, frame: cancel.set())
    try:
        worker.start()
        while worker.is_alive():
            worker.join(0.05)
            now = time.monotonic()
            if cancel.is_set() and interrupted_at is None:
                interrupted_at = now
            if interrupted_at is not None and now > interrupted_at + STOP_GRACE:
                _stop_process("interrupted", ExitStatus.INTERRUPTED)
            if now > deadline:
                _stop_process(wall_message, ExitStatus.WALL_TIME)
    finally:
        signal.signal(signal.SIGINT, previous)
    if "error" in box:
        raise box["error"]
    return box["result"]


def execute(opts: RunOptions, *, supervise: bool = False) -> int:
    """Run the workload as ``opts`` asks; print its outcome; return the exit status.

    ``supervise`` runs the guest on a worker thread and may end the whole process (Ctrl-C,
    or a guest blocked in a host call past its wall time): only for a process that exists
    to run this one workload.
    """
    try:
        launched = _launch(opts)
    except MotteError as e:
        _report(e)
        # Only a limit keeps its own status; anything else that stops the start is 125.
        if e.exit_status == ExitStatus.MEMORY_LIMIT:
            return int(e.exit_status)
        return int(ExitStatus.RUN_ERROR)
    workload = launched.workload
    manifest = workload.manifest
    if not opts.json:
        _say_granted(launched)
    if workload.outbound is not None:
        for line in workload.outbound.warnings():
            sys.stderr.write(f"motte: warning: {line}\n")
    if manifest.listen:
        return _serve(workload, opts, launched.identity)
    try:
        return _run_once(launched, opts, supervise)
    finally:
        _close_volumes(workload, "stop")


def _close_volumes(workload: Any, reason: str) -> bool:
    """Persist and close the sealed volumes (a clean stop or a drain); say how it went."""
    volumes = workload.volumes
    if volumes is None:
        return True
    report = volumes.close(reason)
    if report is None:
        return True
    sys.stderr.write(f"motte: {report.line()}\n")
    sys.stderr.flush()
    from motte.keep import record_drain

    record_drain(report.to_dict())
    return report.ok


def _run_once(launched: Any, opts: RunOptions, supervise: bool) -> int:
    from motte.keep import limit_trap

    workload = launched.workload
    manifest = workload.manifest
    capture = "capture" if opts.json else None
    streams: dict[str, Any] = {
        "stdout": capture if manifest.stdout.kind == "inherit" else None,
        "stderr": capture if manifest.stderr.kind == "inherit" else None,
        # Captured output (--json) is bounded like an output file: limits.output.
        "max_output": manifest.limits.output_bytes,
    }
    try:
        if supervise and threading.current_thread() is threading.main_thread():
            wall = limit_trap("wall_time", manifest.limits).message
            result = _supervised(workload, wall, **streams)
        else:
            result = workload.run(**streams)
    except MotteError as e:
        _report(e)
        return int(ExitStatus.RUN_ERROR)
    if opts.json:
        _emit_json(launched, result)
        return result.status
    if result.trap is not None:
        line = result.trap.message
        note = result.memory_note()
        if note:
            line += f"; {note}"
        sys.stderr.write(
            f"motte: guest stopped: {line}\n"
            if _is_limit(result)
            else f"motte: guest trapped: {line}\n"
        )
        if os.environ.get("MOTTE_DEBUG") and result.trap.detail:
            sys.stderr.write(result.trap.detail.rstrip() + "\n")
    elif result.memory_note():
        sys.stderr.write(
            f"motte: note: the guest exited with {result.exit_code}; {result.memory_note()}\n"
        )
    return result.status


def _launch(opts: RunOptions) -> Any:
    """Name the workload, attest it when a Steward is configured, fetch, grant and prepare
    it."""
    from motte.keep import launch

    grants = None
    if opts.grant:
        from motte.manifest import grants_from_flags

        grants = grants_from_flags(opts.grant)
    return launch(
        opts.target,
        grants=grants,
        steward=opts.steward,
        backend=opts.backend,
        allow_insecure_sim=opts.allow_insecure_sim,
        sans=opts.san,
        trust_policy=opts.trust_policy,
        allow_rollback=opts.allow_rollback,
        overrides=overrides(opts),
        on_attested=_say_attested,
    )


def _say_granted(launched: Any) -> None:
    """One line (standard error): which mode the run is in, and what crossed the boundary."""
    granted = launched.granted
    if granted is None:
        return  # a bare module: the empty grant, nothing to say
    if granted.mode == "package":
        head = f"{launched.reference}: a package run by reference gets only what this host grants"
    else:
        source = launched.manifest.source
        shown = str(source) if source is not None else "the manifest"
        if source is not None and not os.path.relpath(source).startswith(".."):
            shown = os.path.relpath(source)
        head = f"{shown}: this host's own manifest, granted as written"
    what = "; ".join(granted.granted) if granted.granted else "it asks for nothing of the host"
    sys.stderr.write(f"motte: {head}: {what}\n")
    sys.stderr.flush()


def _say_attested(identity: Any) -> None:
    """One line for the operator (standard error), as soon as the Steward has answered."""
    c = identity.certificate
    warning = " INSECURE: a sim keep, no hardware protects it;" if c.insecure else ""
    sys.stderr.write(
        f"motte: attested by {identity.steward} ({identity.backend}):{warning} certificate "
        f"{c.serial} for {', '.join(c.names)} until {c.not_after.isoformat(timespec='seconds')}\n"
    )
    sys.stderr.flush()


def _serve(workload: Any, opts: RunOptions, identity: Any = None) -> int:
    """A manifest with [[listen]] entries is served until SIGTERM or Ctrl-C, a fresh instance
    per HTTP request or TCP connection (motte.keep.serve), instead of run once. An attested
    Keep serves the Steward's certificate, renewed before it expires; without a Steward, a
    self-signed one."""
    from motte.keep.serve import serve_workload

    renewer = None
    try:
        tls = identity.tls_identity() if identity is not None else None
        if identity is not None:
            from motte.keep.serve import Renewer

            # The Steward's certificate is short-lived: attest again, the same way, before
            # it expires (docs/keeps.md, "Renewal").
            renewer = Renewer(
                tls, lambda: identity.reattest().tls_identity(), steward=identity.steward
            )
        from motte.keep import register_keep

        register_keep(workload)
        served = serve_workload(workload, identity=tls, renewer=renewer)
    except MotteError as e:
        _report(e)
        _close_volumes(workload, "stop")
        return int(ExitStatus.RUN_ERROR)
    # Stopped (SIGTERM: a drain, or Ctrl-C): every instance has returned; persist the
    # sealed volumes before exiting, and say how long it took (docs/sealed-state.md).
    persisted = _close_volumes(workload, "drain")
    if opts.json:
        _emit_served_json(served)
    return int(ExitStatus.OK if persisted else ExitStatus.FAILURE)


def _emit_served_json(served: Any) -> None:
    from motte.cli._output import emit_json

    identity = served.identity
    emit_json(
        {
            "digest": served.digest,
            "listeners": [
                {
                    "name": b.name,
                    "protocol": b.protocol,
                    "tls": b.tls,
                    "url": b.url,
                    "addresses": [list(a) for a in b.addresses],
                }
                for b in served.listeners
            ],
            "identity": None
            if identity is None
            else {
                "attested": identity.attested,
                "description": identity.description,
                "certificate_sha256": identity.leaf_sha256,
            },
            "stats": served.stats.as_dict(),
        }
    )


def _is_limit(result: Any) -> bool:
    return result.trap.kind in ("cpu_time", "wall_time", "memory", "output_limit", "interrupted")


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", errors="replace")


def _emit_json(launched: Any, result: Any) -> None:
    from motte.cli._output import emit_json

    workload = launched.workload
    identity = launched.identity
    trap = result.trap
    if launched.reference is not None:
        name = str(launched.reference)
    else:
        name = str(workload.manifest.workload.path or workload.manifest.workload.digest)
    emit_json(
        {
            "workload": name,
            "digest": workload.digest,
            "workload_digest": launched.digest,
            "attestation": None
            if identity is None
            else {
                "steward": identity.steward,
                "backend": identity.backend,
                "certificate": identity.certificate.to_dict(),
            },
            "kind": workload.kind,
            "grants": None
            if launched.granted is None
            else {"mode": launched.granted.mode, "granted": list(launched.granted.granted)},
            "cache": workload.cache_status,
            "status": result.status,
            "exit_code": result.exit_code,
            "trap": None
            if trap is None
            else {"kind": trap.kind, "message": trap.message, "detail": trap.detail},
            "memory_full": result.memory_full,
            "stdout": _text(result.stdout),
            "stderr": _text(result.stderr),
            "wall_time": round(result.wall_time, 6),
            "cpu_time": round(result.cpu_time, 6),
            "memory": result.memory,
            "limits": {
                name: getattr(workload.manifest.limits, name)
                for name in (
                    "memory",
                    "cpu_time",
                    "wall_time",
                    "memories",
                    "tables",
                    "instances",
                    "table_elements",
                    "output",
                    "connections",
                    "connections_total",
                    "connection_time",
                    "connection_bytes",
                )
            },
        }
    )
