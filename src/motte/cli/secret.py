"""``motte secret``: the Steward's secret store, locally or through its admin API.

A value is read from a file (``--from-file``) or standard input, never from the command
line (where process lists, shell history and logs would keep it); nothing any command
prints holds a value.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

from motte.cli import _typer as typer
from motte.errors import ExitStatus, UsageError

app = typer.Typer(
    no_args_is_help=True,
    help="Secrets in the Steward, released only to Keeps whose evidence and workload its "
    "policy accepts (docs/secrets.md). Values come from a file or standard input, never "
    "from the command line.",
    epilog='printf %s "$PW" | motte secret put db-password --policy db.toml; motte secret '
    "list; motte secret explain db-password --evidence ev.bin --package acme/web:1.0",
)

Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts (never a value).")]
Steward = Annotated[
    str | None,
    typer.Option(
        "--steward",
        metavar="URL",
        help="A remote Steward's admin API (default: the local Steward in MOTTE_HOME).",
        show_default=False,
    ),
]
TokenFile = Annotated[
    Path | None,
    typer.Option(
        "--token-file",
        metavar="FILE",
        help="With --steward: the admin token (mode 0600; motte steward admin-token new).",
        show_default=False,
    ),
]
Db = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        help="The local Steward's PostgreSQL database (default: as `motte steward` finds it).",
        show_default=False,
    ),
]
Name = Annotated[str, typer.Argument(help="The secret's name, e.g. db-password.")]
FromFile = Annotated[
    Path | None,
    typer.Option(
        "--from-file",
        metavar="FILE",
        help="Read the value from FILE, byte for byte ('-': standard input, the default).",
        show_default=False,
    ),
]
PolicyOpt = Annotated[
    Path | None,
    typer.Option(
        "--policy",
        metavar="FILE",
        help="The release policy (TOML; docs/secrets.md). Without one nobody gets it.",
        show_default=False,
    ),
]


def _admin(steward: str | None, token_file: Path | None, db: str | None) -> Any:
    from motte.steward import open_secret_admin

    return open_secret_admin(steward, token_file=token_file, database=db)


def _read_value(from_file: Path | None) -> bytes:
    """The value, from a file or standard input (a terminal is asked twice, unechoed)."""
    from motte._nodump import forbid_core_dumps

    forbid_core_dumps()
    if from_file is not None and str(from_file) != "-":
        try:
            return from_file.read_bytes()
        except OSError as e:
            raise UsageError(f"--from-file {from_file}: {e.strerror}") from None
    if sys.stdin.isatty():
        import getpass

        first = getpass.getpass("value (not echoed): ")
        if getpass.getpass("again: ") != first:
            raise UsageError("the two values differ; nothing was stored")
        return first.encode()
    return sys.stdin.buffer.read()


def _policy(path: Path | None) -> tuple[str, str] | None:
    """(text, source) of a policy file, parsed once here so a malformed one is named with
    its line before anything is sent or stored."""
    if path is None:
        return None
    from motte.steward import load_release_policy

    policy = load_release_policy(path)
    return policy.text, str(path)


def _emit(doc: Any) -> None:
    from motte.cli._output import emit_json

    emit_json(doc)


def _describe(info: dict[str, Any]) -> None:
    typer.echo(f"{info['name']}  ({info['purpose']}, latest version {info['latest']})")
    for v in info["versions"]:
        typer.echo(f"  version {v['version']:<4} {v['created_at']}  {v['size']} bytes")
    policy = info.get("policy")
    if policy is None:
        typer.echo("  policy    none: released to nobody")
        return
    typer.echo(f"  policy    sha256:{policy['sha256']}")
    if policy["digests"]:
        typer.echo(f"    digests             {', '.join(policy['digests'])}")
    if policy["signed"]:
        typer.echo(f"    signed              {', '.join(policy['signed'])}")
    typer.echo(f"    allowed_kinds       {', '.join(policy['allowed_kinds'])}")
    typer.echo(f"    attestation_policy  {policy['attestation_policy'] or '(any)'}")
    if policy["allow_insecure_sim"]:
        typer.echo("    allow_insecure_sim  true: INSECURE sim keeps may have it")


@app.command("put")
def put(
    name: Name,
    from_file: FromFile = None,
    policy: PolicyOpt = None,
    steward: Steward = None,
    token_file: TokenFile = None,
    db: Db = None,
    json: Json = False,
) -> int:
    """Store a new secret (version 1) with its release policy.

    \b
      motte secret put db-password --from-file pw.txt --policy db.toml
      printf %s "$PW" | motte secret put db-password --policy db.toml
    """
    policy_doc = _policy(policy)
    value = _read_value(from_file)
    with _admin(steward, token_file, db) as admin:
        info = admin.put(name, value, policy_doc)
        where = admin.where
    if json:
        _emit(info)
    else:
        typer.echo(f"stored {name} version {info['latest']} in {where}")
        if info.get("policy") is None:
            typer.echo(f"  no release policy: nobody gets it (motte secret policy {name} FILE)")
    return int(ExitStatus.OK)


@app.command("rotate")
def rotate(
    name: Name,
    from_file: FromFile = None,
    steward: Steward = None,
    token_file: TokenFile = None,
    db: Db = None,
    json: Json = False,
) -> int:
    """Store a new version of a secret. Keeps asking for the latest get it; a Keep pinned
    to an earlier version (version = N in its Motte.toml) keeps getting that one until it
    is removed (motte secret rm NAME --version N)."""
    value = _read_value(from_file)
    with _admin(steward, token_file, db) as admin:
        info = admin.rotate(name, value)
    if json:
        _emit(info)
    else:
        typer.echo(f"{name}: version {info['latest']} stored; earlier versions kept")
    return int(ExitStatus.OK)


@app.command("policy")
def policy_cmd(
    name: Name,
    policy: Annotated[
        Path | None,
        typer.Argument(help="The release policy file (TOML).", show_default=False),
    ] = None,
    none: Annotated[
        bool, typer.Option("--none", help="Remove the policy: nobody gets the secret.")
    ] = False,
    steward: Steward = None,
    token_file: TokenFile = None,
    db: Db = None,
    json: Json = False,
) -> int:
    """Replace a secret's release policy (or remove it with --none)."""
    if (policy is None) == (not none):
        raise UsageError("give a policy FILE, or --none")
    policy_doc = _policy(policy)
    with _admin(steward, token_file, db) as admin:
        info = admin.set_policy(name, policy_doc)
    if json:
        _emit(info)
    else:
        _describe(info)
    return int(ExitStatus.OK)


