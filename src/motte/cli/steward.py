"""``motte steward``: create, run and audit the attestation service and CA."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from motte.cli import _typer as typer
from motte.errors import ExitStatus

app = typer.Typer(
    no_args_is_help=True,
    help="The attestation service and CA: Keeps prove what they are, and get a certificate.",
    epilog="motte steward init --allow-insecure-sim (development); motte steward serve; "
    "motte steward audit. See docs/keeps.md.",
)

Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
Db = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        help="A PostgreSQL database shared by Steward replicas (postgresql://\\[user@]host/db; "
        "the password from PGPASSWORD or ~/.pgpass, never the URL). Default: MOTTE_DB, else "
        "the one init recorded, else MOTTE_HOME/steward/steward.db.",
        show_default=False,
    ),
]


@app.command("init")
def init(
    san_allow: Annotated[
        list[str] | None,
        typer.Option(
            "--san-allow",
            metavar="NAME",
            help="A name Keeps may ask for: a DNS name, *.domain or an IP address (repeat). "
            "The CA is constrained to these. Default: localhost, 127.0.0.1, ::1.",
            show_default=False,
        ),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            metavar="FILE",
            help="The attestation policy evidence is judged by (docs/attestation.md); "
            "copied into the Steward. Default: the built-in policy, written out.",
            show_default=False,
        ),
    ] = None,
    allow_insecure_sim: Annotated[
        bool,
        typer.Option(
            "--allow-insecure-sim",
            help="Write an INSECURE development policy that accepts this installation's sim "
            "keeps. Never for anything that matters.",
        ),
    ] = False,
    db: Db = None,
    json: Json = False,
) -> int:
    """Create a Steward under MOTTE_HOME/steward: CA key (0600) and certificate, config,
    policy and audit database. An existing Steward is never overwritten, and a PostgreSQL
    database that already belongs to a Steward is refused (replicas copy its directory).

    \b
      motte steward init --san-allow keeps.example.com --san-allow '*.keeps.example.com' \\
          --policy prod.toml
      motte steward init --allow-insecure-sim      # development, with sim keeps
      motte steward init --db postgresql://steward@db.example/motte   # for replicas
    """
    from motte.steward import DEFAULT_SAN_ALLOW, Steward, init_steward

    paths = init_steward(
        san_allow=tuple(san_allow) if san_allow else DEFAULT_SAN_ALLOW,
        policy=policy,
        allow_insecure_sim=allow_insecure_sim,
        database=db,
    )
    with Steward(paths.root, database=db) as steward:
        info = {
            "directory": str(paths.root),
            "ca": str(paths.ca_cert),
            "ca_sha256": steward.ca.fingerprint,
            "policy": str(paths.policy),
            "allow_insecure_sim": steward.policy.allow_insecure_sim,
            "san_allow": [p.text for p in steward.config.san_allow],
            "database": steward.store.where,
        }
    if json:
        from motte.cli._output import emit_json

        emit_json(info)
        return int(ExitStatus.OK)
    typer.echo(f"created a Steward in {paths.root}")
    typer.echo(f"  CA          {paths.ca_cert} (clients pin this: motte connect --steward-ca)")
    typer.echo(f"  CA sha256   {info['ca_sha256']}")
    typer.echo(f"  names       {', '.join(info['san_allow'])}")  # type: ignore[arg-type]
    typer.echo(f"  policy      {paths.policy}")
    typer.echo(f"  database    {info['database']}")
    if allow_insecure_sim:
        typer.echo(
            "  WARNING     the policy accepts INSECURE sim keeps: development only", err=True
        )
    typer.echo("next: motte steward serve")
    return int(ExitStatus.OK)


@app.command("serve")
def serve(
    listen: Annotated[
        str, typer.Option("--listen", metavar="HOST:PORT", help="Where to listen (port 0: any).")
    ] = "127.0.0.1:8440",
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
            help="Serve plain HTTP on an address that is not loopback (anyone on the path can "
            "answer for the Steward).",
        ),
    ] = False,
    console: Annotated[
        bool,
        typer.Option(
            "--console",
            help="Also serve the read-only console's pages under /console/ (docs/console.md); "
            "other machines need its token, printed once at start.",
        ),
    ] = False,
    console_token_file: Annotated[
        Path | None,
        typer.Option(
            "--console-token-file",
            metavar="FILE",
            help="With --console: read its token from FILE (mode 0600) instead.",
        ),
    ] = None,
    db: Db = None,
) -> int:
    """Serve the Steward API: GET /nonce, POST /attest, GET /ca, GET /health.

    Plain HTTP only on loopback unless --allow-insecure-http; give --tls-cert and --tls-key
    otherwise. Each decision is logged on standard error and in the audit log. --console
    adds the console's Keeps, Secrets, Log, Trust and Power pages under /console/. Replicas
    behind a load balancer share one PostgreSQL database (--db) and copies of the Steward
    directory; a nonce from any of them is good once at any of them.
    """
    from motte.steward import Steward
    from motte.steward import serve as run_server
    from motte.store import parse_database_url

    if db:
        parse_database_url(db)  # a password in it is named before anything else
    token = None
    if console or console_token_file:
        from motte.console import new_token, read_token_file

        token = read_token_file(console_token_file) if console_token_file else new_token()
    with Steward(database=db) as steward:
        run_server(
            steward,
            listen,
            tls_cert=str(tls_cert) if tls_cert else None,
            tls_key=str(tls_key) if tls_key else None,
            allow_insecure_http=allow_insecure_http,
            console_token=token,
            show_console_token=console_token_file is None,
        )
    return int(ExitStatus.OK)


@app.command("audit")
def audit(
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", metavar="N", help="Only the last N decisions.")
    ] = None,
    rejected: Annotated[bool, typer.Option("--rejected", help="Only refusals.")] = False,
    policy: Annotated[
        bool,
        typer.Option(
            "--policy",
            help="The policy events instead: which policy a running Steward judged with from "
            "when (loaded at start, reloaded on SIGHUP) and reloads it refused.",
        ),
    ] = False,
    db: Db = None,
    json: Json = False,
) -> int:
    """Show the Steward's decisions, oldest first: who asked, for what, and why it was
    accepted or refused (--json: every rule and the whole verdict)."""
    from motte.steward import Steward

    if policy:
        with Steward(database=db) as steward:
            events = steward.store.policy_events(limit=limit)
        if json:
            from motte.cli._output import emit_json

            emit_json([e.to_dict() for e in events])
            return int(ExitStatus.OK)
        if not events:
            typer.echo("no policy events yet (a Steward records one when it starts serving)")
        for e in events:
            typer.echo(
                f"{e.id:>5}  {e.time}  {e.event.upper():14}  {e.policy_name!r} "
                f"sha256 {e.policy_sha256[:16]}..."
            )
            if e.detail:
                typer.echo(f"       {e.detail}")
        return int(ExitStatus.OK)
    with Steward(database=db) as steward:
        records = steward.store.audit(limit=limit, decision="rejected" if rejected else None)
    if json:
        from motte.cli._output import emit_json

        emit_json([r.to_dict() for r in records])
        return int(ExitStatus.OK)
    if not records:
        typer.echo("no decisions yet")
    for r in records:
        what = f"{r.kind or '?'} {r.workload_digest or '(no workload)'}"
        typer.echo(f"{r.id:>5}  {r.time}  {r.decision.upper():8}  {r.client}  {what}")
        if r.measurement:
            typer.echo(f"       measurement {r.measurement}")
        if r.decision == "accepted":
            typer.echo(
                f"       certificate {r.serial} until {r.not_after}, names {', '.join(r.sans)}"
            )
        else:
            for rule in r.rules:
                if rule["outcome"] == "fail":
                    typer.echo(f"       {rule['rule']}: {rule['reason']}")
            for rule in (r.verdict or {}).get("rules", ()):
                if rule["outcome"] == "fail":
                    typer.echo(f"       {rule['rule']}: {rule['reason']}")
    return int(ExitStatus.OK)


token_app = typer.Typer(
    no_args_is_help=True,
    help="Tokens for the secret store's admin API (motte secret ... --steward URL "
    "--token-file FILE). The Steward keeps only their SHA-256.",
)
app.add_typer(token_app, name="admin-token")


@token_app.command("new")
def token_new(
    name: Annotated[str, typer.Argument(help="What the token is for (recorded in the audit).")],
    out: Annotated[
        Path,
        typer.Option("--out", metavar="FILE", help="Write the token here (mode 0600; new file)."),
    ],
    db: Db = None,
) -> int:
    """Make an admin token: written to FILE only (never printed), its hash to the database
    replicas share."""
    from motte.fsutil import create_exclusive
    from motte.steward import AdminTokens, SecretUsageError, Steward

    if out.exists():
        raise SecretUsageError(f"--out {out} exists; the token goes to a new file")
    with Steward(database=db) as steward:
        token = AdminTokens(steward.store.db).new(name)
        if not create_exclusive(out, (token + "\n").encode(), mode=0o600):
            AdminTokens(steward.store.db).revoke(name)
            raise SecretUsageError(f"--out {out} appeared meanwhile; the token was revoked")
    typer.echo(f"admin token {name} written to {out} (mode 0600)")
    return int(ExitStatus.OK)


@token_app.command("list")
def token_list(db: Db = None) -> int:
    """The admin tokens: names, when made, when revoked."""
    from motte.steward import AdminTokens, Steward

    with Steward(database=db) as steward:
        tokens = AdminTokens(steward.store.db).list()
    if not tokens:
        typer.echo("no admin tokens")
    for t in tokens:
        state = f"revoked {t.revoked_at}" if t.revoked_at else "live"
        typer.echo(f"{t.name:<24} made {t.created_at}  {state}")
    return int(ExitStatus.OK)


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Argument(help="The token's name.")], db: Db = None
) -> int:
    """Revoke an admin token: every replica refuses it from its next request."""
    from motte.steward import AdminTokens, Steward

    with Steward(database=db) as steward:
        AdminTokens(steward.store.db).revoke(name)
    typer.echo(f"admin token {name} revoked")
    return int(ExitStatus.OK)
