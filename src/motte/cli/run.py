"""``motte run`` as a Typer command (for ``--help`` and the docs) and ``motte cache``.

``motte run`` itself is parsed by :mod:`motte.cli._run_fast`, which skips Typer's import;
this command declares exactly the same options (tests/keep/test_run_cli.py checks) and hands
them to the same :func:`motte.cli._run_fast.execute`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from motte.errors import ExitStatus

if TYPE_CHECKING:
    from motte.keep import CacheInfo

Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def run(
    target: Annotated[
        str,
        typer.Argument(
            metavar="PATH_OR_MANIFEST",
            help="A .wasm module or component, a Motte.toml, a directory holding one, "
            "or a sha256: digest in the local store.",
            show_default=False,
        ),
    ],
    args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[-- ARGS...]",
            help="Arguments for the guest; they replace the manifest's.",
            show_default=False,
        ),
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option(
            "--env", metavar="KEY=VALUE", help="Give the guest an environment variable (repeat)."
        ),
    ] = None,
    dir: Annotated[
        list[str] | None,
        typer.Option(
            "--dir",
            metavar="HOST:GUEST[:writable]",
            help="Preopen a host directory at GUEST, read-only unless :writable (repeat).",
        ),
    ] = None,
    memory: Annotated[
        int | None, typer.Option("--memory", metavar="MIB", help="Memory limit in MiB.")
    ] = None,
    cpu_time: Annotated[
        float | None,
        typer.Option("--cpu-time", metavar="SECONDS", help="CPU time limit in seconds."),
    ] = None,
    wall_time: Annotated[
        float | None,
        typer.Option("--wall-time", metavar="SECONDS", help="Wall-clock time limit in seconds."),
    ] = None,
    json: Annotated[
        bool,
        typer.Option("--json", help="Print the outcome as JSON, with the guest's output in it."),
    ] = False,
) -> int:
    """Run a WebAssembly workload in a Keep, with exactly what its manifest grants.

    A bare .wasm gets the empty grant: no files, no environment, no network; its
    arguments come after --. Flags add to the manifest (--env, --dir) or replace
    its values (the limits). Defaults: 256 MiB, 60 s CPU, 300 s wall clock.

    \b
      motte run examples/hello -- Alice Bob
      motte run app.wasm --env LANG=C --dir ./data:/data -- /data/in.txt
      motte run examples/sha256 --cpu-time 2 --json

    Exit status: the guest's own (0-125); 125 if motte cannot start it; 134 for a
    trap; 137, 142, 152 when the memory, wall-time or CPU-time limit stopped it.
    See docs/running.md.
    """
    from motte.cli._run_fast import RunOptions, execute

    return execute(
        RunOptions(
            target=target,
            args=list(args) if args else None,
            env=list(env or ()),
            dir=list(dir or ()),
            memory=memory,
            cpu_time=cpu_time,
            wall_time=wall_time,
            json=json,
        )
    )


cache_app = typer.Typer(
    help="Manage the compiled-artifact cache (HMAC-authenticated, under MOTTE_HOME).",
    no_args_is_help=True,
)


def _render(info: CacheInfo, *, verb: str, as_json: bool) -> None:
    from motte.cli._output import emit_json

    if as_json:
        emit_json(
            {
                "directory": str(info.directory),
                "entries": info.entries,
                "bytes": info.bytes,
                "key_file": str(info.key_file),
                "key_present": info.key_present,
            }
        )
        return
    size = info.bytes / 2**20
    typer.echo(f"{verb} {info.entries} compiled artifact(s), {size:.1f} MiB, in {info.directory}")


@cache_app.command("info")
def cache_info(json: Json = False) -> int:
    """Show where compiled artifacts are cached and how much space they take."""
    from motte.keep import cache_info as info

    _render(info(), verb="cache holds", as_json=json)
    return int(ExitStatus.OK)


@cache_app.command("clear")
def cache_clear(json: Json = False) -> int:
    """Remove every compiled artifact; each workload compiles again on its next run."""
    from motte.keep import clear_cache

    _render(clear_cache(), verb="removed", as_json=json)
    return int(ExitStatus.OK)
