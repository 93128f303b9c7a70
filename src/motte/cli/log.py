"""``motte log``: run, use and check a transparency log (and a witness).

Thin commands: each parses, calls :mod:`motte.tlog`, renders, and returns an exit status.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from motte.cli import _typer as typer
from motte.cli._output import emit_json

if TYPE_CHECKING:
    from motte.tlog import Log

_EPILOG = """Every signature and provenance statement motte makes is logged; `motte verify` accepts it only with an inclusion proof to a checkpoint it trusts, consistent with the last checkpoint it saw from that log (a fork is refused).

motte log init: create the embedded log (key and database)

motte log append FILE: log a file, print its index

motte log prove INDEX -o e.tlog-proof: write an offline inclusion proof

motte log verify FILE e.tlog-proof: check signatures, witnesses, proof, no fork

motte log serve: serve over HTTP (C2SP tlog-tiles, POST /add)

motte log export-tiles DIR: write the tiles as static files for any web server

motte log witness init | serve: run a witness that cosigns checkpoints

See docs/transparency-log.md."""  # noqa: E501

app = typer.Typer(
    no_args_is_help=True,
    help="The transparency log: an append-only Merkle tree with signed checkpoints.",
    epilog=_EPILOG,
)
witness_app = typer.Typer(
    no_args_is_help=True,
    help="A witness: cosigns a log's checkpoint only if it extends the last one it cosigned.",
)
app.add_typer(witness_app, name="witness")

Dir = Annotated[
    Path | None, typer.Option("--dir", help="Log directory (default: MOTTE_HOME/tlog).")
]
Url = Annotated[
    str | None, typer.Option("--log", help="A served log (http://host:port), not the embedded.")
]
Json = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
Db = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        help="Keep the log in this PostgreSQL database (postgresql://\\[user@]host/db; the "
        "password from PGPASSWORD or ~/.pgpass, never the URL). Default: MOTTE_DB, else the "
        "one DIR/database records, else DIR/log.db.",
        show_default=False,
    ),
]

WitnessDb = Annotated[
    str | None,
    typer.Option(
        "--db",
        metavar="URL",
        help="Keep the witness's state in this PostgreSQL database (postgresql://\\[user@]host/db; "
        "the password from PGPASSWORD or ~/.pgpass, never the URL). Default: MOTTE_DB, else "
        "DIR/state.db.",
        show_default=False,
    ),
]


def _b64(h: bytes) -> str:
    import base64

    return base64.b64encode(h).decode()


def _open(
    url: str | None, directory: Path | None, *, create: bool = True, db: str | None = None
) -> Log:
    from motte.errors import UsageError
    from motte.tlog import LocalLog, default_log_dir, open_log

    if url and (directory or db):
        raise UsageError("--log names a served log; --dir and --db one opened here: give one")
    if url:
        return open_log(url)
    return LocalLog(directory or default_log_dir(), create=create, database=db)


@app.command()
def init(
    directory: Dir = None,
    origin: Annotated[
        str | None,
        typer.Option(help="The log's name (origin line and key name), e.g. example.com/log."),
    ] = None,
    db: Db = None,
    json: Json = False,
) -> int:
    """Create a log: an Ed25519 key (mode 0600) and an empty database. Prints its key."""
    from motte.tlog import LocalLog, default_log_dir

    with LocalLog(directory or default_log_dir(), origin=origin, database=db) as log:
        if json:
            emit_json({"origin": log.origin, "vkey": log.verifier_key, "dir": str(log.directory)})
        else:
            typer.echo(log.verifier_key)
            typer.echo(f"log {log.origin} in {log.directory}", err=True)
    return 0


@app.command()
def append(
    files: Annotated[list[Path], typer.Argument(help="Files to log, one each ('-': stdin).")],
    url: Url = None,
    directory: Dir = None,
    db: Db = None,
    json: Json = False,
) -> int:
    """Append entries (at most 65535 bytes each); each is durable and signed when printed.

    An entry already in the log is not appended again: its existing index is printed
    (content dedup, as Rekor does). Exit status is non-zero when the log refuses to sign.
    """
    from motte.tlog import MAX_ENTRY_SIZE, LocalLog, TlogUsageError

    datas = []
    for f in files:
        data = sys.stdin.buffer.read() if str(f) == "-" else _read(f)
        if len(data) > MAX_ENTRY_SIZE:
            raise TlogUsageError(
                f"{f}: {len(data)} bytes is larger than an entry may be ({MAX_ENTRY_SIZE})",
                hint="log a small record about the file (its digest, name, signer) instead",
            )
        datas.append(data)
    log = _open(url, directory, db=db)
    try:
        if isinstance(log, LocalLog):
            # Signed like POST /add: a store that refuses to sign fails the command.
            logged = log.append_signed(datas)
        else:
            logged = [log.append(d) for d in datas]
    finally:
        log.close()
    rows = [
        {"file": str(f), "index": e.index, "leaf_hash": _b64(e.leaf_hash)}
        for f, e in zip(files, logged, strict=True)
    ]
    if json:
        emit_json(rows)
    else:
        for r in rows:
            typer.echo(f"{r['index']}\t{r['file']}")
    return 0


def _read(path: Path) -> bytes:
    from motte.tlog import LogNotFoundError

    try:
        return path.read_bytes()
    except OSError as e:
        raise LogNotFoundError(f"{path}: {e.strerror}") from None


@app.command()
def checkpoint(url: Url = None, directory: Dir = None, db: Db = None, json: Json = False) -> int:
    """Print the latest signed checkpoint (signing one if entries are new)."""
    from motte.tlog import parse_checkpoint_unverified

    log = _open(url, directory, create=False, db=db)
    try:
        note = log.checkpoint()
    finally:
        log.close()
    if json:
        body, parsed = parse_checkpoint_unverified(note)
        emit_json(
            {
                "origin": body.origin,
                "size": body.size,
                "root_hash": _b64(body.root_hash),
                "signers": [s.name for s in parsed.signatures],
                "note": note.decode(),
            }
        )
    else:
        sys.stdout.write(note.decode())
    return 0


@app.command()
def prove(
    index: Annotated[int, typer.Argument(help="The entry's index.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write here (name.tlog-proof).")
    ] = None,
    url: Url = None,
    directory: Dir = None,
    db: Db = None,
) -> int:
    """Write an offline inclusion proof (C2SP tlog-proof) for an entry."""
    from motte.fsutil import atomic_write_bytes

    log = _open(url, directory, create=False, db=db)
    try:
        data = log.inclusion_bundle(index).to_bytes()
    finally:
        log.close()
    if output:
        atomic_write_bytes(output, data)
        typer.echo(f"wrote {output}", err=True)
    else:
        sys.stdout.write(data.decode())
    return 0


@app.command()
def verify(
    file: Annotated[Path, typer.Argument(help="The logged entry ('-': stdin).")],
    proof: Annotated[Path, typer.Argument(help="Its inclusion proof (tlog-proof).")],
    key: Annotated[
        list[str] | None,
        typer.Option("--key", help="Also trust this vkey (log or witness). Repeatable."),
    ] = None,
    witness_quorum: Annotated[
        int | None,
        typer.Option(help="How many trusted witnesses must cosign (default: all trusted)."),
    ] = None,
    url: Url = None,
    json: Json = False,
) -> int:
    """Check an entry against its proof: trusted log signature, witness quorum, audit path,
    and consistency with the last checkpoint seen from that log (a fork is refused)."""
    import time

    from motte.tlog import InclusionBundle, load_trusted, open_log, verify_logged

    entry = sys.stdin.buffer.read() if str(file) == "-" else _read(file)
    bundle = InclusionBundle.from_bytes(_read(proof))
    trusted = load_trusted(key or (), witness_quorum=witness_quorum)
    log = open_log(url) if url else None
    try:
        cp = verify_logged(entry, bundle, trusted, log=log, now=time.time())
    finally:
        if log is not None:
            log.close()
    index = bundle.index
    if json:
        emit_json(_checkpoint_json(cp) | {"index": index, "verified": True})
    else:
        w = f", cosigned by {len(cp.cosignatures)} witnesses" if cp.cosignatures else ""
        typer.echo(f"OK: entry {index} is in {cp.origin} at size {cp.size}{w}")
    return 0


def _checkpoint_json(cp: Any) -> dict[str, Any]:
    return {
        "origin": cp.origin,
        "size": cp.size,
        "root_hash": _b64(cp.root_hash),
        "log_key": cp.log_key,
        "cosignatures": [{"witness": c.witness, "timestamp": c.timestamp} for c in cp.cosignatures],
    }


@app.command()
def audit(directory: Dir = None, db: Db = None, json: Json = False) -> int:
    """Rebuild the tree from the stored entries; check every hash, checkpoint and cosignature."""
    from motte.tlog import LocalLog, audit_log, default_log_dir

    with LocalLog(directory or default_log_dir(), create=False, database=db) as log:
        if sys.stderr.isatty() and not json:
            from rich.progress import Progress

            with Progress(transient=True) as bar:
                task = bar.add_task("auditing", total=log.size or 1)
                report = audit_log(
                    log, progress=lambda done, total: bar.update(task, completed=done)
                )
        else:
            report = audit_log(log)
    if json:
        emit_json(
            {
                "size": report.size,
                "root_hash": _b64(report.root_hash),
                "nodes": report.nodes,
                "checkpoints": report.checkpoints,
                "cosignatures": report.cosignatures,
                "ok": True,
            }
        )
    else:
        typer.echo(
            f"OK: {report.size} entries, {report.nodes} hashes, {report.checkpoints} checkpoints "
            f"and {report.cosignatures} cosignatures agree; root {_b64(report.root_hash)}"
        )
    return 0


@app.command()
def trust(
    vkey: Annotated[str, typer.Argument(help="A log key (name+id+key) or a witness key.")],
    url: Annotated[
        str | None, typer.Argument(help="Where the log serves (for consistency proofs).")
    ] = None,
) -> int:
    """Trust a log's or a witness's key (adds it to MOTTE_HOME/tlog/trusted)."""
    from motte.tlog import add_trusted

    added = add_trusted(vkey, url)
    typer.echo("trusted" if added else "already trusted", err=True)
    return 0


@app.command()
def serve(
    listen: Annotated[str, typer.Option(help="HOST:PORT to listen on (port 0: any).")] = (
        "127.0.0.1:8470"
    ),
    directory: Dir = None,
    origin: Annotated[str | None, typer.Option(help="The log's name, when creating it.")] = None,
    db: Db = None,
) -> int:
    """Serve the log over HTTP: checkpoint, tiles and entry bundles (C2SP tlog-tiles), POST /add.

    Witnesses listed in DIR/witnesses ('<vkey> <url>' per line) are asked to cosign each
    new checkpoint before appends are acknowledged. On PostgreSQL (--db) one server at a
    time appends (the sequencer); a second one on the same database serves reads as a hot
    standby and takes over when the first dies.
    """
    from motte.tlog import KEY_FILE, LocalLog, create_log_app, default_log_dir, serve

    where = directory or default_log_dir()
    new = not (where / KEY_FILE).exists()
    log = LocalLog(where, origin=origin, database=db)
    if new:  # a mistyped --dir must not pass for the log the operator meant
        print(
            f"motte log: {where} held no log: created a NEW one, origin {log.origin}, key "
            f"{log.verifier_key} (`motte log init` creates one explicitly)",
            file=sys.stderr,
            flush=True,
        )
    serve(create_log_app(log), listen, what=f"log {log.origin}")
    log.close()
    return 0


@app.command("export-tiles")
def export_tiles(
    out: Annotated[Path, typer.Argument(help="Directory to write the static log into.")],
    incremental: Annotated[
        bool,
        typer.Option(
            "--incremental", help="Skip full tiles DIR already holds (after checking it is ours)."
        ),
    ] = False,
    directory: Dir = None,
    db: Db = None,
    json: Json = False,
) -> int:
    """Write the newest checkpoint, its tiles and entry bundles (C2SP tlog-tiles) and the vkey
    as static files, for any web server or CDN to serve; tiles first, the checkpoint last.

    \b
      motte log export-tiles /srv/www/log --incremental     # e.g. every minute, from cron
    """
    from motte.tlog import LocalLog, default_log_dir
    from motte.tlog import export_tiles as export

    with LocalLog(directory or default_log_dir(), create=False, database=db) as log:
        report = export(log, out, incremental=incremental)
    if json:
        emit_json(
            {
                "size": report.size,
                "written": report.written,
                "skipped": report.skipped,
                "bytes": report.bytes,
                "dir": str(out),
            }
        )
    else:
        typer.echo(
            f"exported size {report.size} to {out}: {report.written} tiles written "
            f"({report.bytes} bytes), {report.skipped} already there"
        )
    return 0


WDir = Annotated[
    Path | None,
    typer.Option("--dir", help="Witness directory (default: MOTTE_HOME/tlog/witness)."),
]


@witness_app.command("init")
def witness_init(
    directory: WDir = None,
    name: Annotated[
        str | None, typer.Option(help="The witness's key name, e.g. example.com/w1.")
    ] = None,
) -> int:
    """Create the witness key (mode 0600); prints its cosigner vkey for logs and verifiers."""
    from motte.tlog import default_witness_dir, init_witness

    signer = init_witness(directory or default_witness_dir(), name=name)
    typer.echo(signer.verifier.vkey)
    return 0


@witness_app.command("serve")
def witness_serve(
    listen: Annotated[str, typer.Option(help="HOST:PORT to listen on (port 0: any).")] = (
        "127.0.0.1:8471"
    ),
    log_keys: Annotated[
        list[str] | None,
        typer.Option("--log", help="Witness this log (its vkey). Repeatable; also DIR/logs."),
    ] = None,
    directory: WDir = None,
    db: WitnessDb = None,
) -> int:
    """Serve the witness (C2SP tlog-witness): POST /add-checkpoint returns a cosignature."""
    from motte.tlog import create_witness_app, default_witness_dir, open_witness, serve

    witness = open_witness(
        directory or default_witness_dir(), extra_logs=log_keys or (), database=db
    )
    serve(create_witness_app(witness), listen, what=f"witness {witness.signer.name}")
    return 0
