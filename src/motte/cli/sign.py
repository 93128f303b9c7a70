"""``motte key``, ``motte sign``, ``motte attest-build``, ``motte attest-review``, ``motte verify``.

Thin commands: parse, call motte.sign, render. Private keys come from files (by path or by
name in MOTTE_HOME/keys/signing); a passphrase only from MOTTE_KEY_PASSPHRASE or a prompt.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from motte.cli import _typer as typer
from motte.errors import ExitStatus

if TYPE_CHECKING:
    from motte.sign import PrivateKey, PublicKey, RootStatus, SignResult, Verification

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON (for scripts).")]
InsecureOpt = Annotated[
    bool,
    typer.Option(
        "--allow-insecure-http",
        help="Allow plain http:// to a registry that is not on loopback.",
    ),
]
Ref = Annotated[
    str,
    typer.Argument(help="[REGISTRY/]NAMESPACE/NAME[:TAG|@DIGEST]", show_default=False),
]
SignKeys = Annotated[
    list[str],
    typer.Option("--key", "-k", help="Private key: a path, or a name from motte key list."),
]
LogOpt = Annotated[
    str | None,
    typer.Option("--log", help="Transparency log URL (default: the embedded log in MOTTE_HOME)."),
]
RootDir = Annotated[Path, typer.Argument(help="The root's directory of N.root.json versions.")]
ExpiresOpt = Annotated[
    int, typer.Option("--expires-days", min=1, max=3650, help="Days until this version expires.")
]


def _emit(obj: Any) -> None:
    from motte.cli._output import emit_json

    emit_json(obj)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _private_keys(specs: list[str]) -> list[PrivateKey]:
    from motte.sign import KeyFileError, load_private_key

    if not specs:
        raise typer.BadParameter("at least one is needed", param_hint="--key")
    keys = []
    for spec in specs:
        try:
            keys.append(load_private_key(spec))
        except KeyFileError as e:
            if e.hint is None or not sys.stdin.isatty() or "PASSPHRASE" not in e.hint:
                raise
            secret = typer.prompt(f"passphrase for {spec}", hide_input=True)
            keys.append(load_private_key(spec, passphrase=secret.encode()))
    return keys


def _public_keys(specs: list[str]) -> list[PublicKey]:
    from motte.sign import load_public_key

    return [load_public_key(s) for s in specs]


# -- motte key ---------------------------------------------------------------------------

key_app = typer.Typer(
    help="Create and inspect signing keys and namespace roots of trust.", no_args_is_help=True
)
root_app = typer.Typer(
    help="Namespace roots of trust: which keys may publish a namespace, and key rotation.",
    no_args_is_help=True,
)
key_app.add_typer(root_app, name="root")
sigstore_root_app = typer.Typer(
    help="The Sigstore trusted_root.json bundles are verified against (pinned, never fetched).",
    no_args_is_help=True,
)
key_app.add_typer(sigstore_root_app, name="sigstore-root")


def _sigstore_root_output(summary: Any, verb: str, json_out: bool) -> int:
    if json_out:
        _emit(summary.to_dict())
        return int(ExitStatus.OK)
    typer.echo(f"{verb} {summary.path}")
    typer.echo(f"  digest       {summary.digest}")
    typer.echo(f"  logs         {', '.join(summary.tlogs) or 'none'}")
    typer.echo(f"  CAs          {', '.join(summary.certificate_authorities) or 'none'}")
    typer.echo(f"  CT logs      {summary.ctlogs}")
    typer.echo(f"  TSAs         {', '.join(summary.timestamp_authorities) or 'none'}")
    return int(ExitStatus.OK)


@sigstore_root_app.command("install")
def sigstore_root_install(
    file: Annotated[Path, typer.Argument(help="A Sigstore trusted_root.json.")],
    json_out: JsonOpt = False,
) -> int:
    """Pin FILE as the Sigstore trusted root (MOTTE_HOME/sigstore/trusted_root.json).

    motte verify, trust and run verify Sigstore bundles against it, offline. Compare its
    digest with a copy you trust: whoever writes this file decides which Fulcio, CT log and
    Rekor keys vouch for keyless signers.

    Example: motte key sigstore-root install trusted_root.json
    """
    from motte.sign import install_trusted_root

    return _sigstore_root_output(install_trusted_root(file), "pinned", json_out)


@sigstore_root_app.command("show")
def sigstore_root_show(json_out: JsonOpt = False) -> int:
    """Print the pinned Sigstore trusted root: its digest, logs and certificate authorities."""
    from motte.sign import summarize_trusted_root

    return _sigstore_root_output(summarize_trusted_root(), "trusted root", json_out)


def _key_dict(name: str | None, key: PublicKey, private: bool | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"keyid": key.keyid, "type": key.key_type}
    if name is not None:
        out["name"] = name
    if private is not None:
        out["private"] = private
    return out


@key_app.command("new")
def key_new(
    name: Annotated[str, typer.Argument(help="Name of the key pair (letters, digits, . _ -).")],
    key_type: Annotated[str, typer.Option("--type", help="ed25519 or ecdsa-p256.")] = "ed25519",
    json_out: JsonOpt = False,
) -> int:
    """Make a key pair: NAME.key (owner-only) and NAME.pub in MOTTE_HOME/keys/signing.

    The private key is encrypted with MOTTE_KEY_PASSPHRASE, or on a terminal with a passphrase
    you type (empty for none).
    Give NAME.pub to whoever verifies your signatures or delegates a namespace to you.
    """
    from motte.sign import check_key_name, generate_key, passphrase_from_env, save_key_pair

    check_key_name(name)
    passphrase = passphrase_from_env()
    if passphrase is None and sys.stdin.isatty() and not json_out:
        typed = typer.prompt(
            f"passphrase for {name} (empty for none)",
            default="",
            hide_input=True,
            confirmation_prompt=True,
            show_default=False,
        )
        passphrase = typed.encode() or None
    key = generate_key(key_type)
    priv, pub = save_key_pair(key, name, passphrase=passphrase)
    if json_out:
        _emit({**_key_dict(name, key.public), "private_key": str(priv), "public_key": str(pub)})
    else:
        typer.echo(f"created {key.key_type} key {name}")
        typer.echo(f"  keyid    {key.keyid}")
        typer.echo(f"  private  {priv}")
        typer.echo(f"  public   {pub}")
    return int(ExitStatus.OK)


@key_app.command("list")
def key_list(json_out: JsonOpt = False) -> int:
    """List the key pairs in MOTTE_HOME/keys/signing."""
    from motte.sign import keys_dir, list_keys

    keys = list_keys()
    if json_out:
        _emit([_key_dict(n, k, has_private) for n, k, has_private in keys])
    elif not keys:
        typer.echo(f"no keys in {keys_dir()} (motte key new NAME makes one)")
    for name, key, has_private in [] if json_out else keys:
        note = "" if has_private else "  (public only)"
        typer.echo(f"{name:<20} {key.key_type:<11} {key.keyid[:16]}{note}")
    return int(ExitStatus.OK)


@key_app.command("show")
def key_show(
    key: Annotated[str, typer.Argument(help="A .pub file, or a key name.")],
    json_out: JsonOpt = False,
) -> int:
    """Print a public key's type, keyid and PEM."""
    (pub,) = _public_keys([key])
    if json_out:
        _emit({**_key_dict(None, pub), "pem": pub.to_pem().decode()})
    else:
        typer.echo(f"{pub.key_type} {pub.keyid}")
        typer.echo(pub.to_pem().decode().rstrip())
    return int(ExitStatus.OK)


