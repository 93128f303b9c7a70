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
    encrypt: Annotated[
        bool,
        typer.Option(
            "--encrypt",
            help="Encrypt the module under a fresh content key, stored as a Steward secret "
            "that only Keeps its release policy accepts get (docs/secrets.md).",
        ),
    ] = False,
    key_name: Annotated[
        str | None,
        typer.Option(
            "--key-name",
            metavar="NAME",
            help="With --encrypt: the secret holding the key (default content-key/NS/NAME); "
            "each packaging adds a version.",
            show_default=False,
        ),
    ] = None,
    release_policy: Annotated[
        Path | None,
        typer.Option(
            "--release-policy",
            metavar="FILE",
            help="With --encrypt: the key's release policy (needed when the secret is new).",
            show_default=False,
        ),
    ] = None,
    steward: Annotated[
        str | None,
        typer.Option(
            "--steward",
            metavar="URL",
            help="With --encrypt: store the key in this Steward (admin API; default: the "
            "local Steward).",
            show_default=False,
        ),
    ] = None,
    token_file: Annotated[
        Path | None,
        typer.Option("--token-file", metavar="FILE", help="With --steward: the admin token."),
    ] = None,
    json_out: JsonOpt = False,
) -> int:
    """Build an OCI artifact from a workload directory into the local store.

    The artifact holds Motte.toml and the module, plus an application/wasm layer for Wasm tools.
    Its digest covers both: signatures, evidence and trust verdicts all bind that digest.
    Packaging is deterministic: the same files always give the same digest (not with
    --encrypt: each encryption uses a fresh key).

    
    Example: motte package ./hello --tag acme/hello:1.0
             motte package ./web --tag acme/web:2.0 --encrypt --release-policy web.toml
    """
    from motte.oci import build_package, parse_reference, rich_progress

    ref = parse_reference(tag)
    if not ref.is_local:
        raise typer.BadParameter(
            "package into the local store, then motte push", param_hint="--tag"
        )
    content_key = None
    if encrypt:
        content_key = _store_content_key(ref, key_name, release_policy, steward, token_file)
    elif key_name or release_policy or steward or token_file:
        raise typer.BadParameter("goes with --encrypt", param_hint="--key-name/--release-policy")
    with rich_progress(_progress_wanted(json_out)) as progress:
        result = build_package(directory, ref, progress=progress, content_key=content_key)
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
        if content_key is not None:
            typer.echo(
                f"  encrypted under secret {content_key.secret} version {content_key.version}"
            )
    return int(ExitStatus.OK)


def _store_content_key(
    ref: Any, name: str | None, policy: Path | None, steward: str | None, token: Path | None
) -> Any:
    """A fresh content key, stored in the Steward before anything is packaged with it (a
    package never exists whose key is not stored): a new secret, or a new version."""
    from motte.errors import NotFoundError, UsageError
    from motte.oci import ContentKey
    from motte.steward import load_release_policy, open_secret_admin

    name = name or f"content-key/{ref.namespace}/{ref.name}"
    policy_doc = None
    if policy is not None:
        loaded = load_release_policy(policy)
        policy_doc = (loaded.text, str(policy))
    key = ContentKey.generate()
    with open_secret_admin(steward, token_file=token) as admin:
        try:
            exists = admin.show(name).get("removed_at") is None
        except NotFoundError:
            exists = False
        if exists:
            info = admin.rotate(name, key)
            if policy_doc is not None:
                admin.set_policy(name, policy_doc)
        else:
            if policy_doc is None:
                raise UsageError(
                    f"--encrypt: the secret {name} is new and needs a release policy, or no "
                    "Keep could ever run the package",
                    hint='give --release-policy FILE (e.g. signed = ["NS/NAME"])',
                )
            info = admin.put(name, key, policy_doc, purpose="content-key")
    return ContentKey(name, int(info["latest"]), key)


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
