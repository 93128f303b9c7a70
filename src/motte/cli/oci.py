"""``motte package``, ``motte push``, ``motte pull``: workload packages as OCI artifacts.

References: ``NAMESPACE/NAME[:TAG][@sha256:...]`` is the local store (MOTTE_HOME/oci);
``[http://]REGISTRY/NAMESPACE/NAME[:TAG]`` is a registry (HTTPS unless written http://, and
plain HTTP only to loopback without --allow-insecure-http). Credentials come from
MOTTE_REGISTRY_TOKEN, MOTTE_REGISTRY_USER/PASSWORD, MOTTE_HOME/credentials.toml or Docker's
config.json, never from a flag.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

from motte.cli import _typer as typer
from motte.errors import ExitStatus

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON (for scripts).")]
InsecureOpt = Annotated[
    bool,
    typer.Option(
        "--allow-insecure-http",
        help="Allow plain http:// to a registry that is not on loopback (credentials and "
        "content cross the network unprotected).",
    ),
]
RemoteRef = Annotated[
    str, typer.Argument(help="\\[http://]REGISTRY/NAMESPACE/NAME[:TAG|@DIGEST]", show_default=False)
]


def _progress_wanted(json_out: bool) -> bool:
    return not json_out and sys.stderr.isatty()


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def package(
    directory: Annotated[
        Path,
        typer.Argument(
            help="Directory holding Motte.toml and the module it names.", show_default=False
        ),
    ],
    tag: Annotated[
        str,
        typer.Option(
            "--tag", "-t", help="Name it NAMESPACE/NAME[:TAG] in the local store (tag: latest)."
        ),
    ],
    json_out: JsonOpt = False,
) -> int:
    """Build an OCI artifact from a workload directory into the local store.

    The artifact holds Motte.toml and the module, plus an application/wasm layer for Wasm tools.
    Its digest covers both: signatures, evidence and trust verdicts all bind that digest.
    Packaging is deterministic: the same files always give the same digest.

    Example: motte package ./hello --tag acme/hello:1.0
    """
    from motte.oci import build_package, parse_reference, rich_progress

    ref = parse_reference(tag)
    if not ref.is_local:
        raise typer.BadParameter(
            "package into the local store, then motte push", param_hint="--tag"
        )
    with rich_progress(_progress_wanted(json_out)) as progress:
        result = build_package(directory, ref, progress=progress)
    if json_out:
        from motte.cli._output import emit_json

        emit_json(
            {
                "reference": str(result.reference),
                "digest": result.digest,
                "module": {"name": result.module_name, "size": result.module_size},
                "manifest": {"name": "Motte.toml", "size": result.manifest_size},
            }
        )
    else:
        typer.echo(f"packaged {ref.repository}:{ref.tag}")
        typer.echo(f"  digest  {result.digest}")
        typer.echo(f"  module  {result.module_name} ({_size(result.module_size)})")
    return int(ExitStatus.OK)


def _transfer_output(verb: str, result: Any, json_out: bool) -> None:
    if json_out:
        from motte.cli._output import emit_json

        emit_json(
            {
                "reference": str(result.reference),
                "digest": result.digest,
                "source": result.source,
                "destination": result.destination,
                "blobs_copied": result.blobs_copied,
                "blobs_present": result.blobs_present,
                "bytes_copied": result.bytes_copied,
                "referrers": list(result.referrers),
            }
        )
        return
    typer.echo(f"{verb} {result.reference}")
    typer.echo(f"  from    {result.source}")
    typer.echo(f"  to      {result.destination}")
    typer.echo(
        f"  blobs   {result.blobs_copied} copied ({_size(result.bytes_copied)}), "
        f"{result.blobs_present} already there"
    )
    typer.echo(f"  attestations  {len(result.referrers)}")


def push(
    reference: RemoteRef,
    allow_insecure_http: InsecureOpt = False,
    json_out: JsonOpt = False,
) -> int:
    """Push a packaged artifact and its signed statements to an OCI registry.

    Pushes the local artifact of the same NAMESPACE/NAME:TAG, each blob checked on the way.
    Signatures and provenance follow as OCI referrers (the sha256-<hex> tag if need be).
    Credentials: MOTTE_REGISTRY_TOKEN, MOTTE_REGISTRY_USER/PASSWORD, or a credentials file.

    Example: motte push http://127.0.0.1:5000/acme/hello:1.0
    """
    from motte.oci import parse_reference, rich_progress
    from motte.oci import push as do_push

    ref = parse_reference(reference)
    with rich_progress(_progress_wanted(json_out)) as progress:
        result = do_push(ref, allow_insecure_http=allow_insecure_http, progress=progress)
    _transfer_output("pushed", result, json_out)
    return int(ExitStatus.OK)


def pull(
    reference: RemoteRef,
    allow_insecure_http: InsecureOpt = False,
    json_out: JsonOpt = False,
) -> int:
    """Pull an artifact and its signed statements from an OCI registry into the local store.

    A tag is resolved once to a digest; every blob is checked against its digest as it streams.
    Nothing reaches the store unless all of it verified.
    Pulling does not judge signatures: run motte verify on the result.

    Example: motte pull http://127.0.0.1:5000/acme/hello:1.0
    """
    from motte.oci import parse_reference, rich_progress
    from motte.oci import pull as do_pull

    ref = parse_reference(reference)
    with rich_progress(_progress_wanted(json_out)) as progress:
        result = do_pull(ref, allow_insecure_http=allow_insecure_http, progress=progress)
    _transfer_output("pulled", result, json_out)
    return int(ExitStatus.OK)