# -- motte key root ----------------------------------------------------------------------


def _root_output(status: RootStatus, json_out: bool) -> int:
    if json_out:
        _emit(
            {
                "version": status.version,
                "path": str(status.path),
                "complete": status.complete,
                "missing": list(status.missing),
                "expires": status.root.to_dict()["expires"],
                "namespaces": status.root.to_dict()["namespaces"],
                "identities": status.root.to_dict().get("identities", {}),
            }
        )
    elif status.complete:
        typer.echo(f"root version {status.version} written to {status.path}")
    else:
        typer.echo(f"root version {status.version} staged at {status.path}")
        typer.echo(f"  needs {' and '.join(status.missing)}: motte key root sign DIR --key KEY")
    return int(ExitStatus.OK)


@root_app.command("init")
def root_init(
    directory: RootDir,
    root_key: Annotated[
        list[str], typer.Option("--root-key", help="A root public key (repeat for several).")
    ],
    key: SignKeys = [],  # noqa: B006 - Typer reads list defaults, never mutates them
    threshold: Annotated[int, typer.Option(help="Root keys needed to sign a version.")] = 1,
    expires_days: ExpiresOpt = 365,
    json_out: JsonOpt = False,
) -> int:
    """Create version 1 of a root: the root keys and how many of them must sign.

    --key signs it now; other holders add theirs with motte key root sign.
    Keep root keys offline: they only sign new root versions.

    Example: motte key root init ./acme-root --root-key root1 --key root1
    """
    from motte.sign import default_expiry, new_root, propose

    now = _now()
    meta = new_root(_public_keys(root_key), threshold, expires=default_expiry(now, expires_days))
    return _root_output(
        propose(directory, meta, _private_keys(key) if key else [], now=now), json_out
    )


