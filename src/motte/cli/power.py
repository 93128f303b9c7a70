"""``motte power``: ride out power cuts, shut hosts down in order, bring them back.

Thin commands: each parses, calls motte.power, renders (with :mod:`motte.cli._power_render`),
and returns an exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

from motte.cli import _typer as typer
from motte.errors import ExitStatus, UsageError

app = typer.Typer(
    no_args_is_help=True,
    help="Ride out power cuts and shut hosts down in order, over the NUT protocol.",
    epilog=(
        "Rehearse a whole power cut on one machine, in two terminals:\n\n"
        "motte power simulate examples/power/long-cut.toml --listen 127.0.0.1:13490\n\n"
        "motte power watch --plan examples/power/rehearsal.toml\n\n"
        "Check a plan first with `motte power plan check FILE`; `motte power status` shows how "
        "far a plan got. Guide: docs/power.md."
    ),
)
plan_app = typer.Typer(no_args_is_help=True, help="Check shutdown plans.")
agent_app = typer.Typer(
    no_args_is_help=True,
    help="The agent a coordinator asks to drain and stop a host (HMAC-authenticated).",
)
app.add_typer(plan_app, name="plan")
app.add_typer(agent_app, name="agent")


def _reflow(fn: Any) -> Any:
    """Join the lines of each docstring paragraph: Typer keeps single line breaks verbatim."""
    import inspect

    paragraphs = inspect.cleandoc(fn.__doc__ or "").split("\n\n")
    fn.__doc__ = "\n\n".join(" ".join(p.split()) for p in paragraphs)
    return fn


def _hostport(text: str, default_port: int) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, default_port
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise typer.BadParameter(f"{text!r}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def _run(main: Coroutine[Any, Any, int]) -> int:
    """Run ``main``; SIGTERM (a service manager stopping us) ends it like Ctrl-C, cleanly."""

    async def runner() -> int:
        task = asyncio.ensure_future(main)
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await task
        except asyncio.CancelledError:
            return int(ExitStatus.OK)

    return asyncio.run(runner())


@app.command()
@_reflow
def simulate(
    scenario: Annotated[
        Path, typer.Argument(help="Scenario file (TOML): users, steps, variables.")
    ],
    listen: Annotated[
        str, typer.Option("--listen", help="HOST:PORT to serve NUT on (3493 is NUT's port).")
    ] = "127.0.0.1:3493",
    stop_after: Annotated[
        float | None,
        typer.Option(
            "--stop-after",
            help="Exit this many seconds after the last step (default: run until Ctrl-C).",
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option(help="PEM certificate chain: offer STARTTLS.")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key for --tls-cert.")] = None,
    max_connections: Annotated[
        int,
        typer.Option(
            "--max-connections",
            min=1,
            help="Connections served at once; more are closed at once.",
        ),
    ] = 256,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per event.")] = False,
) -> int:
    """Play a scripted power cut as a NUT server (upsc, upsmon and `watch` can connect).

    Example: motte power simulate examples/power/short-blip.toml --listen 127.0.0.1:3493
    """
    from motte.cli import _power_render as render
    from motte.power import Simulator, load_scenario

    sc = load_scenario(scenario)
    host, port = _hostport(listen, 3493)
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    tls = None
    if tls_cert is not None and tls_key is not None:
        import ssl

        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(tls_cert, tls_key)
    say = render.simulator_line(sc.ups, json_out)
    sim = Simulator(
        sc, host=host, port=port, tls=tls, on_event=say, max_connections=max_connections
    )

    async def main() -> int:
        # Whatever asyncio itself reports (an accept failing for want of file descriptors,
        # ...) is one line, said once per kind: never a traceback, never a flood.
        told: set[str] = set()

        def loop_error(_loop: Any, context: dict[str, Any]) -> None:
            message = str(context.get("message", "asyncio error"))
            if message not in told:
                told.add(message)
                error = context.get("exception")
                say(0.0, f"{message}: {error}" if error else message)

        asyncio.get_running_loop().set_exception_handler(loop_error)
        try:
            bound = await sim.start()
        except OSError as e:
            in_use = e.errno == errno.EADDRINUSE
            raise UsageError(
                f"cannot listen on {listen}: {e.strerror}",
                hint="is a upsd already on that port? try --listen 127.0.0.1:13490"
                if in_use
                else "give HOST:PORT with an address of this machine, e.g. 127.0.0.1:13490",
            ) from None
        render.simulator_banner(sc, host, bound, json_out)
        await sim.run(until_end=stop_after)
        return int(ExitStatus.OK)

    return _run(main())


@plan_app.command("check")
@_reflow
def plan_check(
    file: Annotated[Path, typer.Argument(help="The shutdown plan (TOML).")],
    runtime: Annotated[
        float | None,
        typer.Option("--runtime", help="The battery's runtime at the current load, in seconds."),
    ] = None,
    ask_ups: Annotated[
        bool,
        typer.Option(
            "--ask-ups",
            help="Read battery.runtime from each of the plan's UPSes (the shortest counts).",
        ),
    ] = False,
    elsewhere: Annotated[
        bool,
        typer.Option(
            "--elsewhere",
            help="The plan is for another machine: skip the checks of this one (commands, "
            "password and CA files).",
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> int:
    """Validate a plan and show the order and timeline it would follow.

    Refused: unknown keys or hosts, dependency cycles, passwords in the plan, a coordinator
    that needs hosts stopped before it, a shutdown longer than the battery lasts (the
    plan's runtime_below, or --runtime / --ask-ups), and what this machine lacks to run it: a
    command that is not there or not executable, a password file others can read (skip these
    with --elsewhere). Every problem is listed. Exit 0 when the plan is sound, 1 if not.
    """
    import dataclasses
    import math

    from motte.cli import _power_render as render
    from motte.power import PlanError, check_local, check_plan, load_plan, ups_runtime

    if runtime is not None and ask_ups:
        raise UsageError("give --runtime or --ask-ups, not both")
    if runtime is not None and not (math.isfinite(runtime) and runtime >= 0):
        raise UsageError(f"--runtime must be a number of seconds, not {runtime!r}")
    try:
        plan = load_plan(file)
    except PlanError as e:
        if len(e.problems) < 2:
            raise
        render.plan_problems(file, e.problems, json_out)  # every one, as promised
        return int(ExitStatus.FAILURE)
    if ask_ups:
        runtime = asyncio.run(ups_runtime(plan.upses))
    result = check_plan(plan, runtime=runtime)
    local = () if elsewhere else check_local(plan)
    if local:
        result = dataclasses.replace(result, errors=result.errors + local)
    render.plan_check(plan, result, json_out)
    return int(ExitStatus.OK if result.ok else ExitStatus.FAILURE)


@app.command()
@_reflow
def watch(
    plan_file: Annotated[Path, typer.Option("--plan", help="The shutdown plan (TOML).")],
    json_out: Annotated[
        bool, typer.Option("--json", help="One JSON object per event on stdout.")
    ] = False,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            metavar="EVENT",
            help="Exit 0 once an event of this kind has happened, e.g. recovered: a "
            "rehearsal that ends on its own.",
        ),
    ] = None,
) -> int:
    """Watch the plan's UPSes and run the plan: ride through, shut down in order, bring hosts back.

    Progress is saved under MOTTE_HOME/power/ after every step, so a restarted watch resumes
    where it was. Every event goes to the plan's JSON-lines log too. Stop with Ctrl-C (or
    let --until end a rehearsal).
    """
    from motte.cli import _power_render as render
    from motte.power import NOTIFY_EVENTS, PLAN_EVENTS, Watch, check_plan, load_plan

    if until is not None and until not in (*NOTIFY_EVENTS, *PLAN_EVENTS):
        raise UsageError(
            f"--until {until}: not an event kind",
            hint="one of " + ", ".join((*NOTIFY_EVENTS, *PLAN_EVENTS)),
        )
    plan = load_plan(plan_file)
    result = check_plan(plan)
    if not result.ok:
        from motte.power import PlanError

        raise PlanError(result.errors[0], hint=f"run `motte power plan check {plan_file}`")
    show = render.event_line(json_out)
    seen = asyncio.Event()

    def on_event(record: dict[str, Any]) -> None:
        show(record)
        if record["kind"] == until:
            seen.set()

    w = Watch(plan, on_event=on_event)
    render.watch_banner(plan, result, w.state_file, w.log_path, json_out)

    async def main() -> int:
        running = asyncio.create_task(w.run())
        waiting = asyncio.create_task(seen.wait())
        try:
            await asyncio.wait({running, waiting}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
            if not running.done():
                running.cancel()  # --until's event came: stop cleanly, as on SIGTERM
            await asyncio.gather(running, waiting, return_exceptions=True)
        if not seen.is_set():
            await running  # the watch ended on its own: its error, if any
        return int(ExitStatus.OK)

    return _run(main())


@app.command("drain-keeps")
@_reflow
def drain_keeps(
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            metavar="SECONDS",
            help="How long to wait for every Keep to exit; default: MOTTE_DEADLINE (what a "
            "plan's drain step is given), else 60.",
            show_default=False,
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> int:
    """Drain every serving Keep of this host: SIGTERM, then wait until each has exited.

    A Keep stops accepting, finishes its in-flight requests, persists its sealed volumes
    and reports how long that took (docs/sealed-state.md); this prints one line per Keep.
    Use it as a plan host's drain command: `drain = "motte power drain-keeps"`. Exit
    status 1 if a Keep did not exit in time or could not persist a volume.
    """
    import os

    from motte.cli._output import emit_json
    from motte.keep import drain_keeps as drain

    if timeout is None:
        try:
            timeout = float(os.environ.get("MOTTE_DEADLINE", "60"))
        except ValueError:
            timeout = 60.0
    results = drain(max(timeout, 0.0))
    if json_out:
        emit_json({"keeps": [r.to_dict() for r in results], "ok": all(r.ok for r in results)})
    else:
        for r in results:
            k = r.keep
            what = f"keep {k.pid} ({k.workload[:19]})"
            if not r.exited:
                typer.echo(f"{what}: still running after {r.seconds:.1f} s")
                continue
            if r.report is None:
                typer.echo(f"{what}: stopped in {r.seconds:.3f} s (no sealed volumes)")
                continue
            rep = r.report
            size = sum(p["written"] for p in rep.get("persisted", ()))
            fails = "; FAILED: " + "; ".join(rep["failures"]) if rep.get("failures") else ""
            unchanged = len(rep.get("unchanged", ()))
            typer.echo(
                f"{what}: stopped in {r.seconds:.3f} s; {len(rep.get('persisted', ()))} sealed "
                f"volume snapshot(s), {size / 2**20:.2f} MiB, persisted in "
                f"{rep.get('seconds', 0):.3f} s"
                + (f" ({unchanged} volume(s) unchanged)" if unchanged else "")
                + fails
            )
        typer.echo(f"drained {len(results)} Keep(s)")
    return int(ExitStatus.OK if all(r.ok for r in results) else ExitStatus.FAILURE)


@app.command()
@_reflow
def status(
    plan_name: Annotated[
        str | None, typer.Option("--plan", help="Only this plan (its name).")
    ] = None,
    events: Annotated[int, typer.Option("--events", help="How many recent events to show.")] = 8,
    json_out: Annotated[bool, typer.Option("--json", help="Print the state as JSON.")] = False,
) -> int:
    """Show each UPS's state and the plan's progress, as the last `watch` saved them."""
    from motte.cli import _power_render as render
    from motte.power import power_dir

    files = sorted(power_dir().glob("*.state.json"))
    if plan_name is not None:
        files = [f for f in files if f.name == f"{plan_name}.state.json"]
    if not files:
        from motte.errors import NotFoundError

        raise NotFoundError(
            f"no coordinator state under {power_dir()}"
            + (f" for plan {plan_name!r}" if plan_name else ""),
            hint="start one with `motte power watch --plan FILE`",
        )
    render.status(files, events, json_out)
    return int(ExitStatus.OK)


@app.command()
@_reflow
def secondary(
    ups: Annotated[str, typer.Argument(help="The UPS to follow: ups@host[:port].")],
    shutdown: Annotated[str, typer.Option("--shutdown", help="Command that shuts this host down.")],
    drain: Annotated[
        str | None, typer.Option("--drain", help="Command run first: drain Keeps.")
    ] = None,
    drain_time: Annotated[
        float, typer.Option("--drain-time", help="Seconds the drain may take.")
    ] = 30.0,
    username: Annotated[
        str | None, typer.Option("--username", help="upsd user (upsmon secondary).")
    ] = None,
    password_file: Annotated[
        Path | None,
        typer.Option("--password-file", help="File with the password (never on the command line)."),
    ] = None,
    password_env: Annotated[
        str | None, typer.Option("--password-env", help="Environment variable with the password.")
    ] = None,
    hostsync: Annotated[
        float,
        typer.Option(
            "--hostsync",
            help="Seconds of OB LB to wait for the primary's FSD before going anyway.",
        ),
    ] = 15.0,
    dead_after: Annotated[
        float,
        typer.Option(
            "--dead-after",
            help="Seconds an unreachable UPS, last seen on battery, counts as low battery.",
        ),
    ] = 15.0,
    notify: Annotated[
        str | None,
        typer.Option(
            "--notify",
            help="Command run for each event (NOTIFYTYPE and UPSNAME in its environment).",
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="One JSON object per event.")] = False,
) -> int:
    """Follow a primary (motte or upsmon) and shut this host down on FSD.

    Logs in as a NUT secondary so the primary waits for it; goes when the UPS shows FSD, when
    OB LB lasts --hostsync seconds without FSD, or when the UPS was last seen on battery and
    stays unreachable --dead-after seconds.

    Example: motte power secondary rack@nut.lan --username observer
    --password-file /etc/motte/nut.pw --drain "systemctl stop motte-keeps.target"
    --shutdown "systemctl poweroff"
    """
    import shlex

    from motte.cli import _power_render as render
    from motte.power import NOTIFY_EVENTS, EventLog, Notifier, UpsConfig, power_dir, run_secondary
    from motte.power.nut import UpsAddress

    try:
        address = UpsAddress.parse(ups)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    if password_file and password_env:
        raise UsageError("give --password-file or --password-env, not both")
    if bool(username) != bool(password_file or password_env):
        raise UsageError("--username needs --password-file or --password-env, and vice versa")
    config = UpsConfig(address, username, password_file, password_env)
    notifier = Notifier(tuple(shlex.split(notify)), NOTIFY_EVENTS, address.ups) if notify else None
    log = EventLog(power_dir() / "secondary.events.jsonl")

    async def main() -> int:
        try:
            result = await run_secondary(
                config,
                shutdown=tuple(shlex.split(shutdown)),
                drain=tuple(shlex.split(drain)) if drain else None,
                drain_time=drain_time,
                hostsync=hostsync,
                dead_after=dead_after,
                notify=notifier,
                log=log,
                on_event=render.event_line(json_out),
            )
        finally:
            log.close()
        return int(ExitStatus.OK if result.ok else ExitStatus.FAILURE)

    return _run(main())


@agent_app.command("serve")
@_reflow
def agent_serve(
    secret_file: Annotated[Path, typer.Option("--secret-file", help="Shared secret (mode 0600).")],
    stop: Annotated[str, typer.Option("--stop", help="Command that stops this host.")],
    drain: Annotated[
        str | None, typer.Option("--drain", help="Command that drains its Keeps.")
    ] = None,
    listen: Annotated[
        str, typer.Option("--listen", help="HOST:PORT to listen on.")
    ] = "127.0.0.1:3494",
) -> int:
    """Serve drain and stop requests from a coordinator (nothing else can be asked).

    Requests are signed with the shared secret (HMAC-SHA256, with a timestamp and a nonce
    against replay); there is no unauthenticated mode. It listens on 127.0.0.1 unless told.

    Example: motte power agent serve --secret-file /etc/motte/agent.secret
    --drain "systemctl stop motte-keeps.target" --stop "systemctl poweroff" --listen 0.0.0.0:3494
    """
    import shlex

    from motte.power import AgentApp, load_secret, serve_agent

    host, port = _hostport(listen, 3494)
    agent = AgentApp(
        load_secret(secret_file),
        stop=tuple(shlex.split(stop)),
        drain=tuple(shlex.split(drain)) if drain else None,
    )

    async def main() -> int:
        await serve_agent(
            agent,
            host,
            port,
            started=lambda p: typer.echo(f"motte power agent on {host}:{p}", err=True),
        )
        return int(ExitStatus.OK)

    return _run(main())


@agent_app.command("secret")
@_reflow
def agent_secret(
    file: Annotated[Path, typer.Argument(help="Where to write the new secret (mode 0600).")],
) -> int:
    """Create a shared secret for an agent; copy it to the coordinator (also mode 0600)."""
    from motte.power import create_secret

    create_secret(file)
    typer.echo(f"wrote a new 256-bit secret to {file} (mode 0600)")
    return int(ExitStatus.OK)
