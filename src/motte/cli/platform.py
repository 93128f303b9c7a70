"""``motte platform info``: which Keep backends work on this machine, and why not."""

from __future__ import annotations

import textwrap
from typing import Annotated

from motte.cli import _typer as typer
from motte.errors import ExitStatus

app = typer.Typer(no_args_is_help=True, help="What Keep backends this machine supports.")


@app.command("info")
def info(
    json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> int:
    """List the Keep backends (snp, tdx, sgx, sim): what each protects, whether it works
    here, and every check that decided it.

    `motte run --steward URL` without --backend uses the first available of snp, tdx and
    sgx; sim is never chosen automatically (--backend sim --allow-insecure-sim).
    """
    from motte.keep.backends import platform_report

    report = platform_report()
    running = {e["name"]: _running(str(e["name"])) for e in report if e["available"]}
    running = {k: v for k, v in running.items() if v}
    if json:
        from motte.cli._output import emit_json

        emit_json({"backends": report, "running": running})
        return int(ExitStatus.OK)
    for entry in report:
        state = "available" if entry["available"] else "unavailable"
        if entry["insecure"]:
            state += ", INSECURE (development only)"
        typer.echo(f"{entry['name']:4}  {state}")
        typer.echo(
            textwrap.fill(
                str(entry["description"]), 92, initial_indent=" " * 6, subsequent_indent=" " * 6
            )
        )
        for check in entry["checks"]:  # type: ignore[attr-defined]
            typer.echo(f"      - {check}")
    for lines in running.values():
        for line in lines:
            typer.echo(line)
    chosen = next((e["name"] for e in report if e["available"] and e["automatic"]), None)
    typer.echo(
        f"automatic choice: {chosen}"
        if chosen
        else "automatic choice: none (no TEE here; --backend sim --allow-insecure-sim for "
        "development)"
    )
    return int(ExitStatus.OK)


def _running(name: str) -> list[str]:
    """On an SNP or TDX guest: the running launch values beside what `motte measure` needs
    to reproduce them (docs/measure.md). Empty elsewhere."""
    if name not in ("snp", "tdx"):
        return []
    from motte.attest import parse_evidence
    from motte.errors import MotteError
    from motte.keep.backends import get_backend
    from motte.measure import guest_facts, running_lines

    try:
        parsed = parse_evidence(get_backend(name).evidence(bytes(64)))
    except (MotteError, OSError) as e:
        return [f"running {name} measurement: unavailable ({e})"]
    return running_lines(parsed, guest_facts())