@root_app.command("delegate")
def root_delegate(
    directory: RootDir,
    namespace: Annotated[str, typer.Argument(help="The namespace, e.g. acme.")],
    key: SignKeys,
    signer: Annotated[
        list[str], typer.Option("--signer", help="A publisher public key (repeat for several).")
    ] = [],  # noqa: B006 - Typer reads list defaults, never mutates them
    identity: Annotated[
        list[str],
        typer.Option(
            "--identity",
            help="A keyless (Sigstore) publisher: its certificate identity, e.g. a GitHub "
            "workflow URI or an e-mail (repeat for several; each with an --issuer).",
        ),
    ] = [],  # noqa: B006
    issuer: Annotated[
        list[str],
        typer.Option(
            "--issuer",
            help="The OIDC issuer of each --identity, in order (one --issuer serves all).",
        ),
    ] = [],  # noqa: B006
    threshold: Annotated[
        int, typer.Option(help="Publishers (keys or identities) needed per package.")
    ] = 1,
    expires_days: ExpiresOpt = 365,
    json_out: JsonOpt = False,
) -> int:
    """Make the next root version, allowing --signer keys and --identity signers to publish
    NAMESPACE.

    Replaces the namespace's earlier delegation; signed by root keys (--key). A keyless
    publisher is an identity with its issuer, never an identity alone; the threshold counts
    keys and identities alike.

    Examples: motte key root delegate ./acme-root acme --signer alice.pub --key root1
    motte key root delegate ./acme-root acme --key root1
    --identity https://github.com/acme/hello/.github/workflows/release.yml@refs/heads/main
    --issuer https://token.actions.githubusercontent.com
    """
    from motte.errors import UsageError
    from motte.sign import KeylessIdentity, default_expiry, propose, with_namespace

    if len(issuer) != len(identity) and not (identity and len(issuer) == 1):
        raise UsageError(
            f"{len(identity)} --identity and {len(issuer)} --issuer: give one --issuer per "
            "--identity (in order), or a single --issuer for all",
            hint="a keyless publisher is an identity with its OIDC issuer",
        )
    issuers = issuer * len(identity) if len(issuer) == 1 else issuer
    identities = [
        KeylessIdentity.parse(i, o, f"--identity {i}")
        for i, o in zip(identity, issuers, strict=True)
    ]
    if not signer and not identities:
        raise UsageError(
            "name the publishers: --signer KEY and/or --identity I --issuer O",
            hint="to remove a namespace, edit the root by hand (a delegation to nobody is "
            "refused here so that a typo cannot lock publishers out)",
        )
    now = _now()
    current = _need_root(directory, now)
    meta = with_namespace(
        current,
        namespace,
        _public_keys(signer),
        threshold,
        expires=default_expiry(now, expires_days),
        identities=identities,
    )
    return _root_output(propose(directory, meta, _private_keys(key), now=now), json_out)


@root_app.command("rotate")
def root_rotate(
    directory: RootDir,
    root_key: Annotated[list[str], typer.Option("--root-key", help="A new root public key.")],
    key: SignKeys,
    threshold: Annotated[int, typer.Option(help="New root keys needed to sign a version.")] = 1,
    expires_days: ExpiresOpt = 365,
    json_out: JsonOpt = False,
) -> int:
    """Make the next root version with new root keys.

    It needs a threshold of the OLD root keys and of the NEW ones: pass both with --key.
    Verifiers walk the versions in order, so they follow the rotation.
    """
    from motte.sign import default_expiry, propose, with_root_keys

    now = _now()
    current = _need_root(directory, now)
    meta = with_root_keys(
        current, _public_keys(root_key), threshold, expires=default_expiry(now, expires_days)
    )
    return _root_output(propose(directory, meta, _private_keys(key), now=now), json_out)