@app.command("list")
def list_cmd(
    steward: Steward = None,
    token_file: TokenFile = None,
    db: Db = None,
    json: Json = False,
) -> int:
    """List the secrets: names, versions, policies (never a value)."""
    with _admin(steward, token_file, db) as admin:
        infos = admin.list()
    if json:
        _emit(infos)
        return int(ExitStatus.OK)
    if not infos:
        typer.echo("no secrets")
    for i in infos:
        policy = i.get("policy")
        who = (
            ", ".join([*policy["digests"], *(f"signed {s}" for s in policy["signed"])])
            if policy
            else "nobody (no policy)"
        )
        typer.echo(f"{i['name']:<32} v{i['latest']:<4} {i['purpose']:<12} {who}")
    return int(ExitStatus.OK)


@app.command("show")
def show(
    name: Name,
    steward: Steward = None,
    token_file: TokenFile = None,
    db: Db = None,
    json: Json = False,
) -> int:
    """A secret's metadata: versions, sizes, times, release policy. Never its value."""
    with _admin(steward, token_file, db) as admin:
        info = admin.show(name)
    if json:
        _emit(info)
    else:
        _describe(info)
    return int(ExitStatus.OK)


@app.command("rm")
def rm(
    name: Name,
    version: Annotated[
        int | None,
        typer.Option("--version", metavar="N", help="Only this version.", show_default=False),
    ] = None,
    steward: Steward = None,
    token_file: TokenFile = None,
    db: Db = None,
    json: Json = False,
) -> int:
    """Remove a secret (every version: no Keep gets it any more) or one version of it."""
    with _admin(steward, token_file, db) as admin:
        result = admin.remove(name, version)
    if json:
        _emit(result)
    else:
        what = f"version {version} of {name}" if version else name
        typer.echo(f"removed {what} ({result['removed_versions']} value(s) deleted)")
    return int(ExitStatus.OK)


