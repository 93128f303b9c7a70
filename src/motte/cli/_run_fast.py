"""``motte run``, parsed without Typer: start-up is most of a small workload's run time.

``motte.cli.main`` sends ``motte run ...`` here (``motte run --help`` goes to the Typer
command in :mod:`motte.cli.run`, which declares the same options; a test keeps the two in
step). Imports are argparse, the manifest and the Keep: no Typer, Rich or pydantic.

Exit status: the guest's own (0..125); 125 when motte cannot start the workload (a bad
manifest, flag or module); 134 for a trap; 137, 142, 152 for the memory, wall-time and
CPU-time limits; 130 when interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any, NoReturn

from motte.errors import ExitStatus, MotteError, UsageError

#: Extra time the process gets after the wall-time limit to stop a guest by itself (epoch
#: deadlines) before it is ended from outside (a guest blocked in a host call).
WALL_TIME_GRACE = 0.5

USAGE = "motte run [OPTIONS] PATH_OR_MANIFEST [-- ARGS...]"


@dataclass
class RunOptions:
    """The parsed command line, whichever parser read it."""

    target: str
    args: list[str] | None = None
    env: list[str] = field(default_factory=list)
    dir: list[str] = field(default_factory=list)
    memory: int | None = None
    cpu_time: float | None = None
    wall_time: float | None = None
    json: bool = False


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"motte run: {message}", hint=f"usage: {USAGE}")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="motte run", usage=USAGE, add_help=False, allow_abbrev=False)
    p.add_argument("target", metavar="PATH_OR_MANIFEST")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--dir", action="append", default=[], metavar="HOST:GUEST[:writable]")
    p.add_argument("--memory", type=int, metavar="MIB")
    p.add_argument("--cpu-time", type=float, metavar="SECONDS")
    p.add_argument("--wall-time", type=float, metavar="SECONDS")
    p.add_argument("--json", action="store_true")
    return p


def parse(argv: list[str]) -> RunOptions:
    """``motte run`` arguments -> RunOptions; everything after ``--`` belongs to the guest."""
    if "--" in argv:
        cut = argv.index("--")
        own, guest = argv[:cut], argv[cut + 1 :]
    else:
        own, guest = argv, None
    ns = build_parser().parse_args(own)
    return RunOptions(
        target=ns.target,
        args=guest,
        env=ns.env,
        dir=ns.dir,
        memory=ns.memory,
        cpu_time=ns.cpu_time,
        wall_time=ns.wall_time,
        json=ns.json,
    )


def build_manifest(opts: RunOptions) -> Any:
    """The manifest ``motte run`` will grant: the target's, with the flags applied."""
    from motte.manifest import resolve_target

    manifest = resolve_target(opts.target)
    flags = (
        ("memory", "--memory", opts.memory),
        ("cpu_time", "--cpu-time", opts.cpu_time),
        ("wall_time", "--wall-time", opts.wall_time),
    )
    env: dict[str, str] = {}
    dirs: tuple[Any, ...] = ()
    limits: dict[str, Any] = {}
    if opts.env or opts.dir or any(value is not None for _, _, value in flags):
        from motte.manifest import dir_from_flag, env_from_flag, limit_from_flag

        env = dict(env_from_flag(e) for e in opts.env)
        dirs = tuple(dir_from_flag(d) for d in opts.dir)
        limits = {name: limit_from_flag(f, v) for name, f, v in flags if v is not None}
    if opts.args is None and not env and not dirs and not limits:
        return manifest
    return manifest.with_overrides(
        args=tuple(opts.args) if opts.args is not None else None, env=env, dirs=dirs, **limits
    )


def _report(err: MotteError) -> None:
    from motte.cli import report_error

    report_error(err)


def _hard_stop_at_wall_time(seconds: float, message: str) -> threading.Timer:
    """End the process if the guest outlives its wall time inside a host call (where epoch
    deadlines cannot reach it, e.g. a read from the terminal)."""

    def stop() -> None:
        sys.stderr.write(f"motte: guest stopped: {message}\n")
        sys.stderr.flush()
        os._exit(int(ExitStatus.WALL_TIME))

    timer = threading.Timer(seconds + WALL_TIME_GRACE, stop)
    timer.daemon = True
    timer.start()
    return timer


def execute(opts: RunOptions, *, hard_stop: bool = False) -> int:
    """Run the workload as ``opts`` asks; print its outcome; return the exit status.

    ``hard_stop`` ends the whole process if the guest outlives its wall time inside a host
    call; only for a process that exists to run this one workload.
    """
    try:
        manifest = build_manifest(opts)
        from motte.keep._outcome import limit_trap
        from motte.keep._workload import PreparedWorkload

        workload = PreparedWorkload.prepare(manifest)
    except MotteError as e:
        _report(e)
        # Only a limit keeps its own status; anything else that stops the start is 125.
        if e.exit_status == ExitStatus.MEMORY_LIMIT:
            return int(e.exit_status)
        return int(ExitStatus.RUN_ERROR)
    capture = "capture" if opts.json else None
    timer = None
    if hard_stop:
        timer = _hard_stop_at_wall_time(
            manifest.limits.wall_time, limit_trap("wall_time", manifest.limits).message
        )
    try:
        result = workload.run(
            stdout=capture if manifest.stdout.kind == "inherit" else None,
            stderr=capture if manifest.stderr.kind == "inherit" else None,
        )
    except MotteError as e:
        _report(e)
        return int(ExitStatus.RUN_ERROR)
    finally:
        if timer is not None:
            timer.cancel()
    if opts.json:
        _emit_json(workload, result)
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


def _is_limit(result: Any) -> bool:
    return result.trap.kind in ("cpu_time", "wall_time", "memory", "output_limit", "interrupted")


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", errors="replace")


def _emit_json(workload: Any, result: Any) -> None:
    from motte.cli._output import emit_json

    trap = result.trap
    emit_json(
        {
            "workload": str(workload.manifest.workload.path or workload.manifest.workload.digest),
            "digest": workload.digest,
            "kind": workload.kind,
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
                "memory": workload.manifest.limits.memory,
                "cpu_time": workload.manifest.limits.cpu_time,
                "wall_time": workload.manifest.limits.wall_time,
            },
        }
    )


def main(argv: list[str]) -> int:
    """Entry point from ``motte.cli.main`` for ``motte run ...``."""
    try:
        opts = parse(argv)
    except MotteError as e:
        _report(e)
        return int(ExitStatus.RUN_ERROR)
    # Only a process whose own command line this is may be ended from outside (the console
    # script or python -m motte); an embedding caller, such as a test, never is.
    own_process = sys.argv[1:] == ["run", *argv]
    return execute(opts, hard_stop=own_process)
