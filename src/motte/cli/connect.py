"""``motte connect``: talk to a Keep, knowing what it is."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

from motte.cli import _typer as typer
from motte.errors import ExitStatus


def connect(
    url: Annotated[
        str,
        typer.Argument(
            metavar="URL",
            help="https://HOST:PORT/PATH (verify, then GET the path and query over the same "
            "connection) or tls://HOST:PORT (verify only).",
            show_default=False,
        ),
    ],
    steward_ca: Annotated[
        Path,
        typer.Option(
            "--steward-ca",
            metavar="FILE",
            help="The Steward's CA certificate (PEM): the only issuer trusted.",
            show_default=False,
        ),
    ],
    expect_digest: Annotated[
        str,
        typer.Option(
            "--expect-digest",
            metavar="sha256:HEX|REF",
            help="The workload the Keep must be running: its package digest, or a package "
            "in your local store (NAMESPACE/NAME:TAG), whose digest is taken.",
            show_default=False,
        ),
    ],
    allow_insecure_sim: Annotated[
        bool,
        typer.Option(
            "--allow-insecure-sim",
            help="Accept a sim keep (INSECURE: no hardware protects it; development only).",
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", metavar="SECONDS", help="Connect and read timeout.")
    ] = 10.0,
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> int:
    """Connect to a Keep over TLS 1.3 and verify what it is before talking to it.

    The chain must lead to the Steward's CA and name the host; the certificate must say
    which TEE attested it (sim only with --allow-insecure-sim) and that the Keep runs the
    workload --expect-digest names. Anything else: exit status 1 with the reason.

    \b
      motte connect https://127.0.0.1:8443/ --steward-ca ca.pem --expect-digest sha256:...
      motte connect https://127.0.0.1:8443/ --steward-ca ca.pem --expect-digest acme/web:1.0
    """
    from motte.steward import connect_keep

    expect_digest = _expected_digest(expect_digest)

    with connect_keep(
        url,
        steward_ca=steward_ca,
        expect_digest=expect_digest,
        allow_insecure_sim=allow_insecure_sim,
        timeout=timeout,
    ) as keep:
        ident = keep.identity
        response = keep.request() if url.startswith("https://") else None
        tls = f"{keep.tls_version} {keep.cipher}"
    if json:
        from motte.cli._output import emit_json

        emit_json(
            {
                "url": url,
                "verified": True,
                "tls": tls,
                "keep": ident.to_dict(),
                "response": response.to_dict() if response is not None else None,
            }
        )
        return int(ExitStatus.OK)
    err = sys.stderr
    kind = (
        f"{ident.kind} (INSECURE sim keep: no hardware protection)"
        if ident.insecure
        else ident.kind
    )
    lines = [
        f"verified {url}",
        f"  tee          {kind}",
        f"  measurement  {ident.measurement.hex() if ident.measurement else '-'}",
        f"  workload     {ident.workload_digest} (as expected)",
        f"  names        {', '.join(ident.names)}",
        f"  certificate  {ident.serial}, valid until {ident.not_after.isoformat()}",
        f"  issuer       {ident.issuer}",
    ]
    if ident.verdict is not None:
        v = ident.verdict
        lines.append(
            f"  verdict      policy {v.policy_name!r} (sha256 {v.policy_sha256.hex()[:16]}...) "
            f"at {v.verified_at.isoformat()}"
        )
    lines.append(f"  tls          {tls}")
    print("\n".join(lines), file=err)
    if response is not None:
        print(f"HTTP {response.status} {response.reason}", file=err)
        sys.stdout.buffer.write(response.body)
        sys.stdout.flush()
    return int(ExitStatus.OK)


def _expected_digest(value: str) -> str:
    """A digest as given, or the digest of a package the local store holds under ``value``
    (a registry is never asked: what the client expects must be what it already has)."""
    if value.startswith("sha256:"):
        return value
    from motte.errors import UsageError
    from motte.oci import load_workload, parse_reference

    ref = parse_reference(value)
    if not ref.is_local:
        raise UsageError(
            f"--expect-digest {value}: a digest (sha256:HEX) or a package in the local store",
            hint="pull it first (motte pull), then name it without the registry",
        )
    return load_workload(ref).digest