@root_app.command("sign")
def root_sign(directory: RootDir, key: SignKeys, json_out: JsonOpt = False) -> int:
    """Add signatures to the version waiting in DIR/staged.root.json."""
    from motte.sign import sign_staged

    return _root_output(sign_staged(directory, _private_keys(key), now=_now()), json_out)


@root_app.command("show")
def root_show(directory: RootDir, json_out: JsonOpt = False) -> int:
    """Verify DIR's chain of versions and print the latest: root keys, namespaces, expiry."""
    from motte.sign import load_chain

    root = load_chain(directory, now=_now(), check_expiry=False)
    doc = root.to_dict()
    if json_out:
        _emit(doc)
        return int(ExitStatus.OK)
    expired = " (EXPIRED)" if root.expires <= _now() else ""
    typer.echo(f"root version {root.version}, expires {doc['expires']}{expired}")
    typer.echo(f"  root keys ({root.root.threshold} of {len(root.root.keyids)} must sign):")
    for kid in root.root.keyids:
        typer.echo(f"    {kid}")
    for ns, role in sorted(root.namespaces.items()):
        typer.echo(f"  namespace {ns} ({role.threshold} of {len(role.keyids)} must sign):")
        for kid in role.keyids:
            ident = root.identities.get(kid)
            if ident is None:
                typer.echo(f"    key       {kid}")
            else:
                typer.echo(f"    identity  {ident.identity}")
                typer.echo(f"              issuer {ident.issuer}")
    return int(ExitStatus.OK)


@root_app.command("trust")
def root_trust(
    directory: RootDir,
    name: Annotated[str | None, typer.Option(help="Install as this name (default: DIR's).")] = None,
    json_out: JsonOpt = False,
) -> int:
    """Install a root (or its newer versions) into MOTTE_HOME/trust-roots for motte verify.

    The first version you install is your anchor: compare its root keyids with the publisher's
    over a channel you trust. Later versions are accepted only if they chain from it.
    """
    from motte.sign import install_root

    target, root, added = install_root(directory, name, now=_now())
    if json_out:
        _emit({"path": str(target), "version": root.version, "added": added})
    else:
        typer.echo(f"trusted root {target.name} at version {root.version} ({target})")
        if added:
            typer.echo(f"  added versions {', '.join(map(str, added))}")
        else:
            typer.echo("  already up to date")
        for kid in root.root.keyids:
            typer.echo(f"  root key {kid}")
    return int(ExitStatus.OK)


def _need_root(directory: Path, now: dt.datetime) -> Any:
    from motte.sign import TrustRootError, current_root

    current = current_root(directory, now=now)
    if current is None:
        raise TrustRootError(f"{directory}: no root yet", hint="motte key root init DIR ...")
    return current


# -- sign, attest-build, attest-review ---------------------------------------------------


def _sign_output(result: SignResult, json_out: bool) -> int:
    if json_out:
        _emit(
            {
                "reference": str(result.reference),
                "digest": result.digest,
                "predicate_type": result.predicate_type,
                "referrer": result.referrer,
                "keyids": list(result.keyids),
                "log": {"origin": result.log_origin, "index": result.log_index},
            }
        )
    else:
        from motte.sign import PREDICATE_NAMES

        kind = PREDICATE_NAMES.get(result.predicate_type, result.predicate_type)
        typer.echo(f"signed {kind} of {result.reference}")
        typer.echo(f"  keys      {', '.join(k[:16] for k in result.keyids)}")
        typer.echo(f"  logged    {result.log_origin} entry {result.log_index}")
        typer.echo(f"  referrer  {result.referrer}")
    return int(ExitStatus.OK)


def sign(
    reference: Ref,
    key: SignKeys,
    log: LogOpt = None,
    allow_insecure_http: InsecureOpt = False,
    json_out: JsonOpt = False,
) -> int:
    """Sign an artifact's digest as published under its NAMESPACE/NAME, and log the signature.

    The package is checked against its digest first; the signature is stored beside it.
    Several --key make one envelope with several signatures (for a namespace threshold).

    Example: motte sign acme/hello:1.0 --key alice
    """
    from motte.sign import sign_artifact

    result = sign_artifact(
        reference, _private_keys(key), allow_insecure_http=allow_insecure_http, log_url=log
    )
    return _sign_output(result, json_out)


