"""``motte trust``, ``motte rebuild`` and ``motte advise``: thin commands over motte.trust.

Exit statuses: ``trust`` 0 when the policy accepts, 1 when it refuses; ``rebuild`` 0 when the
rebuild is byte-identical, 1 when it is not; 2 for usage errors and broken policy files.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from motte.cli import _typer as typer
from motte.cli.sign import InsecureOpt, JsonOpt, LogOpt, Ref, SignKeys, _private_keys, _public_keys
from motte.errors import ExitStatus

if TYPE_CHECKING:
    from motte.trust import RebuildResult, SignedVerdict, TrustVerdict

PolicyOpt = Annotated[
    Path,
    typer.Option(
        "--policy", "-p", help="Your trust policy (TOML; see docs/trust.md).", show_default=False
    ),
]
_COLOURS = {"satisfied": "green", "not satisfied": "red", "unknown": "yellow"}
_MARKS = {"satisfied": "✔", "not satisfied": "✘", "unknown": "?"}


def trust(
    reference: Ref,
    policy: PolicyOpt,
    sign: Annotated[
        list[str],
        typer.Option(
            "--sign",
            help="Sign the verdict with this key, log it and attach it (repeatable).",
        ),
    ] = [],  # noqa: B006 - Typer reads list defaults, never mutates them
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="List every rule checked under its area.")
    ] = False,
    allow_rollback: Annotated[
        bool,
        typer.Option(
            "--allow-rollback",
            help="Accept a tag whose release is older than one seen, expired, or moved. "
            "Loud, and recorded in MOTTE_HOME/releases/overrides.jsonl.",
        ),
    ] = False,
    trusted_root: Annotated[
        Path | None,
        typer.Option(
            "--trusted-root",
            help="Sigstore trusted_root.json for bundles attached to the package (default: "
            "MOTTE_HOME/sigstore/trusted_root.json).",
        ),
    ] = None,
    log: LogOpt = None,
    allow_insecure_http: InsecureOpt = False,
    json_out: JsonOpt = False,
) -> int:
    """Do I trust this package? Judge it under YOUR policy, in five areas, and say why.

    Build (trusted provenance, reproducible, no failed rebuild), integrity (digests,
    signatures, log, no fork, the source has the recorded commit),
    responsiveness (advisories), provenance (who signs, since when, new signers),
    expertise (fresh audits by auditors you name).
    Each area is satisfied, not satisfied (the evidence says no) or unknown (no evidence).
    By tag, integrity also needs the digest to be the tag's current release (motte release):
    an older, expired or moved one is refused unless --allow-rollback.
    The package is accepted only when every area the policy requires is satisfied.
    Sigstore bundles count when signed by a keyless identity the namespace's root or the
    policy names (verified offline against the pinned trusted root).

    Exit status: 0 accepted, 1 refused, 2 usage or a broken policy file.

    Example: motte trust acme/hello:1.0 --policy production.toml
    """
    from motte.trust import assess, load_policy, sign_verdict

    pol = load_policy(policy)
    keys = _private_keys(sign) if sign else []
    with _index_progress(not json_out and sys.stderr.isatty()) as progress:
        verdict = assess(
            reference,
            pol,
            allow_insecure_http=allow_insecure_http,
            log_url=log,
            progress=progress,
            allow_rollback=allow_rollback,
            trusted_root=trusted_root,
        )
    signed = (
        sign_verdict(verdict, keys, allow_insecure_http=allow_insecure_http, log_url=log)
        if keys
        else None
    )
    if json_out:
        from motte.cli._output import emit_json

        out: dict[str, Any] = verdict.to_dict()
        if signed is not None:
            out["signed"] = _signed_dict(signed)
        emit_json(out)
    else:
        _render_verdict(verdict, signed, verbose)
    return int(ExitStatus.OK if verdict.accepted else ExitStatus.FAILURE)


@contextlib.contextmanager
def _index_progress(enabled: bool) -> Iterator[Any]:
    """A bar for indexing a log's new entries (counted in entries, not bytes)."""
    from motte.oci import NO_PROGRESS

    if not enabled:
        yield NO_PROGRESS
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("entries"),
        console=Console(stderr=True),
        transient=True,
    )

    class _Bar:
        @contextlib.contextmanager
        def task(self, description: str, total: int) -> Iterator[Any]:
            task_id = bar.add_task(description, total=total)
            yield lambda n: bar.advance(task_id, n)

    with bar:
        yield _Bar()


def _signed_dict(s: SignedVerdict) -> dict[str, Any]:
    return {
        "statement": s.statement,
        "keyids": list(s.keyids),
        "log": {"origin": s.log_origin, "index": s.log_index},
        "referrer": s.referrer,
    }


