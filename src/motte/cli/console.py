"""``motte console``: the read-only operator's web console."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from motte.cli import _typer as typer
from motte.errors import ExitStatus


def console(
    listen: Annotated[
        str, typer.Option("--listen", metavar="HOST:PORT", help="Where to listen (port 0: any).")
    ] = "127.0.0.1:8480",
    token_file: Annotated[
        Path | None,
        typer.Option(
            "--token-file",
            metavar="FILE",
            help="Read the token other machines must present from FILE (mode 0600). "
            "Default: a new one, printed once at start.",
        ),
    ] = None,
    steward_dir: Annotated[
        Path | None,
        typer.Option("--steward-dir", metavar="DIR", help="The Steward to show (default: ours)."),
    ] = None,
    log_dir: Annotated[
        Path | None,
        typer.Option("--log-dir", metavar="DIR", help="The log to search (default: embedded)."),
    ] = None,
    trust_policy: Annotated[
        list[Path] | None,
        typer.Option(
            "--trust-policy",
            metavar="FILE",
            help="A trust policy the Trust page may judge by, chosen by its file name (repeat).",
        ),
    ] = None,
    plan: Annotated[
        list[Path] | None,
        typer.Option("--plan", metavar="FILE", help="A power plan to show (repeat)."),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option("--tls-cert", metavar="FILE", help="Serve HTTPS with this certificate (PEM)."),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option("--tls-key", metavar="FILE", help="The private key of --tls-cert (PEM)."),
    ] = None,
    allow_insecure_http: Annotated[
        bool,
        typer.Option(
            "--allow-insecure-http",
            help="Serve plain HTTP on an address that is not loopback (the token crosses the "
            "network in clear).",
        ),
    ] = False,
) -> int:
    """Serve the read-only console: Keeps, Secrets, Log, Trust and Power pages.

    Listens on 127.0.0.1 by default: clients on this machine need nothing more. Any other
    client must present the token (printed once at start, or --token-file); off loopback,
    give --tls-cert and --tls-key. Only GET and HEAD are answered. See docs/console.md.

    \b
      motte console --plan /etc/motte/homelab.toml --trust-policy production.toml
      motte console --listen 0.0.0.0:8480 --tls-cert c.pem --tls-key k.pem --token-file t
    """
    from motte.console import ConsoleConfig, new_token, read_token_file, serve_console

    token = read_token_file(token_file) if token_file else new_token()
    config = ConsoleConfig(
        token=token,
        steward_dir=steward_dir,
        log_dir=log_dir,
        trust_policies=tuple(trust_policy or ()),
        plans=tuple(plan or ()),
    )
    serve_console(
        config,
        listen,
        tls_cert=str(tls_cert) if tls_cert else None,
        tls_key=str(tls_key) if tls_key else None,
        allow_insecure_http=allow_insecure_http,
        show_token=token_file is None,
    )
    return int(ExitStatus.OK)