def release(
    reference: Ref,
    key: SignKeys,
    version: Annotated[
        int | None,
        typer.Option(min=1, help="Release version (default: one above the highest seen here)."),
    ] = None,
    expires_days: Annotated[
        int,
        typer.Option(
            "--expires-days",
            min=1,
            max=3650,
            help="Days until consumers refuse this release as stale: release again before.",
        ),
    ] = 90,
    log: LogOpt = None,
    allow_insecure_http: InsecureOpt = False,
    json_out: JsonOpt = False,
) -> int:
    """Bind NAMESPACE/NAME:TAG to its digest with a version and an expiry, signed and logged.

    Consumers remember the highest release they accepted for each tag and refuse an older
    one, an expired one, or a tag moved to a digest its current release does not name.
    The version goes up across the whole package name; re-release before the expiry.

    Example: motte release acme/hello:1.0 --key alice
    """
    from motte.sign import sign_release

    now = _now()
    result = sign_release(
        reference,
        _private_keys(key),
        version=version,
        expires=now + dt.timedelta(days=expires_days),
        now=now,
        allow_insecure_http=allow_insecure_http,
        log_url=log,
    )
    return _sign_output(result, json_out)


def attest_build(
    reference: Ref,
    key: SignKeys,
    source: Annotated[str, typer.Option(help="Source repository URI.", show_default=False)],
    commit: Annotated[str, typer.Option(help="Full git commit id it was built from.")],
    command: Annotated[str | None, typer.Option(help="The build command.")] = None,
    builder: Annotated[str | None, typer.Option(help="Builder id URI.")] = None,
    log: LogOpt = None,
    allow_insecure_http: InsecureOpt = False,
    json_out: JsonOpt = False,
) -> int:
    """Sign SLSA provenance v1 (an in-toto statement, not TEE evidence): who built this digest.

    Which source, commit and command built it; signed, logged and stored beside the package
    like a signature. TEE evidence about a running Keep is motte attest.
    The default builder id names a local build (SLSA level 1 at most).

    Example: motte attest-build acme/hello:1.0 --key ci --source https://git.example/acme/hello
    --commit 0123456789abcdef0123456789abcdef01234567 --command "make hello.wasm"
    """
    from motte.sign import DEFAULT_BUILDER
    from motte.sign import attest_build as do_attest

    result = do_attest(
        reference,
        _private_keys(key),
        source=source,
        commit=commit,
        command=command,
        builder=builder or DEFAULT_BUILDER,
        allow_insecure_http=allow_insecure_http,
        log_url=log,
    )
    return _sign_output(result, json_out)


def attest_review(
    reference: Ref,
    key: SignKeys,
    reviewer: Annotated[str, typer.Option(help="Who reviewed (an email or URI).")],
    scope: Annotated[str, typer.Option(help='What was reviewed, e.g. "full" or "diff:v1.0".')],
    result: Annotated[str, typer.Option(help="pass or fail.")],
    kind: Annotated[str, typer.Option(help="review or audit.")] = "review",
    link: Annotated[str | None, typer.Option(help="Link to the review or report.")] = None,
    summary: Annotated[str | None, typer.Option(help="One-line summary.")] = None,
    log: LogOpt = None,
    allow_insecure_http: InsecureOpt = False,
    json_out: JsonOpt = False,
) -> int:
    """Sign a human review or audit of this digest (an in-toto statement, not TEE evidence).

    Reviewer, scope, result and date; signed, logged and stored beside the package like a
    signature. TEE evidence about a running Keep is motte attest.

    Example: motte attest-review acme/hello:1.0 --key bob --reviewer bob@example.org
    --scope full --result pass
    """
    from motte.sign import attest_review as do_review

    signed = do_review(
        reference,
        _private_keys(key),
        reviewer=reviewer,
        scope=scope,
        result=result,
        kind=kind,
        link=link,
        summary=summary,
        allow_insecure_http=allow_insecure_http,
        log_url=log,
    )
    return _sign_output(signed, json_out)


# -- verify ------------------------------------------------------------------------------