def _render_verdict(v: TrustVerdict, signed: SignedVerdict | None, verbose: bool) -> None:
    from rich.console import Console
    from rich.markup import escape

    # One line per area however long: a terminal wraps it, a pipe or a log keeps it whole.
    out = Console(highlight=False, soft_wrap=True)
    out.print(f"[bold]{escape(v.reference)}[/]")
    out.print(
        f"  policy {escape(v.policy_name)} ({v.policy_digest[:19]}…), judged {v.to_dict()['time']}"
    )
    for a in v.areas:
        status = a.status.value
        colour = _COLOURS[status]
        req = "" if a.required else " [dim](not required)[/]"
        out.print(
            f"  [{colour}]{_MARKS[status]} {a.area:<15}{status:<14}[/]"
            f"{escape(a.deciding.message)}{req}",
        )
        shown = a.rules if verbose else a.notes
        for rule in shown:
            if verbose and rule is a.deciding:
                continue
            label = "note" if rule.status.value == "note" else rule.status.value
            colour = _COLOURS.get(rule.status.value, "dim")
            out.print(f"  {'':<31}[{colour}]{label}:[/] [dim]{escape(rule.message)}[/]")
    if v.accepted:
        out.print("[bold green]accepted[/]: every area the policy requires is satisfied")
    else:
        failing = ", ".join(f"{a.area} {a.status.value}" for a in v.failing())
        out.print(f"[bold red]refused[/]: {escape(failing)}")
    if signed is not None:
        where = f", referrer {signed.referrer[:19]}…" if signed.referrer else " (not attached)"
        out.print(
            f"  signed verdict: {signed.log_origin} entry {signed.log_index}{where}",
        )


def rebuild(
    reference: Ref,
    key: Annotated[
        list[str],
        typer.Option(
            "--key", "-k", help="Accept the build recipe signed by this public key (repeatable)."
        ),
    ] = [],  # noqa: B006
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy", "-p", help="Also accept recipes signed by this policy's builders."
        ),
    ] = None,
    attest: Annotated[
        list[str],
        typer.Option(
            "--attest",
            help="Sign the result as an in-toto rebuild statement with this key "
            "(a statement about the package, not TEE evidence).",
        ),
    ] = [],  # noqa: B006
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds the build command may take.")
    ] = 600.0,
    log: LogOpt = None,
    allow_insecure_http: InsecureOpt = False,
    json_out: JsonOpt = False,
) -> int:
    """Rebuild a package from its recorded source and compare it byte for byte.

    Reads the package's SLSA provenance (source, commit, command), signed by a key its
    namespace's trust root delegates (or --key, or a --policy builder's key).
    Clones the source into a fresh temporary directory, checks out the commit, and runs the
    command with /bin/sh in a scrubbed environment (SOURCE_DATE_EPOCH = the commit time).
    This RUNS THE PUBLISHER'S BUILD COMMAND on this machine: rebuild where you would build.
    The module the package names is deleted from the checkout first: the command must make it.
    Then packages the checkout as motte package does and compares module and package digests.
    --attest KEY signs the result as a rebuild statement, logged and attached: match,
    mismatch, or failed (clone, checkout, build, timeout, or no module produced) with why.

    Exit status: 0 reproduced, 1 different bytes or a failed rebuild, 2 usage.

    Example: motte rebuild acme/hello:1.0 --attest my-rebuilder
    """
    from motte.trust import load_policy
    from motte.trust import rebuild as do_rebuild

    keys = None
    if key or policy is not None:
        keys = _public_keys(key)
        if policy is not None:
            keys += [k for b in load_policy(policy).builders for k in b.keys]
            if not key:
                keys += _namespace_keys(reference)
    signers = _private_keys(attest) if attest else []
    result = do_rebuild(
        reference,
        keys=keys,
        attest=signers,
        timeout=timeout,
        progress=_progress(json_out),
        allow_insecure_http=allow_insecure_http,
        log_url=log,
    )
    if json_out:
        from motte.cli._output import emit_json

        emit_json(_rebuild_dict(result))
    else:
        _render_rebuild(result)
    return int(ExitStatus.OK if result.matched else ExitStatus.FAILURE)


def _namespace_keys(reference: str) -> list[Any]:
    import datetime as dt

    from motte.errors import MotteError
    from motte.sign import policy_for_namespace
    from motte.trust import reference_for

    try:
        ns = reference_for(reference).namespace
        return list(policy_for_namespace(ns, now=dt.datetime.now(dt.UTC)).keys)
    except MotteError:
        return []  # no trust root: the policy's builders alone


def _progress(quiet: bool) -> Any:
    def show(step: str) -> None:
        if not quiet:
            print(f"rebuild: {step}", file=sys.stderr, flush=True)

    return show


