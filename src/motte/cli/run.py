"""``motte run`` and ``motte cache``.

``motte run`` is run without Typer from what this function declares (:mod:`motte.cli._direct`:
start-up is most of a small workload's run time); its guest's arguments are the words after
``--`` (``after_dashes``), and its usage errors exit 125, never the guest's statuses. The
work is :func:`motte.cli._run_fast.execute`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from motte.cli import _typer as typer
from motte.errors import ExitStatus

if TYPE_CHECKING:
    from motte.keep import CacheInfo

Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def run(
    target: Annotated[
        str,
        typer.Argument(
            metavar="WORKLOAD",
            help="A .wasm module or component, a Motte.toml, a directory holding one, a "
            "sha256: digest in the local store, or a package reference: NAMESPACE/NAME:TAG "
            "or NAMESPACE/NAME@sha256:..., optionally after REGISTRY/.",
            show_default=False,
        ),
    ],
    args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[-- ARGS...]",
            help="Arguments for the guest; they replace the manifest's.",
            show_default=False,
            after_dashes=True,
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
    steward: Annotated[
        str | None,
        typer.Option(
            "--steward",
            metavar="URL",
            help="Attest to this Steward before fetching or running anything (overrides the "
            "manifest's steward). https://, or http:// to loopback.",
            show_default=False,
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            metavar="snp|tdx|sgx|sim",
            help="Where the evidence comes from; default: the first available of snp, tdx, "
            "sgx (see motte platform info). Needs a Steward.",
            show_default=False,
        ),
    ] = None,
    allow_insecure_sim: Annotated[
        bool,
        typer.Option(
            "--allow-insecure-sim",
            help="Consent to --backend sim: an INSECURE software keep, for development.",
        ),
    ] = False,
    san: Annotated[
        list[str] | None,
        typer.Option(
            "--san",
            metavar="NAME",
            help="A name to ask the Steward for in the certificate (repeat); default: "
            "localhost, 127.0.0.1, ::1.",
            show_default=False,
        ),
    ] = None,
    grant: Annotated[
        list[str] | None,
        typer.Option(
            "--grant",
            metavar="KIND[:NAME][=VALUE]",
            help="Grant what the package's Motte.toml asks for (repeat): dir:NAME=HOSTPATH"
            "[:writable], env:NAME, listen:NAME[=[ADDRESS:]PORT], connect:NAME[=HOST[:PORT]]"
            "[,ca=FILE], secret:NAME, volume:NAME[=HOSTDIR], stdin=FILE, stdout=FILE, "
            "stderr=FILE. A package run by reference gets nothing else (a secret or a sealed "
            "volume also needs the Steward's release).",
            show_default=False,
        ),
    ] = None,
    trust_policy: Annotated[
        str | None,
        typer.Option(
            "--trust-policy",
            metavar="FILE",
            help="Refuse a package this trust policy refuses (motte trust); default: "
            "MOTTE_HOME/trust/policy.toml when it exists.",
            show_default=False,
        ),
    ] = None,
    allow_rollback: Annotated[
        bool,
        typer.Option(
            "--allow-rollback",
            help="Let the trust policy accept an older, expired or moved release of the tag "
            "(a rollback): loudly, and recorded in MOTTE_HOME/releases/overrides.jsonl.",
        ),
    ] = False,
) -> int:
    """Run a WebAssembly workload in a Keep, with exactly what the host grants it.

    A bare .wasm gets the empty grant: no files, no environment, no network; its
    arguments come after --. A package run by reference gets only what its Motte.toml
    asks for and this host grants (--grant, or MOTTE_HOME/host-policy.toml); a manifest
    on this host's disk is granted as written. Listeners bind loopback unless a grant
    says where; a destination the manifest declares is reached over TLS, by name, only
    as granted. Flags add to the manifest (--env, --dir) or replace its values (the
    limits). Defaults: 256 MiB for all the guest's memories and tables, 60 s CPU, 300 s
    wall clock.

    With a Steward (--steward or the manifest's steward), the Keep first attests: fresh
    key, the Steward's nonce, evidence binding both and the workload digest; only with
    the Steward's certificate does it fetch the workload, by that digest. With a trust
    policy, a package runs only when the policy accepts it (motte trust). A manifest
    that declares listeners is served (TLS with that certificate, renewed by attesting
    again at two thirds of its lifetime) instead of run once.

    \b
      motte run examples/hello -- Alice Bob
      motte run app.wasm --env LANG=C --dir ./data:/data -- /data/in.txt
      motte run examples/sha256 --cpu-time 2 --json
      motte run acme/web@sha256:... --steward https://steward.example:8440
      motte run acme/web:1.0 --steward http://127.0.0.1:8440 --backend sim --allow-insecure-sim
      motte run acme/web:1.0 --trust-policy production.toml
      motte run acme/web:1.0 --grant dir:data=/srv/data --grant listen:web=0.0.0.0:8443
      motte run acme/app:1.0 --grant connect:vendor=10.0.0.7:443,ca=vendor-ca.pem

    Exit status: the guest's own (0-125); 125 if motte cannot start it; 134 for a
    trap; 137, 142, 152 when the memory, wall-time or CPU-time limit stopped it.
    See docs/running.md.
    """
    from motte.cli import invoked_as_process
    from motte.cli._run_fast import RunOptions, execute

    return execute(
        RunOptions(
            target=target,
            args=list(args) if args is not None else None,
            env=list(env or ()),
            dir=list(dir or ()),
            memory=memory,
            cpu_time=cpu_time,
            wall_time=wall_time,
            json=json,
            steward=steward,
            backend=_backend(backend),
            allow_insecure_sim=allow_insecure_sim,
            san=list(san or ()),
            trust_policy=trust_policy,
            allow_rollback=allow_rollback,
            grant=list(grant or ()),
        ),
        # Only a process whose own command line this is may be ended from inside; an
        # embedding caller, such as a test, never is.
        supervise=invoked_as_process(),
    )


def _backend(name: str | None) -> str | None:
    if name is not None and name not in ("snp", "tdx", "sgx", "sim"):
        raise typer.BadParameter(
            f"{name!r} is not one of snp, tdx, sgx, sim", param_hint="--backend"
        )
    return name


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