def verify(
    reference: Annotated[
        str,
        typer.Argument(
            help="[REGISTRY/]NAMESPACE/NAME[:TAG|@DIGEST], or a FILE with --bundle",
            show_default=False,
        ),
    ],
    key: Annotated[
        list[str],
        typer.Option(
            "--key",
            "-k",
            help="Pin a publisher public key instead of trust roots (with --bundle: the key "
            "of a keyed Sigstore bundle).",
        ),
    ] = [],  # noqa: B006 - Typer reads list defaults, never mutates them
    keys_dir: Annotated[
        Path | None,
        typer.Option("--keys-dir", help="Trust roots to use (default: MOTTE_HOME/trust-roots)."),
    ] = None,
    log: Annotated[
        str | None, typer.Option("--log", help="Log URL for the fork check (default: from trust).")
    ] = None,
    unsafe_skip_fork_check: Annotated[
        bool,
        typer.Option(
            "--unsafe-skip-fork-check",
            help="Offline: accept inclusion proofs whose checkpoint cannot be shown consistent "
            "with the last one seen (a forked log would go unnoticed).",
        ),
    ] = False,
    allow_rollback: Annotated[
        bool,
        typer.Option(
            "--allow-rollback",
            help="Accept a tag whose release is older than one seen, expired, or moved. "
            "Loud, and recorded in MOTTE_HOME/releases/overrides.jsonl.",
        ),
    ] = False,
    bundle: Annotated[
        Path | None,
        typer.Option("--bundle", help="Verify FILE against this Sigstore bundle (v0.1-v0.3)."),
    ] = None,
    trusted_root: Annotated[
        Path | None,
        typer.Option(
            "--trusted-root",
            help="Sigstore trusted_root.json to verify against (default: "
            "MOTTE_HOME/sigstore/trusted_root.json).",
        ),
    ] = None,
    identity: Annotated[
        str | None,
        typer.Option("--identity", help="With --bundle: the signer's certificate identity."),
    ] = None,
    issuer: Annotated[
        str | None, typer.Option("--issuer", help="With --bundle: the identity's OIDC issuer.")
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also list what was ignored, and why.")
    ] = False,
    allow_insecure_http: InsecureOpt = False,
    json_out: JsonOpt = False,
) -> int:
    """Verify an artifact: intact, signed by keys its namespace allows, logged, and current.

    Checks every blob against its digest, and each signature against the keys NAMESPACE delegates.
    (--key pins publisher keys instead of the installed trust roots.)
    Each statement needs a log inclusion proof under a checkpoint consistent with the last seen:
    a fork fails, and so does a log that cannot be reached for the consistency proof.
    By tag, the digest must be the tag's current release (motte release): an older, expired or
    moved release is refused unless --allow-rollback. Statements nobody you trust signed are
    ignored (-v lists them, with the reason).
    Exit status 1 names the check that failed: layer, manifest, signature, log, threshold,
    release.

    Sigstore bundles attached to the package (OCI referrers) count when their certificate
    names a keyless identity the namespace's root delegates; they are verified offline
    against --trusted-root (default MOTTE_HOME/sigstore/trusted_root.json; motte key
    sigstore-root install FILE pins one). cosign's sha256-HEX.sig/.att tags are read but
    not counted (-v says why).

    With --bundle, FILE is verified against a Sigstore bundle offline, as cosign verify-blob
    does: --trusted-root R and --identity I --issuer O (or --key K for a keyed bundle).
    Exit 0 verified, 1 refused (with the reason), 2 bad usage or a malformed bundle.

    Examples: motte verify acme/hello:1.0
    motte verify a.txt --bundle a.txt.sigstore.json --trusted-root trusted_root.json
    --identity https://github.com/acme/hello/.github/workflows/release.yml@refs/heads/main
    --issuer https://token.actions.githubusercontent.com
    """
    if bundle is not None:
        return _verify_bundle(
            Path(reference), bundle, trusted_root, identity, issuer, key, json_out, verbose
        )
    if identity or issuer:
        raise typer.BadParameter(
            "--identity and --issuer go with --bundle (a package's keyless publishers come "
            "from its namespace's trust root)",
            param_hint="--bundle",
        )
    from motte.sign import policy_from_keys, verify_artifact

    if key and keys_dir is not None:
        raise typer.BadParameter("give --key or --keys-dir, not both", param_hint="--key")
    policy = policy_from_keys(_public_keys(key)) if key else None
    result = verify_artifact(
        reference,
        policy,
        trust_dir=keys_dir,
        allow_insecure_http=allow_insecure_http,
        log_url=log,
        unsafe_skip_fork_check=unsafe_skip_fork_check,
        allow_rollback=allow_rollback,
        trusted_root=trusted_root,
    )
    _verify_output(result, json_out, verbose)
    return int(ExitStatus.OK)