def _rebuild_dict(r: RebuildResult) -> dict[str, Any]:
    p = r.recipe.provenance
    out: dict[str, Any] = {
        "reference": r.reference,
        "reproduced": r.matched,
        "result": r.result,
        "source": p.source,
        "commit": p.commit,
        "command": p.command,
        "provenance": r.recipe.statement,
        "package": {"expected": r.expected, "rebuilt": r.rebuilt},
        "module": {"expected": r.expected_module, "rebuilt": r.rebuilt_module},
        "seconds": round(r.seconds, 3),
    }
    if r.failure is not None:
        out["failure"] = r.failure.to_dict()
    if r.attestation is not None:
        out["attestation"] = {
            "referrer": r.attestation.referrer,
            "log": {"origin": r.attestation.log_origin, "index": r.attestation.log_index},
        }
    return out


def _render_rebuild(r: RebuildResult) -> None:
    p = r.recipe.provenance
    if r.failure is not None:
        typer.echo(f"NOT reproduced: could not rebuild {r.reference}: {r.failure.reason}")
    elif r.matched:
        typer.echo(f"reproduced {r.reference} byte for byte")
    else:
        typer.echo(f"NOT reproduced: {r.reference} rebuilt to different bytes")
    typer.echo(f"  source   {p.source} at {p.commit}")
    typer.echo(f"  command  {p.command}")
    if r.failure is not None:
        typer.echo(f"  failed   at the {r.failure.stage} step")
    for what, want, got in (
        ("module", r.expected_module, r.rebuilt_module),
        ("package", r.expected, r.rebuilt),
    ):
        same = "not rebuilt" if got is None else "same" if want == got else f"rebuilt as {got}"
        typer.echo(f"  {what:<8} {want} ({same})")
    typer.echo(f"  took     {r.seconds:.1f} s")
    if r.attestation is not None:
        a = r.attestation
        typer.echo(f"  attested {a.log_origin} entry {a.log_index}, referrer {a.referrer}")


def advise(
    reference: Annotated[
        list[str],
        typer.Argument(help="Affected versions: [REGISTRY/]NAMESPACE/NAME[:TAG|@DIGEST]..."),
    ],
    key: SignKeys,
    id: Annotated[
        str, typer.Option("--id", help="The advisory's id, e.g. MOTTE-2026-0001 or a CVE id.")
    ],
    fixed: Annotated[
        str | None, typer.Option("--fixed", help="The version that fixes it (a reference).")
    ] = None,
    severity: Annotated[
        str | None, typer.Option("--severity", help="low, medium, high or critical.")
    ] = None,
    summary: Annotated[
        str | None, typer.Option("--summary", help="One line: what is wrong.")
    ] = None,
    alias: Annotated[
        list[str], typer.Option("--alias", help="Another id for it (repeatable).")
    ] = [],  # noqa: B006
    withdraw: Annotated[
        bool, typer.Option("--withdraw", help="Withdraw advisory --id (it was a mistake).")
    ] = False,
    log: LogOpt = None,
    allow_insecure_http: InsecureOpt = False,
    json_out: JsonOpt = False,
) -> int:
    """Publish a signed advisory: these versions of a package have a known problem.

    One statement about the affected digests, signed, logged, and attached to each affected
    version. Its published time is the log's, which the signer cannot backdate.
    Publish again with the same --id to add --fixed when the fix is out, or to --withdraw it.
    Policies count advisories signed by the package's publisher keys or by advisors they name.

    Example: motte advise acme/hello:1.0 --key alice --id MOTTE-2026-0001 --severity high
    --summary "path traversal in /files" --fixed acme/hello:1.1
    """
    from motte.trust import publish_advisory

    result = publish_advisory(
        reference,
        _private_keys(key),
        id=id,
        fixed=fixed,
        severity=severity,
        summary=summary,
        aliases=alias,
        withdrawn=withdraw,
        allow_insecure_http=allow_insecure_http,
        log_url=log,
    )
    if json_out:
        from motte.cli._output import emit_json

        emit_json(
            {
                "advisory": result.advisory.to_dict(),
                "statement": result.statement,
                "keyids": list(result.keyids),
                "log": {"origin": result.log_origin, "index": result.log_index},
                "referrers": list(result.referrers),
            }
        )
        return int(ExitStatus.OK)
    a = result.advisory
    verb = "withdrew" if a.withdrawn else "published"
    typer.echo(f"{verb} advisory {a.id} for {a.package}")
    typer.echo(f"  affects  {', '.join(v.describe() for v in a.affected)}")
    if a.fixed is not None:
        typer.echo(f"  fixed in {a.fixed.describe()}")
    typer.echo(f"  logged   {result.log_origin} entry {result.log_index}")
    typer.echo(f"  attached to {len(result.referrers)} version(s)")
    return int(ExitStatus.OK)
