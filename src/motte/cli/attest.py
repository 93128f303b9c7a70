"""``motte attest``: show and verify TEE attestation evidence.

Thin commands: parse the command line, call :mod:`motte.attest`, render, return the status
(0 accepted, 1 rejected or malformed, 2 usage error).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from motte.cli._output import console, emit_json
from motte.errors import ExitStatus, UsageError

if TYPE_CHECKING:
    from motte.attest import Verdict

_EPILOG = """Evidence is an SEV-SNP report (binary or hex), a TDX or SGX quote, a configfs-tsm capture (JSON, or the report directory itself), an Enarx Keep CSR, or motte's insecure sim evidence; the kind is detected.

motte attest show report.bin: print the parsed fields (nothing is verified)

motte attest verify report.bin --certs vcek.der: verify against the pinned AMD roots and the default policy

motte attest verify quote.bin --collateral pcs.json --at 2025-07-01: Intel, at a pinned time

motte attest verify ev.bin --policy prod.toml --report-data HEX --json: your policy, a nonce, JSON

motte attest verify ev.bin --policy measured.toml --measure-inputs ref.json: on a measurement mismatch, which input explains it

See docs/attestation.md for the policy reference and what each check means."""  # noqa: E501

app = typer.Typer(
    no_args_is_help=True,
    help="Parse and verify TEE attestation evidence (SEV-SNP, TDX, SGX, configfs-tsm, Enarx, sim).",
    epilog=_EPILOG,
)


class Kind(StrEnum):
    snp = "snp"
    tdx = "tdx"
    sgx = "sgx"
    tsm = "tsm"
    sim = "sim"
    enarx = "enarx"


EvidenceArg = Annotated[
    Path,
    typer.Argument(
        help="Evidence file, a configfs-tsm report directory, or - for standard input.",
        metavar="EVIDENCE",
        show_default=False,
    ),
]
KindOpt = Annotated[
    Kind | None,
    typer.Option("--kind", help="Evidence kind (detected when not given).", show_default=False),
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _read_evidence(path: Path, kind: Kind | None) -> tuple[bytes, Kind | None]:
    from motte.attest import read_tsm_capture_dir

    if str(path) == "-":
        return sys.stdin.buffer.read(), kind
    if path.is_dir():
        return read_tsm_capture_dir(path).to_json(), Kind.tsm
    try:
        return path.read_bytes(), kind
    except OSError as e:
        raise typer.BadParameter(
            f"cannot read {path}: {e.strerror}", param_hint="EVIDENCE"
        ) from None


@app.command()
def show(evidence: EvidenceArg, kind: KindOpt = None, json: Json = False) -> int:
    """Print the fields of EVIDENCE as parsed. Nothing is verified: a forgery parses too."""
    from motte.attest import parse_evidence

    raw, kind = _read_evidence(evidence, kind)
    parsed = parse_evidence(raw, kind.value if kind else None)
    doc = parsed.to_dict()
    if json:
        emit_json(doc)
        return int(ExitStatus.OK)
    out = _Out()
    out.print(f"[bold]{parsed.kind}[/bold] evidence, TEE {parsed.tee or 'none'}")
    out.print("[yellow]UNVERIFIED: parsed fields only; `motte attest verify` checks them.[/yellow]")
    if parsed.kind == "sim":
        out.print("[bold red]INSECURE: sim evidence comes from a software keep.[/bold red]")
    _print_tree(out, {k: v for k, v in doc.items() if k not in ("kind", "tee", "verified")}, 0)
    return int(ExitStatus.OK)


def _parse_at(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO 8601 time (e.g. 2025-06-01T12:00:00Z)", param_hint="--at"
        ) from None
    return t if t.tzinfo is not None else t.replace(tzinfo=UTC)


def _parse_report_data(value: str | None) -> bytes | None:
    if value is None:
        return None
    text = value.strip().removeprefix("0x")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not hex", param_hint="--report-data") from None
    if not 1 <= len(raw) <= 64:
        raise typer.BadParameter(
            f"{len(raw)} bytes; REPORT_DATA is 1 to 64 bytes (shorter is zero-padded)",
            param_hint="--report-data",
        )
    return raw


@app.command()
def verify(
    evidence: EvidenceArg,
    kind: KindOpt = None,
    certs: Annotated[
        list[Path] | None,
        typer.Option(
            "--certs",
            help="SNP: VCEK/VLEK, ASK/ARK or CRL file (PEM, DER, PkiPath, cert table). Repeat.",
            metavar="FILE",
            exists=True,
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    collateral: Annotated[
        Path | None,
        typer.Option(
            "--collateral",
            help="TDX/SGX: Intel PCS collateral JSON (TCB info, QE identity, CRLs).",
            metavar="FILE",
            exists=True,
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="Policy TOML (default: refuse debug, sim and any Intel TCB not UpToDate).",
            metavar="FILE",
            exists=True,
            dir_okay=False,
            show_default=False,
        ),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            metavar="ISO-TIME",
            help="Verify as of this time (UTC unless it says otherwise); default now.",
            show_default=False,
        ),
    ] = None,
    report_data: Annotated[
        str | None,
        typer.Option(
            "--report-data",
            metavar="HEX",
            help="Expected REPORT_DATA (nonce or key hash), up to 64 bytes, zero-padded.",
            show_default=False,
        ),
    ] = None,
    online: Annotated[
        bool,
        typer.Option(
            "--online", help="Fetch missing collateral from AMD KDS / Intel PCS (and cache it)."
        ),
    ] = False,
    measure_inputs: Annotated[
        Path | None,
        typer.Option(
            "--measure-inputs",
            metavar="FILE",
            help="The JSON of `motte measure ... --json`: on a measurement mismatch, say which "
            "input would explain it.",
            show_default=False,
        ),
    ] = None,
    json: Json = False,
) -> int:
    """Verify EVIDENCE against pinned vendor roots and a policy. Exit 0 accepted, 1 rejected,
    2 a usage error (a bad option, a missing or malformed input of yours such as the policy)."""
    from motte.attest import load_policy, verify_evidence
    from motte.attest.collateral import CollateralCache
    from motte.attest.errors import PolicyError

    now = _parse_at(at)
    expected = _parse_report_data(report_data)
    raw, kind = _read_evidence(evidence, kind)
    try:
        rules = load_policy(policy) if policy else None
    except PolicyError as e:  # the caller's own file: 2, so a script tells it from a rejection
        raise UsageError(e.message, hint=e.hint) from None
    verdict = verify_evidence(
        raw,
        kind=kind.value if kind else None,
        certs=[p.read_bytes() for p in certs or ()],
        collateral=collateral.read_bytes() if collateral else None,
        policy=rules,
        now=now,
        report_data=expected,
        cache=CollateralCache(),
        online=online,
    )
    explanation = _explain_measurement(measure_inputs, verdict) if measure_inputs else None
    if json:
        doc = verdict.to_dict()
        if explanation is not None:
            doc["measure_explanation"] = explanation
        emit_json(doc)
    else:
        _print_verdict(verdict)
        for line in explanation or ():
            _Out().print(f"  measure: {line}", markup=False)
    return int(ExitStatus.OK if verdict.accepted else ExitStatus.FAILURE)


#: Policy rules that compare a launch value a `motte measure` reference predicts.
_MEASURED_RULES = frozenset({"measurement", "mr-td", "rtmr1", "rtmr2"})


def _explain_measurement(path: Path, verdict: Verdict) -> list[str] | None:
    """Which input of a `motte measure` reference explains a differing launch value; None
    when no measured value failed (nothing to explain)."""
    import json as json_lib

    from motte.measure import explain_mismatch

    try:
        doc = json_lib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UsageError(
            f"--measure-inputs {path}: not readable JSON ({getattr(e, 'strerror', None) or e})"
        ) from None
    if not isinstance(doc, dict) or doc.get("tee") not in ("snp", "tdx"):
        raise UsageError(f"--measure-inputs {path}: not the JSON of `motte measure snp|tdx --json`")
    if not any(r.rule in _MEASURED_RULES for r in verdict.failures):
        return None
    return explain_mismatch(doc, verdict.to_dict())


_MARK = {
    "pass": "[green]ok  [/green]",
    "fail": "[bold red]FAIL[/bold red]",
    "skip": "[dim]skip[/dim]",
}


class _Out:
    """A Rich console that never wraps: hex values stay whole for copy and paste."""

    def __init__(self) -> None:
        self.console = console()

    def print(self, *args: Any, **kw: Any) -> None:
        self.console.print(*args, soft_wrap=True, **kw)


def _print_verdict(v: Verdict) -> None:
    out = _Out()
    what = f"{v.kind or 'unknown'} evidence" + (f" ({v.format})" if v.format else "")
    if v.accepted:
        out.print(f"[bold green]ACCEPTED[/bold green]  {what}")
    else:
        out.print(f"[bold red]REJECTED[/bold red]  {what}")
        out.print(f"  reason: {v.reason}", markup=False)
    if v.kind == "sim":
        out.print("  [bold red]INSECURE: a software keep, no hardware protection[/bold red]")
    if v.measurement:
        out.print(f"  measurement: {v.measurement}", markup=False)
    policy = v.policy
    out.print(f"  policy: {policy['name']} ({policy['source']})", markup=False)
    out.print(f"  verified at: {v.verified_at}", markup=False)
    if not v.claims_verified and v.claims:
        out.print("  [yellow]claims did not verify; `--json` shows them for diagnosis[/yellow]")
    out.print()
    for r in v.rules:
        out.print(f"  {r.stage:<6} {_MARK[r.outcome]} {r.rule:<20}", end=" ")
        out.print(r.reason, markup=False, highlight=False)


def _print_tree(out: Any, value: Any, depth: int) -> None:
    pad = "  " * depth
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, dict | list) and v:
                out.print(f"{pad}{k}:", markup=False)
                _print_tree(out, v, depth + 1)
            else:
                out.print(f"{pad}{k}: {_scalar(v)}", markup=False)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, dict | list):
                out.print(f"{pad}- [{i}]", markup=False)
                _print_tree(out, item, depth + 1)
            else:
                out.print(f"{pad}- {_scalar(item)}", markup=False)


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if v is None:
        return "-"
    if isinstance(v, list | dict):
        return "(none)"
    return str(v)