def _verify_bundle(
    file: Path,
    bundle: Path,
    trusted_root: Path | None,
    identity: str | None,
    issuer: str | None,
    key: list[str],
    json_out: bool,
    verbose: bool,
) -> int:
    from motte.errors import UsageError
    from motte.sign import verify_blob_bundle

    if key and (identity or issuer):
        raise UsageError("give --identity and --issuer, or --key, not both")
    if not key and not (identity and issuer):
        raise UsageError(
            "a Sigstore bundle is verified against a signer: give --identity and --issuer "
            "(a keyless bundle), or --key (a keyed one)",
            hint="e.g. --identity https://github.com/OWNER/REPO/.github/workflows/W.yml@REF "
            "--issuer https://token.actions.githubusercontent.com",
        )
    if len(key) > 1:
        raise UsageError("a keyed bundle is verified with one --key")
    result = verify_blob_bundle(
        file,
        bundle,
        trusted_root=trusted_root,
        identity=identity,
        issuer=issuer,
        key=Path(key[0]) if key else None,
    )
    if json_out:
        _emit({"verified": True, **result.to_dict()})
    else:
        typer.echo(f"verified {file} ({result.artifact_digest})")
        for line in result.lines():
            typer.echo(f"  {line}")
    return int(ExitStatus.OK)


def _verify_output(v: Verification, json_out: bool, verbose: bool = False) -> None:
    if v.override_recorded is not None:
        print(
            f"motte: WARNING: --allow-rollback: {v.release.overridden if v.release else ''}; "
            f"accepted anyway, recorded in {v.override_recorded}",
            file=sys.stderr,
        )
    if json_out:
        _emit(
            {
                "verified": True,
                "reference": str(v.reference),
                "digest": v.digest,
                "policy": v.policy,
                "threshold": v.threshold,
                "publishers": list(v.publishers),
                "identities": {k: v.names[k] for k in v.publishers if k in v.names},
                "release": None
                if v.release is None
                else {
                    "status": v.release.status,
                    "message": v.release.message,
                    "version": v.release.release.version if v.release.release else None,
                    "overridden": v.release.overridden,
                    "override_recorded": str(v.override_recorded) if v.override_recorded else None,
                },
                "statements": [
                    {
                        "referrer": s.referrer,
                        "predicate_type": s.predicate_type,
                        "kind": s.kind,
                        "signers": list(s.signers),
                        "log": {
                            "origin": s.log.origin,
                            "index": s.log.index,
                            "tree_size": s.log.tree_size,
                            "fork_check": s.log.fork_check,
                        },
                        "predicate": s.summary,
                    }
                    for s in v.statements
                ],
                "ignored": [{"referrer": r, "reason": why} for r, why in v.ignored],
            }
        )
        return
    typer.echo(f"verified {v.reference}")
    typer.echo(f"  policy      {v.policy} ({v.threshold} publisher signature(s) required)")
    typer.echo(f"  publishers  {', '.join(v.name_of(k) for k in v.publishers)}")
    if v.release is not None:
        typer.echo(f"  release     {v.release.message}")
    for s in v.statements:
        detail = ", ".join(f"{k}={val}" for k, val in s.summary.items() if val)
        who = ", ".join(v.name_of(k) for k in s.signers)
        typer.echo(f"  {s.kind:<11} by {who}" + (f": {detail}" if detail else ""))
        typer.echo(
            f"  {'':<11} log {s.log.origin} entry {s.log.index}; fork check: {s.log.fork_check}"
        )
    if verbose:
        for referrer, why in v.ignored:
            typer.echo(f"  ignored     {referrer[:19]}: {why}")
    elif v.ignored:
        typer.echo(f"  ignored     {len(v.ignored)} referrer(s) nobody you trust signed (-v: why)")