@app.command("explain")
def explain(
    name: Name,
    evidence: Annotated[
        Path | None,
        typer.Option(
            "--evidence",
            metavar="FILE",
            help="The Keep's evidence (as motte attest verify reads it).",
            show_default=False,
        ),
    ] = None,
    kind: Annotated[
        str | None,
        typer.Option("--kind", help="The evidence's kind, when it cannot be told.", hidden=False),
    ] = None,
    workload: Annotated[
        str | None,
        typer.Option("--workload", metavar="DIGEST", help="The package digest the Keep runs."),
    ] = None,
    package: Annotated[
        str | None,
        typer.Option(
            "--package",
            metavar="REF",
            help="The package the Keep runs (its digest and its signed statements).",
        ),
    ] = None,
    steward: Steward = None,
    token_file: TokenFile = None,
    db: Db = None,
    json: Json = False,
) -> int:
    """Why a Keep with this evidence, running this package, would or would not get the
    secret: every rule (the evidence under the Steward's policy, the secret's release
    policy). Exit status 0 if it would, 1 if not."""
    from motte.attest import Evidence, detect_kind

    if (workload is None) == (package is None):
        raise UsageError("give --workload DIGEST or --package REF")
    statements: tuple[bytes, ...] = ()
    if package is not None:
        from motte.oci import open_package, parse_reference

        verified = open_package(parse_reference(package), attachments=True)
        workload = verified.digest
        statements = tuple(a.layers[0] for a in verified.attachments or () if a.layers)
    assert workload is not None
    ev = None
    if evidence is not None:
        try:
            raw = evidence.read_bytes()
        except OSError as e:
            raise UsageError(f"--evidence {evidence}: {e.strerror}") from None
        ev = Evidence(kind or detect_kind(raw), raw)
    with _admin(steward, token_file, db) as admin:
        result = admin.explain(name, ev, workload, statements)
    if json:
        _emit(result)
    else:
        verdict = "WOULD be released" if result["would_release"] else "would NOT be released"
        typer.echo(f"{name} {verdict} to a Keep running {workload}")
        for r in result["rules"]:
            mark = {"pass": "ok  ", "fail": "FAIL", "skip": "skip"}.get(r["outcome"], r["outcome"])
            typer.echo(f"  {mark} {r['rule']}: {r['reason']}")
    return int(ExitStatus.OK if result["would_release"] else ExitStatus.FAILURE)


@app.command("audit")
def audit(
    name: Annotated[
        str | None, typer.Argument(help="Only rows about this secret.", show_default=False)
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", metavar="N", help="Only the last N rows.")
    ] = None,
    steward: Steward = None,
    token_file: TokenFile = None,
    db: Db = None,
    json: Json = False,
) -> int:
    """The secrets' audit log, oldest first: every change (who, what) and every release or
    refusal (to which workload and TEE, and why). Never a value."""
    with _admin(steward, token_file, db) as admin:
        rows = admin.audit(name, limit)
    if json:
        _emit(rows)
        return int(ExitStatus.OK)
    if not rows:
        typer.echo("nothing yet")
    for r in rows:
        names = ", ".join(
            s["name"] + (f" v{s['version']}" if s.get("version") else "") for s in r["secrets"]
        )
        typer.echo(
            f"{r['id']:>5}  {r['time']}  {r['action']:<7} {r['decision'].upper():<8} "
            f"{names}  by {r['actor']}"
        )
        if r["action"] == "release" and r["workload_digest"]:
            typer.echo(f"       {r['kind'] or '?'} keep running {r['workload_digest']}")
        if r["decision"] == "refused":
            for rule in r["rules"]:
                if rule["outcome"] == "fail":
                    prefix = f"{rule['secret']}: " if rule.get("secret") else ""
                    typer.echo(f"       {prefix}{rule['rule']}: {rule['reason']}")
        elif r["reason"] and r["action"] != "release":
            typer.echo(f"       {r['reason']}")
    return int(ExitStatus.OK)


@app.command("rekey")
def rekey(
    new_key_file: Annotated[
        Path | None,
        typer.Option(
            "--new-key-file",
            metavar="FILE",
            help="Where to write the new key when the current one comes from "
            "MOTTE_STEWARD_SECRETS_KEY (default: the Steward's secrets.key).",
            show_default=False,
        ),
    ] = None,
    db: Db = None,
    json: Json = False,
) -> int:
    """Rotate the master key: re-seal every value under a new key in one transaction.

    The new key is written to secrets.key.new first, the store re-sealed and switched in one
    transaction, then the file moved over secrets.key. Copy the new secrets.key to every
    replica (they pick it up at their next secret operation). Local only.
    """
    from motte.steward import rekey_files

    with _admin(None, None, db) as admin:
        count = rekey_files(admin.steward.secrets, actor=admin.actor, new_key_file=new_key_file)
        key_id = admin.steward.secrets.recorded_key_id()
        where = admin.steward.secrets.key_path
    if json:
        _emit({"resealed": count, "key_id": key_id})
        return int(ExitStatus.OK)
    typer.echo(f"re-sealed {count} value(s) under a new master key ({key_id})")
    if new_key_file is not None:
        typer.echo(f"  the new key is in {new_key_file}: set MOTTE_STEWARD_SECRETS_KEY from it")
    else:
        typer.echo(f"  {where} holds it now; copy it to every replica (mode 0600)")
    return int(ExitStatus.OK)
