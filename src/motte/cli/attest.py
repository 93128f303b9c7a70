"""``motte attest``: show and verify TEE attestation evidence.

Thin commands: parse the command line, call :mod:`motte.attest`, render, return the status
(0 accepted, 1 rejected or malformed, 2 usage error).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from motte.cli import _typer as typer
from motte.cli._output import emit_json
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
    help="Parse and verify TEE attestation evidence (SEV-SNP, TDX, SGX, configfs-tsm, Enarx, "
    "sim): what a Keep's hardware reports about it. Signed statements about a package "
    "(provenance, reviews) are motte attest-build and attest-review.",
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
    if str(path) == "-":
        return sys.stdin.buffer.read(), kind
    if path.is_dir():
        from motte.attest import read_tsm_capture_dir

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
    with _reader_may_leave():
        if json:
            emit_json(doc)
        else:
            _print_parsed(parsed.kind, parsed.tee, doc)
    return int(ExitStatus.OK)


def _print_parsed(kind: str, tee: str | None, doc: dict[str, Any]) -> None:
    out = _Out()
    out.line(f"{out.bold(kind)} evidence, TEE {tee or 'none'}")
    out.line(out.yellow("UNVERIFIED: parsed fields only; `motte attest verify` checks them."))
    if kind == "sim":
        out.line(out.red("INSECURE: sim evidence comes from a software keep."))
    _print_tree(out, {k: v for k, v in doc.items() if k not in ("kind", "tee", "verified")}, 0)


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
    # The verdict decides the status; a reader that stops listening changes nothing.
    with _reader_may_leave():
        if json:
            doc = verdict.to_dict()
            if explanation is not None:
                doc["measure_explanation"] = explanation
            emit_json(doc)
        else:
            _print_verdict(verdict)
            for line in explanation or ():
                _Out().line(f"  measure: {line}")
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


@contextmanager
def _reader_may_leave() -> Iterator[None]:
    """Print, and stop quietly if stdout's reader has gone (``motte attest verify ... | true``).

    Writes are flushed here, so a closed pipe shows up inside this block and not in Click's
    EPIPE handler (which exits 1, "rejected", for an accepted verdict); stdout then points at
    /dev/null so the interpreter's last flush has nowhere to fail.
    """
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


class _Out:
    """Plain lines on stdout, never wrapped (hex values stay whole for copy and paste),
    coloured only for a terminal that takes colour (not with NO_COLOR or TERM=dumb)."""

    def __init__(self) -> None:
        out = sys.stdout
        self.write = out.write
        self.color = (
            out.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM", "") != "dumb"
        )

    def line(self, text: str = "") -> None:
        self.write(text + "\n")

    def _style(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color else text

    def bold(self, text: str) -> str:
        return self._style("1", text)

    def green(self, text: str) -> str:
        return self._style("1;32", text)

    def red(self, text: str) -> str:
        return self._style("1;31", text)

    def yellow(self, text: str) -> str:
        return self._style("33", text)

    def mark(self, outcome: str) -> str:
        if outcome == "pass":
            return self._style("32", "ok  ")
        if outcome == "fail":
            return self._style("1;31", "FAIL")
        return self._style("2", "skip")


def _print_verdict(v: Verdict) -> None:
    out = _Out()
    what = f"{v.kind or 'unknown'} evidence" + (f" ({v.format})" if v.format else "")
    if v.accepted:
        out.line(f"{out.green('ACCEPTED')}  {what}")
    else:
        out.line(f"{out.red('REJECTED')}  {what}")
        out.line(f"  reason: {v.reason}")
    if v.kind == "sim":
        out.line("  " + out.red("INSECURE: a software keep, no hardware protection"))
    if v.measurement:
        out.line(f"  measurement: {v.measurement}")
    policy = v.policy
    out.line(f"  policy: {policy['name']} ({policy['source']})")
    out.line(f"  verified at: {v.verified_at}")
    if not v.claims_verified and v.claims:
        out.line("  " + out.yellow("claims did not verify; `--json` shows them for diagnosis"))
    out.line()
    for r in v.rules:
        out.line(f"  {r.stage:<6} {out.mark(r.outcome)} {r.rule:<20} {r.reason}")


def _print_tree(out: _Out, value: Any, depth: int) -> None:
    pad = "  " * depth
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, dict | list) and v:
                out.line(f"{pad}{k}:")
                _print_tree(out, v, depth + 1)
            else:
                out.line(f"{pad}{k}: {_scalar(v)}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, dict | list):
                out.line(f"{pad}- [{i}]")
                _print_tree(out, item, depth + 1)
            else:
                out.line(f"{pad}- {_scalar(item)}")


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if v is None:
        return "-"
    if isinstance(v, list | dict):
        return "(none)"
    return str(v)
